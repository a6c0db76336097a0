"""Live mode in the real window (app.ui.live over app.live): the switch, typing draws a picture,
stale pictures are dropped, Keep records exactly one normal run that makes the picture shown, a
mask stroke redraws only the masked region while it is painted, and a failing model says so while
the window goes on."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from .conftest import diffusion_window as open_diffusion_window
from .conftest import needs_storage

TIMEOUT = 120000  # the first live picture loads the model on a busy 2-core machine


def _type(qtbot, win, text, name="prompt"):
    ed = win.form.editors[name]
    box = ed.focus_widget()
    box.setFocus()
    qtbot.keyClicks(box, text)
    return box


def _runs(win):
    return win.session.list_runs(limit=50) if win.session.store is not None else []


# -- the toy tool: fast, numpy only ------------------------------------------------------------------

@needs_storage
def test_live_switch_typing_draws_pictures_and_records_nothing(qtbot, window):
    win = window
    assert win.select_tool("toy-gradient")
    bar = win.live.bar
    assert bar.toggle.isEnabled()
    win.form.set_values({"prompt": "", "seed": -1}, record_undo=False)  # a random seed: live draws one
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        bar.toggle.setChecked(True)
    assert win.live.active
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT,
                          check_params_cb=lambda f: f.payload["prompt"] == "a blue star"):
        _type(qtbot, win, "a blue star")
    shown = win.live.shown
    assert shown.payload["steps"] == 1 and shown.payload["seed"] == win.live.seed
    assert win.result_area.preview.has_image() and win.result_area.current_viewer() is win.result_area.preview
    assert "live preview" in win.result_area.sub.text()
    assert bar.keep.isEnabled()
    assert _runs(win) == []  # live pictures are recorded nowhere
    bar.toggle.setChecked(False)
    assert not win.live.active and win.live.scheduler is None
    assert win.select_tool("toy-invert")  # no steps to lower: no live mode
    assert not bar.toggle.isEnabled()


@needs_storage
def test_a_picture_superseded_while_drawn_is_never_shown(qtbot, window):
    win = window
    assert win.select_tool("toy-gradient")
    win.form.set_values({"prompt": "", "delay": 0.15}, record_undo=False)  # 0.15 s a live picture
    shown = []
    win.live.frameShown.connect(lambda f: shown.append(f.payload["prompt"]))
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        win.live.bar.toggle.setChecked(True)
    shown.clear()
    box = _type(qtbot, win, "ab")
    qtbot.wait(60)  # "ab" is being drawn
    qtbot.keyClicks(box, "cdef")
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == "abcdef", timeout=TIMEOUT)
    qtbot.wait(400)
    assert win.live.scheduler.wait_idle(10)
    assert shown == ["abcdef"]  # "ab" was superseded while drawn: dropped, never shown
    stats = win.live.scheduler.stats
    assert stats.stale >= 1 and stats.replaced >= 1
    assert stats.shown == 1 + len(shown)  # with the first picture, before typing


# -- the real diffusion tools with the bundled one-step student ---------------------------------------

@pytest.fixture
def diffusion_window(qtbot, studio_env):
    pytest.importorskip("diffusers")
    from plugins.h_edit import plugin as h_edit
    from plugins.inpaint import plugin as inpaint
    from plugins.text_to_image import plugin as t2i

    win = open_diffusion_window(qtbot, studio_env / "session",
                                {"text_to_image": t2i, "inpaint": inpaint, "h_edit": h_edit})
    yield win
    win.close()


@needs_storage
def test_keep_records_exactly_one_run_that_makes_the_picture_shown(qtbot, diffusion_window):
    win = diffusion_window
    assert win.select_tool("text-to-image")
    win.form.set_values({"prompt": "", "model": "default", "seed": -1, "steps": 25}, record_undo=False)
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        win.live.bar.toggle.setChecked(True)
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT,
                          check_params_cb=lambda f: f.payload["prompt"] == "a red circle"):
        _type(qtbot, win, "a red circle")
    frame = win.live.shown
    assert _runs(win) == []
    with qtbot.waitSignal(win.jobFinished, timeout=TIMEOUT) as done:
        assert win.live.bar.keep.click() is None
    assert done.args[1] == "ok", win.last_error
    runs = _runs(win)
    assert len(runs) == 1
    run = runs[0]
    assert run.tool_id == "text-to-image" and run.seed == win.live.seed == frame.payload["seed"]
    assert run.model_ref == "default" and run.model_hash
    assert run.params["prompt"] == "a red circle" and run.params["steps"] == 1
    kept = win.session.load_result(run.results[0].id).image
    assert np.array_equal(kept[..., :3], np.asarray(frame.image)[..., :3])  # the picture shown, bit for bit
    # the live picture is the bundled student's: a 64x64 drawing, not noise
    assert kept.shape[:2] == (64, 64) and kept.std() > 10
    assert len(_runs(win)) == 1  # typing on records nothing more
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        _type(qtbot, win, " on blue")
    assert len(_runs(win)) == 1


@needs_storage
def test_a_failing_model_says_so_and_a_good_one_draws_again(qtbot, diffusion_window, tmp_path):
    win = diffusion_window
    assert win.select_tool("text-to-image")
    win.form.set_values({"prompt": "a green star", "model": str(tmp_path / "no-such-model")}, record_undo=False)
    win.live.bar.toggle.setChecked(True)
    qtbot.waitUntil(lambda: "Live drawing failed" in win.live.bar.status.text(), timeout=TIMEOUT)
    assert "no-such-model" in win.live.bar.status.text()
    assert win.error_dialog is None  # a line, not a dialog per keystroke
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        win.form.set_values({"model": "default"}, record_undo=False)
    assert win.live.shown.payload["model"] == "default"


@needs_storage
def test_a_mask_stroke_redraws_only_the_masked_region_while_it_is_painted(qtbot, diffusion_window, tmp_path):
    from PIL import Image

    win = diffusion_window
    assert win.select_tool("inpaint")
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 2] = 200
    img[20:44, 20:44] = (230, 30, 30)
    path = tmp_path / "picture.png"
    Image.fromarray(img).save(path)
    panel = win.form.widget
    assert panel.open_image(str(path))
    win.form.set_values({"prompt": "a yellow circle", "steps": 25, "model": "default"}, record_undo=False)
    canvas = panel.editor.canvas
    canvas.brush_size = 6
    canvas.fit()
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT):
        win.live.bar.toggle.setChecked(True)
    if panel.isAncestorOf(canvas):  # the canvas is in the panel: the pictures go to the centre
        assert not win.live.bar.view.isVisible() and win.result_area.current_viewer() is win.result_area.preview
    else:  # the canvas is in the centre, where the person paints: the pictures go under the switch
        assert win.live.bar.view.isVisible() and win.live.bar.view.has_image()
    first = win.live.shown.payload["mask"]
    assert not np.asarray(first).any()  # nothing painted yet: the picture is the input's

    def at(x, y):
        return canvas.to_widget(QPointF(x, y)).toPoint()

    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(16, 32))
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT,
                          check_params_cb=lambda f: np.asarray(f.payload["mask"]).any()):
        for x in range(18, 48, 3):
            QTest.mouseMove(canvas, at(x, 32))
            qtbot.wait(5)
    assert canvas.stroke_mask() is not None  # still painting: the stroke is not released yet
    frame = win.live.shown
    mask = np.asarray(frame.payload["mask"]) > 127
    out = np.asarray(frame.image)[..., :3]
    assert mask.any() and not mask.all()
    assert np.array_equal(out[~mask], img[~mask])  # outside the stroke: the input, bit for bit
    assert np.abs(out[mask].astype(int) - img[mask]).mean() > 5  # inside: redrawn
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(47, 32))
    assert canvas.stroke_mask() is None
    assert _runs(win) == []


@needs_storage
def test_hedit_live_previews_the_edit_with_the_one_step_student(qtbot, diffusion_window, tmp_path):
    from PIL import Image

    win = diffusion_window
    assert win.select_tool("h-edit")
    img = np.full((64, 64, 3), 245, np.uint8)
    img[20:44, 20:44] = (230, 30, 30)
    path = tmp_path / "picture.png"
    Image.fromarray(img).save(path)
    panel = win.form.widget
    assert panel.open_image(str(path))
    win.form.set_values({"source_prompt": "a red square on a white background", "target_prompt": "",
                         "steps": 25, "model": "default"}, record_undo=False)
    win.live.bar.toggle.setChecked(True)
    # an empty target prompt is the tool's own bad input: said on the live line, no dialog
    qtbot.waitUntil(lambda: "target prompt" in win.live.bar.status.text(), timeout=TIMEOUT)
    with qtbot.waitSignal(win.live.frameShown, timeout=TIMEOUT,
                          check_params_cb=lambda f: f.payload["target_prompt"] == "a blue square"):
        _type(qtbot, win, "a blue square", name="target_prompt")
    out = np.asarray(win.live.shown.image)[..., :3]
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert win.live.shown.payload["steps"] == 1 and _runs(win) == []
