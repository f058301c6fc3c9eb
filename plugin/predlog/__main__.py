"""``python -m predlog`` and the ``predlog`` console script: the command line in
:mod:`predlog.tools.cli`.

predlog sink --bootstrap HOST:PORT --topic predictions --data /var/lib/predlog
"""

from __future__ import annotations

import sys

from predlog.tools.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
