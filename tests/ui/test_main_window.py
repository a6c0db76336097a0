"""The main window driven as a person would: pick a tool, type into its form, click Run, wait
for the result, cancel, see errors, use history, reproduce, open the Plugins dialog."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from .conftest import needs_storage

TIMEOUT = 20000


def choose(window, tool_id):
    assert window.select_tool(tool_id), f"tool {tool_id} not in the list"
    assert window.tool_panel.current_tool.id == tool_id
    return window.tool_panel.form


def type_prompt(qtbot, form, text):
    edit = form.editors["prompt"].edit
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)


def click_run(qtbot, window):
    qtbot.mouseClick(window.tool_panel.run_btn, Qt.MouseButton.LeftButton)


def settle(qtbot, hist, action=None):
    """Do ``action`` (default: refresh) and wait until the history dock shows the answer."""
    with qtbot.waitSignal(hist.refreshed, timeout=TIMEOUT):
        (action or hist.refresh)()


def shown_image(window):
    viewer = window.result_area.current_viewer()
    return viewer.image()


def test_tools_grouped_by_plugin_and_form_built(window):
    tree = window.tool_panel.tree
    groups = {tree.topLevelItem(i).text(0): [tree.topLevelItem(i).child(j).text(0) for j in range(tree.topLevelItem(i).childCount())]
              for i in range(tree.topLevelItemCount())}
    assert groups == {"Toy": ["Toy failure", "Toy gradient", "Toy invert"]}
    form = choose(window, "toy-gradient")
    assert set(form.editors) == {"prompt", "size", "steps", "delay", "palette", "invert", "seed", "with_table",
                                 "with_strip"}
    assert form.editors["size"].spin.maximum() == 256 and form.editors["size"].slider is not None
    assert form.editors["palette"].combo.count() == 2
    assert form.values()["seed"] == 7


def test_type_run_and_see_result(qtbot, window):
    form = choose(window, "toy-gradient")
    type_prompt(qtbot, form, "a blue square")
    size = form.editors["size"].spin
    size.selectAll()
    qtbot.keyClicks(size.lineEdit(), "48")
    size.interpretText()
    assert form.values()["size"] == 48 and form.values()["prompt"] == "a blue square"
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        click_run(qtbot, window)
    img = shown_image(window)
    assert (img.width(), img.height()) == (48, 48)
    jobs = list(window.queue.jobs.values())
    assert len(jobs) == 1 and jobs[0].status == "ok"
    assert "a blue square" in jobs[0].title
    assert window.queue.row_widget(jobs[0].job_id).bar.value() == 1
    # the queue's preview ends on the finished picture, not on the last in-progress frame
    final = window.queue.preview.image()
    assert (final.width(), final.height()) == (48, 48)
    assert all(final.pixelColor(x, y) == img.pixelColor(x, y) for x, y in ((0, 0), (47, 0), (20, 30), (47, 47)))
    # the window keeps the last-used parameters for the next start
    assert window.settings.last_params("toy-gradient")["prompt"] == "a blue square"


def test_ctrl_enter_runs_and_progress_reaches_total(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["steps"].set_value(6)
    seen = []
    window.jobs.progress.connect(lambda j, s, t, m, e: seen.append((s, t)))
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(form.editors["prompt"].edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args[1] == "ok"
    assert seen and seen[-1] == (6, 6)
    assert form.values()["prompt"] == "a toy"  # Ctrl+Enter did not add a new line


def test_cancel_mid_run_with_escape(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["steps"].set_value(400)
    form.editors["delay"].set_value(0.02)
    progressed = []
    window.jobs.progress.connect(lambda j, s, t, m, e: progressed.append(s))
    click_run(qtbot, window)
    qtbot.waitUntil(lambda: len(progressed) > 0 and progressed[-1] >= 3, timeout=TIMEOUT)
    job_id = window.queue.running_job()
    row = window.queue.row_widget(job_id)
    assert "%" in row.bar.format() and row.status.text().startswith("step ")  # the share, the tool's words
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert blocker.args == [job_id, "cancelled"]
    assert window.queue.jobs[job_id].status == "cancelled"
    assert progressed[-1] < 400
    # the window still works afterwards
    form.editors["steps"].set_value(2)
    form.editors["delay"].set_value(0.0)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        click_run(qtbot, window)
    assert blocker.args[1] == "ok"


def test_cancel_button_in_queue_and_reorder(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["steps"].set_value(300)
    form.editors["delay"].set_value(0.02)
    first = window.run_current()
    form.editors["steps"].set_value(1)
    form.editors["delay"].set_value(0.0)
    second = window.run_current()
    third = window.run_current()
    qtbot.waitUntil(lambda: first in window.queue.jobs and window.queue.jobs[first].status == "running", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: third in window.queue.jobs, timeout=TIMEOUT)
    # move the third job above the second
    window.queue.list.setCurrentItem(window.queue._items[third])
    assert window.queue.up_btn.isEnabled()
    qtbot.mouseClick(window.queue.up_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: [j.id for j in window.controller.runner.queued()] == [third, second], timeout=TIMEOUT)
    # remove the second from the queue
    window.queue.list.setCurrentItem(window.queue._items[second])
    qtbot.mouseClick(window.queue.remove_btn, Qt.MouseButton.LeftButton)
    assert second not in window.queue.jobs
    finished = []
    window.jobFinished.connect(lambda j, s: finished.append((j, s)))
    qtbot.mouseClick(window.queue.row_widget(first).cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: (third, "ok") in finished, timeout=TIMEOUT)
    assert (first, "cancelled") in finished
    assert all(j != second for j, _ in finished)


def test_failing_tool_shows_error_and_window_continues(qtbot, window):
    choose(window, "toy-fail")
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as blocker:
        click_run(qtbot, window)
    message, details = blocker.args
    assert "toy failure number 1" in message
    assert "RuntimeError" in details and "Traceback" in details
    assert "toy failure number 1" in window.statusBar().currentMessage()
    box = window.error_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "Traceback" in box.detailedText()
    box.close()
    qtbot.waitUntil(lambda: "toy failure" in window.log_view.text(), timeout=5000)
    # the window goes on: another tool runs fine
    choose(window, "toy-gradient")
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        click_run(qtbot, window)


def test_validation_error_is_shown_next_to_the_field(qtbot, window):
    form = choose(window, "toy-invert")
    click_run(qtbot, window)
    assert "input is required" in form.error_text("image")
    assert window.queue.jobs == {}
    assert "Cannot run Toy invert" in window.statusBar().currentMessage()


def test_undo_redo_form_edits(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["size"].set_value(100)
    form.editors["size"].set_value(120)
    form.editors["palette"].set_value("cool")
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert form.values()["palette"] == "warm"
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert form.values()["size"] == 32  # the two size edits merged into one step
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert form.values()["size"] == 120


def test_seed_dice_and_random(qtbot, window):
    form = choose(window, "toy-gradient")
    seed = form.editors["seed"]
    before = seed.value()
    qtbot.mouseClick(seed.dice, Qt.MouseButton.LeftButton)
    assert seed.value() != before or seed.value() >= 0
    seed.random_each.setChecked(True)
    assert form.values()["seed"] == -1
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)


def test_layout_and_params_persist(qtbot, make_window):
    win = make_window()
    form = choose(win, "toy-gradient")
    form.editors["size"].set_value(77)
    win.history_dock.hide()
    want = (763, 701)  # above the window's minimum, inside the 800x800 offscreen screen
    win.resize(*want)
    win.close()
    win2 = make_window()
    assert win2.tool_panel.current_tool.id == "toy-gradient"
    assert win2.tool_panel.form.values()["size"] == 77
    assert not win2.history_dock.isVisible()
    assert (win2.width(), win2.height()) == want


def test_plugins_dialog_shows_failed_plugin_error(qtbot, make_window):
    win = make_window(with_broken=True)
    assert win.act_plugins.text() == "Plugins (1 failed)"
    qtbot.waitUntil(lambda: "studio_broken failed" in win.log_view.text(), timeout=5000)
    dlg = win.show_plugins()
    qtbot.waitExposed(dlg)
    assert dlg.infos["toy"]["version"] == "1.2.3" and dlg.infos["toy"]["state"] == "loaded"
    assert dlg.infos["studio_broken"]["state"] == "failed"
    dlg.select("studio_broken")
    text = dlg.details_text()
    assert "nonexistent-dependency" in text and "Traceback" in text
    # disable the toy plugin: its tools leave the list and the choice is remembered
    choose(win, "toy-gradient")
    dlg.set_enabled("toy", False)
    assert "toy" in win.settings.disabled_plugins
    assert win.tool_panel.tree.topLevelItemCount() == 0
    assert win.tool_panel.current_tool is None and not win.tool_panel.run_btn.isEnabled()
    assert win.run_current() is None
    dlg.set_enabled("toy", True)
    assert "toy" not in win.settings.disabled_plugins
    assert "toy-gradient" in win.tool_panel.tools


def test_open_plain_image_file(qtbot, window, tmp_path):
    from PIL import Image

    p = tmp_path / "pic.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(p)
    assert window.open_path(str(p))
    img = shown_image(window)
    assert (img.width(), img.height()) == (30, 20)


def test_drop_a1111_png_restores_text_to_image_params(qtbot, window, tmp_path):
    from storage import pngmeta

    window.manager.tools  # noqa: B018
    p = tmp_path / "a1111.png"
    text = "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 99, Size: 64x64"
    p.write_bytes(pngmeta.encode_png(np.zeros((8, 8, 3), np.uint8), parameters=text))
    meta = window.session.png_params(str(p))
    assert meta["tool"] == "text-to-image" and meta["seed"] == 99
    assert meta["params"]["prompt"] == "a lighthouse at dusk" and meta["params"]["steps"] == 12
    # text-to-image is not installed in this window: the person is told, nothing breaks
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        window.open_path(str(p))
    assert "text-to-image" in blocker.args[0]


def test_drop_png_with_params_restores_tool(qtbot, window, tmp_path):
    from storage import pngmeta

    arr = np.zeros((16, 16, 3), np.uint8)
    implicit = pngmeta.our_json(tool_id="toy-gradient", params={"prompt": "from a png", "size": 64, "steps": 3}, seed=4242)
    p = tmp_path / "made.png"
    p.write_bytes(pngmeta.encode_png(arr, implicit=implicit))
    choose(window, "toy-fail")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p))])
    ev = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    assert window.tool_panel.current_tool.id == "toy-gradient"
    vals = window.tool_panel.form.values()
    assert vals["prompt"] == "from a png" and vals["size"] == 64 and vals["steps"] == 3 and vals["seed"] == 4242


def test_unreadable_drop_reports_error(qtbot, window, tmp_path):
    p = tmp_path / "notes.xyz"
    p.write_text("hello")
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        assert not window.open_path(str(p))
    assert "Cannot open notes.xyz" in blocker.args[0]


@needs_storage
def test_history_lists_runs_and_filters(qtbot, window):
    form = choose(window, "toy-gradient")
    for prompt in ("red apple", "green field"):
        type_prompt(qtbot, form, prompt)
        with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
            click_run(qtbot, window)
    choose(window, "toy-fail")
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    hist = window.history
    settle(qtbot, hist)
    assert len(hist.runs) == 3
    keys = hist.gallery_keys()
    assert [window.session.run(k[0]).tool_id for k in keys] == ["toy-fail", "toy-gradient", "toy-gradient"]  # newest first
    settle(qtbot, hist, lambda: hist.set_text_filter("apple"))
    assert [r.params["prompt"] for r in hist.runs.values()] == ["red apple"]
    settle(qtbot, hist, lambda: hist.set_text_filter(""))
    settle(qtbot, hist, lambda: hist.set_tool_filter("toy-fail"))
    assert {r.tool_id for r in hist.runs.values()} == {"toy-fail"}
    settle(qtbot, hist, lambda: hist.set_tool_filter(None))
    # tags
    apple = next(r for r in window.session.list_runs() if r.params.get("prompt") == "red apple")
    settle(qtbot, hist, lambda: hist.add_tag([apple.id], "keeper"))
    settle(qtbot, hist, lambda: hist.set_tag_filter("keeper"))
    assert list(hist.runs) == [apple.id]
    settle(qtbot, hist, lambda: hist.set_tag_filter(None))
    # open a result from the gallery
    assert hist.select(apple.id)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        qtbot.mouseClick(hist.open_btn, Qt.MouseButton.LeftButton)
    assert f"#{apple.id}" in window.result_area.caption.text()
    # use its parameters
    choose(window, "toy-fail")
    hist.select(apple.id)
    qtbot.mouseClick(hist.use_btn, Qt.MouseButton.LeftButton)
    assert window.tool_panel.current_tool.id == "toy-gradient"
    assert window.tool_panel.form.values()["prompt"] == "red apple"


@needs_storage
def test_reproduce_reports_bit_for_bit_match(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["seed"].random_each.setChecked(True)  # the seed is drawn at run time and recorded
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    run = window.session.list_runs(limit=1)[0]
    assert run.seed is not None and run.seed >= 0
    settle(qtbot, window.history)
    assert window.history.select(run.id)
    with qtbot.waitSignal(window.reproduceChecked, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.history.repro_btn, Qt.MouseButton.LeftButton)
    run_id, matched, message = blocker.args
    assert run_id == run.id and matched, message
    assert "bit for bit" in message and "bit for bit" in window.statusBar().currentMessage()


@needs_storage
def test_compare_two_results_shows_param_diff(qtbot, window):
    form = choose(window, "toy-gradient")
    for size in (24, 40):
        form.editors["size"].set_value(size)
        with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
            click_run(qtbot, window)
    settle(qtbot, window.history)
    window.history.gallery.selectAll()
    assert window.history.compare_btn.isEnabled()
    qtbot.mouseClick(window.history.compare_btn, Qt.MouseButton.LeftButton)
    dlg = window.compare_dialog
    qtbot.waitExposed(dlg)
    assert dlg.differing() == ["size"]
    assert dlg.side.left.has_image() and dlg.side.right.has_image()


@needs_storage
def test_edit_tool_from_session_result_is_a_child_in_the_tree(qtbot, window):
    choose(window, "toy-gradient")
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    parent = window.session.list_runs(limit=1)[0]
    form = choose(window, "toy-invert")
    refs = [c[0] for c in window.session.image_choices()]
    assert f"result:{parent.results[0].id}" in refs
    form.editors["image"].set_value(f"result:{parent.results[0].id}", emit=True)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        click_run(qtbot, window)
    assert window.result_area.split_btn.isEnabled()  # before/after available for an edit
    window.result_area.split_btn.click()
    assert window.result_area.current_viewer() is window.result_area.split
    window.history.mode.setCurrentIndex(1)
    settle(qtbot, window.history)
    top = [window.history.tree.topLevelItem(i) for i in range(window.history.tree.topLevelItemCount())]
    parent_item = next(it for it in top if it.text(0) == f"#{parent.id}")
    assert parent_item.childCount() == 1 and parent_item.child(0).text(1) == "toy-invert"


def test_a_run_with_several_results_offers_each(qtbot, window):
    form = choose(window, "toy-gradient")
    form.editors["with_table"].set_value(True)
    form.editors["size"].set_value(16)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    picker = window.result_area.picker
    assert picker.isVisible() and [picker.itemText(i) for i in range(picker.count())] == ["1. image", "2. row means (table)"]
    picker.setCurrentIndex(1)
    with qtbot.waitSignal(window.resultShown, timeout=5000):
        picker.activated.emit(1)
    table = window.result_area.current_viewer()
    assert table.rowCount() == 16 and table.horizontalHeaderItem(1).text() == "mean"


@needs_storage
def test_the_gallery_names_a_runs_further_pictures_and_centres_wide_ones(qtbot, window):
    """A run's second picture (a filmstrip, a sweep image) gets a tile captioned with its label, and
    a wide strip's thumbnail is folded into rows that fill the tile, not a thin line (issue 28)."""
    from app.ui.thumbs import THUMB

    form = choose(window, "toy-gradient")
    form.editors["with_strip"].set_value(True)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    settle(qtbot, window.history)
    gallery = window.history.gallery
    run_id = max(window.history.runs)
    assert [gallery.item(i).text() for i in range(gallery.count())][:2] == [
        f"#{run_id} toy-gradient", f"#{run_id} · red strip"]

    def strip_thumb():
        return gallery.item(1).icon().pixmap(THUMB, THUMB).toImage()

    qtbot.waitUntil(lambda: strip_thumb().pixelColor(THUMB // 2, THUMB // 2).getRgb()[:3] == (255, 0, 0),
                    timeout=TIMEOUT)
    thumb = strip_thumb()
    # the 4:1 strip of square frames is folded into a 2x2 grid that fills the tile, not a thin line
    for y in (THUMB // 8, THUMB // 2, THUMB - THUMB // 8):
        assert thumb.pixelColor(THUMB // 2, y).getRgb()[:3] == (255, 0, 0), y


def test_preferences_pages_validate_and_persist(qtbot, window):
    from app import api

    window.manager.settings_pages.append(api.SettingsSpec(
        section="toy-settings", title="Toy settings", plugin="toy",
        params=(api.IntParam(name="threads", default=2, min=1, max=8), api.TextParam(name="folder", default=""))))
    dlg = window.show_preferences()
    qtbot.waitExposed(dlg)
    assert [dlg.nav.item(i).text() for i in range(dlg.nav.count())] == ["General", "Toy settings  (toy)"]
    form = dlg.forms["toy-settings"]
    spin = form.editors["threads"].spin
    spin.setMaximum(99)  # let an out-of-range value through the widget: validation must catch it
    spin.setValue(50)
    assert not dlg.save()
    assert "between 1 and 8" in form.error_text("threads") and dlg.isVisible()
    spin.setValue(6)
    dlg.device.setCurrentIndex(dlg.device.findData("cpu"))
    assert dlg.precision.currentData() == "auto"
    dlg.precision.setCurrentIndex(dlg.precision.findData("bf16"))
    with qtbot.waitSignal(dlg.accepted):
        assert dlg.save()
    assert window.settings.plugin_settings()["toy-settings"] == {"threads": 6, "folder": ""}
    assert window.settings.device == "cpu" and window.controller.runner.device == "cpu"
    # the next run asks for the precision saved (unless implicit-studio --precision set one)
    assert window.settings.precision == "bf16"
    if not os.environ.get("IMPLICIT_STUDIO_PRECISION"):
        assert window.controller.runner.precision == "bf16"


def test_the_form_is_never_clipped_on_the_right(qtbot, window):
    """The tool panel's scroll area has no horizontal scroll bar, so its viewport must be at least
    as wide as the form needs: nothing of a row may sit hidden past the right edge."""
    choose(window, "toy-gradient")
    window.resize(640, 480)  # a small window squeezes the dock as far as it goes
    scroll = window.tool_panel.scroll
    qtbot.waitUntil(lambda: scroll.viewport().width() > 0, timeout=TIMEOUT)
    qtbot.wait(50)
    need = scroll.widget().minimumSizeHint().width()
    assert scroll.viewport().width() >= need, (scroll.viewport().width(), need)
