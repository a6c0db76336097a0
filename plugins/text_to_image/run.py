"""The run function of the ``text-to-image`` tool: adapts :func:`compute.generate` to the studio's
RunContext (progress, preview, cancel, metrics, device) and returns typed results.

Results, in order: the grid (seed-grid sweeps only), one image per generated image (metadata: all
parameters, its seed, model path and hash, backend, device, warnings), then the trajectory as a
table (step, timestep, sigma, latent norm, x0 norm), a filmstrip image of the predicted-x0
thumbnails, and the full trajectory as an ``.npz`` file for the trajectory viewer.
"""

from __future__ import annotations

from typing import Any

from app.api import FileResult, ImageResult, TableResult

from .plugin import SETTINGS_SECTION

TRAJECTORY_FORMAT = "implicit-studio-trajectory-1"


def parse_loras(text: str) -> list[tuple[str, float]]:
    """``"a.safetensors:0.8\\nb.safetensors"`` -> ``[("a.safetensors", 0.8), ("b.safetensors", 1.0)]``."""
    from app.api import ParamError

    out = []
    for raw in (text or "").replace(";", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        path, weight = line, 1.0
        head, sep, tail = line.rpartition(":")
        if sep and head and "/" not in tail and "\\" not in tail:
            try:
                weight = float(tail)
                path = head
            except ValueError:
                pass
        if not (-10.0 <= weight <= 10.0):
            raise ParamError(f"LoRAs: weight {weight} of {path} is outside -10..10", "loras")
        out.append((path, weight))
    return out


def filmstrip(trajectory, image_index: int = 0, max_frames: int = 25, scale: int = 4):
    """The predicted-x0 thumbnails of one image across the steps, side by side (uint8)."""
    import numpy as np

    thumbs = trajectory.thumbnails[:, image_index]
    t = thumbs.shape[0]
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    frames = [np.repeat(np.repeat(thumbs[i], scale, 0), scale, 1) for i in idx]
    gap = np.full((frames[0].shape[0], 2, 3), 255, np.uint8)
    parts = []
    for f in frames:
        parts += [f, gap]
    return np.concatenate(parts[:-1], axis=1)


def run_text_to_image(ctx, *, prompt: str = "", negative_prompt: str = "", seed: int = -1, steps: int = 25,
                      guidance: float = 5.0, scheduler: str = "default", schedule: str = "default", preset: str = "none",
                      width: int = 0,
                      height: int = 0, batch_size: int = 1, batch_count: int = 1, init_image: Any = None,
                      strength: float = 0.75, model: str = "default", backend: str = "torch", sweep: str = "none",
                      sweep_values: str = "", clip_skip: int = 0, loras: str = "", record_trajectory: bool = True,
                      thumbnails: str = "fast", attention_slicing: bool = False, vae_tiling: bool = False,
                      cpu_offload: bool = False, model_config: str | None = None):
    from plugins.diffusion_common.bundled import bundled_model
    from plugins.diffusion_common.models import LoadOptions

    from . import compute

    if seed is None or seed == -1:
        seed = ctx.seed
    params = compute.GenerationParams(
        prompt=prompt, negative_prompt=negative_prompt, seed=int(seed), steps=steps, guidance=guidance,
        scheduler=scheduler, schedule=schedule, width=width or None, height=height or None, batch_size=batch_size,
        batch_count=batch_count, init_image=init_image, strength=strength, clip_skip=clip_skip, preset=preset,
        loras=parse_loras(loras))
    options = LoadOptions(attention_slicing=attention_slicing, vae_tiling=vae_tiling, cpu_offload=cpu_offload,
                          config=model_config or None)
    use_student, params, student_note = compute.pick_student(
        model, params, bundled_model(compute.STUDENT_NAME, ctx.resources_dir))
    model_path = ctx.resolve_model(compute.STUDENT_NAME if use_student else model)
    kwargs = dict(
        cache_dir=ctx.cache_dir, shipped_exports=[bundled_model("default-onnx", ctx.resources_dir)],
        backend=backend, device=ctx.device, dtype=ctx.dtype, providers=tuple(ctx.ort_providers),
        on_preview=ctx.preview, is_cancelled=lambda: ctx.cancelled, record_trajectory=record_trajectory,
        thumbnails=thumbnails, load_options=options, allow_pickle=bool(ctx.setting(SETTINGS_SECTION, "allow_pickle", False)),
        ort_threads=int(ctx.setting(SETTINGS_SECTION, "ort_threads", 0) or 0),
        on_metrics=lambda step, values: [ctx.log_metric(k, step, v) for k, v in values.items()],
    )
    results: list = []
    if sweep and sweep != "none":
        grid, runs = compute.sweep(params, sweep, sweep_values, model_path, on_progress=ctx.progress, **kwargs)
        values = compute.parse_sweep_values(sweep, sweep_values)
        results.append(ImageResult(image=grid, label=f"{sweep} grid",
                                   metadata={"role": "grid", "sweep": sweep, "values": values,
                                             **_common(runs[0]), "seed": runs[0].seeds[0]}))
        for value, run in zip(values, runs):
            results.append(ImageResult(image=run.images[0], label=f"{sweep} {value}",
                                       metadata={**run.metadata(0), "sweep": sweep, "warnings": run.warnings}))
        traj_runs = runs
    else:
        run = compute.generate(params, model_path, on_progress=ctx.progress, **kwargs)
        if student_note:
            run.warnings.insert(0, student_note)
        for w in run.warnings:
            ctx.logger.warning("%s", w)
        for i, img in enumerate(run.images):
            results.append(ImageResult(image=img, label=f"seed {run.seeds[i]}",
                                       metadata={**run.metadata(i), "warnings": run.warnings,
                                                 "timings": {k: round(v, 4) for k, v in run.timings.items()}}))
        traj_runs = [run]
    if record_trajectory:
        for run in traj_runs:
            tr = run.trajectory
            if tr is None:
                continue
            meta = {"role": "trajectory", "format": TRAJECTORY_FORMAT, "seeds": run.seeds, **tr.meta}
            results.append(TableResult(columns=("step", "timestep", "sigma", "latent_norm", "x0_norm"),
                                       rows=tr.rows(), label="trajectory", metadata=meta))
            if tr.thumbnails.shape[2] > 1:
                results.append(ImageResult(image=filmstrip(tr), label="trajectory filmstrip",
                                           metadata={"role": "trajectory-filmstrip", "seed": run.seeds[0],
                                                     # the generated picture's size, not the strip's
                                                     "width": run.params.get("width"),
                                                     "height": run.params.get("height")}))
            results.append(FileResult(data=tr.to_bytes(), ext=".npz", label="trajectory data", metadata=meta))
    return results


def _common(run) -> dict:
    return {k: v for k, v in run.metadata(0).items() if k not in ("seed", "image_index")}
