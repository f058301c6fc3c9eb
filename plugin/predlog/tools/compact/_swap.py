"""Swapping two directories in one step: ``renameat2(RENAME_EXCHANGE)`` on Linux.

A compaction builds the new files of a day beside the old ones and then swaps the two
directories. A reader resolves ``date=YYYY-MM-DD`` either before the swap (the old
files) or after it (the new files): no listing ever holds both, nor neither. Two
renames (old away, new in) would leave a moment with no directory at all, which is
why the exchange must be a single system call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import Any, Final

from predlog.errors import PredlogError

_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 1 << 1


class SwapUnsupportedError(PredlogError):
    """This system cannot exchange two directories atomically."""


def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        raise SwapUnsupportedError(
            f"an atomic directory exchange needs Linux's renameat2 (this is {sys.platform})"
        )
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    try:
        function = libc.renameat2
    except AttributeError:
        raise SwapUnsupportedError("the C library has no renameat2 (glibc 2.28 or later)") from None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def exchange(a: Path, b: Path) -> None:
    """Swap the directories ``a`` and ``b`` (same file system) in one atomic step."""
    result = _renameat2()(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot
            raise SwapUnsupportedError(
                f"the file system of {a} cannot exchange directories atomically "
                f"({os.strerror(errno)})"
            )
        raise OSError(errno, os.strerror(errno), str(a), None, str(b))
