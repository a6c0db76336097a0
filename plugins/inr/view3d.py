"""3D SDF viewer (Qt view layer).

* The field is baked progressively on a worker thread (32^3 -> 64^3 -> 128^3, refining only near
  the surface, cached by weights hash, bounds and resolution) and meshed by marching cubes with
  outward faces; each level replaces the mesh, so a first view appears quickly.
* pyqtgraph ``GLViewWidget`` with orbit/zoom/pan, shaded or normal-coloured; without OpenGL the
  sphere-traced image takes its place and a message says why.
* Slice plane (x/y/z, movable) as a heat map with the zero level set, also drawn in the 3D view.
* Sphere-traced render that follows the 3D camera (shaded, normals, depth, step cost, error vs a
  ground truth, or VolSDF volume rendering with a beta slider), its render size and cost shown.
* Weight-space interpolation between two INRs of one architecture; a gallery of a folder of INRs;
  Chamfer distance / normal consistency against a reference mesh; export OBJ/PLY/STL.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .view2d import BackgroundTask

BACKGROUND = (30, 30, 36)


def opengl_available() -> tuple[bool, str]:
    """Whether a desktop OpenGL context can be created on this Qt platform, and why not."""
    from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

    app = QGuiApplication.instance()
    platform = app.platformName() if app is not None else "?"
    if platform in ("offscreen", "minimal"):
        return False, f"the Qt platform '{platform}' provides no OpenGL context"
    ctx = QOpenGLContext()
    if not ctx.create():
        return False, "no OpenGL context could be created (no GPU driver or software renderer)"
    surf = QOffscreenSurface()
    surf.create()
    ok = ctx.makeCurrent(surf)
    if ok:
        ctx.doneCurrent()
        return True, ""
    return False, "an OpenGL context was created but could not be made current"


def qimage_from_array(img: np.ndarray) -> QImage:
    a = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    h, w = a.shape[:2]
    q = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return q.copy()


class _ImageLabel(QLabel):
    """Shows an image scaled to fit, keeping its aspect."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(120, 120)
        self._pix: QPixmap | None = None
        self.array: np.ndarray | None = None

    def set_array(self, img: np.ndarray) -> None:
        self.array = img
        self._pix = QPixmap.fromImage(qimage_from_array(img))
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pix is not None:
            self.setPixmap(self._pix.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.FastTransformation))


class SDFViewer(QWidget):
    """Viewer for mesh results of SDF INRs and for INR files (see the module docstring)."""

    mesh_changed = Signal(int)  # resolution of the mesh now shown
    trace_done = Signal()

    def __init__(self, parent: QWidget | None = None, use_gl: bool | None = None):
        super().__init__(parent)
        self.model = None
        self.evaluator = None
        self.config = None
        self.bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
        self.iso = 0.0
        self.inside = "negative"
        self.grid: np.ndarray | None = None
        self.mesh = None  # geometry.Mesh
        self.reference = None  # trimesh of the reference shape
        self.ground_truth_sdf = None
        self.second = None  # second INR for interpolation
        self.metrics: dict[str, float] = {}
        self.levels_done: list[tuple[int, float, bool]] = []
        self.chamfer_samples = 20000
        self.trace_image: np.ndarray | None = None
        self.trace_info = ""
        if use_gl is None:
            use_gl, why = opengl_available()
        else:
            why = "OpenGL disabled by the caller"
        self.gl_ok = bool(use_gl)
        self.gl_reason = why
        self._build_ui()
        self.bake_task = BackgroundTask(self)
        self.bake_task.partial.connect(self._on_level)
        self.bake_task.done.connect(self._on_bake_done)
        self.bake_task.failed.connect(self._on_failed)
        self.trace_task = BackgroundTask(self)
        self.trace_task.done.connect(self._on_traced)
        self.trace_task.failed.connect(self._on_failed)
        self.slice_task = BackgroundTask(self)
        self.slice_task.done.connect(self._on_slice)
        self.slice_task.failed.connect(self._on_failed)
        self.interp_task = BackgroundTask(self)
        self.interp_task.done.connect(self._on_interp)
        self.interp_task.failed.connect(self._on_failed)
        self.gallery_task = BackgroundTask(self)
        self.gallery_task.partial.connect(self._on_thumb)
        self.gallery_task.failed.connect(self._on_failed)
        self._rays_per_s = 150_000.0
        self._last_cam = None
        self._cam_timer = QTimer(self)
        self._cam_timer.setInterval(250)
        self._cam_timer.timeout.connect(self._poll_camera)
        self._cam_timer.start()
        self._interp_timer = QTimer(self)
        self._interp_timer.setSingleShot(True)
        self._interp_timer.setInterval(150)
        self._interp_timer.timeout.connect(self._interpolate_now)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.status = QLabel("Open an SDF INR, or show a mesh result fitted by inr-fit-sdf.")
        self.status.setWordWrap(True)
        open_btn = QPushButton("Open INR…")
        open_btn.clicked.connect(self._browse)
        folder_btn = QPushButton("Gallery folder…")
        folder_btn.clicked.connect(self._browse_folder)
        self.res_combo = QComboBox()
        for r in (64, 128, 192, 256, 384, 512):
            self.res_combo.addItem(f"{r}^3", r)
        self.res_combo.setCurrentIndex(1)
        self.res_combo.currentIndexChanged.connect(self._on_resolution)
        self.color_combo = QComboBox()
        self.color_combo.addItems(["shaded", "normals"])
        self.color_combo.currentIndexChanged.connect(lambda *_: self._update_mesh_item())
        export_btn = QPushButton("Export mesh…")
        export_btn.clicked.connect(self._export_dialog)
        bar = QHBoxLayout()
        for w in (open_btn, folder_btn, QLabel("Grid:"), self.res_combo, QLabel("Colour:"), self.color_combo, export_btn):
            bar.addWidget(w)
        bar.addStretch(1)

        self.view_stack = QStackedWidget()
        self.gl_view = None
        self.mesh_item = None
        self.slice_item = None
        if self.gl_ok:
            import pyqtgraph.opengl as gl

            self.gl_view = gl.GLViewWidget()
            self.gl_view.setBackgroundColor(BACKGROUND)
            self.gl_view.setCameraPosition(distance=2.6, elevation=25, azimuth=45)
            grid = gl.GLGridItem()
            grid.setSize(2, 2)
            grid.setSpacing(0.25, 0.25)
            grid.translate(0, 0, -1)
            self.gl_view.addItem(grid)
            self.view_stack.addWidget(self.gl_view)
        self.fallback = QWidget()
        fl = QVBoxLayout(self.fallback)
        self.fallback_msg = QLabel(f"OpenGL is not available ({self.gl_reason}); showing the sphere-traced render instead.")
        self.fallback_msg.setWordWrap(True)
        self.fallback_img = _ImageLabel()
        fl.addWidget(self.fallback_msg)
        fl.addWidget(self.fallback_img, 1)
        self.view_stack.addWidget(self.fallback)
        self.view_stack.setCurrentWidget(self.gl_view if self.gl_ok else self.fallback)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._slice_tab(), "Slice")
        self.tabs.addTab(self._render_tab(), "Render")
        self.tabs.addTab(self._interp_tab(), "Interpolate")
        self.tabs.addTab(self._gallery_tab(), "Gallery")
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.tabs.addTab(self._wrap(self.metrics_label), "Metrics")

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view_stack)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)

    @staticmethod
    def _wrap(w: QWidget) -> QWidget:
        box = QWidget()
        v = QVBoxLayout(box)
        v.addWidget(w)
        v.addStretch(1)
        return box

    def _slice_tab(self) -> QWidget:
        box = QWidget()
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.slice_axis = QComboBox()
        self.slice_axis.addItems(["x", "y", "z"])
        self.slice_axis.setCurrentIndex(2)
        self.slice_axis.currentIndexChanged.connect(lambda *_: self.update_slice())
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.slice_slider.setRange(0, 200)
        self.slice_slider.setValue(100)
        self.slice_slider.valueChanged.connect(lambda *_: self.update_slice())
        self.slice_show3d = QCheckBox("in 3D")
        self.slice_show3d.setChecked(True)
        self.slice_show3d.toggled.connect(lambda *_: self.update_slice())
        row.addWidget(QLabel("Axis"))
        row.addWidget(self.slice_axis)
        row.addWidget(self.slice_slider, 1)
        row.addWidget(self.slice_show3d)
        self.slice_label = QLabel("")
        self.slice_plot = pg.PlotWidget()
        self.slice_plot.setAspectLocked(True)
        self.slice_plot.setBackground("#1e1e22")
        self.slice_img = pg.ImageItem(axisOrder="row-major")
        self.slice_plot.addItem(self.slice_img)
        self.slice_contours: list[pg.PlotDataItem] = []
        v.addLayout(row)
        v.addWidget(self.slice_plot, 1)
        v.addWidget(self.slice_label)
        self.slice_data = None
        return box

    def _render_tab(self) -> QWidget:
        box = QWidget()
        v = QVBoxLayout(box)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["shaded", "normals", "depth", "cost", "error", "volume (VolSDF)"])
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
        self.trace_label = _ImageLabel("sphere-traced render")
        self.trace_caption = QLabel("")
        self.trace_caption.setWordWrap(True)
        v.addWidget(self.trace_label, 1)
        v.addWidget(self.trace_caption)
        return box

    def _interp_tab(self) -> QWidget:
        box = QWidget()
        v = QVBoxLayout(box)
        btn = QPushButton("Second INR…")
        btn.clicked.connect(self._browse_second)
        self.interp_slider = QSlider(Qt.Orientation.Horizontal)
        self.interp_slider.setRange(0, 100)
        self.interp_slider.setValue(0)
        self.interp_slider.valueChanged.connect(lambda *_: self._interp_timer.start())
        self.interp_label = QLabel("Pick a second INR of the same architecture, then move the slider: "
                                   "weights are mixed linearly, (1 - t) A + t B.")
        self.interp_label.setWordWrap(True)
        v.addWidget(btn)
        v.addWidget(self.interp_slider)
        v.addWidget(self.interp_label)
        v.addStretch(1)
        return box

    def _gallery_tab(self) -> QWidget:
        box = QWidget()
        v = QVBoxLayout(box)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(96, 96))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.itemActivated.connect(self._gallery_open)
        self.gallery.itemClicked.connect(self._gallery_open)
        v.addWidget(self.gallery, 1)
        self.gallery_paths: list[Path] = []
        return box

    # ------------------------------------------------------------------ inputs
    def set_result(self, result: Any) -> None:
        meta = getattr(result, "metadata", {}) or {}
        from .geometry import Mesh

        verts = getattr(result, "vertices", None)
        if verts is not None:
            faces = np.asarray(result.faces, np.int32)
            normals = result.normals if getattr(result, "normals", None) is not None else None
            from .geometry import _vertex_normals

            v = np.asarray(verts, np.float32)
            self.mesh = Mesh(v, faces, np.asarray(normals, np.float32) if normals is not None else _vertex_normals(v, faces))
            self._update_mesh_item()
        if meta.get("inr"):
            gt = None
            from .geometry import SHAPES, analytic_sdf

            if meta.get("source") in SHAPES:  # fitted to an analytic shape: the error mode has ground truth
                gt = analytic_sdf(meta["source"])
            try:
                self.open_inr(meta["inr"], reference_mesh=meta.get("reference_mesh"), ground_truth_sdf=gt)
            except Exception as exc:
                self.status.setText(f"The mesh is shown, but its INR could not be opened: {exc}")
        else:
            self.status.setText("Mesh shown (no INR attached: slices and renders need one).")

    def open_inr(self, path_or_model: Any, reference_mesh: Any = None, ground_truth_sdf=None) -> None:
        """Open an SDF INR (path or model) and start baking it progressively."""
        from .fields import make_evaluator
        from .loaders import open_inr

        if isinstance(path_or_model, (str, Path)):
            loaded = open_inr(path_or_model)
            model, cfg = loaded.model, loaded.config
            name = Path(path_or_model).name
            note = f" Architecture guessed: {loaded.guess.summary()}" if loaded.guess is not None else ""
        else:
            model, cfg, name, note = path_or_model, path_or_model.config, path_or_model.config.arch, ""
        if cfg.in_features != 3:
            raise ValueError(f"{name} maps {cfg.in_features}-D points; the 3D viewer shows 3D fields.")
        self.model, self.config = model, cfg
        self.bounds = cfg.domain()
        self.iso = float(cfg.iso_level)
        self.inside = "positive" if cfg.kind in ("occupancy", "density") else "negative"
        self.evaluator = make_evaluator(model, backend="auto") if hasattr(model, "parameters") else model
        self.ground_truth_sdf = ground_truth_sdf
        self.reference = None
        if reference_mesh is not None:
            from .geometry import load_mesh

            self.reference = load_mesh(reference_mesh) if isinstance(reference_mesh, (str, Path)) else reference_mesh
        self.metrics = {}
        self.interp_evaluator = None
        self.second = None
        self.status.setText(f"{name}: {cfg.arch}, evaluated with {getattr(self.evaluator, 'backend', '?')}.{note}")
        self.bake()

    def resolution(self) -> int:
        return int(self.res_combo.currentData())

    def bake(self) -> None:
        """Bake the field progressively up to the chosen resolution on the worker thread."""
        from .fields import GridCache, GridTooLarge, check_grid_memory

        if self.evaluator is None:
            return
        res = self.resolution()
        try:
            _, warn = check_grid_memory(res)
        except GridTooLarge as exc:
            self.status.setText(str(exc))
            return
        if warn:
            self.status.setText(warn)
        from .models import weights_hash

        key = weights_hash(self.model) if hasattr(self.model, "state_dict") else None
        levels = sorted({r for r in (32, 64, 128, 256) if r < res} | {res})
        ev, bounds, iso, inside, ref = self.evaluator, self.bounds.copy(), self.iso, self.inside, self.reference
        n_chamfer = self.chamfer_samples
        self.levels_done = []

        def job(cancel: threading.Event, emit):
            from .fields import bake_progressive
            from .geometry import chamfer_and_normals, marching_cubes

            cache = GridCache() if key else None
            mesh = None
            for level in bake_progressive(ev, bounds, levels, iso=iso, cache=cache, weights_key=key, cancel=cancel):
                try:
                    mesh = marching_cubes(level.grid, bounds, iso=iso, inside=inside)
                except ValueError as exc:
                    raise ValueError(f"{exc}") from None
                emit((level.resolution, level.grid, mesh, level.seconds, level.from_cache, level.evaluated))
            metrics = chamfer_and_normals(mesh, ref, n=n_chamfer) if ref is not None and mesh is not None else {}
            return metrics

        self.bake_task.start(job)

    def _on_level(self, token: int, value) -> None:
        if not self.bake_task.is_current(token):
            return
        res, grid, mesh, seconds, cached, evaluated = value
        self.grid, self.mesh = grid, mesh
        self.levels_done.append((res, seconds, cached))
        self._update_mesh_item()
        self.update_slice()
        done = ", ".join(f"{r}^3 {'cache' if c else f'{s:.2f} s'}" for r, s, c in self.levels_done)
        self.status.setText(f"Baked {done}; {len(mesh.faces):,} faces ({evaluated:,} points evaluated at {res}^3).")
        self.mesh_changed.emit(res)
        if res == self.levels_done[0][0]:
            self.request_trace()

    def _on_bake_done(self, token: int, metrics) -> None:
        if not self.bake_task.is_current(token):
            return
        self.metrics = dict(metrics or {})
        self._update_metrics()
        self.request_trace()

    def _on_failed(self, token: int, message: str) -> None:
        self.status.setText(f"Failed: {message}")

    def _on_resolution(self, *_):
        self.bake()

    # ------------------------------------------------------------------ mesh display
    def _update_mesh_item(self) -> None:
        if self.mesh is None or not self.gl_ok:
            return
        import pyqtgraph.opengl as gl

        m = self.mesh
        shaded = self.color_combo.currentText() == "shaded"
        shader = "shaded" if shaded else "normalColor"
        # Measured with pyqtgraph 0.14 under Mesa: its 'shaded' shader lights normals that point
        # away from the viewer (light vector (1, -1, -1) in eye space), so outward-wound faces come
        # out almost black. The mesh itself stays outward (exports, metrics); only the copy handed to
        # that shader is wound the other way. 'normalColor' gets the true outward winding.
        faces = m.faces[:, ::-1] if shaded else m.faces
        md = gl.MeshData(vertexes=m.vertices, faces=np.ascontiguousarray(faces))
        if self.mesh_item is None:
            self.mesh_item = gl.GLMeshItem(meshdata=md, smooth=True, shader=shader, color=(0.75, 0.78, 0.88, 1.0),
                                           glOptions="opaque")
            self.gl_view.addItem(self.mesh_item)
        else:
            self.mesh_item.setMeshData(meshdata=md, smooth=True)
            self.mesh_item.setShader(shader)

    def _update_metrics(self) -> None:
        lines = []
        if self.mesh is not None:
            lines.append(f"mesh: {len(self.mesh.vertices):,} vertices, {len(self.mesh.faces):,} faces")
        if self.metrics:
            lines.append(f"Chamfer distance vs reference: {self.metrics['chamfer']:.5f}")
            lines.append(f"normal consistency: {self.metrics['normal_consistency']:.4f}")
        elif self.reference is None:
            lines.append("No reference mesh: Chamfer distance not computed.")
        self.metrics_label.setText("\n".join(lines))

    def export_mesh(self, path: str | Path) -> Path:
        from .geometry import export_mesh

        if self.mesh is None:
            raise ValueError("There is no mesh to export yet.")
        return export_mesh(self.mesh, path)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export mesh", "mesh.ply", "Meshes (*.ply *.obj *.stl)")
        if path:
            try:
                self.status.setText(f"Wrote {self.export_mesh(path)}")
            except Exception as exc:
                self.status.setText(f"Export failed: {exc}")

    # ------------------------------------------------------------------ slices
    def slice_position(self) -> tuple[int, float]:
        axis = self.slice_axis.currentIndex()
        lo, hi = self.bounds[0, axis], self.bounds[1, axis]
        return axis, float(lo + (hi - lo) * self.slice_slider.value() / 200.0)

    def update_slice(self) -> None:
        """Slice from the baked grid at once; refine by evaluating the INR on the plane."""
        from .geometry import slice_from_grid

        if self.grid is None:
            return
        axis, offset = self.slice_position()
        self._show_slice(slice_from_grid(self.grid, self.bounds, axis, offset, self.iso), exact=False)
        if self.evaluator is not None:
            ev, bounds, iso = self.shown_evaluator(), self.bounds.copy(), self.iso

            def job(cancel, emit):
                from .geometry import slice_plane

                return slice_plane(ev, bounds, axis=axis, offset=offset, res=160, iso=iso, cancel=cancel)

            self.slice_task.start(job)

    def _on_slice(self, token: int, s) -> None:
        if self.slice_task.is_current(token):
            self._show_slice(s, exact=True)

    def _show_slice(self, s, exact: bool) -> None:
        from .geometry import sdf_colormap

        self.slice_data = s
        rgb = sdf_colormap(s.values - self.iso)
        u0, u1, v0, v1 = s.extent
        from PySide6.QtCore import QRectF

        self.slice_img.setImage(rgb, levels=(0, 255), autoLevels=False)
        self.slice_img.setRect(QRectF(u0, v0, u1 - u0, v1 - v0))
        for c in self.slice_contours:
            self.slice_plot.removeItem(c)
        self.slice_contours = []
        n = s.values.shape[0]
        for c in s.contours:
            xs = u0 + c[:, 1] / (n - 1) * (u1 - u0)
            ys = v0 + c[:, 0] / (n - 1) * (v1 - v0)
            item = pg.PlotDataItem(xs, ys, pen=pg.mkPen((255, 255, 255), width=2))
            self.slice_plot.addItem(item)
            self.slice_contours.append(item)
        names = "xyz"
        inside = float((s.values < self.iso).mean()) if self.inside == "negative" else float((s.values > self.iso).mean())
        self.slice_label.setText(f"{names[s.axis]} = {s.offset:+.3f}: values {s.values.min():+.3f}..{s.values.max():+.3f}, "
                                 f"{len(s.contours)} zero-level curve(s), {inside:.0%} inside "
                                 f"({'INR evaluated on the plane' if exact else 'from the baked grid'})")
        self._update_slice_item(rgb, s)

    def _update_slice_item(self, rgb: np.ndarray, s) -> None:
        if not self.gl_ok:
            return
        import pyqtgraph.opengl as gl

        if self.slice_item is not None:
            self.gl_view.removeItem(self.slice_item)
            self.slice_item = None
        if not self.slice_show3d.isChecked():
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
        self.gl_view.addItem(item)
        self.slice_item = item

    # ------------------------------------------------------------------ sphere tracing
    def shown_evaluator(self):
        """The field on screen: the interpolated network while interpolating, else the INR."""
        return getattr(self, "interp_evaluator", None) or self.evaluator

    def camera_opts(self) -> dict:
        if self.gl_ok and self.follow.isChecked():
            o = self.gl_view.opts
            c = o["center"]
            return {"center": (c.x(), c.y(), c.z()), "distance": float(o["distance"]),
                    "azimuth": float(o["azimuth"]), "elevation": float(o["elevation"]), "fov": float(o["fov"]),
                    "aspect": max(self.gl_view.width(), 1) / max(self.gl_view.height(), 1)}
        return {"center": (0.0, 0.0, 0.0), "distance": 2.6 * float(np.abs(self.bounds).max()),
                "azimuth": float(self.az_slider.value()), "elevation": float(self.el_slider.value()), "fov": 60.0,
                "aspect": 4 / 3}

    def _poll_camera(self) -> None:
        if not (self.gl_ok and self.follow.isChecked() and self.evaluator is not None):
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
        cap = 480 if str(getattr(self.evaluator, "device", "")).startswith("cuda") else 320
        w = max(128, min(cap, w))
        return w, max(96, int(w / aspect))

    def request_trace(self) -> None:
        if self.evaluator is None:
            return
        opts = self.camera_opts()
        w, h = self.render_size(opts["aspect"])
        from .render import Camera

        cam = Camera.orbit(center=opts["center"], distance=opts["distance"], azimuth=opts["azimuth"],
                           elevation=opts["elevation"], fov=opts["fov"], width=w, height=h)
        mode = self.mode_combo.currentText()
        beta = 10 ** (-3 + 2.5 * self.beta_slider.value() / 100)  # 1e-3 .. ~0.3
        ev, bounds, gt = self.shown_evaluator(), self.bounds.copy(), self.ground_truth_sdf
        if mode == "error" and gt is None:
            self.trace_caption.setText("The error mode needs a ground-truth SDF (analytic shapes); showing shaded.")
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

        self._trace_meta = (w, h, mode)
        self.trace_task.start(job)

    def _on_traced(self, token: int, value) -> None:
        if not self.trace_task.is_current(token):
            return
        img, secs, evals, extra = value
        self._rays_per_s = 0.7 * self._rays_per_s + 0.3 * (evals / max(secs, 1e-3))
        w, h, mode = self._trace_meta
        self.trace_image = img
        self.trace_label.set_array(img)
        if not self.gl_ok:
            self.fallback_img.set_array(img)
        view_w = self.gl_view.width() if self.gl_ok else self.fallback_img.width()
        scale = w / max(view_w, 1)
        self.trace_info = (f"{mode}: {w}x{h} px (render scale {scale:.0%} of the view), {secs:.2f} s, "
                           f"{evals:,} evaluations ({evals / max(secs, 1e-3):,.0f}/s); {extra}")
        self.trace_caption.setText(self.trace_info)
        self.trace_done.emit()

    # ------------------------------------------------------------------ interpolation
    def set_second(self, path_or_model: Any) -> None:
        from .loaders import open_inr
        from .models import interpolate_weights

        model = open_inr(path_or_model).model if isinstance(path_or_model, (str, Path)) else path_or_model
        if self.model is None:
            raise ValueError("Open the first INR before the second.")
        interpolate_weights(self.model, model, 0.0)  # raises with a sentence if architectures differ
        self.second = model
        self.interp_label.setText("Move the slider to morph between the two INRs (linear in weights).")
        self._interpolate_now()

    def _interpolate_now(self) -> None:
        if self.second is None or self.model is None:
            return
        t = self.interp_slider.value() / 100.0
        a, b, bounds, iso, inside = self.model, self.second, self.bounds.copy(), self.iso, self.inside

        def job(cancel, emit):
            from .fields import TorchEvaluator, bake_grid
            from .geometry import marching_cubes
            from .models import interpolate_weights

            m = interpolate_weights(a, b, t)
            ev = TorchEvaluator(m, device="cpu")
            grid = bake_grid(ev, bounds, 64, cancel=cancel)
            try:
                mesh = marching_cubes(grid, bounds, iso=iso, inside=inside)
            except ValueError:
                mesh = None
            return t, grid, mesh, ev

        self.interp_task.start(job)

    def _on_interp(self, token: int, value) -> None:
        if not self.interp_task.is_current(token):
            return
        t, grid, mesh, ev = value
        self.interp_t = t
        self.interp_evaluator = ev if 0.0 < t else None  # t = 0 is the first INR itself
        if mesh is None:
            self.interp_label.setText(f"t = {t:.2f}: the mixed field has no surface in the bounds.")
            return
        self.grid, self.mesh = grid, mesh
        self._update_mesh_item()
        self.update_slice()
        self.interp_label.setText(f"t = {t:.2f}: {len(mesh.faces):,} faces (64^3 grid)")
        self.mesh_changed.emit(64)
        self.request_trace()

    # ------------------------------------------------------------------ gallery
    def open_folder(self, folder: str | Path) -> int:
        """List the INRs of a folder as thumbnails (rendered on the worker); returns how many."""
        folder = Path(folder)
        paths = sorted(p for p in folder.glob("*.json") if _is_inr_json(p))
        self.gallery.clear()
        self.gallery_paths = paths
        for p in paths:
            it = QListWidgetItem(p.stem)
            it.setData(Qt.ItemDataRole.UserRole, str(p))
            self.gallery.addItem(it)

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
                    ev = TorchEvaluator(m, device="cpu", chunk=16384)
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

        self.gallery_task.start(job)
        self.tabs.setCurrentIndex(3)
        return len(paths)

    def _on_thumb(self, token: int, value) -> None:
        if not self.gallery_task.is_current(token):
            return
        i, img = value
        it = self.gallery.item(i)
        if it is not None:
            it.setIcon(QIcon(QPixmap.fromImage(qimage_from_array(img))))
            it.setData(Qt.ItemDataRole.UserRole + 1, True)

    def _gallery_open(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        try:
            from .models import load_inr

            if load_inr(path).config.in_features != 3:
                self.status.setText(f"{Path(path).name} is a 2D INR; open it in the 2D INR viewer.")
                return
            self.open_inr(path)
        except Exception as exc:
            self.status.setText(f"Could not open {Path(path).name}: {exc}")

    # ------------------------------------------------------------------ dialogs
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open INR", "", "INRs (*.json *.safetensors *.pth *.pt *.ckpt *.npz *.onnx)")
        if path:
            try:
                self.open_inr(path)
            except Exception as exc:
                self.status.setText(f"Could not open {Path(path).name}: {exc}")

    def _browse_second(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Second INR", "", "INRs (*.json *.safetensors *.pth *.npz)")
        if path:
            try:
                self.set_second(path)
            except Exception as exc:
                self.interp_label.setText(str(exc))

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of INRs")
        if folder:
            n = self.open_folder(folder)
            self.status.setText(f"{n} INR(s) in {folder}")

    # ------------------------------------------------------------------ tests / teardown
    def wait_idle(self, timeout: float = 60.0) -> None:
        for t in (self.bake_task, self.trace_task, self.slice_task, self.interp_task, self.gallery_task):
            t.wait(timeout)

    def closeEvent(self, event) -> None:  # noqa: N802
        for t in (self.bake_task, self.trace_task, self.slice_task, self.interp_task, self.gallery_task):
            t.cancel()
        self._cam_timer.stop()
        super().closeEvent(event)


def _is_inr_json(path: Path) -> bool:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == "implicit-studio-inr"
