"""The package's shape: what the top level holds, short functions, no private reaching."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import predlog

PACKAGE = Path(predlog.__file__).parent
MAX_LINES = 80
#: ``# why``: the codes, then a reason.
REASONED_NOQA = re.compile(r"noqa: PLR09\d\d(?:,\s*PLR09\d\d)*\s+#\s*\S")
#: The public API and the request path; everything else lives in a subpackage.
TOP_LEVEL = {
    "__init__.py",
    "__main__.py",
    "errors.py",
    "testing.py",
    "middleware.py",
    "py.typed",
    "_logger.py",
    "_ring.py",
    "_counter.py",
    "_capture.py",
    "_context.py",
    "_tracing.py",
    "_otel_setup.py",
    "_exchange.py",
    "_record.py",
    "_settings.py",
    "_report.py",
    "bentoml_monitor.py",
}
SUBPACKAGES = {"flush", "sinks", "storage", "audit", "metrics", "tools"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _foreign_private(path: Path) -> list[str]:
    """Accesses ``x._name`` (x not self or cls) to a ``_name`` the module never defines."""
    tree = ast.parse(path.read_text())
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            defined.add(node.value)  # __slots__ entries
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in defined:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


class TestLayout:
    def test_top_level_is_the_api_and_the_request_path(self):
        """Only the public API and the request path sit at the top of the package."""
        entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
        assert entries - SUBPACKAGES == TOP_LEVEL
        assert entries >= SUBPACKAGES

    def test_no_function_over_80_lines_without_a_reason(self):
        """A function longer than 80 lines carries a noqa on its def line saying why."""
        long = []
        for path in _sources():
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                header = " ".join(lines[first - 1 : node.body[0].lineno - 1])
                if length > MAX_LINES and not REASONED_NOQA.search(header):
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length})")
        assert long == []

    def test_no_reaching_through_private_attributes(self):
        """No module goes through another object's private attribute (``a._b._c``)."""
        chain = re.compile(r"\._[a-z][a-z_]*\._[a-z]")
        found = [
            f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
            for path in _sources()
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if chain.search(line) and not line.lstrip().startswith("#")
        ]
        assert found == []

    def test_no_private_attribute_of_another_module(self):
        """``x._name`` only where this module defines ``_name`` (its own classes' parts):
        a single hop into another module's private attribute is a missing seam too."""
        found = [reach for path in _sources() for reach in _foreign_private(path)]
        assert found == []

    def test_foreign_private_access_is_found(self, tmp_path):
        """The check above sees a reach into another object's private attribute."""
        probe = tmp_path / "probe.py"
        probe.write_text("def f(logger):\n    return logger._reporter\n")
        assert _foreign_private(probe) == [f"{probe.name}:2 ._reporter"]

    def test_public_api_is_curated(self):
        """Everything predlog exports exists, and internals are not exported."""
        for name in predlog.__all__:
            assert hasattr(predlog, name), name
        assert not {"RingBuffer", "Sampler", "ClosedError"} & set(predlog.__all__)
