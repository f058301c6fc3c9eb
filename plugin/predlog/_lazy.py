"""Names a package imports on first use (PEP 562), written once for every package.

A service module that says ``import predlog`` is imported by BentoML's supervisor too,
which never logs: the packages must not load the flusher, the sinks and their numpy
and pyarrow until a name is asked for. Each package lists where its names live and
gets its module ``__getattr__`` and ``__dir__`` from :func:`attach`; its
``TYPE_CHECKING`` imports give the type checker the same names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any


def attach(
    package: str,
    namespace: MutableMapping[str, Any],
    homes: Mapping[str, str],
    *,
    modules: Collection[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__``.

    ``homes`` maps each name to the module that defines it, imported on first use and
    the value kept in ``namespace`` (the package's ``globals()``) so the next use costs
    nothing. ``modules`` names submodules reachable as attributes, as if imported.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807  # the module hook's own name
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *homes, *modules})

    return __getattr__, __dir__
