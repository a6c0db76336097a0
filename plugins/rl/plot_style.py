"""How the return-distribution plots look: a colour-blind-safe palette (Okabe & Ito), dark axes on
white, a light grid, and the caching and downsampling that keep scrubbing a 10,000-step episode
smooth. Shared by :mod:`plugins.rl.episode_plots` and :mod:`plugins.rl.views`."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QLabel

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
INK = "#222222"
GRID_ALPHA = 0.15


def action_color(a: int, alpha: int = 255) -> QColor:
    c = QColor(PALETTE[a % len(PALETTE)])
    c.setAlpha(alpha)
    return c


def style_plot(plot: pg.PlotItem, title: str = "", x: str = "", y: str = "") -> pg.PlotItem:
    """White background, dark axes, readable fonts, light grid."""
    font = QFont()
    font.setPointSize(9)
    for side in ("left", "bottom"):
        ax = plot.getAxis(side)
        ax.enableAutoSIPrefix(False)  # "probability (x0.001)" helps nobody
        ax.setPen(pg.mkPen(INK, width=1))
        ax.setTextPen(pg.mkPen(INK))
        ax.setTickFont(font)
    if x:
        plot.setLabel("bottom", x, color=INK, **{"font-size": "10pt"})
    if y:
        plot.setLabel("left", y, color=INK, **{"font-size": "10pt"})
    if title:
        plot.setTitle(title, color=INK, size="10pt")
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
    plot.setMenuEnabled(False)
    return plot


def cache_axes(plot: pg.PlotItem) -> None:
    """Cache axis drawings as pixmaps: worth it where the whole plot repaints on every step (the
    step plots); measured to slow down plots where only a cursor moves (partial updates)."""
    from PySide6.QtWidgets import QGraphicsItem
    for side in ("left", "bottom"):
        plot.getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def make_plot_widget(title="", x="", y="", min_h=160) -> pg.PlotWidget:
    w = pg.PlotWidget(background="w")
    style_plot(w.getPlotItem(), title, x, y)
    w.setMinimumHeight(min_h)
    w.setAntialiasing(True)
    return w


def sequential_lut(n: int = 256) -> np.ndarray:
    """White -> blue -> dark navy, perceptually ordered; white at zero so empty space stays paper."""
    stops = np.array([[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107],
                      [3, 19, 43]], float)
    pos = np.linspace(0, 1, len(stops))
    x = np.linspace(0, 1, n)
    return np.stack([np.interp(x, pos, stops[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def cache_static(*items) -> None:
    """Long curves, fills and images change only when the episode changes: cache them as
    device pixmaps so moving a cursor across them blits instead of re-stroking 10,000 points;
    curves are also peak-downsampled to the screen resolution."""
    from PySide6.QtWidgets import QGraphicsItem
    from PySide6.QtGui import QPixmapCache
    if QPixmapCache.cacheLimit() < 192 * 1024:  # item caches live in QPixmapCache (10 MB by default):
        QPixmapCache.setCacheLimit(192 * 1024)  # a 10,000-step episode's layers need more or they thrash
    mode = QGraphicsItem.CacheMode.DeviceCoordinateCache
    for it in items:
        if isinstance(it, pg.PlotDataItem):
            # no clipToView/auto downsampling: both follow the view range lazily, which a cached
            # pixmap would not notice (curves were drawn cut at the old range); see set_downsample
            it.curve.setCacheMode(mode)      # the children paint, not the container
            it.scatter.setCacheMode(mode)
        it.setCacheMode(mode)


def set_downsample(n_points: int, *items, max_points: int = 2500) -> None:
    """Peak-preserving downsampling to about ``max_points`` points (a 10,000-step episode on a
    1,400 px wide plot loses nothing visible)."""
    ds = max(1, int(np.ceil(n_points / max_points)))
    for it in items:
        it.setDownsampling(ds=ds, auto=False, method="peak")


def fixed_lines(label: QLabel, lines: int) -> None:
    """Give a label a fixed height so changing its text while scrubbing never re-lays out the
    window (a re-layout would resize every plot and invalidate all their caches)."""
    from PySide6.QtWidgets import QSizePolicy
    label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 4)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    label.setAlignment(Qt.AlignLeft | Qt.AlignTop)


def fmt_number(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v:.2f}"
