"""The widget kit's mask canvas and editor, the before/after view, and the inpainting panel built on them (offscreen)."""

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402


@pytest.fixture
def picture():
    img = np.full((64, 64, 3), 200, np.uint8)
    img[16:48, 16:48] = (30, 70, 230)
    return img


def _widget_point(canvas, x, y):
    p = canvas.to_widget(QPointF(x, y))
    return QPoint(int(round(p.x())), int(round(p.y())))


def test_brush_stroke_by_mouse_then_undo_redo(qtbot, picture):
    from app.widgets.mask_canvas import MaskEditor

    ed = MaskEditor(picture)
    qtbot.addWidget(ed)
    ed.resize(640, 480)
    ed.show()
    c = ed.canvas
    c.fit()
    c.brush_size = 4
    c.hardness = 1.0
    with qtbot.waitSignal(ed.maskChanged):
        qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, 10, 32))
        qtbot.mouseMove(c, _widget_point(c, 30, 32))
        qtbot.mouseMove(c, _widget_point(c, 50, 32))
        qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, 50, 32))
    m = ed.mask()
    assert m[32, 30] == 255 and m[32, 5] == 0 and m[10, 30] == 0
    assert ed.undo_button.isEnabled()
    ed.undo_button.click()
    assert ed.mask().max() == 0
    ed.redo_button.click()
    assert ed.mask()[32, 30] == 255


def test_rect_lasso_invert_grow_tools(qtbot, picture):
    from app.widgets.mask_canvas import MaskEditor

    ed = MaskEditor(picture)
    qtbot.addWidget(ed)
    ed.resize(500, 420)
    c = ed.canvas
    c.fit()
    ed.tool_buttons["rect"].click()
    assert c.tool == "rect"
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, 8, 8))
    qtbot.mouseMove(c, _widget_point(c, 24, 24))
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, 24, 24))
    n = (ed.mask() > 127).sum()
    assert 14 * 14 <= n <= 18 * 18
    ed.amount.setValue(2)
    ed.grow_button.click()
    assert (ed.mask() > 127).sum() > n
    ed.shrink_button.click()
    ed.invert_button.click()
    assert ed.mask()[60, 60] == 255 and ed.mask()[16, 16] == 0
    ed.tool_buttons["lasso"].click()
    ed.canvas.apply_op("clear")
    pts = [(40, 40), (60, 40), (60, 60), (40, 60)]
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, *pts[0]))
    for p in pts[1:]:
        qtbot.mouseMove(c, _widget_point(c, *p))
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=_widget_point(c, *pts[-1]))
    assert ed.mask()[50, 50] == 255 and ed.mask()[20, 20] == 0


def test_zoom_pan_and_opacity(qtbot, picture):
    from app.widgets.mask_canvas import MaskCanvas

    c = MaskCanvas(picture)
    qtbot.addWidget(c)
    c.resize(400, 400)
    c.fit()
    anchor = QPointF(200, 200)
    before = c.to_image(anchor)
    c.set_zoom(c.zoom * 2, anchor)
    after = c.to_image(anchor)
    assert abs(before.x() - after.x()) < 1e-6  # zoom keeps the point under the cursor
    off = QPointF(c.offset)
    qtbot.mousePress(c, Qt.MouseButton.MiddleButton, pos=QPoint(100, 100))
    qtbot.mouseMove(c, QPoint(130, 110))
    qtbot.mouseRelease(c, Qt.MouseButton.MiddleButton, pos=QPoint(130, 110))
    assert c.offset.x() - off.x() == pytest.approx(30) and c.mask().max() == 0  # panning paints nothing
    c.set_opacity(2.0)
    assert c.opacity == 1.0


def test_load_wrong_size_mask_offers_resize(qtbot, picture, tmp_path):
    from PIL import Image

    from app.widgets.mask_canvas import MaskEditor

    asked = []
    ed = MaskEditor(picture, ask_resize=lambda ms, isz: asked.append((ms, isz)) or False)
    qtbot.addWidget(ed)
    p = tmp_path / "m.png"
    small = np.zeros((32, 32), np.uint8)
    small[:16] = 255
    Image.fromarray(small).save(p)
    assert not ed.load_mask(str(p))
    assert asked == [((32, 32), (64, 64))] and ed.mask().max() == 0
    assert "size differs" in ed.status.text()
    ed.ask_resize = lambda ms, isz: True
    assert ed.load_mask(str(p))
    assert ed.mask()[10, 10] == 255 and ed.mask()[50, 10] == 0
    out = tmp_path / "saved.png"
    assert ed.save_mask(str(out))
    assert np.array_equal(np.asarray(Image.open(out)), ed.mask())
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    assert not ed.load_mask(str(bad)) and "not an image" in ed.status.text()


def test_split_view_and_panel(qtbot, picture, tmp_path):
    from PIL import Image

    from app.widgets.image_view import SplitView
    from plugins.inpaint.panel import InpaintPanel

    after = picture.copy()
    after[..., 0] = 255
    sv = SplitView()
    sv.set_images(picture, after)
    qtbot.addWidget(sv)
    sv.resize(200, 200)
    sv.show()
    # drag the divider from the middle to a quarter of the width
    qtbot.mousePress(sv, Qt.MouseButton.LeftButton, pos=QPoint(100, 150))
    qtbot.mouseMove(sv, QPoint(50, 150))
    qtbot.mouseRelease(sv, Qt.MouseButton.LeftButton, pos=QPoint(50, 150))
    assert sv.split == pytest.approx(0.25, abs=0.02)
    shot = sv.grab().toImage()
    left, right = shot.pixelColor(30, 170), shot.pixelColor(170, 170)
    assert left.red() == 200 and right.red() == 255

    path = tmp_path / "img.png"
    Image.fromarray(picture).save(path)
    panel = InpaintPanel()
    qtbot.addWidget(panel)
    assert panel.open_image(str(path))
    panel.editor.canvas.apply_op("rect", 10, 10, 30, 30)
    panel.form.editors["prompt"].set_value("a red star")
    vals = panel.values()
    assert vals["image"] == str(path) and vals["prompt"] == "a red star" and vals["method"] == "copaint"
    assert vals["mask"].shape == (64, 64) and vals["mask"][20, 20] == 255
    panel.set_result(after)
    assert panel.tabs.currentIndex() == 1
    # the stroke history recorded with the run brings the mask back
    history = vals["mask_history"]
    panel.editor.canvas.apply_op("clear")
    assert panel.editor.mask().max() == 0
    assert panel.restore_history(history)
    assert np.array_equal(panel.editor.mask(), vals["mask"])
    assert panel.editor.canvas.doc.can_undo


@pytest.mark.parametrize("module", ["plugins.inpaint.plugin", "plugins.h_edit.plugin"])
def test_the_painting_panels_fit_the_tool_dock_without_scrolling_sideways(qtbot, module):
    """The tool dock widens to a form up to ToolPanel.FORM_MAX_FIT px (scroll bar and frame
    included); the panels with the mask editor must fit in it whole, tool bar rows included."""
    import importlib

    from app.api import load_ref
    from app.ui.tool_panel import ToolPanel

    tool = importlib.import_module(module).studio_tools()[0]
    panel = load_ref(tool.panel)(tool=tool)
    qtbot.addWidget(panel)
    panel.resize(ToolPanel.FORM_MAX_FIT - 20, 700)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.minimumSizeHint().width() <= ToolPanel.FORM_MAX_FIT - 20, panel.minimumSizeHint()
    editor = getattr(panel, "editor", None) or panel.region
    for b in [*editor.tool_buttons.values(), editor.undo_button, editor.feather_button]:
        # every tool bar button lies inside the panel's width, none squeezed below its size hint
        right = b.mapTo(panel, b.rect().topRight()).x()
        assert right < panel.width() and b.width() >= b.sizeHint().width() - 1, (b.text(), right, b.width())
