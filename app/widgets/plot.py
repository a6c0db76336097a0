"""Line plots of a few series against one x (part of the widget kit): :class:`LinePlot`.

Drawn with QPainter (no plotting library), one small panel per series stacked top to bottom, each
with its own y range, its name, the first and last values, and the x range along the bottom — the
loss and PSNR curves of a fit, the returns of a training run. Used by the window's table viewer for
tables whose first column is a step, and available to plugin viewers.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

PALETTE = ("#4f8cff", "#e5484d", "#30a46c", "#f5a524", "#8e4ec6", "#12a594")


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"


class LinePlot(QWidget):
    """Series against a shared x, one panel each (see the module docstring)."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.x: list[float] = []
        self.x_label = ""
        self.series: dict[str, list[float]] = {}
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_data(self, x: Sequence[float], series: dict[str, Sequence[float]], x_label: str = "") -> None:
        """Plot each of ``series`` (name -> values, as long as ``x``) against ``x``."""
        self.x = [float(v) for v in x]
        self.x_label = x_label
        self.series = {name: [float(v) for v in ys] for name, ys in series.items()}
        for name, ys in self.series.items():
            if len(ys) != len(self.x):
                raise ValueError(f"the series {name!r} has {len(ys)} values for {len(self.x)} x values")
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(480, 140 * max(1, len(self.series)))

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pal = self.palette()
        text = pal.color(pal.ColorRole.WindowText)
        grid = QColor(text)
        grid.setAlpha(40)
        p.fillRect(self.rect(), pal.color(pal.ColorRole.Base))
        if not self.series or len(self.x) < 2:
            p.setPen(pal.color(pal.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Nothing to plot yet")
            p.end()
            return
        fm = p.fontMetrics()
        n = len(self.series)
        bottom = fm.height() + 6
        h = (self.height() - bottom) / n
        x0, x1 = min(self.x), max(self.x)
        left, right = 12, 12
        for i, (name, ys) in enumerate(self.series.items()):
            box = QRectF(left, i * h + fm.height() + 4, self.width() - left - right, h - fm.height() - 12)
            finite = [v for v in ys if math.isfinite(v)]
            lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
            if hi - lo < 1e-12:
                lo, hi = lo - 0.5, hi + 0.5
            colour = QColor(PALETTE[i % len(PALETTE)])
            p.setPen(text)
            last = _fmt(ys[-1]) if ys else ""
            p.drawText(QPointF(left, i * h + fm.ascent() + 2), f"{name}   last {last}   min {_fmt(lo)}   max {_fmt(hi)}")
            p.setPen(QPen(grid, 1))
            p.drawRect(box)
            for k in (1, 2, 3):
                y = box.top() + box.height() * k / 4
                p.drawLine(QPointF(box.left(), y), QPointF(box.right(), y))
            path = QPainterPath()
            started = False
            for xv, yv in zip(self.x, ys):
                if not math.isfinite(yv):
                    started = False
                    continue
                pt = QPointF(box.left() + (xv - x0) / max(x1 - x0, 1e-12) * box.width(),
                             box.bottom() - (yv - lo) / (hi - lo) * box.height())
                if started:
                    path.lineTo(pt)
                else:
                    path.moveTo(pt)
                    started = True
            p.setPen(QPen(colour, 1.6))
            p.drawPath(path)
        p.setPen(text)
        label = f"{self.x_label} {_fmt(x0)} … {_fmt(x1)}" if self.x_label else f"{_fmt(x0)} … {_fmt(x1)}"
        p.drawText(QRectF(0, self.height() - bottom, self.width(), bottom), Qt.AlignmentFlag.AlignCenter, label)
        p.end()
