"""Finding and opening the prediction table: catalogs, schema, partitions.

A table is named ``catalog.namespace.table`` or ``namespace.table``. A named catalog is
configured the way pyiceberg users already configure one (``.pyiceberg.yaml``,
``PYICEBERG_CATALOG__<NAME>__*`` variables), so predlog adds no configuration of its
own. Without a catalog name the table lives in the embedded default: pyiceberg's SQL
catalog named ``predlog`` on SQLite at ``<data_dir>/iceberg/catalog.db``, warehouse
``<data_dir>/iceberg/warehouse``.

A catalog that is misconfigured (no configuration for its name, a type pyiceberg
cannot infer, pyiceberg not installed) is a :class:`ConfigError`: the start is refused.
One that is configured but does not answer (its database or server down, the store of
its metadata refusing connections) raises :class:`CatalogUnreachableError` or the
store's own error: the sink stages records and opens the table later.

The embedded default needs a local data directory: SQLite cannot live in an object
store, and a catalog file on one machine's disk pointing at metadata in a bucket is a
table that no other machine can find (and that is lost with the disk). With an
``s3://`` or ``gs://`` data_dir the table must name a catalog, which is what a fleet
needs anyway.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from predlog._record import arrow_schema
from predlog._settings import local_path, url_scheme
from predlog.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


class CatalogUnreachableError(Exception):
    """A configured catalog did not answer (connection refused, database down): records
    can wait for it, so it must not stop a service from starting."""


def _unreachable(exc: BaseException) -> bool:
    """Whether a catalog's failure to load means "not answering" rather than "wrong".

    OSError covers sockets, HTTP clients (``requests``) and files; ``OperationalError``
    and ``InterfaceError`` are the DB-API's names (PEP 249) for a database that cannot be
    reached, whichever driver or SQLAlchemy raises them.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, OSError) or bool(names & {"OperationalError", "InterfaceError"})


#: The name of the embedded catalog (the SQL catalog on SQLite under data_dir).
EMBEDDED_CATALOG: Final = "predlog"
_SETTING: Final = "iceberg_table"


def parse_table_name(name: str) -> tuple[str | None, str, str]:
    """``catalog.ns.table`` or ``ns.table`` as (catalog or None, namespace, table)."""
    parts = name.split(".")
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and all(parts):
        return None, parts[0], parts[1]
    raise ConfigError(
        _SETTING, f"must name a table as catalog.namespace.table or namespace.table, got {name!r}"
    )


def _local_dir(data_dir: str | Path) -> Path:
    text = str(data_dir)
    scheme = url_scheme(text)
    if scheme == "file":
        try:
            return local_path(text)
        except ValueError as exc:
            raise ConfigError("data_dir", str(exc)) from None
    if scheme is not None:
        raise ConfigError(
            _SETTING,
            f"a table without a catalog name lives in the embedded SQLite catalog under a "
            f"local data_dir, but data_dir is {text!r}; name a catalog "
            "(catalog.namespace.table) configured in .pyiceberg.yaml or by "
            "PYICEBERG_CATALOG__<NAME>__URI and __WAREHOUSE",
        )
    return Path(text)


def embedded_catalog(data_dir: str | Path) -> Catalog:
    """The embedded default catalog: pyiceberg's SQL catalog on SQLite under data_dir."""
    from pyiceberg.catalog.sql import SqlCatalog  # noqa: PLC0415  # optional dependency

    root = _local_dir(data_dir).absolute() / "iceberg"
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    properties = {
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }
    # Several processes may open the catalog for the first time together; creating its
    # own tables is not atomic across them, and the loser's error is transient.
    for attempt in range(5):
        try:
            return SqlCatalog(EMBEDDED_CATALOG, **properties)
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def load_catalog(catalog_name: str | None, *, data_dir: str | Path) -> Catalog:
    """The catalog by name as pyiceberg configures it, or the embedded default for None."""
    if catalog_name is None:
        return embedded_catalog(data_dir)
    try:
        import pyiceberg.catalog  # noqa: PLC0415  # optional dependency
        from pyiceberg.utils.config import Config  # noqa: PLC0415

        # pyiceberg reads its variables and .pyiceberg.yaml once, when first imported;
        # read them again, so a catalog configured after that (by the service's own
        # start-up code, or a test) is the one loaded.
        properties = Config().get_catalog_config(catalog_name) or {}
        return pyiceberg.catalog.load_catalog(catalog_name, **properties)  # type: ignore[arg-type]  # nested values pass through
    except ImportError as exc:
        raise ConfigError(
            _SETTING, f"needs pyiceberg: pip install 'predlog[iceberg]' ({exc})"
        ) from exc
    except Exception as exc:
        if _unreachable(exc):
            raise CatalogUnreachableError(
                f"catalog {catalog_name!r} did not answer: {exc}"
            ) from exc
        variable = f"PYICEBERG_CATALOG__{catalog_name.upper()}__URI"
        raise ConfigError(
            _SETTING,
            f"catalog {catalog_name!r} could not be loaded ({exc}); configure it in "
            f".pyiceberg.yaml or with {variable} (and __WAREHOUSE)",
        ) from exc


def iceberg_arrow_schema() -> pa.Schema:
    """The prediction schema as the table takes it: Arrow types Iceberg has (int16 is
    Iceberg's int), without predlog's schema metadata."""
    import pyarrow as pa  # noqa: PLC0415  # the start-up check needs none of it

    fields = []
    for f in arrow_schema():
        if pa.types.is_int8(f.type) or pa.types.is_int16(f.type):
            fields.append(f.with_type(pa.int32()))
        else:
            fields.append(f)
    return pa.schema(fields)


def _create(catalog: Catalog, identifier: tuple[str, str]) -> Table:
    """Create the table with its partition spec in one commit, or load it when another
    process created it first."""
    from pyiceberg.exceptions import (  # noqa: PLC0415  # optional dependency
        CommitFailedException,
        TableAlreadyExistsError,
    )
    from pyiceberg.transforms import DayTransform  # noqa: PLC0415

    if catalog.table_exists(identifier):
        return catalog.load_table(identifier)
    try:
        create = catalog.create_table_transaction(identifier, schema=iceberg_arrow_schema())
        with create.update_spec() as spec:
            spec.add_field("timestamp_utc", DayTransform(), "timestamp_utc_day")
            spec.add_identity("model_name")
        create.commit_transaction()
    except (TableAlreadyExistsError, CommitFailedException):
        pass  # created by another process meanwhile (the SQL catalog says it either way)
    # The transaction's result is a staged table, which cannot be scanned: load it.
    return catalog.load_table(identifier)


def evolve(table: Table) -> Table:
    """Add the columns predlog writes that the table lacks, as optional columns.

    Additive only: existing columns are never dropped, renamed, retyped or made
    required, so a reader of the old schema still reads every file.
    """
    import pyarrow as pa  # noqa: PLC0415

    have = {f.name for f in table.schema().fields}
    missing = [f.with_nullable(True) for f in iceberg_arrow_schema() if f.name not in have]
    if not missing:
        return table
    with table.update_schema() as update:
        update.union_by_name(pa.schema(missing))
    return table


def open_table(name: str, *, data_dir: str | Path, create: bool = True) -> Table:
    """Open the table (creating namespace and table when ``create``) and evolve its schema."""
    from pyiceberg.exceptions import (  # noqa: PLC0415  # optional dependency
        CommitFailedException,
        NoSuchTableError,
    )

    catalog_name, namespace, table_name = parse_table_name(name)
    catalog = load_catalog(catalog_name, data_dir=data_dir)
    identifier = (namespace, table_name)
    if not create:
        try:
            return catalog.load_table(identifier)
        except NoSuchTableError as exc:
            raise ConfigError(_SETTING, f"no table {name!r} in its catalog") from exc
    catalog.create_namespace_if_not_exists(namespace)
    table = _create(catalog, identifier)
    for attempt in range(5):
        try:
            return evolve(table)
        except CommitFailedException:
            # Another process evolved it first: look again.
            time.sleep(0.05 * (attempt + 1))
            table = catalog.load_table(identifier)
    return evolve(table)


def filesystem(table: Table, location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem the table's FileIO uses for ``location``, and the path in it."""
    from pyiceberg.io.pyarrow import PyArrowFileIO  # noqa: PLC0415  # optional dependency

    io = table.io if isinstance(table.io, PyArrowFileIO) else PyArrowFileIO(table.io.properties)
    scheme, netloc, path = PyArrowFileIO.parse_location(location, io.properties)
    return io.fs_by_scheme(scheme, netloc), path


def table_files(name: str, *, data_dir: str | Path) -> tuple[pafs.FileSystem, list[str]]:
    """The live data files of the table's current snapshot, as (filesystem, paths)."""
    table = open_table(name, data_dir=data_dir, create=False)
    fs, _ = filesystem(table, table.location())
    paths = [filesystem(table, task.file.file_path)[1] for task in table.scan().plan_files()]
    return fs, paths
