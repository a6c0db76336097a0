"""In the window, h-Edit and inpainting run on a chosen local model with a chosen seed (from the
form their panels embed), the run records both, and Reproduce gives the same pixels — for
inpainting, with the painted mask kept in the session."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import diffusion_window, needs_storage

TIMEOUT = 240000  # a few denoising steps of a tiny model on a busy CPU


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("diffusers")
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return str(build_tiny_pipeline(tmp_path_factory.mktemp("tiny_model"), seed=3))


@pytest.fixture
def edit_window(qtbot, studio_env):
    from plugins.h_edit import plugin as h_edit
    from plugins.inpaint import plugin as inpaint

    win = diffusion_window(qtbot, studio_env / "session", {"h_edit": h_edit, "inpaint": inpaint})
    yield win
    win.close()


def _picture(tmp_path):
    from PIL import Image

    img = np.full((64, 64, 3), 150, np.uint8)
    img[18:46, 20:44] = (210, 40, 40)
    path = tmp_path / "picture.png"
    Image.fromarray(img).save(path)
    return str(path)


def _run_and_reproduce(qtbot, win, model, seed):
    with qtbot.waitSignal(win.jobFinished, timeout=TIMEOUT) as blocker:
        assert win.run_current() is not None, win.statusBar().currentMessage()
    assert blocker.args[1] == "ok", win.last_error
    run = win.session.list_runs(limit=1)[0]
    assert run.model_ref == model and run.seed == seed  # what the form chose, not the default model nor a random seed
    assert run.params["model"] == model and run.params["seed"] == seed
    with qtbot.waitSignal(win.reproduceChecked, timeout=TIMEOUT) as checked:
        assert win.run_actions.reproduce(run.id) is not None, win.last_error
    run_id, matched, message = checked.args
    assert run_id == run.id and matched, message
    again = win.session.list_runs(limit=1)[0]
    assert again.id != run.id and again.model_ref == model and again.seed == seed
    a = win.session.load_result(run.results[0].id).image
    b = win.session.load_result(again.results[0].id).image
    assert np.array_equal(a, b)
    return run


@needs_storage
def test_h_edit_runs_on_a_chosen_model_and_seed_and_reproduces(qtbot, edit_window, tiny_model, tmp_path):
    win = edit_window
    assert win.select_tool("h-edit")
    panel = win.form.widget
    assert panel.open_image(_picture(tmp_path))
    form = win.form.editors
    form["target_prompt"].set_value("a blue square")
    form["source_prompt"].set_value("a red square")
    form["steps"].set_value(3)
    form["model"].set_value(tiny_model)
    form["seed"].set_value(31337)
    panel.editor.canvas.apply_op("rect", 16, 16, 48, 48)  # confine the edit to a painted region
    panel.use_mask.setChecked(True)
    run = _run_and_reproduce(qtbot, win, tiny_model, 31337)
    assert run.params["region"].startswith("result:")  # the painted region was kept with the run


@needs_storage
def test_inpaint_runs_on_a_chosen_model_and_seed_and_reproduces(qtbot, edit_window, tiny_model, tmp_path):
    win = edit_window
    assert win.select_tool("inpaint")
    panel = win.form.widget
    assert panel.open_image(_picture(tmp_path))
    panel.editor.canvas.apply_op("rect", 20, 20, 44, 44)
    form = win.form.editors
    form["prompt"].set_value("a green circle")
    form["steps"].set_value(3)
    form["method"].set_value("blend")
    form["model"].set_value(tiny_model)
    form["seed"].set_value(4242)
    run = _run_and_reproduce(qtbot, win, tiny_model, 4242)
    mask_ref = run.params["mask"]
    kept = win.session.load_result(int(mask_ref.split(":")[1]))
    assert kept.mask[30, 30] == 255 and kept.mask[5, 5] == 0  # the painted mask, as painted
    assert '"op": "rect"' in run.params["mask_history"]
    # the run's parameters come back into the panel: the mask from the session, the model and the seed
    win.tool_panel.set_values({"mask": None}, record_undo=False)
    assert panel.values()["mask"] is not None and not panel.values()["mask"].any()
    assert win.run_actions.use_run_params(run.id)
    values = win.form.values()
    assert values["mask"] == mask_ref and values["model"] == tiny_model and values["seed"] == 4242
