"""3D SDF viewer (Qt view layer).

* The field is baked progressively on a worker thread (32^3 -> 64^3 -> 128^3, refining only near
  the surface, cached by weights hash, bounds and resolution) and meshed by marching cubes with
  outward faces; each level replaces the mesh, so a first view appears quickly.
* pyqtgraph ``GLViewWidget`` with orbit/zoom/pan, shaded or normal-coloured; without OpenGL the
  sphere-traced image takes its place and a message says why.
* Side tabs (:mod:`plugins.inr.sdf_panels`): a slice plane with the zero level set, a
  sphere-traced render that follows the 3D camera, weight-space interpolation between two INRs,
  a gallery of a folder of INRs; and the metrics: Chamfer distance / normal consistency against a
  reference mesh. Export OBJ/PLY/STL.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSplitter,
                               QStackedWidget, QTabWidget, QVBoxLayout, QWidget)

from app.widgets.flow import FlowLayout

from .sdf_panels import GalleryPanel, ImageLabel, InterpolatePanel, RenderPanel, SlicePanel
from .view2d import BackgroundTask, is_3d

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


class SDFViewer(QWidget):
    """Viewer for mesh results of SDF INRs and for INR files (see the module docstring). Holds the
    field shown (``model``, ``evaluator``, ``bounds``, ``iso``, ``grid``, ``mesh``) and bakes it;
    the side tabs are ``slices``, ``renderer``, ``interp`` and ``gallery``."""

    mesh_changed = Signal(int)  # resolution of the mesh now shown
    trace_done = Signal()

    def __init__(self, parent: QWidget | None = None, use_gl: bool | None = None):
        super().__init__(parent)
        self.model = None
        self.evaluator = None
        self.device = "cpu"  # where its bakes and renders compute: the device setting when an INR opens
        self.config = None
        self.bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
        self.iso = 0.0
        self.inside = "negative"
        self.grid: np.ndarray | None = None
        self.mesh = None  # geometry.Mesh
        self.reference = None  # trimesh of the reference shape
        self.ground_truth_sdf = None
        self.metrics: dict[str, float] = {}
        self.levels_done: list[tuple[int, float, bool]] = []
        self.chamfer_samples = 20000
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
        self.bake_task.failed.connect(lambda _token, message: self.status.setText(f"Failed: {message}"))

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
        self.res_combo.currentIndexChanged.connect(lambda *_: self.bake())
        self.color_combo = QComboBox()
        self.color_combo.addItems(["shaded", "normals"])
        self.color_combo.currentIndexChanged.connect(lambda *_: self._update_mesh_item())
        export_btn = QPushButton("Export mesh…")
        export_btn.clicked.connect(self._export_dialog)
        self.side_btn = QPushButton("Panels")
        self.side_btn.setCheckable(True)
        self.side_btn.setChecked(True)
        self.side_btn.setToolTip("Show or hide the slice, render, interpolation, gallery and metrics panels")
        self.side_btn.toggled.connect(lambda on: self.tabs.setVisible(on))
        # the tool bar wraps in a narrow centre instead of widening the window
        self.bar = QWidget()
        bar = FlowLayout(self.bar, spacing=6)
        for w in (open_btn, folder_btn, self._pair("Grid", self.res_combo), self._pair("Colour", self.color_combo),
                  export_btn):
            bar.addWidget(w)
        bar.addStretch()
        bar.addWidget(self.side_btn)

        self.view_stack = QStackedWidget()
        self.view_stack.setMinimumSize(160, 160)
        self.view_stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.gl_view = None
        self.mesh_item = None
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
        self.fallback_img = ImageLabel()
        fl.addWidget(self.fallback_msg)
        fl.addWidget(self.fallback_img, 1)
        self.view_stack.addWidget(self.fallback)
        self.view_stack.setCurrentWidget(self.gl_view if self.gl_ok else self.fallback)

        self.tabs = QTabWidget()
        self.slices = SlicePanel(self)
        self.renderer = RenderPanel(self)
        self.interp = InterpolatePanel(self)
        self.gallery = GalleryPanel(self)
        for panel, title in ((self.slices, "Slice"), (self.renderer, "Render"), (self.interp, "Interpolate"),
                             (self.gallery, "Gallery")):
            self.tabs.addTab(panel, title)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        metrics = QWidget()
        mv = QVBoxLayout(metrics)
        mv.addWidget(self.metrics_label)
        mv.addStretch(1)
        self.tabs.addTab(metrics, "Metrics")

        # The 3D view takes the room; the side panels get a fixed share that the splitter moves (a
        # side panel that asked for its form's width squeezed the view to a strip)
        self.tabs.setMinimumWidth(160)
        self.tabs.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.view_stack)
        self.split.addWidget(self.tabs)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 0)
        self.split.setCollapsible(0, False)
        self.split.setCollapsible(1, True)
        self._sized = False
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.bar)
        lay.addWidget(self.split, 1)
        lay.addWidget(self.status)

    @staticmethod
    def _pair(text: str, w: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(QLabel(text))
        row.addWidget(w)
        return box

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if not self._sized and self.split.width() > 0:
            # the first time it has a size: the side panels get about a third, at most 360 px
            side = min(360, max(160, self.split.width() // 3))
            self.split.setSizes([max(1, self.split.width() - side), side])
            self._sized = True

    # ------------------------------------------------------------------ inputs
    @classmethod
    def accepts(cls, result: Any) -> bool:
        """Meshes, and the weights file of a 3D INR (an SDF fit's ``weights`` result)."""
        if getattr(result, "kind", "") == "file":
            meta = getattr(result, "metadata", None) or {}
            return bool(meta.get("inr")) and is_3d(meta)
        return True

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
        from app.widgets.compute import view_device

        from .fields import make_evaluator
        from .loaders import open_inr

        self.device, providers = view_device()
        if isinstance(path_or_model, (str, Path)):
            loaded = open_inr(path_or_model, providers=providers)
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
        self.evaluator = make_evaluator(model, backend="auto", device=self.device) if hasattr(model, "parameters") else model
        self.ground_truth_sdf = ground_truth_sdf
        self.reference = None
        if reference_mesh is not None:
            from .geometry import load_mesh

            self.reference = load_mesh(reference_mesh) if isinstance(reference_mesh, (str, Path)) else reference_mesh
        self.metrics = {}
        self.interp.reset()
        self.status.setText(f"{name}: {cfg.arch}, evaluated with {getattr(self.evaluator, 'backend', '?')}.{note}")
        self.bake()

    def shown_evaluator(self):  # noqa: ANN201 - a fields evaluator
        """The field on screen: the interpolated network while interpolating, else the INR."""
        return self.interp.evaluator or self.evaluator

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
        self.levels_done.append((res, seconds, cached))
        done = ", ".join(f"{r}^3 {'cache' if c else f'{s:.2f} s'}" for r, s, c in self.levels_done)
        self.status.setText(f"Baked {done}; {len(mesh.faces):,} faces ({evaluated:,} points evaluated at {res}^3).")
        self.show_field(grid, mesh, res, trace=res == self.levels_done[0][0])

    def show_field(self, grid: np.ndarray, mesh: Any, resolution: int, trace: bool = True) -> None:
        """Show a baked grid and its mesh: the 3D view, the slice, and (``trace``) a new render."""
        self.grid, self.mesh = grid, mesh
        self._update_mesh_item()
        self.slices.update_slice()
        self.mesh_changed.emit(resolution)
        if trace:
            self.renderer.request_trace()

    def _on_bake_done(self, token: int, metrics) -> None:
        if not self.bake_task.is_current(token):
            return
        self.metrics = dict(metrics or {})
        self._update_metrics()
        self.renderer.request_trace()

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

    # ------------------------------------------------------------------ dialogs
    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export mesh", "mesh.ply", "Meshes (*.ply *.obj *.stl)")
        if path:
            try:
                self.status.setText(f"Wrote {self.export_mesh(path)}")
            except Exception as exc:
                self.status.setText(f"Export failed: {exc}")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open INR", "", "INRs (*.json *.safetensors *.pth *.pt *.ckpt *.npz *.onnx)")
        if path:
            try:
                self.open_inr(path)
            except Exception as exc:
                self.status.setText(f"Could not open {Path(path).name}: {exc}")

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of INRs")
        if folder:
            n = self.gallery.open_folder(folder)
            self.status.setText(f"{n} INR(s) in {folder}")

    # ------------------------------------------------------------------ tests / teardown
    def _tasks(self) -> list[BackgroundTask]:
        return [self.bake_task, self.renderer.task, self.slices.task, self.interp.task, self.gallery.task]

    def wait_idle(self, timeout: float = 60.0) -> None:
        for t in self._tasks():
            t.wait(timeout)

    def closeEvent(self, event) -> None:  # noqa: N802
        for t in self._tasks():
            t.cancel()
        self.renderer.stop()
        super().closeEvent(event)
