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
def request_features(body: bytes, features_field: str | None = None) -> tuple[str, int] | None: ...
def cut_objects(text: bytes) -> tuple[bytes, bytes, bytes] | None: ...
