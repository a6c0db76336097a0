"""Painting a mask over an image: :class:`MaskCanvas` and :class:`MaskEditor` (part of the widget kit).

View layer only: the painting logic lives in :class:`app.widgets.maskops.MaskDocument` (numpy), so
it is tested without Qt and the operation history can be stored with a run.

- :class:`MaskCanvas`: shows the image with the mask as a coloured overlay (adjustable opacity);
  tools brush / eraser (size, hardness), rectangle, lasso; wheel zooms about the cursor, middle or
  right drag (or space + drag) pans; ``[``/``]`` change the brush size, Ctrl+Z / Ctrl+Shift+Z
  undo/redo.
- :class:`MaskEditor`: the canvas plus a tool bar: tools, size, hardness, opacity, invert, grow,
  shrink, feather, undo, redo, load/save PNG (a mask of another size is offered a resize, never
  stretched silently), zoom to fit.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (QButtonGroup, QFileDialog, QHBoxLayout, QLabel, QMessageBox, QSlider, QSpinBox,
                               QToolButton, QVBoxLayout, QWidget)

from app.widgets.flow import FlowLayout
from app.widgets.imaging import to_qimage
from app.widgets.maskops import MaskDocument, apply_stroke, load_mask_file, resize_mask

TOOLS = ("brush", "eraser", "rect", "lasso")


class MaskCanvas(QWidget):
    """Paint a mask over an image."""

    strokeMoved = Signal()  # a brush stroke grew while painted: stroke_mask() is the mask with it
    maskChanged = Signal()
    viewChanged = Signal()
    brushChanged = Signal(float)  # the brush radius (image pixels), changed with [ and ]

    def __init__(self, image: Optional[np.ndarray] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 160)
        self.tool = "brush"
        self.brush_size = 8.0  # radius in image pixels
        self.hardness = 0.8
        self.opacity = 0.5
        self.mask_colour = QColor(255, 0, 200)
        self.zoom = 1.0
        self.offset = QPointF(0, 0)
        self._fit_mode = True  # the view follows the widget's size until zoomed or panned
        self._drag: list[tuple[float, float]] = []
        self._stroke_mask: Optional[np.ndarray] = None  # the mask with the stroke being painted, until release
        self._pan_from: Optional[QPointF] = None
        self._space = False
        self._cursor_img: Optional[QPointF] = None
        self._image_q: Optional[QImage] = None
        self._overlay_q: Optional[QImage] = None
        self.image: Optional[np.ndarray] = None
        self.doc: Optional[MaskDocument] = None
        if image is not None:
            self.set_image(image)
        # Undo/Redo of strokes while the canvas has the focus (event(), keyPressEvent()): not
        # QShortcuts, whose window-wide context made the window's own Ctrl+Z ambiguous (Qt then
        # runs neither)

    # -- model -------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, keep_mask: bool = False) -> None:
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        self.image = np.ascontiguousarray(img[..., :3].astype(np.uint8))
        self._image_q = to_qimage(self.image)
        h, w = self.image.shape[:2]
        if not (keep_mask and self.doc is not None and (self.doc.width, self.doc.height) == (w, h)):
            self.doc = MaskDocument(w, h)
        self._refresh_overlay()
        self._update_cursor()
        self.fit()

    def mask(self) -> np.ndarray:
        """The mask as HxW uint8 (255 = repaint)."""
        if self.doc is None:
            raise ValueError("no image loaded")
        return self.doc.as_uint8()

    def stroke_mask(self) -> Optional[np.ndarray]:
        """While a brush stroke is painted (before the button is released), the mask with the
        stroke as HxW uint8 like :meth:`mask`; None otherwise."""
        m = self._stroke_mask
        return None if m is None else np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)

    def set_mask(self, mask: np.ndarray) -> None:
        self.doc.set_mask(mask)
        self._changed()

    def apply_op(self, name: str, *args) -> None:
        if self.doc is None:
            return
        getattr(self.doc, name)(*args)
        self._changed()

    def undo(self) -> None:
        if self.doc is not None and self.doc.undo():
            self._changed()

    def redo(self) -> None:
        if self.doc is not None and self.doc.redo():
            self._changed()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self._update_cursor()
        self.update()

    def _update_cursor(self) -> None:
        # the painted circle is the brush's cursor; the rectangle and lasso get a cross hair
        brush = self.tool in ("brush", "eraser") and self.image is not None
        self.setCursor(Qt.CursorShape.BlankCursor if brush else Qt.CursorShape.CrossCursor)

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._cursor_img = None
        self.update()
        super().leaveEvent(event)

    def set_opacity(self, value: float) -> None:
        self.opacity = float(np.clip(value, 0.0, 1.0))
        self.update()

    def _changed(self) -> None:
        self._refresh_overlay()
        self.maskChanged.emit()
        self.update()

    def _refresh_overlay(self) -> None:
        if self.doc is None:
            return
        m = self.doc.mask
        rgba = np.zeros(m.shape + (4,), np.uint8)
        rgba[..., 0] = self.mask_colour.red()
        rgba[..., 1] = self.mask_colour.green()
        rgba[..., 2] = self.mask_colour.blue()
        rgba[..., 3] = np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)
        self._overlay_q = to_qimage(rgba)

    # -- view --------------------------------------------------------------------------------
    def fit(self) -> None:
        self._fit_mode = True
        if self.image is None:
            return
        h, w = self.image.shape[:2]
        margin = 8 if min(self.width(), self.height()) > 64 else 0
        self.zoom = max(min((self.width() - 2 * margin) / w, (self.height() - 2 * margin) / h), 0.05)
        self.offset = QPointF((self.width() - w * self.zoom) / 2, (self.height() - h * self.zoom) / 2)
        self.viewChanged.emit()
        self.update()

    def set_zoom(self, zoom: float, anchor: Optional[QPointF] = None) -> None:
        zoom = float(np.clip(zoom, 0.05, 64.0))
        self._fit_mode = False
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        img_pt = self.to_image(anchor)
        self.zoom = zoom
        self.offset = QPointF(anchor.x() - img_pt.x() * zoom, anchor.y() - img_pt.y() * zoom)
        self.viewChanged.emit()
        self.update()

    def actual_size(self) -> None:
        """Image pixels 1:1, centred."""
        if self.image is None:
            return
        h, w = self.image.shape[:2]
        self.set_zoom(1.0)
        self.offset = QPointF((self.width() - w) / 2, (self.height() - h) / 2)
        self.update()

    def set_brush_size(self, radius: float) -> None:
        self.brush_size = float(np.clip(radius, 1.0, 512.0))
        self.brushChanged.emit(self.brush_size)
        self.update()

    def to_image(self, p: QPointF) -> QPointF:
        return QPointF((p.x() - self.offset.x()) / self.zoom, (p.y() - self.offset.y()) / self.zoom)

    def to_widget(self, p: QPointF) -> QPointF:
        return QPointF(p.x() * self.zoom + self.offset.x(), p.y() * self.zoom + self.offset.y())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(40, 40, 44))
        if self._image_q is None:
            p.setPen(QColor(200, 200, 200))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "open an image to paint a mask")
            return
        h, w = self.image.shape[:2]
        target = QRectF(self.offset.x(), self.offset.y(), w * self.zoom, h * self.zoom)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1)
        p.drawImage(target, self._image_q)
        if self._overlay_q is not None and self.opacity > 0:
            p.setOpacity(self.opacity)
            p.drawImage(target, self._overlay_q)
            p.setOpacity(1.0)
        p.setPen(QPen(QColor(255, 255, 255, 90), 1))
        p.drawRect(target)
        pen = QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine)
        p.setPen(pen)
        if self._drag and self.tool == "rect":
            a = self.to_widget(QPointF(*self._drag[0]))
            b = self.to_widget(QPointF(*self._drag[-1]))
            p.drawRect(QRectF(a, b).normalized())
        elif self._drag and self.tool == "lasso":
            path = QPainterPath(self.to_widget(QPointF(*self._drag[0])))
            for x, y in self._drag[1:]:
                path.lineTo(self.to_widget(QPointF(x, y)))
            p.drawPath(path)
        if self._cursor_img is not None and self.tool in ("brush", "eraser") and self.underMouse():
            # the brush as it will paint: its radius at this zoom, the hard core dotted, its size
            c = self.to_widget(self._cursor_img)
            r = self.brush_size * self.zoom
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setPen(QPen(QColor(0, 0, 0, 160), 3))
            p.drawEllipse(c, r, r)
            p.setPen(QPen(QColor(255, 255, 255), 1))
            p.drawEllipse(c, r, r)
            p.setPen(QPen(QColor(255, 255, 255, 200), 1, Qt.PenStyle.DotLine))
            p.drawEllipse(c, r * max(self.hardness, 0.05), r * max(self.hardness, 0.05))
            p.drawLine(c + QPointF(-3, 0), c + QPointF(3, 0))
            p.drawLine(c + QPointF(0, -3), c + QPointF(0, 3))
            label = f"{self.brush_size:.0f} px" + (" eraser" if self.tool == "eraser" else "")
            p.setPen(QColor(255, 255, 255))
            p.drawText(c + QPointF(r + 6, -r - 2 if r > 10 else -6), label)

    # -- input -------------------------------------------------------------------------------
    def _pos(self, event) -> QPointF:
        return event.position() if hasattr(event, "position") else QPointF(event.pos())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.doc is None:
            return
        pos = self._pos(event)
        if event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton) or (
                event.button() == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = pos
            return
        if event.button() == Qt.MouseButton.LeftButton:
            ip = self.to_image(pos)
            self._drag = [(ip.x(), ip.y())]
            if self.tool in ("brush", "eraser"):
                self._preview_stroke()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = self._pos(event)
        self._cursor_img = self.to_image(pos)
        if self._pan_from is not None:
            d = pos - self._pan_from
            self.offset += d
            self._pan_from = pos
            self._fit_mode = False
            self.viewChanged.emit()
        elif self._drag:
            ip = self.to_image(pos)
            if self.tool == "rect":
                self._drag = [self._drag[0], (ip.x(), ip.y())]
            else:
                self._drag.append((ip.x(), ip.y()))
                if self.tool in ("brush", "eraser"):
                    self._preview_stroke()
        self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            return
        if not self._drag or self.doc is None:
            return
        pts, self._drag = self._drag, []
        self._stroke_mask = None
        if self.tool in ("brush", "eraser"):
            self.doc.stroke(pts, self.brush_size, self.hardness, erase=self.tool == "eraser")
        elif self.tool == "rect" and len(pts) >= 2:
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            self.doc.rect(x0, y0, x1, y1, erase=bool(event.modifiers() & Qt.KeyboardModifier.AltModifier))
        elif self.tool == "lasso" and len(pts) >= 3:
            self.doc.lasso(pts, erase=bool(event.modifiers() & Qt.KeyboardModifier.AltModifier))
        self._changed()

    def _preview_stroke(self) -> None:
        """Show the stroke while it is drawn (applied to a copy; committed on release)."""
        m = self.doc.mask.copy()
        apply_stroke(m, self._drag, self.brush_size, self.hardness, self.tool == "eraser")
        saved = self.doc.mask
        self.doc.mask = m
        self._refresh_overlay()
        self.doc.mask = saved
        self._stroke_mask = m
        self.strokeMoved.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        self.set_zoom(self.zoom * (1.25 ** steps), self._pos(event))

    def event(self, event) -> bool:  # noqa: D401
        """With the focus, the canvas's Undo/Redo keys are its strokes', before the window's."""
        if event.type() == QEvent.Type.ShortcutOverride and (
                event.matches(QKeySequence.StandardKey.Undo) or event.matches(QKeySequence.StandardKey.Redo)):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.matches(QKeySequence.StandardKey.Redo):
            self.redo()
        elif event.key() == Qt.Key.Key_Space:
            self._space = True
        elif event.key() == Qt.Key.Key_BracketLeft:
            self.set_brush_size(max(1.0, self.brush_size / 1.25))
        elif event.key() == Qt.Key.Key_BracketRight:
            self.set_brush_size(min(512.0, self.brush_size * 1.25))
        else:
            super().keyPressEvent(event)
        self.update()

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            self._space = False
        super().keyReleaseEvent(event)


class MaskEditor(QWidget):
    """A :class:`MaskCanvas` with its tool bar."""

    maskChanged = Signal()

    def __init__(self, image: Optional[np.ndarray] = None, parent: Optional[QWidget] = None,
                 ask_resize: Optional[Callable[[tuple[int, int], tuple[int, int]], bool]] = None):
        super().__init__(parent)
        self.canvas = MaskCanvas(image, self)
        self.canvas.maskChanged.connect(self._sync)
        self.canvas.maskChanged.connect(self._forget_source)
        self.canvas.maskChanged.connect(self.maskChanged)
        self.ask_resize = ask_resize or self._ask_resize_dialog
        self.message = ""
        # the file the mask was loaded from, as long as it is shown unchanged (a run can then name
        # that file, or the session result it came from, instead of a copy of its pixels)
        self.loaded_from: Optional[str] = None

        # The tool bar in four short rows (tools; brush; mask operations; history and files) rather
        # than two long ones; each row wraps in a narrow panel instead of widening it.
        rows = []
        for _ in range(4):
            box = QWidget(self)
            rows.append(FlowLayout(box, spacing=4))
        tools_row, brush_row, ops_row, file_row = rows
        self.tool_buttons: dict[str, QToolButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(True)
        for tool, label, tip in (("brush", "Brush", "paint the region to repaint"),
                                 ("eraser", "Eraser", "erase the mask"),
                                 ("rect", "Rect", "rectangle (Alt: erase)"),
                                 ("lasso", "Lasso", "free-form polygon (Alt: erase)")):
            b = QToolButton(self)
            b.setText(label)
            b.setToolTip(tip)
            b.setCheckable(True)
            b.clicked.connect(lambda _=False, t=tool: self.canvas.set_tool(t))
            group.addButton(b)
            tools_row.addWidget(b)
            self.tool_buttons[tool] = b
        self.tool_buttons["brush"].setChecked(True)
        tools_row.addStretch()

        def slider(lo, hi, value, tip, fn):
            s = QSlider(Qt.Orientation.Horizontal, self)
            s.setRange(lo, hi)
            s.setValue(value)
            s.setToolTip(tip)
            s.setMinimumWidth(48)
            s.setMaximumWidth(140)
            s.valueChanged.connect(fn)
            return s

        def labelled(text, w):
            pair = QWidget(self)
            row = QHBoxLayout(pair)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(4)
            row.addWidget(QLabel(text, pair))
            row.addWidget(w)
            brush_row.addWidget(pair)

        self.size_slider = slider(1, 128, int(self.canvas.brush_size), "brush radius in pixels of the image ([ and ])",
                                  lambda v: setattr(self.canvas, "brush_size", float(v)))
        self.canvas.brushChanged.connect(self._brush_from_canvas)
        labelled("Size", self.size_slider)
        self.hardness_slider = slider(0, 100, int(self.canvas.hardness * 100), "brush hardness",
                                      lambda v: setattr(self.canvas, "hardness", v / 100.0))
        labelled("Hard", self.hardness_slider)
        self.opacity_slider = slider(0, 100, int(self.canvas.opacity * 100), "mask overlay opacity",
                                     lambda v: self.canvas.set_opacity(v / 100.0))
        labelled("Opacity", self.opacity_slider)

        self.amount = QSpinBox(self)
        self.amount.setRange(1, 64)
        self.amount.setValue(2)
        self.amount.setToolTip("pixels for grow / shrink / feather")

        def action(row, text, tip, fn):
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(fn)
            row.addWidget(b)
            return b

        action(tools_row, "Fit", "zoom to fit", self.canvas.fit)
        self.invert_button = action(ops_row, "Invert", "invert the mask", lambda: self.canvas.apply_op("invert"))
        ops_row.addWidget(self.amount)
        self.grow_button = action(ops_row, "Grow", "grow the mask", lambda: self.canvas.apply_op("grow", self.amount.value()))
        self.shrink_button = action(ops_row, "Shrink", "shrink the mask",
                                    lambda: self.canvas.apply_op("shrink", self.amount.value()))
        self.feather_button = action(ops_row, "Feather", "soften the mask edge",
                                     lambda: self.canvas.apply_op("feather", float(self.amount.value())))
        self.undo_button = action(file_row, "Undo", "undo (Ctrl+Z)", self.canvas.undo)
        self.redo_button = action(file_row, "Redo", "redo (Ctrl+Shift+Z)", self.canvas.redo)
        action(file_row, "Clear", "clear the mask", lambda: self.canvas.apply_op("clear"))
        file_row.addStretch()
        action(file_row, "Load\u2026", "load a mask PNG", lambda: self.load_mask())
        action(file_row, "Save\u2026", "save the mask as PNG", lambda: self.save_mask())

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for row in rows:
            lay.addWidget(row.parentWidget())
        lay.addWidget(self.canvas, 1)
        self.status = QLabel("", self)
        lay.addWidget(self.status)
        self._sync()

    def _sync(self) -> None:
        doc = self.canvas.doc
        self.undo_button.setEnabled(bool(doc and doc.can_undo))
        self.redo_button.setEnabled(bool(doc and doc.can_redo))
        if doc is not None:
            frac = float(doc.as_bool().mean())
            self.status.setText(f"{doc.width}x{doc.height} — mask covers {frac:.0%}" + (
                f" — {self.message}" if self.message else ""))

    def _brush_from_canvas(self, radius: float) -> None:
        self.size_slider.blockSignals(True)
        self.size_slider.setValue(int(round(radius)))
        self.size_slider.blockSignals(False)

    def detach_canvas(self) -> MaskCanvas:
        """Take the canvas out of this editor (to show it elsewhere, e.g. the window's centre);
        the tool bar goes on acting on it."""
        self.layout().removeWidget(self.canvas)
        self.canvas.setParent(None)
        return self.canvas

    def _forget_source(self) -> None:
        self.loaded_from = None

    def set_image(self, image: np.ndarray) -> None:
        self.canvas.set_image(image)
        self.loaded_from = None
        self._sync()

    def mask(self) -> np.ndarray:
        return self.canvas.mask()

    # -- files -------------------------------------------------------------------------------
    def _ask_resize_dialog(self, mask_size, image_size) -> bool:
        answer = QMessageBox.question(
            self, "Mask size differs",
            f"The mask is {mask_size[0]}x{mask_size[1]} but the image is {image_size[0]}x{image_size[1]}.\n"
            "Resize the mask to the image?")
        return answer == QMessageBox.StandardButton.Yes

    def load_mask(self, path: Optional[str] = None) -> bool:
        """Load a mask PNG; a mask of another size is resized only if the user agrees."""
        doc = self.canvas.doc
        if doc is None:
            return False
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load mask", "", "Images (*.png *.jpg *.bmp *.webp)")
            if not path:
                return False
        try:
            arr, same = load_mask_file(path, (doc.width, doc.height))
        except ValueError as exc:
            self.message = str(exc)
            self._sync()
            return False
        if not same:
            if not self.ask_resize((arr.shape[1], arr.shape[0]), (doc.width, doc.height)):
                self.message = "mask not loaded: its size differs from the image"
                self._sync()
                return False
            arr = resize_mask(arr, (doc.width, doc.height))
        self.message = ""
        self.canvas.set_mask(arr)
        self.loaded_from = str(path) if same else None
        return True

    def save_mask(self, path: Optional[str] = None) -> bool:
        if self.canvas.doc is None:
            return False
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save mask", "mask.png", "PNG (*.png)")
            if not path:
                return False
        self.canvas.doc.save_png(path)
        return True
