"""Run functions of the INR tools (called by the studio's job runner; heavy imports happen here).

Each takes the :class:`app.api.RunContext` first and returns api result records. The fitting
loops themselves live in :mod:`plugins.inr.fit`; this module adapts the run context to them,
writes the fitted network to disk and turns outputs into results. Everything computes where the
run says: fits on ``ctx.device`` in ``ctx.dtype`` (mixed precision below float32), renders and
bakes on ``ctx.device`` (ONNX Runtime on ``ctx.ort_providers`` for ONNX files and CPU bakes).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.api import FileResult, ImageResult, MeshResult, ParamError, TableResult, ToolError


class _CtxAdapter:
    """Presents a RunContext as the fitting loops' context (progress fraction, metric, preview,
    cancelled). Progress is not forwarded once cancelled, so the loop can stop itself and keep
    its best weights instead of being interrupted by :class:`app.api.Cancelled`.

    Progress is reported in the tool's own units (issue 28: the bar said "step 137/1000" while the
    fit said "step 55/300"): a stage's fraction maps onto ``start .. start + span`` of ``total``
    units, e.g. the optimiser steps ``0 .. steps`` of a fit whose ``total`` is ``steps + 1`` (the
    last unit: rendering and saving)."""

    def __init__(self, ctx: Any, start: float = 0.0, span: float = 100.0, total: int = 100):
        self.ctx = ctx
        self.start, self.span, self.total = start, span, max(1, int(total))

    @property
    def cancelled(self) -> bool:
        return bool(getattr(self.ctx, "cancelled", False))

    def progress(self, fraction: float, message: str = "") -> None:
        if self.ctx is None or self.cancelled:
            return
        units = self.start + self.span * max(0.0, min(1.0, fraction))
        self.ctx.progress(min(self.total, int(round(units))), self.total, message)

    def metric(self, name: str, step: int, value: float) -> None:
        fn = getattr(self.ctx, "log_metric", None)
        if fn is not None:
            fn(name, step, value)

    def preview(self, image) -> None:
        fn = getattr(self.ctx, "preview", None)
        if fn is not None:
            fn(image)


def _output_folder(ctx, save_to: str | None, kind: str, key: str) -> Path:
    """``save_to``, or a folder named by the fit's key in the plugin's data folder."""
    folder = Path(save_to) if save_to else ctx.data_dir / f"{kind}-{key[:12]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"Cannot create the output folder {folder}: {exc}") from exc
    return folder


def _image_array(image: Any) -> np.ndarray:
    arr = getattr(image, "image", image)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    return arr / 255.0 if arr.max() > 1.0 else arr


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    if max(img.shape[:2]) <= max_side:
        return img
    from PIL import Image

    s = max_side / max(img.shape[:2])
    size = (max(2, round(img.shape[1] * s)), max(2, round(img.shape[0] * s)))
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8).resize(size, Image.LANCZOS)
    out = np.asarray(im, np.float32) / 255.0
    return out[..., None] if out.ndim == 2 else out


def _arch_overrides(hidden: int, layers: int) -> dict:
    return {"hidden_features": int(hidden), "hidden_layers": int(layers)}


# ---------------------------------------------------------------------- inr-fit-image
RENDER_BYTES_PER_VALUE = 16  # coordinates, network outputs and their float copies, per pixel value


def _check_render_memory(height: int, width: int, channels: int, scale: int) -> None:
    """Refuse (before fitting) a render that would not fit in memory, naming the way around."""
    from .memory import available_memory

    def need(s: int) -> int:
        return (height * s) * (width * s) * (channels + 2) * RENDER_BYTES_PER_VALUE

    have = int(0.9 * available_memory())
    if need(scale) <= have:
        return
    fits = max((s for s in range(1, scale) if need(s) <= have), default=0)
    way = f"a render scale of {fits} at most" if fits else "a smaller max side"
    raise ParamError(f"Render scale: rendering {width * scale}x{height * scale} pixels needs about "
                     f"{need(scale) / 1e9:.1f} GB of memory, but only {have / 0.9 / 1e9:.1f} GB is available "
                     f"(free memory, or this process's limit); use {way}, or a smaller max side.", "render_scale")
def fit_image(ctx, image, arch: str = "siren", steps: int = 300, hidden: int = 64, layers: int = 3,
              lr: float = 0.0, max_side: int = 128, render_scale: int = 2, save_to: str | None = None,
              seed: int = 0):
    import torch

    from .fields import TorchEvaluator
    from .fit import fit_image_steps, run_fit
    from .image2d import psnr, render_image, save_image, ssim
    from .models import count_parameters, save_inr

    torch.manual_seed(seed)
    img = _downscale(_image_array(image), int(max_side))
    H, W, C = img.shape
    _check_render_memory(H, W, C, int(render_scale))
    overrides = _arch_overrides(hidden, layers)
    if arch == "hashgrid":
        overrides = {"hidden_features": int(hidden), "hidden_layers": 1}
    adapter = _CtxAdapter(ctx, 0, int(steps), total=int(steps) + 1)  # the optimiser's steps, then the render
    try:
        gen = fit_image_steps(img, arch, steps=int(steps), lr=lr or None, ctx=adapter, seed=int(seed),
                              preview_every=max(1, int(steps) // 20), config_overrides=overrides,
                              batch_size=None if H * W <= 262144 else 65536, device=ctx.device, dtype=ctx.dtype)
        result = run_fit(gen)
    except (ValueError, FloatingPointError) as exc:
        raise ToolError(str(exc)) from exc
    model = result.model
    ev = TorchEvaluator(model, device=ctx.device)
    native = render_image(ev, H, W)
    big = render_image(ev, H * int(render_scale), W * int(render_scale)) if render_scale > 1 else native
    p, s = psnr(native, img), ssim(native, img)
    key = hashlib.sha256(img.tobytes() + f"{arch}{steps}{hidden}{layers}{lr}{seed}".encode()).hexdigest()
    folder = _output_folder(ctx, save_to, "image", key)
    cfg_path = save_inr(model, folder / "inr-image", extra={"psnr": p, "ssim": s, "steps": result.steps})
    save_image(img, folder / "target.png")
    save_image(big, folder / "render.png")
    _CtxAdapter(ctx, int(steps) + 1, 0, total=int(steps) + 1).progress(1.0, f"PSNR {p:.2f} dB, SSIM {s:.3f}")
    meta = {"inr": str(cfg_path), "ground_truth": str(folder / "target.png"), "arch": model.config.arch,
            "psnr": round(p, 3), "ssim": round(s, 4), "render_scale": int(render_scale)}
    table = TableResult(columns=("metric", "value"), rows=[
        ("architecture", model.config.arch), ("parameters", count_parameters(model)),
        ("steps", result.steps), ("best step", result.best_step), ("PSNR (dB)", round(p, 3)),
        ("SSIM", round(s, 4)), ("fit seconds", round(result.seconds, 2)), ("cancelled", result.cancelled),
        ("image", f"{W}x{H}"), ("weights", str(cfg_path.with_suffix(".safetensors")))], label="metrics")
    return [
        ImageResult(image=big, label="render", metadata=meta),
        FileResult(path=str(cfg_path.with_suffix(".safetensors")), ext=".safetensors", label="weights", metadata=meta),
        table,
        _curves(result.history, (("loss", "loss"), ("psnr", "PSNR (dB)"))),
    ]


# ---------------------------------------------------------------------- inr-fit-sdf
CHAMFER_METHOD = ("symmetric mean surface distance: 20,000 points sampled on each mesh, each point's exact "
                  "distance to the nearest triangle of the other, the two means averaged; in the input's units")

def _bake_and_mesh(adapter: _CtxAdapter, model_or_eval, bounds, resolution: int, iso: float = 0.0, inside="negative",
                   weights_key: str | None = None, device: str = "cpu"):
    from .fields import GridCache, GridTooLarge, bake_progressive, check_grid_memory, make_evaluator
    from .geometry import marching_cubes

    try:
        check_grid_memory(int(resolution))
    except GridTooLarge as exc:
        raise ToolError(str(exc)) from exc
    ev = make_evaluator(model_or_eval, backend="auto", device=device)
    levels = sorted({r for r in (32, 64, 128, 256) if r < resolution} | {int(resolution)})
    grid = None
    for level in bake_progressive(ev, bounds, levels, iso=iso, cache=GridCache() if weights_key else None,
                                  weights_key=weights_key, progress=lambda f, m: adapter.progress(f, m)):
        grid = level.grid
    try:
        mesh = marching_cubes(grid, bounds, iso=iso, inside=inside)
    except ValueError as exc:
        raise ToolError(str(exc)) from exc
    return ev, grid, mesh


def fit_sdf(ctx, mesh: str | None = None, shape: str = "torus", arch: str = "siren", steps: int = 300,
            hidden: int = 64, layers: int = 3, lr: float = 0.0, points: int = 4096, eikonal: float = 0.0,
            resolution: int = 96,
            save_to: str | None = None, seed: int = 0):
    import torch

    from .fit import SDFTarget, fit_sdf_steps, run_fit
    from .geometry import Mesh, chamfer_and_normals, export_mesh, load_mesh
    from .image2d import save_image
    from .models import count_parameters, save_inr, weights_hash
    from .render import Camera, render

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    try:
        target = SDFTarget(mesh=load_mesh(mesh), seed=int(seed)) if mesh else SDFTarget(shape=shape, seed=int(seed))
    except (ValueError, FileNotFoundError) as exc:
        raise ToolError(str(exc)) from exc
    warnings = target.warnings()
    for w in warnings:
        ctx.logger.warning(w)
    bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
    units = int(steps) + 2  # the optimiser's steps, the bake, then the mesh, metrics and render
    adapter = _CtxAdapter(ctx, 0, int(steps), total=units)
    overrides = _arch_overrides(hidden, layers)
    if arch == "hashgrid":
        overrides = {"hidden_features": int(hidden), "hidden_layers": 1}
    try:
        result = run_fit(fit_sdf_steps(target, arch, steps=int(steps), lr=lr or None, points_per_step=int(points),
                                       eikonal_weight=float(eikonal), bounds=bounds, ctx=adapter, seed=int(seed),
                                       preview_every=max(1, int(steps) // 20), config_overrides=overrides,
                                       device=ctx.device, dtype=ctx.dtype))
    except (ValueError, FloatingPointError) as exc:
        raise ToolError(str(exc)) from exc
    model = result.model
    whash = weights_hash(model)
    bake_adapter = _CtxAdapter(ctx, int(steps), 1, total=units)
    ev, grid, fitted = _bake_and_mesh(bake_adapter, model, bounds, int(resolution), weights_key=whash,
                                      device=ctx.device)
    # the network works in a frame where the shape is centred and scaled into [-0.8, 0.8]^3; the
    # mesh goes back to the input's frame and units, and is compared with the input there
    m = Mesh(target.to_source_frame(fitted.vertices).astype(np.float32), fitted.faces, fitted.normals)
    frame = {"scale": float(target.scale), "centre": [float(c) for c in target.centre],
             "meaning": "input = network / scale + centre"}
    folder = _output_folder(ctx, save_to, "sdf", whash)
    metrics = chamfer_and_normals(m, target.source, n=20000, seed=int(seed))
    cfg_path = save_inr(model, folder / "inr-sdf", extra={"val_error": result.best_metric, **metrics,
                                                           "chamfer_units": "input", "frame": frame})
    export_mesh(m, folder / "mesh.ply")
    export_mesh(m, folder / "mesh.obj")
    export_mesh(target.source, folder / "reference.ply")
    cam = Camera.orbit(distance=2.8, azimuth=45, elevation=30, width=192, height=192)
    img, _ = render(ev, cam, mode="shaded", bounds=bounds, max_steps=64, eps=2e-3)
    save_image(img, folder / "render.png")
    _CtxAdapter(ctx, units, 0, total=units).progress(1.0, f"Chamfer {metrics['chamfer']:.4f}")
    meta = {"inr": str(cfg_path), "reference_mesh": str(folder / "reference.ply"),
            "bounds": [target.to_source_frame(b).tolist() for b in bounds], "network_bounds": bounds.tolist(),
            "frame": frame, "iso_level": 0.0, "arch": model.config.arch, "chamfer": round(metrics["chamfer"], 6),
            "chamfer_units": "input", "chamfer_method": CHAMFER_METHOD,
            "normal_consistency": round(metrics["normal_consistency"], 5), "source": mesh or shape,
            "normalised_scale": float(target.scale), "warnings": warnings}
    table = TableResult(columns=("metric", "value"), rows=[
        ("architecture", model.config.arch), ("parameters", count_parameters(model)), ("steps", result.steps),
        ("best step", result.best_step), ("validation |error|", round(result.best_metric, 6)),
        ("Chamfer distance (input units)", round(metrics["chamfer"], 6)),
        ("Chamfer method", CHAMFER_METHOD),
        ("normal consistency", round(metrics["normal_consistency"], 5)), ("faces", int(len(m.faces))),
        ("grid", f"{resolution}^3"), ("evaluator", getattr(ev, "backend", "?")),
        ("seconds", round(time.perf_counter() - t0, 2)), ("cancelled", result.cancelled),
        ("weights", str(cfg_path.with_suffix(".safetensors")))], label="metrics")
    return [
        MeshResult(vertices=m.vertices, faces=m.faces, normals=m.normals, label="mesh", metadata=meta),
        ImageResult(image=img, label="render", metadata=meta),
        FileResult(path=str(cfg_path.with_suffix(".safetensors")), ext=".safetensors", label="weights", metadata=meta),
        table,
        _curves(result.history, (("loss", "loss"),)),
    ]


def _curves(history: dict, columns: tuple[tuple[str, str], ...], max_rows: int = 500) -> TableResult:
    """The fit's curves as a table of steps (the window draws such a table as curves): every
    step, or ``max_rows`` evenly spaced ones and the last for a long fit."""
    n = min(len(history.get(key, ())) for key, _ in columns)
    every = max(1, -(-n // max_rows))
    steps = list(range(0, n, every))
    if n and steps[-1] != n - 1:
        steps.append(n - 1)
    rows = [(i + 1, *(round(float(history[key][i]), 6) for key, _ in columns)) for i in steps]
    return TableResult(columns=("step", *(title for _, title in columns)), rows=rows, label="curves")


# ---------------------------------------------------------------------- inr-render (open any INR)
def render_inr(ctx, inr: str, config: str | None = None, width: int = 256, height: int = 256, zoom: float = 1.0,
               center_x: float = 0.0, center_y: float = 0.0, mode: str = "shaded", resolution: int = 96,
               azimuth: float = 45.0, elevation: float = 30.0, latent_codes: str | None = None,
               latent_index: int = 0):
    from .fields import make_evaluator
    from .image2d import render_image, zoom_window
    from .loaders import INRLoadError, open_inr
    from .models import INRConfig, INRConfigError, weights_hash
    from .render import Camera, render

    try:
        cfg = INRConfig.from_json(Path(config).read_text()) if config else None
        loaded = open_inr(inr, config=cfg, latent_codes=latent_codes or None, latent_index=int(latent_index),
                          providers=ctx.ort_providers)
    except (INRLoadError, INRConfigError, ValueError, FileNotFoundError) as exc:
        raise ToolError(str(exc)) from exc
    c = loaded.config
    meta = {"inr": str(inr), "arch": c.arch, "format": loaded.info.get("format", "")}
    if latent_codes:
        meta.update(latent_codes=str(latent_codes), latent_index=int(latent_index))
    elif c.latent_dim:
        warning = (f"this decoder is conditioned on a {c.latent_dim}-value latent code (DeepSDF-style) and no latent "
                   "codes file was given, so it renders the zero code, which is not any trained shape: give the "
                   "latent codes file (LatentCodes/latest.pth) and the shape's index")
        ctx.logger.warning("%s", warning)
        meta["warnings"] = [warning]
    if loaded.guess is not None:
        meta["guess"] = loaded.guess.summary()
        ctx.logger.info("architecture guessed: %s", loaded.guess.summary())
    if c.in_features == 2:
        ev = (make_evaluator(loaded.model, backend="torch", device=ctx.device) if hasattr(loaded.model, "parameters")
              else loaded.model)
        win = zoom_window((center_x, center_y), zoom, aspect=width / height)
        img = render_image(ev, int(height), int(width), window=win)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        meta["window"] = list(win)
        return [ImageResult(image=img, label="render", metadata=meta)]
    if c.in_features != 3:
        raise ToolError(f"Only 2D images and 3D fields can be rendered; this INR takes {c.in_features} inputs.")
    bounds = c.domain()
    inside = "positive" if c.kind in ("occupancy", "density") else "negative"
    key = weights_hash(loaded.model) if hasattr(loaded.model, "state_dict") else None
    ev, grid, m = _bake_and_mesh(_CtxAdapter(ctx, 0, 80, total=100), loaded.model, bounds, int(resolution),
                                 iso=c.iso_level, inside=inside, weights_key=key, device=ctx.device)
    results = [MeshResult(vertices=m.vertices, faces=m.faces, normals=m.normals, label="mesh",
                          metadata={**meta, "bounds": bounds.tolist(), "iso_level": c.iso_level})]
    if c.kind == "sdf":
        cam = Camera.orbit(distance=2.8 * float(np.abs(bounds).max()), azimuth=azimuth, elevation=elevation,
                           width=int(width), height=int(height))
        img, _ = render(ev, cam, mode=mode, bounds=bounds, max_steps=96, eps=2e-3)
        results.append(ImageResult(image=img, label="render", metadata=meta))
    return results


# ---------------------------------------------------------------------- reader / writer
def read_inr(path: str):
    """Reader hook: open a native INR (json/safetensors with config, or ONNX with its metadata)."""
    from .loaders import INRLoadError, open_inr
    from .models import INRConfigError

    p = Path(path)
    if p.suffix == ".json":
        import json

        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p.name} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "implicit-studio-inr":
            raise ValueError(f"{p.name} is not an INR description")
    try:
        loaded = open_inr(p)
    except (INRLoadError, INRConfigError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    if loaded.guess is not None and p.suffix != ".json":
        raise ValueError(f"{p.name} carries no INR config; use the inr-render tool to open it with a guessed architecture")

    class _Quiet:  # a reader runs outside any run: on the CPU
        cancelled = False
        device, dtype, ort_providers = "cpu", "float32", ("CPUExecutionProvider",)
        logger = __import__("logging").getLogger("implicit_studio.inr")

        def progress(self, *a):
            pass

    return render_inr(_Quiet(), str(p), resolution=64, width=192, height=192)


def write_mesh(result, path: str) -> None:
    """Writer hook: mesh results as OBJ, PLY or STL."""
    from .geometry import Mesh, export_mesh

    m = Mesh(np.asarray(result.vertices, np.float32), np.asarray(result.faces, np.int32),
             np.asarray(result.normals if result.normals is not None else np.zeros_like(result.vertices), np.float32))
    export_mesh(m, path)
