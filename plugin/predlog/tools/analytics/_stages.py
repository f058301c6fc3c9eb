"""How long analytics report their progress: a stage name, and a count when there is one."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """``progress(stage, done, total)``: a new ``stage`` starts; ``done`` of ``total`` steps."""

    def __call__(self, stage: str, done: int | None = None, total: int | None = None) -> None: ...


def quiet(stage: str, done: int | None = None, total: int | None = None) -> None:
    """The progress of a caller that does not watch."""
