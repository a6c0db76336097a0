"""The window's building blocks on their own: form editors, image views, the queue dock, the
compare dialog, the Plugins dialog and the theme."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QUndoStack

from app import api


def gradient(h=40, w=60):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    return img


TOOL = api.ToolSpec(
    id="all-kinds", title="All kinds", run="x.y:z",
    params=(
        api.TextParam(name="prompt", multiline=True, default="hello"),
        api.TextParam(name="name", default="n", placeholder="a name"),
        api.IntParam(name="steps", default=10, min=1, max=50),
        api.IntParam(name="big", default=5),
        api.FloatParam(name="cfg", default=7.5, min=0.0, max=20.0, step=0.5),
        api.ChoiceParam(name="sampler", choices=("ddim", "euler"), labels=("DDIM", "Euler a")),
        api.BoolParam(name="hires", default=True),
        api.SeedParam(name="seed", default=123),
        api.ImageParam(name="init", optional=True),
        api.MaskParam(name="mask", optional=True),
        api.PathParam(name="out", mode="save", optional=True),
        api.PathParam(name="folder", mode="dir", optional=True),
        api.ModelParam(name="model", aliases=("default", "default-onnx")),
        api.FloatParam(name="eta", default=0.0, min=0.0, max=1.0, advanced=True),
    ),
)


def test_form_has_an_editor_per_kind_and_values_validate(qtbot):
    from app.widgets import form as f

    stack = QUndoStack()
    w = f.ParamForm(TOOL, undo_stack=stack)
    qtbot.addWidget(w)
    kinds = {n: type(e).__name__ for n, e in w.editors.items()}
    assert kinds == {"prompt": "MultilineEditor", "name": "TextEditor", "steps": "IntEditor", "big": "IntEditor",
                     "cfg": "FloatEditor", "sampler": "ChoiceEditor", "hires": "BoolEditor", "seed": "SeedEditor",
                     "init": "ImageEditor", "mask": "ImageEditor", "out": "PathEditor", "folder": "PathEditor",
                     "model": "ModelEditor", "eta": "FloatEditor"}
    assert w.editors["big"].slider is None  # unbounded: spin box only
    assert w.editors["sampler"].combo.itemText(1) == "Euler a" and w.editors["sampler"].combo.itemData(1) == "euler"
    assert w.editors["name"].edit.placeholderText() == "a name"
    assert not w.advanced_box.isVisibleTo(w)
    assert TOOL.validate(w.values())["seed"] == 123  # the form's values pass the tool's own validation


def test_int_and_float_sliders_follow_spin_boxes(qtbot):
    from app.widgets.form import ParamForm

    w = ParamForm(TOOL)
    qtbot.addWidget(w)
    steps, cfg = w.editors["steps"], w.editors["cfg"]
    steps.slider.setValue(37)
    assert steps.value() == 37
    steps.spin.setValue(3)
    assert steps.slider.value() == 3
    cfg.slider.setValue(cfg.slider.maximum() // 2)  # halfway -> 10.0, snapped to the 0.5 step
    assert cfg.value() == pytest.approx(10.0)
    cfg.spin.setValue(20.0)
    assert cfg.slider.value() == cfg.slider.maximum()


def test_seed_dice_random_and_large_values(qtbot):
    from app.widgets.form import SEED_MAX, ParamForm

    w = ParamForm(TOOL)
    qtbot.addWidget(w)
    seed = w.editors["seed"]
    seed.set_value(SEED_MAX)  # beyond a 32-bit signed spin box
    assert seed.value() == SEED_MAX
    seen = {seed.roll() for _ in range(5)}
    assert len(seen) > 1 and all(0 <= s <= SEED_MAX for s in seen)
    seed.random_each.setChecked(True)
    assert seed.value() == -1 and not seed.spin.isEnabled()
    seed.set_value(5)
    assert seed.value() == 5 and not seed.random_each.isChecked()


def test_errors_show_under_the_field_and_open_advanced(qtbot):
    from app.widgets.form import ParamForm

    w = ParamForm(TOOL)
    qtbot.addWidget(w)
    w.show()
    assert w.show_error("eta", "Eta: must be small")
    assert w.error_text("eta") == "Eta: must be small"
    assert w.advanced_box.isVisible()
    w.editors["eta"].set_value(0.5)  # editing the field clears its message
    assert w.error_text("eta") == ""
    assert not w.show_error("nope", "x")


def test_image_picker_offers_session_results(qtbot, tmp_path):
    from PIL import Image

    from app.widgets.form import ParamForm

    p = tmp_path / "thumb.png"
    Image.fromarray(gradient()).save(p)
    w = ParamForm(TOOL, session_images=lambda: [("result:7", "#3 toy (image)", str(p))])
    qtbot.addWidget(w)
    ed = w.editors["init"]
    ed._fill_menu()
    labels = [a.text() for a in ed.menu.actions()]
    assert "From file…" in labels and "#3 toy (image)" in labels
    with qtbot.waitSignal(ed.changed):
        next(a for a in ed.menu.actions() if a.text() == "#3 toy (image)").trigger()
    assert w.values()["init"] == "result:7"
    assert not ed.thumb.pixmap().isNull()
    ed.clear_btn.click()
    assert w.values()["init"] is None


def test_image_view_zoom_pan_fit(qtbot):
    from app.widgets.image_view import ImageView

    v = ImageView()
    qtbot.addWidget(v)
    v.resize(400, 300)
    v.show()
    v.set_image(gradient(100, 200))
    assert v.scale == pytest.approx(min((400 - 24) / 200, (300 - 24) / 100))
    v.actual_size()
    assert v.scale == 1.0
    before = v.widget_to_image(QPointF(200, 150))
    v.zoom_by(2.0, QPointF(200, 150))  # the point under the cursor stays put
    after = v.widget_to_image(QPointF(200, 150))
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()))
    off = v.offset
    qtbot.mousePress(v, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(v, QPoint(130, 90))
    qtbot.mouseRelease(v, Qt.MouseButton.LeftButton, pos=QPoint(130, 90))
    assert v.offset.x() - off.x() == pytest.approx(30) and v.offset.y() - off.y() == pytest.approx(-10)
    qtbot.keyClick(v, Qt.Key.Key_F)
    assert v.scale == pytest.approx(min((400 - 24) / 200, (300 - 24) / 100))
    grab = v.grab().toImage()
    center = grab.pixelColor(200, 150)
    assert center.red() > 100  # the image is painted where it should be


def test_split_view_divider_drags(qtbot):
    from app.widgets.image_view import SplitView

    v = SplitView()
    qtbot.addWidget(v)
    v.resize(400, 200)
    v.show()
    a = np.zeros((50, 100, 3), np.uint8)
    b = np.full((50, 100, 3), 255, np.uint8)
    v.set_images(a, b)
    img = v.grab().toImage()
    assert img.pixelColor(150, 100).lightness() < 40 and img.pixelColor(250, 100).lightness() > 200
    qtbot.mousePress(v, Qt.MouseButton.LeftButton, pos=QPoint(200, 100))
    qtbot.mouseMove(v, QPoint(300, 100))
    qtbot.mouseRelease(v, Qt.MouseButton.LeftButton, pos=QPoint(300, 100))
    assert v.split == pytest.approx(0.75)
    img = v.grab().toImage()
    assert img.pixelColor(250, 100).lightness() < 40  # "before" now shows up to 3/4 of the width


def test_queue_dock_eta_and_states(qtbot):
    from app.ui.queue_dock import JobState, QueueDock, format_eta

    assert format_eta(5) == "5s" and format_eta(125) == "2m 05s" and format_eta(3700) == "1h 01m" and format_eta(None) == ""
    st = JobState(1, "x", status="running", step=5, total=10, first_step_at=100.0, first_step=1)
    assert st.eta(now=104.0) == pytest.approx(5.0)  # 4 steps took 4 s, 5 left
    q = QueueDock()
    qtbot.addWidget(q)
    q.add_job(1, "one")
    q.add_job(2, "two")
    assert q.summary.text() == "0 running · 2 waiting"
    q.set_progress(1, 3, 10, "step 3/10", eta_s=70.0)
    # one progress model: the bar's share and the tool's own words agree; the ETA is the runner's
    assert q.jobs[1].status == "running" and q.row_widget(1).bar.format().startswith("30% · ETA 1m 1")
    assert q.row_widget(1).status.text() == "step 3/10"
    assert 69.0 < q.jobs[1].eta() <= 70.0
    q.set_status(1, "failed", "boom")
    assert q.row_widget(1).status.text() == "failed" and q.row_widget(1).toolTip() == "boom"
    q.list.setCurrentItem(q._items[2])
    assert q.remove_btn.isEnabled()
    with qtbot.waitSignal(q.removeRequested) as blocker:
        q.remove_btn.click()
    assert blocker.args == [2]
    q.clear_finished()
    assert 1 not in q.jobs


def test_a_long_job_title_elides_instead_of_widening_the_queue(qtbot):
    from app.ui.queue_dock import QueueDock

    q = QueueDock()
    qtbot.addWidget(q)
    title = "Text to image: " + "a small red star in the top left on a blue background, " * 3
    q.add_job(1, title)
    q.set_status(1, "ok")
    q.resize(600, 400)  # the dock is narrowed after the job came in
    q.show()
    qtbot.waitExposed(q)
    q.resize(230, 400)
    row = q.row_widget(1)

    def right_edge(w):
        return w.mapTo(q.list.viewport(), w.rect().topRight()).x()

    qtbot.waitUntil(lambda: right_edge(row.bar) < q.list.viewport().width())
    assert right_edge(row.status) < q.list.viewport().width()  # the status and the whole bar stay in sight
    assert row.title.text().endswith("\u2026")
    assert row.title.full_text() == title and row.title.toolTip() == title
    assert not q.list.horizontalScrollBar().isVisible()


def test_param_diff_and_compare_dialog(qtbot, tmp_path):
    from PIL import Image

    from app.controller import CompareSide, param_diff
    from app.ui.compare_dialog import CompareDialog

    rows = param_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    assert [(r[0], r[3]) for r in rows] == [("b", True), ("c", True), ("a", False)]
    files = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    Image.fromarray(gradient()).save(files[0])
    Image.fromarray(gradient()[::-1].copy()).save(files[1])
    dlg = CompareDialog(CompareSide("#1", files[0], {"seed": 1, "steps": 5}),
                        CompareSide("#2", files[1], {"seed": 2, "steps": 5}))
    qtbot.addWidget(dlg)
    assert dlg.differing() == ["seed"]
    assert dlg.side.left.has_image() and dlg.side.right.has_image()
    dlg.side.left.zoom_by(2.0)  # the two sides move together
    assert dlg.side.right.scale == pytest.approx(dlg.side.left.scale)


def test_plugins_dialog_lists_records(qtbot):
    from app.plugins import PluginRecord
    from app.ui.plugins_dialog import PluginsDialog

    changes = []
    recs = [PluginRecord(name="good", version="1.0", author="Ada", status="loaded", tools=["t1"]),
            PluginRecord(name="bad", version="0.1", status="failed", error="ImportError: no foo",
                         traceback="Traceback (most recent call last):\n  ...\nImportError: no foo")]
    dlg = PluginsDialog(recs, lambda n, e: changes.append((n, e)))
    qtbot.addWidget(dlg)
    assert dlg.tree.currentItem().text(1) == "bad"  # a failed plugin is selected first
    assert "ImportError: no foo" in dlg.details_text() and "Traceback" in dlg.details_text()
    dlg.select("good")
    assert "Tools: t1" in dlg.details_text()
    dlg.set_enabled("good", False)
    assert changes == [("good", False)]


def test_viewer_registry_falls_back_when_a_plugin_viewer_fails(qtbot):
    from app.ui.viewers import GenericResultViewer, ImageResultViewer, ViewerRegistry

    reg = ViewerRegistry()
    reg.add_spec(api.ViewerSpec(id="broken-viewer", title="Broken", kind="mesh", widget="no_such_module_xyz:Viewer"))
    w, entry, err = reg.create("mesh")
    assert isinstance(w, GenericResultViewer) and entry is None and "broken-viewer" in err
    w.set_result(api.MeshResult(vertices=np.zeros((3, 3)), faces=[[0, 1, 2]]))
    assert "vertices.shape" in w.details.toPlainText()
    w2, entry2, _ = reg.create("image")
    assert isinstance(w2, ImageResultViewer) and entry2.id == "builtin-image"
    qtbot.addWidget(w)
    qtbot.addWidget(w2)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_theme_follows_setting(qtbot, monkeypatch, theme):
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from app.ui.theme import apply_theme

    monkeypatch.setenv("IMPLICIT_STUDIO_THEME", theme)
    app = QApplication.instance()
    dark = apply_theme(app)
    assert dark == (theme == "dark")
    window = app.palette().color(QPalette.ColorRole.Window)
    assert (window.lightness() < 128) == (theme == "dark")


def test_a_zero_that_means_something_says_so(qtbot):
    """Issue 28: Width/Height 0 gave no hint that it means the model's size."""
    from app.widgets.form import IntEditor, special_value_text
    from plugins.h_edit.plugin import studio_tools as h_edit_tools
    from plugins.text_to_image.plugin import studio_tools

    width = next(p for p in studio_tools()[0].params if p.name == "width")
    ed = IntEditor(width)
    qtbot.addWidget(ed)
    ed.set_value(0)
    assert ed.spin.text() == "native size" and ed.value() == 0
    ed.set_value(512)
    assert ed.spin.text() == "512"
    w_orig = next(p for p in h_edit_tools()[0].params if p.name == "w_orig")
    assert special_value_text(w_orig) == "default"
    steps = next(p for p in studio_tools()[0].params if p.name == "steps")
    assert special_value_text(steps) == ""  # its minimum, 1, means nothing special


def test_plugin_group_titles():
    from app.ui.tool_panel import plugin_title as _plugin_title

    assert _plugin_title("h_edit") == "h-Edit"  # was "H edit"
    assert _plugin_title("text_to_image") == "Text to image"
    assert _plugin_title("rl") == "RL" and _plugin_title("inr") == "INR"


def test_a_long_choice_does_not_widen_the_panel(qtbot):
    """Issue 28, item 1: text-to-image's schedule labels made its form 415 px wide in a 346 px
    dock (a horizontal scroll bar, the Guidance value cut off)."""
    from app import api
    from app.widgets.form import ChoiceEditor

    long_label = "Karras (sigmas spaced for the model's noise levels, denser near the end of sampling)"
    ed = ChoiceEditor(api.ChoiceParam(name="schedule", choices=("default", "karras"),
                                      labels=("Model default", long_label), default="default"))
    qtbot.addWidget(ed)
    ed.set_value("karras")
    fm = ed.combo.fontMetrics()
    assert ed.minimumSizeHint().width() < 0.6 * fm.horizontalAdvance(long_label)
    assert ed.combo.view().minimumWidth() >= fm.horizontalAdvance(long_label)  # the open list shows it whole
    assert ed.combo.itemData(1, Qt.ItemDataRole.ToolTipRole) == long_label
    assert ed.value() == "karras"


def test_a_named_source_shows_its_start_in_a_narrow_field(qtbot):
    """The walk's screenshot showed "n #1 text-to-image, seed 4083813968": the field scrolled to
    the end of the name and cut "ru" off its start."""
    from app.widgets.image_panel import ImageSourceRow

    row = ImageSourceRow()
    qtbot.addWidget(row)
    row.resize(180, 30)
    row.show()
    row.set_text("/tmp/0123abcd.png", label="run #1 text-to-image, seed 4083813968")
    assert row.edit.cursorPosition() == 0
    assert row.text() == "/tmp/0123abcd.png"
