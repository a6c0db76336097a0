"""2D image INRs: coordinates, rendering at any resolution or zoom window, metrics (no Qt).

Coordinate convention: the image spans [-1, 1] x [-1, 1]; x grows to the right, y grows
downward; pixel (row i, column j) of an H x W image has its centre at
x = -1 + (2 j + 1) / W, y = -1 + (2 i + 1) / H. A *window* (x0, x1, y0, y1) is any rectangle of
that plane; rendering a window at W x H pixels evaluates the network at exactly those pixel
centres -- a zoomed view is never an upsampled image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

FULL_WINDOW = (-1.0, 1.0, -1.0, 1.0)


def pixel_coords(height: int, width: int, window=FULL_WINDOW) -> np.ndarray:
    """(H*W, 2) float32 coordinates (x, y) of pixel centres of ``window`` sampled at H x W."""
    x0, x1, y0, y1 = (float(v) for v in window)
    if height < 1 or width < 1:
        raise ValueError("Image size must be at least 1 x 1.")
    if not (x1 > x0 and y1 > y0):
        raise ValueError("Zoom window must have x1 > x0 and y1 > y0.")
    xs = x0 + (np.arange(width, dtype=np.float64) + 0.5) / width * (x1 - x0)
    ys = y0 + (np.arange(height, dtype=np.float64) + 0.5) / height * (y1 - y0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.reshape(-1), yy.reshape(-1)], -1).astype(np.float32)


def zoom_window(center=(0.0, 0.0), zoom: float = 1.0, aspect: float = 1.0) -> tuple[float, float, float, float]:
    """Window around ``center`` showing 1/zoom of the full image width (aspect = width/height)."""
    if zoom <= 0:
        raise ValueError("zoom must be positive")
    half_w = 1.0 / zoom
    half_h = half_w / aspect
    cx, cy = center
    return (cx - half_w, cx + half_w, cy - half_h, cy + half_h)


def to_unit(values: np.ndarray, value_range=(0.0, 1.0)) -> np.ndarray:
    lo, hi = value_range
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def from_unit(values: np.ndarray, value_range=(0.0, 1.0)) -> np.ndarray:
    lo, hi = value_range
    return values * (hi - lo) + lo


def render_image(evaluator, height: int, width: int, window=FULL_WINDOW, value_range=None,
                 cancel: Any = None) -> np.ndarray:
    """Evaluate an image INR on the pixel grid of ``window``: float32 (H, W, C) in [0, 1]."""
    cfg = getattr(evaluator, "config", None)
    if value_range is None:
        value_range = tuple(cfg.value_range) if cfg is not None else (0.0, 1.0)
    pts = pixel_coords(height, width, window)
    try:
        vals = evaluator(pts, cancel=cancel)
    except TypeError:
        vals = evaluator(pts)
    vals = np.asarray(vals, np.float32).reshape(height, width, -1)
    return to_unit(vals, value_range).astype(np.float32)


def image_targets(image: np.ndarray, value_range=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(coords (H*W, 2), values (H*W, C)) to fit an INR to an image in [0, 1]."""
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    H, W, C = img.shape
    return pixel_coords(H, W), from_unit(img.reshape(-1, C), value_range).astype(np.float32)


# ---------------------------------------------------------------------- images in/out
def load_image(path: str | Path, max_side: int | None = None, grayscale: bool = False) -> np.ndarray:
    """Read an image file as float32 (H, W, 3) or (H, W, 1) in [0, 1]."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such image: {path}")
    try:
        im = Image.open(str(path))
        im.load()
    except Exception as exc:
        raise ValueError(f"{path.name} could not be read as an image ({exc}).") from exc
    im = im.convert("L" if grayscale else "RGB")
    if max_side and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def save_image(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    Image.fromarray(arr).save(str(tmp))
    tmp.replace(path)
    return path


def procedural_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """A colourful test image with smooth gradients, sharp edges and fine stripes, (H, W, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    xy = pixel_coords(size, size).reshape(size, size, 2)
    x, y = xy[..., 0], xy[..., 1]
    img = np.stack([0.5 + 0.4 * x, 0.5 + 0.4 * y, 0.6 - 0.3 * (x * y)], -1)
    # disc and square with sharp edges
    disc = (x + 0.35) ** 2 + (y + 0.3) ** 2 < 0.3**2
    img[disc] = [0.95, 0.85, 0.2]
    sq = (np.abs(x - 0.4) < 0.22) & (np.abs(y - 0.35) < 0.22)
    img[sq] = [0.15, 0.3, 0.8]
    # a ring of fine stripes (high frequency content)
    r = np.sqrt((x - 0.35) ** 2 + (y + 0.4) ** 2)
    ring = (r > 0.12) & (r < 0.33)
    stripes = 0.5 + 0.5 * np.sin(40 * r + rng.uniform(0, 2 * math.pi))
    img[ring] = np.stack([stripes, 0.3 * stripes, 1 - stripes], -1)[ring]
    return np.clip(img, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------- metrics
def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of one size, got {a.shape} and {b.shape}.")
    if a.ndim == 3 and a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    win = min(7, min(a.shape[:2]) // 2 * 2 - 1)
    if win < 3:
        raise ValueError("Images are too small for SSIM (need at least 3 x 3).")
    kw = {"channel_axis": 2} if a.ndim == 3 else {}
    return float(structural_similarity(a, b, data_range=1.0, win_size=win, **kw))


def error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error (mean over channels), (H, W) float32."""
    e = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
    return e.mean(-1) if e.ndim == 3 else e


def fft_magnitude(image: np.ndarray) -> np.ndarray:
    """log(1 + |FFT|) of the grey image, centred, scaled to [0, 1] (exposes ringing)."""
    img = np.asarray(image, np.float32)
    g = img.mean(-1) if img.ndim == 3 else img
    f = np.fft.fftshift(np.fft.fft2(g - g.mean()))
    m = np.log1p(np.abs(f))
    return (m / max(float(m.max()), 1e-12)).astype(np.float32)


def resample_ground_truth(image: np.ndarray, height: int, width: int, window=FULL_WINDOW) -> np.ndarray:
    """The ground-truth image seen through ``window`` at H x W (nearest pixel), for side-by-side views."""
    img = np.asarray(image, np.float32)
    H, W = img.shape[:2]
    pts = pixel_coords(height, width, window)
    j = np.clip(np.floor((pts[:, 0] + 1) / 2 * W), 0, W - 1).astype(int)
    i = np.clip(np.floor((pts[:, 1] + 1) / 2 * H), 0, H - 1).astype(int)
    return img[i, j].reshape(height, width, -1)
