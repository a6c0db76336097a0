"""Issue 27 (storage): one bad row cannot hide a session, text is stored as valid UTF-8, a kill
during the first creation of a session cannot leave it unusable, damaged sessions are found on
open and not written to, another process's live runs are left alone, crash leftovers are
collected, and ``check``/``repair``/``backup`` look after a session."""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import storage.filestore as filestore
from storage.migrations import HEAD_REVISION
from storage import (
    CorruptDatabaseError,
    InvalidSessionError,
    NewerSchemaError,
    SessionStore,
    StorageWriteError,
)
from storage.cli_support import export_run, format_history, printable
from storage.maintenance import backup_session, check_session, repair_session

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _raw(folder: Path, sql: str, *args) -> None:
    conn = sqlite3.connect(folder / "session.db")
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def _three_runs(folder: Path, record, png) -> list[int]:
    with SessionStore.open(folder) as s:
        return [record(s, prompt=f"run {i}", seed=i, data=png(4, 3, (i, 0, 0))) for i in range(3)]


# ------------------------------------------------------------------------ item 2: row isolation
def test_a_run_with_damaged_parameters_is_listed_as_damaged_not_hiding_the_others(tmp_path,
                                                                                   record, png):
    folder = tmp_path / "s"
    ids = _three_runs(folder, record, png)
    _raw(folder, "UPDATE runs SET params_json = '{\"prompt\": \"bro' WHERE id = ?", ids[1])
    with SessionStore.open(folder, readonly=True) as s:
        runs = s.list_runs()
        assert [r.id for r in runs] == ids[::-1]
        bad = s.get_run(ids[1])
        assert bad.damaged and bad.params == {} and bad.results  # its results are still there
        assert bad.damage[0].startswith("parameters: not valid JSON") and '{"prompt": "bro' in bad.damage[0]
        assert [r.params["prompt"] for r in runs if not r.damaged] == ["run 2", "run 0"]
        text = format_history(s)
    assert f"\n{ids[1]} " in text and "ok*" in text and "parameters: not valid JSON" in text
    assert "session repair" in text


def test_text_that_is_not_utf8_damages_only_its_row(tmp_path, record, png):
    folder = tmp_path / "s"
    ids = _three_runs(folder, record, png)
    _raw(folder, "UPDATE runs SET tool_id = CAST(x'74ff6f6c' AS TEXT), "
                 "params_json = CAST(x'7b2270223a2278ff227d' AS TEXT) WHERE id = ?", ids[0])
    _raw(folder, "UPDATE results SET metadata_json = '[1' WHERE run_id = ?", ids[2])
    with SessionStore.open(folder, readonly=True) as s:
        runs = {r.id: r for r in s.list_runs()}
        assert set(runs) == set(ids)
        assert runs[ids[0]].tool_id == "t\\xffol" and runs[ids[0]].damaged
        assert any(d.startswith("tool id: not valid UTF-8") for d in runs[ids[0]].damage)
        assert runs[ids[2]].results[0].metadata == {}
        assert any(d.startswith(f"result {runs[ids[2]].results[0].id}: metadata: not valid JSON")
                   for d in runs[ids[2]].damage)
        assert not runs[ids[1]].damaged
        format_history(s)


def test_lone_surrogates_and_non_utf8_paths_are_stored_as_valid_utf8(tmp_path, png):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        rid = s.record_run(tool_id="t\udcff", plugin="p", plugin_version="1",
                           params={"prompt": "bad \ud800 \x1b[31mred\x07\x00", "path": "/x/\udcff.png"},
                           seed=1, model_ref="/models/\udcffm", error=None,
                           results=[{"kind": "image", "data": png(), "ext": "png"}])
        s.set_note(rid, "note \udc80")
        s.add_tag(rid, "tag\udcfe")
        run = s.get_run(rid)
        assert run.params["prompt"] == "bad \ud800 \x1b[31mred\x07\x00"  # params round-trip exactly
        assert run.model_ref == "/models/\\udcffm" and run.tool_id == "t\\udcff"
        assert run.note == "note \\udc80" and run.tags == ("tag\\udcfe",)
        text = format_history(s)
        text.encode("utf-8")  # printable on any UTF-8 terminal
        assert "\x1b" not in text and "\x07" not in text
        assert "bad \\ud800 \\x1b[31mred\\x07\\x00" in text
        written = export_run(s, rid, tmp_path / "out")  # PNG text chunks and JSON record
    assert [p.suffix for p in written] == [".png", ".json"]
    conn = sqlite3.connect(folder / "session.db")
    conn.text_factory = bytes
    for row in conn.execute("SELECT tool_id, model_ref, note, params_json FROM runs"):
        for value in row:
            value.decode("utf-8")  # strict: every stored text is valid UTF-8
    conn.close()


def test_printable_escapes_terminal_control_characters():
    assert printable("a\x1b[2Jb\x07c\x00d\x9b\ud800") == "a\\x1b[2Jb\\x07c\\x00d\\x9b\\ud800"
    assert printable("plain ünïcode ✓") == "plain ünïcode ✓"


# ------------------------------------------------------------- item 3: kill during first creation
_HOT_JOURNAL_CHILD = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 1")          # spill pages to the file: the journal is hot
conn.execute("BEGIN")
conn.execute("CREATE TABLE runs(x)")
conn.executemany("INSERT INTO runs VALUES (?)", [(os.urandom(500),) for _ in range(400)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rollback_journal_left_by_a_kill_during_creation_is_recovered(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    p = subprocess.run([sys.executable, "-c", _HOT_JOURNAL_CHILD, str(folder / "session.db")])
    assert p.returncode == -signal.SIGKILL
    assert (folder / "session.db-journal").stat().st_size > 0
    with pytest.raises(InvalidSessionError, match="no session in .* yet"):
        SessionStore.open(folder, readonly=True)  # rolled back: nothing was ever saved
    with SessionStore.open(folder) as s:  # and it becomes a normal new session
        assert s.count_runs() == 0 and s.info().schema_revision == HEAD_REVISION
        s.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)
    with SessionStore.open(folder, readonly=True) as s:
        assert s.count_runs() == 1


# ---------------------------------------------------------- item 4: damage found on open
def _damage_a_page(folder: Path, page_no: int = 3) -> None:
    db = folder / "session.db"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    rnd = random.Random(page_no)
    for i in range(page * (page_no - 1), page * page_no):
        data[i] = rnd.randrange(256)
    db.write_bytes(bytes(data))


def _bulk(folder: Path, png, n: int = 40) -> None:
    with SessionStore.open(folder) as s:
        prev: list[int] = []
        for i in range(n):
            rid = s.record_run(tool_id="t", plugin="p", plugin_version="1",
                               params={"prompt": f"run {i} " * 20}, seed=i, inputs=prev[-1:],
                               results=[{"kind": "image", "data": png(4, 3, (i, 1, 2)), "ext": "png"}])
            prev = [s.get_run(rid).results[0].id]
            s.add_tag(rid, f"t{i % 3}")
        s.push_canvas_edit("c", b"edit 1")
        s.push_canvas_edit("c", b"edit 2")


def test_a_damaged_database_is_found_on_open_and_never_written(tmp_path, png):
    folder = tmp_path / "s"
    _bulk(folder, png)
    _damage_a_page(folder)
    before = hashlib.sha256((folder / "session.db").read_bytes()).hexdigest()
    with SessionStore.open(folder) as s:
        assert s.damage  # quick_check on open
        with pytest.raises(CorruptDatabaseError, match="(?s)damaged.*refused.*session repair"):
            s.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)
        with pytest.raises(CorruptDatabaseError, match="session repair"):
            s.set_note(1, "x")
    assert hashlib.sha256((folder / "session.db").read_bytes()).hexdigest() == before


def test_check_repair_and_backup(tmp_path, png):
    folder = tmp_path / "s"
    _bulk(folder, png)
    assert check_session(folder).ok
    archive = backup_session(folder, tmp_path / "b.zip")
    assert archive.is_file()
    with SessionStore.import_archive(archive, tmp_path / "restored") as r:
        assert r.count_runs() == 40
    _damage_a_page(folder)
    (folder / "files").joinpath("zz").mkdir()
    report = check_session(folder)
    assert not report.ok and report.problems[0].startswith("database:")
    assert "session repair" in str(report)
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    copy = backup_session(folder, tmp_path / "damaged-copy")
    assert copy.is_dir() and (copy / "session.db").read_bytes() == (folder / "session.db").read_bytes()
    rep = repair_session(folder, tmp_path / "fixed")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot  # untouched
    assert rep.runs_copied == 40 and rep.results_copied == 40 and rep.canvas_edits_copied == 2
    with SessionStore.open(tmp_path / "fixed") as fixed:
        assert not fixed.damage and fixed.integrity_check(verify_hashes=True).ok
        runs = fixed.list_runs(limit=100)
        assert [r.id for r in runs] == list(range(40, 0, -1))  # ids kept
        assert runs[0].parent_run_id == 39 and runs[0].tags == ("t0",)
        assert runs[-1].params == {"prompt": "run 0 " * 20}
        assert fixed.canvas_history("c").edits == (b"edit 1", b"edit 2")
        assert fixed.search("run")  # the full-text index was rebuilt
        fixed.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)


def test_repair_copies_damaged_rows_with_a_note_and_leaves_out_lost_files(tmp_path, record, png):
    folder = tmp_path / "s"
    ids = _three_runs(folder, record, png)
    _raw(folder, "UPDATE runs SET params_json = 'garbage', status = 'running' WHERE id = ?", ids[0])
    with SessionStore.open(folder, readonly=True) as s:
        s.get_run(ids[2]).results[0].path.unlink()
    rep = repair_session(folder, tmp_path / "fixed")
    assert rep.runs_copied == 3 and rep.results_copied == 2 and rep.results_lost == 1
    with SessionStore.open(tmp_path / "fixed", readonly=True) as fixed:
        first = fixed.get_run(ids[0])
        assert first.status == "failed" and "[repaired] parameters: not valid JSON" in first.note
        assert fixed.get_run(ids[2]).results == ()
        assert fixed.integrity_check(verify_hashes=True).ok


def test_unknown_older_revision_is_not_called_newer(tmp_path, record, png):
    folder = tmp_path / "s"
    _three_runs(folder, record, png)
    _raw(folder, "UPDATE alembic_version SET version_num = '0000_lost'")
    with pytest.raises(NewerSchemaError, match="that no version of Implicit Studio wrote"):
        SessionStore.open(folder)
    _raw(folder, "UPDATE alembic_version SET version_num = '0042_future'")
    with pytest.raises(NewerSchemaError, match="written by a newer version"):
        SessionStore.open(folder)


def test_a_file_given_as_session_folder_says_so(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    for readonly in (False, True):
        with pytest.raises(InvalidSessionError, match="is a file, not a session folder"):
            SessionStore.open(f, readonly=readonly)


# ------------------------------------------------ item 5: another process's live runs stay
_OWNER_CHILD = """
import sys, time
from storage import SessionStore
s = SessionStore.open(sys.argv[1])
rid = s.begin_run(tool_id="slow-tool", plugin="slowpoke", plugin_version="1", params={}, seed=1)
print(rid, flush=True)
time.sleep(60)
"""


def test_recovery_leaves_another_live_process_runs_alone(tmp_path):
    folder = tmp_path / "s"
    SessionStore.open(folder).close()
    child = subprocess.Popen([sys.executable, "-c", _OWNER_CHILD, str(folder)],
                             stdout=subprocess.PIPE, env=CHILD_ENV)
    try:
        rid = int(child.stdout.readline())
        with SessionStore.open(folder) as s:
            assert s.recover_interrupted() == []  # its owner is alive
            assert s.get_run(rid).status == "running"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        with SessionStore.open(folder) as s:
            (gone,) = s.recover_interrupted_runs()
            assert (gone.run_id, gone.tool_id, gone.plugin, gone.pid) == (rid, "slow-tool", "slowpoke",
                                                                           child.pid)
            run = s.get_run(rid)
            assert run.status == "failed" and "'slowpoke'" in run.error
        assert not list((folder / "running").iterdir())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ---------------------------------------------- item 7: orphans, destinations, disk full
def test_orphans_are_collected_in_the_background_and_never_a_referenced_file(tmp_path, record, png):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        kept = record(s, data=png())
        orphan = s.files.put(b"left by a crash", "npy").path
        temp = orphan.parent / f"{filestore.TEMP_PREFIX}dead.png"
        temp.write_bytes(b"half a file")
        old = time.time() - 3600
        for p in (orphan, temp):
            os.utime(p, (old, old))
        thread = s.collect_orphans_in_background(min_age_s=60)
        thread.join(30)
        assert not orphan.exists() and not temp.exists()
        assert s.read_result(s.get_run(kept).results[0].id) == png()


def test_a_file_removed_by_a_collection_before_its_row_commits_is_written_again(store, png):
    """Identical content is reused without writing; if an orphan collection (here: another
    process) removed it in between, the write transaction puts it back before the commit."""
    first = store.files.put(png(), "png")
    original = store.files.put
    calls = []

    def put_then_collected(data, ext):
        stored = original(data, ext)
        if not calls:
            stored.path.unlink()  # a collection ran between the put and the transaction
        calls.append(ext)
        return stored

    store.files.put = put_then_collected
    rid = store.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1,
                           results=[{"kind": "image", "data": png(), "ext": "png"}])
    store.files.put = original
    assert calls == ["png", "png"]  # written again inside the transaction
    assert first.path.is_file() and store.read_result(store.get_run(rid).results[0].id) == png()


def test_export_into_a_read_only_folder_names_that_folder(tmp_path, store, record, png):
    rid = record(store, data=png())
    out = tmp_path / "out"
    out.mkdir()

    def refuse(path, data, sync=True):
        raise PermissionError(13, "Permission denied", str(path))

    orig = filestore.write_bytes_durably
    filestore.write_bytes_durably = refuse
    try:
        with pytest.raises(StorageWriteError) as exc:
            export_run(store, rid, out)
    finally:
        filestore.write_bytes_durably = orig
    assert f"the folder {out} is read-only" in str(exc.value)
    assert "session" not in str(exc.value)
    assert list(out.iterdir()) == []  # no temporary file left


def test_disk_io_error_on_a_full_disk_is_called_disk_full(tmp_path, monkeypatch):
    from storage import DiskFullError
    from storage import store as store_mod

    monkeypatch.setattr(store_mod, "_nearly_full", lambda folder, margin=0: True)
    err = store_mod._translate_db_error(sqlite3.OperationalError("disk I/O error"), tmp_path,
                                        "Recording the run")
    assert isinstance(err, DiskFullError) and "disk is full" in str(err)


def test_concurrent_collection_and_recording_never_lose_a_file(tmp_path, png):
    folder = tmp_path / "s"
    data = png(5, 5, (9, 9, 9))
    with SessionStore.open(folder) as a, SessionStore.open(folder) as b:
        stop = threading.Event()
        errors = []

        def collect():
            while not stop.is_set():
                try:
                    b.collect_orphans(min_age_s=0)
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)

        t = threading.Thread(target=collect)
        t.start()
        try:
            for i in range(60):
                rid = a.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=i,
                                   results=[{"kind": "image", "data": data, "ext": "png"}])
                a.delete_run(rid) if i % 2 else None
        finally:
            stop.set()
            t.join(30)
        assert not errors
        assert a.integrity_check(verify_hashes=True).ok


def test_repair_rewrites_a_damaged_schema_entry(tmp_path, png):
    """A bit flipped in the text of a table's schema hides every table ("malformed database
    schema"); the repair reads a copy with that text put back and loses nothing."""
    folder = tmp_path / "s"
    _bulk(folder, png, n=10)
    db = folder / "session.db"
    data = bytearray(db.read_bytes())
    at = data.index(b"CREATE TABLE runs (") + len("CREATE TABLE r")
    data[at] ^= 0x04  # "runs" -> "rqns"... an unknown token in the middle of the statement
    db.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabaseError):
        with SessionStore.open(folder) as s:
            s.list_runs()
    rep = repair_session(folder, tmp_path / "fixed")
    assert rep.runs_copied == 10 and rep.results_copied == 10
    assert any("schema entry of runs" in n for n in rep.notes)
