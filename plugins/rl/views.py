"""Qt views of return distributions along an episode (PySide6 + pyqtgraph).

:class:`EpisodeViewer` is the studio viewer for ``distribution`` results (``set_result``) and
takes trajectories directly (``set_trajectory``). Everything drawn comes from
:class:`~plugins.rl.episode_stats.EpisodeStats`, computed once; scrubbing only calls ``setData`` /
``setValue`` on items made once (``StepPlots.update_step``), never rebuilds them
(``StepPlots.rebuild`` exists only so the benchmark can compare).

Plots are drawn on white with dark axes, a colour-blind-safe palette (Okabe & Ito) and
anti-aliased lines so exported figures are ready for papers. The panels are
:mod:`plugins.rl.episode_plots`, their look :mod:`plugins.rl.plot_style`, figure export
:mod:`plugins.rl.figure_export`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QMenu, QPushButton, QSlider, QSpinBox,
                               QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from .episode_plots import (CalibrationPlots, ComparePlots, FrameView, RidgePlots, RiskPanel, StepPlots,
                            TimelinePlots)
from .episode_stats import EpisodeStats, RiskSettings, compute_episode_stats
from .figure_export import render_stack, render_svg
from .plot_style import fixed_lines, fmt_number
from .qtfix import protect_singletons
from .trajectory import Trajectory

protect_singletons()  # PySide6 6.12 reference leak; see qtfix.py




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
        fixed_lines(self.step_info, 4)
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
        traj = series_to_trajectory(result)
        label = getattr(result, "label", "") or ""
        # the bar already says "episode": a result labelled "episode" adds nothing to the title
        extra = f" · {label}" if label and label.lower() not in ("episode", "episodes", "trajectory") else ""
        self.set_trajectory(traj, title=f"{self._default_title(traj)}{extra}")

    @staticmethod
    def _default_title(traj: Trajectory) -> str:
        return f"{traj.header.get('algo') or 'agent'} · {traj.env_id or 'unknown env'}"

    def set_trajectory(self, traj: Trajectory, title: str = "") -> None:
        if traj.dist is None:
            raise ValueError("this trajectory has no return distributions; load an agent to add them")
        self.traj = traj
        self.compare_stats = None
        self.stats = compute_episode_stats(traj, self.risk.settings())
        self.title.setText(title or self._default_title(traj))
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
                               f"reward {self.traj.reward[t]:g}\nrealised return {fmt_number(g)}{cut}\n"
                               f"W₁(predicted, realised) {fmt_number(st.w1[t])}{valid}")

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


def open_viewer(path: str) -> EpisodeViewer:
    """An EpisodeViewer on a trajectory file (ours, or Minari/D4RL once annotated)."""
    from .trajectory import read_any
    v = EpisodeViewer()
    v.set_trajectory(read_any(path), title=Path(path).name)
    return v
