"""The job runner: progress with ETA, previews, metrics, cancel at the next step, queue
operations, failures, device errors (toy plugin, real discovery)."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from app import api
from app.jobs import JobRunner, JobState


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def kinds(self, job=None):
        with self.lock:
            return [e.kind for e in self.events if job is None or e.job is job]

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events: {[e.kind for e in self.events]}")
                self.cond.wait(left)


@pytest.fixture
def runner(manager):
    r = JobRunner(manager, None, device="cpu")
    yield r
    r.shutdown(cancel=True)


def test_run_sync_reports_progress_eta_metrics_and_seed(runner):
    rec = Recorder()
    job = runner.run_sync("noise-image", {"size": 16, "steps": 4, "step_delay": 0.02, "seed": 11}, listener=rec)
    assert job.state is JobState.FINISHED, job.error
    image, metrics = job.results
    assert isinstance(image, api.ImageResult) and image.image.shape == (16, 16, 3)
    assert metrics.label == "metrics" and metrics.columns == ("metric", "step", "value") and len(metrics.rows) == 4
    assert job.seed == 11 and job.recorded_params["seed"] == 11 and job.device == "cpu"
    progress = [e.data for e in rec.events if e.kind == "progress"]
    assert [(p["step"], p["total"]) for p in progress] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert progress[0]["eta_s"] is None  # not enough steps seen yet
    eta = progress[2]["eta_s"]
    assert eta is not None and 0.01 < eta < 0.5  # ~2 steps x 20 ms left
    assert progress[-1]["eta_s"] == pytest.approx(0.0)
    assert rec.kinds()[0] == "started" and rec.kinds()[-1] == "finished"
    # same seed, same image
    again = runner.run_sync("noise-image", {"size": 16, "steps": 4, "seed": 11})
    assert np.array_equal(again.results[0].image, image.image)


def test_random_seed_is_drawn_and_recorded(runner):
    a = runner.run_sync("noise-image", {"size": 8, "steps": 1})
    b = runner.run_sync("noise-image", {"size": 8, "steps": 1, "seed": -1})
    assert a.seed != -1 and a.recorded_params["seed"] == a.seed
    assert a.seed != b.seed


def test_previews_are_throttled(manager):
    r = JobRunner(manager, None, device="cpu", preview_interval_s=10.0)
    rec = Recorder()
    job = r.run_sync("noise-image", {"size": 8, "steps": 30}, listener=rec)
    assert job.state is JobState.FINISHED
    previews = [e for e in rec.events if e.kind == "preview"]
    assert len(previews) == 1 and isinstance(previews[0].data["image"], api.ImageResult)


def test_cancel_takes_effect_at_next_step(runner):
    rec = Recorder()
    runner.add_listener(rec)
    job = runner.submit("noise-image", {"size": 8, "steps": 400, "step_delay": 0.02})
    rec.wait_for(lambda: any(e.kind == "progress" and e.job is job and e.data["step"] >= 2 for e in rec.events))
    t0 = time.monotonic()
    assert runner.cancel(job.id)
    assert job.wait(5.0)
    assert time.monotonic() - t0 < 1.0
    assert job.state is JobState.CANCELLED and job.step < 400
    rec.wait_for(lambda: "cancelled" in rec.kinds(job))
    assert "finished" not in rec.kinds(job)


def test_queue_one_at_a_time_with_reorder_hold_remove(runner):
    rec = Recorder()
    runner.add_listener(rec)
    long = runner.submit("noise-image", {"size": 8, "steps": 200, "step_delay": 0.02})
    rec.wait_for(lambda: "started" in rec.kinds(long))
    a = runner.submit("noise-image", {"size": 8, "steps": 1, "seed": 1})
    b = runner.submit("noise-image", {"size": 8, "steps": 1, "seed": 2})
    c = runner.submit("noise-image", {"size": 8, "steps": 1, "seed": 3})
    d = runner.submit("noise-image", {"size": 8, "steps": 1, "seed": 4}, held=True)
    assert runner.running() == [long]
    assert [j.id for j in runner.queued("cpu")] == [a.id, b.id, c.id, d.id]
    runner.move(c.id, 0)
    assert runner.remove(b.id) and b.state is JobState.CANCELLED
    assert [j.id for j in runner.queued()] == [c.id, a.id, d.id]
    with pytest.raises(ValueError):
        runner.move(long.id, 0)  # running, not queued
    runner.cancel(long.id)
    assert a.wait(10) and c.wait(10)
    started = [e.job.id for e in rec.events if e.kind == "started"]
    assert started == [long.id, c.id, a.id]
    time.sleep(0.2)
    assert d.state is JobState.QUEUED  # held jobs wait
    runner.hold(d.id, False)
    assert d.wait(10) and d.state is JobState.FINISHED
    assert "queue-changed" in rec.kinds()


def test_pause_and_resume_a_queue(runner):
    runner.pause("cpu")
    job = runner.submit("noise-image", {"size": 8, "steps": 1})
    time.sleep(0.2)
    assert job.state is JobState.QUEUED and runner.is_paused("cpu")
    runner.resume("cpu")
    assert job.wait(10) and job.state is JobState.FINISHED
    assert runner.wait_idle(5)


def test_tool_exception_becomes_failed_job_with_traceback(runner, manager):
    rec = Recorder()
    job = runner.run_sync("fail-tool", {"after_steps": 2}, listener=rec)
    assert job.state is JobState.FAILED
    assert job.error == "tool 'fail-tool' of plugin 'toy' failed: RuntimeError: toy failure on purpose"
    assert "studio_toy/ops.py" in job.traceback
    assert rec.kinds()[-1] == "failed" and rec.events[-1].data["error"] == job.error
    assert any("toy failure" in e for e in manager.records["toy"].runtime_errors)
    # the runner keeps working after a failure
    assert runner.run_sync("noise-image", {"size": 8, "steps": 1}).state is JobState.FINISHED


def test_tool_error_message_is_shown_plainly(runner):
    job = runner.run_sync("user-error-tool", {})
    assert job.state is JobState.FAILED
    assert job.error == "the toy model file is missing; put it in ~/toy" and job.traceback is None


def test_unimportable_run_function_fails_the_job(runner):
    job = runner.run_sync("missing-module-tool", {})
    assert job.state is JobState.FAILED and "studio_toy.no_such_module" in job.error


def test_bad_params_rejected_at_submit(runner):
    with pytest.raises(api.ParamError, match="Size: must be between 4 and 512, got 2"):
        runner.submit("noise-image", {"size": 2})
    assert runner.queued() == []


def test_unavailable_device_fails_with_a_clear_message(runner):
    from app import devices

    if devices.cuda_device_count_driver() > 0:
        pytest.skip("this machine has a CUDA device")
    job = runner.run_sync("noise-image", {"size": 8, "steps": 1}, device="cuda")
    assert job.state is JobState.FAILED
    assert "CUDA was requested but no CUDA device was found" in job.error


def test_image_and_mask_inputs_are_resolved(runner, tmp_path, manager):
    from PIL import Image

    src = np.zeros((4, 6, 3), np.uint8)
    src[:, :3] = 200
    path = tmp_path / "in.png"
    Image.fromarray(src).save(path)
    mask = np.zeros((4, 6), bool)
    mask[:2] = True
    job = runner.run_sync("invert-image", {"image": str(path), "mask": mask})
    assert job.state is JobState.FINISHED, job.error
    out = job.results[0].image
    assert (out[:2, :3] == 55).all() and (out[2:, :3] == 200).all() and (out[:2, 3:] == 255).all()
    # a file type only a reader hook understands
    toy = tmp_path / "g.toyimg"
    toy.write_bytes(b"TOY 2 1\n" + bytes([10, 20]))
    job = runner.run_sync("invert-image", {"image": str(toy)})
    assert job.results[0].image[0, :, 0].tolist() == [245, 235]
    job = runner.run_sync("invert-image", {"image": "result:1"})
    assert job.state is JobState.FAILED and "no session" in job.error


def test_mesh_and_table_results(runner):
    job = runner.run_sync("toy-mesh", {"scale": 2.0})
    mesh, table, metrics = job.results
    assert isinstance(mesh, api.MeshResult) and mesh.vertices.max() == 2.0
    assert isinstance(table, api.TableResult) and metrics.rows[0][0] == "volume"


# ---------------------------------------------------------------------------------------------
# with a real session store
# ---------------------------------------------------------------------------------------------


def test_runs_are_recorded_in_the_session(manager, store):
    from app import results_io

    runner = JobRunner(manager, store, device="cpu")
    job = runner.run_sync("noise-image", {"size": 12, "steps": 2, "seed": 5, "note": "hello"})
    assert job.state is JobState.FINISHED, job.error
    run = store.get_run(job.run_id)
    assert (run.tool_id, run.plugin, run.plugin_version, run.seed, run.status) == ("noise-image", "toy", "1.2.3", 5, "ok")
    # one recorded duration: the run's in the session is the job's (the command line prints it)
    assert run.duration_s == pytest.approx(job.elapsed_s, abs=1e-6) and run.finished_at == job.finished_at
    assert run.params["size"] == 12 and run.params["note"] == "hello" and run.device == "cpu"
    assert len(job.result_ids) == 2  # the image and the metrics table
    info = store.get_result(job.result_ids[0])
    assert (info.kind, info.ext, info.width, info.height) == ("image", "png", 12, 12)
    png = store.read_result(job.result_ids[0])
    meta = results_io.read_png_info(png)
    assert meta["tool_id"] == "noise-image" and meta["seed"] == 5 and meta["params"]["size"] == 12
    # a stored result is an input for the next run, which becomes its child
    child = runner.run_sync("invert-image", {"image": f"result:{job.result_ids[0]}"})
    assert child.state is JobState.FINISHED, child.error
    assert np.array_equal(child.results[0].image, 255 - job.results[0].image)
    assert store.get_run(child.run_id).parent_run_id == job.run_id


def test_failed_and_cancelled_runs_are_recorded(manager, store):
    runner = JobRunner(manager, store, device="cpu")
    failed = runner.run_sync("fail-tool", {})
    run = store.get_run(failed.run_id)
    assert run.status == "failed" and "toy failure on purpose" in run.error
    missing = runner.run_sync("invert-image", {"image": "result:999"})
    assert missing.state is JobState.FAILED and "999" in missing.error
    job = runner.submit("noise-image", {"size": 8, "steps": 500, "step_delay": 0.01})
    while job.step < 2 and not job.state.done:
        time.sleep(0.01)
    runner.cancel(job.id)
    assert job.wait(5) and job.state is JobState.CANCELLED
    assert store.get_run(job.run_id).status == "cancelled"
    runner.shutdown()


def test_plugin_without_a_version_records_ok_in_the_real_store(toy_site, settings, store):
    # the runner speaks the store's vocabulary itself: "ok" for a success, "" for no version
    import importlib

    from app.plugins import PluginManager

    m = PluginManager(settings, entry_points=[], env={}).load()
    rec = m.register_plugin(importlib.import_module("studio_toy.plugin"), "toy_unversioned")
    assert rec.ok and rec.version is None
    job = JobRunner(m, store, device="cpu").run_sync("noise-image", {"size": 8, "steps": 1})
    assert job.state is JobState.FINISHED, job.error
    run = store.get_run(job.run_id)
    assert (run.status, run.plugin, run.plugin_version) == ("ok", "toy_unversioned", "")


def test_open_session_marks_runs_left_running_as_failed(tmp_path):
    from storage import SessionStore

    from app.jobs import open_session

    folder = tmp_path / "session"
    crashed = SessionStore.open(folder)  # a process that began a run and then died
    left = crashed.begin_run(tool_id="noise-image", plugin="toy", plugin_version="1", params={}, seed=1)
    done = crashed.record_run(tool_id="noise-image", plugin="toy", plugin_version="1", params={}, seed=2)
    crashed.close()
    store = open_session(folder)
    try:
        run = store.get_run(left)
        assert run.status == "failed" and "stopped before this run finished" in run.error
        assert store.get_run(done).status == "ok"
    finally:
        store.close()
    kept = SessionStore.open(folder)  # recover=False leaves them alone
    try:
        again = kept.begin_run(tool_id="noise-image", plugin="toy", plugin_version="1", params={}, seed=3)
    finally:
        kept.close()
    store = open_session(folder, recover=False)
    try:
        assert store.get_run(again).status == "running"
    finally:
        store.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is a Linux feature")
def test_worker_threads_run_nicer_than_the_window(manager):
    """The window's runner lowers its worker threads' priority so the event loop wins the CPU."""
    import os

    seen = {}

    def probe(event):
        if event.kind == "progress" and "nice" not in seen:
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    r = JobRunner(manager, None, device="cpu", worker_niceness=5, listeners=[probe])
    try:
        job = r.submit("noise-image", {"size": 8, "steps": 2, "seed": 1})
        assert job.wait(20) and job.state is JobState.FINISHED, job.error
    finally:
        r.shutdown(cancel=True)
    assert seen["nice"] == min(19, main_nice + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice  # the caller is untouched
