"""Live mode's scheduling (app.live) without Qt: debounce, latest wins, stale frames dropped, one
load, errors reported and survived; and drawing a tool's picture with its own run function."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app import api
from app.live import LiveScheduler, ToolDrawer, live_capable, live_values


class Recorder:
    def __init__(self):
        self.frames, self.errors, self.status = [], [], []
        self.got = threading.Event()

    def frame(self, f):
        self.frames.append(f)
        self.got.set()

    def error(self, message):
        self.errors.append(message)
        self.got.set()


def make(draw, rec, **kw):
    return LiveScheduler(draw, on_frame=rec.frame, on_error=rec.error, on_status=rec.status.append, **kw).start()


def test_a_request_superseded_while_drawn_is_dropped_and_only_the_newest_is_shown():
    rec, gate, started = Recorder(), threading.Event(), threading.Event()
    drawn = []

    def draw(payload):
        drawn.append(payload)
        if payload == "a":
            started.set()
            assert gate.wait(5)
        return payload.upper()

    live = make(draw, rec)
    try:
        live.submit("a")
        assert started.wait(5)
        live.submit("ab")  # waits, then is replaced by the next
        live.submit("abc")
        gate.set()
        assert live.wait_idle(5)
    finally:
        live.stop()
    assert drawn == ["a", "abc"]  # "ab" never drawn: a newer request replaced it while it waited
    assert [f.image for f in rec.frames] == ["ABC"]  # "A" was stale when done: dropped
    assert live.stats.stale == 1 and live.stats.replaced == 1 and live.stats.shown == 1
    assert rec.frames[0].seq == 3 and rec.frames[0].payload == "abc"


def test_debounce_draws_a_burst_once():
    rec, drawn = Recorder(), []
    live = make(lambda p: drawn.append(p) or p, rec, debounce_s=0.15)
    try:
        for text in ("r", "re", "red"):
            live.submit(text)
            time.sleep(0.02)
        assert live.wait_idle(5)
    finally:
        live.stop()
    assert drawn == ["red"]
    assert [f.payload for f in rec.frames] == ["red"]


def test_the_model_loads_once_on_the_worker_with_a_status():
    rec, loads, threads = Recorder(), [], []

    def load():
        loads.append(1)
        threads.append(threading.current_thread())

    live = make(lambda p: p, rec, load=load)
    try:
        for i in range(3):
            live.submit(i)
            assert live.wait_idle(5)
    finally:
        live.stop()
    assert loads == [1]
    assert threads[0] is not threading.main_thread()
    assert rec.status == ["loading", "ready"]
    assert [f.payload for f in rec.frames] == [0, 1, 2]


def test_a_failing_drawing_is_reported_and_the_next_request_still_draws():
    rec = Recorder()

    def draw(p):
        if p == "bad":
            raise RuntimeError("the UNet exploded")
        return p

    live = make(draw, rec)
    try:
        live.submit("bad")
        assert live.wait_idle(5)
        live.submit("good")
        assert live.wait_idle(5)
    finally:
        live.stop()
    assert rec.errors == ["Live drawing failed: RuntimeError: the UNet exploded"]
    assert [f.payload for f in rec.frames] == ["good"]
    assert live.stats.failed == 1


def test_a_failed_load_is_reported_and_tried_again():
    rec, tries = Recorder(), []

    def load():
        tries.append(1)
        if len(tries) == 1:
            raise api.ToolError("model folder not found: /nowhere")

    live = make(lambda p: p, rec, load=load)
    try:
        live.submit(1)
        assert live.wait_idle(5)
        live.submit(2)
        assert live.wait_idle(5)
    finally:
        live.stop()
    assert rec.errors == ["The model for live drawing could not be loaded: model folder not found: /nowhere"]
    assert len(tries) == 2 and [f.payload for f in rec.frames] == [2]


def test_stop_ends_the_worker_and_refuses_new_requests():
    rec = Recorder()
    live = make(lambda p: p, rec)
    assert live.running
    assert live.stop(5)
    assert not live.running
    with pytest.raises(RuntimeError):
        live.submit(1)


# -- drawing with a tool ---------------------------------------------------------------------------

@pytest.fixture
def toy_manager(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "data"))
    from app.jobs import JobRunner
    from app.settings import Settings
    from tests.ui.conftest import make_manager

    pm = make_manager(Settings())
    return pm, JobRunner(pm, None)


def test_live_values_fix_the_seed_and_the_steps():
    from tests.ui import toy_plugin

    tool = toy_plugin.studio_tools()[0]
    assert live_capable(tool)
    assert not live_capable(toy_plugin.studio_tools()[1])  # no steps to lower
    vals = live_values(tool, {**tool.defaults(), "seed": -1, "steps": 40}, seed=1234, steps=2)
    assert vals["seed"] == 1234 and vals["steps"] == 2
    assert live_values(tool, {**tool.defaults(), "seed": 5}, seed=1234, steps=1)["seed"] == 5


def test_tool_drawer_draws_what_a_run_of_the_tool_makes(toy_manager):
    pm, runner = toy_manager
    tool = pm.tool("toy-gradient")
    values = {**tool.defaults(), "prompt": "a red star", "seed": 11, "steps": 1}
    drawer = ToolDrawer(pm, tool, load_input=runner.load_input)
    live_pic = drawer(values)
    job = runner.run_job(runner.prepare(tool, values))
    assert np.array_equal(live_pic, job.results[0].image)  # the same picture a (recorded) run makes
    with pytest.raises(api.ParamError):
        drawer({**values, "size": 100000})


def test_tool_drawer_names_the_plugin_error(toy_manager):
    pm, runner = toy_manager
    drawer = ToolDrawer(pm, pm.tool("toy-fail"), load_input=runner.load_input)
    rec = Recorder()
    live = make(drawer, rec)
    try:
        live.submit({"n": 2})
        assert live.wait_idle(5)
    finally:
        live.stop()
    assert rec.errors == ["Live drawing failed: RuntimeError: toy failure number 2"]
