"""Image viewing widgets: a zoom/pan view, a before/after split view and a side-by-side pair.

All three paint with QPainter on a plain widget (no OpenGL), so they work under the offscreen
platform and in tests. Mouse wheel zooms around the cursor, dragging pans, double-click fits,
``F`` fits, ``1`` shows pixels 1:1, ``+``/``-`` zoom.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from app.widgets.imaging import to_qimage

MIN_SCALE = 0.02
MAX_SCALE = 64.0


_BRUSHES: dict[bool, QBrush] = {}


def _checker_brush(dark: bool) -> QBrush:
    """The transparency checkerboard (made once per theme)."""
    brush = _BRUSHES.get(dark)
    if brush is None:
        brush = _BRUSHES[dark] = _make_checker(dark)
    return brush


def _make_checker(dark: bool) -> QBrush:
    tile = QPixmap(16, 16)
    a, b = (QColor("#2b2e35"), QColor("#33363e")) if dark else (QColor("#e9ebef"), QColor("#ffffff"))
    tile.fill(a)
    p = QPainter(tile)
    p.fillRect(0, 0, 8, 8, b)
    p.fillRect(8, 8, 8, 8, b)
    p.end()
    return QBrush(tile)


class ZoomPanCanvas(QWidget):
    """Base: keeps a scale and an offset (image point at widget origin) for an image of a size."""

    viewChanged = Signal(float, QPointF)  # scale, offset

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self._scale = 1.0
        self._offset = QPointF(0, 0)  # widget coords of the image's top-left corner
        self._fit = True
        self._drag_from: QPointF | None = None
        self._placeholder = ""

    # --- geometry -------------------------------------------------------------------
    def content_size(self) -> QSize:  # overridden
        return QSize(0, 0)

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def offset(self) -> QPointF:
        return QPointF(self._offset)

    def image_rect(self) -> QRectF:
        s = self.content_size()
        return QRectF(self._offset.x(), self._offset.y(), s.width() * self._scale, s.height() * self._scale)

    def widget_to_image(self, p: QPointF) -> QPointF:
        return QPointF((p.x() - self._offset.x()) / self._scale, (p.y() - self._offset.y()) / self._scale)

    def fit(self) -> None:
        self._fit = True
        s = self.content_size()
        if s.isEmpty() or self.width() < 2 or self.height() < 2:
            self.update()
            return
        margin = 12
        sx = (self.width() - 2 * margin) / s.width()
        sy = (self.height() - 2 * margin) / s.height()
        self._scale = max(MIN_SCALE, min(MAX_SCALE, min(sx, sy)))
        self._center()
        self._emit()

    def set_scale(self, scale: float, anchor: QPointF | None = None) -> None:
        scale = max(MIN_SCALE, min(MAX_SCALE, scale))
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        img_pt = self.widget_to_image(anchor)
        self._scale = scale
        self._offset = QPointF(anchor.x() - img_pt.x() * scale, anchor.y() - img_pt.y() * scale)
        self._fit = False
        self._emit()

    def actual_size(self) -> None:
        self._scale = 1.0
        self._fit = False
        self._center()
        self._emit()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_scale(self._scale * factor, anchor)

    def set_view(self, scale: float, offset: QPointF) -> None:
        """Adopt another view's transform (used to keep side-by-side views in step)."""
        if abs(scale - self._scale) < 1e-9 and offset == self._offset:
            return
        self._scale = scale
        self._offset = QPointF(offset)
        self._fit = False
        self.update()

    def _center(self) -> None:
        s = self.content_size()
        self._offset = QPointF((self.width() - s.width() * self._scale) / 2, (self.height() - s.height() * self._scale) / 2)

    def _emit(self) -> None:
        self.update()
        self.viewChanged.emit(self._scale, QPointF(self._offset))

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    # --- events ---------------------------------------------------------------------
    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self._fit:
            self.fit()

    def wheelEvent(self, ev: QWheelEvent) -> None:
        steps = ev.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps, ev.position())
        ev.accept()

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag_from = ev.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        if self._drag_from is not None:
            d = ev.position() - self._drag_from
            self._drag_from = ev.position()
            self._offset += d
            self._fit = False
            self._emit()
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        self._drag_from = None
        self.unsetCursor()
        super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev: QMouseEvent) -> None:
        self.fit()

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        k = ev.key()
        if k == Qt.Key.Key_F:
            self.fit()
        elif k == Qt.Key.Key_1:
            self.actual_size()
        elif k in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(1.25)
        elif k == Qt.Key.Key_Minus:
            self.zoom_by(0.8)
        else:
            super().keyPressEvent(ev)

    # --- painting helpers -----------------------------------------------------------
    def _dark(self) -> bool:
        return self.palette().color(self.backgroundRole()).lightness() < 128

    def changeEvent(self, ev) -> None:
        if ev.type() == ev.Type.PaletteChange:
            self._bg = None
        super().changeEvent(ev)

    def _paint_background(self, p: QPainter) -> None:
        bg = getattr(self, "_bg", None)
        if bg is None:
            base = self.palette().color(self.backgroundRole())
            bg = self._bg = (base.darker(108 if base.lightness() < 128 else 103), base.lightness() < 128)
        p.fillRect(self.rect(), bg[0])

    def _paint_placeholder(self, p: QPainter) -> None:
        if self._placeholder:
            p.setPen(self.palette().color(self.palette().ColorRole.PlaceholderText))
            f = p.font()
            f.setPointSizeF(f.pointSizeF() * 1.15)
            p.setFont(f)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)

    def _paint_image(self, p: QPainter, img: QImage, target: QRectF) -> None:
        if img.hasAlphaChannel():
            bg = getattr(self, "_bg", None)
            p.fillRect(target, _checker_brush(bg[1] if bg else self._dark()))
        smooth = self._scale < 2.0
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        p.drawImage(target, img, QRectF(img.rect()))


class ImageView(ZoomPanCanvas):
    """Shows one image with zoom and pan."""

    def __init__(self, parent: QWidget | None = None, placeholder: str = ""):
        super().__init__(parent)
        self._image = QImage()
        self._placeholder = placeholder

    def content_size(self) -> QSize:
        return self._image.size()

    def image(self) -> QImage:
        return self._image

    def has_image(self) -> bool:
        return not self._image.isNull()

    def set_image(self, obj: Any, keep_view: bool = False) -> None:
        """Show an image (QImage, path, bytes, PIL image or array). ``keep_view`` keeps zoom/pan when
        the size is unchanged (live previews during a run)."""
        img = to_qimage(obj) if obj is not None else QImage()
        same = not self._image.isNull() and img.size() == self._image.size()
        self._image = img
        if keep_view and same and not self._fit:
            self.update()
        else:
            self.fit()

    def clear(self) -> None:
        self._image = QImage()
        self.update()

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        self._paint_background(p)
        if self._image.isNull():
            self._paint_placeholder(p)
        else:
            self._paint_image(p, self._image, self.image_rect())
        p.end()


class SplitView(ZoomPanCanvas):
    """Before/after: the left part of the divider shows ``before``, the right part ``after``.

    Drag the divider handle (or the divider line) to move it; drag anywhere else to pan.
    """

    splitChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._before = QImage()
        self._after = QImage()
        self._split = 0.5  # fraction of the widget width
        self._dragging_split = False
        self.labels = ("Before", "After")

    def content_size(self) -> QSize:
        a, b = self._before.size(), self._after.size()
        return QSize(max(a.width(), b.width()), max(a.height(), b.height()))

    def set_images(self, before: Any, after: Any) -> None:
        self._before = to_qimage(before) if before is not None else QImage()
        self._after = to_qimage(after) if after is not None else QImage()
        self.fit()

    @property
    def split(self) -> float:
        return self._split

    def set_split(self, frac: float) -> None:
        self._split = max(0.0, min(1.0, frac))
        self.update()
        self.splitChanged.emit(self._split)

    def _split_x(self) -> float:
        return self._split * self.width()

    def _near_split(self, x: float) -> bool:
        return abs(x - self._split_x()) <= 8

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and self._near_split(ev.position().x()):
            self._dragging_split = True
            return
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        if self._dragging_split:
            self.set_split(ev.position().x() / max(1, self.width()))
            return
        if self._drag_from is None:
            if self._near_split(ev.position().x()):
                self.setCursor(Qt.CursorShape.SplitHCursor)
            else:
                self.unsetCursor()
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        self._dragging_split = False
        super().mouseReleaseEvent(ev)

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        self._paint_background(p)
        if self._before.isNull() and self._after.isNull():
            self._paint_placeholder(p)
            p.end()
            return
        x = self._split_x()
        target = self.image_rect()  # both images fill the same rectangle (an output rendered at
        # another resolution than its input still lines up with it)
        for img, clip in (
            (self._before, QRectF(0, 0, x, self.height())),
            (self._after, QRectF(x, 0, self.width() - x, self.height())),
        ):
            if img.isNull():
                continue
            p.save()
            p.setClipRect(clip)
            self._paint_image(p, img, target)
            p.restore()
        # divider and handle
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(QColor(255, 255, 255, 230), 2))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.setBrush(QColor("#4f8cff"))
        p.drawEllipse(QPointF(x, self.height() / 2), 9, 9)
        # captions
        p.setPen(QColor(255, 255, 255))
        fm = p.fontMetrics()
        for text, right in ((self.labels[0], False), (self.labels[1], True)):
            w = fm.horizontalAdvance(text) + 12
            rx = x + 8 if right else x - 8 - w
            box = QRectF(rx, 8, w, fm.height() + 6)
            p.fillRect(box, QColor(0, 0, 0, 140))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        p.end()


class SideBySideView(QWidget):
    """Two ``ImageView``s whose zoom and pan move together."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.left = ImageView(placeholder="")
        self.right = ImageView(placeholder="")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(self.left)
        lay.addWidget(self.right)
        self._syncing = False
        self.left.viewChanged.connect(lambda s, o: self._sync(self.right, s, o))
        self.right.viewChanged.connect(lambda s, o: self._sync(self.left, s, o))

    def _sync(self, other: ImageView, scale: float, offset: QPointF) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            other.set_view(scale, offset)
        finally:
            self._syncing = False

    def set_images(self, a: Any, b: Any) -> None:
        self.left.set_image(a)
        self.right.set_image(b)
