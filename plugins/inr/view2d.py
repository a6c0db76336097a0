"""2D INR viewer (Qt view layer): the network is re-evaluated at the viewport's pixel grid on every
pan/zoom (never upsampled), side by side with the ground truth, an error map, an FFT panel, and
other INRs of the same image for comparing architectures.

Evaluation runs on a worker thread; a newer request cancels an older one, and the GUI thread
only places the finished image.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

MAX_RENDER_SIDE = 1024


def is_3d(meta: dict) -> bool:
    """Whether an INR result's metadata is that of a 3D field (an SDF fit records its bounds and
    reference mesh; a 2D fit its ground-truth image)."""
    return "bounds" in meta or "reference_mesh" in meta


class BackgroundTask(QObject):
    """Runs ``fn(cancel_event, emit)`` on a thread; ``emit(value)`` sends ``partial(token, value)``
    (e.g. a coarse grid while finer ones are baked); the return value arrives as ``done(token,
    value)`` and an exception as ``failed(token, message)``.

    Starting a new task cancels the previous one (its late signals are dropped by token)."""

    done = Signal(int, object)
    partial = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._token = 0
        self._cancel: threading.Event | None = None
        self._threads: list[threading.Thread] = []

    def start(self, fn: Callable[[threading.Event, Callable[[Any], None]], Any]) -> int:
        self.cancel()
        self._token += 1
        token = self._token
        ev = threading.Event()
        self._cancel = ev

        def send(signal, *args):
            if ev.is_set():
                return
            try:
                signal.emit(*args)
            except RuntimeError:  # the widget was deleted while this thread worked
                ev.set()

        def emit(value):
            send(self.partial, token, value)

        def run():
            try:
                value = fn(ev, emit)
            except Exception as exc:  # reported to the GUI thread, never raised there
                send(self.failed, token, f"{type(exc).__name__}: {exc}")
                return
            send(self.done, token, value)

        t = threading.Thread(target=run, daemon=True, name="inr-viewer-task")
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return token

    def is_current(self, token: int) -> bool:
        return token == self._token

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def wait(self, timeout: float = 30.0) -> None:
        for t in list(self._threads):
            t.join(timeout)

    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)


def _to_u8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return a


class _Panel(QWidget):
    """A titled pyqtgraph ViewBox showing one image in ground-truth pixel coordinates."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#1e1e22")
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.view.setMenuEnabled(False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.graphics, 1)

    def show_image(self, img: np.ndarray, rect: QRectF | None = None, levels=None) -> None:
        a = np.asarray(img)
        if a.ndim == 2:
            self.item.setImage(a, levels=levels or (0.0, 1.0), autoLevels=False)
        else:
            self.item.setImage(_to_u8(a), levels=(0, 255), autoLevels=False)
        if rect is not None:
            self.item.setRect(rect)

    def pixel_size(self) -> tuple[int, int]:
        r = self.view.sceneBoundingRect()
        ratio = self.devicePixelRatioF() if hasattr(self, "devicePixelRatioF") else 1.0
        return max(8, int(r.width() * ratio)), max(8, int(r.height() * ratio))


class INRImageViewer(QWidget):
    """Viewer for image results made by an INR (``metadata['inr']``) or for INR files directly."""

    rendered = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.entries: list[dict] = []  # {"name", "model", "evaluator", "config", "psnr", "ssim", "native"}
        self.active = 0
        self.ground_truth: np.ndarray | None = None
        self.gt_size = (128, 128)  # (H, W) of the pixel coordinate frame
        self.last_window = (-1.0, 1.0, -1.0, 1.0)
        self.last_render_size = (0, 0)
        self.render_count = 0
        self.message = QLabel("Open an INR (or show a result fitted by inr-fit-image).")
        self.message.setWordWrap(True)
        self.stats = QLabel("")
        self.combo = QComboBox()
        self.combo.currentIndexChanged.connect(self._on_active_changed)
        self.compare = QCheckBox("Compare architectures")
        self.compare.toggled.connect(self._layout_compare)
        open_btn = QPushButton("Open INR…")
        open_btn.clicked.connect(self._browse)
        reset = QPushButton("Reset view")
        reset.clicked.connect(self.reset_view)
        bar = QHBoxLayout()
        for w in (open_btn, QLabel("INR:"), self.combo, self.compare, reset):
            bar.addWidget(w)
        bar.addStretch(1)
        self.inr_panel = _Panel("INR (evaluated at screen resolution)")
        self.gt_panel = _Panel("Ground truth")
        self.err_panel = _Panel("|error|")
        self.fft_panel = _Panel("FFT magnitude (INR, log)")
        for p in (self.gt_panel, self.err_panel):
            p.view.setXLink(self.inr_panel.view)
            p.view.setYLink(self.inr_panel.view)
        self.compare_panels: list[_Panel] = []
        self.grid = QHBoxLayout()
        for p in (self.inr_panel, self.gt_panel, self.err_panel, self.fft_panel):
            self.grid.addWidget(p, 1)
        self.compare_row = QHBoxLayout()
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addLayout(self.grid, 3)
        lay.addLayout(self.compare_row, 2)
        lay.addWidget(self.stats)
        self.task = BackgroundTask(self)
        self.task.done.connect(self._on_rendered)
        self.task.failed.connect(self._on_failed)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(120)
        self._debounce.timeout.connect(self.request_render)
        self.inr_panel.view.sigRangeChanged.connect(lambda *a: self._debounce.start())

    # ------------------------------------------------------------------ inputs
    @classmethod
    def accepts(cls, result: Any) -> bool:
        """Images, and the weights file of a 2D INR (a fit's ``weights`` result)."""
        meta = getattr(result, "metadata", None) or {}
        if getattr(result, "kind", "") == "file":
            return bool(meta.get("inr")) and not is_3d(meta)
        return True

    def set_result(self, result: Any) -> None:
        meta = getattr(result, "metadata", {}) or {}
        gt = meta.get("ground_truth")
        if meta.get("inr"):
            self.clear()
            self.add_inr(meta["inr"], ground_truth=gt)
        else:
            img = getattr(result, "image", None)
            self.clear()
            if img is not None:
                self.set_ground_truth(np.asarray(img, np.float32)[..., :3] / 255.0)
            self.message.setText("This image carries no INR; open one to compare it with this image.")

    def clear(self) -> None:
        self.entries.clear()
        self.combo.clear()
        self.ground_truth = None

    def set_ground_truth(self, img: np.ndarray | str | Path | None) -> None:
        if img is None:
            return
        if isinstance(img, (str, Path)):
            from .image2d import load_image

            img = load_image(img)
        self.ground_truth = np.asarray(img, np.float32)
        self.gt_size = self.ground_truth.shape[:2]
        H, W = self.gt_size
        self.gt_panel.show_image(self.ground_truth, QRectF(0, 0, W, H))
        self.reset_view()

    def add_inr(self, path_or_model: Any, name: str | None = None, ground_truth: Any = None) -> dict:
        """Load an INR (path or INRField) and show it; further INRs are offered for comparison."""
        from app.widgets.compute import view_device

        from .fields import make_evaluator
        from .loaders import open_inr

        device, providers = view_device()  # the device setting, as runs use it
        if isinstance(path_or_model, (str, Path)):
            loaded = open_inr(path_or_model, providers=providers)
            model, cfg = loaded.model, loaded.config
            name = name or Path(path_or_model).stem
            if ground_truth is None:
                extra = _extra_of(Path(path_or_model))
                if extra.get("ground_truth"):
                    ground_truth = Path(path_or_model).parent / extra["ground_truth"]
        else:
            model, cfg = path_or_model, path_or_model.config
            name = name or cfg.arch
        if cfg.in_features != 2:
            raise ValueError(f"{name} maps {cfg.in_features}-D points; the 2D viewer shows image INRs (2 inputs).")
        ev = make_evaluator(model, backend="torch", device=device) if hasattr(model, "parameters") else model
        entry = {"name": name, "model": model, "evaluator": ev, "config": cfg}
        self.entries.append(entry)
        if ground_truth is not None and self.ground_truth is None:
            self.set_ground_truth(ground_truth)
        elif self.ground_truth is None:
            h, w = cfg.image_size or (256, 256)
            self.gt_size = (h, w)
        self._score(entry)
        self.combo.blockSignals(True)
        self.combo.addItem(f"{name} ({cfg.arch})")
        self.combo.blockSignals(False)
        if len(self.entries) == 1:
            self.active = 0
            self.combo.setCurrentIndex(0)
            self.reset_view()
        self.message.setText(f"{len(self.entries)} INR(s). Scroll to zoom, drag to pan: the network is evaluated "
                             "again at the new pixel grid.")
        self._layout_compare(self.compare.isChecked())
        self._update_fft()
        self.request_render()
        return entry

    def _score(self, entry: dict) -> None:
        from .image2d import psnr, render_image, ssim

        H, W = self.gt_size
        native = render_image(entry["evaluator"], H, W)
        entry["native"] = native
        if self.ground_truth is not None and self.ground_truth.shape[:2] == native.shape[:2]:
            gt = self.ground_truth
            if gt.shape[2] != native.shape[2]:
                gt = gt.mean(-1, keepdims=True) if native.shape[2] == 1 else np.repeat(gt, 3, axis=2)
            entry["psnr"] = psnr(native, gt)
            entry["ssim"] = ssim(native, gt)

    # ------------------------------------------------------------------ view
    def reset_view(self) -> None:
        H, W = self.gt_size
        self.inr_panel.view.setRange(QRectF(0, 0, W, H), padding=0)
        self.fft_panel.view.setRange(QRectF(0, 0, W, H), padding=0)

    def zoom_to(self, window: tuple[float, float, float, float]) -> None:
        """Show INR window (x0, x1, y0, y1) in [-1, 1] coordinates."""
        H, W = self.gt_size
        x0, x1, y0, y1 = window
        rect = QRectF((x0 + 1) / 2 * W, (y0 + 1) / 2 * H, (x1 - x0) / 2 * W, (y1 - y0) / 2 * H)
        self.inr_panel.view.setRange(rect, padding=0)

    def current_window(self) -> tuple[float, float, float, float]:
        H, W = self.gt_size
        (vx0, vx1), (vy0, vy1) = self.inr_panel.view.viewRange()
        return (vx0 / W * 2 - 1, vx1 / W * 2 - 1, vy0 / H * 2 - 1, vy1 / H * 2 - 1)

    def _on_active_changed(self, i: int) -> None:
        if 0 <= i < len(self.entries):
            self.active = i
            self._update_fft()
            self.request_render()

    def _layout_compare(self, on: bool) -> None:
        for p in self.compare_panels:
            self.compare_row.removeWidget(p)
            p.deleteLater()
        self.compare_panels = []
        if on:
            for e in self.entries:
                p = _Panel(self._entry_title(e))
                p.view.setXLink(self.inr_panel.view)
                p.view.setYLink(self.inr_panel.view)
                self.compare_row.addWidget(p, 1)
                self.compare_panels.append(p)
        self.request_render()

    def _entry_title(self, e: dict) -> str:
        s = f"{e['name']} ({e['config'].arch})"
        if "psnr" in e:
            s += f"  PSNR {e['psnr']:.2f} dB  SSIM {e['ssim']:.3f}"
        return s

    def _update_fft(self) -> None:
        from .image2d import fft_magnitude

        if not self.entries:
            return
        e = self.entries[self.active]
        f = fft_magnitude(e["native"])
        H, W = self.gt_size
        self.fft_panel.show_image(f, QRectF(0, 0, W, H), levels=(0.0, 1.0))

    # ------------------------------------------------------------------ rendering
    def request_render(self) -> None:
        if not self.entries:
            return
        window = self.current_window()
        pw, ph = self.inr_panel.pixel_size()
        x0, x1, y0, y1 = window
        # keep the aspect of the window; cap the work
        scale = min(1.0, MAX_RENDER_SIDE / max(pw, ph))
        w, h = max(8, int(pw * scale)), max(8, int(ph * scale))
        gt = self.ground_truth
        entries = list(self.entries)
        active = self.active
        compare = self.compare.isChecked()

        def job(cancel: threading.Event, emit):
            from .image2d import error_map, render_image, resample_ground_truth

            out = {"window": window, "size": (h, w)}
            order = [active] + ([i for i in range(len(entries)) if i != active] if compare else [])
            renders = {}
            for i in order:
                renders[i] = render_image(entries[i]["evaluator"], h, w, window=window, cancel=cancel)
            out["renders"] = renders
            if gt is not None:
                g = resample_ground_truth(gt, h, w, window)
                r = renders[active]
                if g.shape[2] != r.shape[2]:
                    g = g.mean(-1, keepdims=True) if r.shape[2] == 1 else np.repeat(g, 3, axis=2)
                out["error"] = error_map(r, g)
            return out

        self.task.start(job)

    def _on_rendered(self, token: int, out: dict) -> None:
        if not self.task.is_current(token):
            return
        H, W = self.gt_size
        x0, x1, y0, y1 = out["window"]
        rect = QRectF((x0 + 1) / 2 * W, (y0 + 1) / 2 * H, (x1 - x0) / 2 * W, (y1 - y0) / 2 * H)
        self.inr_panel.show_image(out["renders"][self.active], rect)
        for p, (i, e) in zip(self.compare_panels, enumerate(self.entries)):
            if i in out["renders"]:
                p.show_image(out["renders"][i], rect)
                p.title.setText(self._entry_title(e))
        if "error" in out:
            err = out["error"]
            self.err_panel.show_image(_heat(err / max(float(err.max()), 1e-6)), rect)
        self.last_window = out["window"]
        self.last_render_size = out["size"]
        self.render_count += 1
        e = self.entries[self.active]
        zoom = 2.0 / max(x1 - x0, 1e-12)
        txt = (f"{e['name']}: {e['config'].arch}, window x [{x0:.3f}, {x1:.3f}] y [{y0:.3f}, {y1:.3f}], zoom "
               f"{zoom:.1f}x, evaluated at {out['size'][1]}x{out['size'][0]} px")
        if "psnr" in e:
            txt += f" | PSNR {e['psnr']:.2f} dB, SSIM {e['ssim']:.3f} (native {W}x{H})"
        self.stats.setText(txt)
        self.rendered.emit()

    def _on_failed(self, token: int, message: str) -> None:
        if self.task.is_current(token):
            self.message.setText(f"Rendering failed: {message}")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open INR", "", "INRs (*.json *.safetensors *.pth *.pt *.npz *.onnx)")
        if path:
            try:
                self.add_inr(path)
            except Exception as exc:
                self.message.setText(f"Could not open {Path(path).name}: {exc}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        self.task.wait(timeout)


def _extra_of(path: Path) -> dict:
    import json

    js = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        return dict(json.loads(js.read_text()).get("extra") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def _heat(t: np.ndarray) -> np.ndarray:
    from .render import _heat as heat

    return heat(t)
