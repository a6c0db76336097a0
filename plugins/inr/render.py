"""Rendering SDFs without OpenGL: sphere tracing and VolSDF volume rendering (numpy, no Qt).

The camera follows pyqtgraph's ``GLViewWidget`` conventions (z up; position from centre,
distance, azimuth and elevation in degrees; horizontal field of view), so an image rendered here
matches what the 3D view shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

RENDER_MODES = ("shaded", "normals", "depth", "cost", "error")
BACKGROUND = np.array([0.12, 0.12, 0.14], np.float32)


@dataclass
class Camera:
    eye: np.ndarray
    target: np.ndarray
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    fov: float = 60.0  # horizontal, degrees (as pyqtgraph)
    width: int = 128
    height: int = 128

    @classmethod
    def orbit(cls, center=(0.0, 0.0, 0.0), distance: float = 3.0, azimuth: float = 45.0, elevation: float = 30.0,
              fov: float = 60.0, width: int = 128, height: int = 128) -> "Camera":
        """The camera of a pyqtgraph GLViewWidget with these ``opts``."""
        c = np.asarray(center, dtype=np.float64)
        el, az = math.radians(elevation), math.radians(azimuth)
        eye = c + distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        return cls(eye=eye, target=c, fov=fov, width=int(width), height=int(height))

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fwd = np.asarray(self.target, float) - np.asarray(self.eye, float)
        fwd /= np.linalg.norm(fwd)
        up = np.asarray(self.up, float)
        right = np.cross(fwd, up)
        if np.linalg.norm(right) < 1e-9:  # looking straight along up
            right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
        right /= np.linalg.norm(right)
        true_up = np.cross(right, fwd)
        return fwd, right, true_up

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Origins and unit directions, (H*W, 3) each, row-major from the top-left pixel."""
        fwd, right, up = self.basis()
        tx = math.tan(math.radians(self.fov) / 2)
        ty = tx * self.height / self.width
        xs = ((np.arange(self.width) + 0.5) / self.width * 2 - 1) * tx
        ys = (1 - (np.arange(self.height) + 0.5) / self.height * 2) * ty
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        d = fwd[None] + xx.reshape(-1, 1) * right[None] + yy.reshape(-1, 1) * up[None]
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = np.broadcast_to(np.asarray(self.eye, float), d.shape).copy()
        return o.astype(np.float32), d.astype(np.float32)


def ray_box(o: np.ndarray, d: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry and exit distances (t_near > t_far where the ray misses)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t0 = (bounds[0][None] - o) * inv
        t1 = (bounds[1][None] - o) * inv
    tn = np.minimum(t0, t1).max(-1)
    tf = np.maximum(t0, t1).min(-1)
    return np.maximum(tn, 0.0), tf


@dataclass
class TraceResult:
    hit: np.ndarray  # (H, W) bool
    depth: np.ndarray  # (H, W) distance along the ray (inf where missed)
    positions: np.ndarray  # (H, W, 3)
    normals: np.ndarray  # (H, W, 3) zeros where missed
    steps: np.ndarray  # (H, W) int evaluations per pixel
    evaluations: int
    camera: Camera


def _eval0(evaluator, pts: np.ndarray, cancel: Any = None) -> np.ndarray:
    try:
        v = evaluator(pts, cancel=cancel)
    except TypeError:
        v = evaluator(pts)
    v = np.asarray(v, dtype=np.float32)
    return v[:, 0] if v.ndim == 2 else v


def surface_normals(evaluator, pts: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    if len(pts) == 0:
        return np.zeros((0, 3), np.float32)
    grad = getattr(evaluator, "gradient", None)
    if grad is not None:
        g = grad(pts)
    else:
        offs = []
        for k in range(3):
            e = np.zeros(3, np.float32)
            e[k] = eps
            offs += [pts + e, pts - e]
        v = _eval0(evaluator, np.concatenate(offs)).reshape(6, len(pts))
        g = np.stack([v[0] - v[1], v[2] - v[3], v[4] - v[5]], -1) / (2 * eps)
    return (g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def sphere_trace(evaluator, camera: Camera, bounds=((-1, -1, -1), (1, 1, 1)), max_steps: int = 96,
                 eps: float = 1e-3, step_scale: float = 0.9, cancel: Any = None) -> TraceResult:
    """March each ray by the SDF value until |f| < eps, leaving the bounds, or ``max_steps``.

    Only rays still marching are evaluated at each step; ``steps`` counts evaluations per pixel
    (the "cost" render mode).
    """
    from app.api import Cancelled

    from .fields import _is_cancelled

    bounds = np.asarray(bounds, dtype=np.float32)
    o, d = camera.rays()
    n = len(o)
    tn, tf = ray_box(o, d, bounds)
    t = tn.copy()
    active = tn < tf
    hit = np.zeros(n, bool)
    steps = np.zeros(n, np.int32)
    evaluations = 0
    for _ in range(max_steps):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        if _is_cancelled(cancel):
            raise Cancelled("rendering cancelled")
        p = o[idx] + t[idx, None] * d[idx]
        f = _eval0(evaluator, p)
        evaluations += idx.size
        steps[idx] += 1
        done = np.abs(f) < eps
        hit[idx[done]] = True
        t[idx] += np.where(done, 0.0, f * step_scale)
        out = t[idx] > tf[idx]
        active[idx[done | out]] = False
    pos = o + t[:, None] * d
    normals = np.zeros((n, 3), np.float32)
    hi = np.flatnonzero(hit)
    normals[hi] = surface_normals(evaluator, pos[hi])
    H, W = camera.height, camera.width
    depth = np.where(hit, t, np.inf)
    return TraceResult(hit.reshape(H, W), depth.reshape(H, W).astype(np.float32), pos.reshape(H, W, 3),
                       normals.reshape(H, W, 3), steps.reshape(H, W), evaluations, camera)


def _heat(t: np.ndarray) -> np.ndarray:
    """Scalar in [0, 1] -> RGB (dark blue, cyan, yellow, red)."""
    t = np.clip(t, 0, 1)[..., None]
    stops = np.array([[0.05, 0.05, 0.35], [0.0, 0.7, 0.9], [0.95, 0.9, 0.2], [0.85, 0.1, 0.05]], np.float32)
    x = t * (len(stops) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(stops) - 2)[..., 0]
    f = x[..., 0] - i
    return stops[i] * (1 - f[..., None]) + stops[i + 1] * f[..., None]


def shade(result: TraceResult, mode: str = "shaded", ground_truth: Callable | None = None,
          base_color=(0.72, 0.76, 0.85)) -> np.ndarray:
    """Turn a trace into an RGB uint8 image for one of :data:`RENDER_MODES`."""
    if mode not in RENDER_MODES:
        raise ValueError(f"Unknown render mode {mode!r}; choose one of {', '.join(RENDER_MODES)}.")
    H, W = result.hit.shape
    img = np.broadcast_to(BACKGROUND, (H, W, 3)).copy()
    hit = result.hit
    n = result.normals
    if mode == "shaded":
        fwd, right, up = result.camera.basis()
        light = -fwd + 0.6 * up + 0.4 * right
        light /= np.linalg.norm(light)
        diff = np.clip((n * light).sum(-1), 0, 1)
        view = -fwd
        half = (light + view) / np.linalg.norm(light + view)
        spec = np.clip((n * half).sum(-1), 0, 1) ** 32
        col = np.asarray(base_color, np.float32)[None, None] * (0.18 + 0.75 * diff[..., None]) + 0.25 * spec[..., None]
        img[hit] = col[hit]
    elif mode == "normals":
        img[hit] = (n[hit] * 0.5 + 0.5)
    elif mode == "depth":
        if hit.any():
            d = result.depth[hit]
            lo, hi_ = float(d.min()), float(d.max())
            t = 1 - (result.depth - lo) / max(hi_ - lo, 1e-9)
            g = 0.15 + 0.85 * t
            img[hit] = np.stack([g, g, g], -1)[hit]
    elif mode == "cost":
        s = result.steps.astype(np.float32)
        img = _heat(s / max(float(s.max()), 1.0))
    elif mode == "error":
        if ground_truth is None:
            raise ValueError("The error render mode needs a ground-truth SDF.")
        if hit.any():
            err = np.abs(_eval0(ground_truth, result.positions[hit].astype(np.float32)))
            scale = max(float(np.percentile(err, 99)), 1e-6)
            img[hit] = _heat(err / scale)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def render(evaluator, camera: Camera, mode: str = "shaded", bounds=((-1, -1, -1), (1, 1, 1)),
           ground_truth: Callable | None = None, **trace_kw) -> tuple[np.ndarray, TraceResult]:
    res = sphere_trace(evaluator, camera, bounds=bounds, **trace_kw)
    return shade(res, mode, ground_truth), res


# ---------------------------------------------------------------------- VolSDF
def laplace_cdf_density(sdf: np.ndarray, beta: float) -> np.ndarray:
    """VolSDF density sigma = alpha * Psi_beta(-d) with alpha = 1/beta, Psi the Laplace(0, beta) CDF."""
    if beta <= 0:
        raise ValueError("beta must be positive.")
    s = -np.asarray(sdf, dtype=np.float64)
    psi = np.where(s <= 0, 0.5 * np.exp(np.minimum(s, 0) / beta), 1 - 0.5 * np.exp(-np.maximum(s, 0) / beta))
    return (psi / beta).astype(np.float32)


@dataclass
class VolumeResult:
    image: np.ndarray  # (H, W, 3) uint8
    opacity: np.ndarray  # (H, W)
    depth: np.ndarray  # (H, W) expected depth (nan where transparent)


def volume_render(evaluator, camera: Camera, beta: float = 0.02, samples: int = 64,
                  bounds=((-1, -1, -1), (1, 1, 1)), cancel: Any = None, base_color=(0.85, 0.75, 0.55)) -> VolumeResult:
    """Volume-render the SDF turned into density with VolSDF's Laplace CDF (stratified midpoints).

    C = sum_i T_i (1 - exp(-sigma_i delta_i)) c_i, T_i = exp(-sum_{j<i} sigma_j delta_j); the colour
    is shaded by the normal at the expected depth.
    """
    from app.api import Cancelled

    from .fields import _is_cancelled

    bounds = np.asarray(bounds, dtype=np.float32)
    o, d = camera.rays()
    tn, tf = ray_box(o, d, bounds)
    valid = np.flatnonzero(tn < tf)
    H, W = camera.height, camera.width
    opacity = np.zeros(H * W, np.float32)
    depth = np.full(H * W, np.nan, np.float32)
    img = np.broadcast_to(BACKGROUND, (H * W, 3)).copy()
    if valid.size:
        u = (np.arange(samples, dtype=np.float32) + 0.5) / samples
        tv = tn[valid, None] + (tf[valid] - tn[valid])[:, None] * u[None]
        delta = ((tf[valid] - tn[valid]) / samples)[:, None]
        pts = o[valid, None] + tv[..., None] * d[valid, None]
        sdf = np.empty(tv.shape, np.float32)
        flat = pts.reshape(-1, 3)
        chunk = 65536
        out = sdf.reshape(-1)
        for s0 in range(0, len(flat), chunk):
            if _is_cancelled(cancel):
                raise Cancelled("rendering cancelled")
            out[s0: s0 + chunk] = _eval0(evaluator, flat[s0: s0 + chunk])
        sigma = laplace_cdf_density(sdf, beta)
        tau = sigma * delta
        trans = np.exp(-np.concatenate([np.zeros((len(valid), 1), np.float32), np.cumsum(tau, 1)[:, :-1]], 1))
        w = trans * (1 - np.exp(-tau))
        acc = w.sum(1)
        opacity[valid] = acc
        ed = (w * tv).sum(1) / np.maximum(acc, 1e-6)
        depth[valid] = np.where(acc > 1e-3, ed, np.nan)
        show = acc > 1e-3
        if show.any():
            p = o[valid[show]] + ed[show, None] * d[valid[show]]
            nrm = surface_normals(evaluator, p.astype(np.float32))
            fwd, right, up = camera.basis()
            light = -fwd + 0.6 * up + 0.4 * right
            light /= np.linalg.norm(light)
            diff = np.clip(nrm @ light, 0, 1)
            col = np.asarray(base_color, np.float32)[None] * (0.2 + 0.8 * diff[:, None])
            a = acc[show, None]
            img[valid[show]] = a * col + (1 - a) * BACKGROUND[None]
    return VolumeResult((np.clip(img, 0, 1) * 255).astype(np.uint8).reshape(H, W, 3), opacity.reshape(H, W), depth.reshape(H, W))
