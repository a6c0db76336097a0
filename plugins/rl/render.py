"""Frames for classic-control observations drawn with numpy (no pygame, no Qt).

``render_frame(env_id, obs)`` draws CartPole (cart, pole, track) or Acrobot (two links) from the
observation vector alone, so trajectories need not store frames. Shapes are anti-aliased by
evaluating a signed distance per pixel inside each shape's bounding box.
"""

from __future__ import annotations

import numpy as np

BG = np.array([255, 255, 255], np.float32)


class Canvas:
    def __init__(self, width: int, height: int, bg=BG):
        self.w, self.h = int(width), int(height)
        self.img = np.empty((self.h, self.w, 3), np.float32)
        self.img[:] = bg

    def _blend(self, y0, y1, x0, x1, cover, color):
        if cover.size == 0:
            return
        c = np.asarray(color, np.float32)
        region = self.img[y0:y1, x0:x1]
        region[:] = region * (1 - cover[..., None]) + c * cover[..., None]

    def _box(self, xmin, xmax, ymin, ymax, pad=2):
        x0 = int(max(0, np.floor(xmin) - pad))
        x1 = int(min(self.w, np.ceil(xmax) + pad + 1))
        y0 = int(max(0, np.floor(ymin) - pad))
        y1 = int(min(self.h, np.ceil(ymax) + pad + 1))
        return x0, x1, y0, y1

    def segment(self, p, q, width, color):
        """Thick line with round caps from p to q (pixel coordinates, y down)."""
        (px, py), (qx, qy) = p, q
        r = width / 2
        x0, x1, y0, y1 = self._box(min(px, qx) - r, max(px, qx) + r, min(py, qy) - r, max(py, qy) + r)
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dx, dy = qx - px, qy - py
        L2 = dx * dx + dy * dy
        t = np.clip(((xx - px) * dx + (yy - py) * dy) / L2, 0, 1) if L2 > 0 else np.zeros_like(xx)
        d = np.hypot(xx - (px + t * dx), yy - (py + t * dy)) - r
        self._blend(y0, y1, x0, x1, np.clip(0.5 - d, 0, 1), color)

    def rect(self, cx, cy, w, h, color):
        x0, x1, y0, y1 = self._box(cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        d = np.maximum(np.abs(xx - cx) - w / 2, np.abs(yy - cy) - h / 2)
        self._blend(y0, y1, x0, x1, np.clip(0.5 - d, 0, 1), color)

    def circle(self, cx, cy, r, color):
        x0, x1, y0, y1 = self._box(cx - r, cx + r, cy - r, cy + r)
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        d = np.hypot(xx - cx, yy - cy) - r
        self._blend(y0, y1, x0, x1, np.clip(0.5 - d, 0, 1), color)

    def image(self) -> np.ndarray:
        return np.clip(self.img + 0.5, 0, 255).astype(np.uint8)


def render_cartpole(obs, width: int = 360, height: int = 240) -> np.ndarray:
    """CartPole-v1: obs = (x, x_dot, theta, theta_dot); track +-2.4, pole length 1 (2 * 0.5)."""
    x, _, theta, _ = (float(v) for v in np.asarray(obs, np.float64)[:4])
    c = Canvas(width, height)
    world = 4.8
    scale = width / world
    track_y = height * 0.72
    cart_w, cart_h = 0.5 * scale * 0.9, 0.3 * scale * 0.9
    pole_len = 1.0 * scale
    cx = width / 2 + x * scale
    # limits of the track (episode ends beyond +-2.4)
    for lim in (-2.4, 2.4):
        lx = width / 2 + lim * scale
        c.segment((lx, track_y - 14), (lx, track_y + 14), 2, (200, 80, 80))
    c.segment((0, track_y), (width, track_y), 2, (60, 60, 60))
    c.rect(cx, track_y - cart_h / 2 + 2, cart_w, cart_h, (40, 40, 40))
    for wx in (cx - cart_w * 0.3, cx + cart_w * 0.3):
        c.circle(wx, track_y + 2, cart_h * 0.18, (90, 90, 90))
    axle = (cx, track_y - cart_h * 0.75)
    tip = (cx + pole_len * np.sin(theta), axle[1] - pole_len * np.cos(theta))
    c.segment(axle, tip, max(3.0, 0.1 * scale), (202, 152, 101))
    c.circle(axle[0], axle[1], max(2.5, 0.04 * scale), (129, 132, 203))
    return c.image()


def render_acrobot(obs, width: int = 240, height: int = 240) -> np.ndarray:
    """Acrobot-v1: obs = (cos t1, sin t1, cos t2, sin t2, dt1, dt2); links of length 1 hanging down."""
    o = np.asarray(obs, np.float64)
    t1 = np.arctan2(o[1], o[0])
    t2 = np.arctan2(o[3], o[2])
    c = Canvas(width, height)
    s = min(width, height) / 4.6
    ox, oy = width / 2, height / 2
    p1 = (ox + s * np.sin(t1), oy + s * np.cos(t1))
    p2 = (p1[0] + s * np.sin(t1 + t2), p1[1] + s * np.cos(t1 + t2))
    c.segment((0, oy - s), (width, oy - s), 1.5, (200, 80, 80))  # goal line: tip above 1 link length
    c.segment((ox, oy), p1, 0.18 * s, (0, 150, 150))
    c.segment(p1, p2, 0.18 * s, (0, 150, 150))
    for p in ((ox, oy), p1):
        c.circle(p[0], p[1], 0.1 * s, (200, 200, 0))
    return c.image()


def render_bars(obs, width: int = 240, height: int = 160) -> np.ndarray:
    """Fallback for other environments: the observation vector as bars (clipped to +-3)."""
    o = np.clip(np.asarray(obs, np.float64).reshape(-1), -3, 3)
    c = Canvas(width, height)
    n = max(1, o.size)
    bw = width / n
    mid = height / 2
    c.segment((0, mid), (width, mid), 1, (120, 120, 120))
    for i, v in enumerate(o):
        h = abs(v) / 3 * (height / 2 - 6)
        c.rect((i + 0.5) * bw, mid - np.sign(v) * h / 2, bw * 0.7, max(h, 1), (31, 119, 180))
    return c.image()


RENDERERS = {"CartPole-v1": render_cartpole, "CartPole-v0": render_cartpole, "Acrobot-v1": render_acrobot}


def can_render(env_id: str) -> bool:
    return env_id in RENDERERS


def render_frame(env_id: str, obs, **kw) -> np.ndarray:
    """(H, W, 3) uint8 image of an observation of ``env_id``."""
    return RENDERERS.get(env_id, render_bars)(obs, **kw)
