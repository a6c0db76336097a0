"""Content-addressed file store of a session: ``files/ab/<sha256>.<ext>``.

A file is written to a temporary name in its final directory, flushed and fsynced, renamed into
place and the directory fsynced; only then does the caller commit the row that points at it.  A
crash in between leaves at most an unreferenced file (removed by ``collect_orphans``), never a row
without its file.  Identical content with the same extension is stored once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import DiskFullError, ReadOnlySessionError, StorageWriteError

TEMP_PREFIX = ".tmp-"
_EXT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}$")
_NAME_RE = re.compile(r"^([0-9a-f]{64})\.([a-z0-9][a-z0-9_-]{0,15})$")


def normalise_ext(ext: str) -> str:
    e = (ext or "").strip().lower().lstrip(".")
    if not _EXT_RE.match(e):
        raise ValueError(
            f"File extension {ext!r} is not usable; give a short name such as 'png', 'npy' or 'ply'."
        )
    return e


def parse_name(name: str) -> tuple[str, str] | None:
    """``(sha256, ext)`` of a store file name, or None if it is not one."""
    m = _NAME_RE.match(name)
    return (m.group(1), m.group(2)) if m else None


def write_bytes_durably(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to a new file ``path`` and fsync it unless ``sync`` is False.

    The one low-level write of the store (tests inject failures here).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only file: collection checks references again anyway
        pass


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def os_error_to_storage(exc: OSError, what: str):
    """The error for a file of the session that could not be written."""
    reason = exc.strerror or exc
    if exc.errno in _FULL:
        return DiskFullError(f"The disk is full: {what} could not be written ({reason}). Nothing "
                             "already saved in the session was lost; free some space and try again.")
    if exc.errno in _DENIED:
        return ReadOnlySessionError(f"{what} could not be written because the session folder is read-only "
                                    f"({reason}). Open the session read-only or copy it somewhere writable.")
    return StorageWriteError(f"{what} could not be written: {exc}. Nothing already saved was lost.")


def destination_error(exc: OSError, path: Path):
    """The error for a file written *outside* the session at the user's request (an export, an
    archive, ``run --out``): it names that file and its folder, never the session."""
    path, reason = Path(path), exc.strerror or str(exc)
    if exc.errno in _FULL:
        return DiskFullError(f"The disk is full: {path} could not be written ({reason}). Free some space "
                             "or choose a folder on another disk.")
    if exc.errno in _DENIED:
        return StorageWriteError(f"{path} could not be written: the folder {path.parent} is read-only or "
                                 f"not yours to write to ({reason}). Choose another folder.")
    if exc.errno == errno.ENOTDIR or isinstance(exc, (FileExistsError, NotADirectoryError)):
        return StorageWriteError(f"{path} could not be written: {exc.filename or path.parent} is a file, "
                                 "not a folder.")
    return StorageWriteError(f"{path} could not be written: {reason}.")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it that is renamed into place,
    or removed when the write fails (no half-written file, no leftover). Errors are
    :func:`destination_error`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write_bytes_durably(tmp, data, sync=False)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise destination_error(exc, path) from exc


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    ext: str
    size: int
    path: Path
    written: bool  # False when identical content was already present


class FileStore:
    """Files under ``root``. ``durable=False`` skips the fsyncs: a crash of the process still
    loses nothing (the data is in the OS cache), a power cut may lose the newest files."""

    def __init__(self, root: Path, durable: bool = True):
        self.root = Path(root)
        self.durable = durable

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, data: bytes, ext: str) -> StoredFile:
        ext = normalise_ext(ext)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Result data must be bytes, not {type(data).__name__}.")
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest, ext)
        try:
            if final.is_file() and final.stat().st_size == len(data):
                _touch(final)  # young again: an orphan collection spares it until it is committed
                return StoredFile(digest, ext, len(data), final, False)
            for attempt in range(3):
                final.parent.mkdir(parents=True, exist_ok=True)
                if self._write_new(final, data, ext, last=attempt == 2):
                    break
            if self.durable:
                fsync_dir(final.parent)
        except OSError as exc:
            raise os_error_to_storage(exc, f"A {len(data)}-byte .{ext} file") from exc
        return StoredFile(digest, ext, len(data), final, True)

    def _write_new(self, final: Path, data: bytes, ext: str, last: bool) -> bool:
        """Write ``final`` through a temporary file. False when the temporary file (or its
        folder) vanished before the rename: an orphan collection in another process took it for
        a crash leftover, and the caller writes again."""
        tmp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}.{ext}"
        try:
            write_bytes_durably(tmp, data, sync=self.durable)
            os.replace(tmp, final)
        except FileNotFoundError:
            if last:
                raise
            return False
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        return True

    def iter_files(self):
        """Yield ``(path, parsed)`` for every file under the store; parsed is None for temp/foreign."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for p in sub.iterdir():
                if p.is_file() or p.is_symlink():
                    yield p, parse_name(p.name)

    def verify(self, sha256: str, ext: str) -> bool:
        p = self.path_for(sha256, ext)
        try:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest() == sha256
        except OSError:
            return False

    @staticmethod
    def age_s(path: Path) -> float:
        try:
            return time.time() - path.lstat().st_mtime
        except OSError:
            return 0.0
