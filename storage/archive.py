"""Portable session archives: one zip file holding the database snapshot and the result files.

Layout (format version 1)::

    manifest.json                 {"format": "implicit-studio-session", "format_version": 1, ...}
    session.db                    SQLite snapshot made with the backup API (journal mode DELETE)
    files/ab/abcdef…<64 hex>.ext  every file a row refers to, named by its SHA-256

Importing checks everything before writing anything: member names (no absolute paths, drive
letters, backslashes or ``..``), no symlinks, no duplicate names, total uncompressed size and
archive size under ``max_bytes``; then it extracts only known members, counts the bytes really
decompressed, verifies each file's SHA-256 against its name, opens the session (migrating an
older one) and runs an integrity check.  On any failure what was written is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from .errors import ArchiveError, MissingFileError, StorageError
from .filestore import destination_error, fsync_dir, os_error_to_storage

FORMAT = "implicit-studio-session"
FORMAT_VERSION = 1
_FILE_MEMBER = re.compile(r"^files/([0-9a-f]{2})/([0-9a-f]{64})\.([a-z0-9][a-z0-9_-]{0,15})$")
_STORED_EXTS = {"png", "jpg", "jpeg", "webp", "npz", "gz", "zip", "safetensors"}


def export_archive(store, path: Path, snapshot_database) -> Path:
    """Write ``store``'s session as an archive; ``snapshot_database(src, dest)`` copies the live
    database consistently (the store passes its own, so this module does not import it)."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ArchiveError(f"{path} is a folder; give a file name for the archive.")
    if not path.parent.is_dir():
        raise ArchiveError(f"The folder {path.parent} does not exist.")
    tmp = path.with_name(path.name + ".part")
    try:
        with tempfile.TemporaryDirectory(prefix="implicit-studio-export-") as td:
            snap = Path(td) / "session.db"
            snapshot_database(store.db_path, snap)
            conn = sqlite3.connect(snap)
            try:
                refs = sorted({(r[0], r[1]) for q in ("SELECT sha256, ext FROM results",
                                                       "SELECT sha256, ext FROM canvas_edits")
                               for r in conn.execute(q)})
                rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
                meta = conn.execute("SELECT name, app_version FROM session_meta").fetchone()
            finally:
                conn.close()
            total = snap.stat().st_size
            with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
                members = []
                for sha, ext in refs:
                    src = store.files.path_for(sha, ext)
                    if not src.is_file():
                        raise MissingFileError(
                            f"Cannot export: the file {src.name} of the session is missing. "
                            "Run an integrity check to see which results are affected."
                        )
                    members.append((src, f"files/{sha[:2]}/{sha}.{ext}", ext))
                    total += src.stat().st_size
                manifest = {
                    "format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": rev,
                    "session_name": meta[0] if meta else None,
                    "app_version": meta[1] if meta else None, "exported_at": time.time(),
                    "file_count": len(members), "total_bytes": total,
                }
                zf.writestr("manifest.json", json.dumps(manifest, indent=2),
                            compress_type=zipfile.ZIP_DEFLATED)
                zf.write(snap, "session.db", compress_type=zipfile.ZIP_DEFLATED)
                for src, name, ext in members:
                    ctype = zipfile.ZIP_STORED if ext in _STORED_EXTS else zipfile.ZIP_DEFLATED
                    zf.write(src, name, compress_type=ctype)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except StorageError:
        _unlink(tmp)
        raise
    except OSError as exc:
        _unlink(tmp)
        raise destination_error(exc, path) from exc
    return path


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def check_member_name(name: str) -> str | None:
    """Why a member name is unsafe, or None if it is a safe relative path."""
    if not name:
        return "an empty name"
    if "\x00" in name:
        return "a NUL character"
    if "\\" in name:
        return "a backslash (Windows path separator)"
    if name.startswith("/"):
        return "an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "a drive letter"
    parts = name.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        return "a '..' component that would leave the target folder"
    if any(p == "" for p in parts):
        return "an empty path component"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def import_archive(archive: Path, target: Path, *, max_bytes: int, open_store):
    """Unpack ``archive`` into ``target`` and return the session opened with ``open_store(folder)``
    (the store passes ``SessionStore.open``, so this module does not import it)."""
    archive, target = Path(archive), Path(target)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError("max_bytes must be a positive number of bytes.")
    if not archive.is_file():
        raise ArchiveError(f"There is no archive file at {archive}.")
    if archive.stat().st_size > max_bytes:
        raise ArchiveError(
            f"The archive {archive.name} is {archive.stat().st_size} bytes, over the limit of "
            f"{max_bytes} bytes; it was not imported."
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArchiveError(
            f"The target {target} already exists and is not an empty folder; import into a new "
            "folder so that no session is overwritten."
        )
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{archive.name} is not a readable session archive ({exc}).") from exc
    with zf:
        plan = _plan(zf, archive, max_bytes)
        created = not target.exists()
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error_to_storage(exc, f"The folder {target}") from exc
        root = target.resolve()
        store = None
        try:
            written = 0
            for info in plan:
                dest = (root / info.filename).resolve()
                if root not in dest.parents:  # defence in depth; _plan already refused these
                    raise ArchiveError(f"Archive member {info.filename!r} would leave {target}.")
                dest.parent.mkdir(parents=True, exist_ok=True)
                m = _FILE_MEMBER.match(info.filename)
                digest = hashlib.sha256()
                count = 0
                with zf.open(info) as src, open(dest, "xb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        count += len(chunk)
                        written += len(chunk)
                        if count > info.file_size or written > max_bytes:
                            raise ArchiveError(
                                f"Archive member {info.filename!r} decompresses to more than it "
                                f"declares (or past the {max_bytes}-byte limit); import stopped."
                            )
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if m and digest.hexdigest() != m.group(2):
                    raise ArchiveError(
                        f"Archive member {info.filename!r} is damaged (its content does not "
                        "match its SHA-256 name); import stopped."
                    )
            store = open_store(target)
            report = store.integrity_check()
            if not report.ok:
                raise ArchiveError(
                    f"The imported session fails its integrity check: {report.problems[0]}"
                    + (f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1
                       else "")
                )
            return store
        except BaseException as exc:
            if store is not None:
                store.close()
            _cleanup(target, created)
            if isinstance(exc, (StorageError, KeyboardInterrupt)):
                raise
            if isinstance(exc, zipfile.BadZipFile):
                raise ArchiveError(f"The archive {archive.name} is damaged: {exc}.") from exc
            if isinstance(exc, OSError):
                raise os_error_to_storage(exc, f"The imported session in {target}") from exc
            raise


def _plan(zf: zipfile.ZipFile, archive: Path, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Validate every member and return those to extract; raise ArchiveError on anything unsafe."""
    seen: set[str] = set()
    total = 0
    plan: list[zipfile.ZipInfo] = []
    manifest = None
    for info in zf.infolist():
        name = info.filename
        why = check_member_name(name)
        if why:
            raise ArchiveError(
                f"The archive {archive.name} has a member {name!r} with {why}; it was refused and "
                "nothing was written."
            )
        if _is_symlink(info):
            raise ArchiveError(
                f"The archive {archive.name} contains a symbolic link ({name!r}); it was refused."
            )
        if name in seen:
            raise ArchiveError(f"The archive {archive.name} lists {name!r} twice; it was refused.")
        seen.add(name)
        if info.is_dir():
            continue
        total += info.file_size
        if total > max_bytes:
            raise ArchiveError(
                f"The archive {archive.name} unpacks to more than the limit of {max_bytes} bytes; "
                "it was not imported."
            )
        if name == "manifest.json":
            manifest = info
        elif name == "session.db":
            plan.append(info)
        elif (m := _FILE_MEMBER.match(name)) and m.group(1) == m.group(2)[:2]:
            plan.append(info)
        # anything else is ignored: never extracted
    if manifest is None or "session.db" not in seen:
        raise ArchiveError(
            f"{archive.name} is not an Implicit Studio session archive (manifest.json or "
            "session.db is missing)."
        )
    if manifest.file_size > 1 << 20:
        raise ArchiveError(f"The manifest of {archive.name} is implausibly large; refused.")
    try:
        data = json.loads(zf.read(manifest).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise ArchiveError(f"The manifest of {archive.name} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArchiveError(f"{archive.name} is not an Implicit Studio session archive.")
    if not isinstance(data.get("format_version"), int) or data["format_version"] > FORMAT_VERSION:
        raise ArchiveError(
            f"{archive.name} was written by a newer version of Implicit Studio (archive format "
            f"{data.get('format_version')!r}); update the application to import it."
        )
    return plan


def _cleanup(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in list(target.iterdir()) if target.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            _unlink(child)
