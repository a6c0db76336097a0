"""The plots of :class:`~plugins.rl.views.EpisodeViewer`, one class per panel: the environment
frame, the step plots (the return distribution and its quantiles at the current step), the
timeline, the ridge plot, calibration, the comparison of two agents, and the risk settings. Each
is built once and then only updated (``update_step``), from
:class:`~plugins.rl.episode_stats.EpisodeStats`."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .distributions import CATEGORICAL
from .episode_stats import BAND_LEVELS, EpisodeStats, RiskSettings, compare_w1
from .plot_style import (GRID_ALPHA, INK, PALETTE, action_color, cache_axes, cache_static, fixed_lines, fmt_number,
                         make_plot_widget, sequential_lut, set_downsample, style_plot)
from .trajectory import Trajectory, calibration


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
        self.img.setLookupTable(sequential_lut())
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
        # empty, the axes still say what they will hold: a probability from 0 to 1 (pyqtgraph's
        # automatic range of no data ran from -0.4 to 0.4)
        cp.setYRange(0, 1.02, padding=0)
        cp.setXRange(0, 1, padding=0)
        self.note.setPos(0.5, 0.5)
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
        fixed_lines(self.info, 4)
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
                self.table.item(r, c).setText(fmt_number(row[c]))
            bold = QFont()
            bold.setBold(r == risky)
            self.table.item(r, 5).setFont(bold)
        n = int(np.sum(stats.disagree[a0:b0]))
        names = stats.traj.action_names
        d = stats.risk.distortion
        self.info.setText(f"taken: {names[taken]} · greedy: {names[greedy]}\n{d}: {names[risky]}\n"
                          f"{d} ≠ greedy at {n} of {b0 - a0} steps\nin this episode")
