"""The side tabs of the 3D SDF viewer, one class each (Qt view layer).

- :class:`SlicePanel`: a slice plane (x/y/z, movable) as a heat map with the zero level set, at
  once from the baked grid, then refined by evaluating the INR on the plane; also drawn in 3D.
- :class:`RenderPanel`: a sphere-traced render that follows the 3D camera (shaded, normals,
  depth, step cost, error vs a ground truth, or VolSDF volume rendering with a beta slider), its
  size chosen from the measured evaluation rate.
- :class:`InterpolatePanel`: weight-space interpolation between two INRs of one architecture.
- :class:`GalleryPanel`: a folder of INRs as thumbnails rendered on a worker thread.

Each panel owns its background task and reads the field the viewer shows
(:class:`~plugins.inr.view3d.SDFViewer`: ``evaluator``, ``bounds``, ``iso``, ``inside``, ``grid``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QSizePolicy, QSlider, QVBoxLayout, QWidget)

from .view2d import BackgroundTask

if TYPE_CHECKING:
    from .view3d import SDFViewer


def qimage_from_array(img: np.ndarray) -> QImage:
    a = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    h, w = a.shape[:2]
    q = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return q.copy()


class ImageLabel(QLabel):
    """Shows an image scaled to fit, keeping its aspect. It paints the image itself rather than
    holding a pixmap: a label's pixmap sets its size hint, and a new render then resized the
    layout, which changed the 3D view's aspect, which asked for a new render, without end."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._image: QImage | None = None
        self.array: np.ndarray | None = None

    def set_array(self, img: np.ndarray) -> None:
        self.array = img
        self._image = qimage_from_array(img)
        self.setText("")
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self._image is None:
            super().paintEvent(event)
            return
        p = QPainter(self)
        scaled = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x, y = (self.width() - scaled.width()) // 2, (self.height() - scaled.height()) // 2
        p.drawImage(QRectF(x, y, scaled.width(), scaled.height()), self._image)
        p.end()


def _report_failure(viewer: SDFViewer, task: BackgroundTask) -> None:
    task.failed.connect(lambda _token, message: viewer.status.setText(f"Failed: {message}"))


# ---------------------------------------------------------------------------------------- slices


class SlicePanel(QWidget):
    def __init__(self, viewer: SDFViewer):
        super().__init__()
        self.viewer = viewer
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.axis = QComboBox()
        self.axis.addItems(["x", "y", "z"])
        self.axis.setCurrentIndex(2)
        self.axis.currentIndexChanged.connect(lambda *_: self.update_slice())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 200)
        self.slider.setValue(100)
        self.slider.valueChanged.connect(lambda *_: self.update_slice())
        self.show3d = QCheckBox("in 3D")
        self.show3d.setChecked(True)
        self.show3d.toggled.connect(lambda *_: self.update_slice())
        row.addWidget(QLabel("Axis"))
        row.addWidget(self.axis)
        row.addWidget(self.slider, 1)
        row.addWidget(self.show3d)
        self.label = QLabel("")
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.setBackground("#1e1e22")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.contours: list[pg.PlotDataItem] = []
        v.addLayout(row)
        v.addWidget(self.plot, 1)
        v.addWidget(self.label)
        self.data = None  # the slice shown (geometry.Slice)
        self.gl_item = None
        self.task = BackgroundTask(self)
        self.task.done.connect(self._on_slice)
        _report_failure(viewer, self.task)

    def position(self) -> tuple[int, float]:
        axis = self.axis.currentIndex()
        lo, hi = self.viewer.bounds[0, axis], self.viewer.bounds[1, axis]
        return axis, float(lo + (hi - lo) * self.slider.value() / 200.0)

    def update_slice(self) -> None:
        """Slice from the baked grid at once; refine by evaluating the INR on the plane."""
        from .geometry import slice_from_grid

        vw = self.viewer
        if vw.grid is None:
            return
        axis, offset = self.position()
        self._show(slice_from_grid(vw.grid, vw.bounds, axis, offset, vw.iso), exact=False)
        if vw.evaluator is not None:
            ev, bounds, iso = vw.shown_evaluator(), vw.bounds.copy(), vw.iso

            def job(cancel, emit):
                from .geometry import slice_plane

                return slice_plane(ev, bounds, axis=axis, offset=offset, res=160, iso=iso, cancel=cancel)

            self.task.start(job)

    def _on_slice(self, token: int, s) -> None:
        if self.task.is_current(token):
            self._show(s, exact=True)

    def _show(self, s, exact: bool) -> None:
        from .geometry import sdf_colormap

        vw = self.viewer
        self.data = s
        rgb = sdf_colormap(s.values - vw.iso)
        u0, u1, v0, v1 = s.extent
        self.image.setImage(rgb, levels=(0, 255), autoLevels=False)
        self.image.setRect(QRectF(u0, v0, u1 - u0, v1 - v0))
        for c in self.contours:
            self.plot.removeItem(c)
        self.contours = []
        n = s.values.shape[0]
        for c in s.contours:
            xs = u0 + c[:, 1] / (n - 1) * (u1 - u0)
            ys = v0 + c[:, 0] / (n - 1) * (v1 - v0)
            item = pg.PlotDataItem(xs, ys, pen=pg.mkPen((255, 255, 255), width=2))
            self.plot.addItem(item)
            self.contours.append(item)
        inside = float((s.values < vw.iso).mean()) if vw.inside == "negative" else float((s.values > vw.iso).mean())
        self.label.setText(f"{'xyz'[s.axis]} = {s.offset:+.3f}: values {s.values.min():+.3f}..{s.values.max():+.3f}, "
                           f"{len(s.contours)} zero-level curve(s), {inside:.0%} inside "
                           f"({'INR evaluated on the plane' if exact else 'from the baked grid'})")
        self._update_gl_item(rgb, s)

    def _update_gl_item(self, rgb: np.ndarray, s) -> None:
        vw = self.viewer
        if not vw.gl_ok:
            return
        import pyqtgraph.opengl as gl

        if self.gl_item is not None:
            vw.gl_view.removeItem(self.gl_item)
            self.gl_item = None
        if not self.show3d.isChecked():
            return
        # GLImageItem draws data[x, y] on the unit square [0, nx] x [0, ny] of its local xy plane
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 170, np.uint8)], -1)
        data = np.ascontiguousarray(np.transpose(rgba, (1, 0, 2)))  # [u, v]
        item = gl.GLImageItem(data, smooth=True, glOptions="translucent")
        nu, nv = data.shape[:2]
        u0, u1, v0, v1 = s.extent
        item.scale((u1 - u0) / nu, (v1 - v0) / nv, 1)
        item.translate(u0, v0, 0)
        # local (u, v, w) -> world axes
        if s.axis == 2:
            item.translate(0, 0, s.offset)
        elif s.axis == 1:  # u = x, v = z, plane y = offset
            item.rotate(90, 1, 0, 0, local=False)
            item.translate(0, s.offset, 0)
        else:  # u = y, v = z, plane x = offset
            item.rotate(90, 1, 0, 0, local=False)
            item.rotate(90, 0, 0, 1, local=False)
            item.translate(s.offset, 0, 0)
        vw.gl_view.addItem(item)
        self.gl_item = item


# --------------------------------------------------------------------------------- sphere tracing


class RenderPanel(QWidget):
    MODES = ("shaded", "normals", "depth", "cost", "error", "volume (VolSDF)")

    def __init__(self, viewer: SDFViewer):
        super().__init__()
        self.viewer = viewer
        v = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(self.MODES)
        self.mode_combo.currentIndexChanged.connect(lambda *_: self.request_trace())
        self.beta_slider = QSlider(Qt.Orientation.Horizontal)
        self.beta_slider.setRange(0, 100)
        self.beta_slider.setValue(40)
        self.beta_slider.valueChanged.connect(lambda *_: self.request_trace())
        self.follow = QCheckBox("follow the 3D camera")
        self.follow.setChecked(True)
        self.az_slider = QSlider(Qt.Orientation.Horizontal)
        self.az_slider.setRange(-180, 180)
        self.az_slider.setValue(45)
        self.el_slider = QSlider(Qt.Orientation.Horizontal)
        self.el_slider.setRange(-89, 89)
        self.el_slider.setValue(25)
        for s in (self.az_slider, self.el_slider):
            s.valueChanged.connect(lambda *_: self.request_trace())
        render_btn = QPushButton("Render now")
        render_btn.clicked.connect(self.request_trace)
        form.addRow("Mode", self.mode_combo)
        form.addRow("beta (volume)", self.beta_slider)
        form.addRow("", self.follow)
        form.addRow("Azimuth (no GL)", self.az_slider)
        form.addRow("Elevation (no GL)", self.el_slider)
        v.addLayout(form)
        v.addWidget(render_btn)
        self.label = ImageLabel("sphere-traced render")
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        v.addWidget(self.label, 1)
        v.addWidget(self.caption)
        self.image: np.ndarray | None = None  # the last render
        self.info = ""
        self._rays_per_s = 150_000.0
        self._meta = (0, 0, "")
        self._last_cam: dict | None = None
        self.task = BackgroundTask(self)
        self.task.done.connect(self._on_traced)
        _report_failure(viewer, self.task)
        # The camera is checked after the person moved it (a drag released, a wheel turn, a key),
        # not polled: a timer polling it kept the window busy when nothing moved.
        self._cam_timer = QTimer(self)
        self._cam_timer.setSingleShot(True)
        self._cam_timer.setInterval(200)
        self._cam_timer.timeout.connect(self._poll_camera)
        if viewer.gl_ok:
            viewer.gl_view.installEventFilter(self)

    CAMERA_EVENTS = (QEvent.Type.MouseButtonRelease, QEvent.Type.Wheel, QEvent.Type.KeyRelease, QEvent.Type.Resize)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt API
        if ev.type() in self.CAMERA_EVENTS or (ev.type() == QEvent.Type.MouseMove and ev.buttons()):
            self._cam_timer.start()
        return False

    def camera_opts(self) -> dict[str, Any]:
        vw = self.viewer
        if vw.gl_ok and self.follow.isChecked():
            o = vw.gl_view.opts
            c = o["center"]
            return {"center": (c.x(), c.y(), c.z()), "distance": float(o["distance"]),
                    "azimuth": float(o["azimuth"]), "elevation": float(o["elevation"]), "fov": float(o["fov"]),
                    "aspect": max(vw.gl_view.width(), 1) / max(vw.gl_view.height(), 1)}
        return {"center": (0.0, 0.0, 0.0), "distance": 2.6 * float(np.abs(vw.bounds).max()),
                "azimuth": float(self.az_slider.value()), "elevation": float(self.el_slider.value()), "fov": 60.0,
                "aspect": 4 / 3}

    def _poll_camera(self) -> None:
        vw = self.viewer
        if not (vw.gl_ok and self.follow.isChecked() and vw.evaluator is not None):
            return
        opts = self.camera_opts()
        if opts != self._last_cam:
            self._last_cam = opts
            self.request_trace()

    def render_size(self, aspect: float) -> tuple[int, int]:
        """Pixels for the next trace: aim at ~0.8 s from the measured evaluations/s, never below 128 px
        wide (so the image never collapses to a few pixels); up to 480 px with a CUDA evaluator."""
        target_rays = self._rays_per_s * 0.8 / 8  # ~8 evaluations per pixel on average
        w = int(math.sqrt(max(target_rays, 1) * aspect))
        cap = 480 if str(getattr(self.viewer.evaluator, "device", "")).startswith("cuda") else 320
        w = max(128, min(cap, w))
        return w, max(96, int(w / aspect))

    def request_trace(self) -> None:
        vw = self.viewer
        if vw.evaluator is None:
            return
        opts = self.camera_opts()
        w, h = self.render_size(opts["aspect"])
        from .render import Camera

        cam = Camera.orbit(center=opts["center"], distance=opts["distance"], azimuth=opts["azimuth"],
                           elevation=opts["elevation"], fov=opts["fov"], width=w, height=h)
        mode = self.mode_combo.currentText()
        beta = 10 ** (-3 + 2.5 * self.beta_slider.value() / 100)  # 1e-3 .. ~0.3
        ev, bounds, gt = vw.shown_evaluator(), vw.bounds.copy(), vw.ground_truth_sdf
        if mode == "error" and gt is None:
            self.caption.setText("The error mode needs a ground-truth SDF (analytic shapes); showing shaded.")
            mode = "shaded"

        def job(cancel, emit):
            from .render import shade, sphere_trace, volume_render

            t0 = time.perf_counter()
            if mode.startswith("volume"):
                vr = volume_render(ev, cam, beta=beta, samples=48, bounds=bounds, cancel=cancel)
                evals = w * h * 48
                img, extra = vr.image, f"VolSDF beta {beta:.4f}"
            else:
                res = sphere_trace(ev, cam, bounds=bounds, max_steps=64, eps=2e-3, cancel=cancel)
                img, evals = shade(res, mode, gt), res.evaluations
                extra = f"{res.hit.mean():.0%} of rays hit, {res.steps.mean():.1f} steps/pixel"
            return img, time.perf_counter() - t0, evals, extra

        self._meta = (w, h, mode)
        self.task.start(job)

    def _on_traced(self, token: int, value) -> None:
        if not self.task.is_current(token):
            return
        vw = self.viewer
        img, secs, evals, extra = value
        self._rays_per_s = 0.7 * self._rays_per_s + 0.3 * (evals / max(secs, 1e-3))
        w, h, mode = self._meta
        self.image = img
        self.label.set_array(img)
        if not vw.gl_ok:
            vw.fallback_img.set_array(img)
        view_w = vw.gl_view.width() if vw.gl_ok else vw.fallback_img.width()
        scale = w / max(view_w, 1)
        self.info = (f"{mode}: {w}x{h} px (render scale {scale:.0%} of the view), {secs:.2f} s, "
                     f"{evals:,} evaluations ({evals / max(secs, 1e-3):,.0f}/s); {extra}")
        self.caption.setText(self.info)
        vw.trace_done.emit()

    def stop(self) -> None:
        self._cam_timer.stop()


# ----------------------------------------------------------------------------------- interpolation


class InterpolatePanel(QWidget):
    def __init__(self, viewer: SDFViewer):
        super().__init__()
        self.viewer = viewer
        v = QVBoxLayout(self)
        btn = QPushButton("Second INR…")
        btn.clicked.connect(self._browse_second)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(0)
        self.label = QLabel("Pick a second INR of the same architecture, then move the slider: "
                            "weights are mixed linearly, (1 - t) A + t B.")
        self.label.setWordWrap(True)
        v.addWidget(btn)
        v.addWidget(self.slider)
        v.addWidget(self.label)
        v.addStretch(1)
        self.second = None  # the second INR's model
        self.t: float | None = None  # the mix shown
        self.evaluator = None  # the mixed network while 0 < t
        self.task = BackgroundTask(self)
        self.task.done.connect(self._on_interp)
        _report_failure(viewer, self.task)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self.interpolate_now)
        self.slider.valueChanged.connect(lambda *_: self._timer.start())

    def reset(self) -> None:
        self.second, self.evaluator, self.t = None, None, None

    def set_second(self, path_or_model: Any) -> None:
        from .loaders import open_inr
        from .models import interpolate_weights

        vw = self.viewer
        model = open_inr(path_or_model).model if isinstance(path_or_model, (str, Path)) else path_or_model
        if vw.model is None:
            raise ValueError("Open the first INR before the second.")
        interpolate_weights(vw.model, model, 0.0)  # raises with a sentence if architectures differ
        self.second = model
        self.label.setText("Move the slider to morph between the two INRs (linear in weights).")
        self.interpolate_now()

    def interpolate_now(self) -> None:
        vw = self.viewer
        if self.second is None or vw.model is None:
            return
        t = self.slider.value() / 100.0
        a, b, bounds, iso, inside = vw.model, self.second, vw.bounds.copy(), vw.iso, vw.inside
        device = vw.device

        def job(cancel, emit):
            from .fields import TorchEvaluator, bake_grid
            from .geometry import marching_cubes
            from .models import interpolate_weights

            m = interpolate_weights(a, b, t)
            ev = TorchEvaluator(m, device=device)
            grid = bake_grid(ev, bounds, 64, cancel=cancel)
            try:
                mesh = marching_cubes(grid, bounds, iso=iso, inside=inside)
            except ValueError:
                mesh = None
            return t, grid, mesh, ev

        self.task.start(job)

    def _on_interp(self, token: int, value) -> None:
        if not self.task.is_current(token):
            return
        t, grid, mesh, ev = value
        self.t = t
        self.evaluator = ev if 0.0 < t else None  # t = 0 is the first INR itself
        if mesh is None:
            self.label.setText(f"t = {t:.2f}: the mixed field has no surface in the bounds.")
            return
        self.label.setText(f"t = {t:.2f}: {len(mesh.faces):,} faces (64^3 grid)")
        self.viewer.show_field(grid, mesh, 64)

    def _browse_second(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Second INR", "", "INRs (*.json *.safetensors *.pth *.npz)")
        if path:
            try:
                self.set_second(path)
            except Exception as exc:
                self.label.setText(str(exc))


# ----------------------------------------------------------------------------------------- gallery


class GalleryPanel(QWidget):
    def __init__(self, viewer: SDFViewer):
        super().__init__()
        self.viewer = viewer
        v = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(96, 96))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.itemActivated.connect(self._open)
        self.list.itemClicked.connect(self._open)
        v.addWidget(self.list, 1)
        self.paths: list[Path] = []
        self.task = BackgroundTask(self)
        self.task.partial.connect(self._on_thumb)
        _report_failure(viewer, self.task)

    def open_folder(self, folder: str | Path) -> int:
        """List the INRs of a folder as thumbnails (rendered on the worker); returns how many."""
        folder = Path(folder)
        paths = sorted(p for p in folder.glob("*.json") if _is_inr_json(p))
        self.list.clear()
        self.paths = paths
        for p in paths:
            it = QListWidgetItem(p.stem)
            it.setData(Qt.ItemDataRole.UserRole, str(p))
            self.list.addItem(it)
        from app.widgets.compute import view_device

        device = view_device(("torch",))[0]

        def job(cancel, emit):
            from .fields import TorchEvaluator
            from .image2d import render_image
            from .models import load_inr
            from .render import Camera, render

            for i, p in enumerate(paths):
                if cancel.is_set():
                    return None
                try:
                    m = load_inr(p)
                    ev = TorchEvaluator(m, device=device, chunk=16384)
                    if m.config.in_features == 2:
                        img = (render_image(ev, 64, 64) * 255).astype(np.uint8)
                        img = img if img.shape[2] == 3 else np.repeat(img, 3, 2)
                    else:
                        cam = Camera.orbit(distance=3.0, azimuth=45, elevation=25, width=64, height=64)
                        img, _ = render(ev, cam, bounds=m.config.domain(), max_steps=48, eps=3e-3)
                    emit((i, img))
                except Exception:
                    continue
            return None

        self.task.start(job)
        self.viewer.tabs.setCurrentWidget(self)
        return len(paths)

    def _on_thumb(self, token: int, value) -> None:
        if not self.task.is_current(token):
            return
        i, img = value
        it = self.list.item(i)
        if it is not None:
            it.setIcon(QIcon(QPixmap.fromImage(qimage_from_array(img))))
            it.setData(Qt.ItemDataRole.UserRole + 1, True)

    def _open(self, item: QListWidgetItem) -> None:
        vw = self.viewer
        path = item.data(Qt.ItemDataRole.UserRole)
        try:
            from .models import load_inr

            if load_inr(path).config.in_features != 3:
                vw.status.setText(f"{Path(path).name} is a 2D INR; open it in the 2D INR viewer.")
                return
            vw.open_inr(path)
        except Exception as exc:
            vw.status.setText(f"Could not open {Path(path).name}: {exc}")


def _is_inr_json(path: Path) -> bool:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == "implicit-studio-inr"
