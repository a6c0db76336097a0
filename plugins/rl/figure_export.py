"""Figures from live widgets: rows of widgets rendered into one PNG at a chosen width (the painter
is scaled, so lines and text stay sharp) or into an SVG through QSvgGenerator."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRectF
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QWidget


def _layout(parts) -> tuple[list[tuple[QWidget, int, int]], int, int]:
    """Place parts (widgets, or lists of widgets forming a row) top to bottom at their current
    sizes; returns [(widget, x, y)], total width, total height (logical pixels)."""
    placed, y, width = [], 0, 0
    for part in parts:
        row = part if isinstance(part, (list, tuple)) else [part]
        x, h = 0, 0
        for w in row:
            size = w.size()
            if size.width() <= 0 or size.height() <= 0:
                w.resize(max(size.width(), 600), max(size.height(), 300))
                size = w.size()
            placed.append((w, x, y))
            x += size.width()
            h = max(h, size.height())
        width = max(width, x)
        y += h
    return placed, max(width, 1), max(y, 1)


def _paint_parts(painter: QPainter, placed) -> None:
    from PySide6.QtWidgets import QGraphicsItem, QGraphicsView
    # item caches hold only what was exposed on screen (not what a legend covered): draw afresh
    cached = []
    for w, _, _ in placed:
        for view in [w] * isinstance(w, QGraphicsView) + w.findChildren(QGraphicsView):
            for item in view.items():
                if item.cacheMode() != QGraphicsItem.CacheMode.NoCache:
                    cached.append((item, item.cacheMode()))
                    item.setCacheMode(QGraphicsItem.CacheMode.NoCache)
    try:
        for w, x, y in placed:
            painter.save()
            painter.translate(x, y)
            QWidget.render(w, painter, QPoint(0, 0))  # QWidget's, also for QGraphicsViews
            painter.restore()
    finally:
        for item, mode in cached:
            item.setCacheMode(mode)


def render_stack(parts, width_px: int) -> QImage:
    """Render widgets (rows of widgets allowed) into one image ``width_px`` wide, drawing at that
    resolution (the painter is scaled, so lines and text stay sharp; not an upscaled screenshot)."""
    placed, width, height = _layout(parts)
    scale = max(width_px / width, 0.1)
    img = QImage(int(round(width * scale)), int(round(height * scale)), QImage.Format_ARGB32)
    img.fill(QColor("white"))
    painter = QPainter(img)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setRenderHint(QPainter.TextAntialiasing)
    painter.scale(scale, scale)
    try:
        _paint_parts(painter, placed)
    finally:
        painter.end()
    return img


def render_widget(widget: QWidget, width_px: int) -> QImage:
    return render_stack([widget], width_px)


def render_svg(parts, path) -> Path:
    """Draw widgets into an SVG file through QSvgGenerator (vector lines and text).
    (pyqtgraph's own SVGExporter cannot parse the path syntax of current Qt versions.)"""
    from PySide6.QtCore import QSize
    from PySide6.QtSvg import QSvgGenerator

    if isinstance(parts, QWidget):
        parts = [parts]
    placed, width, height = _layout(parts)
    path = Path(path)
    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(QSize(width, height))
    gen.setViewBox(QRectF(0, 0, width, height))
    gen.setTitle("Implicit Studio: return distributions")
    painter = QPainter(gen)
    painter.setRenderHint(QPainter.Antialiasing)
    try:
        _paint_parts(painter, placed)
    finally:
        painter.end()
    return path
