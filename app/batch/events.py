"""What an engine reports to the batch driver (see :mod:`app.batch.engine`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EngineEvent:
    kind: str  # ready, done, lost, init-failed
    slot: str
    data: Any = None


class EngineUnavailable(RuntimeError):
    """The engine cannot be used here (Ray not installed, no cluster at the address)."""
