"""ctx.run_tool (API 1.2): a tool running another tool through the run controller, in the calling
thread, with the caller's cancel, device and a share of its progress bar, recorded as a child run;
refusals of missing, disabled and mismatched tools; partial results kept on cancel."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from app import api
from app.controller import RunController, RunRequest
from app.jobs import JobState

PLUGIN = "rt_toy"
OTHER = "rt_other"

#: Set by a test to cancel the composing run after that many children have finished.
CANCEL_AFTER: dict[str, object] = {}


@api.hookimpl
def studio_tools():
    return [
        api.ToolSpec(id="rt-leaf", title="Leaf", run=f"{__name__}:leaf",
                     params=(api.IntParam(name="level", default=1, min=0, max=255),
                             api.SeedParam(name="seed"))),
        api.ToolSpec(id="rt-sweep", title="Sweep", run=f"{__name__}:sweep", seeded=False,
                     params=(api.SeedListParam(name="seeds", default=(1, 2, 3), required=True),
                             api.IntParam(name="level", default=7, min=0, max=255),
                             api.TextParam(name="target", default="rt-leaf"))),
        api.ToolSpec(id="rt-fail", title="Fails", run=f"{__name__}:fail"),
        api.ToolSpec(id="rt-invert", title="Invert", run=f"{__name__}:invert", seeded=False,
                     params=(api.ImageParam(name="image"),)),
        api.ToolSpec(id="rt-chain", title="Chain", run=f"{__name__}:chain", seeded=False,
                     params=(api.ImageParam(name="image"),)),
        api.ToolSpec(id="rt-accel", title="Accelerated", run=f"{__name__}:leaf", backends=("torch",),
                     params=(api.IntParam(name="level", default=1), api.SeedParam(name="seed"))),
    ]


class _Other:
    """A second plugin, to be disabled."""

    @staticmethod
    @api.hookimpl
    def studio_tools():
        return [api.ToolSpec(id="rt-other", title="Other", run=f"{__name__}:leaf",
                             params=(api.IntParam(name="level", default=1), api.SeedParam(name="seed")))]


def leaf(ctx, level, seed):
    for i in range(4):
        if level == 99 and seed == 2 and i == 2:
            ctx.cancel()  # as if the user pressed Cancel while this child runs
        ctx.progress(i, 4, f"leaf step {i}")
    ctx.progress(4, 4)
    pixels = np.full((2, 2, 3), level, np.uint8)
    pixels[0, 0] = seed % 256
    return api.ImageResult(image=pixels, label=f"seed {seed}", metadata={"seed": seed, "thread": threading.get_ident()})


def sweep(ctx, seeds, level, target):
    done: list[api.Result] = []
    try:
        for i, seed in enumerate(seeds):
            ctx.progress(i, len(seeds), f"seed {seed}")
            done += ctx.run_tool(target, level=level, seed=seed)
            if CANCEL_AFTER.get("n") == len(done):
                CANCEL_AFTER["job"].cancel()  # what the user's Cancel does
    except api.Cancelled:
        raise api.Cancelled(results=done) from None
    ctx.progress(len(seeds), len(seeds), "done")
    return done + [api.TableResult(columns=("thread",), rows=[(threading.get_ident(),)])]


def fail(ctx):
    raise KeyError("colours")


def invert(ctx, image):
    return api.ImageResult(image=255 - image.image)


def chain(ctx, image):
    (once,) = ctx.run_tool("rt-invert", image=image)       # the caller's own input, handed on
    (twice,) = ctx.run_tool("rt-invert", image=once)       # a result of a tool it ran
    edited = api.ImageResult(image=twice.image.copy())
    edited.image[0, 0] = 7                                 # a new picture: kept as an input
    (thrice,) = ctx.run_tool("rt-invert", image=edited)
    twice.image[1, 1] = 9                                  # changed in place: no longer the stored one
    (again,) = ctx.run_tool("rt-invert", image=twice)
    return [thrice, again]


@pytest.fixture
def controller(tmp_path, studio_env):
    from app.plugins import PluginManager
    from app.session_view import SessionView
    from app.settings import Settings

    settings = Settings()
    pm = PluginManager(settings, entry_points=[], env={"IMPLICIT_STUDIO_LOAD_PLUGINS": PLUGIN}).load()
    assert pm.register_plugin(sys.modules[__name__], PLUGIN, version="1.0").ok
    assert pm.register_plugin(_Other, OTHER, version="2.0").ok
    session = SessionView.open(tmp_path / "session")
    assert session.store is not None, session.error
    ctl = RunController(pm, session, settings=settings)
    ctl.attach()
    CANCEL_AFTER.clear()
    yield ctl
    CANCEL_AFTER.clear()
    ctl.shutdown()
    session.close()


def _run(ctl, tool, **values):
    events = []
    job = ctl.run(ctl.request(tool, values, device="cpu"), listener=events.append)
    return job, events


def test_a_tool_runs_another_and_the_session_records_the_children(controller):
    job, events = _run(controller, "rt-sweep", seeds="5, 6", level=9)
    assert job.state is JobState.FINISHED, job.error
    images = [r for r in job.results if r.kind == "image"]
    assert [int(r.image[0, 0, 0]) for r in images] == [5, 6]
    assert all(int(r.image[1, 1, 0]) == 9 for r in images)
    # the children ran in the caller's thread (a queued job would wait for this one for ever)
    (table,) = [r for r in job.results if r.kind == "table"]
    assert {r.metadata["thread"] for r in images} == {table.rows[0][0]}
    store = controller.session.store
    children = store.children(job.run_id)
    assert [c.tool_id for c in children] == ["rt-leaf", "rt-leaf"]
    assert [c.seed for c in children] == [5, 6] and all(c.status == "ok" for c in children)
    assert all(len(c.results) == 1 for c in children)
    parent = store.get_run(job.run_id)
    assert parent.seed is None  # seeded=False: no run-level seed recorded
    assert parent.params["seeds"] == [5, 6]
    # the children are told as child-* events, not as jobs of the queue
    kinds = [e.kind for e in events]
    assert kinds.count("child-started") == 2 and kinds.count("child-finished") == 2
    assert kinds.count("started") == 1 and kinds.count("finished") == 1
    assert all(e.data["parent_job_id"] == job.id for e in events if e.kind.startswith("child-"))
    assert [c.run_id for c in job.children] == [c.id for c in children]


def test_nested_progress_fills_the_callers_step(controller):
    job, events = _run(controller, "rt-sweep", seeds="1-2", level=1)
    assert job.state is JobState.FINISHED, job.error
    fractions = [e.data["step"] / e.data["total"] for e in events if e.kind == "progress" and e.data["total"]]
    assert fractions == sorted(fractions), fractions  # one bar, never going back
    assert fractions[-1] == 1.0
    # the first child's steps fall between 0 and 1/2, the second's between 1/2 and 1
    child_msgs = [(e.data["step"] / e.data["total"], e.data["message"]) for e in events
                  if e.kind == "progress" and "Leaf" in e.data["message"]]
    assert len(child_msgs) == 10
    assert all(0 <= f <= 0.5 for f, m in child_msgs[:5]) and all(0.5 <= f <= 1.0 for f, m in child_msgs[5:])
    assert child_msgs[1][1] == "seed 1 · Leaf: leaf step 1"


def test_a_queued_composing_job_does_not_deadlock(controller):
    done = threading.Event()
    outcome = {}

    def listen(ev):
        if ev.kind in ("finished", "failed", "cancelled"):
            outcome["job"] = ev.job
            done.set()

    controller.add_listener(listen)
    controller.submit(controller.request("rt-sweep", {"seeds": "3"}, device="cpu"))
    assert done.wait(30), "the composing job never finished"
    assert outcome["job"].state is JobState.FINISHED, outcome["job"].error


def test_cancel_keeps_the_partial_results_of_the_caller_and_the_child(controller):
    CANCEL_AFTER["n"] = 2

    class _Cancel:
        def cancel(self):
            controller.cancel(job_holder["id"])

    CANCEL_AFTER["job"] = _Cancel()
    job_holder = {}
    runner = controller.attach()
    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1-4", "level": 3}, "cpu")
    job_holder["id"] = job.id
    runner.run_job(job)
    assert job.state is JobState.CANCELLED
    assert [int(r.image[0, 0, 0]) for r in job.results] == [1, 2]
    store = controller.session.store
    run = store.get_run(job.run_id)
    assert run.status == "cancelled" and len(run.results) == 2  # the gallery shows them
    # two children finished; the cancel reached the caller before it started a third
    assert [c.status for c in store.children(job.run_id)] == ["ok", "ok"]

    # a cancel while a child runs: the child is recorded cancelled, the caller keeps what it had
    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1-4", "level": 99}, "cpu")
    runner.run_job(job)
    assert job.state is JobState.CANCELLED and [int(r.image[0, 0, 0]) for r in job.results] == [1]
    assert [c.status for c in store.children(job.run_id)] == ["ok", "cancelled"]
    assert store.get_run(job.run_id).status == "cancelled" and len(store.get_run(job.run_id).results) == 1


def test_refusals_are_tool_errors_naming_the_tool(controller):
    runner = controller.attach()
    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1", "target": "no-such-tool"}, "cpu")
    runner.run_job(job)
    assert job.state is JobState.FAILED and "'no-such-tool' cannot be run: no installed plugin provides it" in job.error

    controller.manager.set_enabled(OTHER, False)
    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1", "target": "rt-other"}, "cpu")
    runner.run_job(job)
    assert job.state is JobState.FAILED
    assert f"its plugin {OTHER!r} is disabled" in job.error and f"plugins enable {OTHER}" in job.error

    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1", "target": "rt-accel"}, "cpu")
    runner.run_job(job)
    assert job.state is JobState.FAILED and "add 'torch' (or 'onnx') to the backends of 'rt-sweep'" in job.error


def test_a_bad_value_and_a_failing_child(controller):
    runner = controller.attach()
    job = runner.prepare(controller.tool("rt-sweep"), {"seeds": "1", "level": 7, "target": "rt-fail"}, "cpu")
    runner.run_job(job)
    assert job.state is JobState.FAILED
    assert "'rt-sweep' ran 'rt-fail' with a value it refuses" in job.error and "level" in job.error

    def bad_child(ctx):
        return ctx.run_tool("rt-fail")

    job = runner.prepare(controller.tool("rt-leaf"), {"level": 1}, "cpu")
    from app.jobs import Job  # a run function that calls a failing tool, run through the real runner

    ctx_jobs = []

    def run_with(ctx, level, seed):
        ctx_jobs.append(ctx)
        return bad_child(ctx)

    controller.manager._ref_cache[controller.tool("rt-leaf").run] = run_with
    try:
        runner.run_job(job)
    finally:
        controller.manager._ref_cache.pop(controller.tool("rt-leaf").run, None)
    assert isinstance(job, Job) and job.state is JobState.FAILED
    assert "Fails (run #" in job.error and "KeyError" in job.error
    (child,) = controller.session.store.children(job.run_id)
    assert child.tool_id == "rt-fail" and child.status == "failed"


def test_the_registry_is_read_only_and_lists_enabled_tools(controller):
    seen = {}

    def look(ctx, level, seed):
        seen["tools"] = ctx.tools
        return None

    runner = controller.attach()
    controller.manager._ref_cache[controller.tool("rt-leaf").run] = look
    try:
        controller.manager.set_enabled(OTHER, False)
        runner.run_job(runner.prepare(controller.tool("rt-leaf"), {}, "cpu"))
    finally:
        controller.manager._ref_cache.pop(controller.tool("rt-leaf").run, None)
    tools = seen["tools"]
    assert "rt-sweep" in tools and "rt-other" not in tools
    assert isinstance(tools["rt-leaf"], api.ToolSpec) and tools["rt-leaf"].params[0].name == "level"
    with pytest.raises(TypeError):
        tools["x"] = tools["rt-leaf"]  # type: ignore[index]


def test_a_plain_context_says_it_cannot_run_tools_and_a_stand_in_can():
    with pytest.raises(api.ToolError, match="made without the studio"):
        api.RunContext().run_tool("text-to-image", prompt="x")
    calls = []
    ctx = api.RunContext(tool_runner=lambda c, tool_id, params: calls.append((tool_id, params)) or [])
    assert sweep(ctx, (4,), 2, "rt-leaf")[-1].kind == "table"
    assert calls == [("rt-leaf", {"level": 2, "seed": 4})]


def test_request_records_of_children_round_trip(controller):
    job, _ = _run(controller, "rt-sweep", seeds="8", level=2)
    (child,) = controller.session.store.children(job.run_id)
    req = controller.reproduce_request(child.id)
    assert req == RunRequest(tool="rt-leaf", params={"level": 2}, seed=8, parents=(job.run_id,))


def test_inputs_handed_on_are_recorded_by_reference(controller, tmp_path):
    from PIL import Image

    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    job, _ = _run(controller, "rt-chain", image=str(tmp_path / "in.png"))
    assert job.state is JobState.FINISHED, job.error
    store = controller.session.store
    kids = store.children(job.run_id)
    assert [k.tool_id for k in kids] == ["rt-invert"] * 4
    first, second, third, fourth = kids
    assert first.params["image"] == str(tmp_path / "in.png")          # the caller's input, as given
    assert second.params["image"] == f"result:{first.results[0].id}"  # the first child's stored result
    for kid in (third, fourth):  # new or edited pictures are kept in the session, as the window keeps them
        ref = kid.params["image"]
        assert ref.startswith("result:") and store.get_run(store.get_result(int(ref[7:])).run_id).tool_id == "input"
    thrice, again = job.results
    assert int(thrice.image[0, 0, 0]) == 255 - 7 and int(again.image[1, 1, 0]) == 255 - 9
