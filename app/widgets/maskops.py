"""The mask being painted, as a list of operations with undo/redo (numpy only, no Qt).

The Qt canvas (:mod:`app.widgets.mask_canvas`) turns mouse input into operations on a :class:`MaskDocument`; the
document keeps the operation list (JSON-safe, so a session can store it and replay it later),
applies it to a float mask in [0, 1] (1 = to repaint), and undoes by replaying from the base mask.

Operations: ``stroke`` (brush or eraser along points, with radius and hardness), ``rect``,
``lasso`` (polygon), ``invert``, ``grow`` / ``shrink`` (pixels), ``feather`` (blur radius),
``clear``, ``fill``.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np


def _capsule_distance(xx, yy, p0, p1):
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    if L2 <= 1e-12:
        return np.hypot(xx - x0, yy - y0)
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / L2, 0.0, 1.0)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))


def brush_falloff(dist: np.ndarray, radius: float, hardness: float) -> np.ndarray:
    """1 inside the hard core (hardness * radius), falling linearly to 0 at the radius."""
    radius = max(float(radius), 0.5)
    core = float(np.clip(hardness, 0.0, 1.0)) * radius
    if radius - core < 1e-6:
        return (dist <= radius).astype(np.float32)
    return np.clip((radius - dist) / (radius - core), 0.0, 1.0).astype(np.float32)


def apply_stroke(mask: np.ndarray, points, radius: float, hardness: float, erase: bool) -> None:
    h, w = mask.shape
    pts = [(float(x), float(y)) for x, y in points]
    if not pts:
        return
    if len(pts) == 1:
        pts = pts * 2
    for p0, p1 in zip(pts, pts[1:]):
        r = radius + 1
        xa, xb = int(max(0, np.floor(min(p0[0], p1[0]) - r))), int(min(w, np.ceil(max(p0[0], p1[0]) + r) + 1))
        ya, yb = int(max(0, np.floor(min(p0[1], p1[1]) - r))), int(min(h, np.ceil(max(p0[1], p1[1]) + r) + 1))
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
        # pixel centres are at +0.5
        v = brush_falloff(_capsule_distance(xx + 0.5, yy + 0.5, p0, p1), radius, hardness)
        sub = mask[ya:yb, xa:xb]
        if erase:
            np.minimum(sub, 1.0 - v, out=sub)
        else:
            np.maximum(sub, v, out=sub)


def _disc(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= r * r


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import grey_dilation, grey_erosion

    if pixels == 0:
        return mask
    fp = _disc(abs(int(pixels)))
    return (grey_dilation if pixels > 0 else grey_erosion)(mask, footprint=fp).astype(np.float32)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if radius <= 0:
        return mask
    return np.clip(gaussian_filter(mask, sigma=float(radius) / 2.0), 0, 1).astype(np.float32)


def polygon_mask(shape, points) -> np.ndarray:
    from PIL import Image, ImageDraw

    h, w = shape
    img = Image.new("L", (w, h), 0)
    if len(points) >= 3:
        ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(img, np.float32) / 255.0


class MaskDocument:
    """A mask of ``height`` x ``width`` built by a replayable list of operations."""

    OPS = ("stroke", "rect", "lasso", "invert", "grow", "feather", "clear", "fill", "set")

    def __init__(self, width: int, height: int, base: Optional[np.ndarray] = None):
        if width < 1 or height < 1:
            raise ValueError("a mask needs a positive size")
        self.width, self.height = int(width), int(height)
        self.base = np.zeros((self.height, self.width), np.float32) if base is None else _as_float_mask(base)
        if self.base.shape != (self.height, self.width):
            raise ValueError("base mask size does not match")
        self.ops: list[dict[str, Any]] = []
        self.redo_stack: list[dict[str, Any]] = []
        self._arrays: dict[int, np.ndarray] = {}  # payloads of "set" ops (loaded masks)
        self.mask = self.base.copy()

    # -- operations --------------------------------------------------------------------------
    def apply(self, op: dict[str, Any]) -> None:
        kind = op.get("op")
        if kind not in self.OPS:
            raise ValueError(f"unknown mask operation {kind!r}")
        self._run(self.mask, op)
        self.ops.append(op)
        self.redo_stack.clear()

    def _run(self, m: np.ndarray, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "stroke":
            apply_stroke(m, op["points"], op.get("radius", 8), op.get("hardness", 1.0), op.get("erase", False))
        elif kind == "rect":
            x0, y0, x1, y1 = op["box"]
            xa, xb = sorted((int(round(x0)), int(round(x1))))
            ya, yb = sorted((int(round(y0)), int(round(y1))))
            m[max(0, ya) : max(0, yb), max(0, xa) : max(0, xb)] = 0.0 if op.get("erase") else 1.0
        elif kind == "lasso":
            poly = polygon_mask(m.shape, op["points"])
            if op.get("erase"):
                np.minimum(m, 1.0 - poly, out=m)
            else:
                np.maximum(m, poly, out=m)
        elif kind == "invert":
            m[...] = 1.0 - m
        elif kind == "grow":
            m[...] = grow(m, int(op["pixels"]))
        elif kind == "feather":
            m[...] = feather(m, float(op["radius"]))
        elif kind == "clear":
            m[...] = 0.0
        elif kind == "fill":
            m[...] = 1.0
        elif kind == "set":
            m[...] = self._arrays[op["ref"]]

    def stroke(self, points, radius: float, hardness: float = 1.0, erase: bool = False) -> None:
        self.apply({"op": "stroke", "points": [[float(x), float(y)] for x, y in points], "radius": float(radius),
                    "hardness": float(hardness), "erase": bool(erase)})

    def rect(self, x0, y0, x1, y1, erase: bool = False) -> None:
        self.apply({"op": "rect", "box": [float(x0), float(y0), float(x1), float(y1)], "erase": bool(erase)})

    def lasso(self, points, erase: bool = False) -> None:
        self.apply({"op": "lasso", "points": [[float(x), float(y)] for x, y in points], "erase": bool(erase)})

    def invert(self) -> None:
        self.apply({"op": "invert"})

    def grow(self, pixels: int) -> None:
        self.apply({"op": "grow", "pixels": int(pixels)})

    def shrink(self, pixels: int) -> None:
        self.apply({"op": "grow", "pixels": -int(pixels)})

    def feather(self, radius: float) -> None:
        self.apply({"op": "feather", "radius": float(radius)})

    def clear(self) -> None:
        self.apply({"op": "clear"})

    def set_mask(self, mask: np.ndarray) -> None:
        arr = _as_float_mask(mask)
        if arr.shape != (self.height, self.width):
            raise ValueError(f"mask is {arr.shape[1]}x{arr.shape[0]} but the image is {self.width}x{self.height}")
        ref = len(self._arrays)
        self._arrays[ref] = arr
        self.apply({"op": "set", "ref": ref})

    # -- history -----------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self.ops)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def undo(self) -> bool:
        if not self.ops:
            return False
        self.redo_stack.append(self.ops.pop())
        self._replay()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        op = self.redo_stack.pop()
        self._run(self.mask, op)
        self.ops.append(op)
        return True

    def _replay(self) -> None:
        m = self.base.copy()
        for op in self.ops:
            self._run(m, op)
        self.mask = m

    # -- export ------------------------------------------------------------------------------
    def as_uint8(self) -> np.ndarray:
        return np.clip(np.rint(self.mask * 255), 0, 255).astype(np.uint8)

    def as_bool(self) -> np.ndarray:
        return self.mask >= 0.5

    def save_png(self, path) -> None:
        from PIL import Image

        Image.fromarray(self.as_uint8()).save(path, format="PNG")

    def to_json(self, include_arrays: bool = True) -> str:
        """The operation history. Loaded masks ("set" operations) are stored as nested lists of
        0..255 when ``include_arrays``; without them the history is small enough to record with a
        run, and replaying it restores every stroke made after the last loaded mask."""
        arrays = ({str(k): np.rint(v * 255).astype(np.uint8).tolist() for k, v in self._arrays.items()}
                  if include_arrays else {})
        return json.dumps({"width": self.width, "height": self.height, "ops": self.ops, "arrays": arrays})

    @classmethod
    def from_json(cls, text: str) -> "MaskDocument":
        data = json.loads(text)
        doc = cls(int(data["width"]), int(data["height"]))
        doc._arrays = {int(k): np.asarray(v, np.float32) / 255.0 for k, v in data.get("arrays", {}).items()}
        for op in data.get("ops", []):
            if op.get("op") == "set" and op.get("ref") not in doc._arrays:
                continue  # a loaded mask not stored with the history
            doc._run(doc.mask, op)
            doc.ops.append(op)
        return doc


def _as_float_mask(mask: Any) -> np.ndarray:
    if type(mask).__module__.startswith("PIL"):
        mask = np.asarray(mask.convert("L"))
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., :3].max(axis=2) if m.shape[2] >= 3 else m[..., 0]
    if m.dtype == np.bool_:
        return m.astype(np.float32)
    if np.issubdtype(m.dtype, np.floating):
        return np.clip(m, 0, 1).astype(np.float32)
    return (np.clip(m, 0, 255).astype(np.float32) / (255.0 if m.max(initial=0) > 1 else 1.0))


def load_mask_file(path, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """(mask float HxW, size_matches). ``size`` is (width, height) of the image. A non-image file is
    a ValueError with a sentence."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = _as_float_mask(np.asarray(img.convert("L")))
    except FileNotFoundError:
        raise ValueError(f"mask file {path} does not exist") from None
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{path} is not an image file that can be read as a mask") from None
    return arr, (arr.shape[1], arr.shape[0]) == tuple(size)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.clip(np.rint(mask * 255), 0, 255).astype(np.uint8))
    return np.asarray(img.resize(tuple(size), Image.Resampling.BILINEAR), np.float32) / 255.0
