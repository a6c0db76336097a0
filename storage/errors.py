"""Errors raised by the session store.

Every error is a :class:`StorageError` carrying a sentence a person can act on.  Callers that only
want to show a message can catch ``StorageError`` and print ``str(exc)``.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the session store raises on purpose."""


class InvalidSessionError(StorageError):
    """The folder or file is not a usable session (not a database, unknown layout)."""


class CorruptDatabaseError(InvalidSessionError):
    """The session database is damaged or truncated."""


class NewerSchemaError(StorageError):
    """The session was written by a newer version of the application."""


class ReadOnlySessionError(StorageError):
    """A write was asked of a session that cannot be written (read-only folder or read-only open)."""


class DiskFullError(StorageError):
    """A file or the database could not be written because the disk is full."""


class StorageWriteError(StorageError):
    """A file could not be written for another operating-system reason."""


class NotFoundError(StorageError, KeyError):
    """A run, result or canvas key does not exist."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class RunNotFoundError(NotFoundError):
    """No run with that id."""


class ResultNotFoundError(NotFoundError):
    """No result with that id."""


class MissingFileError(StorageError):
    """A result row exists but its file is gone from the session folder."""


class InvalidParamsError(StorageError, ValueError):
    """Parameters, seed or other values that cannot be stored faithfully."""


class ArchiveError(StorageError):
    """A session archive is unsafe, too large or damaged."""


class MigrationError(StorageError):
    """Bringing the database schema up to date failed (the backup copy is kept)."""
