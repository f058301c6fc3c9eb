"""Types of predlog's native decoder (``native/``, Rust); see predlog.flush._native."""

from typing import Any, final

@final
class Encoded:
    """Flattened features already written as orjson writes them."""

    @property
    def text(self) -> str: ...
    @property
    def nulls(self) -> int: ...
    @property
    def oversize(self) -> bool: ...

@final
class EncodedExtra:
    """A record's extra map already written as JSON text."""

    @property
    def text(self) -> str: ...

def resolve(
    captures: list[tuple[Any, ...]],
    exchange_type: type,
    layout: tuple[int, int, int, int, int, int, int, int],
    positions: dict[str, int],
    max_bytes: int,
    extra_maps: bool,
) -> list[tuple[Any, ...] | None]: ...
def resolve_columns(
    captures: list[tuple[Any, ...]],
    exchange_type: type,
    layout: tuple[int, int, int, int, int, int, int, int],
    positions: dict[str, int],
    kinds: list[str],
) -> list[Any] | None: ...
def request_features(body: bytes, features_field: str | None = None) -> tuple[str, int] | None: ...
def cut_objects(text: bytes) -> tuple[bytes, bytes, bytes] | None: ...
def untracked(capture: tuple[Any, ...]) -> tuple[Any, ...]: ...

@final
class NativeSchema:
    """The record schema as the extension holds it."""

    def __init__(
        self, columns: list[tuple[str, str, bool]], metadata: list[tuple[str, str]]
    ) -> None: ...

@final
class NativeBatch:
    """One record batch held by the extension; pyarrow reads it through the C Data
    Interface."""

    @property
    def num_rows(self) -> int: ...
    def __len__(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]: ...
    @staticmethod
    def from_arrow(source: object) -> NativeBatch: ...
    def by_day(self, column: str) -> list[tuple[int, NativeBatch]]: ...
    def has_schema(self, schema: NativeSchema) -> bool: ...

@final
class ParquetFile:
    """One Parquet file being written by the extension."""

    def __init__(
        self,
        path: str,
        schema: NativeSchema,
        compression: str,
        dictionary: list[str],
        statistics: list[str],
    ) -> None: ...
    def write(self, batch: NativeBatch) -> None: ...
    @property
    def size(self) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def abandon(self) -> None: ...

def build_batch(
    schema: NativeSchema, columns: list[tuple[Any, ...]], rows: int, coerce: Any
) -> NativeBatch: ...
def concat_batches(schema: NativeSchema, batches: list[NativeBatch]) -> NativeBatch: ...
def decode_records(
    schema: NativeSchema,
    values: list[bytes],
    json_columns: list[str],
    uuid_columns: list[str],
    version: tuple[str, int],
) -> NativeBatch | None: ...
