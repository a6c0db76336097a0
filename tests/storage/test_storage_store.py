"""Core API of the session store: recording, reading, tree, annotations, canvas history, search."""

import sqlite3
import threading

import pytest

from storage.migrations import HEAD_REVISION
from storage import (
    InvalidParamsError,
    MissingFileError,
    NewResult,
    ReadOnlySessionError,
    ResultNotFoundError,
    RunNotFoundError,
    SessionStore,
    StorageError,
)


def test_open_creates_session_in_wal_with_foreign_keys(tmp_path):
    folder = tmp_path / "new" / "session"
    with SessionStore.open(folder, name="My session", app_version="9.9") as s:
        info = s.info()
        assert info.name == "My session" and info.app_version == "9.9"
        assert info.schema_revision == HEAD_REVISION
        with s._writer.connect() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (folder / "session.db").is_file()
    raw = sqlite3.connect(folder / "session.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_begin_add_finish_and_get_run(store, png):
    data = png()
    rid = store.begin_run(tool_id="text-to-image", plugin="text_to_image", plugin_version="0.1.0",
                          params={"prompt": "a red circle", "steps": 12, "guidance": 7.5},
                          seed=42, model_ref="resources/models/default", model_hash="abc123",
                          device="cpu", backend="torch")
    run = store.get_run(rid)
    assert run.status == "running" and run.finished_at is None and run.results == ()
    res = store.add_result(rid, "image", data, ".PNG", width=4, height=3, metadata={"k": [1, 2]})
    store.finish_run(rid, "ok")
    run = store.get_run(rid)
    assert run.status == "ok" and run.error is None
    assert run.finished_at >= run.started_at and run.duration_s >= 0
    assert run.params == {"prompt": "a red circle", "steps": 12, "guidance": 7.5}
    assert (run.seed, run.model_ref, run.model_hash, run.backend) == (
        42, "resources/models/default", "abc123", "torch")
    (r,) = run.results
    assert r.id == res and r.kind == "image" and r.ext == "png" and r.size == len(data)
    assert (r.width, r.height, r.metadata) == (4, 3, {"k": [1, 2]})
    assert store.read_result(res) == data
    assert store.result_path(res).read_bytes() == data
    assert store.result_path(res).relative_to(store.folder).parts[:2] == ("files", r.sha256[:2])


def test_failed_and_cancelled_runs_keep_error_text(store):
    a = store.begin_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=None)
    store.finish_run(a, "failed", error="Traceback: boom")
    b = store.begin_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=None)
    store.finish_run(b, "cancelled")
    assert store.get_run(a).status == "failed" and store.get_run(a).error == "Traceback: boom"
    assert store.get_run(b).status == "cancelled"
    assert [r.id for r in store.list_runs(status="failed")] == [a]
    with pytest.raises(InvalidParamsError, match="finishes as one of"):
        store.finish_run(a, "done")


def test_identical_outputs_are_stored_once(store, record):
    r1 = record(store, data=b"same bytes")
    r2 = record(store, data=b"same bytes", seed=2)
    p1 = store.get_run(r1).results[0].path
    p2 = store.get_run(r2).results[0].path
    assert p1 == p2
    files = [p for p in (store.folder / "files").rglob("*") if p.is_file()]
    assert len(files) == 1


def test_record_run_is_one_transaction_with_results_in_order(store):
    rid = store.record_run(
        tool_id="inpaint", plugin="inpaint", plugin_version="2", params={"prompt": "x"}, seed=3,
        results=[NewResult("image", b"a", "png", 2, 2), NewResult("mask", b"b", "png"),
                 {"kind": "array", "data": b"c", "ext": "npy", "shape": [2, 3, 4]}],
        status="ok", duration_s=1.5)
    run = store.get_run(rid)
    assert [r.kind for r in run.results] == ["image", "mask", "array"]
    assert [r.position for r in run.results] == [0, 1, 2]
    assert run.results[2].shape == (2, 3, 4)
    assert run.duration_s == 1.5 and run.status == "ok"


def test_history_is_a_tree(store, record):
    root = record(store, prompt="root", data=b"r")
    root_res = store.get_run(root).results[0].id
    a = record(store, prompt="child a", data=b"a", inputs=[root_res])
    b = record(store, prompt="child b", data=b"b", inputs=[root_res])
    a_res = store.get_run(a).results[0].id
    aa = record(store, prompt="grandchild", data=b"aa", inputs=[a_res, root_res])
    assert store.get_run(a).parent_run_id == root
    assert store.get_run(aa).inputs == (a_res, root_res)
    assert [r.id for r in store.children(root)] == [a, b]
    assert [r.id for r in store.children(a)] == [aa]
    assert store.children(aa) == []
    assert [r.id for r in store.ancestors(aa)] == [a, root]
    assert [r.id for r in store.lineage(aa)] == [root, a, aa]
    assert [r.id for r in store.lineage(root)] == [root]
    assert [r.id for r in store.descendants(root)] == [a, b, aa]
    with pytest.raises(ResultNotFoundError, match="Input result 999"):
        record(store, inputs=[999])
    with pytest.raises(RunNotFoundError):
        store.lineage(12345)


def test_delete_run_keeps_children_and_collects_files(store, record):
    root = record(store, data=b"r")
    child = record(store, data=b"c", inputs=[store.get_run(root).results[0].id])
    path = store.get_run(root).results[0].path
    store.delete_run(root)
    with pytest.raises(RunNotFoundError):
        store.get_run(root)
    kid = store.get_run(child)
    assert kid.parent_run_id is None and kid.inputs == (None,)
    report = store.collect_orphans(min_age_s=0)
    assert path in report.removed and not path.exists()
    assert store.get_run(child).results[0].path.exists()
    assert store.integrity_check().ok


def test_list_runs_newest_first_with_filters(store, record):
    ids = [record(store, prompt=f"prompt number {i}", seed=i, data=bytes([i])) for i in range(7)]
    other = record(store, prompt="a blue square", tool="h-edit", data=b"h")
    assert [r.id for r in store.list_runs()] == [other] + ids[::-1]
    assert [r.id for r in store.list_runs(limit=3, offset=1)] == ids[::-1][:3]
    assert [r.id for r in store.list_runs(tool="h-edit")] == [other]
    store.add_tag(ids[2], "favourite")
    store.add_tag(ids[2], "favourite")  # idempotent
    store.add_tag(ids[4], "favourite")
    assert [r.id for r in store.list_runs(tag="favourite")] == [ids[4], ids[2]]
    assert store.all_tags() == [("favourite", 2)]
    store.remove_tag(ids[4], "favourite")
    assert [r.id for r in store.list_runs(tag="favourite")] == [ids[2]]


def test_full_text_search_on_prompts_params_and_notes(store):
    def run(params):
        return store.record_run(tool_id="text-to-image", plugin="p", plugin_version="1",
                                params=params, seed=1)
    a = run({"prompt": "A red Circle on grass", "negative_prompt": "blurry"})
    b = run({"prompt": "blue square", "scheduler": "ddim"})
    c = run({"prompt": "Café crème", "nested": {"style": "watercolour"}})
    assert [r.id for r in store.list_runs(text="circle")] == [a]
    assert [r.id for r in store.list_runs(text="circ")] == [a]  # prefix
    assert [r.id for r in store.list_runs(text="blurry")] == [a]
    assert [r.id for r in store.list_runs(text="ddim")] == [b]
    assert [r.id for r in store.list_runs(text="cafe")] == [c]  # diacritics folded
    assert [r.id for r in store.list_runs(text="watercolour")] == [c]
    assert store.list_runs(text="red square") == []  # all words must match
    assert [r.id for r in store.list_runs(text='"quoted" AND (')] == []  # no FTS syntax errors
    store.set_note(b, "keep this one for the poster")
    assert [r.id for r in store.list_runs(text="poster")] == [b]
    assert [r.id for r in store.search("square poster")] == [b]


def test_tags_ratings_notes(store, record):
    rid = record(store)
    store.set_rating(rid, 5)
    store.set_note(rid, "note ✓")
    store.add_tag(rid, "b")
    store.add_tag(rid, "a")
    run = store.get_run(rid)
    assert (run.rating, run.note, run.tags) == (5, "note ✓", ("a", "b"))
    store.set_rating(rid, None)
    assert store.get_run(rid).rating is None
    with pytest.raises(InvalidParamsError, match="0 to 5"):
        store.set_rating(rid, 6)
    with pytest.raises(RunNotFoundError, match="Run 99 does not exist"):
        store.add_tag(99, "x")
    with pytest.raises(InvalidParamsError):
        store.add_tag(rid, "  ")


def test_bad_input_gives_clear_errors(store):
    base = dict(tool_id="t", plugin="p", plugin_version="1", seed=1)
    with pytest.raises(InvalidParamsError, match="NaN"):
        store.begin_run(params={"x": {"y": float("nan")}}, **base)
    with pytest.raises(InvalidParamsError, match="key 1"):
        store.begin_run(params={1: "a"}, **base)
    with pytest.raises(InvalidParamsError, match="type object"):
        store.begin_run(params={"x": object()}, **base)
    with pytest.raises(InvalidParamsError, match="seed"):
        store.begin_run(params={}, **{**base, "seed": 2**64})
    with pytest.raises(InvalidParamsError, match="tool id"):
        store.begin_run(params={}, **{**base, "tool_id": ""})
    with pytest.raises(ValueError, match="extension"):
        store.record_run(params={}, results=[NewResult("image", b"x", "../png")], **base)
    with pytest.raises(InvalidParamsError, match="bytes"):
        store.record_run(params={}, results=[NewResult("image", "not bytes", "png")], **base)
    with pytest.raises(RunNotFoundError):
        store.add_result(777, "image", b"x", "png")
    with pytest.raises(ResultNotFoundError):
        store.read_result(777)
    assert store.count_runs() == 0
    assert [p for p in store.folder.rglob("files/**/*") if p.is_file()] == []


def test_missing_result_file_is_a_clear_error(store, record):
    rid = record(store, data=b"will vanish")
    res = store.get_run(rid).results[0]
    res.path.unlink()
    with pytest.raises(MissingFileError, match="missing"):
        store.read_result(res.id)
    report = store.integrity_check()
    assert not report.ok and "missing" in str(report)
    # the run and its parameters are still there
    assert store.get_run(rid).params["prompt"] == "a red circle"


def test_canvas_history_undo_redo_persists(tmp_path):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        assert s.canvas_history("result:1").edits == ()
        assert s.undo("result:1") is None
        assert s.push_canvas_edit("result:1", b"stroke1", "brush") == 1
        assert s.push_canvas_edit("result:1", b"stroke2") == 2
        assert s.push_canvas_edit("result:1", b"stroke3") == 3
        assert s.undo("result:1") == b"stroke3"
        assert s.undo("result:1") == b"stroke2"
    with SessionStore.open(folder) as s:  # survives a restart
        st = s.canvas_history("result:1")
        assert st.position == 1 and st.applied == (b"stroke1",)
        assert st.edits == (b"stroke1", b"stroke2", b"stroke3") and st.can_redo
        assert st.labels[0] == "brush"
        assert s.redo("result:1") == b"stroke2"
        # a new edit after undo drops the redo branch
        assert s.push_canvas_edit("result:1", b"other") == 3
        st = s.canvas_history("result:1")
        assert st.edits == (b"stroke1", b"stroke2", b"other") and not st.can_redo
        assert s.redo("result:1") is None
        assert s.canvas_history("other-key").position == 0
        s.collect_orphans(min_age_s=0)  # stroke3's file is no longer referenced
        assert s.integrity_check().ok
        assert s.canvas_history("result:1").edits[-1] == b"other"


def test_readers_on_other_threads_see_committed_runs(store, record):
    seen, errors = [], []

    def reader():
        try:
            for _ in range(20):
                seen.append(len(store.list_runs(limit=1000)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(15):
        record(store, seed=i, data=bytes([i]))
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 60 and all(0 <= n <= 15 for n in seen)
    assert store.count_runs() == 15


def test_second_store_on_same_folder_sees_writes(tmp_path, record):
    with SessionStore.open(tmp_path / "s") as a, SessionStore.open(tmp_path / "s") as b:
        rid = record(a)
        assert b.get_run(rid).id == rid
        rid2 = record(b, data=b"other")
        assert {r.id for r in a.list_runs()} == {rid, rid2}


def test_readonly_open_refuses_writes(tmp_path, record):
    with SessionStore.open(tmp_path / "s") as s:
        rid = record(s)
    with SessionStore.open(tmp_path / "s", readonly=True) as ro:
        assert ro.get_run(rid).id == rid
        with pytest.raises(ReadOnlySessionError, match="read-only"):
            record(ro)
        with pytest.raises(ReadOnlySessionError):
            ro.set_note(rid, "x")


def test_recover_interrupted_marks_running_runs_failed(tmp_path):
    with SessionStore.open(tmp_path / "s") as first:
        rid = first.begin_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=None)
        assert first.recover_interrupted() == []  # its own live run
    with SessionStore.open(tmp_path / "s") as store:  # the run's owner has closed
        assert store.recover_interrupted() == [rid]
        run = store.get_run(rid)
        assert run.status == "failed" and "Interrupted" in run.error and "'p'" in run.error


def test_closed_store_refuses(tmp_path):
    s = SessionStore.open(tmp_path / "s")
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.list_runs()


def test_default_session_dir_uses_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path))
    assert SessionStore.default_session_dir() == tmp_path / "sessions" / "default"
    monkeypatch.delenv("IMPLICIT_STUDIO_DATA_DIR")
    import platformdirs

    expected = platformdirs.user_data_path("implicit-studio", appauthor=False)
    assert SessionStore.default_session_dir() == expected / "sessions" / "default"


def test_open_requires_classmethod(tmp_path):
    with pytest.raises(TypeError, match="SessionStore.open"):
        SessionStore(tmp_path, readonly=False)
