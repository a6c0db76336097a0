"""Qt views of return distributions along an episode (PySide6 + pyqtgraph).

:class:`EpisodeViewer` is the studio viewer for ``distribution`` results (``set_result``) and
takes trajectories directly (``set_trajectory``). Everything drawn comes from
:class:`~plugins.rl.episode_stats.EpisodeStats`, computed once; scrubbing only calls ``setData`` /
``setValue`` on items made once (``StepPlots.update_step``), never rebuilds them
(``StepPlots.rebuild`` exists only so the benchmark can compare).

Plots are drawn on white with dark axes, a colour-blind-safe palette (Okabe & Ito) and
anti-aliased lines so exported figures are ready for papers.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QMenu, QPushButton, QSlider, QSpinBox,
                               QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout,
                               QWidget)

from .distributions import CATEGORICAL
from .episode_stats import BAND_LEVELS, EpisodeStats, RiskSettings, compare_w1, compute_episode_stats
from .qtfix import protect_singletons
from .trajectory import Trajectory, calibration

protect_singletons()  # PySide6 6.12 reference leak; see qtfix.py

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


def _sequential_lut(n: int = 256) -> np.ndarray:
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


def _fixed_lines(label: QLabel, lines: int) -> None:
    """Give a label a fixed height so changing its text while scrubbing never re-lays out the
    window (a re-layout would resize every plot and invalidate all their caches)."""
    from PySide6.QtWidgets import QSizePolicy
    label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 4)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    label.setAlignment(Qt.AlignLeft | Qt.AlignTop)


def _fmt(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v:.2f}"


# ------------------------------------------------------------------------------------------ frame


class FrameView(pg.GraphicsLayoutWidget):
    """The environment frame of the current step: stored frames, or drawn from the observation."""

    def __init__(self, parent=None):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.vb = self.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.img = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.img)
        self.text = pg.TextItem("", color=INK, anchor=(0.5, 0.5))
        self.vb.addItem(self.text)
        self.traj: Trajectory | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.setMinimumSize(200, 140)

    def set_trajectory(self, traj: Trajectory) -> None:
        self.traj = traj
        self._cache.clear()

    def frame(self, t: int) -> np.ndarray | None:
        traj = self.traj
        if traj is None:
            return None
        if traj.frames is not None:
            return traj.frames[t]
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        from .render import can_render, render_frame
        if traj.obs.ndim != 2 or traj.obs.shape[1] == 0 or not can_render(traj.env_id):
            return None
        img = render_frame(traj.env_id, traj.obs[t])
        self._cache[t] = img
        if len(self._cache) > 256:
            self._cache.popitem(last=False)
        return img

    def update_step(self, t: int) -> None:
        img = self.frame(t)
        if img is None:
            self.img.clear()
            self.text.setText("no frame (observation only)")
            self.text.setPos(0, 0)
            self.vb.setRange(QRectF(-100, -50, 200, 100), padding=0)
            return
        self.text.setText("")
        first = self.img.image is None or self.img.image.shape != img.shape
        self.img.setImage(img, autoLevels=False, levels=(0, 255))
        if first:
            self.vb.setRange(QRectF(0, 0, img.shape[1], img.shape[0]), padding=0)


# ------------------------------------------------------------------------------------------ one step


class StepPlots(QWidget):
    """For the current step: each action's distribution (PMF bars for categorical agents, the
    quantile function for quantile agents) and its CDF, with mean (solid) and CVaR (dashed) of
    every action and the realised return (dotted) marked; the action taken is drawn bold."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.left = make_plot_widget()
        self.right = make_plot_widget("CDF", "return z", "P(Z ≤ z)")
        lay.addWidget(self.left)
        lay.addWidget(self.right)
        self.stats: EpisodeStats | None = None
        self._items: dict = {}
        self.legend = None

    # -- construction -------------------------------------------------------------------------
    def set_stats(self, stats: EpisodeStats) -> None:
        self.stats = stats
        self._build()

    def _clear(self) -> None:
        for w in (self.left, self.right):
            w.getPlotItem().clear()
            if w.getPlotItem().legend is not None:
                w.getPlotItem().legend.scene().removeItem(w.getPlotItem().legend)
                w.getPlotItem().legend = None
        self._items = {}

    def _build(self) -> None:
        st = self.stats
        self._clear()
        if st is None:
            return
        lp, rp = self.left.getPlotItem(), self.right.getPlotItem()
        names = st.traj.action_names
        it = {"bars": [], "qf": [], "cdf": [], "mean_l": [], "cvar_l": [], "mean_r": [], "cvar_r": []}
        legend = rp.addLegend(offset=(-6, -6), labelTextColor=INK, labelTextSize="9pt")
        legend.setBrush(pg.mkBrush(255, 255, 255, 220))
        if st.kind == CATEGORICAL:
            style_plot(lp, "PMF (categorical)", "return z", "probability")
            atoms = st.atoms
            dz = float(atoms[1] - atoms[0]) if atoms.size > 1 else 1.0
            w = 0.85 * dz / st.A
            for a in range(st.A):
                x = atoms - 0.425 * dz + (a + 0.5) * w
                bar = pg.BarGraphItem(x=x, height=np.zeros_like(atoms), width=w, brush=action_color(a, 200),
                                      pen=pg.mkPen(None))
                lp.addItem(bar)
                it["bars"].append(bar)
            ymax = float(np.nanmax(st.pmf)) if st.pmf is not None and st.pmf.size else 1.0
            lp.setXRange(*st.x_range, padding=0)
            lp.setYRange(0, max(ymax, 1e-3) * 1.08, padding=0)
            mean_angle = 90
        else:
            style_plot(lp, "Quantile function", "quantile level τ", "return z")
            for a in range(st.A):
                c = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(action_color(a), width=2), antialias=True)
                lp.addItem(c)
                it["qf"].append(c)
            lp.setXRange(0, 1, padding=0.02)
            lp.setYRange(*st.x_range, padding=0)
            mean_angle = 0
            self._alpha_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#888888", width=1, style=Qt.DotLine))
            lp.addItem(self._alpha_line)
            it["alpha"] = self._alpha_line
        for a in range(st.A):
            c = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(action_color(a), width=2), antialias=True)
            rp.addItem(c)
            it["cdf"].append(c)
            # legend entries are static proxies: restyling the real curve every step must not touch
            # the legend (that re-lays out the whole window and repaints every plot)
            legend.addItem(pg.PlotDataItem(pen=pg.mkPen(action_color(a), width=2)), names[a])
        for a in range(st.A):
            for key, plot, angle in (("mean_l", lp, mean_angle), ("mean_r", rp, 90)):
                ln = pg.InfiniteLine(angle=angle, pen=pg.mkPen(action_color(a), width=1.5))
                plot.addItem(ln)
                it[key].append(ln)
            for key, plot, angle in (("cvar_l", lp, mean_angle), ("cvar_r", rp, 90)):
                ln = pg.InfiniteLine(angle=angle, pen=pg.mkPen(action_color(a), width=1.5, style=Qt.DashLine))
                plot.addItem(ln)
                it[key].append(ln)
        mc = pg.InfiniteLine(angle=90, pen=pg.mkPen("#444444", width=1.5, style=Qt.DotLine))
        rp.addItem(mc)
        it["mc"] = mc
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#555555", width=1.5)), "mean")
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#555555", width=1.5, style=Qt.DashLine)), "CVaR")
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#444444", width=1.5, style=Qt.DotLine)), "realised return")
        rp.setXRange(*st.x_range, padding=0)
        rp.setYRange(0, 1.02, padding=0)
        for p in (lp, rp):
            p.disableAutoRange()
            cache_axes(p)
        self.legend = legend
        self._items = it

    # -- per-step update (setData only) ----------------------------------------------------------
    def update_step(self, t: int) -> None:
        st = self.stats
        if st is None or not self._items:
            return
        it = self._items
        taken = int(st.chosen[t])
        for a in range(st.A):
            bold = a == taken
            pen = pg.mkPen(action_color(a, 255 if bold else 150), width=3.2 if bold else 1.6)
            it["cdf"][a].setData(st.cdf_x[t, a], st.cdf_y[t, a])
            it["cdf"][a].setPen(pen)
            if st.kind == CATEGORICAL:
                it["bars"][a].setOpts(height=st.pmf[t, a], brush=action_color(a, 230 if bold else 90))
            else:
                it["qf"][a].setData(st.qf_x[t, a], st.qf_y[t, a])
                it["qf"][a].setPen(pen)
            for key, val in (("mean_l", st.mean[t, a]), ("mean_r", st.mean[t, a]), ("cvar_l", st.cvar[t, a]),
                             ("cvar_r", st.cvar[t, a])):
                ln = it[key][a]
                ok = bool(np.isfinite(val))
                ln.setVisible(ok)
                if ok:
                    ln.setValue(float(val))
        g = st.mc[t]
        it["mc"].setVisible(bool(np.isfinite(g)))
        if np.isfinite(g):
            it["mc"].setValue(float(g))
        if "alpha" in it:
            it["alpha"].setValue(st.risk.alpha)

    def rebuild(self, t: int) -> None:
        """Remove and re-create every item, then draw step t (the slow way; benchmark only)."""
        self._build()
        self.update_step(t)


# ------------------------------------------------------------------------------------------ episode


class TimelinePlots(QWidget):
    """The whole episode: mean of the action taken with 50% and 90% quantile bands, the realised
    Monte-Carlo return, steps where the risk-averse choice differs from the greedy one, a
    draggable step cursor, and W1(predicted, realised) per step underneath."""

    step_dragged = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.main = make_plot_widget("Return distribution of the action taken", "", "return")
        self.w1 = make_plot_widget("", "step", "W₁ to realised", min_h=90)
        self.w1.setXLink(self.main)
        lay.addWidget(self.main, 3)
        lay.addWidget(self.w1, 1)
        p = self.main.getPlotItem()
        legend = p.addLegend(offset=(-8, 4), labelTextColor=INK, labelTextSize="9pt", colCount=3)
        legend.setBrush(pg.mkBrush(255, 255, 255, 220))
        base = QColor(PALETTE[0])
        self.q05 = pg.PlotDataItem(pen=pg.mkPen(None))
        self.q95 = pg.PlotDataItem(pen=pg.mkPen(None))
        self.q25 = pg.PlotDataItem(pen=pg.mkPen(None))
        self.q75 = pg.PlotDataItem(pen=pg.mkPen(None))
        c90 = QColor(base)
        c90.setAlpha(45)
        c50 = QColor(base)
        c50.setAlpha(90)
        self.band90 = pg.FillBetweenItem(self.q05, self.q95, brush=pg.mkBrush(c90))
        self.band50 = pg.FillBetweenItem(self.q25, self.q75, brush=pg.mkBrush(c50))
        for item in (self.q05, self.q95, self.q25, self.q75, self.band90, self.band50):
            p.addItem(item)
        self.mean = p.plot(pen=pg.mkPen(base, width=2), name="predicted mean", antialias=True)
        self.mc = p.plot(pen=pg.mkPen("#111111", width=1.8, style=Qt.DashLine), name="realised return",
                         antialias=True)
        self.dis = pg.ScatterPlotItem(symbol="t1", size=7, brush=pg.mkBrush(PALETTE[1]), pen=pg.mkPen(None),
                                      name="risk-averse ≠ greedy")
        p.addItem(self.dis)
        # legend samples: proxies (a LegendItem cannot draw a FillBetweenItem)
        legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=pg.mkBrush(c50), pen=pg.mkPen(None)),
                       "50% band")
        legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=pg.mkBrush(c90), pen=pg.mkPen(None)),
                       "90% band")
        self.cursor = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#333333", width=1.2),
                                      hoverPen=pg.mkPen(PALETTE[1], width=2))
        p.addItem(self.cursor)
        self.cursor.sigPositionChanged.connect(self._dragged)
        self.w1_curve = self.w1.getPlotItem().plot(pen=pg.mkPen(PALETTE[2], width=1.5), antialias=True)
        self.w1_cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#333333", width=1.2))
        self.w1.getPlotItem().addItem(self.w1_cursor)
        cache_static(self.q05, self.q95, self.q25, self.q75, self.band90, self.band50, self.mean, self.mc, self.dis,
                     self.w1_curve)
        self._offset = 0
        self._quiet = False

    def set_range(self, stats: EpisodeStats, a: int, b: int) -> None:
        x = np.arange(b - a)
        set_downsample(b - a, self.q05, self.q95, self.q25, self.q75, self.mean, self.mc, self.w1_curve)
        bands = stats.bands[a:b]
        i05, i25, i75, i95 = (BAND_LEVELS.index(v) for v in (0.05, 0.25, 0.75, 0.95))
        self.q05.setData(x, bands[:, i05])
        self.q95.setData(x, bands[:, i95])
        self.q25.setData(x, bands[:, i25])
        self.q75.setData(x, bands[:, i75])
        self.mean.setData(x, stats.mean[np.arange(a, b), stats.chosen[a:b]])
        mc = stats.mc[a:b].copy()
        self.mc.setData(x, mc)
        self._offset = a
        lo, hi = self._y_range(stats, a, b)
        self.update_risk(stats, a, b)
        self.w1_curve.setData(x, stats.w1[a:b])
        p = self.main.getPlotItem()
        p.setXRange(0, max(1, b - a - 1), padding=0.01)
        p.setYRange(lo, hi, padding=0)
        self.cursor.setBounds((0, max(0, b - a - 1)))
        w1 = stats.w1[a:b]
        top = float(np.nanmax(w1)) if np.isfinite(w1).any() else 1.0
        self.w1.getPlotItem().setYRange(0, max(top, 1e-6) * 1.1, padding=0)

    @staticmethod
    def _y_range(stats: EpisodeStats, a: int, b: int) -> tuple[float, float]:
        """Tight around the bands and the realised return, with room for the markers below and
        the legend above (so the legend never hides data)."""
        vals = np.concatenate([stats.bands[a:b].ravel(), stats.mc[a:b]])
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            return stats.x_range
        lo, hi = float(vals.min()), float(vals.max())
        span = max(hi - lo, 1e-3)
        return lo - 0.12 * span, hi + 0.32 * span

    def update_risk(self, stats: EpisodeStats, a: int, b: int) -> None:
        idx = np.nonzero(stats.disagree[a:b])[0]
        lo, hi = self._y_range(stats, a, b)
        self.dis.setData(idx, np.full(idx.size, lo + 0.04 * (hi - lo)))

    def update_step(self, t_in_episode: int) -> None:
        self._quiet = True
        self.cursor.setValue(t_in_episode)
        self._quiet = False
        self.w1_cursor.setValue(t_in_episode)

    def _dragged(self):
        if not self._quiet:
            self.step_dragged.emit(int(round(self.cursor.value())))


class RidgePlots(QWidget):
    """Heat map (step x return, colour = probability) of the action taken, the realised return on
    top, and a ridge plot of the distributions at evenly spaced steps."""

    def __init__(self, parent=None, n_ridges: int = 14):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.heat = make_plot_widget("Distribution over the episode", "step", "return")
        self.ridge = make_plot_widget("Ridge plot (action taken; orange: realised return)", "return", "step")
        self.ridge.getPlotItem().showGrid(x=True, y=False, alpha=GRID_ALPHA)
        lay.addWidget(self.heat, 3)
        lay.addWidget(self.ridge, 2)
        self.img = pg.ImageItem(axisOrder="row-major")
        # a plain lookup table (setColorMap on an ImageItem crashed PySide6 6.12 at interpreter exit)
        self.img.setLookupTable(_sequential_lut())
        self.heat.getPlotItem().addItem(self.img)
        self.mc = self.heat.getPlotItem().plot(pen=pg.mkPen("#111111", width=1.6, style=Qt.DashLine), antialias=True)
        self.mean = self.heat.getPlotItem().plot(pen=pg.mkPen(PALETTE[0], width=1.6), antialias=True)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#D55E00", width=1.2))
        self.heat.getPlotItem().addItem(self.cursor)
        cache_static(self.img, self.mc, self.mean)
        self.n_ridges = n_ridges
        self._ridges: list = []

    def set_range(self, stats: EpisodeStats, a: int, b: int) -> None:
        dens = stats.density[a:b]
        edges = stats.grid
        n = b - a
        bw = edges[1] - edges[0]
        # density per unit return; column-normalised display keeps thin distributions visible
        img = np.ascontiguousarray(np.nan_to_num(dens / bw).T, dtype=np.float32)
        self.img.setImage(img, autoLevels=False, levels=(0, max(float(np.nanpercentile(img, 99.5)), 1e-9)))
        self.img.setRect(QRectF(-0.5, edges[0], n, edges[-1] - edges[0]))
        x = np.arange(n)
        set_downsample(n, self.mc, self.mean)
        self.mc.setData(x, stats.mc[a:b])
        self.mean.setData(x, stats.mean[np.arange(a, b), stats.chosen[a:b]])
        hp = self.heat.getPlotItem()
        hp.setXRange(-0.5, n - 0.5, padding=0)
        hp.setYRange(edges[0], edges[-1], padding=0)
        # ridges
        rp = self.ridge.getPlotItem()
        for item in self._ridges:
            rp.removeItem(item)
        self._ridges = []
        steps = np.unique(np.linspace(0, n - 1, min(self.n_ridges, n)).round().astype(int))
        centers = 0.5 * (edges[1:] + edges[:-1])
        peak = np.nanmax(dens[steps]) if np.isfinite(dens[steps]).any() else 1.0
        gap = 1.0
        height = 2.2 * gap / max(peak, 1e-12)
        ticks = []
        for k, s in enumerate(steps[::-1]):  # draw from the back (late steps on top of the page)
            level = (len(steps) - 1 - k) * gap
            y = level + np.nan_to_num(dens[s]) * height
            base = pg.PlotDataItem(centers, np.full_like(centers, level), pen=pg.mkPen(None))
            curve = pg.PlotDataItem(centers, y, pen=pg.mkPen(INK, width=1.2), antialias=True)
            fill = pg.FillBetweenItem(base, curve, brush=pg.mkBrush(255, 255, 255, 255))
            col = QColor(PALETTE[0])
            col.setAlpha(70)
            fill2 = pg.FillBetweenItem(base, curve, brush=pg.mkBrush(col))
            g = stats.mc[a + s]
            items = [base, fill, fill2, curve]
            if np.isfinite(g):
                items.append(pg.PlotDataItem([g, g], [level, level + 0.8 * gap],
                                             pen=pg.mkPen(PALETTE[1], width=2)))
            for item in items:
                rp.addItem(item)
            cache_static(*items)
            self._ridges += items
            ticks.append((level, str(int(s))))
        rp.getAxis("left").setTicks([ticks])
        rp.setXRange(edges[0], edges[-1], padding=0)
        rp.setYRange(-0.2, (len(steps) - 1) * gap + 2.6 * gap, padding=0)

    def update_step(self, t_in_episode: int) -> None:
        self.cursor.setValue(t_in_episode)


class CalibrationPlots(QWidget):
    """PIT histogram over every valid state of the file (flat when predictions are calibrated),
    coverage of central intervals vs their nominal level, and support warnings."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.pit = make_plot_widget("PIT histogram (all states)", "PIT of realised return", "fraction of states")
        self.cov = make_plot_widget("Interval coverage", "nominal central-interval probability", "observed coverage")
        row.addWidget(self.pit)
        row.addWidget(self.cov)
        lay.addLayout(row, 1)
        self.info = QLabel("")
        self.warn = QLabel("")
        self.warn.setWordWrap(True)
        self.warn.setStyleSheet("color: #b00020;")
        lay.addWidget(self.info)
        lay.addWidget(self.warn)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.09, brush=pg.mkBrush(PALETTE[0]), pen=pg.mkPen("w"))
        self.pit.getPlotItem().addItem(self.bars)
        self.uniform = pg.InfiniteLine(angle=0, pen=pg.mkPen(INK, width=1.2, style=Qt.DashLine))
        self.pit.getPlotItem().addItem(self.uniform)
        cp = self.cov.getPlotItem()
        cp.plot([0, 1], [0, 1], pen=pg.mkPen("#888888", width=1, style=Qt.DashLine))
        self.cov_curve = cp.plot(pen=pg.mkPen(PALETTE[1], width=2), symbol="o", symbolSize=6,
                                 symbolBrush=PALETTE[1], symbolPen=None, antialias=True)
        cp.setXRange(0, 1, padding=0.02)
        cp.setYRange(0, 1, padding=0.02)
        self.result = None

    def set_trajectory(self, traj: Trajectory, bins: int = 10) -> None:
        cal = calibration(traj, bins=bins)
        self.result = cal
        w = 1.0 / bins
        centers = 0.5 * (cal.edges[1:] + cal.edges[:-1])
        self.bars.setOpts(x=centers, height=cal.hist, width=0.92 * w)
        self.uniform.setValue(1.0 / bins)
        p = self.pit.getPlotItem()
        p.setXRange(0, 1, padding=0.02)
        top = float(np.max(cal.hist)) if cal.hist.size else 1.0
        p.setYRange(0, max(top, 1.0 / bins) * 1.15, padding=0)
        self.cov_curve.setData(cal.nominal, cal.coverage)
        info = [f"{cal.n_states} states used"]
        if cal.pit.size:
            info.append(f"mean PIT {np.mean(cal.pit):.2f} (0.5 if unbiased)")
        if cal.edge_mass is not None:
            info.append(f"mean mass on v_min / v_max: {cal.edge_mass[0]:.3f} / {cal.edge_mass[1]:.3f}")
        self.info.setText(" · ".join(info))
        self.warn.setText("\n".join("⚠ " + w for w in cal.warnings))


class ComparePlots(QWidget):
    """A second agent or checkpoint on the same episode: both CDFs of the action taken at the
    current step, both means over the episode, and W1 between them per step."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.cdf = make_plot_widget("Action taken: CDF, A vs B", "return z", "P(Z ≤ z)")
        self.over = make_plot_widget("Predicted mean and W₁(A, B)", "step", "return")
        lay.addWidget(self.cdf)
        lay.addWidget(self.over)
        cp = self.cdf.getPlotItem()
        lg = cp.addLegend(offset=(8, 8), labelTextColor=INK, labelTextSize="9pt")
        self.ca = cp.plot(stepMode="center", pen=pg.mkPen(PALETTE[0], width=2.4), name="A", antialias=True)
        self.cb = cp.plot(stepMode="center", pen=pg.mkPen(PALETTE[1], width=2.4, style=Qt.DashLine), name="B",
                          antialias=True)
        op = self.over.getPlotItem()
        lg2 = op.addLegend(offset=(8, 8), labelTextColor=INK, labelTextSize="9pt")
        for lgd in (lg, lg2):
            lgd.setBrush(pg.mkBrush(255, 255, 255, 220))
        self.ma = op.plot(pen=pg.mkPen(PALETTE[0], width=2), name="mean A", antialias=True)
        self.mb = op.plot(pen=pg.mkPen(PALETTE[1], width=2, style=Qt.DashLine), name="mean B", antialias=True)
        self.w = op.plot(pen=pg.mkPen(PALETTE[2], width=1.5), name="W₁(A, B)", antialias=True)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#333333", width=1.2))
        op.addItem(self.cursor)
        cache_static(self.ma, self.mb, self.w)
        self.note = pg.TextItem("Load a second agent or checkpoint (Compare…)", color=INK, anchor=(0.5, 0.5))
        cp.addItem(self.note)
        self.a: EpisodeStats | None = None
        self.b: EpisodeStats | None = None
        self.w1: np.ndarray | None = None
        self.labels = ("A", "B")

    def set_pair(self, a: EpisodeStats, b: EpisodeStats, labels=("A", "B")) -> None:
        self.a, self.b = a, b
        self.w1 = compare_w1(a.traj, b.traj)
        self.labels = labels
        self.note.setText("")
        lo = min(a.x_range[0], b.x_range[0])
        hi = max(a.x_range[1], b.x_range[1])
        self.x_range = (lo, hi)
        cp = self.cdf.getPlotItem()
        cp.legend.clear()
        cp.legend.addItem(self.ca, labels[0])
        cp.legend.addItem(self.cb, labels[1])
        cp.setXRange(lo, hi, padding=0)
        cp.setYRange(0, 1.02, padding=0)

    def set_range(self, a0: int, b0: int) -> None:
        if self.a is None:
            return
        x = np.arange(b0 - a0)
        set_downsample(b0 - a0, self.ma, self.mb, self.w)
        idx = np.arange(a0, b0)
        self.ma.setData(x, self.a.mean[idx, self.a.chosen[a0:b0]])
        self.mb.setData(x, self.b.mean[idx, self.b.chosen[a0:b0]])
        self.w.setData(x, self.w1[a0:b0])
        op = self.over.getPlotItem()
        op.setXRange(0, max(1, b0 - a0 - 1), padding=0.01)
        vals = np.concatenate([self.a.mean[idx, self.a.chosen[a0:b0]], self.b.mean[idx, self.b.chosen[a0:b0]],
                               self.w1[a0:b0]])
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo, hi = float(vals.min()), float(vals.max())
            span = max(hi - lo, 1e-3)
            op.setYRange(lo - 0.05 * span, hi + 0.35 * span, padding=0)  # headroom for the legend

    def update_step(self, t: int, t_in_episode: int) -> None:
        if self.a is None:
            return
        ta, tb = int(self.a.chosen[t]), int(self.b.chosen[t])
        xa = self.a.cdf_x[t, ta].copy()
        xb = self.b.cdf_x[t, tb].copy()
        xa[0], xa[-1] = self.x_range
        xb[0], xb[-1] = self.x_range
        self.ca.setData(xa, self.a.cdf_y[t, ta])
        self.cb.setData(xb, self.b.cdf_y[t, tb])
        self.cursor.setValue(t_in_episode)


# ------------------------------------------------------------------------------------------ risk


class RiskPanel(QGroupBox):
    """Alpha slider, distortion choice and parameter; per-action mean, std, VaR, CVaR and the
    distorted value at the current step; how many steps a risk-averse agent would act otherwise."""

    changed = Signal(object)  # RiskSettings

    def __init__(self, parent=None):
        super().__init__("Risk", parent)
        lay = QGridLayout(self)
        self.alpha = QSlider(Qt.Horizontal)
        self.alpha.setRange(1, 100)
        self.alpha.setValue(10)
        self.alpha_label = QLabel("α = 0.10")
        self.dist = QComboBox()
        labels = {"cvar": "CVaR(α)", "wang": "Wang", "cpw": "CPW", "power": "Power", "neutral": "Mean (neutral)"}
        for d in ("cvar", "wang", "cpw", "power", "neutral"):
            self.dist.addItem(labels[d], d)
        self.eta = QDoubleSpinBox()
        self.eta.setRange(-5.0, 5.0)
        self.eta.setSingleStep(0.05)
        self.eta.setDecimals(2)
        self.eta.setEnabled(False)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["action", "mean", "std", "VaR", "CVaR", "risk"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setMinimumHeight(90)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.Stretch)  # fixed widths: new numbers never re-layout the window
        hdr.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        hdr.setMinimumSectionSize(36)
        small = QFont()
        small.setPointSize(8)
        self.table.setFont(small)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        _fixed_lines(self.info, 4)
        lay.addWidget(QLabel("alpha"), 0, 0)
        lay.addWidget(self.alpha, 0, 1)
        lay.addWidget(self.alpha_label, 0, 2)
        lay.addWidget(QLabel("distortion"), 1, 0)
        lay.addWidget(self.dist, 1, 1)
        lay.addWidget(self.eta, 1, 2)
        lay.addWidget(self.table, 2, 0, 1, 3)
        lay.addWidget(self.info, 3, 0, 1, 3)
        self.alpha.valueChanged.connect(self._emit)
        self.dist.currentIndexChanged.connect(self._dist_changed)
        self.eta.valueChanged.connect(self._emit)
        self._rows_built = 0

    def settings(self) -> RiskSettings:
        d = self.dist.currentData()
        a = self.alpha.value() / 100.0
        eta = None if d in ("cvar", "neutral") else float(self.eta.value())
        return RiskSettings(alpha=a, distortion=d, eta=eta)

    def _dist_changed(self):
        from .distributions import DEFAULT_ETA
        d = self.dist.currentData()
        self.eta.blockSignals(True)
        self.eta.setEnabled(d not in ("cvar", "neutral"))
        if d == "cpw":
            self.eta.setRange(0.29, 5.0)
        else:
            self.eta.setRange(-5.0, 5.0)
        self.eta.setValue(DEFAULT_ETA.get(d, 0.0))
        self.eta.blockSignals(False)
        self._emit()

    def _emit(self, *_):
        self.alpha_label.setText(f"α = {self.alpha.value() / 100:.2f}")
        self.changed.emit(self.settings())

    def update_step(self, stats: EpisodeStats, t: int, a0: int, b0: int) -> None:
        rows = stats.summary_rows(t)
        if self._rows_built != len(rows):
            self.table.setRowCount(len(rows))
            for r in range(len(rows)):
                for c in range(6):
                    self.table.setItem(r, c, QTableWidgetItem(""))
            self._rows_built = len(rows)
        taken, greedy, risky = int(stats.chosen[t]), int(stats.greedy[t]), int(stats.risk_action[t])
        for r, row in enumerate(rows):
            marks = ("▶ " if r == taken else "") + row[0]
            self.table.item(r, 0).setText(marks)
            self.table.item(r, 0).setForeground(action_color(r))
            for c in range(1, 6):
                self.table.item(r, c).setText(_fmt(row[c]))
            bold = QFont()
            bold.setBold(r == risky)
            self.table.item(r, 5).setFont(bold)
        n = int(np.sum(stats.disagree[a0:b0]))
        names = stats.traj.action_names
        d = stats.risk.distortion
        self.info.setText(f"taken: {names[taken]} · greedy: {names[greedy]}\n{d}: {names[risky]}\n"
                          f"{d} ≠ greedy at {n} of {b0 - a0} steps\nin this episode")


# ------------------------------------------------------------------------------------------ viewer


class EpisodeViewer(QWidget):
    """Scrub through an episode: frame, each action's distribution, risk panel, and the whole
    episode (timeline, ridge, calibration, compare tabs); export PNG/SVG/GIF/CSV/NPZ."""

    step_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.traj: Trajectory | None = None
        self.stats: EpisodeStats | None = None
        self.compare_stats: EpisodeStats | None = None
        self.episode = 0
        self.bounds = (0, 0)
        self.t = 0

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.title = QLabel("No trajectory")
        f = self.title.font()
        f.setBold(True)
        self.title.setFont(f)
        self.episode_box = QComboBox()
        self.prev_btn = QToolButton(text="◀")
        self.play_btn = QToolButton(text="▶ play")
        self.play_btn.setCheckable(True)
        self.next_btn = QToolButton(text="▶")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setMinimumWidth(200)
        self.spin = QSpinBox()
        self.compare_btn = QPushButton("Compare…")
        self.export_btn = QPushButton("Export")
        menu = QMenu(self)
        menu.addAction("Figure as PNG…", lambda: self._ask_export("png"))
        menu.addAction("Figure as SVG…", lambda: self._ask_export("svg"))
        menu.addAction("Scrubber as animated GIF…", lambda: self._ask_export("gif"))
        menu.addAction("Data as CSV…", lambda: self._ask_export("csv"))
        menu.addAction("Data as NPZ…", lambda: self._ask_export("npz"))
        self.export_btn.setMenu(menu)
        for w in (self.title, QLabel("episode"), self.episode_box, self.prev_btn, self.play_btn, self.next_btn):
            bar.addWidget(w)
        bar.addWidget(self.slider, 1)
        for w in (self.spin, self.compare_btn, self.export_btn):
            bar.addWidget(w)
        outer.addLayout(bar)
        self.issues = QLabel("")
        self.issues.setWordWrap(True)
        self.issues.setStyleSheet("color: #b00020;")
        self.issues.setVisible(False)
        outer.addWidget(self.issues)

        top = QSplitter(Qt.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.frame = FrameView()
        self.step_info = QLabel("")
        self.step_info.setWordWrap(True)
        _fixed_lines(self.step_info, 4)
        ll.addWidget(self.frame, 1)
        ll.addWidget(self.step_info)
        self.step_plots = StepPlots()
        self.risk = RiskPanel()
        self.risk.setMaximumWidth(460)
        self.risk.setMinimumWidth(330)
        top.addWidget(left)
        top.addWidget(self.step_plots)
        top.addWidget(self.risk)
        top.setStretchFactor(0, 2)
        top.setStretchFactor(1, 5)
        top.setStretchFactor(2, 2)
        top.setSizes([260, 820, 400])
        self.tabs = QTabWidget()
        self.timeline = TimelinePlots()
        self.ridges = RidgePlots()
        self.calib = CalibrationPlots()
        self.compare = ComparePlots()
        self.tabs.addTab(self.timeline, "Episode")
        self.tabs.addTab(self.ridges, "Ridge / heat map")
        self.tabs.addTab(self.calib, "Calibration")
        self.tabs.addTab(self.compare, "Compare")
        vsplit = QSplitter(Qt.Vertical)
        vsplit.addWidget(top)
        vsplit.addWidget(self.tabs)
        vsplit.setStretchFactor(0, 1)
        vsplit.setStretchFactor(1, 1)
        outer.addWidget(vsplit, 1)
        self._top = top

        protect_singletons()
        self._guard = QTimer(self)  # keeps the PySide6 6.12 work-around topped up (qtfix.py)
        self._guard.setInterval(5000)
        self._guard.timeout.connect(protect_singletons)
        self._guard.start()
        self.timer = QTimer(self)
        self.timer.setInterval(40)
        self.timer.timeout.connect(self._tick)
        self.slider.valueChanged.connect(self.set_step_in_episode)
        self.spin.valueChanged.connect(self.set_step_in_episode)
        self.prev_btn.clicked.connect(lambda: self.set_step_in_episode(self.t - self.bounds[0] - 1))
        self.next_btn.clicked.connect(lambda: self.set_step_in_episode(self.t - self.bounds[0] + 1))
        self.play_btn.toggled.connect(self._play)
        self.episode_box.currentIndexChanged.connect(self.set_episode)
        self.timeline.step_dragged.connect(self.set_step_in_episode)
        self.risk.changed.connect(self.set_risk)
        self.compare_btn.clicked.connect(self._ask_compare)
        self.setFocusPolicy(Qt.StrongFocus)
        self.resize(1400, 900)

    # -- data ---------------------------------------------------------------------------------
    def set_result(self, result) -> None:
        """Studio viewer entry point: a DistributionSeries (its trajectory file when it exists)."""
        from .tools import series_to_trajectory
        self.set_trajectory(series_to_trajectory(result), title=getattr(result, "label", ""))

    def set_trajectory(self, traj: Trajectory, title: str = "") -> None:
        if traj.dist is None:
            raise ValueError("this trajectory has no return distributions; load an agent to add them")
        self.traj = traj
        self.compare_stats = None
        self.stats = compute_episode_stats(traj, self.risk.settings())
        self.title.setText(title or f"{traj.header.get('algo') or 'agent'} · {traj.env_id or 'unknown env'}")
        errs = [i for i in traj.issues if i.severity == "error"]
        if traj.issues:
            shown = "; ".join(str(i) for i in traj.issues[:4])
            more = f" (and {len(traj.issues) - 4} more)" if len(traj.issues) > 4 else ""
            self.issues.setText(f"{len(errs)} problem(s), {len(traj.issues) - len(errs)} warning(s): {shown}{more}")
            self.issues.setVisible(True)
        else:
            self.issues.setVisible(False)
        self.frame.set_trajectory(traj)
        self.step_plots.set_stats(self.stats)
        try:
            self.calib.set_trajectory(traj)
        except ValueError as e:
            self.calib.warn.setText(str(e))
        self.episode_box.blockSignals(True)
        self.episode_box.clear()
        for e, (a, b) in enumerate(traj.episode_bounds()):
            ret = float(np.nansum(traj.reward[a:b]))
            self.episode_box.addItem(f"{e}  ({b - a} steps, return {ret:g})", e)
        self.episode_box.blockSignals(False)
        self.set_episode(0)

    def set_compare(self, other: Trajectory, labels=("A", "B")) -> None:
        """Show a second agent's (or checkpoint's) distributions on the same steps."""
        if self.traj is None:
            raise ValueError("open a trajectory first")
        if len(other) != len(self.traj):
            raise ValueError(f"the comparison has {len(other)} steps, this trajectory {len(self.traj)}")
        self.compare_stats = compute_episode_stats(other, self.risk.settings())
        self.compare.set_pair(self.stats, self.compare_stats, labels)
        self.compare.set_range(*self.bounds)
        self.compare.update_step(self.t, self.t - self.bounds[0])
        self.tabs.setCurrentWidget(self.compare)

    def set_episode(self, e: int) -> None:
        if self.traj is None:
            return
        bounds = self.traj.episode_bounds()
        e = int(max(0, min(e, len(bounds) - 1)))
        self.episode = e
        self.bounds = bounds[e]
        a, b = self.bounds
        if self.episode_box.currentIndex() != e:
            self.episode_box.blockSignals(True)
            self.episode_box.setCurrentIndex(e)
            self.episode_box.blockSignals(False)
        for w in (self.slider, self.spin):
            w.blockSignals(True)
            w.setRange(0, b - a - 1)
            w.blockSignals(False)
        self.timeline.set_range(self.stats, a, b)
        self.ridges.set_range(self.stats, a, b)
        self.compare.set_range(a, b)
        self.t = -1
        self.set_step_in_episode(0)

    def set_risk(self, risk: RiskSettings) -> None:
        if self.stats is None:
            return
        self.stats.set_risk(risk)
        if self.compare_stats is not None:
            self.compare_stats.set_risk(risk)
        a, b = self.bounds
        self.timeline.update_risk(self.stats, a, b)
        self._redraw()

    # -- scrubbing ------------------------------------------------------------------------------
    def set_step_in_episode(self, i: int) -> None:
        if self.traj is None:
            return
        a, b = self.bounds
        t = int(max(a, min(a + int(i), b - 1)))
        if t == self.t:
            return
        self.t = t
        self._redraw()
        self.step_changed.emit(t)

    def set_step(self, t: int) -> None:
        """Go to global step t (switching episode if needed)."""
        if self.traj is None:
            return
        if not 0 <= int(t) < len(self.traj):
            raise IndexError(f"step {t} is outside the trajectory (0..{len(self.traj) - 1})")
        bounds = self.traj.episode_bounds()
        idx = next(i for i, (a, b) in enumerate(bounds) if a <= t < b)
        if idx != self.episode:
            self.set_episode(idx)
        self.set_step_in_episode(int(t) - self.bounds[0])

    def _redraw(self) -> None:
        st, t = self.stats, self.t
        a, b = self.bounds
        i = t - a
        for w in (self.slider, self.spin):
            if w.value() != i:
                w.blockSignals(True)
                w.setValue(i)
                w.blockSignals(False)
        self.frame.update_step(t)
        self.step_plots.update_step(t)
        self.timeline.update_step(i)
        self.ridges.update_step(i)
        self.compare.update_step(t, i)
        self.risk.update_step(st, t, a, b)
        names = self.traj.action_names
        g = st.mc[t]
        cut = " (cut by time limit)" if st.mc_cut[t] else ""
        valid = "" if st.valid[t] else "  ⚠ invalid distribution at this step"
        self.step_info.setText(f"step {i} of {b - a} (file step {t})\ntaken: {names[int(st.chosen[t])]} · "
                               f"reward {self.traj.reward[t]:g}\nrealised return {_fmt(g)}{cut}\n"
                               f"W₁(predicted, realised) {_fmt(st.w1[t])}{valid}")

    def keyPressEvent(self, ev):
        k = ev.key()
        if k in (Qt.Key_Right, Qt.Key_Period):
            self.set_step_in_episode(self.t - self.bounds[0] + 1)
        elif k in (Qt.Key_Left, Qt.Key_Comma):
            self.set_step_in_episode(self.t - self.bounds[0] - 1)
        elif k == Qt.Key_Home:
            self.set_step_in_episode(0)
        elif k == Qt.Key_End:
            self.set_step_in_episode(self.bounds[1] - self.bounds[0] - 1)
        elif k == Qt.Key_Space:
            self.play_btn.toggle()
        else:
            super().keyPressEvent(ev)

    def _play(self, on: bool) -> None:
        self.play_btn.setText("❚❚ pause" if on else "▶ play")
        (self.timer.start if on else self.timer.stop)()

    def _tick(self) -> None:
        a, b = self.bounds
        if self.t >= b - 1:
            self.play_btn.setChecked(False)
            return
        self.set_step_in_episode(self.t - a + 1)

    # -- compare ----------------------------------------------------------------------------------
    def _ask_compare(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Agent or checkpoint to compare", "",
                                              "Agents (*.json *.safetensors *.cleanrl_model *.zip)")
        if path:
            self.compare_with_agent(path)

    def compare_with_agent(self, path: str) -> None:
        from .loaders import load_agent
        from .record import annotate
        ag = load_agent(path)
        self.set_compare(annotate(self.traj, ag), labels=(self.traj.header.get("algo") or "A", Path(path).stem))

    # -- export ---------------------------------------------------------------------------------
    def _ask_export(self, what: str) -> None:
        filters = {"png": "PNG image (*.png)", "svg": "SVG vector image (*.svg)", "gif": "Animated GIF (*.gif)",
                   "csv": "CSV (*.csv)", "npz": "NumPy archive (*.npz)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"episode.{what}", filters[what])
        if not path:
            return
        if what == "png":
            self.export_png(path)
        elif what == "svg":
            self.export_svg(path)
        elif what == "gif":
            self.export_gif(path)
        elif what == "csv":
            from .episode_stats import export_csv
            export_csv(self._episode_stats(), path)
        else:
            from .episode_stats import export_npz
            export_npz(self._episode_stats(), path)

    def _episode_stats(self) -> EpisodeStats:
        """Stats of the current episode only (what the plots show)."""
        a, b = self.bounds
        return compute_episode_stats(self.traj.slice(a, b), self.stats.risk)

    def figure_widgets(self) -> dict[str, pg.PlotWidget]:
        return {"step-left": self.step_plots.left, "step-cdf": self.step_plots.right, "timeline": self.timeline.main,
                "w1": self.timeline.w1, "heatmap": self.ridges.heat, "ridge": self.ridges.ridge,
                "pit": self.calib.pit, "coverage": self.calib.cov, "compare-cdf": self.compare.cdf,
                "compare-episode": self.compare.over}

    def figure_parts(self) -> list[QWidget]:
        """What a figure shows: the frame and this step's plots, above the open tab's plots."""
        return [[self.frame, self.step_plots], self.tabs.currentWidget()]

    def export_png(self, path: str, width_in: float = 7.0, dpi: int = 300, widget: QWidget | None = None) -> Path:
        """Render the figure (default: :meth:`figure_parts` stacked) at publication size,
        ``width_in`` inches at ``dpi`` (default 2,100 px wide), drawn at that resolution."""
        parts = [widget] if widget is not None else self.figure_parts()
        img = render_stack(parts, int(width_in * dpi))
        img.setDotsPerMeterX(int(dpi / 0.0254))
        img.setDotsPerMeterY(int(dpi / 0.0254))
        if not img.save(str(path)):
            raise OSError(f"could not write {path}")
        return Path(path)

    def export_svg(self, path: str, which: str = "figure") -> list[Path]:
        """Vector SVG of the figure (``which='figure'``), of one plot (a key of
        :meth:`figure_widgets`), or of every plot (``'all'``: files ``<stem>-<plot>.svg``)."""
        widgets = self.figure_widgets()
        p = Path(path)
        if which == "figure":
            return [render_svg(self.figure_parts(), p)]
        names = list(widgets) if which == "all" else [which]
        if any(n not in widgets for n in names):
            raise ValueError(f"unknown plot '{which}'; choose figure, all or one of {', '.join(widgets)}")
        out = []
        for n in names:
            target = p if len(names) == 1 else p.with_name(f"{p.stem}-{n}.svg")
            out.append(render_svg([widgets[n]], target))
        return out

    def _figure_area(self) -> QWidget:
        return self._top

    def export_gif(self, path: str, start: int | None = None, stop: int | None = None, stride: int = 1,
                   fps: float = 20.0, width: int = 900) -> Path:
        """Animated GIF of the scrubber (frame + step plots) over steps [start, stop) of the
        current episode (default: the whole episode)."""
        from PIL import Image
        a, b = self.bounds
        start = 0 if start is None else start
        stop = (b - a) if stop is None else min(stop, b - a)
        frames = []
        keep = self.t - a
        for i in range(start, stop, max(1, stride)):
            protect_singletons()
            self.set_step_in_episode(i)
            img = render_stack([[self.frame, self.step_plots]], width)
            img = img.convertToFormat(QImage.Format_RGB888)
            arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
            arr = arr[:, :img.width() * 3].reshape(img.height(), img.width(), 3)
            frames.append(Image.fromarray(arr.copy()).quantize(colors=128, method=Image.Quantize.MEDIANCUT))
        self.set_step_in_episode(keep)
        if not frames:
            raise ValueError("no steps to export")
        frames[0].save(str(path), save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0,
                       optimize=False)
        return Path(path)


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


def open_viewer(path: str) -> EpisodeViewer:
    """An EpisodeViewer on a trajectory file (ours, or Minari/D4RL once annotated)."""
    from .trajectory import read_any
    v = EpisodeViewer()
    v.set_trajectory(read_any(path), title=Path(path).name)
    return v
