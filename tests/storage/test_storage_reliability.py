"""Reliability: kill -9 while recording, damaged databases, missing files, read-only folders,
full disks, and property tests of the parameter JSON round trip."""

import errno
import hashlib
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage.filestore as filestore
from storage import (
    CorruptDatabaseError,
    DiskFullError,
    InvalidParamsError,
    InvalidSessionError,
    ReadOnlySessionError,
    SessionStore,
)

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_row_points_at_a_missing_file(folder: Path) -> None:
    conn = sqlite3.connect(folder / "session.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT sha256, ext FROM results UNION "
                            "SELECT sha256, ext FROM canvas_edits").fetchall()
    finally:
        conn.close()
    for sha, ext in rows:
        p = folder / "files" / sha[:2] / f"{sha}.{ext}"
        assert p.is_file(), f"row points at missing file {p}"
        assert _sha(p) == sha, f"file {p} does not match its hash"


def test_kill_9_twenty_times_while_recording_loses_no_committed_run(tmp_path):
    folder = tmp_path / "session"
    rng = random.Random(1234)
    committed: set[int] = set()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    kills = 0
    t0 = time.monotonic()
    for i in range(20):
        proc = subprocess.Popen([sys.executable, str(CHILD), str(folder), str(i)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            line = proc.stdout.readline()
            assert line == b"ready\n", (line, proc.stderr.read()[-2000:])
            time.sleep(rng.uniform(0.02, 0.6))  # a random moment in the recording loop
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
            out, _err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        for ln in out.split(b"\n"):  # a partly written last line has no "\n" and is dropped
            if ln.startswith(b"committed "):
                committed.add(int(ln.split()[1]))
        # the database must open and be consistent after every single kill
        _no_row_points_at_a_missing_file(folder)
    elapsed = time.monotonic() - t0
    assert kills == 20 and len(committed) > 20, (kills, len(committed))

    with SessionStore.open(folder) as store:
        for rid in committed:
            run = store.get_run(rid)
            assert run.status == "ok" and run.results, run
            for res in run.results:
                assert store.read_result(res.id)  # the file is there and readable
        report = store.integrity_check(verify_hashes=True)
        assert report.ok, str(report)
        for key in ("canvas-0", "canvas-1", "canvas-2"):
            state = store.canvas_history(key)
            assert 0 <= state.position <= len(state.edits)
        # interrupted runs can be marked, and leftovers of interrupted writes collected
        store.recover_interrupted()
        assert store.list_runs(status="running") == []
        store.collect_orphans(min_age_s=0, temp_min_age_s=0)  # every writer was killed
        assert not list((folder / "files").rglob(filestore.TEMP_PREFIX + "*"))
        assert store.integrity_check(verify_hashes=True).ok
    print(f"20 kills, {len(committed)} committed runs verified in {elapsed:.1f}s")


# ---------------------------------------------------------------------------- damaged databases


def _session_with_runs(folder, record, n=3):
    with SessionStore.open(folder) as s:
        ids = [record(s, seed=i, data=f"result {i}".encode()) for i in range(n)]
    files = {p: _sha(p) for p in (folder / "files").rglob("*") if p.is_file()}
    return ids, files


def test_truncated_database_is_refused_and_left_alone(tmp_path, record):
    folder = tmp_path / "s"
    _ids, files = _session_with_runs(folder, record, n=30)
    db = folder / "session.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    before = _sha(db)
    with pytest.raises(CorruptDatabaseError, match="truncated.*left unchanged"):
        SessionStore.open(folder)
    assert _sha(db) == before
    assert {p: _sha(p) for p in files} == files  # result files untouched


def test_garbage_database_is_refused(tmp_path, record):
    folder = tmp_path / "s"
    _ids, files = _session_with_runs(folder, record)
    db = folder / "session.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptDatabaseError, match="not a SQLite database"):
        SessionStore.open(folder)
    assert db.read_bytes() == b"this is not sqlite" * 100
    assert all(p.is_file() for p in files)


def test_damaged_pages_give_a_clear_error(tmp_path, record):
    folder = tmp_path / "s"
    _session_with_runs(folder, record, n=20)
    db = folder / "session.db"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    rnd = random.Random(0)
    for i in range(page, len(data)):  # every page but the first (the schema) is garbage
        data[i] = rnd.randrange(256)
    db.write_bytes(bytes(data))
    before = _sha(db)
    with pytest.raises(CorruptDatabaseError, match="damaged"):
        with SessionStore.open(folder) as s:
            s.list_runs()
    assert _sha(db) == before


def test_empty_db_with_files_is_refused_but_empty_folder_is_a_new_session(tmp_path, record):
    folder = tmp_path / "s"
    _session_with_runs(folder, record)
    (folder / "session.db").write_bytes(b"")
    with pytest.raises(CorruptDatabaseError, match="empty although"):
        SessionStore.open(folder)
    other = tmp_path / "fresh"
    other.mkdir()
    (other / "session.db").write_bytes(b"")
    with SessionStore.open(other) as s:
        assert s.count_runs() == 0


def test_foreign_sqlite_database_is_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    conn = sqlite3.connect(folder / "session.db")
    conn.execute("CREATE TABLE photos(id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(InvalidSessionError, match="not an Implicit Studio session"):
        SessionStore.open(folder)


# ---------------------------------------------------------------------------- full disk


def test_full_disk_on_file_write_loses_nothing(store, record, monkeypatch):
    kept = record(store, data=b"saved before")
    kept_path = store.get_run(kept).results[0].path

    def full(path, data, sync=True):
        with open(path, "wb") as f:  # a partial temp file, as a real full disk leaves
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filestore, "write_bytes_durably", full)
    with pytest.raises(DiskFullError, match="disk is full.*Nothing already saved"):
        record(store, data=b"x" * 10_000)
    rid = store.begin_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)
    with pytest.raises(DiskFullError):
        store.add_result(rid, "image", b"y" * 5000, "png")
    with pytest.raises(DiskFullError):
        store.push_canvas_edit("c", b"edit that does not fit")
    assert [r.id for r in store.list_runs()] == [rid, kept]
    assert store.get_run(rid).results == ()
    assert store.read_result(store.get_run(kept).results[0].id) == b"saved before"
    assert not list(store.folder.rglob(filestore.TEMP_PREFIX + "*"))  # partial temp removed
    assert store.integrity_check().ok and kept_path.is_file()
    monkeypatch.undo()
    store.add_result(rid, "image", b"y" * 5000, "png")  # works again once there is space
    store.finish_run(rid)
    assert store.get_run(rid).results[0].size == 5000


def test_full_database_gives_disk_full_error(store, record):
    kept = record(store, data=b"kept")
    with store._writer.connect() as c:  # the database may not grow any more
        pages = c.exec_driver_sql("PRAGMA page_count").scalar()
        c.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFullError, match="disk is full"):
        for i in range(200):
            store.record_run(tool_id="t", plugin="p", plugin_version="1",
                             params={"prompt": "word " * 2000, "i": i}, seed=i)
    assert store.get_run(kept).status == "ok"
    assert store.read_result(store.get_run(kept).results[0].id) == b"kept"
    assert store.integrity_check().ok


# ---------------------------------------------------------------------------- read-only folder


def test_read_only_folder(tmp_path, record, make_read_only):
    folder = tmp_path / "s"
    ids, files = _session_with_runs(folder, record)
    db_sha = _sha(folder / "session.db")
    undo = make_read_only(folder)
    try:
        with pytest.raises(ReadOnlySessionError, match="read-only.*history and export"):
            SessionStore.open(folder)
        with SessionStore.open(folder, readonly=True) as s:
            assert [r.id for r in s.list_runs()] == ids[::-1]
            assert s.read_result(s.get_run(ids[0]).results[0].id) == b"result 0"
            with pytest.raises(ReadOnlySessionError):
                record(s)
        with pytest.raises(ReadOnlySessionError):
            SessionStore.open(folder / "new-session-inside")
    finally:
        undo()
    assert _sha(folder / "session.db") == db_sha
    assert {p: _sha(p) for p in files} == files


def test_folder_becoming_read_only_while_open(tmp_path, record, make_read_only):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        kept = record(s, data=b"before")
        undo = make_read_only(folder / "files")
        try:
            with pytest.raises(ReadOnlySessionError, match="read-only"):
                record(s, data=b"a new result that needs a new file")
        finally:
            undo()
        assert s.read_result(s.get_run(kept).results[0].id) == b"before"
        assert s.count_runs() == 1 and s.integrity_check().ok


# ---------------------------------------------------------------------------- params JSON


def _finite_floats():
    return st.floats(allow_nan=False, allow_infinity=False)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | _finite_floats()
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None)
@given(params=st.dictionaries(st.text(max_size=10), _json_values, max_size=6),
       seed=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_params_json_round_trip(session_for_properties, params, seed):
    store = session_for_properties
    rid = store.begin_run(tool_id="t", plugin="p", plugin_version="1", params=params, seed=seed)
    run = store.get_run(rid)
    assert run.params == params and run.seed == seed
    assert repr(run.params) == repr(params)  # -0.0 vs 0.0 and int vs float kept apart


@settings(max_examples=30, deadline=None)
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       path=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3))
def test_nan_and_infinity_are_refused_with_their_location(session_for_properties, bad, path):
    params: dict = {}
    node = params
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = [1, bad]
    before = session_for_properties.count_runs()
    with pytest.raises(InvalidParamsError, match="NaN and infinite"):
        session_for_properties.begin_run(tool_id="t", plugin="p", plugin_version="1",
                                         params=params, seed=None)
    assert session_for_properties.count_runs() == before


def test_lone_surrogates_round_trip(store):
    params = {"prompt": "bad \ud800 text", "k\udfff": ["\udc00"]}
    rid = store.begin_run(tool_id="t", plugin="p", plugin_version="1", params=params, seed=1)
    assert store.get_run(rid).params == params


@pytest.fixture(scope="module")
def session_for_properties(tmp_path_factory):
    s = SessionStore.open(tmp_path_factory.mktemp("prop") / "s", durable=False)
    yield s
    s.close()

