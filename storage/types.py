"""Plain frozen records returned by the store (safe to hand to other threads; not ORM objects)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _dt_local(ts: float | None) -> _dt.datetime | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts).astimezone()


@dataclass(frozen=True)
class ResultInfo:
    id: int
    run_id: int
    position: int
    kind: str
    sha256: str
    ext: str
    size: int
    path: Path
    width: int | None = None
    height: int | None = None
    shape: tuple[int, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class RunInfo:
    id: int
    tool_id: str
    plugin: str
    plugin_version: str
    params: dict[str, Any]
    seed: int | None
    model_ref: str | None
    model_hash: str | None
    device: str
    backend: str | None
    started_at: float
    finished_at: float | None
    duration_s: float | None
    status: str
    error: str | None
    parent_run_id: int | None
    rating: int | None = None
    note: str | None = None
    tags: tuple[str, ...] = ()
    results: tuple[ResultInfo, ...] = ()
    inputs: tuple[int | None, ...] = ()  # result ids, in order; None if that result was deleted
    damage: tuple[str, ...] = ()  # what could not be read from a damaged row ("parameters: ...")
    dtype: str | None = None  # what it computed in (float32, float16, bfloat16); None: not recorded

    @property
    def damaged(self) -> bool:
        """True when part of this run's record could not be read (see :attr:`damage`)."""
        return bool(self.damage)

    @property
    def started(self) -> _dt.datetime:
        return _dt_local(self.started_at)

    @property
    def finished(self) -> _dt.datetime | None:
        return _dt_local(self.finished_at)

    @property
    def prompt(self) -> str | None:
        p = self.params.get("prompt")
        return p if isinstance(p, str) else None


@dataclass(frozen=True)
class NewResult:
    """A result to store with :meth:`SessionStore.record_run`."""

    kind: str
    data: bytes
    ext: str
    width: int | None = None
    height: int | None = None
    shape: tuple[int, ...] | list[int] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class CanvasState:
    """Persisted edit history of one canvas: ``edits[:position]`` are applied, the rest can be redone."""

    key: str
    position: int
    edits: tuple[bytes, ...]
    labels: tuple[str | None, ...]

    @property
    def applied(self) -> tuple[bytes, ...]:
        return self.edits[: self.position]

    @property
    def can_undo(self) -> bool:
        return self.position > 0

    @property
    def can_redo(self) -> bool:
        return self.position < len(self.edits)


@dataclass(frozen=True)
class SessionInfo:
    folder: Path
    name: str
    created_at: float
    app_version: str | None
    schema_revision: str


@dataclass(frozen=True)
class IntegrityReport:
    ok: bool
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return "ok" if self.ok else "\n".join(self.problems)


@dataclass(frozen=True)
class OrphanReport:
    removed: tuple[Path, ...]
    bytes_freed: int


@dataclass(frozen=True)
class InterruptedRun:
    """A run found ``running`` after the process that ran it stopped; marked failed on open.

    ``fatal_error`` is the first line of the fatal error that process wrote before it died
    (``"Fatal Python error: Aborted"``), when it recorded one: then the tool's plugin most likely
    crashed it.
    """

    run_id: int
    tool_id: str
    plugin: str
    pid: int | None = None
    fatal_error: str | None = None
