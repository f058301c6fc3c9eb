"""``predlog.sinks.iceberg`` names what the rest of predlog may use, and costs nothing to
import: pyiceberg is an extra, and the package imports its modules on first use."""

from __future__ import annotations

import subprocess
import sys

from predlog.sinks import iceberg


def test_every_public_name_resolves_to_its_definition() -> None:
    """Each name in ``__all__`` is found; a class or function is defined in one of the
    package's own modules, a constant is text (a snapshot summary key)."""
    for name in iceberg.__all__:
        value = getattr(iceberg, name)
        if callable(value):
            assert value.__module__.rpartition(".")[0] == iceberg.__name__, (name, value)
        else:
            assert isinstance(value, str) and value.startswith("predlog."), (name, value)
    assert sorted(iceberg.__all__) == sorted(set(iceberg.__all__))


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not offer is refused as any module refuses one."""
    assert not hasattr(iceberg, "catalog_of_nothing")


def test_importing_the_package_imports_neither_pyiceberg_nor_its_modules() -> None:
    """Importing the package loads none of its modules; resolving its names loads no
    pyiceberg (each module imports it inside the functions that need it)."""
    code = (
        "import sys\n"
        "import predlog.sinks.iceberg as iceberg\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('predlog.sinks.iceberg.'))\n"
        "assert not loaded, loaded\n"
        "for name in iceberg.__all__:\n"
        "    getattr(iceberg, name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pyiceberg']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
