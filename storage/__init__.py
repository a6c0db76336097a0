"""Session storage for Implicit Studio (no Qt): SQLite + Alembic + content-addressed files.

``from storage import SessionStore, StorageError``.  Names are imported lazily so that importing
``storage`` (e.g. for its error classes) does not import SQLAlchemy.
"""

from __future__ import annotations

from .errors import (
    ArchiveError,
    CorruptDatabaseError,
    DiskFullError,
    InvalidParamsError,
    InvalidSessionError,
    MigrationError,
    MissingFileError,
    NewerSchemaError,
    NotFoundError,
    ReadOnlySessionError,
    ResultNotFoundError,
    RunNotFoundError,
    StorageError,
    StorageWriteError,
)

_LAZY = {
    "SessionStore": ".store",
    "RunInfo": ".types",
    "ResultInfo": ".types",
    "NewResult": ".types",
    "CanvasState": ".types",
    "SessionInfo": ".types",
    "IntegrityReport": ".types",
    "OrphanReport": ".types",
    "InterruptedRun": ".types",
}

__all__ = [
    "ArchiveError", "CorruptDatabaseError", "DiskFullError", "InvalidParamsError",
    "InvalidSessionError", "MigrationError", "MissingFileError", "NewerSchemaError",
    "NotFoundError", "ReadOnlySessionError", "ResultNotFoundError", "RunNotFoundError",
    "StorageError", "StorageWriteError", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'storage' has no attribute {name!r}")
