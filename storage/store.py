"""The session store: one folder = ``session.db`` (SQLite, WAL) + content-addressed ``files/``.

One writer connection, guarded by a lock, does every write; reads use a small pool of separate
connections, so reader threads never wait on the writer (WAL).  Everything returned is a frozen
dataclass from :mod:`storage.types`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, delete, event, func, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool, StaticPool

from . import filestore, jsonutil, rows
from .errors import (
    CorruptDatabaseError,
    DiskFullError,
    InvalidParamsError,
    InvalidSessionError,
    MigrationError,
    MissingFileError,
    NewerSchemaError,
    ReadOnlySessionError,
    ResultNotFoundError,
    RunNotFoundError,
    StorageError,
)
from .filestore import TEMP_PREFIX, FileStore, normalise_ext, os_error_to_storage
from .migrations import HEAD_REVISION, KNOWN_REVISIONS, READABLE_REVISIONS
from .models import (
    FTS_TABLE,
    CanvasEdit,
    CanvasHistory,
    Result,
    Run,
    RunInput,
    RunTag,
    SessionMeta,
)
from .owners import RunLock, RunOwners
from .types import (
    CanvasState,
    IntegrityReport,
    InterruptedRun,
    NewResult,
    OrphanReport,
    ResultInfo,
    RunInfo,
    SessionInfo,
)

_log = logging.getLogger("implicit_studio.storage")

DB_NAME = "session.db"
FILES_DIR = "files"
BACKUP_DIR = "backups"
CANVAS_EXT = "edit"
FINISHED_STATUSES = ("ok", "failed", "cancelled")
DEFAULT_ARCHIVE_LIMIT = 4 * 1024**3
#: A temporary file younger than this may be a write under way in another process (collect_orphans).
TEMP_GRACE_S = 60.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

_runs = Run.__table__
_results = Result.__table__
_tags = RunTag.__table__


def _app_version() -> str:
    try:
        from importlib.metadata import version

        return version("implicit-studio")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"


def _translate_db_error(exc: BaseException, folder: Path, what: str) -> StorageError:
    orig = getattr(exc, "orig", exc)
    msg = str(orig).lower()
    code = getattr(orig, "sqlite_errorcode", None)
    if "malformed" in msg or "not a database" in msg or code in (11, 26):
        return CorruptDatabaseError(
            f"The session database in {folder} is damaged ({orig}); {what} failed. The file was "
            f"left as it is; result files in {folder / FILES_DIR} are untouched. 'implicit-studio "
            f"session repair --session {folder}' copies every readable run and file into a new "
            f"session (or restore a copy from {folder / BACKUP_DIR} or an exported archive)."
        )
    if "full" in msg or code == 13:
        return DiskFullError(
            f"The disk is full: {what} could not be saved in {folder}. Nothing already saved in "
            "the session was lost; free some space and try again."
        )
    if "readonly" in msg or "read-only" in msg or code == 8:
        return ReadOnlySessionError(
            f"The session in {folder} is read-only, so {what} could not be saved. It can still "
            "be opened read-only to look at it (the history and export commands do), or copied "
            "somewhere writable."
        )
    if ("disk i/o error" in msg or code == 10) and _nearly_full(folder):
        return DiskFullError(
            f"The disk is full: {what} could not be saved in {folder}. Nothing already saved in "
            "the session was lost; free some space and try again."
        )
    if "locked" in msg or "busy" in msg:
        return StorageError(
            f"The session in {folder} is busy (another program is writing to it); {what} failed. "
            "Try again in a moment."
        )
    if "unable to open" in msg:
        return ReadOnlySessionError(
            f"The session database in {folder} cannot be opened for writing ({orig}). Check the "
            "folder's permissions; reading commands (history, export) open it read-only."
        )
    return StorageError(f"{what} failed in the session {folder}: {orig}")


def _nearly_full(folder: Path, margin: int = 64 * 1024**2) -> bool:
    """True when the disk holding ``folder`` has less than ``margin`` bytes free (SQLite reports
    a write that ran out of space as a plain "disk I/O error")."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def check_db_header(db: Path, folder: Path) -> None:
    """Refuse a file that is not SQLite or is shorter than its own header says (truncated)."""
    size = db.stat().st_size
    if size == 0:
        return
    with open(db, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise CorruptDatabaseError(
            f"{db} is not a SQLite database (it is damaged, truncated or was overwritten). It was "
            f"left unchanged; result files in {folder / FILES_DIR} are untouched. Restore a backup "
            f"from {folder / BACKUP_DIR} or an exported archive, or choose another session folder."
        )
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, pages = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    wal = db.with_name(db.name + "-wal")
    live = wal.exists() and wal.stat().st_size > 0  # another process may be checkpointing
    if pages and change_counter == valid_for and size < pages * page_size and not live:
        raise CorruptDatabaseError(
            f"{db} is truncated: it holds {size} bytes but its header says {pages * page_size}. "
            f"It was left unchanged; result files in {folder / FILES_DIR} are untouched. Restore "
            f"a backup from {folder / BACKUP_DIR} or an exported archive."
        )


def _hot_journal(db: Path) -> bool:
    """A rollback journal left by a process killed in the middle of a transaction."""
    journal = db.with_name(db.name + "-journal")
    try:
        return journal.is_file() and journal.stat().st_size > 0
    except OSError:
        return False


def _revision_number(revision: str) -> int:
    """The number a revision id starts with ("0002_add_x" -> 2); -1 when it has none."""
    m = re.match(r"\d+", revision or "")
    return int(m.group()) if m else -1


def _interrupted_message(tool_id: str, plugin: str, fatal: str | None) -> str:
    if fatal:
        return (f"Interrupted: the application crashed ({fatal}) while tool {tool_id!r} of plugin "
                f"{plugin!r} was running; if it happens again, disable that plugin "
                f"('implicit-studio plugins disable {plugin}').")
    return (f"Interrupted: the application stopped before this run finished (it was closed, "
            f"killed or crashed while tool {tool_id!r} of plugin {plugin!r} was running).")


def _fts_query(text_: str) -> str | None:
    tokens = re.findall(r"\w+", text_ or "", flags=re.UNICODE)
    if not tokens:
        return None
    return " ".join('"' + t.replace('"', '""') + '"*' for t in tokens)


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParamsError(f"{what} must be a non-empty string, not {value!r}.")
    return jsonutil.safe_text(value)


_text = jsonutil.safe_text  # every other text column: valid UTF-8, surrogates escaped


def run_columns(has_dtype: bool = True) -> str:
    """The columns of a ``runs`` row as :func:`storage.rows.run_info` reads them; a database of
    revision 0001 has no ``dtype`` column (``has_dtype`` False): it reads as NULL."""
    return SessionStore._RUN_COLS if has_dtype else SessionStore._RUN_COLS.replace(", dtype", ", NULL AS dtype")



class SessionStore:
    """A session folder. Use :meth:`open`; close with :meth:`close` or a ``with`` block."""

    # ------------------------------------------------------------------ opening
    def __init__(self, folder: Path, *, readonly: bool, _token: object = None):
        if _token is not _OPEN_TOKEN:
            raise TypeError("Use SessionStore.open(folder) to open a session.")
        self.folder = Path(folder)
        self.db_path = self.folder / DB_NAME
        self.files = FileStore(self.folder / FILES_DIR)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._closed = False
        self._writer = None
        self._reader = None
        self.damage: tuple[str, ...] = ()  # what quick_check found wrong on open; () when sound
        self.owners = RunOwners(self.folder)
        self._run_locks: dict[int, RunLock] = {}

    @staticmethod
    def default_session_dir() -> Path:
        """The default session folder: ``<user data dir>/sessions/default``.

        ``IMPLICIT_STUDIO_DATA_DIR`` overrides the user data directory (tests, portable installs).
        """
        override = os.environ.get("IMPLICIT_STUDIO_DATA_DIR")
        if override:
            base = Path(override)
        else:
            import platformdirs

            base = Path(platformdirs.user_data_dir("implicit-studio", appauthor=False))
        return base / "sessions" / "default"

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike | None = None,
        *,
        readonly: bool = False,
        name: str | None = None,
        app_version: str | None = None,
        durable: bool = True,
    ) -> SessionStore:
        """Open (creating if missing) the session in ``folder`` and bring its schema up to date.

        ``readonly=True`` never writes (works on read-only media).  ``durable=False`` skips the
        fsyncs of files and commits (for bulk imports and benchmarks): a crash of the process
        still loses nothing committed, but a power cut may lose the newest runs.  A backup copy is made in ``backups/`` before a schema
        migration.
        """
        folder = Path(folder) if folder is not None else cls.default_session_dir()
        folder = folder.expanduser()
        store = cls(folder, readonly=readonly, _token=_OPEN_TOKEN)
        store.files.durable = durable
        store._open(name=name, app_version=app_version or _app_version(), durable=durable)
        return store

    def _open(self, *, name: str | None, app_version: str, durable: bool) -> None:
        folder, db = self.folder, self.db_path
        self._check_folder()
        if _hot_journal(db):
            self._roll_back_journal()
        if db.exists():
            if not db.is_file():
                raise InvalidSessionError(f"{db} is not a file.")
            check_db_header(db, folder)
            if db.stat().st_size == 0 and self._has_files():
                raise CorruptDatabaseError(
                    f"{db} is empty although the session holds result files: the database was "
                    "truncated or lost. It was left unchanged; restore a backup from "
                    f"{folder / BACKUP_DIR} or an exported archive."
                )
        revision = self._read_revision()
        self._check_revision(revision)
        # a session of an older readable revision, opened read-only, lacks the later columns
        self._run_cols = run_columns(revision in (None, HEAD_REVISION) or not self.readonly)
        if self.readonly:
            if revision is None:
                raise InvalidSessionError(
                    f"There is no session in {folder} yet: its creation was interrupted before "
                    "anything was saved. Opening it for writing (a run) finishes creating it."
                )
            if revision not in READABLE_REVISIONS:
                raise StorageError(
                    f"The session in {folder} uses an older database schema ({revision!r}) and "
                    "must be upgraded before it can be read: open it once for writing (for "
                    "example with a run) in a folder you can write to."
                )
            immutable = not os.access(folder, os.W_OK)
            self._reader = self._make_engine(readonly=True, immutable=immutable, durable=durable)
        else:
            if revision != HEAD_REVISION:
                self._migrate(revision, name=name, app_version=app_version)
            self._writer = self._make_engine(readonly=False, immutable=False, durable=durable)
            self._reader = self._make_engine(readonly=True, immutable=False, durable=durable)
        self.damage = self._quick_check()
        if self.damage:
            return  # reads go on where they can; writes are refused (see _need_writable)
        try:
            self.info()
        except StorageError:
            self.close()
            raise

    def _check_folder(self) -> None:
        folder, db = self.folder, self.db_path
        if folder.exists() and not folder.is_dir():
            raise InvalidSessionError(
                f"{folder} is a file, not a session folder. Give a folder (it is created if it "
                "does not exist yet)."
            )
        if self.readonly:
            if not db.is_file():
                raise InvalidSessionError(f"There is no session in {folder} (no {DB_NAME}).")
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReadOnlySessionError(
                f"The session folder {folder} cannot be created ({exc.strerror or exc}). "
                "Choose a folder you can write to."
            ) from exc
        if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise ReadOnlySessionError(
                f"The session folder {folder} is read-only, so nothing can be added to it. It "
                "can still be opened read-only to look at it (the history and export commands "
                "do); copy it somewhere writable to add to it."
            )

    def _roll_back_journal(self) -> None:
        """Undo the half-written transaction a killed process left in a rollback journal.

        SQLite does this on the first read of a connection that may write; a read-only
        connection cannot, and would fail on every open.
        """
        if not os.access(self.folder, os.W_OK):
            raise ReadOnlySessionError(
                f"The session in {self.folder} was interrupted while it was being written and must "
                f"be recovered before it can be read ({DB_NAME}-journal is left over), which "
                "needs a folder that can be written to. Copy the folder somewhere writable "
                "(with that file) and open it there."
            )
        try:
            conn = sqlite3.connect(str(self.db_path), timeout=10.0)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise _translate_db_error(exc, self.folder, "Recovering the interrupted write") from exc

    def _check_revision(self, revision: str | None) -> None:
        if revision is None or revision in KNOWN_REVISIONS:
            return
        if _revision_number(revision) > _revision_number(HEAD_REVISION):
            raise NewerSchemaError(
                f"The session in {self.folder} was written by a newer version of Implicit Studio "
                f"(database schema {revision!r}; this version knows up to {HEAD_REVISION!r}). "
                "Update Implicit Studio to open it. The session was not changed."
            )
        raise NewerSchemaError(
            f"The session in {self.folder} has a database schema revision ({revision!r}) that no "
            f"version of Implicit Studio wrote (this version knows "
            f"{', '.join(KNOWN_REVISIONS)}): it was changed by another program or damaged. The "
            "session was not changed; 'implicit-studio session repair' copies what it can read "
            "into a new session."
        )

    def _quick_check(self) -> tuple[str, ...]:
        """SQLite's ``quick_check`` (every page and row readable, in order): ``()`` when the
        database is sound, else what it found."""
        try:
            with self._reader.connect() as c:
                found = [str(r[0]) for r in c.exec_driver_sql("PRAGMA quick_check")]
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            return (str(getattr(exc, "orig", exc)),)
        return () if found == ["ok"] else tuple(" ".join(f.split()) for f in found)

    def _has_files(self) -> bool:
        return any(True for _ in self.files.iter_files())

    def _raw_connect(self, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
        if readonly:
            uri = "file:" + quote(self.db_path.as_posix()) + "?mode=ro"
            if immutable:
                uri += "&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.db_path), timeout=10.0, check_same_thread=False)
        conn.isolation_level = None
        return conn

    def _read_revision(self) -> str | None:
        """The alembic revision stored in the db, None for a new/empty db."""
        if not self.db_path.exists() or self.db_path.stat().st_size == 0:
            return None
        try:
            conn = self._raw_connect(readonly=True, immutable=not os.access(self.folder, os.W_OK))
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if "alembic_version" not in tables:
                    if tables:
                        raise InvalidSessionError(
                            f"{self.db_path} is a SQLite database but not an Implicit Studio "
                            "session (it has no schema version). It was left unchanged; choose "
                            "another folder."
                        )
                    return None
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                return row[0] if row else None
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise _translate_db_error(exc, self.folder, "Opening the session") from exc

    def _migrate(self, revision: str | None, *, name: str | None, app_version: str) -> None:
        from . import migrations

        backup = None
        if revision is not None:
            backup = self._backup_copy(f"before-{HEAD_REVISION}-from-{revision}")
        engine = self._make_engine(readonly=False, immutable=False, durable=True, migrating=True)
        try:
            with engine.connect() as conn:
                migrations.upgrade(conn)
                conn.commit()
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise MigrationError(f"foreign key check failed after migration: {problems[:5]}")
            if revision is None:
                with Session(engine) as s, s.begin():
                    if s.get(SessionMeta, 1) is None:
                        s.add(SessionMeta(id=1, name=name or self.folder.name or "session",
                                          created_at=time.time(), app_version=app_version))
        except StorageError:
            raise
        except Exception as exc:
            hint = f" The copy made before migrating is {backup}." if backup else ""
            if isinstance(exc, sa_exc.DBAPIError):
                err = _translate_db_error(exc, self.folder, "Upgrading the session")
                raise type(err)(str(err) + hint) from exc
            raise MigrationError(
                f"Upgrading the session in {self.folder} to schema {HEAD_REVISION} failed: "
                f"{exc}.{hint}"
            ) from exc
        finally:
            engine.dispose()

    def _backup_copy(self, label: str) -> Path:
        """Copy the database (consistent snapshot via the SQLite backup API) into ``backups/``."""
        dest_dir = self.folder / BACKUP_DIR
        dest_dir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = dest_dir / f"session-{stamp}-{label}.db"
        snapshot_database(self.db_path, dest)
        return dest

    def _make_engine(self, *, readonly: bool, immutable: bool, durable: bool,
                     migrating: bool = False):
        def creator():
            return self._raw_connect(readonly=readonly, immutable=immutable)

        if readonly:
            engine = create_engine("sqlite+pysqlite://", creator=creator, poolclass=QueuePool,
                                   pool_size=4, max_overflow=16)
        else:
            engine = create_engine("sqlite+pysqlite://", creator=creator, poolclass=StaticPool)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA foreign_keys = " + ("OFF" if migrating else "ON"))
                cur.execute("PRAGMA synchronous = " + ("FULL" if durable else "NORMAL"))
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._lock:
            self._closed = True
            for lock in self._run_locks.values():  # runs left running: another start recovers them
                lock.abandon()
            self._run_locks.clear()
            for eng in (self._writer, self._reader):
                if eng is not None:
                    eng.dispose()
            if self._writer is not None:
                # Fold the WAL back into the database (never waits on other processes; SQLite
                # also checkpoints when the last connection closes).
                try:
                    conn = sqlite3.connect(str(self.db_path), timeout=0)
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    finally:
                        conn.close()
                except sqlite3.Error:
                    pass
            self._writer = self._reader = None

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SessionStore({str(self.folder)!r}{', readonly' if self.readonly else ''})"

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"The session {self.folder} is closed.")

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """A write transaction on the single writer connection (BEGIN IMMEDIATE)."""
        self._need_writable(what)
        with self._lock:
            try:
                with Session(self._writer, expire_on_commit=False, autoflush=False) as s:
                    with s.begin():
                        yield s
            except StorageError:
                raise
            except sa_exc.IntegrityError as exc:
                raise StorageError(f"{what} was refused by the database: {exc.orig}") from exc
            except (sa_exc.DBAPIError, sqlite3.Error) as exc:
                raise _translate_db_error(exc, self.folder, what) from exc

    def _need_writable(self, what: str) -> None:
        self._check_open()
        if self.damage:
            raise CorruptDatabaseError(
                f"The session database in {self.folder} is damaged ({'; '.join(self.damage[:3])}), "
                f"so {what} was refused: nothing more is written to it, so what it holds is not "
                f"made worse. 'implicit-studio session repair --session {self.folder}' copies "
                "every readable run and file into a new session and leaves this one as it is."
            )
        if self.readonly or self._writer is None:
            raise ReadOnlySessionError(
                f"The session {self.folder} was opened read-only; {what} is not possible."
            )

    def _need_run_exists(self, run_id: int) -> None:
        with self._read() as c:
            if c.execute(select(_runs.c.id).where(_runs.c.id == run_id)).first() is None:
                raise RunNotFoundError(
                    f"Run {run_id} does not exist in the session {self.folder}."
                )

    @contextlib.contextmanager
    def _read(self, what: str = "Reading the session"):
        self._check_open()
        try:
            with self._reader.connect() as conn:
                yield conn
        except StorageError:
            raise
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            raise _translate_db_error(exc, self.folder, what) from exc

    # ------------------------------------------------------------------ meta
    def info(self) -> SessionInfo:
        with self._read() as c:
            meta = self._rows(c, "SELECT name, created_at, app_version FROM session_meta")
            rev = self._rows(c, "SELECT version_num FROM alembic_version")
        rev = rev[0][0] if rev else None
        if not meta:
            return SessionInfo(self.folder, self.folder.name, 0.0, None, rev)
        name, created, version = meta[0]
        return SessionInfo(self.folder, name, created, version, rev)

    def set_name(self, name: str) -> None:
        name = _check_name(name, "The session name")
        with self._write("Renaming the session") as s:
            s.execute(update(SessionMeta).where(SessionMeta.id == 1).values(name=name))

    # ------------------------------------------------------------------ recording
    def begin_run(
        self,
        *,
        tool_id: str,
        plugin: str,
        plugin_version: str,
        params: dict | None,
        seed: int | None,
        model_ref: str | None = None,
        model_hash: str | None = None,
        device: str = "cpu",
        backend: str | None = None,
        inputs: Sequence[int] = (),
        parent_run_id: int | None = None,
        started_at: float | None = None,
        dtype: str | None = None,
    ) -> int:
        """Record the start of a run (status ``running``) and return its id.

        ``inputs`` are result ids the run takes; the run becomes a child of the run that made the
        first one (override with ``parent_run_id``). ``dtype``: what it computes in (float32...).
        """
        lock = None
        try:
            with self._write("Recording the run") as s:
                run = self._insert_run(s, tool_id=tool_id, plugin=plugin,
                                       plugin_version=plugin_version, params=params, seed=seed,
                                       model_ref=model_ref, model_hash=model_hash, device=device,
                                       dtype=dtype, backend=backend, inputs=inputs,
                                       parent_run_id=parent_run_id, started_at=started_at)
                # locked before the commit: a recovery in another process (which must wait for
                # this transaction) never sees the run running without its owner's lock
                lock = self._lock_run(run.id, run.tool_id, run.plugin)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self._run_locks[run.id] = lock
        return run.id

    def _lock_run(self, run_id: int, tool_id: str, plugin: str) -> RunLock:
        try:
            return self.owners.acquire(run_id, tool_id, plugin)
        except OSError as exc:
            raise os_error_to_storage(exc, f"The lock file of run {run_id}") from exc

    def _insert_run(self, s: Session, *, tool_id, plugin, plugin_version, params, seed, model_ref,
                    model_hash, device, backend, inputs, parent_run_id, started_at, dtype=None) -> Run:
        tool_id = _check_name(tool_id, "The tool id")
        plugin = _check_name(plugin, "The plugin name")
        if not isinstance(plugin_version, str):
            raise InvalidParamsError(f"The plugin version must be a string, not {plugin_version!r}.")
        params_json = jsonutil.dumps_params(params)
        seed = jsonutil.check_seed(seed)
        inputs = [int(i) for i in inputs]
        input_runs: dict[int, int] = {}
        if inputs:
            rows = s.execute(select(Result.id, Result.run_id).where(Result.id.in_(inputs))).all()
            input_runs = {r.id: r.run_id for r in rows}
            missing = [i for i in inputs if i not in input_runs]
            if missing:
                raise ResultNotFoundError(
                    f"Input result {missing[0]} does not exist in the session {self.folder}."
                )
        if parent_run_id is None and inputs:
            parent_run_id = input_runs[inputs[0]]
        elif parent_run_id is not None and s.get(Run, parent_run_id) is None:
            raise RunNotFoundError(f"Parent run {parent_run_id} does not exist in {self.folder}.")
        run = Run(tool_id=tool_id, plugin=plugin, plugin_version=_text(plugin_version),
                  params_json=params_json, seed=seed, model_ref=_text(model_ref),
                  model_hash=_text(model_hash), device=_text(device or "cpu"), dtype=_text(dtype),
                  backend=_text(backend),
                  started_at=time.time() if started_at is None else float(started_at),
                  status="running", parent_run_id=parent_run_id)
        s.add(run)
        s.flush()
        for pos, rid in enumerate(inputs):
            s.add(RunInput(run_id=run.id, position=pos, result_id=rid))
        prompt_text, params_text = jsonutil.search_texts(jsonutil.loads_params(params_json))
        s.execute(text(f"INSERT INTO {FTS_TABLE}(rowid, prompt, params, note) "
                       "VALUES (:id, :p, :q, '')"),
                  {"id": run.id, "p": prompt_text, "q": params_text + "\n" + tool_id})
        return run

    def add_result(self, run_id: int, kind: str, data: bytes, ext: str, *, width: int | None = None,
                   height: int | None = None, shape: Sequence[int] | None = None,
                   metadata: dict | None = None) -> int:
        """Store ``data`` as a result of ``run_id``; the file is durable before the row commits."""
        spec = NewResult(kind, data, ext, width, height, shape, metadata)
        self._check_result(spec)
        self._need_writable("saving a result")
        with self._lock:
            self._need_run_exists(run_id)
            stored = self.files.put(spec.data, spec.ext)
            with self._write("Saving the result") as s:
                self._keep_files([(stored, spec.data)])
                if s.get(Run, run_id) is None:
                    raise RunNotFoundError(f"Run {run_id} does not exist in {self.folder}.")
                pos = s.execute(select(func.count()).select_from(_results)
                                .where(_results.c.run_id == run_id)).scalar_one()
                row = self._result_row(run_id, pos, spec, stored)
                s.add(row)
                s.flush()
                return row.id

    def _keep_files(self, stored: list[tuple[Any, bytes]]) -> None:
        """Inside a write transaction (no orphan collection can run meanwhile): write again any
        file that an orphan collection removed between its write and this transaction (identical
        content already present is reused without writing, so it may have been unreferenced)."""
        for st, data in stored:
            if not st.path.is_file():
                self.files.put(data, st.ext)

    @staticmethod
    def _check_result(spec: NewResult) -> None:
        _check_name(spec.kind, "The result kind")
        normalise_ext(spec.ext)
        if not isinstance(spec.data, (bytes, bytearray, memoryview)):
            raise InvalidParamsError(
                f"Result data must be bytes (encode images to PNG first), not "
                f"{type(spec.data).__name__}."
            )
        for n, v in (("width", spec.width), ("height", spec.height)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InvalidParamsError(f"The result {n} must be a whole number >= 0, not {v!r}.")
        if spec.shape is not None and not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in spec.shape
        ):
            raise InvalidParamsError(f"The result shape must be whole numbers, not {spec.shape!r}.")
        if spec.metadata is not None and not isinstance(spec.metadata, dict):
            raise InvalidParamsError("Result metadata must be a dict.")
        jsonutil.dumps_any(spec.metadata, "metadata")

    @staticmethod
    def _result_row(run_id: int, pos: int, spec: NewResult, stored) -> Result:
        return Result(run_id=run_id, position=pos, kind=_text(spec.kind), sha256=stored.sha256,
                      ext=stored.ext, size=stored.size, width=spec.width, height=spec.height,
                      shape_json=jsonutil.dumps_any(list(spec.shape) if spec.shape is not None
                                                    else None, "shape"),
                      metadata_json=jsonutil.dumps_any(spec.metadata, "metadata"),
                      created_at=time.time())

    def finish_run(self, run_id: int, status: str = "ok", error: str | None = None, *,
                   finished_at: float | None = None, duration_s: float | None = None) -> None:
        """Mark a run finished: ``ok``, ``failed`` or ``cancelled`` (with an optional error text)."""
        if status not in FINISHED_STATUSES:
            raise InvalidParamsError(
                f"A run finishes as one of {', '.join(FINISHED_STATUSES)}, not {status!r}."
            )
        with self._write("Finishing the run") as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFoundError(f"Run {run_id} does not exist in {self.folder}.")
            end = time.time() if finished_at is None else float(finished_at)
            run.status, run.error, run.finished_at = status, _text(error), end
            run.duration_s = max(0.0, end - run.started_at) if duration_s is None else duration_s
        lock = self._run_locks.pop(run_id, None)
        if lock is not None:
            lock.release()

    def record_run(
        self,
        *,
        tool_id: str,
        plugin: str,
        plugin_version: str,
        params: dict | None,
        seed: int | None,
        results: Iterable[NewResult | dict] = (),
        status: str = "ok",
        error: str | None = None,
        model_ref: str | None = None,
        model_hash: str | None = None,
        device: str = "cpu",
        backend: str | None = None,
        inputs: Sequence[int] = (),
        parent_run_id: int | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        duration_s: float | None = None,
        dtype: str | None = None,
    ) -> int:
        """Begin + results + finish in one transaction; returns the run id once committed."""
        if status not in FINISHED_STATUSES:
            raise InvalidParamsError(
                f"A recorded run has status {', '.join(FINISHED_STATUSES)}, not {status!r}."
            )
        specs = [r if isinstance(r, NewResult) else NewResult(**r) for r in results]
        for spec in specs:
            self._check_result(spec)
        jsonutil.dumps_params(params)  # validate before writing any file
        jsonutil.check_seed(seed)
        self._need_writable("recording a run")
        with self._lock:
            stored = [self.files.put(spec.data, spec.ext) for spec in specs]
            with self._write("Recording the run") as s:
                self._keep_files([(st, spec.data) for st, spec in zip(stored, specs)])
                run = self._insert_run(s, tool_id=tool_id, plugin=plugin,
                                       plugin_version=plugin_version, params=params, seed=seed,
                                       model_ref=model_ref, model_hash=model_hash, device=device,
                                       dtype=dtype, backend=backend, inputs=inputs,
                                       parent_run_id=parent_run_id, started_at=started_at)
                for pos, (spec, st) in enumerate(zip(specs, stored)):
                    s.add(self._result_row(run.id, pos, spec, st))
                end = time.time() if finished_at is None else float(finished_at)
                run.status, run.error, run.finished_at = status, _text(error), end
                run.duration_s = (max(0.0, end - run.started_at) if duration_s is None
                                  else float(duration_s))
                s.flush()
                return run.id

    def recover_interrupted(self, error: str | None = None) -> list[int]:
        """Mark runs left ``running`` by a process that stopped as failed; returns their ids.

        A run is touched only when no live process owns it (see :mod:`storage.owners`), so a
        second process writing to the same session keeps its runs. Call it at start-up.
        """
        return [r.run_id for r in self.recover_interrupted_runs(error)]

    def recover_interrupted_runs(self, error: str | None = None) -> list[InterruptedRun]:
        """Like :meth:`recover_interrupted`, with which tool and plugin each run was and the fatal
        error its process wrote, if any (then the plugin most likely crashed the application)."""
        found: list[InterruptedRun] = []
        dead_logs: set[str] = set()
        with self._write("Recovering interrupted runs") as s:
            running = s.execute(select(Run.id, Run.tool_id, Run.plugin)
                                .where(Run.status == "running")).all()
            for run_id, tool_id, plugin in running:
                if run_id in self._run_locks:
                    continue  # this process's own run
                dead, owner = self.owners.claim_if_dead(run_id)
                if not dead:
                    continue
                fatal = owner.fatal_error() if owner is not None else None
                if owner is not None and owner.fatal_log:
                    dead_logs.add(owner.fatal_log)
                found.append(InterruptedRun(run_id, tool_id, plugin,
                                            owner.pid if owner is not None else None, fatal))
                s.execute(update(Run).where(Run.id == run_id).values(
                    status="failed", finished_at=time.time(),
                    error=_text(error or _interrupted_message(tool_id, plugin, fatal))))
            self.owners.sweep({r[0] for r in running})
        self.owners.remove_logs(dead_logs)
        return found

    def delete_run(self, run_id: int) -> None:
        """Delete a run with its results, tags and lineage rows (files go at collect_orphans).

        Its children stay, with no parent; runs that used its results keep a None input.
        """
        with self._write("Deleting the run") as s:
            if s.get(Run, run_id) is None:
                raise RunNotFoundError(f"Run {run_id} does not exist in {self.folder}.")
            s.execute(delete(Run).where(Run.id == run_id))

    # ------------------------------------------------------------------ annotations
    def add_tag(self, run_id: int, tag: str) -> None:
        tag = _check_name(tag, "A tag").strip()
        with self._write("Tagging the run") as s:
            self._need_run(s, run_id)
            if s.get(RunTag, (run_id, tag)) is None:
                s.add(RunTag(run_id=run_id, tag=tag))

    def remove_tag(self, run_id: int, tag: str) -> None:
        with self._write("Removing the tag") as s:
            self._need_run(s, run_id)
            s.execute(delete(RunTag).where(RunTag.run_id == run_id,
                                           RunTag.tag == _text(tag).strip()))

    def all_tags(self) -> list[tuple[str, int]]:
        """Every tag in the session with how many runs carry it, most used first."""
        with self._read() as c:
            rows = c.execute(select(_tags.c.tag, func.count()).group_by(_tags.c.tag)
                             .order_by(func.count().desc(), _tags.c.tag)).all()
        return [(r[0], r[1]) for r in rows]

    def set_rating(self, run_id: int, rating: int | None) -> None:
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)
                                   or not 0 <= rating <= 5):
            raise InvalidParamsError(f"A rating is a whole number from 0 to 5 (or None), not {rating!r}.")
        with self._write("Rating the run") as s:
            self._need_run(s, run_id).rating = rating

    def set_note(self, run_id: int, note: str | None) -> None:
        if note is not None and not isinstance(note, str):
            raise InvalidParamsError(f"A note is text or None, not {type(note).__name__}.")
        with self._write("Saving the note") as s:
            self._need_run(s, run_id).note = _text(note)
            s.execute(text(f"UPDATE {FTS_TABLE} SET note = :n WHERE rowid = :id"),
                      {"n": jsonutil._clean(note or ""), "id": run_id})

    def _need_run(self, s: Session, run_id: int) -> Run:
        run = s.get(Run, run_id)
        if run is None:
            raise RunNotFoundError(f"Run {run_id} does not exist in the session {self.folder}.")
        return run

    # ------------------------------------------------------------------ reading
    # The hot read paths use plain SQL on the pooled DBAPI connection inside the read transaction
    # SQLAlchemy began (one consistent snapshot); building frozen records directly from tuples
    # keeps listing 100 runs within a few milliseconds.
    _RUN_COLS = ("id, tool_id, plugin, plugin_version, params_json, seed, model_ref, model_hash, "
                 "device, backend, started_at, finished_at, duration_s, status, error, "
                 "parent_run_id, rating, note, dtype")
    _RES_COLS = ("id, run_id, position, kind, sha256, ext, size, width, height, shape_json, "
                 "metadata_json, created_at")

    @staticmethod
    def _rows(c, sql: str, params: Sequence = ()) -> list[tuple]:
        c.exec_driver_sql("SELECT 1")  # make SQLAlchemy begin the read transaction
        return rows.fetch_all(c.connection.driver_connection, sql, tuple(params))

    def _runs_where(self, c, where: str, params: Sequence = (), order: str = "id DESC",
                    limit: int | None = None, offset: int = 0) -> list[RunInfo]:
        sql = f"SELECT {self._run_cols} FROM runs WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))} OFFSET {max(0, int(offset))}"
        return self._run_infos(c, self._rows(c, sql, params))

    def _run_infos(self, c, run_rows: list[tuple]) -> list[RunInfo]:
        """Records of ``run_rows``, each read on its own: a damaged row is listed with what can
        be read and its :attr:`RunInfo.damage`."""
        if not run_rows:
            return []
        ids = [r[0] for r in run_rows]
        ids_json = json.dumps(ids)
        sub = "(SELECT value FROM json_each(?))"
        res_by_run: dict[int, list[ResultInfo]] = {i: [] for i in ids}
        damage: dict[int, list[str]] = {i: [] for i in ids}
        for r in self._rows(c, f"SELECT {self._RES_COLS} FROM results WHERE run_id IN {sub} "
                               "ORDER BY run_id, position", (ids_json,)):
            res_by_run[r[1]].append(rows.result_info(r, self._files_root, damage[r[1]]))
        inputs: dict[int, list] = {i: [] for i in ids}
        for run_id, result_id in self._rows(
                c, f"SELECT run_id, result_id FROM run_inputs WHERE run_id IN {sub} "
                   "ORDER BY run_id, position", (ids_json,)):
            inputs[run_id].append(result_id)
        tags: dict[int, list[str]] = {i: [] for i in ids}
        for run_id, tag in self._rows(c, f"SELECT run_id, tag FROM run_tags WHERE run_id IN {sub} "
                                         "ORDER BY tag", (ids_json,)):
            tags[run_id].append(tag)
        return [rows.run_info(r, res_by_run[r[0]], inputs[r[0]], tags[r[0]], damage[r[0]])
                for r in run_rows]

    def _result_info(self, r: tuple) -> ResultInfo:
        return rows.result_info(r, self._files_root, [])

    @property
    def _files_root(self) -> str:
        return str(self.files.root)

    def list_runs(self, limit: int = 100, offset: int = 0, tool: str | None = None,
                  tag: str | None = None, text: str | None = None, status: str | None = None,
                  parent_run_id: int | None = None) -> list[RunInfo]:
        """Runs newest first, filtered by tool id, tag, words in prompts/params/notes, status."""
        where, params = ["1"], []
        if tool:
            where.append("tool_id = ?")
            params.append(tool)
        if status:
            where.append("status = ?")
            params.append(status)
        if parent_run_id is not None:
            where.append("parent_run_id = ?")
            params.append(parent_run_id)
        if tag:
            where.append("id IN (SELECT run_id FROM run_tags WHERE tag = ?)")
            params.append(tag)
        if text and text.strip():
            fq = _fts_query(text)
            if fq is None:
                return []
            where.append(f"id IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?)")
            params.append(fq)
        with self._read("Listing runs") as c:
            return self._runs_where(c, " AND ".join(where), params, limit=limit, offset=offset)

    def count_runs(self) -> int:
        with self._read() as c:
            return self._rows(c, "SELECT count(*) FROM runs")[0][0]

    def search(self, text_: str, limit: int = 100) -> list[RunInfo]:
        return self.list_runs(limit=limit, text=text_)

    def get_run(self, run_id: int) -> RunInfo:
        with self._read("Reading the run") as c:
            runs = self._runs_where(c, "id = ?", (run_id,))
        if not runs:
            raise RunNotFoundError(
                f"Run {run_id} does not exist in the session {self.folder}; "
                "`implicit-studio history` lists the runs."
            )
        return runs[0]

    def get_result(self, result_id: int) -> ResultInfo:
        with self._read("Reading the result") as c:
            found = self._rows(c, f"SELECT {self._RES_COLS} FROM results WHERE id = ?",
                               (result_id,))
        if not found:
            raise ResultNotFoundError(
                f"Result {result_id} does not exist in the session {self.folder}."
            )
        return self._result_info(found[0])

    def result_path(self, result_id: int) -> Path:
        info = self.get_result(result_id)
        if not info.path.is_file():
            raise MissingFileError(
                f"The file of result {result_id} ({info.path.name}) is missing from "
                f"{self.files.root}; it was deleted or moved outside Implicit Studio. The run's "
                "parameters are still recorded, so it can be reproduced."
            )
        return info.path

    def read_result(self, result_id: int) -> bytes:
        path = self.result_path(result_id)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MissingFileError(f"The file of result {result_id} cannot be read: {exc}.") from exc

    # ------------------------------------------------------------------ tree
    def children(self, run_id: int) -> list[RunInfo]:
        """Runs made from this run's results, oldest first."""
        with self._read() as c:
            return self._runs_where(c, "parent_run_id = ?", (run_id,), order="id")

    def ancestors(self, run_id: int) -> list[RunInfo]:
        """Parent, grandparent, ... up to the root (nearest first, the run itself excluded)."""
        sql = ("WITH RECURSIVE anc(id, depth) AS ("
               " SELECT parent_run_id, 1 FROM runs WHERE id = ? AND parent_run_id IS NOT NULL"
               " UNION ALL SELECT r.parent_run_id, anc.depth + 1 FROM runs r"
               " JOIN anc ON r.id = anc.id WHERE r.parent_run_id IS NOT NULL)"
               " SELECT id, depth FROM anc")
        with self._read() as c:
            if not self._rows(c, "SELECT id FROM runs WHERE id = ?", (run_id,)):
                raise RunNotFoundError(f"Run {run_id} does not exist in {self.folder}.")
            order = {i: d for i, d in self._rows(c, sql, (run_id,))}
            infos = self._runs_where(c, "id IN (SELECT value FROM json_each(?))",
                                     (json.dumps(list(order)),))
        return sorted(infos, key=lambda r: order[r.id])

    def lineage(self, run_id: int) -> list[RunInfo]:
        """The path from the root of this run's tree down to the run itself (inclusive)."""
        return list(reversed(self.ancestors(run_id))) + [self.get_run(run_id)]

    def descendants(self, run_id: int) -> list[RunInfo]:
        """Every run below this one in the tree, by id."""
        sql = ("WITH RECURSIVE d(id) AS (SELECT id FROM runs WHERE parent_run_id = ?"
               " UNION SELECT r.id FROM runs r JOIN d ON r.parent_run_id = d.id) SELECT id FROM d")
        with self._read() as c:
            return self._runs_where(c, f"id IN ({sql})", (run_id,), order="id")

    # ------------------------------------------------------------------ canvas history
    def canvas_history(self, key: str) -> CanvasState:
        """The persisted edit list and undo pointer of a canvas (empty if never edited)."""
        key = _check_name(key, "A canvas key")
        with self._read("Reading the canvas history") as c:
            hist = c.execute(select(CanvasHistory.__table__)
                             .where(CanvasHistory.__table__.c.key == key)).first()
            edits = c.execute(select(CanvasEdit.__table__)
                              .where(CanvasEdit.__table__.c.key == key)
                              .order_by(CanvasEdit.__table__.c.seq)).all()
        blobs = []
        for e in edits:
            p = self.files.path_for(e.sha256, e.ext)
            try:
                blobs.append(p.read_bytes())
            except OSError as exc:
                raise MissingFileError(
                    f"Edit {e.seq} of canvas {key!r} is missing its file {p.name}: {exc}."
                ) from exc
        return CanvasState(key=key, position=hist.position if hist else 0, edits=tuple(blobs),
                           labels=tuple(e.label for e in edits))

    def push_canvas_edit(self, key: str, blob: bytes, label: str | None = None) -> int:
        """Append an edit after the undo pointer (dropping any redo branch); returns the new position."""
        key = _check_name(key, "A canvas key")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise InvalidParamsError("A canvas edit must be bytes.")
        self._need_writable("saving a canvas edit")
        with self._lock:
            stored = self.files.put(bytes(blob), CANVAS_EXT)
            with self._write("Saving the canvas edit") as s:
                self._keep_files([(stored, bytes(blob))])
                hist = s.get(CanvasHistory, key)
                if hist is None:
                    hist = CanvasHistory(key=key, position=0, updated_at=time.time())
                    s.add(hist)
                    s.flush()
                s.execute(delete(CanvasEdit).where(CanvasEdit.key == key,
                                                   CanvasEdit.seq >= hist.position))
                s.add(CanvasEdit(key=key, seq=hist.position, sha256=stored.sha256, ext=stored.ext,
                                 size=stored.size, label=_text(label), created_at=time.time()))
                hist.position += 1
                hist.updated_at = time.time()
                return hist.position

    def _move_pointer(self, key: str, step: int) -> bytes | None:
        key = _check_name(key, "A canvas key")
        with self._write("Moving the canvas undo pointer") as s:
            hist = s.get(CanvasHistory, key)
            if hist is None:
                return None
            count = s.execute(select(func.count()).select_from(CanvasEdit)
                              .where(CanvasEdit.key == key)).scalar_one()
            new = hist.position + step
            if not 0 <= new <= count:
                return None
            seq = hist.position - 1 if step < 0 else hist.position
            edit = s.execute(select(CanvasEdit).where(CanvasEdit.key == key,
                                                      CanvasEdit.seq == seq)).scalar_one()
            hist.position = new
            hist.updated_at = time.time()
            path = self.files.path_for(edit.sha256, edit.ext)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MissingFileError(f"Canvas edit file {path.name} is missing: {exc}.") from exc

    def undo(self, key: str) -> bytes | None:
        """Step the canvas back one edit; returns the edit undone, or None if nothing to undo."""
        return self._move_pointer(key, -1)

    def redo(self, key: str) -> bytes | None:
        """Re-apply the next edit; returns it, or None if nothing to redo."""
        return self._move_pointer(key, +1)

    def clear_canvas(self, key: str) -> None:
        key = _text(key)
        with self._write("Clearing the canvas history") as s:
            s.execute(delete(CanvasHistory).where(CanvasHistory.key == key))

    # ------------------------------------------------------------------ maintenance
    def _referenced_files(self, c) -> set[tuple[str, str]]:
        refs = {(r[0], r[1]) for r in c.exec_driver_sql("SELECT DISTINCT sha256, ext FROM results")}
        refs |= {(r[0], r[1]) for r in
                 c.exec_driver_sql("SELECT DISTINCT sha256, ext FROM canvas_edits")}
        return refs

    def integrity_check(self, verify_hashes: bool = False) -> IntegrityReport:
        """SQLite ``integrity_check`` + foreign keys + every row's file present (and hashed)."""
        problems: list[str] = []
        with self._read("Checking the session") as c:
            rows = [r[0] for r in c.exec_driver_sql("PRAGMA integrity_check")]
            if rows != ["ok"]:
                problems += [f"database: {r}" for r in rows]
            for r in c.exec_driver_sql("PRAGMA foreign_key_check"):
                problems.append(f"database: row {r[1]} of {r[0]} points at a missing {r[2]} row")
            files = [(r[0], r[1], r[2], f"result {r[3]}") for r in c.exec_driver_sql(
                "SELECT sha256, ext, size, id FROM results")]
            files += [(r[0], r[1], r[2], f"canvas {r[3]!r} edit {r[4]}") for r in
                      c.exec_driver_sql("SELECT sha256, ext, size, key, seq FROM canvas_edits")]
        seen: dict[tuple[str, str], str | None] = {}
        for sha, ext, size, who in files:
            if (sha, ext) not in seen:
                p = self.files.path_for(sha, ext)
                err = None
                if not p.is_file():
                    err = f"file {p.name} is missing"
                elif p.stat().st_size != size:
                    err = f"file {p.name} has {p.stat().st_size} bytes, expected {size}"
                elif verify_hashes and not self.files.verify(sha, ext):
                    err = f"file {p.name} does not match its hash (damaged)"
                seen[(sha, ext)] = err
            if seen[(sha, ext)]:
                problems.append(f"{who}: {seen[(sha, ext)]}")
        return IntegrityReport(ok=not problems, problems=tuple(problems))

    def collect_orphans(self, min_age_s: float = 60.0, *, temp_min_age_s: float | None = None, batch: int = 256,
                        stop: Callable[[], bool] | None = None) -> OrphanReport:
        """Delete files no row refers to, and temporary files left by interrupted writes.

        Files younger than ``min_age_s`` are kept (a write may be under way). A temporary file
        is a write under way in some process until it is ``temp_min_age_s`` old (default: the
        larger of ``min_age_s`` and :data:`TEMP_GRACE_S`; give 0 only when no process can be
        writing, e.g. after a crash in a test). Files are deleted in
        batches, each inside a write transaction that first checks again that no row refers to
        them: no process can commit a row pointing at a file while it is being deleted, and
        writers check inside their own transaction that their files are still there. ``stop()``
        is asked between batches (a background collection ends when the store closes).
        """
        self._need_writable("collecting orphan files")
        with self._read() as c:
            refs = self._referenced_files(c)
        candidates = [path for path, parsed in self.files.iter_files()
                      if (parsed is None and path.name.startswith(TEMP_PREFIX))
                      or (parsed is not None and parsed not in refs)]
        temp_age = max(min_age_s, TEMP_GRACE_S) if temp_min_age_s is None else temp_min_age_s
        removed: list[Path] = []
        freed = 0
        for i in range(0, len(candidates), batch):
            if stop is not None and stop():
                break
            with self._write("Collecting orphan files") as s:
                for path in candidates[i:i + batch]:
                    parsed = filestore.parse_name(path.name)
                    if self.files.age_s(path) < (min_age_s if parsed is not None else temp_age) or (
                            parsed is not None and self._is_referenced(s, *parsed)):
                        continue
                    try:
                        size = path.lstat().st_size
                        path.unlink()
                    except OSError:
                        continue
                    removed.append(path)
                    freed += size
        return OrphanReport(removed=tuple(removed), bytes_freed=freed)

    @staticmethod
    def _is_referenced(s: Session, sha256: str, ext: str) -> bool:
        return s.execute(text(
            "SELECT 1 FROM results WHERE sha256 = :h AND ext = :e UNION ALL "
            "SELECT 1 FROM canvas_edits WHERE sha256 = :h AND ext = :e LIMIT 1"),
            {"h": sha256, "e": ext}).first() is not None

    def collect_orphans_in_background(self, min_age_s: float = 60.0) -> threading.Thread | None:
        """Run :meth:`collect_orphans` on a daemon thread (start-up housekeeping: leftovers of
        crashes are removed without delaying the window). None when the session cannot be
        written."""
        if self.readonly or self.damage or self._writer is None:
            return None

        def work() -> None:
            try:
                report = self.collect_orphans(min_age_s, stop=lambda: self._closed)
            except StorageError as exc:
                if not self._closed:
                    _log.warning("collecting orphan files of %s failed: %s", self.folder, exc)
                return
            if report.removed:
                _log.info("session %s: removed %d orphan files (%d bytes)", self.folder,
                          len(report.removed), report.bytes_freed)

        thread = threading.Thread(target=work, name="session-orphans", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ archives
    def export_archive(self, path: str | os.PathLike) -> Path:
        """Write the session (database snapshot + referenced files) as one portable zip file."""
        from .archive import export_archive

        self._check_open()
        with self._lock:
            return export_archive(self, Path(path), snapshot_database)

    @classmethod
    def import_archive(cls, archive: str | os.PathLike, target_folder: str | os.PathLike,
                       max_bytes: int = DEFAULT_ARCHIVE_LIMIT) -> SessionStore:
        """Unpack an exported session into ``target_folder`` (new or empty) and open it."""
        from .archive import import_archive

        return import_archive(Path(archive), Path(target_folder), max_bytes=max_bytes, open_store=cls.open)


def snapshot_database(src: Path, dest: Path) -> None:
    """Consistent copy of a live database (WAL included) with SQLite's backup API."""
    tmp = dest.with_name(dest.name + ".part")
    if tmp.exists():
        tmp.unlink()
    source = sqlite3.connect(f"file:{quote(src.as_posix())}?mode=ro", uri=True, timeout=10.0)
    try:
        target = sqlite3.connect(str(tmp))
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    os.replace(tmp, dest)


_OPEN_TOKEN = object()

__all__ = ["SessionStore", "snapshot_database"]
