"""The denoising-trajectory viewer (Qt view; registered for ``file`` results).

Shows a run's recorded trajectory (the ``.npz`` the text-to-image tool returns): a filmstrip of
the predicted-x0 thumbnails, a step slider with the selected step enlarged, and pyqtgraph curves of
the latent norm and the noise level (sigma) over the run. "Pin for comparison" keeps the current
run as run A; the next trajectory shown becomes run B and both are drawn together, aligned on the
fraction of the run done (so a 10-step and a 25-step run compare), with the per-step difference
of their x0 thumbnails. Files that are not trajectories are described instead.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider, QSpinBox, QSplitter, QVBoxLayout,
    QWidget,
)

from plugins.diffusion_common.sampling import Trajectory, compare_trajectories

THUMB_SCALE = 6
COLOURS = ((80, 170, 255), (255, 140, 60))


def _pixmap(rgb: np.ndarray, scale: int) -> QPixmap:
    arr = np.ascontiguousarray(np.repeat(np.repeat(rgb[:, :, :3], scale, 0), scale, 1))
    h, w = arr.shape[:2]
    img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(img)


def trajectory_from_result(result: Any) -> Optional[Trajectory]:
    """The trajectory in a result (a FileResult with the npz, a Trajectory, a path or bytes), or
    ``None`` when it holds none."""
    if isinstance(result, Trajectory):
        return result
    if isinstance(result, (bytes, bytearray, str)):
        try:
            return Trajectory.from_npz(result)
        except Exception:  # noqa: BLE001 - not a trajectory
            return None
    meta = getattr(result, "metadata", None) or {}
    ext = str(getattr(result, "ext", "") or "")
    if meta.get("role") != "trajectory" and ext != ".npz":
        return None
    try:
        data = result.read_bytes() if hasattr(result, "read_bytes") else None
        return Trajectory.from_npz(data) if data else None
    except Exception:  # noqa: BLE001
        return None


class _Filmstrip(QScrollArea):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.inner = QWidget()
        self.row = QHBoxLayout(self.inner)
        self.row.setContentsMargins(2, 2, 2, 2)
        self.row.setSpacing(3)
        self.setWidget(self.inner)
        self.labels: list[QLabel] = []

    def set_frames(self, frames: np.ndarray, caption: str) -> None:
        while self.row.count():
            item = self.row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.labels = []
        head = QLabel(caption)
        head.setMinimumWidth(70)
        self.row.addWidget(head)
        scale = max(1, min(THUMB_SCALE, 64 // max(frames.shape[1], 1)))
        for i, frame in enumerate(frames):
            lab = QLabel()
            lab.setPixmap(_pixmap(frame, scale))
            lab.setToolTip(f"step {i + 1}")
            lab.setStyleSheet("border: 2px solid transparent;")
            self.row.addWidget(lab)
            self.labels.append(lab)
        self.row.addStretch(1)
        self.setFixedHeight(frames.shape[1] * scale + 24)

    def highlight(self, index: int) -> None:
        for i, lab in enumerate(self.labels):
            lab.setStyleSheet("border: 2px solid #ffb000;" if i == index else "border: 2px solid transparent;")
        if 0 <= index < len(self.labels):
            self.ensureWidgetVisible(self.labels[index])


class TrajectoryViewer(QWidget):
    """Viewer widget: ``set_result(result)`` shows a trajectory; ``pin()`` keeps it as run A for
    comparison with the next one; ``set_compare(a, b)`` shows two runs directly."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        self.current: Optional[Trajectory] = None
        self.pinned: Optional[Trajectory] = None
        self.comparison: Optional[dict] = None

        self.title = QLabel("No trajectory")
        self.title.setWordWrap(True)
        self.pin_button = QPushButton("Pin for comparison")
        self.pin_button.clicked.connect(self.pin)
        self.unpin_button = QPushButton("Clear comparison")
        self.unpin_button.clicked.connect(self.unpin)
        self.open_button = QPushButton("Open .npz…")
        self.open_button.clicked.connect(self._open_file)
        self.image_index = QSpinBox()
        self.image_index.setPrefix("image ")
        self.image_index.setMinimum(0)
        self.image_index.valueChanged.connect(lambda _v: self._refresh())
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        for w in (self.image_index, self.pin_button, self.unpin_button, self.open_button):
            top.addWidget(w)

        self.strip_a = _Filmstrip()
        self.strip_b = _Filmstrip()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        self.slider.valueChanged.connect(self._on_step)
        self.step_label = QLabel()
        self.big_a = QLabel()
        self.big_b = QLabel()
        for lab in (self.big_a, self.big_b):
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setMinimumSize(128, 128)
        bigs = QHBoxLayout()
        bigs.addWidget(self.big_a)
        bigs.addWidget(self.big_b)

        self.plots = pg.GraphicsLayoutWidget()
        self.norm_plot = self.plots.addPlot(row=0, col=0, title="latent norm")
        self.sigma_plot = self.plots.addPlot(row=0, col=1, title="noise level (sigma)")
        self.diff_plot = self.plots.addPlot(row=0, col=2, title="x0 difference A vs B")
        self.sigma_plot.setLogMode(y=True)
        for p in (self.norm_plot, self.sigma_plot, self.diff_plot):
            p.setLabel("bottom", "fraction of run")
            p.showGrid(x=True, y=True, alpha=0.3)
        self.cursors = [pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((255, 176, 0), width=1))
                        for _ in range(3)]
        for p, c in zip((self.norm_plot, self.sigma_plot, self.diff_plot), self.cursors):
            p.addItem(c)

        upper = QWidget()
        up = QVBoxLayout(upper)
        up.setContentsMargins(0, 0, 0, 0)
        up.addLayout(top)
        up.addWidget(self.strip_a)
        up.addWidget(self.strip_b)
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.step_label)
        up.addLayout(row)
        up.addLayout(bigs)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(self.plots)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(split)
        self._refresh()

    # -- public API ---------------------------------------------------------------------------
    @classmethod
    def accepts(cls, result: Any) -> bool:
        """The window gives this viewer only the file results that hold a denoising trajectory
        (an INR's weights or an RL trajectory go to their own viewers)."""
        meta = getattr(result, "metadata", None) or {}
        return meta.get("role") == "trajectory"

    def set_result(self, result: Any) -> None:
        tr = trajectory_from_result(result)
        if tr is None:
            label = getattr(result, "label", "") or ""
            ext = getattr(result, "ext", "") or ""
            self.current = None
            self.title.setText(f"{label or 'This file'} ({ext or 'file'}) is not a denoising trajectory; "
                               "export it to open it with another program.")
            self._refresh()
            return
        self.current = tr
        self._refresh()

    def set_trajectory(self, trajectory: Trajectory) -> None:
        self.current = trajectory
        self._refresh()

    def set_compare(self, a: Trajectory, b: Trajectory) -> None:
        self.pinned, self.current = a, b
        self._refresh()

    def pin(self) -> None:
        if self.current is not None:
            self.pinned = self.current
            self._refresh()

    def unpin(self) -> None:
        self.pinned = None
        self._refresh()

    # -- internals ----------------------------------------------------------------------------
    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open trajectory", "", "Trajectories (*.npz)")
        if path:
            tr = trajectory_from_result(path)
            if tr is not None:
                self.set_trajectory(tr)

    def _describe(self, tr: Trajectory, tag: str) -> str:
        m = tr.meta
        return (f"{tag}: {m.get('scheduler', '?')}, {tr.steps} steps, guidance {m.get('guidance', '?')}, "
                f"{m.get('backend', '?')}; {', '.join(tr.labels[:4])}; \u201c{str(m.get('prompt', ''))[:60]}\u201d")

    def _refresh(self) -> None:
        import pyqtgraph as pg

        tr, pinned = self.current, self.pinned
        self.pin_button.setEnabled(tr is not None)
        self.unpin_button.setEnabled(pinned is not None)
        for p in (self.norm_plot, self.sigma_plot, self.diff_plot):
            for item in list(p.listDataItems()):
                p.removeItem(item)
        if tr is None:
            self.strip_a.setVisible(False)
            self.strip_b.setVisible(False)
            self.slider.setEnabled(False)
            self.comparison = None
            return
        self.image_index.blockSignals(True)
        self.image_index.setMaximum(max(tr.batch - 1, 0))
        self.image_index.blockSignals(False)
        idx = min(self.image_index.value(), max(tr.batch - 1, 0))
        runs = [(tr, idx, "B" if pinned is not None else "run")]
        if pinned is not None:
            runs.insert(0, (pinned, 0, "A"))
        self.title.setText("\n".join(self._describe(t, tag) for t, _i, tag in runs))
        strips = [self.strip_a, self.strip_b]
        for k, (t, i, tag) in enumerate(runs):
            strips[k].setVisible(True)
            strips[k].set_frames(t.thumbnails[:, i], tag)
            x = (np.arange(t.steps) + 1) / t.steps
            pen = pg.mkPen(COLOURS[k], width=2)
            self.norm_plot.plot(x, t.latent_norm[:, i], pen=pen, symbol="o", symbolSize=4, name=tag)
            sig = np.where(np.asarray(t.sigmas) > 0, t.sigmas, np.nan)
            self.sigma_plot.plot(x, sig, pen=pen, symbol="o", symbolSize=4, name=tag)
        if len(runs) == 1:
            self.strip_b.setVisible(False)
        self.comparison = None
        self.diff_plot.setVisible(pinned is not None)
        if pinned is not None:
            try:
                self.comparison = compare_trajectories(pinned, tr, 0, idx)
                self.diff_plot.plot(self.comparison["progress"], self.comparison["thumb_diff"],
                                    pen=pg.mkPen((220, 220, 220), width=2), symbol="o", symbolSize=4)
            except ValueError as exc:
                self.title.setText(self.title.text() + f"\n(no step comparison: {exc})")
        self.slider.setEnabled(True)
        self.slider.blockSignals(True)
        self.slider.setMaximum(tr.steps - 1)
        self.slider.setValue(min(self.slider.value(), tr.steps - 1))
        self.slider.blockSignals(False)
        self._on_step(self.slider.value())

    def _on_step(self, step: int) -> None:
        tr = self.current
        if tr is None:
            return
        idx = min(self.image_index.value(), max(tr.batch - 1, 0))
        frac = (step + 1) / tr.steps
        self.step_label.setText(f"step {step + 1}/{tr.steps}  t={tr.timesteps[step]:.0f}  "
                                f"sigma={tr.sigmas[step]:.3g}")
        for c in self.cursors:
            c.setValue(frac)
        scale = max(1, 128 // max(tr.thumbnails.shape[2], 1))
        if self.pinned is not None:
            a = self.pinned
            sa = int(np.clip(round(frac * a.steps) - 1, 0, a.steps - 1))
            self.big_a.setPixmap(_pixmap(a.thumbnails[sa, 0], max(1, 128 // max(a.thumbnails.shape[2], 1))))
            self.big_a.setToolTip(f"A, step {sa + 1}/{a.steps}")
            self.big_b.setPixmap(_pixmap(tr.thumbnails[step, idx], scale))
            self.big_b.setVisible(True)
            self.strip_a.highlight(sa)
            self.strip_b.highlight(step)
        else:
            self.big_a.setPixmap(_pixmap(tr.thumbnails[step, idx], scale))
            self.big_b.setVisible(False)
            self.strip_a.highlight(step)
