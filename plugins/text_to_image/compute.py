"""Text-to-image (and image-to-image) generation, without Qt.

:func:`generate` runs SD-structured models (SD 1.x/2.x, the bundled model, LCM/Turbo variants)
through one sampling loop on the torch or the ONNX Runtime backend, with progress, cancel and a
live preview after every step, and records the denoising trajectory. SDXL, SD3 and FLUX models run
through their diffusers pipeline on torch, with the same callbacks via ``callback_on_step_end``.
:func:`sweep` runs one parameter over several values and assembles a labelled grid image.

Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from app.api import SEED_MAX, Cancelled, ParamError, SeedParam
from plugins.diffusion_common.errors import ModelError
from plugins.diffusion_common.onestep import STUDENT_NAME, STUDENT_STEPS
from plugins.diffusion_common.schedulers import SCHEDULE_NAMES, SCHEDULER_NAMES

_log = logging.getLogger("implicit_studio.text_to_image")

BACKENDS = ("torch", "onnx")

#: Speed presets for few-step models: scheduler, steps and guidance set together.
PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "lcm": {"scheduler": "lcm", "steps": 4, "guidance": 1.0},
    "turbo": {"scheduler": "euler-a", "steps": 1, "guidance": 0.0,
              "scheduler_overrides": {"timestep_spacing": "trailing"}},
    "dmd": {"scheduler": "lcm", "steps": 4, "guidance": 0.0},
}
PRESET_LABELS = {"none": "None", "lcm": "LCM (4 steps, guidance 1)", "turbo": "Turbo (1 step, no guidance)",
                 "dmd": "DMD2 (4 steps, no guidance)"}

SWEEP_AXES = ("seed", "guidance", "steps", "scheduler")


@dataclass
class GenerationParams:
    """Everything that decides the images. ``seed`` -1 draws a random seed (recorded in the
    result); ``width``/``height`` ``None`` take the model's native size (or the init image's).
    ``init_image`` (array, PIL image, file path or an object with ``.image``) turns on
    image-to-image with ``strength``."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 25
    guidance: float = 5.0
    scheduler: str = "default"
    schedule: str = "default"
    width: Optional[int] = None
    height: Optional[int] = None
    batch_size: int = 1
    batch_count: int = 1
    init_image: Any = None
    strength: float = 0.75
    clip_skip: int = 0
    preset: str = "none"
    loras: Sequence[tuple[str, float]] = ()
    eta: float = 0.0

    def record(self) -> dict:
        """JSON-safe parameters as recorded with the images."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "init_image":
                v = v if (v is None or isinstance(v, str)) else "<image>"
            elif f.name == "loras":
                v = [[str(p), float(w)] for p, w in v]
            out[f.name] = v
        return out


@dataclass
class GenerationResult:
    """Images (``H x W x 3`` uint8), the seed of each, the effective parameters, the trajectory,
    timings (seconds), warnings, and what ran (model path/hash/architecture, backend, device)."""

    images: list[np.ndarray]
    seeds: list[int]
    params: dict
    trajectory: Any = None
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    backend: str = "torch"
    device: str = "cpu"

    def metadata(self, index: int) -> dict:
        """The full record of image ``index`` (for session storage and PNG text chunks)."""
        return {"tool": "text-to-image", **self.params, "seed": self.seeds[index], "image_index": index,
                "model": self.model.get("path"), "model_hash": self.model.get("hash"),
                "model_arch": self.model.get("arch"), "backend": self.backend, "device": self.device}


ProgressFn = Callable[[int, int, str], None]
PreviewFn = Callable[[np.ndarray], None]


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def apply_preset(params: GenerationParams) -> tuple[GenerationParams, dict]:
    """Parameters with the speed preset's scheduler, steps and guidance filled in, and the
    scheduler config overrides it needs."""
    key = (params.preset or "none").strip().lower()
    if key not in PRESETS:
        raise ParamError(f"Preset: unknown speed preset {params.preset!r}; choose one of {', '.join(PRESETS)}", "preset")
    preset = dict(PRESETS[key])
    overrides = preset.pop("scheduler_overrides", {})
    return dataclasses.replace(params, preset=key, **preset), overrides


def check_size(value: int, multiple: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParamError(f"{what.capitalize()}: expected a whole number of pixels, got {value!r}", what)
    value = int(value)
    if value < multiple:
        raise ParamError(f"{what.capitalize()}: {value} is too small; this model needs at least {multiple} pixels", what)
    if value > 8192:
        raise ParamError(f"{what.capitalize()}: {value} is too large (at most 8192 pixels)", what)
    if value % multiple:
        lo = value // multiple * multiple
        raise ParamError(f"{what.capitalize()}: {value} is not a multiple of {multiple}, which this model needs; "
                         f"use {lo} or {lo + multiple}", what)
    return value


def validate(params: GenerationParams, size_multiple: int = 8, num_text_layers: int | None = None) -> list[str]:
    """Raise :class:`ParamError` for a value the model cannot take; return warnings."""
    warnings: list[str] = []
    if not isinstance(params.prompt, str) or not isinstance(params.negative_prompt, str):
        raise ParamError("Prompt: expected text", "prompt")
    if not params.prompt.strip():
        warnings.append("the prompt is empty: the model draws an unconditional sample (anything it has learnt)")
    if not (1 <= int(params.steps) <= 1000):
        raise ParamError(f"Steps: must be between 1 and 1000, got {params.steps}", "steps")
    if not (0.0 <= float(params.guidance) <= 50.0) or not math.isfinite(float(params.guidance)):
        raise ParamError(f"Guidance: must be between 0 and 50, got {params.guidance}", "guidance")
    if not (1 <= int(params.batch_size) <= 64):
        raise ParamError(f"Batch size: must be between 1 and 64, got {params.batch_size}", "batch_size")
    if not (1 <= int(params.batch_count) <= 1000):
        raise ParamError(f"Batch count: must be between 1 and 1000, got {params.batch_count}", "batch_count")
    if params.seed is None:
        raise ParamError(f"Seed: must be -1 (random) or between 0 and {SEED_MAX}, got None", "seed")
    SeedParam(name="seed").validate(params.seed)  # the studio's one seed range
    if params.scheduler not in SCHEDULER_NAMES:
        raise ParamError(f"Scheduler: unknown scheduler {params.scheduler!r}; choose one of "
                         f"{', '.join(SCHEDULER_NAMES)}", "scheduler")
    if params.schedule not in SCHEDULE_NAMES:
        raise ParamError(f"Schedule: unknown schedule {params.schedule!r}; choose one of "
                         f"{', '.join(SCHEDULE_NAMES)}", "schedule")
    if int(params.clip_skip) < 0:
        raise ParamError(f"Clip skip: must be 0 or more, got {params.clip_skip}", "clip_skip")
    if num_text_layers is not None and int(params.clip_skip) >= num_text_layers:
        raise ParamError(f"Clip skip: this model's text encoder has {num_text_layers} layers, so clip skip must be "
                         f"below {num_text_layers}; got {params.clip_skip}", "clip_skip")
    if params.init_image is not None:
        if not (0.0 < float(params.strength) <= 1.0):
            raise ParamError(f"Strength: must be above 0 and at most 1, got {params.strength}", "strength")
        if int(int(params.steps) * float(params.strength)) < 1:
            raise ParamError(f"Strength: {params.strength} of {params.steps} steps leaves no step to run; raise the "
                             "strength or the number of steps", "strength")
    for name in ("width", "height"):
        v = getattr(params, name)
        if v is not None:
            check_size(v, size_multiple, name)
    return warnings


def load_image_input(value: Any) -> np.ndarray:
    """An init image as ``H x W x 3`` uint8 from an array, PIL image, file path or result."""
    if value is None:
        raise ParamError("Init image: none given", "init_image")
    if hasattr(value, "image") and not isinstance(value, np.ndarray):
        value = value.image
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ParamError(f"Init image: file not found: {path}", "init_image")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                value = np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise ParamError(f"Init image: {path.name} is not a readable image ({exc})", "init_image") from exc
    if type(value).__module__.startswith("PIL"):
        value = np.asarray(value.convert("RGB"))
    arr = np.asarray(value)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ParamError(f"Init image: expected an RGB image, got an array of shape {arr.shape}", "init_image")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _image_to_tensor(arr: np.ndarray, width: int, height: int):
    import torch
    from PIL import Image

    if arr.shape[1] != width or arr.shape[0] != height:
        arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.LANCZOS))
    t = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    return t


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------

class _Reporter:
    """Progress (the runner adds the ETA), cancel check and live preview for one run."""

    def __init__(self, total_steps: int, on_progress: ProgressFn | None, on_preview: PreviewFn | None,
                 is_cancelled: Callable[[], bool] | None, preview_every: int, target_width: int, batches: int = 1):
        self.total = max(total_steps, 1)
        self.batches = max(int(batches), 1)
        self.per_batch = max(self.total // self.batches, 1)
        self.done = 0
        self.on_progress = on_progress
        self.on_preview = on_preview
        self.is_cancelled = is_cancelled
        self.preview_every = max(int(preview_every), 0)
        self.target_width = int(target_width)
        self.t0 = time.perf_counter()
        self.previews = 0

    def check(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled():
            raise Cancelled("text-to-image cancelled")

    def alive(self, seconds: float) -> None:
        """Inside a long step: say it is still working (and give a cancel its chance)."""
        if self.on_progress is not None:
            self.on_progress(self.done, self.total, f"step {self.done + 1}/{self.total}: working ({seconds:.0f} s)")

    def step(self, thumb0: np.ndarray | None) -> None:
        self.done += 1
        if self.on_progress is not None:
            if self.batches > 1:
                b, k = divmod(self.done - 1, self.per_batch)
                msg = f"batch {b + 1}/{self.batches}, step {k + 1}/{self.per_batch}"
            else:
                msg = f"step {self.done}/{self.total}"
            self.on_progress(self.done, self.total, msg)
        self.check()
        if self.on_preview is not None and thumb0 is not None and self.preview_every and \
                (self.done % self.preview_every == 0 or self.done == self.total):
            from plugins.diffusion_common.preview import upscale_nearest

            factor = max(1, self.target_width // max(int(thumb0.shape[1]), 1))
            self.on_preview(upscale_nearest(thumb0, factor))
            self.previews += 1


@dataclass
class _ExportOnly:
    """Stands in for a loaded torch pipeline when the ONNX backend runs an existing export."""

    info: Any
    hash: str
    onnx_dir: Any
    native_size: Optional[int] = None
    pipe: Any = None
    device: str = "cpu"


#: At most STUDENT_STEPS steps with the bundled model are drawn by its one-step student STUDENT_NAME
#: (``resources/models/default-1step``) instead; the editing tools' one-step route shares the rule.


def pick_student(model_ref: str, params: GenerationParams, student: Optional[Path]) -> tuple[bool, GenerationParams, str]:
    """Whether the bundled model's one-step student (the folder ``student``, when it is there) draws
    this request instead of the default model: text-to-image of 1-4 steps with the default model by
    its name. It draws them without guidance (distilled into it) with its own DDIM scheduler, far
    better than the teacher draws in so few steps (its model card). Image-to-image and LoRAs keep the
    teacher, as does the default model named by its folder. Returns (use the student, parameters, a
    sentence saying so or "")."""
    if str(model_ref or "default").strip() != "default" or int(params.steps) > STUDENT_STEPS or \
            params.init_image is not None or params.loras:
        return False, params, ""
    if student is None or not (Path(student) / "model_index.json").is_file():
        return False, params, ""
    note = (f"{params.steps} step{'s' if params.steps != 1 else ''} of the default model: drawn by its one-step "
            f"student ({STUDENT_NAME}) without guidance; give the default model's folder to draw the teacher itself")
    if params.negative_prompt.strip():
        note += " (the negative prompt is not used: the student draws without guidance)"
    return True, dataclasses.replace(params, guidance=1.0, scheduler="default", schedule="default"), note


@dataclass(frozen=True)
class OnnxPlaces:
    """Where the ONNX backend finds and writes exports: an explicit ``folder``, exports shipped
    with the plugin (``shipped``, such as the bundled model's), then ``cache_dir`` (the run's
    ``ctx.cache_dir``; exports are made there once per model fingerprint)."""

    folder: Optional[Path] = None
    shipped: tuple[Path, ...] = ()
    cache_dir: Optional[Path] = None


def _onnx_without_torch_model(model, places: OnnxPlaces) -> Optional[_ExportOnly]:
    """When an ONNX export of ``model`` already exists (or ``places.folder`` is given), run it
    without loading the torch weights at all."""
    from app.api import model_fingerprint
    from plugins.diffusion_common.backends import existing_export_for
    from plugins.diffusion_common.models import inspect_model

    info = inspect_model(model)
    if info.family != "sd" or info.pickled or info.format != "diffusers":
        return None
    digest = model_fingerprint(info.path)
    folder = places.folder or existing_export_for(digest, places.cache_dir, places.shipped)
    if not folder:
        return None
    native = None
    try:  # the model's own native size (foreign exports do not record it)
        unet_cfg = json.loads((info.path / "unet" / "config.json").read_text(encoding="utf-8"))
        vae_cfg = json.loads((info.path / "vae" / "config.json").read_text(encoding="utf-8"))
        native = int(unet_cfg["sample_size"]) * 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _ExportOnly(info=info, hash=digest, onnx_dir=folder, native_size=native)


def _make_backend(loaded, backend: str, providers, ort_threads: int, places: OnnxPlaces, on_progress):
    from plugins.diffusion_common import backends as be

    if backend == "torch":
        return be.TorchSDBackend(loaded)
    if backend == "onnx":
        prog = (lambda i, n, msg: on_progress(0, 1, msg)) if on_progress else None
        if isinstance(loaded, _ExportOnly):
            return be.ort_backend_for(None, providers=providers, threads=ort_threads, onnx_dir=loaded.onnx_dir,
                                      model_hash=loaded.hash)
        return be.ort_backend_for(loaded, providers=providers, threads=ort_threads, onnx_dir=places.folder,
                                  progress=prog, cache_dir=places.cache_dir, shipped=places.shipped)
    raise ParamError(f"Backend: unknown backend {backend!r}; use torch or onnx", "backend")


def generate(params: GenerationParams, model: str | os.PathLike, *, backend: str = "torch",
             device: str = "cpu", dtype: str = "float32", providers: Sequence[str] = ("CPUExecutionProvider",),
             on_progress: ProgressFn | None = None, on_preview: PreviewFn | None = None,
             is_cancelled: Callable[[], bool] | None = None, record_trajectory: bool = True,
             preview_every: int = 1, load_options=None, allow_pickle: bool = False, ort_threads: int = 0,
             onnx_dir: str | os.PathLike | None = None,
             on_metrics: Callable[[int, dict], None] | None = None,
             cache_dir: str | os.PathLike | None = None, shipped_exports: Sequence[str | os.PathLike] = (),
             thumbnails: str = "fast") -> GenerationResult:
    """Generate ``batch_size x batch_count`` images. Raises :class:`ModelError`,
    :class:`ParamError` or ``Cancelled`` (when ``is_cancelled()`` turns true; checked every step).

    Callbacks, all called on the calling thread after every denoising step: ``on_progress(done,
    total, message)`` (may raise to cancel), ``on_preview(H x W x 3 uint8)`` every
    ``preview_every`` steps, ``on_metrics(step, {"latent_norm": ..., "sigma": ...})``.

    ``thumbnails``: ``"fast"`` decodes the predicted x0 of every step with the linear
    latent->RGB map (one pixel per latent pixel, nearly free); ``"vae"`` decodes it with the VAE
    (real pictures, at most 128 px, costs a VAE decode per step; SD-structured models only).

    ``model`` is a local model file or folder (a run resolves names with ``ctx.resolve_model``).
    ``cache_dir`` (the run's ``ctx.cache_dir``) receives ONNX exports and converted pickles;
    ``shipped_exports`` are ONNX exports shipped with the plugin, used when they were made from
    this very model."""
    if thumbnails not in ("fast", "vae"):
        raise ParamError(f"Thumbnails: use fast or vae, got {thumbnails!r}", "thumbnails")
    from plugins.diffusion_common.models import is_oom, load_pipeline, oom_error

    if backend not in BACKENDS:
        raise ParamError(f"Backend: unknown backend {backend!r}; use torch or onnx", "backend")
    t_start = time.perf_counter()
    params, overrides = apply_preset(params)
    if backend == "onnx":
        device, dtype = "cpu", "float32"  # the torch side only exports (float32) and does scheduler maths
    places = OnnxPlaces(Path(onnx_dir) if onnx_dir else None, tuple(Path(f) for f in shipped_exports),
                        Path(cache_dir) if cache_dir else None)
    loaded = None
    if backend == "onnx" and not params.loras:
        loaded = _onnx_without_torch_model(model, places)
    if loaded is None:
        loaded = load_pipeline(model, device=device, dtype=dtype, allow_pickle=allow_pickle, options=load_options,
                               cache_dir=cache_dir)
    t_loaded = time.perf_counter()
    try:
        if loaded.info.family != "sd":
            if backend == "onnx":
                raise ParamError(f"Backend: the ONNX backend runs SD-structured models; {loaded.info.arch_name} "
                                 "runs with the torch backend", "backend")
            result = _generate_with_pipeline(loaded, params, overrides, on_progress, on_preview, is_cancelled,
                                             record_trajectory, preview_every, on_metrics)
        else:
            result = _generate_sd(loaded, params, overrides, backend, providers, ort_threads, places, on_progress,
                                  on_preview, is_cancelled, record_trajectory, preview_every, on_metrics,
                                  thumbnails)
    except (Cancelled, ModelError, ParamError):
        raise
    except Exception as exc:  # noqa: BLE001
        if is_oom(exc):
            raise oom_error(exc, device) from exc
        raise
    result.timings["load"] = t_loaded - t_start
    result.timings["total"] = time.perf_counter() - t_start
    return result


def _generate_sd(loaded, params: GenerationParams, overrides, backend_name, providers, ort_threads, places,
                 on_progress, on_preview, is_cancelled, record_trajectory, preview_every,
                 on_metrics=None, thumbnail_mode: str = "fast") -> GenerationResult:
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from plugins.diffusion_common.models import apply_loras, check_finite_output, remove_loras
    from plugins.diffusion_common.preview import fit_latent_rgb, latents_to_rgb, to_uint8_images
    from plugins.diffusion_common.sampling import Trajectory, denoise, set_timesteps
    from plugins.diffusion_common.schedulers import make_scheduler

    if params.loras and backend_name == "onnx":
        raise ParamError("LoRA: LoRAs are applied with the torch backend only (the ONNX export is of the base model)",
                         "loras")
    be = _make_backend(loaded, backend_name, providers, ort_threads, places, on_progress)
    warnings = validate(params, be.size_multiple, getattr(be, "num_text_layers", None) or None)
    vsf = be.vae_scale_factor
    init = load_image_input(params.init_image) if params.init_image is not None else None
    native = getattr(loaded, "native_size", None) or be.native_size
    if init is not None:
        m = be.size_multiple
        width = params.width or max(init.shape[1] // m * m, m)
        height = params.height or max(init.shape[0] // m * m, m)
    else:
        width, height = params.width or native, params.height or native
    check_size(width, be.size_multiple, "width")
    check_size(height, be.size_multiple, "height")
    need = _check_memory(loaded, be.name, str(be.device), str(getattr(be, "dtype", "float32")), width, height,
                         params, warnings)
    scheduler = make_scheduler(params.scheduler, be.scheduler_config, overrides=overrides, schedule=params.schedule)
    seed = SeedParam.resolve(params.seed)
    n_total = params.batch_size * params.batch_count
    seeds = [(seed + i) % (SEED_MAX + 1) for i in range(n_total)]
    record = dict(params.record(), seed=seed, width=width, height=height, scheduler_class=type(scheduler).__name__)
    strength = float(params.strength) if init is not None else 1.0
    steps_run = params.steps if init is None else min(int(params.steps * strength), params.steps)
    reporter = _Reporter(steps_run * params.batch_count, on_progress, on_preview, is_cancelled, preview_every, width,
                         params.batch_count)
    reporter.check()
    for w in warnings:
        _log.warning("text-to-image: %s", w)

    lora_names = apply_loras(loaded.pipe, list(params.loras)) if params.loras else []
    timings = {"encode": 0.0, "denoise": 0.0, "decode": 0.0}
    images: list[np.ndarray] = []
    trajectories = []
    stack = contextlib.ExitStack()
    try:
        if be.name == "torch":
            stack.enter_context(_responsive(loaded.pipe, reporter, width, height, need))
        need_matrix = record_trajectory or on_preview is not None
        matrix = fit_latent_rgb(be, key=f"{loaded.hash}:{be.name}") if need_matrix else None
        t0 = time.perf_counter()
        cond, truncated = be.encode_prompt([params.prompt], params.clip_skip)
        # without guidance (one-step students draw at guidance 1) the negative prompt is never read
        uncond = be.encode_prompt([params.negative_prompt], params.clip_skip)[0] if float(params.guidance) > 1.0 \
            else None
        if truncated:
            warnings.append(f"the prompt is longer than the model's {be.tokenizer.model_max_length} tokens; "
                            "the end was cut off")
        timings["encode"] += time.perf_counter() - t0
        lat_dev = torch.device(be.device)
        init_latents = None
        if init is not None:
            t0 = time.perf_counter()
            init_latents = be.encode(_image_to_tensor(init, width, height).to(lat_dev)).float()
            timings["encode"] += time.perf_counter() - t0
        for b in range(params.batch_count):
            bseeds = seeds[b * params.batch_size:(b + 1) * params.batch_size]
            gens = [torch.Generator("cpu").manual_seed(s) for s in bseeds]
            bsz = len(bseeds)
            timesteps = set_timesteps(scheduler, params.steps, lat_dev, strength)
            shape = (bsz, be.latent_channels, height // vsf, width // vsf)
            noise = randn_tensor(shape, generator=gens, device=lat_dev, dtype=torch.float32)
            if init_latents is None:
                latents = noise * scheduler.init_noise_sigma
            else:
                latents = scheduler.add_noise(init_latents.repeat(bsz, 1, 1, 1), noise, timesteps[:1].repeat(bsz))
            emb_c = cond.repeat(bsz, 1, 1)
            emb_u = uncond.repeat(bsz, 1, 1) if uncond is not None else None
            rec = {"t": [], "sigma": [], "norm": [], "x0norm": [], "thumbs": []}

            def on_step(info):
                thumbs = None
                if thumbnail_mode == "vae" and record_trajectory:
                    thumbs = _vae_thumbnails(be, info.x0)
                elif matrix is not None:
                    thumbs = latents_to_rgb(info.x0, matrix)
                norm = info.latents.flatten(1).float().norm(dim=1).cpu().numpy()
                if record_trajectory:
                    rec["t"].append(info.timestep)
                    rec["sigma"].append(info.sigma)
                    rec["norm"].append(norm)
                    rec["x0norm"].append(info.x0.flatten(1).float().norm(dim=1).cpu().numpy())
                    rec["thumbs"].append(thumbs)
                reporter.step(None if thumbs is None else thumbs[0])
                if on_metrics is not None:
                    on_metrics(reporter.done, {"latent_norm": float(norm.mean()), "sigma": info.sigma})

            t0 = time.perf_counter()
            tcond = be.guidance_embedding(params.guidance, bsz) if getattr(be, "time_cond_dim", None) else None
            latents = denoise(be, scheduler, latents, emb_c, emb_u, float(params.guidance), timesteps,
                              generator=gens, on_step=on_step, timestep_cond=tcond)
            timings["denoise"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            decoded = be.decode(latents)
            check_finite_output(decoded, loaded.info.path, "the decoded image")
            images.extend(list(to_uint8_images(decoded)))
            timings["decode"] += time.perf_counter() - t0
            if record_trajectory and rec["t"]:
                trajectories.append(Trajectory(
                    timesteps=np.asarray(rec["t"], np.float32), sigmas=np.asarray(rec["sigma"], np.float32),
                    latent_norm=np.stack(rec["norm"]).astype(np.float32),
                    x0_norm=np.stack(rec["x0norm"]).astype(np.float32), thumbnails=np.stack(rec["thumbs"]),
                    labels=[f"seed {s}" for s in bseeds],
                    meta={"scheduler": params.scheduler, "schedule": params.schedule, "steps": params.steps, "guidance": params.guidance,
                          "strength": strength, "backend": be.name, "model_hash": loaded.hash,
                          "prompt": params.prompt,
                          "thumbnail_decode": "VAE decode" if thumbnail_mode == "vae" else "linear latent->RGB fit"}))
    finally:
        stack.close()
        if lora_names:
            remove_loras(loaded.pipe, lora_names)
    trajectory = Trajectory.concat(trajectories) if trajectories else None
    timings["per_step"] = timings["denoise"] / max(steps_run * params.batch_count, 1)
    return GenerationResult(
        images=images, seeds=seeds, params=record, trajectory=trajectory, timings=timings, warnings=warnings,
        model={"path": str(loaded.info.path), "hash": loaded.hash, "arch": loaded.info.arch,
               **({"onnx_export": str(be.folder)} if be.name == "onnx" else {})},
        backend=be.name, device=str(be.device) + (f" ({', '.join(be.providers)})" if be.name == "onnx" else ""))


def _check_memory(loaded, backend: str, device: str, dtype: str, width: int, height: int,
                  params: GenerationParams, warnings: list[str]):
    """Refuse (``ParamError``) a size whose estimated memory does not fit on the device; returns
    the estimate."""
    from plugins.diffusion_common import memory

    pipe = getattr(loaded, "pipe", None)
    config = memory.model_memory_config(pipe) if pipe is not None else memory.folder_memory_config(loaded.info.path)
    need = memory.check(config, width, height, int(params.batch_size), float(params.guidance) > 1.0, backend,
                        device.split(" ")[0], dtype.replace("torch.", ""))
    if backend == "torch" and memory.tiled_decode(width, height):
        warnings.append(f"the image was decoded by the VAE in {memory.TILE}-pixel tiles (it is large): bounded "
                        "memory, and a cancel takes effect between tiles")
    return need


#: Above this estimated peak a step is long enough to check for a cancel between layers (the
#: checks cost about 10 % of a step of a tiny model at its native size, nothing measurable at
#: large sizes).
RESPONSIVE_ABOVE = 256 * 1024**2


@contextlib.contextmanager
def _responsive(pipe, reporter: _Reporter, width: int, height: int, need):
    """At large sizes, cancel within a second inside a step: checks between layers, sliced CPU
    attention, and images decoded in tiles (see plugins.diffusion_common.responsive)."""
    from plugins.diffusion_common.memory import tiled_decode
    from plugins.diffusion_common.responsive import responsive, tiled_vae

    if need.total <= RESPONSIVE_ABOVE and not tiled_decode(width, height):
        yield  # steps are short: the check between steps is enough
        return
    models = [getattr(pipe, name, None) for name in ("unet", "transformer", "vae")]
    with responsive(models, reporter.check, reporter.alive), \
            tiled_vae(getattr(pipe, "vae", None), tiled_decode(width, height)):
        yield


def _vae_thumbnails(be, x0, max_side: int = 128) -> np.ndarray:
    """Full VAE decode of the predicted x0, shrunk to at most ``max_side`` pixels."""
    from plugins.diffusion_common.preview import to_uint8_images

    imgs = to_uint8_images(be.decode(x0))
    h, w = imgs.shape[1:3]
    step = int(math.ceil(max(h, w) / max_side))
    return np.ascontiguousarray(imgs[:, ::step, ::step]) if step > 1 else imgs


class _VaeAdapter:
    """The bits of a backend that :func:`fit_latent_rgb` needs, for a diffusers pipeline's VAE."""

    name = "pipeline"

    def __init__(self, pipe):
        self.pipe = pipe
        self.vae_scale_factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        self.scaling = float(getattr(pipe.vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(pipe.vae.config, "shift_factor", 0.0) or 0.0)

    def encode(self, images):
        import torch

        with torch.inference_mode():
            vae = self.pipe.vae
            mean = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean
            return (mean - self.shift) * self.scaling


def _generate_with_pipeline(loaded, params: GenerationParams, overrides, on_progress, on_preview, is_cancelled,
                            record_trajectory, preview_every, on_metrics=None) -> GenerationResult:
    """SDXL, SD3, FLUX: the model's diffusers pipeline with a per-step callback. The trajectory
    holds the current latents (these pipelines do not expose the x0 prediction)."""
    import inspect

    import torch

    from plugins.diffusion_common.models import apply_loras, check_finite_output, remove_loras
    from plugins.diffusion_common.preview import fit_latent_rgb, latents_to_rgb
    from plugins.diffusion_common.sampling import Trajectory
    from plugins.diffusion_common.schedulers import make_scheduler

    pipe = loaded.pipe
    vsf = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    flow = loaded.info.family in ("sd3", "flux")
    multiple = vsf * (2 if flow else 1)
    warnings = validate(params, multiple, None)
    native = int(getattr(getattr(pipe, "unet", None) or getattr(pipe, "transformer", None), "config").sample_size) * vsf \
        if loaded.info.family == "sdxl" else 1024
    init = load_image_input(params.init_image) if params.init_image is not None else None
    width = params.width or (init.shape[1] // multiple * multiple if init is not None else native)
    height = params.height or (init.shape[0] // multiple * multiple if init is not None else native)
    check_size(width, multiple, "width")
    check_size(height, multiple, "height")
    need = _check_memory(loaded, "torch", str(loaded.device), str(loaded.dtype), width, height, params, warnings)
    original_scheduler = pipe.scheduler
    scheduler = make_scheduler(params.scheduler, loaded.scheduler_config or original_scheduler.config,
                               flow_matching=flow, overrides=overrides, schedule=params.schedule)
    seed = SeedParam.resolve(params.seed)
    n_total = params.batch_size * params.batch_count
    seeds = [(seed + i) % (SEED_MAX + 1) for i in range(n_total)]
    record = dict(params.record(), seed=seed, width=width, height=height, scheduler_class=type(scheduler).__name__)
    strength = float(params.strength) if init is not None else 1.0
    steps_run = params.steps if init is None else min(int(params.steps * strength), params.steps)
    reporter = _Reporter(steps_run * params.batch_count, on_progress, on_preview, is_cancelled, preview_every, width,
                         params.batch_count)
    reporter.check()
    runner = pipe
    if init is not None:
        from diffusers import AutoPipelineForImage2Image

        runner = AutoPipelineForImage2Image.from_pipe(pipe)
    accepted = set(inspect.signature(runner.__call__).parameters)
    lora_names = apply_loras(pipe, list(params.loras)) if params.loras else []
    matrix = None
    try:
        matrix = fit_latent_rgb(_VaeAdapter(pipe), key=f"{loaded.hash}:pipeline")
    except Exception as exc:  # noqa: BLE001 - previews are optional for exotic VAEs
        _log.info("no latent preview for this model: %s", exc)
    images, trajectories = [], []
    timings = {"denoise": 0.0}
    runner.scheduler = scheduler
    try:
        for b in range(params.batch_count):
            bseeds = seeds[b * params.batch_size:(b + 1) * params.batch_size]
            gens = [torch.Generator("cpu").manual_seed(s) for s in bseeds]
            rec = {"t": [], "sigma": [], "norm": [], "thumbs": []}

            def callback(p, i, t, kw):
                lat = kw["latents"]
                sig = float("nan")
                sigmas = getattr(p.scheduler, "sigmas", None)
                idx = getattr(p.scheduler, "step_index", None)
                if sigmas is not None and idx is not None and 0 < idx <= len(sigmas):
                    sig = float(sigmas[idx - 1])  # the step just taken started from this noise level
                thumbs = None
                if matrix is not None and lat.ndim == 4:
                    thumbs = latents_to_rgb(lat, matrix)
                norm = lat.flatten(1).float().norm(dim=1).cpu().numpy()
                if record_trajectory:
                    rec["t"].append(float(t))
                    rec["sigma"].append(sig)
                    rec["norm"].append(norm)
                    rec["thumbs"].append(thumbs)
                reporter.step(None if thumbs is None else thumbs[0])
                if on_metrics is not None:
                    on_metrics(reporter.done, {"latent_norm": float(norm.mean()), "sigma": sig})
                return {}

            kwargs = dict(prompt=params.prompt, num_inference_steps=params.steps, guidance_scale=params.guidance,
                          num_images_per_prompt=len(bseeds), generator=gens, output_type="np",
                          callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
            if "negative_prompt" in accepted and params.negative_prompt:
                kwargs["negative_prompt"] = params.negative_prompt
            if "height" in accepted:
                kwargs.update(height=height, width=width)
            if params.clip_skip and "clip_skip" in accepted:
                kwargs["clip_skip"] = params.clip_skip
            if init is not None:
                from PIL import Image

                kwargs.update(image=Image.fromarray(init).resize((width, height)), strength=strength)
            t0 = time.perf_counter()
            with _responsive(pipe, reporter, width, height, need):
                out = runner(**kwargs)
            timings["denoise"] += time.perf_counter() - t0
            arr = np.asarray(out.images)
            check_finite_output(arr, loaded.info.path, "the decoded image")
            images.extend(list(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)))
            if record_trajectory and rec["t"]:
                thumbs = np.stack(rec["thumbs"]) if all(t is not None for t in rec["thumbs"]) else \
                    np.zeros((len(rec["t"]), len(bseeds), 1, 1, 3), np.uint8)
                norms = np.stack(rec["norm"]).astype(np.float32)
                trajectories.append(Trajectory(
                    timesteps=np.asarray(rec["t"], np.float32), sigmas=np.asarray(rec["sigma"], np.float32),
                    latent_norm=norms, x0_norm=np.full_like(norms, np.nan), thumbnails=thumbs,
                    labels=[f"seed {s}" for s in bseeds],
                    meta={"scheduler": params.scheduler, "schedule": params.schedule, "steps": params.steps, "guidance": params.guidance,
                          "backend": "torch", "model_hash": loaded.hash, "prompt": params.prompt,
                          "thumbnail_decode": "current latents (this pipeline exposes no x0)"}))
    finally:
        runner.scheduler = original_scheduler
        pipe.scheduler = original_scheduler
        if lora_names:
            remove_loras(pipe, lora_names)
    return GenerationResult(images=images, seeds=seeds, params=record,
                            trajectory=Trajectory.concat(trajectories) if trajectories else None,
                            timings=timings, warnings=warnings,
                            model={"path": str(loaded.info.path), "hash": loaded.hash, "arch": loaded.info.arch},
                            backend="torch", device=loaded.device)


# ------------------------------------------------------------------------------------------------
# Seed grids
# ------------------------------------------------------------------------------------------------

def parse_sweep_values(axis: str, text: str | Sequence[Any]) -> list[Any]:
    """Values of a sweep from text such as ``"1, 2, 3"`` / ``"3.5,5,7.5"`` / ``"ddim, euler"``."""
    if axis not in SWEEP_AXES:
        raise ParamError(f"Sweep: unknown parameter {axis!r}; sweep one of {', '.join(SWEEP_AXES)}", "sweep")
    items = [s.strip() for s in text.replace(";", ",").split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s != ""]
    if not items:
        raise ParamError("Sweep values: give at least one value, separated by commas", "sweep_values")
    if len(items) > 64:
        raise ParamError(f"Sweep values: at most 64 values, got {len(items)}", "sweep_values")
    out = []
    for s in items:
        try:
            if axis in ("seed", "steps"):
                out.append(int(s))
            elif axis == "guidance":
                out.append(float(s))
            else:
                if str(s) not in SCHEDULER_NAMES:
                    raise ValueError
                out.append(str(s))
        except (TypeError, ValueError):
            kind = {"seed": "whole numbers", "steps": "whole numbers", "guidance": "numbers",
                    "scheduler": f"scheduler names ({', '.join(SCHEDULER_NAMES)})"}[axis]
            raise ParamError(f"Sweep values: {s!r} is not valid; {axis} values are {kind}", "sweep_values") from None
    return out


def sweep(params: GenerationParams, axis: str, values: Sequence[Any], model: str | os.PathLike, *,
          on_progress: ProgressFn | None = None, **kwargs) -> tuple[np.ndarray, list[GenerationResult]]:
    """Run one image per value of ``axis`` (other parameters fixed; a random seed is drawn once)
    and return a labelled grid image and the results."""
    values = parse_sweep_values(axis, values) if isinstance(values, str) else list(values)
    base = dataclasses.replace(params, batch_size=1, batch_count=1, seed=SeedParam.resolve(params.seed))
    results = []
    n = len(values)
    for i, v in enumerate(values):
        p = dataclasses.replace(base, **{axis: v})
        if axis == "scheduler" or axis == "steps" or axis == "guidance":
            p = dataclasses.replace(p, preset="none")
        prog = None
        if on_progress is not None:
            prog = (lambda k, total, msg, i=i: on_progress(i * 1000 + int(1000 * k / max(total, 1)), n * 1000,
                                                           f"{axis} {values[i]}: {msg}"))
        results.append(generate(p, model, on_progress=prog, **kwargs))
    labels = [f"{axis} {v}" for v in values]
    return make_grid([r.images[0] for r in results], labels), results


def make_grid(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, columns: int | None = None) -> np.ndarray:
    """Tile equally sized ``H x W x 3`` images into a grid with a caption strip under each."""
    from PIL import Image, ImageDraw, ImageFont

    if not images:
        raise ValueError("no images to put in a grid")
    h, w = images[0].shape[:2]
    n = len(images)
    cols = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    cap = 14 if labels else 0
    pad = 2
    grid = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + cap + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), pad + r * (h + cap + pad)
        grid.paste(Image.fromarray(np.ascontiguousarray(img[:, :, :3])), (x, y))
        if labels:
            draw.text((x + 2, y + h + 1), str(labels[i])[: max(w // 6, 4)], fill=(230, 230, 230), font=font)
    return np.asarray(grid)
