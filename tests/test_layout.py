"""The package's shape: what the top level holds, short functions, no import cycles, and
no reaching into another module's private names.

Both checks read the source, never the running package: an import under
``TYPE_CHECKING`` or inside a function is an edge of the import graph like any other,
and a private name is judged by the module that defines it. Each module's imports say
what a local name refers to; its classes say which private attributes are its own. An
access this file cannot prove to be the module's own is a reach (sound, not clever).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import predlog

PACKAGE = Path(predlog.__file__).parent
SOURCE_ROOT = PACKAGE.parent
TESTS = Path(__file__).parent
REPO = TESTS.parent
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
    "_lazy.py",
    # The record batch as Arrow, and the extension that builds it: the flusher and the
    # Parquet sink both use them, and neither package may import the other.
    "_table.py",
    "_rust.pyi",
    "_settings.py",
    "_report.py",
    "bentoml_monitor.py",
}
#: What runs in a server (flush, sinks, storage, audit, metrics) and what never does (tools).
SUBPACKAGES = {"flush", "sinks", "storage", "audit", "metrics", "tools"}
#: Attribute names the standard library documents as public despite the underscore
#: (namedtuple's methods, ``os._exit``, ``sys._getframe``).
DOCUMENTED_PUBLIC = {"_replace", "_asdict", "_fields", "_make", "_exit", "_getframe"}
#: The private reaches left, by (file, reach), each with its reason: a test of a module's
#: own parts, a fault injected inside it, or a dependency with no public name for what
#: predlog needs. Any other reach is a missing seam and fails; an entry no longer
#: reached fails too, so the list only shrinks.
ALLOWED: dict[tuple[str, str], str] = {
    (
        "plugin/predlog/_tracing.py",
        "private name _SUPPRESS_INSTRUMENTATION_KEY of opentelemetry.context",
    ): "the key OpenTelemetry's own exporters set to switch instrumentation off; the API "
    "has no public name for it",
    (
        "plugin/predlog/bentoml_monitor.py",
        "private module bentoml._internal",
    ): "BentoML resolves a service's monitoring configuration only in its _internal "
    "package, and the monitor must read it before BentoML builds the app",
    ("tests/test_counter.py", "private module predlog._counter"): "AtomicCounter's own unit test",
    (
        "tests/test_settings.py",
        "private module predlog._settings",
    ): "the settings declaration's own unit test",
    (
        "tests/test_cli.py",
        "private module predlog._settings",
    ): "env_var names a setting's variable in an expected message",
    ("tests/test_tracing.py", "private module predlog._tracing"): "the span helpers' own unit test",
    (
        "tests/test_tracing.py",
        "private module predlog._otel_setup",
    ): "the SDK set-up's own unit test",
    (
        "tests/test_tracing.py",
        "attribute ._Provider",
    ): "resets the tracer provider cache between tests",
    (
        "tests/test_tracing.py",
        "attribute ._active_span_processor",
    ): "the OpenTelemetry SDK exposes no processor list: which exporter predlog set up",
    ("tests/test_tracing.py", "attribute ._span_processors"): "as above (OpenTelemetry SDK)",
    ("tests/test_tracing.py", "attribute ._batch_processor"): "as above (OpenTelemetry SDK)",
    ("tests/test_tracing.py", "attribute ._exporter"): "as above (OpenTelemetry SDK)",
    (
        "tests/test_tracing.py",
        "attribute ._endpoint",
    ): "as above: the OTLP exporter keeps its endpoint privately",
    (
        "tests/test_request_path_lean.py",
        "private module predlog._tracing",
    ): "counts the request path's calls into the span helpers",
    (
        "tests/test_fuzz.py",
        "private module predlog._capture",
    ): "the capture tuple's positions (FEATURES, FLAGS, EXTRA) in resolved captures",
    (
        "tests/test_engines.py",
        "private module predlog._record",
    ): "reading_schema: the record format's reading side has no public home yet",
    ("tests/test_kafka_values.py", "private module predlog._record"): "JSON_COLUMNS: as above",
    (
        "tests/test_native_records.py",
        "private module predlog._record",
    ): "JSON_COLUMNS and SCHEMA_VERSION: what the extension's Kafka decoder is given",
    (
        "tests/test_native_records.py",
        "private module predlog._table",
    ): "the extension's Kafka decoder called alone, to tell a batch it took from one it "
    "left to the Python decoder",
    (
        "tests/test_decode.py",
        "private module predlog.flush._decode",
    ): "the feature decoder's own unit test",
    (
        "tests/test_fuzz.py",
        "private module predlog.flush._decode",
    ): "fuzzes the feature decoder's parts",
    (
        "tests/test_fuzz.py",
        "private module predlog.flush._exchange",
    ): "fuzzes field_path and flatten",
    (
        "tests/test_native_decode.py",
        "private module predlog.flush._exchange",
    ): "the native decoder against flatten, field_path and unwrap, step by step",
    (
        "tests/test_native_decode.py",
        "private module predlog.flush._native",
    ): "the native decoder's own tests",
    (
        "tests/test_response_shapes.py",
        "private module predlog.flush._native",
    ): "the native decoder on each response shape",
    (
        "tests/test_record.py",
        "private name _bands of predlog.flush._batch",
    ): "the vectorised confidence bands against confidence_band",
    (
        "tests/test_parquet.py",
        "private module predlog.sinks._parquet",
    ): "replaces the module's clock to cut files without waiting",
    (
        "tests/test_murmur2.py",
        "private module predlog.sinks.kafka._murmur2",
    ): "the partitioner hash's own unit test",
    (
        "tests/test_kafka.py",
        "private module predlog.sinks.kafka._wire",
    ): "fails encode() inside the producer",
    (
        "tests/test_kafka.py",
        "private module predlog.sinks.kafka._spooled",
    ): "reads and writes spool entries as the producer does",
    ("tests/test_kafka.py", "attribute ._loop"): "runs a probe on the producer's own event loop",
    (
        "tests/test_kafka.py",
        "attribute ._producer",
    ): "replaces the aiokafka producer with one that never answers",
    ("tests/test_kafka.py", 'setattr(.., "_send")'): "a send that fails, inside the producer",
    (
        "tests/test_kafka.py",
        "private name _SUPPRESS_INSTRUMENTATION_KEY of opentelemetry.context",
    ): "the key OpenTelemetry sets (see _tracing.py above)",
    (
        "tests/test_merkle.py",
        "private module predlog.audit._merkle",
    ): "the Merkle tree's own unit test",
    (
        "tests/test_audit.py",
        "private module predlog.audit._merkle",
    ): "builds roots and proofs to check the log's",
    (
        "tests/test_audit.py",
        "private module predlog.audit._checkpoint",
    ): "previous_of, to sign a forged checkpoint",
    ("tests/test_audit.py", "private module predlog.audit._log"): "the key loaders' own tests",
    (
        "tests/test_audit.py",
        "private module predlog.audit._store",
    ): "the store's record framing (HEAD), to damage files",
    (
        "tests/test_audit_canonical.py",
        "private module predlog.audit._store",
    ): "writes a record the writer would refuse",
    (
        "tests/test_audit_chain.py",
        "private module predlog.audit._store",
    ): "the record framing (HEAD), to damage files",
    (
        "tests/test_audit_store.py",
        "private module predlog.audit._store",
    ): "the store's own unit test",
    (
        "tests/test_crash.py",
        "private module predlog.audit._store",
    ): "reads what survived a kill, torn tail included",
    ("tests/test_fuzz.py", "private module predlog.audit._store"): "fuzzes the record parser",
    (
        "tests/test_analytics_sql.py",
        "private module predlog.tools.analytics._distribution",
    ): "the drift statistics against scipy",
    (
        "tests/test_analytics_sql.py",
        "private module predlog.tools.analytics._features",
    ): "feature classification, unit by unit",
    (
        "tests/test_analytics_sql.py",
        "private module predlog.tools.analytics._ranking",
    ): "AUC against scikit-learn",
    (
        "tests/test_analytics_sql.py",
        '"predlog.tools.analytics._features.SAMPLE": '
        "private module predlog.tools.analytics._features",
    ): "a small sample size, to reach the sampled path",
    (
        "tests/test_analytics_sql.py",
        '"predlog.tools.analytics._ranking.BUCKETS": '
        "private module predlog.tools.analytics._ranking",
    ): "a small bucket count, to reach the bucketed path",
    (
        "tests/test_report_html.py",
        "private module predlog.tools.analytics._html",
    ): "the SVG charts' own unit test",
    (
        "tests/test_cli.py",
        "private module predlog.tools.analytics._data",
    ): "a data directory that refuses, inside the command",
    ("tests/test_cli.py", "attribute ._data"): "as above",
    (
        "tests/test_cli.py",
        "private module predlog.tools.cli._options",
    ): "every SettingOption names its setting",
    (
        "tests/test_evaluate_decisions.py",
        "private module predlog.tools.cli._options",
    ): "num(), the table's number format",
    (
        "tests/test_progress.py",
        "private module predlog.tools.cli._options",
    ): "the progress option's own unit test",
    (
        "tests/test_progress.py",
        "private module predlog.tools.cli._progress",
    ): "the progress reporter's own unit test",
    (
        "tests/test_progress.py",
        '"predlog.tools.cli._options.terminal_reporter": private module predlog.tools.cli._options',
    ): "a terminal reporter on a fake terminal",
    (
        "tests/test_bench.py",
        "private module predlog.tools.bench._html",
    ): "the bench's parts, unit by unit",
    ("tests/test_bench.py", "private module predlog.tools.bench._load"): "as above",
    ("tests/test_bench.py", "private module predlog.tools.bench._run"): "as above",
    ("tests/test_bench.py", "private module predlog.tools.bench._servers"): "as above",
    ("tests/test_bench.py", "private module predlog.tools.bench._stats"): "as above",
    ("tests/test_bench.py", "private module predlog.tools.bench._summary"): "as above",
    ("tests/test_bench.py", "private module predlog.tools.bench._target"): "as above",
    (
        "tests/test_compact.py",
        "private module predlog.tools.compact._layout",
    ): "a crash between the directory exchange and its reconciliation",
    ("tests/test_compact.py", 'setattr(.., "_reconcile")'): "as above",
    (
        "tests/test_compact.py",
        "private module predlog.tools.compact._table",
    ): "a commit that lands during compaction",
    ("tests/test_compact.py", "attribute ._commit"): "as above",
    ("tests/test_compact.py", 'setattr(.., "_commit")'): "as above",
    ("tests/test_iceberg.py", "private module predlog._logger"): "preflight alone, as BentoML's "
    "supervisor runs it",
    ("tests/test_iceberg.py", "private module predlog.sinks.iceberg._catalog"): "embedded_catalog, "
    "the catalog a data directory gets when none is configured",
}
GETTERS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    """``_x``, not ``__x__`` (nor a bare ``_``)."""
    dunder = name.startswith("__") and name.endswith("__")
    return bool(re.match(r"_+[^_]", name)) and not dunder


def _within(inner: str, outer: str) -> bool:
    """``inner`` is the package ``outer`` or one of its sub-packages."""
    return inner == outer or inner.startswith(outer + ".")


@dataclass
class Module:
    """One source file, by dotted name."""

    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        """The package the module's relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def load(root: Path, top: str) -> dict[str, Module]:
    """Every module of the package ``root/top``, by dotted name; an extension module by
    its stub."""
    modules = {}
    sources = sorted((root / top).rglob("*.py"))
    stubs = [p for p in sorted((root / top).rglob("*.pyi")) if p.with_suffix(".py") not in sources]
    for path in sources + stubs:
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = Module(name, path, ast.parse(path.read_text()), is_package)
    return modules


@dataclass(frozen=True)
class Import:
    """One name an import statement binds: a module, or a name taken from one."""

    line: int
    module: str
    name: str | None


def _source(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports(module: Module, known: Iterable[str]) -> Iterator[Import]:
    """Every import in ``module``, at any depth: ``from a import b`` is the module ``a.b``
    when there is one, else the name ``b`` of ``a``."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            source = _source(module, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    yield Import(node.lineno, submodule, None)
                else:
                    yield Import(node.lineno, source, alias.name)


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Which module imports which; a package's implicit import of its parent is no edge."""
    return {
        name: {
            edge.module
            for edge in imports(module, modules)
            if edge.module in modules and edge.module != name
        }
        for name, module in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@dataclass
class ClassInfo:
    """A class the module defines: its attributes, and those known to hold one of the
    module's own classes."""

    bases: list[str]
    attributes: set[str] = field(default_factory=set)
    types: dict[str, str] = field(default_factory=dict)


def _annotated_class(annotation: ast.expr | None, own: dict[str, ClassInfo]) -> str | None:
    """The own class an annotation names (``C``, ``"C"``, ``C | None``, ``Optional[C]``)."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Name):
        return annotation.id if annotation.id in own else None
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        names = {_annotated_class(annotation.left, own), _annotated_class(annotation.right, own)}
        names.discard(None)
        return names.pop() if len(names) == 1 else None
    optional = isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name)
    if optional and annotation.value.id == "Optional":
        return _annotated_class(annotation.slice, own)
    return None


def _methods_body(node: ast.ClassDef) -> Iterator[ast.AST]:
    """Every node of the class's methods, nested functions included, not nested classes."""
    pending: list[ast.AST] = [
        child for child in node.body if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(
            child for child in ast.iter_child_nodes(current) if not isinstance(child, ast.ClassDef)
        )


def _constructed(value: ast.expr | None, own: dict[str, ClassInfo]) -> str | None:
    """The own class ``value`` constructs directly (``C(...)``)."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return value.func.id if value.func.id in own else None
    return None


def own_classes(tree: ast.Module) -> dict[str, ClassInfo]:
    """Every class the module defines (at any depth), with the attributes it defines:
    in its body, in ``__slots__``, and assigned on ``self`` or ``cls`` in its methods."""
    nodes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    own = {
        node.name: ClassInfo([base.id for base in node.bases if isinstance(base, ast.Name)])
        for node in nodes
    }
    for node in nodes:
        info = own[node.name]
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                info.attributes.add(statement.name)
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                info.attributes.add(statement.target.id)
                typed = _annotated_class(statement.annotation, own)
                if typed:
                    info.types[statement.target.id] = typed
            elif isinstance(statement, ast.Assign):
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        info.attributes.add(target.id)
                        if target.id == "__slots__":
                            info.attributes.update(
                                c.value
                                for c in ast.walk(statement.value)
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
        for child in _methods_body(node):
            _own_assignment(child, info, own)
    return own


def _own_assignment(node: ast.AST, info: ClassInfo, own: dict[str, ClassInfo]) -> None:
    """Record ``self.x = ...`` (and its type, when known) on the class."""
    if isinstance(node, ast.AnnAssign):
        targets, value, typed = [node.target], node.value, _annotated_class(node.annotation, own)
    elif isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value, typed = node.value, None
    else:
        return
    for target in targets:
        for part in ast.walk(target):
            if (
                isinstance(part, ast.Attribute)
                and isinstance(part.ctx, ast.Store)
                and isinstance(part.value, ast.Name)
                and part.value.id in ("self", "cls")
            ):
                info.attributes.add(part.attr)
                kind = typed or (_constructed(value, own) if part is target else None)
                if kind:
                    info.types[part.attr] = kind


@dataclass(frozen=True)
class Reach:
    """One use of a private name the module does not own."""

    path: Path
    line: int
    what: str

    def key(self, root: Path) -> tuple[str, str]:
        return (self.path.relative_to(root).as_posix(), self.what)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


class _Attributes(ast.NodeVisitor):
    """Finds ``x._y``, ``getattr(x, "_y")`` and dotted strings naming a private part,
    where ``x`` is not provably one of the module's own classes (or an instance of one)
    that defines ``_y``."""

    def __init__(self, module: Module, roots: set[str], known: set[str]) -> None:
        self.module = module
        self.roots = roots
        self.known = known
        self.own = own_classes(module.tree)
        #: Each method's class, and whether it is static (no ``self``).
        self.methods: dict[ast.AST, tuple[str, bool]] = {}
        self.scopes: list[dict[str, str | None]] = [{}]
        self.found: list[Reach] = []
        self.scopes[0] = self._types(module.tree.body, [])

    def _report(self, node: ast.AST, what: str) -> None:
        self.found.append(Reach(self.module.path, getattr(node, "lineno", 0), what))

    def _attributes_of(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        info = self.own[name]
        names = set(info.attributes)
        for base in info.bases:
            if base in self.own and base not in seen:
                names |= self._attributes_of(base, seen | {name})
        return names

    def _class_of(self, node: ast.expr) -> str | None:
        """The own class ``node`` is (or is an instance of), when this file can prove it."""
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
            return node.id if node.id in self.own else None
        if isinstance(node, ast.Attribute):
            holder = self._class_of(node.value)
            return self.own[holder].types.get(node.attr) if holder else None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "cls":
                return self._class_of(func)  # a classmethod's cls(...)
            is_type_of = (
                isinstance(func, ast.Call)
                and isinstance(func.func, ast.Name)
                and func.func.id == "type"
                and len(func.args) == 1
            )
            if is_type_of:
                return self._class_of(func.args[0])  # type(self)(...)
            return _constructed(node, self.own)
        return None

    def _types(
        self, body: list[ast.stmt], params: list[ast.arg], owner: str | None = None
    ) -> dict[str, str | None]:
        """The names of one scope known to hold an own class: a method's first parameter
        (its ``owner``), annotated parameters, and names every assignment of which is an
        own class (else None: not provable)."""
        scope: dict[str, str | None] = {}
        for param in params:
            scope[param.arg] = _annotated_class(param.annotation, self.own)
        if owner is not None and params:
            scope[params[0].arg] = owner
        self.scopes.append(scope)
        try:
            for node in _scope_nodes(body):
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    kind = _annotated_class(node.annotation, self.own)
                    self._bind(scope, node.target.id, kind)
                elif isinstance(node, ast.Assign):
                    kind = self._class_of(node.value)
                    for target in node.targets:
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                                self._bind(scope, name.id, kind if name is target else None)
                else:
                    for name in _bound_elsewhere(node):
                        self._bind(scope, name, None)
        finally:
            self.scopes.pop()
        return scope

    @staticmethod
    def _bind(scope: dict[str, str | None], name: str, kind: str | None) -> None:
        scope[name] = kind if scope.get(name, kind) == kind else None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for child in node.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorators = {getattr(d, "id", None) for d in child.decorator_list}
                self.methods[child] = (node.name, "staticmethod" in decorators)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args]
        positional = len(params)
        params += [*arguments.kwonlyargs, *(a for a in (arguments.vararg, arguments.kwarg) if a)]
        owner, static = self.methods.get(node, (None, True))
        bound = owner if not static and positional else None
        self.scopes.append(self._types(node.body, params, bound))
        self.generic_visit(node)
        self.scopes.pop()

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        self.scopes.append({param.arg: None for param in params})
        self.generic_visit(node)
        self.scopes.pop()

    def _check(self, node: ast.AST, holder: ast.expr, name: str, how: str) -> None:
        if not _private(name) or name in DOCUMENTED_PUBLIC:
            return
        kind = self._class_of(holder)
        if kind is None or name not in self._attributes_of(kind):
            self._report(node, how)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, node.value, node.attr, f"attribute .{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if called in GETTERS and len(node.args) >= 2:
            literal = node.args[1]
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                self._check(node, node.args[0], literal.value, f'{called}(.., "{literal.value}")')
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        """A dotted string into the project (``mock.patch("pkg.mod._name")``) is an import."""
        text = node.value
        if not isinstance(text, str) or not re.fullmatch(r"\w+(\.\w+)+", text):
            return
        parts = text.split(".")
        if parts[0] not in self.roots:
            return
        split = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in self.known)
        module = ".".join(parts[:split])
        name = parts[split] if split < len(parts) else None
        reach = _import_reach(self.module, Import(node.lineno, module, name))
        if reach is None and any(_private(part) for part in parts[split + 1 :]):
            reach = f"private attribute in {text}"
        if reach is not None:
            self._report(node, f'"{text}": {reach}')


def _bound_elsewhere(node: ast.AST) -> Iterator[str]:
    """Names bound by loops, ``with``, ``except``, ``:=``, comprehensions and imports."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield from (alias.asname or alias.name.partition(".")[0] for alias in node.names)
        return
    if isinstance(node, ast.ExceptHandler) and node.name:
        yield node.name
        return
    target = None
    if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr, ast.comprehension)):
        target = node.target
    elif isinstance(node, ast.withitem):
        target = node.optional_vars
    for name in ast.walk(target) if target else ():
        if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
            yield name.id


def _scope_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes of one function's (or the module's) own scope, nested scopes left out."""
    pending: list[ast.AST] = list(reversed(body))
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        pending.extend(reversed(list(ast.iter_child_nodes(node))))


def _import_reach(module: Module, edge: Import) -> str | None:
    """What is wrong with one import: ``from m import _x``, or a private module outside
    the importer's line of packages. A module may import the private modules of its own
    package, of the packages above it, and of its own sub-packages; never a sibling's."""
    if edge.name is not None and _private(edge.name):
        return f"private name {edge.name} of {edge.module}"
    parts = edge.module.split(".")
    private = next((i for i, part in enumerate(parts) if _private(part)), None)
    if private is None:
        return None
    owner = ".".join(parts[:private])
    if _within(module.package, owner) or _within(owner, module.package):
        return None
    return f"private module {'.'.join(parts[: private + 1])}"


def private_reaches(scanned: Iterable[Module], known: set[str]) -> list[Reach]:
    """Every private name a scanned module uses that another module defines."""
    roots = {name.partition(".")[0] for name in known}
    found: list[Reach] = []
    for module in scanned:
        for edge in imports(module, known):
            reach = _import_reach(module, edge)
            if reach is not None:
                found.append(Reach(module.path, edge.line, reach))
        visitor = _Attributes(module, roots, known)
        visitor.visit(module.tree)
        found.extend(visitor.found)
    return found


def _assert_only_allowed(reaches: list[Reach], scanned: Path) -> None:
    """Every reach is in ALLOWED, and every entry of ALLOWED for ``scanned`` is found."""
    found = {reach.key(REPO) for reach in reaches}
    prefix = scanned.relative_to(REPO).as_posix() + "/"
    stale = sorted(key for key in ALLOWED if key[0].startswith(prefix) and key not in found)
    unknown = [reach for reach in reaches if reach.key(REPO) not in ALLOWED]
    assert sorted(f"{r.key(REPO)[0]}:{r.line}: {r.what}" for r in unknown) == []
    assert stale == []


def _plant(root: Path, files: dict[str, str]) -> dict[str, Module]:
    """A package ``pkg`` under ``root`` made of ``files`` (path: source), loaded."""
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in [root / "pkg", *(root / "pkg").rglob("*")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("")
    return load(root, "pkg")


def _planted_reaches(root: Path, files: dict[str, str], scanned: str) -> list[str]:
    modules = _plant(root, files)
    return [reach.what for reach in private_reaches([modules[scanned]], set(modules))]


class TestLayout:
    def test_top_level_is_the_api_and_the_request_path(self):
        """Only the public API and the request path sit at the top of the package."""
        entries = {
            p.name
            for p in PACKAGE.iterdir()
            if p.name != "__pycache__" and not re.fullmatch(r"_rust\..*\.(so|pyd)", p.name)
        }
        assert entries - SUBPACKAGES == TOP_LEVEL
        assert entries >= SUBPACKAGES

    def test_no_function_over_80_lines_without_a_reason(self):
        """A function longer than 80 lines carries a noqa on its def line saying why."""
        long = []
        for path in sorted(PACKAGE.rglob("*.py")):
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

    def test_public_api_is_curated(self):
        """Everything predlog exports exists, and internals are not exported."""
        for name in predlog.__all__:
            assert hasattr(predlog, name), name
        assert not {"RingBuffer", "Sampler", "ClosedError"} & set(predlog.__all__)


class TestImportCycles:
    def test_no_module_imports_itself_through_others(self):
        """No import cycle among predlog's modules, TYPE_CHECKING and function-level
        imports included: each cycle is two modules that each own part of the other."""
        assert cycles(import_graph(load(SOURCE_ROOT, "predlog"))) == []

    def test_a_planted_cycle_is_found(self, tmp_path):
        """A cycle hidden under TYPE_CHECKING and inside a function is still a cycle."""
        modules = _plant(
            tmp_path,
            {
                "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from pkg.sub.b import B\n",
                "sub/b.py": "def f():\n    from ..c import C\n",
                "c.py": "import pkg.a\n",
                "d.py": "from pkg import c\n",
            },
        )
        assert cycles(import_graph(modules)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]

    @pytest.mark.parametrize(
        ("source", "edges"),
        [
            ("import pkg.sub.b", {"pkg.sub.b"}),
            ("from pkg.sub import b", {"pkg.sub.b"}),
            ("from pkg.sub.b import name", {"pkg.sub.b"}),
            ("from .sub import b", {"pkg.sub.b"}),
            ("from . import c", {"pkg.c"}),
            ("from pkg import name", {"pkg"}),
        ],
    )
    def test_an_import_is_an_edge_to_the_module_it_runs(self, tmp_path, source, edges):
        """``from a import b`` is an edge to the submodule ``a.b`` when there is one, to
        ``a`` otherwise; a package's implicit import of its parent is no edge."""
        modules = _plant(tmp_path, {"a.py": source, "sub/b.py": "", "c.py": ""})
        graph = import_graph(modules)
        assert graph["pkg.a"] == edges
        assert graph["pkg.sub.b"] == set()


class TestPrivateReaches:
    def test_the_package_uses_only_its_own_private_names(self):
        """No module of predlog uses a private name (``_x``) that another module defines,
        nor a sibling package's private module: each is a seam without a name."""
        modules = load(SOURCE_ROOT, "predlog")
        _assert_only_allowed(private_reaches(modules.values(), set(modules)), PACKAGE)

    def test_tests_use_the_public_api(self):
        """Tests use the public API and predlog.testing, and nothing else but ALLOWED."""
        package = load(SOURCE_ROOT, "predlog")
        tests = load(REPO, TESTS.name)
        _assert_only_allowed(private_reaches(tests.values(), set(package) | set(tests)), TESTS)

    @pytest.mark.parametrize(
        ("source", "reach"),
        [
            pytest.param(
                "def f(logger):\n    return logger._flusher\n",
                "attribute ._flusher",
                id="attribute of an object of unknown class",
            ),
            pytest.param(
                "class Own:\n    def __init__(self):\n        self._lock = 1\n\n"
                "def f(other):\n    return other._lock\n",
                "attribute ._lock",
                id="a name the module also defines, on another object",
            ),
            pytest.param(
                "class Own:\n    def __init__(self, logger):\n        self._flusher = logger\n"
                "        self._lock = 1\n\n    def f(self):\n        return self._flusher._lock\n",
                "attribute ._lock",
                id="through an own attribute (a._b._c)",
            ),
            pytest.param(
                "class Own:\n    def __init__(self):\n        self._x = 1\n\n"
                "    def f(self):\n        def fake(self):\n            return self._x\n\n"
                "        return fake\n",
                "attribute ._x",
                id="self of a function that is not the class's method",
            ),
            pytest.param(
                "def f(logger):\n    return logger._flusher.lock\n",
                "attribute ._flusher",
                id="a chain with a public tail (a._b.c)",
            ),
            pytest.param(
                "from pkg.a import C\n\nclass Mine(C):\n"
                "    def f(self):\n        return self._lock\n",
                "attribute ._lock",
                id="inherited from another module's class",
            ),
            pytest.param(
                "from pkg.a import C\n\nC._secret\n",
                "attribute ._secret",
                id="another module's class",
            ),
            pytest.param("from pkg import a\n\na._helper\n", "attribute ._helper", id="a module's"),
            pytest.param(
                'def f(x):\n    return getattr(x, "_lock")\n', 'getattr(.., "_lock")', id="getattr"
            ),
            pytest.param(
                'def f(x):\n    setattr(x, "_lock", 1)\n', 'setattr(.., "_lock")', id="setattr"
            ),
            pytest.param(
                'def f(x):\n    hasattr(x, "_lock")\n', 'hasattr(.., "_lock")', id="hasattr"
            ),
            pytest.param(
                'def f(monkeypatch, x):\n    monkeypatch.setattr(x, "_lock", 1)\n',
                'setattr(.., "_lock")',
                id="monkeypatch.setattr",
            ),
            pytest.param(
                "from pkg.a import _helper\n",
                "private name _helper of pkg.a",
                id="from m import _x",
            ),
            pytest.param(
                "from . import _o\nfrom ._o import _y\n",
                "private name _y of pkg.b._o",
                id="from an own module import _x",
            ),
            pytest.param("import pkg.a._m\n", "private module pkg.a._m", id="import a sibling's"),
            pytest.param(
                "from pkg.a import _m\n", "private module pkg.a._m", id="from pkg import _sibling"
            ),
            pytest.param(
                "from pkg.a._m import C\n", "private module pkg.a._m", id="from a sibling's import"
            ),
            pytest.param(
                "from ..a._m import C\n", "private module pkg.a._m", id="relative, a sibling's"
            ),
            pytest.param(
                'target = "pkg.a._m.C"\n',
                '"pkg.a._m.C": private module pkg.a._m',
                id="a dotted string naming a sibling's module",
            ),
            pytest.param(
                'target = "pkg.a.C._lock"\n',
                '"pkg.a.C._lock": private attribute in pkg.a.C._lock',
                id="a dotted string naming a private attribute",
            ),
        ],
    )
    def test_a_planted_reach_is_found(self, tmp_path, source, reach):
        """Each kind of reach into a private name another module defines is caught."""
        files = {**PLANTED, "b/_n.py": source}
        assert _planted_reaches(tmp_path, files, "pkg.b._n") == [reach]

    @pytest.mark.parametrize(
        "source",
        [
            pytest.param(
                "class Own:\n    _count = 0\n\n    def __init__(self):\n        self._x = 1\n\n"
                "    def f(self):\n        return self._x + Own._count\n",
                id="self and the own class",
            ),
            pytest.param(
                "class Own:\n    def __init__(self):\n        self._x = 1\n\n"
                "    def __eq__(self, other: 'Own | None'):\n        return other._x\n\n"
                "def f(own: Own):\n    made = Own()\n    return own._x, made._x, Own()._x\n",
                id="annotated and constructed instances of an own class",
            ),
            pytest.param(
                "class Own:\n    def __init__(self):\n        self._inner: Inner = Inner()\n\n"
                "    def f(self):\n        return self._inner._y\n\n"
                "class Inner:\n    __slots__ = ('_y',)\n",
                id="an own attribute holding an own class (slots)",
            ),
            pytest.param(
                "class Base:\n    def __init__(self):\n        self._x = 1\n\n"
                "class Sub(Base):\n    def f(self):\n        return self._x\n",
                id="inherited from an own class",
            ),
            pytest.param(
                "from pkg.b._o import thing\nfrom . import _o\nfrom pkg.b.deep._p import x\n"
                "from pkg._top import y\nimport pkg.b._o\ntarget = 'pkg.b._o.thing'\n",
                id="private modules of its own package, above it and below it",
            ),
            pytest.param(
                "import os\n\ndef f(point):\n    point._replace(x=1)\n    os._exit(0)\n",
                id="names the standard library documents as public",
            ),
        ],
    )
    def test_own_private_names_pass(self, tmp_path, source):
        """What the module itself defines is its own to use."""
        files = {**PLANTED, "b/_n.py": source}
        assert _planted_reaches(tmp_path, files, "pkg.b._n") == []


#: The modules the planted reaches aim at: a sibling package ``a`` with a class, and
#: private modules in, above and below the package ``b`` the scanned module is in.
PLANTED = {
    "a/__init__.py": "from pkg.a._m import C\n",
    "a/_m.py": "class C:\n    _secret = 1\n\n    def __init__(self):\n        self._lock = 1\n\n"
    "def _helper():\n    pass\n",
    "b/_o.py": "thing = 1\n_y = 2\n",
    "b/deep/_p.py": "x = 1\n",
    "_top.py": "y = 1\n",
}
