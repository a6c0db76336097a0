"""Fitting INRs as generator loops (compute layer: torch, no Qt).

``fit_image_steps`` and ``fit_sdf_steps`` are generators: each step yields a :class:`FitStep`
and the generator *returns* a :class:`FitResult` (``StopIteration.value``); :func:`run_fit` drives
one to the end. Both take an optional context object with any of

* ``progress(fraction, message)``
* ``metric(name, step, value)``  -- loss / PSNR / validation curves
* ``preview(image)``             -- uint8 RGB preview while fitting
* ``cancelled``                  -- bool attribute, or a callable returning bool

Cancelling stops at the next step and keeps the best weights seen so far.

Both fit on ``device`` (a torch device name, the run's ``ctx.device``; default the CPU) in
``dtype`` (the run's ``ctx.dtype``): float32 trains as it always has; float16 or bfloat16 train
in mixed precision, the forward passes under autocast in that dtype with the weights, the
optimiser state and the losses in float32 (float16 with a gradient scaler). Sampling stays on the
CPU (its seeded generators), so a seed draws the same batches and initial weights on every device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from .models import INRConfig, build_model, preset

DEFAULT_LR = {"siren": 1e-4, "relu": 1e-3, "softplus": 5e-4, "wire": 5e-3, "gauss": 1e-3, "hashgrid": 1e-2}


def default_lr(config: INRConfig) -> float:
    """Adam learning rates that work for each family (SIREN's paper value 1e-4 suits 256-wide
    networks; narrow ones fit much faster at 1e-3, measured here)."""
    if config.arch == "siren":
        return 1e-3 if max(config.hidden_widths()) <= 128 else 1e-4
    return DEFAULT_LR.get(config.arch, 1e-3)


class _Ctx:
    """Calls whatever the given context supports; missing methods are no-ops."""

    def __init__(self, ctx: Any):
        self.ctx = ctx

    def _call(self, name: str, *args):
        fn = getattr(self.ctx, name, None) if self.ctx is not None else None
        if callable(fn):
            fn(*args)

    def progress(self, fraction: float, message: str = "") -> None:
        self._call("progress", float(fraction), message)

    def metric(self, name: str, step: int, value: float) -> None:
        self._call("metric", name, int(step), float(value))

    def preview(self, image: np.ndarray) -> None:
        self._call("preview", image)

    @property
    def cancelled(self) -> bool:
        if self.ctx is None:
            return False
        c = getattr(self.ctx, "cancelled", False)
        if callable(c):
            c = c()
        if not c:
            c2 = getattr(self.ctx, "is_cancelled", None)
            if c2 is not None:
                c = c2() if callable(c2) else c2
        return bool(c)


@dataclass
class FitStep:
    step: int
    loss: float
    metric: float  # PSNR (dB) for images, validation mean |error| for SDFs (nan between evaluations)
    best: float
    elapsed: float


@dataclass
class FitResult:
    model: Any  # INRField with the best weights loaded, in eval mode
    steps: int
    best_step: int
    best_metric: float  # best PSNR (images) or lowest validation error (SDFs)
    seconds: float
    cancelled: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    reached_target_step: int | None = None
    reached_target_seconds: float | None = None


def run_fit(gen: Generator[FitStep, None, FitResult], on_step: Callable[[FitStep], None] | None = None) -> FitResult:
    """Drive a fitting generator to its end and return its :class:`FitResult`."""
    while True:
        try:
            s = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(s)


class _Arithmetic:
    """Where and in what a fit computes: the device, autocast for float16/bfloat16 (weights and
    losses stay float32) and a gradient scaler for float16; float32 takes the plain path."""

    def __init__(self, device: Any = None, dtype: Any = None):
        import torch

        self.device = torch.device(device or "cpu")
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None) if dtype in ("float32", "float16", "bfloat16") else None
            if dtype is None:
                raise ValueError("dtype must be float32, float16 or bfloat16")
        self.dtype = dtype or torch.float32
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, not {self.dtype}")
        self.mixed = self.dtype != torch.float32
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def autocast(self):
        import contextlib

        import torch

        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, opt, loss) -> None:
        """Backward and optimiser step (scaled for float16)."""
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()


def _config_for(arch: str | INRConfig, in_features: int, out_features: int, **overrides) -> INRConfig:
    if isinstance(arch, INRConfig):
        return arch.validate()
    return preset(arch, in_features, out_features, **overrides)


# ---------------------------------------------------------------------- images
def fit_image_steps(image: np.ndarray, arch: str | INRConfig = "siren", steps: int = 500, lr: float | None = None,
                    batch_size: int | None = None, ctx: Any = None, seed: int = 0, preview_every: int = 25,
                    target_psnr: float | None = None, stop_at_target: bool = False,
                    config_overrides: dict | None = None, device: Any = None,
                    dtype: Any = None) -> Generator[FitStep, None, FitResult]:
    """Fit a 2D INR to ``image`` ((H, W, C) or (H, W) floats in [0, 1]) on ``device`` in
    ``dtype`` (module docstring)."""
    import torch

    from .image2d import image_targets, psnr as psnr_fn

    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or min(img.shape[:2]) < 2:
        raise ValueError(f"Expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {img.shape}.")
    if not np.isfinite(img).all():
        raise ValueError("The image holds NaN/Inf values.")
    if img.max() > 1.0 + 1e-6 or img.min() < -1e-6:
        raise ValueError("Image values must lie in [0, 1] (divide 8-bit images by 255).")
    H, W, C = img.shape
    overrides = dict(config_overrides or {})
    if not isinstance(arch, INRConfig):
        overrides.setdefault("value_range", [-1.0, 1.0] if arch in ("siren", "wire", "gauss") else [0.0, 1.0])
    config = _config_for(arch, 2, C, **overrides)
    if config.in_features != 2 or config.out_features != C:
        raise ValueError(f"The config maps {config.in_features}->{config.out_features}; this image needs 2->{C}.")
    config.kind = "image"
    config.image_size = [H, W]
    ar = _Arithmetic(device, dtype)
    torch.manual_seed(seed)
    model = build_model(config, seed=seed).to(ar.device)
    coords, values = image_targets(img, config.value_range)
    X = torch.from_numpy(coords).to(ar.device)
    Y = torch.from_numpy(values).to(ar.device)
    n = len(X)
    full = batch_size is None or batch_size >= n
    opt = torch.optim.Adam(model.parameters(), lr=lr or default_lr(config))
    lo_v, hi_v = (float(v) for v in config.value_range)
    span = (hi_v - lo_v) ** 2
    c = _Ctx(ctx)
    gen = torch.Generator().manual_seed(seed)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_psnr, best_step = -math.inf, 0
    history: dict[str, list[float]] = {"loss": [], "psnr": []}
    t0 = time.perf_counter()
    reached_step = reached_s = None
    cancelled = False
    step = 0
    for step in range(1, steps + 1):
        if c.cancelled:
            cancelled = True
            step -= 1
            break
        if full:
            xb, yb = X, Y
        else:
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(ar.device)
            xb, yb = X[idx], Y[idx]
        with ar.autocast():
            pred = model(xb).float()
        loss = torch.mean((pred - yb) ** 2)
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"The loss became {lv} at step {step}; lower the learning rate.")
        # PSNR of the image as shown (values clipped to the range) for the weights before this update
        with torch.no_grad():
            shown = float(torch.mean((pred.detach().clamp(lo_v, hi_v) - yb) ** 2))
        p = 10 * math.log10(span / max(shown, 1e-20))
        history["loss"].append(lv)
        history["psnr"].append(p)
        if p > best_psnr:
            best_psnr, best_step = p, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        opt.zero_grad(set_to_none=True)
        ar.step(opt, loss)
        elapsed = time.perf_counter() - t0
        if target_psnr is not None and reached_step is None and p >= target_psnr:
            reached_step, reached_s = step, elapsed
        c.metric("loss", step, lv)
        c.metric("psnr", step, p)
        c.progress(step / steps, f"step {step}/{steps}  PSNR {p:.2f} dB")
        if preview_every and (step % preview_every == 0 or step == steps) and full:
            from .image2d import to_unit

            prev = to_unit(pred.detach().cpu().numpy().reshape(H, W, C), config.value_range)
            c.preview((prev * 255).astype(np.uint8))
        yield FitStep(step, lv, p, best_psnr, elapsed)
        if stop_at_target and reached_step is not None:
            break
    # the last update has not been scored yet: score it with one evaluation when full-batch
    if full and step > 0:
        with torch.no_grad(), ar.autocast():
            shown = float(torch.mean((model(X).float().clamp(lo_v, hi_v) - Y) ** 2))
        p = 10 * math.log10(span / max(shown, 1e-20))
        if p > best_psnr:
            best_psnr, best_step, best_state = p, step, {k: v.detach().clone() for k, v in model.state_dict().items()}
    elif not full:
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with torch.no_grad(), ar.autocast():
            pred_all = _predict(model, X)
        best_psnr = psnr_fn(np.clip((pred_all - config.value_range[0]) / (config.value_range[1] - config.value_range[0]), 0, 1),
                            img.reshape(-1, C))
        best_step = step
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, step, best_step, best_psnr, time.perf_counter() - t0, cancelled, history,
                     reached_step, reached_s)


def _predict(model, X, chunk: int = 65536) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for s in range(0, len(X), chunk):
            outs.append(model(X[s: s + chunk]).float().cpu().numpy())
    return np.concatenate(outs)


# ---------------------------------------------------------------------- SDFs
class SDFTarget:
    """Ground truth for SDF fitting: an analytic shape or a mesh, with surface samples."""

    def __init__(self, shape: str | None = None, mesh: Any = None, normalize: bool = True, pool: int = 60000,
                 seed: int = 0, **params):
        from .geometry import MeshSDF, analytic_mesh, analytic_sdf, normalize_mesh

        self.rng = np.random.default_rng(seed)
        self.analytic = None
        self.scale, self.centre = 1.0, np.zeros(3)
        if shape is not None:
            self.analytic = analytic_sdf(shape, **params)
            self.mesh = analytic_mesh(shape, **params)
            self.name = shape
        elif mesh is not None:
            self.name = "mesh"
            self.mesh, self.scale, self.centre = normalize_mesh(mesh) if normalize else (mesh, 1.0, np.zeros(3))
        else:
            raise ValueError("Give a shape name or a mesh to fit.")
        self.source = mesh if shape is None else self.mesh  # the shape in its own frame and units
        self.watertight = bool(self.mesh.is_watertight)
        self.sdf = self.analytic if self.analytic is not None else MeshSDF(self.mesh)
        self.pool_size = pool
        self._pool = None

    def to_source_frame(self, points: np.ndarray) -> np.ndarray:
        """Points of the fitting frame (the shape centred and scaled into [-0.8, 0.8]^3) in the
        frame and units of the shape as given."""
        return np.asarray(points, np.float64) / self.scale + self.centre

    def warnings(self) -> list[str]:
        if self.analytic is None and not self.watertight:
            return ["The mesh is not watertight: inside/outside comes from the generalised winding number, "
                    "which tolerates small holes; check the fitted surface near open edges."]
        return []

    def surface(self, n: int) -> np.ndarray:
        import trimesh

        pts, _ = trimesh.sample.sample_surface(self.mesh, n, seed=int(self.rng.integers(1 << 31)))
        return np.asarray(pts, np.float32)

    def values(self, pts: np.ndarray) -> np.ndarray:
        return np.asarray(self.sdf(pts), np.float32).reshape(-1)

    def sample(self, n: int, near_fraction: float, sigma: float, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points near the surface (surface + Gaussian noise) and uniform in the bounds, with targets."""
        n_near = int(n * near_fraction)
        near = self.surface(max(n_near, 1))[:n_near]
        near = near + self.rng.normal(0, sigma, near.shape).astype(np.float32)
        uni = self.rng.uniform(bounds[0], bounds[1], (n - n_near, 3)).astype(np.float32)
        pts = np.concatenate([near, uni]).astype(np.float32)
        if self.analytic is not None:
            return pts, self.values(pts)
        if self._pool is None:
            # mesh distances are costly: compute a pool once, then draw batches from it
            m = max(self.pool_size, n)
            pn = int(m * near_fraction)
            p_near = self.surface(pn) + self.rng.normal(0, sigma, (pn, 3)).astype(np.float32)
            p_uni = self.rng.uniform(bounds[0], bounds[1], (m - pn, 3)).astype(np.float32)
            self._pool = (p_near.astype(np.float32), p_uni, self.values(p_near), self.values(p_uni))
        p_near, p_uni, v_near, v_uni = self._pool
        i = self.rng.integers(0, len(p_near), n_near)
        j = self.rng.integers(0, len(p_uni), n - n_near)
        return np.concatenate([p_near[i], p_uni[j]]), np.concatenate([v_near[i], v_uni[j]])


def fit_sdf_steps(target: SDFTarget, arch: str | INRConfig = "siren", steps: int = 500, lr: float | None = None,
                  points_per_step: int = 4096, near_fraction: float = 0.6, near_sigma: float = 0.03,
                  eikonal_weight: float = 0.0, bounds=((-1, -1, -1), (1, 1, 1)), ctx: Any = None, seed: int = 0,
                  eval_every: int = 10, preview_every: int = 25,
                  config_overrides: dict | None = None, device: Any = None,
                  dtype: Any = None) -> Generator[FitStep, None, FitResult]:
    """Fit a 3D SDF network to ``target`` with an L1 loss (+ optional eikonal term |grad f| = 1)
    on ``device`` in ``dtype`` (module docstring); the target's points are drawn on the CPU."""
    import torch

    from .geometry import sdf_colormap

    bounds = np.asarray(bounds, np.float32)
    overrides = dict(config_overrides or {})
    overrides.setdefault("bounds", bounds.tolist())
    if isinstance(arch, str) and arch == "siren":
        overrides.setdefault("w0", 15.0)
    config = _config_for(arch, 3, 1, **overrides)
    if config.in_features != 3 or config.out_features != 1:
        raise ValueError(f"An SDF network maps 3->1; this config maps {config.in_features}->{config.out_features}.")
    config.kind = "sdf"
    config.iso_level = 0.0
    config.bounds = bounds.tolist()
    ar = _Arithmetic(device, dtype)
    torch.manual_seed(seed)
    model = build_model(config, seed=seed).to(ar.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr or default_lr(config))
    c = _Ctx(ctx)
    for w in target.warnings():
        c.progress(0.0, w)
    # fixed validation set: the best weights are chosen on it
    val_p, val_v = target.sample(4096, 0.5, near_sigma, bounds)
    VX, VY = torch.from_numpy(val_p).to(ar.device), torch.from_numpy(val_v).to(ar.device)
    # preview slice through z = 0
    res = 64
    u = np.linspace(bounds[0, 0], bounds[1, 0], res, dtype=np.float32)
    v = np.linspace(bounds[0, 1], bounds[1, 1], res, dtype=np.float32)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    SX = torch.from_numpy(np.stack([uu.reshape(-1), vv.reshape(-1), np.zeros(res * res, np.float32)], -1)).to(ar.device)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_err, best_step = math.inf, 0
    history: dict[str, list[float]] = {"loss": [], "val_error": []}
    t0 = time.perf_counter()
    cancelled = False
    step = 0

    def validate() -> float:
        with torch.no_grad(), ar.autocast():
            return float(torch.mean(torch.abs(model(VX)[:, 0].float() - VY)))

    for step in range(1, steps + 1):
        if c.cancelled:
            cancelled = True
            step -= 1
            break
        pts, vals = target.sample(points_per_step, near_fraction, near_sigma, bounds)
        X = torch.from_numpy(pts).to(ar.device)
        Y = torch.from_numpy(vals).to(ar.device)
        if eikonal_weight > 0:
            X.requires_grad_(True)
        with ar.autocast():
            pred = model(X)[:, 0].float()
        loss = torch.mean(torch.abs(pred - Y))
        if eikonal_weight > 0:
            (g,) = torch.autograd.grad(pred.sum(), X, create_graph=True)
            eik = torch.mean((g.float().norm(dim=-1) - 1) ** 2)
            loss = loss + eikonal_weight * eik
        opt.zero_grad(set_to_none=True)
        ar.step(opt, loss)
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"The loss became {lv} at step {step}; lower the learning rate.")
        history["loss"].append(lv)
        c.metric("loss", step, lv)
        err = math.nan
        if step % eval_every == 0 or step == steps:
            err = validate()
            history["val_error"].append(err)
            c.metric("val_error", step, err)
            if err < best_err:
                best_err, best_step = err, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if preview_every and (step % preview_every == 0 or step == steps):
            with torch.no_grad(), ar.autocast():
                sl = model(SX)[:, 0].float().cpu().numpy().reshape(res, res)
            c.preview(sdf_colormap(sl, scale=0.5)[::-1])
        c.progress(step / steps, f"step {step}/{steps}  L1 {lv:.4f}")
        yield FitStep(step, lv, err, best_err, time.perf_counter() - t0)
    if step > 0 and (step % eval_every) != 0 and step != steps:
        err = validate()  # cancelled between evaluations: score the current weights too
        if err < best_err:
            best_err, best_step = err, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, step, best_step, best_err, time.perf_counter() - t0, cancelled, history)
