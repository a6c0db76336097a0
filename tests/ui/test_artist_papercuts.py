"""Issue 28, the window as an artist meets it, with real widgets: the mask painted on the big canvas
(2), the wheel over a panel's controls (4), the History buttons in a narrow dock (5), exports that
keep the run's parameters (6), Send to for opened files and RL runs (7), runs made by the command
line appearing live (8), and seeds shown whole (10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QWheelEvent
from PySide6.QtWidgets import QApplication

from .builtin_window import TIMEOUT, builtin_window, picture, run_tool
from .conftest import needs_storage
from .test_main_window import choose, click_run, settle

REPO = Path(__file__).resolve().parents[2]


def wheel(widget, dy: int = -120) -> None:
    """A mouse wheel turn over the middle of ``widget``, sent to it (a spin box gets it from its
    line edit, which ignores it)."""
    pos = QPointF(widget.rect().center())
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, dy),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def menu_action(menu, text):
    menu.aboutToShow.emit()  # the menus are filled when they open
    acts = {a.text(): a for a in menu.actions()}
    assert text in acts, f"{text!r} not in {sorted(acts)}"
    return acts[text]


# --- 2: the mask is painted on the big canvas -----------------------------------------------------

def test_inpainting_paints_its_mask_on_the_centre_canvas(qtbot, studio_env, tmp_path):
    pytest.importorskip("torch")
    win = builtin_window(qtbot, studio_env, 1400, 880)
    assert win.select_tool("inpaint")
    panel = win.tool_panel.scroll.widget()
    area = win.result_area
    page = area.canvas
    assert page is not None and area.canvas_shown() and area.canvas_btn.isVisible()
    canvas = page.canvas
    # the canvas is in the centre, not in the side panel, and the panel keeps the mask tools
    assert not panel.isAncestorOf(canvas) and area.isAncestorOf(canvas)
    assert panel.isAncestorOf(panel.editor.grow_button) and panel.editor.grow_button.isVisible()
    assert panel.open_image(picture(tmp_path))
    qtbot.waitUntil(lambda: canvas.width() > 500)
    # the image fills the view: a 64x64 picture is shown about 8x or more
    assert canvas.zoom * 64 > 0.8 * min(canvas.width(), canvas.height())
    # a stroke of the brush on the canvas paints the mask the run will use
    c = canvas.rect().center()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=c)
    qtbot.mouseMove(canvas, c + QPoint(40, 0))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=c + QPoint(40, 0))
    mask = win.form.values()["mask"]
    assert mask is not None and mask[32, 32] > 0 and mask[2, 2] == 0
    # [ and ] change the brush, and the panel's size slider follows
    size = canvas.brush_size
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size > size and panel.editor.size_slider.value() == round(canvas.brush_size)
    # the wheel zooms about the cursor; Fit brings the whole image back
    canvas.set_zoom(canvas.zoom * 2)
    assert canvas.zoom * 64 > min(canvas.width(), canvas.height())
    area.fit_btn.click()
    assert canvas.zoom * 64 <= min(canvas.width(), canvas.height())
    # switching to the result side and back
    area.result_btn.click()
    assert not area.canvas_shown()
    area.canvas_btn.click()
    assert area.canvas_shown()
    # another tool: the canvas leaves the centre with its panel
    assert win.select_tool("text-to-image")
    assert area.canvas is None and not area.canvas_btn.isVisible()


# --- 4: the wheel scrolls the panel, not the value under the pointer -----------------------------

def test_the_wheel_over_an_unfocused_spin_box_scrolls_the_panel(qtbot, studio_env, tmp_path):
    pytest.importorskip("torch")
    win = builtin_window(qtbot, studio_env, 1280, 640)
    assert win.select_tool("inpaint")
    panel = win.tool_panel.scroll.widget()
    assert panel.open_image(picture(tmp_path))
    amount = panel.editor.amount  # the grow / shrink / feather pixels of the issue
    amount.setValue(2)
    bar = win.tool_panel.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    win.tool_panel.search.setFocus()
    before = bar.value()
    wheel(amount, -120)
    assert amount.value() == 2
    assert bar.value() > before  # the panel scrolled instead
    steps = win.form.editors["steps"]  # a slider and a spin box of the generated form
    slider_value = steps.slider.value()
    wheel(steps.slider, -120)
    wheel(steps.spin, -120)
    assert steps.slider.value() == slider_value and steps.value() == slider_value
    # once focused (clicked, or Tab), the spin box takes the wheel (a real X server gives focus
    # only to a widget of the active window)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow)
    amount.setFocus()
    qtbot.waitUntil(amount.hasFocus)
    wheel(amount, 120)
    assert amount.value() == 3


# --- 5: History's buttons wrap, never clip --------------------------------------------------------

def test_history_buttons_stay_whole_in_a_narrow_dock(qtbot, window):
    hist = window.history
    buttons = [hist.open_btn, hist.use_btn, hist.send_btn, hist.repro_btn, hist.compare_btn, hist.more_btn]
    for width in (460, 300, 200):
        window.resizeDocks([window.history_dock], [width], Qt.Orientation.Horizontal)
        qtbot.wait(30)
        bar = hist.actions_bar
        for b in buttons:
            assert b.isVisible(), (width, b.text())
            geo = b.geometry()
            assert bar.rect().contains(geo), (width, b.text(), geo, bar.rect())
            assert geo.width() >= b.sizeHint().width(), (width, b.text())
        assert bar.mapTo(hist, QPoint(0, bar.height())).y() <= hist.height()
    assert hist.repro_btn.y() > hist.open_btn.y()  # at 200 px the row wrapped


# --- 6: an export keeps the run's parameters and is named -----------------------------------------

def _text_chunks(path) -> dict:
    from PIL import Image

    with Image.open(path) as im:
        return dict(im.text)


@needs_storage
def test_export_keeps_the_parameters_and_reopens_them(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    form = choose(window, "toy-gradient")
    form.editors["prompt"].set_value("a blue square for export")
    form.editors["seed"].set_value(4083813968)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    run = window.session.list_runs(limit=1)[0]
    asked = {}
    out = tmp_path / "exported.png"

    def save_dialog(parent, caption, suggested, filters):
        asked["name"], asked["filters"] = suggested, filters
        return str(out), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    window.act_export.trigger()  # the tool bar's Export: the result shown
    assert Path(asked["name"]).name == f"toy-gradient-run{run.id}-seed4083813968.png"
    assert "*.png" in asked["filters"]
    chunks = _text_chunks(out)
    assert "implicit_studio" in chunks and "parameters" in chunks
    assert "a blue square for export" in chunks["parameters"]
    # the next export suggests the folder of this one
    window.act_export.trigger()
    assert Path(asked["name"]).parent == tmp_path
    # reopened, the export restores its tool and parameters
    choose(window, "toy-invert")
    assert window.open_path(out)
    assert window.tool_panel.current_tool.id == "toy-gradient"
    vals = window.form.values()
    assert vals["prompt"] == "a blue square for export" and vals["seed"] == 4083813968
    # and exporting the opened file again keeps its chunks too
    out2 = tmp_path / "again.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a: (str(out2), "")))
    window.act_export.trigger()
    assert _text_chunks(out2) == chunks


# --- 7: anything shown goes to any tool that takes it ----------------------------------------------

@needs_storage
def test_an_opened_png_can_be_sent_to_a_tool(qtbot, window, tmp_path):
    path = picture(tmp_path)
    assert window.open_path(path) is not None
    assert window.current_source is None and window.current_file == path
    assert window.result_area.send_btn.isVisible()
    menu_action(window.result_area.send_menu, "Toy invert").trigger()
    assert window.tool_panel.current_tool.id == "toy-invert"
    assert window.form.values()["image"] == path
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        click_run(qtbot, window)
    assert blocker.args[1] == "ok"


@needs_storage
def test_an_rl_run_can_be_sent_to_calibration(qtbot, studio_env):
    pytest.importorskip("gymnasium")
    win = builtin_window(qtbot, studio_env)
    assert run_tool(qtbot, win, "rl-record", {"episodes": 1, "seed": 4}) == "ok"
    record = win.session.list_runs(limit=1)[0]
    trajectory = next(r for r in record.results if r.kind == "file")
    # the header offers the run's trajectory to the tools that take one, not to image tools
    menu = win.result_area.send_menu
    act = menu_action(menu, "Calibration of predicted returns")
    assert "h-Edit (edit an image)" not in [a.text() for a in menu.actions()]
    act.trigger()
    assert win.tool_panel.current_tool.id == "rl-calibration"
    assert win.form.values()["trajectory"] == str(trajectory.path)
    # the field names the run, not the file's content hash
    shown = win.form.editors["trajectory"].edit.text()
    assert f"run #{record.id}" in shown and trajectory.path.name not in shown
    with qtbot.waitSignal(win.jobFinished, timeout=TIMEOUT) as blocker:
        assert win.run_current() is not None
    assert blocker.args[1] == "ok"
    child = win.session.list_runs(limit=1)[0]
    assert child.tool_id == "rl-calibration" and child.parent_run_id == record.id
    # History's Send to offers the same for the RL run
    hist = win.history
    settle(qtbot, hist)
    assert hist.select(record.id)
    assert hist.sendable() is not None and hist.send_btn.isEnabled()
    assert "Calibration of predicted returns" in [a.text() for a in (hist.send_menu.aboutToShow.emit(),
                                                                     hist.send_menu.actions())[1]]


# --- 8: runs of the command line appear live ------------------------------------------------------

@needs_storage
def test_a_run_made_by_the_command_line_appears_in_the_open_window(qtbot, window, studio_env):
    hist = window.history
    settle(qtbot, hist)
    assert not hist.runs
    env = dict(os.environ, IMPLICIT_STUDIO_NO_PLUGINS="1")
    sample = REPO / "resources" / "samples" / "rl" / "cartpole-c51.npz"
    proc = subprocess.run([sys.executable, "-m", "app", "run", "rl-calibration", "--trajectory", str(sample),
                           "--session", str(window.session.folder), "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # no refresh asked for: the window noticed the other process's commit
    qtbot.waitUntil(lambda: any(r.tool_id == "rl-calibration" for r in hist.runs.values()), timeout=15000)


# --- 10: seeds whole --------------------------------------------------------------------------------

def test_a_long_seed_is_shown_whole_and_copied(qtbot, window):
    window.resize(900, 700)
    form = choose(window, "toy-gradient")
    form.editors["seed"].set_value(4083813968)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        click_run(qtbot, window)
    qtbot.wait(50)
    seed = window.result_area.seed_btn
    assert seed.isVisible() and seed.text() == "seed 4083813968"
    assert seed.width() >= seed.sizeHint().width()  # never cut short
    header = window.result_area.header
    assert header.rect().contains(seed.geometry())
    qtbot.mouseClick(seed, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "4083813968"
    # the run details beside it do not repeat the seed (elided, they could cut it)
    assert "4083813968" not in window.result_area.sub.full_text()


# --- 9: each result in a viewer for it; a fit's curves drawn ---------------------------------------

def _show(qtbot, win, label: str):
    picker = win.result_area.picker
    i = next(i for i in range(picker.count()) if label in picker.itemText(i))
    with qtbot.waitSignal(win.resultShown, timeout=10000):
        picker.setCurrentIndex(i)
        picker.activated.emit(i)
    return win.result_area.current_viewer()


@needs_storage
def test_each_result_opens_in_a_viewer_for_it(qtbot, studio_env, tmp_path):
    pytest.importorskip("diffusers")
    from app.ui.viewers import TableResultViewer
    from plugins.inr.view2d import INRImageViewer
    from plugins.text_to_image.trajectory_view import TrajectoryViewer

    win = builtin_window(qtbot, studio_env)
    assert run_tool(qtbot, win, "inr-fit-image", {"image": picture(tmp_path), "steps": 30, "hidden": 16,
                                                  "layers": 2, "max_side": 16, "render_scale": 1}) == "ok"
    weights = _show(qtbot, win, "weights")
    assert isinstance(weights, INRImageViewer)  # not the denoising-trajectory viewer
    curves = _show(qtbot, win, "curves")
    assert isinstance(curves, TableResultViewer) and curves.plot.isVisible()
    assert set(curves.plot.series) == {"loss", "PSNR (dB)"} and len(curves.plot.x) == 30
    assert curves.plot.series["loss"][-1] < curves.plot.series["loss"][0]
    assert run_tool(qtbot, win, "text-to-image", {"prompt": "a red star", "steps": 2, "seed": 1}) == "ok"
    assert isinstance(_show(qtbot, win, "trajectory data"), TrajectoryViewer)


# --- 12: the bundled model's vocabulary in the prompt box ------------------------------------------

def test_the_prompt_box_knows_the_bundled_models_words(qtbot, studio_env):
    win = builtin_window(qtbot, studio_env)
    assert win.select_tool("text-to-image")
    ed = win.form.editors["prompt"]
    ed.set_value("a white circle next to a lion, on a white background")
    note = ed.note
    assert note.isVisible()
    assert "lion" in note.text() and "next" in note.text()
    assert "“white” is only a background colour" in note.text()
    ranges = ed.edit.document().firstBlock().layout().formats()
    marked = {ed.value()[r.start:r.start + r.length] for r in ranges}
    assert marked == {"white", "next", "to", "lion"}  # the second white, before "background", is fine
    # words it knows are completed as they are typed
    ed.set_value("")
    ed.edit.setFocus()
    qtbot.keyClicks(ed.edit, "a large tri")
    popup = ed.edit._vocabulary_helper.completer.popup()
    qtbot.waitUntil(popup.isVisible)
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    assert ed.value() == "a large triangle"
    assert not note.isVisible()
    # another model (a local folder with no vocabulary): no marks
    win.form.editors["model"].set_value(str(studio_env))
    ed.set_value("a lion")
    assert not note.isVisible() and not ed.edit.document().firstBlock().layout().formats()


# --- 15: smaller ones -------------------------------------------------------------------------------

@needs_storage
def test_the_image_chooser_names_each_result_once(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["with_strip"].set_value(True)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    labels = [label for _ref, label, _thumb in window.session.image_choices()]
    assert len(labels) == 2 and len(set(labels)) == 2, labels  # the strip was listed as the image again
    assert any("red strip" in label for label in labels)


@needs_storage
def test_the_result_picker_leaves_with_its_run(qtbot, window):
    """The header's result picker kept the previous run's items while another tool ran."""
    form = choose(window, "toy-gradient")
    form.editors["with_table"].set_value(True)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    assert window.result_area.picker.isVisible()
    form = choose(window, "toy-gradient")
    form.editors["with_table"].set_value(False)
    form.editors["steps"].set_value(60)
    form.editors["delay"].set_value(0.02)
    previews = []
    window.jobs.preview.connect(lambda *a: previews.append(1))
    click_run(qtbot, window)
    qtbot.waitUntil(lambda: bool(previews), timeout=TIMEOUT)
    assert not window.result_area.picker.isVisible() and window.result_area.picker.count() == 0
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        pass


# --- 15: shortcuts reach their actions; the Help menu --------------------------------------------

def test_shortcuts_reach_the_window_with_the_mask_canvas_in_it(qtbot, studio_env, tmp_path, monkeypatch):
    """Ctrl+O once did nothing, and Ctrl+Z never undid a parameter while a mask canvas was in the
    window: the canvas's own Ctrl+Z/Ctrl+Shift+Z shortcuts (window-wide) made the window's
    ambiguous, and Qt runs neither. The canvas now takes them only when it has the focus."""
    pytest.importorskip("torch")
    win = builtin_window(qtbot, studio_env, 1400, 880)
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win)
    assert win.select_tool("inpaint")
    panel = win.tool_panel.scroll.widget()
    assert panel.open_image(picture(tmp_path))
    canvas = win.result_area.canvas.canvas
    opened = []
    monkeypatch.setattr(win.run_actions, "open_dialog", lambda: opened.append(1))
    steps = win.form.editors["steps"]
    before = steps.value()
    steps.set_value(before + 7)
    assert win.act_undo.isEnabled()
    win.tool_panel.tree.setFocus()  # the tool list: a text field's own Ctrl+Z would be its text's
    qtbot.keyClick(win.tool_panel.tree, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: steps.value() == before, timeout=3000)
    # on the canvas, Ctrl+Z undoes the stroke, not a parameter
    c = canvas.rect().center()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=c)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=c)
    assert win.form.values()["mask"].any()
    canvas.setFocus()
    qtbot.waitUntil(canvas.hasFocus)
    steps.set_value(before + 3)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not win.form.values()["mask"].any(), timeout=3000)
    assert steps.value() == before + 3
    # Ctrl+O opens from anywhere in the window: the canvas, the prompt, History
    for w in (canvas, win.form.editors["prompt"].edit, win.history.tree):
        w.setFocus()
        qtbot.keyClick(w, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert len(opened) == 3


def test_the_help_menu_has_a_guide_and_every_shortcut(qtbot, window):
    from app.ui import window_actions

    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    texts = [a.text() for a in help_menu.actions()]
    assert {"Quick guide", "Keyboard shortcuts", "About Implicit Studio"} <= set(texts)
    guide = window_actions.show_guide(window)
    assert "Undo" in guide.text() and "parameters" in guide.text()  # what Undo covers is said
    sheet = window_actions.show_shortcuts(window)
    text = sheet.browser.toPlainText()
    for act in (window.act_run, window.act_open, window.act_export, window.act_undo, window.act_redo,
                window.act_cancel):
        assert act.shortcut().toString(act.shortcut().SequenceFormat.NativeText) in text, act.text()
        assert act.text().rstrip("…") in text
    assert "[ ]" in text or "[ and ]" in text  # the canvas's keys too
    guide.close()
    sheet.close()


# --- 11: one recorded duration ------------------------------------------------------------------------

@needs_storage
def test_the_queue_history_and_status_bar_give_one_duration(qtbot, window):
    """The queue said "done in 141.7s" for a run History and the status bar gave as 152.6 s: it
    timed the run by when the GUI heard of it. All three give the run's recorded duration."""
    form = choose(window, "toy-gradient")
    form.editors["steps"].set_value(20)
    form.editors["delay"].set_value(0.02)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
        import time

        time.sleep(1.0)  # a busy GUI thread (a loaded machine) hears of the run's start and end late
    run = window.session.list_runs(limit=1)[0]
    said = f"{run.duration_s:.1f}s"
    row = list(window.queue._rows.values())[-1]
    assert row.bar.format() == f"done in {said}", (row.bar.format(), said)
    assert f"finished in {said}" in window.statusBar().currentMessage()
