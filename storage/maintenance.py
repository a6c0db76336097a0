"""Session maintenance behind ``implicit-studio session check|repair|backup`` (no Qt).

* :func:`check_session` opens a session read-only and reports what is wrong: pages SQLite finds
  damaged, rows pointing at missing or damaged files, runs whose record is partly unreadable.
* :func:`repair_session` copies every run, result and canvas edit that can still be read (and
  whose file matches its hash) into a **new** session, keeping run and result ids; the damaged
  session is never written to. It reads a copy of the database files, so a half-written
  transaction is rolled back (or a write-ahead log replayed) in the copy, not in the original.
* :func:`backup_session` writes a portable archive of a sound session, or copies a damaged one's
  files as they are.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import jsonutil, rows
from .errors import InvalidSessionError, StorageError
from .filestore import os_error_to_storage

DB_FILES = ("session.db", "session.db-wal", "session.db-journal")
_PROBE_BEYOND = 1000  # ids tried past the highest one seen when a table cannot be scanned


@dataclass(frozen=True)
class CheckReport:
    folder: Path
    runs: int
    problems: tuple[str, ...]
    damaged_runs: tuple[tuple[int, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damaged_runs

    def __str__(self) -> str:
        if self.ok:
            return f"The session {self.folder} is sound: {self.runs} runs, every file present."
        lines = [f"The session {self.folder} has problems:"]
        lines += [f"  {p}" for p in self.problems]
        lines += [f"  run {rid}: {'; '.join(notes)}" for rid, notes in self.damaged_runs]
        lines.append(f"'implicit-studio session repair --session {self.folder}' copies every "
                     "readable run and file into a new session and leaves this one as it is.")
        return "\n".join(lines)


@dataclass(frozen=True)
class RepairReport:
    source: Path
    target: Path
    runs_copied: int
    results_copied: int
    canvas_edits_copied: int
    runs_lost: tuple[int, ...] = ()  # ids known (from their results) whose run row is unreadable
    results_lost: int = 0
    canvas_edits_lost: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        lines = [f"Repaired {self.source} into the new session {self.target} (the old one was "
                 "left as it was):",
                 f"  runs copied: {self.runs_copied}, results: {self.results_copied}, canvas "
                 f"edits: {self.canvas_edits_copied}"]
        if self.runs_lost or self.results_lost or self.canvas_edits_lost:
            lost = f"  lost: {len(self.runs_lost)} runs"
            if self.runs_lost:
                lost += f" ({', '.join(map(str, self.runs_lost[:20]))})"
            lines.append(lost + f", {self.results_lost} results, "
                                f"{self.canvas_edits_lost} canvas edits")
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------- check
def check_session(folder: str | Path, verify_hashes: bool = True, page: int = 500) -> CheckReport:
    """What is wrong with the session in ``folder``; it is opened read-only."""
    from .store import SessionStore

    with SessionStore.open(folder, readonly=True) as store:
        problems = [f"database: {d}" for d in store.damage]
        try:
            problems += [p for p in store.integrity_check(verify_hashes).problems
                         if not (store.damage and p.startswith("database:"))]
        except StorageError as exc:
            if not store.damage:  # else quick_check has said it already
                problems.append(f"integrity check stopped: {exc}")
        damaged: list[tuple[int, tuple[str, ...]]] = []
        runs = 0
        try:
            offset = 0
            while batch := store.list_runs(limit=page, offset=offset):
                runs += len(batch)
                damaged += [(r.id, r.damage) for r in batch if r.damaged]
                offset += page
        except StorageError as exc:
            problems.append(f"listing the runs stopped after {runs}: {exc}")
        return CheckReport(store.folder, runs, tuple(problems), tuple(damaged))


# ------------------------------------------------------------------------------------ backup
def backup_session(folder: str | Path, out: str | Path | None = None) -> Path:
    """An archive of the session (``.zip``, importable) when it is sound; for a damaged session a
    plain copy of its files into the folder ``out``. Returns what was written."""
    from .store import SessionStore

    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with SessionStore.open(folder, readonly=True) as store:
        if not store.damage:
            path = Path(out) if out else folder.with_name(f"{folder.name}-backup-{stamp}.zip")
            return store.export_archive(path)
    dest = Path(out) if out else folder.with_name(f"{folder.name}-backup-{stamp}")
    _new_folder(dest)
    try:
        for name in DB_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, dest / name)
        if (folder / "files").is_dir():
            shutil.copytree(folder / "files", dest / "files")
    except OSError as exc:
        raise os_error_to_storage(exc, f"The backup copy in {dest}") from exc
    return dest


def _new_folder(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidSessionError(f"{path} already exists; give a new folder so nothing is "
                                  "overwritten.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error_to_storage(exc, f"The folder {path}") from exc


# ------------------------------------------------------------------------------------ repair
def repair_session(source: str | Path, target: str | Path | None = None) -> RepairReport:
    """Copy everything readable of the session ``source`` into the new session ``target``
    (default: ``<source>-repaired-<date>`` beside it). ``source`` is not modified."""
    source = Path(source)
    if not (source / "session.db").is_file():
        raise InvalidSessionError(f"There is no session in {source} (no session.db).")
    target = Path(target) if target else source.with_name(
        f"{source.name}-repaired-{time.strftime('%Y%m%d-%H%M%S')}")
    _new_folder(target)
    work = Path(tempfile.mkdtemp(prefix=".repair-", dir=target.parent))
    try:
        for name in DB_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, work / name)
        fixed = _repair_schema(work / "session.db")
        conn = sqlite3.connect(str(work / "session.db"))
        try:
            conn.text_factory = rows.tolerant_text
            return _Repair(conn, source, target, fixed).run()
        finally:
            conn.close()
    except OSError as exc:
        raise os_error_to_storage(exc, f"The repaired session in {target}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


_REFERENCE: dict[str, tuple] = {}


def _reference_schema() -> dict[str, tuple]:
    """``{name: (type, tbl_name, sql)}`` of every schema object of a new session (this version)."""
    if not _REFERENCE:
        from .store import SessionStore

        with tempfile.TemporaryDirectory(prefix="implicit-studio-schema-") as td:
            SessionStore.open(Path(td) / "s", durable=False).close()
            conn = sqlite3.connect(str(Path(td) / "s" / "session.db"))
            try:
                _REFERENCE.update({r[0]: tuple(r[1:]) for r in conn.execute(
                    "SELECT name, type, tbl_name, sql FROM sqlite_master")})
            finally:
                conn.close()
    return _REFERENCE


def _repair_schema(db: Path) -> list[str]:
    """In the working copy: put back the text of schema entries a damaged byte made unreadable
    ("malformed database schema", which hides every table), from a new session's schema."""
    conn = sqlite3.connect(str(db))
    try:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            return []
        except sqlite3.DatabaseError as exc:
            if "malformed database schema" not in str(exc):
                return []
        conn.close()
        conn = sqlite3.connect(str(db))
        conn.execute("PRAGMA writable_schema = ON")  # read the schema without parsing it
        reference = _reference_schema()
        fixed = []
        for rowid, kind, name, tbl, sql in conn.execute(
                "SELECT rowid, type, name, tbl_name, sql FROM sqlite_master").fetchall():
            want = reference.get(name)
            if want is not None and (kind, tbl, sql) != want:
                conn.execute("UPDATE sqlite_master SET type = ?, tbl_name = ?, sql = ? WHERE rowid = ?",
                             (*want, rowid))
                fixed.append(name)
        conn.commit()
        return [f"the schema entry of {', '.join(fixed)} was damaged and was rewritten in the copy read"
                ] if fixed else []
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()


def _salvage(conn: sqlite3.Connection, table: str, cols: str, key: str | None = "id",
             hint_ids: set[int] = frozenset()) -> tuple[list[tuple], bool]:
    """Every row of ``table`` that can be read, and whether some could not. When a scan stops on
    a damaged page, rows are fetched one id at a time (a lookup may avoid the damaged page)."""
    order = f" ORDER BY {key}" if key else ""
    found: list[tuple] = []
    try:
        for row in conn.execute(f"SELECT {cols} FROM {table}{order}"):
            found.append(row)
        return found, False
    except sqlite3.DatabaseError:
        if key is None:
            return found, True
    by_id = {r[0]: r for r in found}
    try:
        top = conn.execute(f"SELECT max({key}) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = 0
    top = max([top, *by_id, *hint_ids, 0]) + _PROBE_BEYOND
    for rid in range(1, top + 1):
        if rid in by_id:
            continue
        try:
            row = conn.execute(f"SELECT {cols} FROM {table} WHERE {key} = ?", (rid,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            by_id[rid] = row
    return [by_id[k] for k in sorted(by_id)], True


class _Repair:
    """One repair: reads the damaged copy, writes the new session."""

    def __init__(self, conn: sqlite3.Connection, source: Path, target: Path, notes: list[str]):
        self.conn, self.source, self.target = conn, source, target
        self.notes: list[str] = list(notes)

    def _read(self, table: str, cols: str, key: str | None = "id", hint_ids=frozenset()):
        found, partial = _salvage(self.conn, table, cols, key, set(hint_ids))
        if partial:
            self.notes.append(f"the table {table} is damaged; {len(found)} rows could be read")
        return found

    def _file_bytes(self, sha: str, ext: str) -> bytes | None:
        path = self.source / "files" / sha[:2] / f"{sha}.{ext}"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def run(self) -> RepairReport:
        from .store import SessionStore, run_columns

        try:  # a session of revision 0001 has no dtype column
            has_dtype = any(r[1] == "dtype" for r in self.conn.execute("PRAGMA table_info(runs)"))
        except sqlite3.DatabaseError:
            has_dtype = False
        run_cols = run_columns(has_dtype)
        res_rows = self._read("results", SessionStore._RES_COLS)
        run_rows = self._read("runs", run_cols, hint_ids={r[1] for r in res_rows
                                                            if isinstance(r[1], int)})
        meta = self._read("session_meta", "id, name, created_at, app_version")
        name = meta[0][1] if meta and isinstance(meta[0][1], str) else self.source.name
        store = SessionStore.open(self.target, name=f"{name} (repaired)")
        try:
            with store._write("Repairing the session") as s:
                copied = self._copy_runs(s, run_rows)
                res_done, res_lost = self._copy_results(s, store, res_rows, copied)
                self._copy_links(s, copied, res_done)
                edits_done, edits_lost = self._copy_canvas(s, store)
            lost_runs = sorted({r[1] for r in res_rows if isinstance(r[1], int)} - set(copied))
            report = store.integrity_check(verify_hashes=True)
            if not report.ok:  # pragma: no cover - would be a bug in the copy itself
                raise StorageError(f"The repaired session fails its check: {report.problems[0]}")
        finally:
            store.close()
        return RepairReport(self.source, self.target, len(copied), len(res_done), edits_done,
                            tuple(lost_runs), res_lost, edits_lost, tuple(self.notes))

    def _copy_runs(self, s, run_rows) -> dict[int, object]:
        from sqlalchemy import text

        from .models import FTS_TABLE, Run

        copied: dict[int, object] = {}
        for r in run_rows:
            if not isinstance(r[0], int):
                continue
            info = rows.run_info(r, [], [], [], [])
            damage = list(info.damage)
            status, error = info.status, info.error
            if status == "running":
                status, error = "failed", ("Interrupted: the run was still marked running when "
                                           "the session was repaired.")
            try:
                params_json = jsonutil.dumps_params(info.params)
            except StorageError as exc:
                params_json, damage = "{}", damage + [f"parameters: {exc}"]
            note = info.note
            if damage:
                note = ((note + "\n") if note else "") + "[repaired] " + "; ".join(damage)
            s.add(Run(id=info.id, tool_id=info.tool_id, plugin=info.plugin,
                      plugin_version=info.plugin_version, params_json=params_json,
                      seed=jsonutil.check_seed(info.seed) if _fits_seed(info.seed) else None,
                      model_ref=jsonutil.safe_text(info.model_ref),
                      model_hash=jsonutil.safe_text(info.model_hash),
                      device=jsonutil.safe_text(info.device), dtype=jsonutil.safe_text(info.dtype),
                      backend=jsonutil.safe_text(info.backend),
                      started_at=info.started_at, finished_at=info.finished_at,
                      duration_s=info.duration_s, status=status, error=jsonutil.safe_text(error),
                      parent_run_id=None, rating=info.rating, note=jsonutil.safe_text(note)))
            prompt, other = jsonutil.search_texts(jsonutil.loads_params(params_json))
            s.flush()
            s.execute(text(f"INSERT INTO {FTS_TABLE}(rowid, prompt, params, note) "
                           "VALUES (:id, :p, :q, :n)"),
                      {"id": info.id, "p": prompt, "q": other + "\n" + info.tool_id,
                       "n": jsonutil._clean(note or "")})
            copied[info.id] = info
        for rid, info in copied.items():  # parents once every run is in
            if info.parent_run_id in copied:
                s.get(Run, rid).parent_run_id = info.parent_run_id
        return copied

    def _copy_results(self, s, store, res_rows, copied) -> tuple[set[int], int]:
        from .models import Result

        done: set[int] = set()
        lost = 0
        for r in res_rows:
            if r[1] not in copied:
                continue
            damage: list[str] = []
            info = rows.result_info(r, "", damage)
            data = self._file_bytes(info.sha256, info.ext) if not damage else None
            if data is None:
                lost += 1
                continue
            store.files.put(data, info.ext)
            s.add(Result(id=info.id, run_id=info.run_id, position=info.position,
                         kind=jsonutil.safe_text(info.kind), sha256=info.sha256, ext=info.ext,
                         size=len(data), width=info.width, height=info.height,
                         shape_json=jsonutil.dumps_any(list(info.shape) if info.shape else None),
                         metadata_json=_metadata_json(info.metadata),
                         created_at=info.created_at))
            done.add(info.id)
        s.flush()
        if lost:
            self.notes.append(f"{lost} results were left out: their file is missing, damaged or "
                              "their row unreadable")
        return done, lost

    def _copy_links(self, s, copied, results_done) -> None:
        from .models import RunInput, RunTag

        for run_id, pos, result_id in self._read("run_inputs", "run_id, position, result_id",
                                                  key=None):
            if run_id in copied and isinstance(pos, int):
                s.add(RunInput(run_id=run_id, position=pos,
                               result_id=result_id if result_id in results_done else None))
        seen = set()
        for run_id, tag in self._read("run_tags", "run_id, tag", key=None):
            if run_id in copied and isinstance(tag, str) and (run_id, tag) not in seen:
                seen.add((run_id, tag))
                s.add(RunTag(run_id=run_id, tag=jsonutil.safe_text(tag)))

    def _copy_canvas(self, s, store) -> tuple[int, int]:
        from .models import CanvasEdit, CanvasHistory

        histories = {k: (pos, upd) for k, pos, upd in
                     self._read("canvas_histories", "key, position, updated_at", key=None)
                     if isinstance(k, str) and isinstance(pos, int)}
        edits: dict[str, list] = {}
        lost = 0
        for e in self._read("canvas_edits", "id, key, seq, sha256, ext, size, label, created_at"):
            if e[1] not in histories:
                lost += 1
                continue
            data = self._file_bytes(e[3], e[4]) if isinstance(e[3], str) and isinstance(
                e[4], str) and rows.valid_file_name(e[3], e[4]) else None
            if data is None or not isinstance(e[2], int):
                lost += 1
                continue
            edits.setdefault(e[1], []).append((e, data))
        done = 0
        for key, (pos, updated) in histories.items():
            kept = sorted(edits.get(key, []), key=lambda x: x[0][2])
            s.add(CanvasHistory(key=jsonutil.safe_text(key), position=min(pos, len(kept)),
                                updated_at=updated if isinstance(updated, float) else time.time()))
            s.flush()
            for seq, (e, data) in enumerate(kept):
                stored = store.files.put(data, e[4])
                s.add(CanvasEdit(key=jsonutil.safe_text(key), seq=seq, sha256=stored.sha256,
                                 ext=stored.ext, size=stored.size,
                                 label=e[6] if isinstance(e[6], str) else None,
                                 created_at=e[7] if isinstance(e[7], float) else time.time()))
                done += 1
        return done, lost


def _fits_seed(seed) -> bool:
    try:
        jsonutil.check_seed(seed)
        return True
    except StorageError:
        return False


def _metadata_json(meta: dict) -> str | None:
    try:
        return jsonutil.dumps_any(meta or None)
    except StorageError:
        return None
