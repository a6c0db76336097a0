"""The Qt-free run controller: RunRequest as a record (JSON round trip, clear refusals), requests
made from form values (seed and model taken out, inputs given in memory kept in the session),
submit, reproduce with its bit-for-bit check, send-to and compare."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from app import api
from app.controller import RunController, RunRequest, SendError

PLUGIN = "ctl_toy"


@api.hookimpl
def studio_tools():
    return [
        api.ToolSpec(
            id="ctl-fill", title="Fill", run=f"{__name__}:fill", group="inpaint",
            params=(api.ImageParam(name="image"), api.MaskParam(name="mask", image_param="image"),
                    api.TextParam(name="prompt", default=""),
                    api.ModelParam(name="model", kind="numpy", aliases=("flat", "striped"), default="flat"),
                    api.SeedParam(name="seed")),
        ),
        api.ToolSpec(id="ctl-plain", title="Plain", run=f"{__name__}:plain",
                     params=(api.IntParam(name="n", default=1, min=0, max=9),)),
    ]


def fill(ctx, image, mask, prompt, model, seed):
    rng = np.random.default_rng(seed)
    out = image.image[..., :3].copy()
    noise = rng.integers(0, 256, out.shape, dtype=np.uint8)
    if model == "striped":
        noise[::2] = 0
    sel = mask.mask > 127
    out[sel] = noise[sel]
    ctx.progress(1, 1)
    return api.ImageResult(image=out, metadata={"prompt": prompt})


def plain(ctx, n):
    return api.ImageResult(image=np.full((4, 4, 3), n, np.uint8))


@pytest.fixture
def controller(tmp_path, studio_env):
    from app.plugins import PluginManager
    from app.session_view import SessionView
    from app.settings import Settings

    settings = Settings()
    pm = PluginManager(settings, entry_points=[], env={"IMPLICIT_STUDIO_LOAD_PLUGINS": PLUGIN}).load()
    pm.register_plugin(sys.modules[__name__], PLUGIN, version="1.0")
    session = SessionView.open(tmp_path / "session")
    assert session.store is not None, session.error
    ctl = RunController(pm, session, settings=settings)
    ctl.attach()
    events = []
    done = threading.Event()

    def listen(ev):
        events.append(ev)
        if ev.kind in ("finished", "failed", "cancelled", "reproduce-checked"):
            done.set()

    ctl.add_listener(listen)
    ctl.events, ctl.done = events, done
    yield ctl
    ctl.shutdown()
    session.close()


def _wait(ctl, kind):
    for _ in range(200):
        if ctl.done.wait(0.1):
            ctl.done.clear()
            hits = [e for e in ctl.events if e.kind == kind]
            if hits:
                return hits[-1]
    raise AssertionError(f"no {kind} event; got {[e.kind for e in ctl.events]}")


def test_run_request_round_trips_through_json_and_refuses_bad_records():
    req = RunRequest(tool="ctl-fill", params={"image": "result:3", "prompt": "sky"}, seed=42, model="striped",
                     device="cpu", parents=(3,))
    again = RunRequest.from_json(req.to_json())
    assert again == req and again.to_dict()["parents"] == [3]
    assert RunRequest.from_json('{"tool": "ctl-plain"}') == RunRequest(tool="ctl-plain")
    for text, words in (('{"params": {}}', "needs a 'tool'"), ('{"tool": "x", "sede": 1}', "no field 'sede'"),
                        ('{"tool": "x", "seed": -5}', "seed"), ('{"tool": "x", "seed": true}', "seed"),
                        ('{"tool": "x", "parents": ["a"]}', "run ids"), ("[1]", "JSON object"),
                        ("{nope", "must be JSON")):
        with pytest.raises(ValueError, match=words):
            RunRequest.from_json(text)
    with pytest.raises(ValueError, match="'mask'.*ndarray"):
        RunRequest(tool="ctl-fill", params={"mask": np.zeros((2, 2))}).to_json()


def test_values_for_puts_seed_and_model_under_the_tools_own_parameters(controller):
    tool = controller.tool("ctl-fill")
    req = RunRequest(tool="ctl-fill", params={"prompt": "a"}, seed=9, model="striped")
    assert req.values_for(tool) == {"prompt": "a", "seed": 9, "model": "striped"}
    with pytest.raises(api.ParamError, match="takes no seed"):
        RunRequest(tool="ctl-plain", seed=1).values_for(controller.tool("ctl-plain"))


def test_a_painted_mask_is_kept_in_the_session_and_the_run_reproduces_bit_for_bit(controller, tmp_path):
    from PIL import Image

    img = np.full((16, 16, 3), 90, np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    values = {"image": str(path), "mask": mask, "prompt": "p", "model": "striped", "seed": 1234}
    req = controller.request("ctl-fill", values)
    # the request is a plain record: the mask became a stored input, the seed and model fields
    assert req.seed == 1234 and req.model == "striped" and "seed" not in req.params
    ref = req.params["mask"]
    assert ref.startswith("result:") and RunRequest.from_json(req.to_json()) == req
    kept = controller.session.load_result(int(ref.split(":")[1]))
    assert kept.kind == "mask" and np.array_equal(kept.mask, mask)
    input_run = controller.session.run_of_result(int(ref.split(":")[1]))
    assert req.parents == (input_run,) and controller.session.run(input_run).tool_id == "input"

    controller.submit(req)
    _wait(controller, "finished")
    run = controller.session.list_runs(limit=1)[0]
    assert run.tool_id == "ctl-fill" and run.seed == 1234 and run.model_ref == "striped"
    assert run.params["mask"] == ref and run.parent_run_id == input_run
    assert controller.reproduce_request(run.id) == RunRequest(
        tool="ctl-fill", params={"image": str(path), "mask": ref, "prompt": "p"}, seed=1234, model="striped",
        parents=(input_run,))

    job_id = controller.reproduce(run.id)
    checked = _wait(controller, "reproduce-checked")
    assert checked.job.id == job_id and checked.data["run_id"] == run.id
    assert checked.data["matched"], checked.data["message"]
    assert "bit for bit" in checked.data["message"]


def test_reproduce_says_why_a_run_given_its_input_in_memory_cannot_be_repeated(controller, tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    # a run whose mask was handed over in memory, outside a request (as before masks were kept)
    job = controller.runner.submit("ctl-fill", {"image": str(path), "mask": np.ones((8, 8), np.uint8) * 255, "seed": 5})
    assert job.wait(20)
    assert job.recorded_params["mask"] == "<mask given in memory>"
    with pytest.raises(ValueError, match=f"run #{job.run_id} was given its mask in memory"):
        controller.reproduce_request(job.run_id)


def test_send_to_and_compare(controller):
    controller.submit(controller.request("ctl-plain", {"n": 3}))
    _wait(controller, "finished")
    controller.submit(controller.request("ctl-plain", {"n": 5}))
    _wait(controller, "finished")
    b, a = controller.session.list_runs(limit=2)
    rid = a.results[0].id
    assert controller.send_to(a.id, rid, "ctl-fill") == {"image": f"result:{rid}"}
    for tool_id, words in (("nope", "not available"), ("ctl-plain", "does not take an image")):
        with pytest.raises(SendError, match=words):
            controller.send_to(a.id, rid, tool_id)
    with pytest.raises(SendError, match="Choose a result"):
        controller.send_to(a.id, None, "ctl-fill")
    left, right = controller.compare((a.id, rid), (b.id, b.results[0].id))
    assert left.title == f"#{a.id} ctl-plain" and left.params["n"] == 3 and right.params["n"] == 5
    assert left.image is not None and left.image.endswith(".png")
    assert [t.tool_id for t in controller.send_targets()] == ["ctl-fill"]
