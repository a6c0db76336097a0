"""One denoising loop for SD-structured models, shared by the torch and ONNX Runtime backends.

The loop uses diffusers scheduler objects for all the sampler maths (so both backends take
exactly the same steps), does classifier-free guidance, and after every step reports a
:class:`StepInfo` with the predicted clean latents ``x0``, the noise level and the latent norm,
which the callers turn into progress, live previews and the recorded trajectory.

``x0`` is computed from the model output with the scheduler's ``alphas_cumprod`` at the current
timestep and the scaled model input (which is the variance-preserving ``x_t`` for every
scheduler, sigma-based ones included): epsilon-prediction ``x0 = (x_t - sqrt(1-a) eps)/sqrt(a)``,
v-prediction ``x0 = sqrt(a) x_t - sqrt(1-a) v``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


@dataclass
class StepInfo:
    """What one denoising step produced (torch tensors on the host)."""

    index: int
    total: int
    timestep: float
    sigma: float
    latents: Any
    x0: Any


def _alpha_bar(scheduler, t) -> float:
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:
        return float("nan")
    idx = int(round(float(t)))
    idx = min(max(idx, 0), len(ac) - 1)
    return float(ac[idx])


def predict_x0(scheduler, x_t, model_output, t, prediction_type: str):
    """Predicted clean latents from the (scaled, variance-preserving) model input ``x_t``."""
    a = _alpha_bar(scheduler, t)
    if not math.isfinite(a):
        return x_t
    sa, s1 = math.sqrt(a), math.sqrt(max(1.0 - a, 0.0))
    if prediction_type == "v_prediction":
        return sa * x_t - s1 * model_output
    if prediction_type == "sample":
        return model_output
    return (x_t - s1 * model_output) / sa


def noise_sigma(scheduler, t) -> float:
    """The noise level sigma = sqrt((1 - a)/a) at timestep ``t``."""
    a = _alpha_bar(scheduler, t)
    if not math.isfinite(a) or a <= 0:
        return float("nan")
    return math.sqrt((1.0 - a) / a)


def step_kwargs(scheduler, generator, eta: float = 0.0) -> dict:
    params = set(inspect.signature(scheduler.step).parameters)
    out = {}
    if "eta" in params:
        out["eta"] = eta
    if "generator" in params:
        out["generator"] = generator
    return out


def set_timesteps(scheduler, steps: int, device, strength: float = 1.0):
    """Set the scheduler's timesteps for ``steps`` steps and return those to run for
    image-to-image ``strength`` (1.0 = all of them), as diffusers' img2img pipeline does."""
    scheduler.set_timesteps(steps, device=device)
    _sigmas_in_float64(scheduler, device)
    timesteps = scheduler.timesteps
    start = 0
    if strength < 1.0:
        init = min(int(steps * strength), steps)
        start = max(steps - init, 0) * getattr(scheduler, "order", 1)
        timesteps = timesteps[start:]
    if hasattr(scheduler, "set_begin_index"):
        # Step through the schedule by position, not by looking each timestep up: Karras sigmas on
        # a schedule that ends at pure noise (cosine betas) give repeated timesteps, and the look-up
        # would then run past the end of the schedule.
        scheduler.set_begin_index(start)
    return timesteps


def _sigmas_in_float64(scheduler, device) -> None:
    """Ancestral samplers split each step's noise as ``sigma_down = sqrt(sigma_to**2 - sigma_up**2)``;
    on a schedule that ends at (almost) pure noise the first sigma is about 2e4, and in float32 that
    difference rounds below zero (NaN: a black picture at 3 Euler-a steps of the bundled model).
    Their sigmas are kept in float64 (0-dim values in the step's arithmetic, so the latents stay in
    their own dtype); MPS has no float64."""
    sigmas = getattr(scheduler, "sigmas", None)
    if ("Ancestral" not in type(scheduler).__name__ or sigmas is None or not hasattr(sigmas, "double")
            or str(device).startswith("mps") or getattr(sigmas, "device", None) is None
            or sigmas.device.type == "mps"):
        return
    scheduler.sigmas = sigmas.double()


def denoise(backend, scheduler, latents, cond, uncond, guidance: float, timesteps,
            generator=None, on_step: Optional[Callable[[StepInfo], None]] = None, timestep_cond=None):
    """Run the denoising loop from ``latents`` (already scaled by ``init_noise_sigma`` or noised
    to the first timestep) and return the final latents. Guidance is applied when
    ``guidance > 1`` and ``uncond`` is given (the diffusers convention). ``on_step`` is called
    after each step and may raise to stop the loop (cancellation)."""
    import torch

    prediction_type = scheduler.config.get("prediction_type", "epsilon")
    cfg = uncond is not None and guidance > 1.0 and timestep_cond is None
    emb = torch.cat([uncond, cond]) if cfg else cond
    kwargs = step_kwargs(scheduler, generator)
    # second-order solvers (Heun, DPM2) evaluate the model twice a step: their timesteps list
    # each step's second evaluation again, and a step is done when the solver is back in its
    # first-order state (or at the last entry)
    two_evals = getattr(scheduler, "order", 1) > 1 and hasattr(scheduler, "state_in_first_order")
    n = len(timesteps)
    # PLMS (PNDM) warms up with one two-evaluation step: its first timestep is listed twice
    plms_warmup = type(scheduler).__name__ == "PNDMScheduler" and n > 1
    total = (n + 1) // 2 if two_evals else n - 1 if plms_warmup else n
    done = 0
    b = latents.shape[0]
    for i, t in enumerate(timesteps):
        x_in = torch.cat([latents] * 2) if cfg else latents
        x_in = scheduler.scale_model_input(x_in, t)
        out = backend.unet(x_in, t, emb, timestep_cond=timestep_cond) if timestep_cond is not None \
            else backend.unet(x_in, t, emb)
        out = out.to(latents.dtype)
        if cfg:
            out_u, out_c = out.chunk(2)
            out = out_u + guidance * (out_c - out_u)
        x0 = predict_x0(scheduler, x_in[:b].to(latents.dtype), out, t, prediction_type) if on_step else None
        latents = scheduler.step(out, t, latents, **kwargs, return_dict=False)[0]
        if (two_evals and not (scheduler.state_in_first_order or i == n - 1)) or (plms_warmup and i == 0):
            continue  # the first evaluation of a two-evaluation step
        if on_step is not None:
            on_step(StepInfo(done, total, float(t), noise_sigma(scheduler, t), latents, x0))
        done += 1
    return latents


# ------------------------------------------------------------------------------------------------
# Trajectories
# ------------------------------------------------------------------------------------------------

@dataclass
class Trajectory:
    """The recorded denoising trajectory of one run (all images of the run, same steps).

    ``timesteps``, ``sigmas``: ``T``; ``latent_norm``, ``x0_norm``: ``T x B`` (L2 norms);
    ``thumbnails``: ``T x B x h x w x 3`` uint8 (cheap decodes of the predicted x0 at latent
    resolution); ``labels``: a name per image (e.g. its seed)."""

    timesteps: np.ndarray
    sigmas: np.ndarray
    latent_norm: np.ndarray
    x0_norm: np.ndarray
    thumbnails: np.ndarray
    labels: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def batch(self) -> int:
        return int(self.latent_norm.shape[1]) if self.latent_norm.ndim == 2 else 0

    def to_npz(self, path) -> None:
        import json

        np.savez_compressed(path, timesteps=self.timesteps, sigmas=self.sigmas, latent_norm=self.latent_norm,
                            x0_norm=self.x0_norm, thumbnails=self.thumbnails,
                            labels=np.array(json.dumps(self.labels)), meta=np.array(json.dumps(self.meta)))

    def to_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.to_npz(buf)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path_or_bytes) -> "Trajectory":
        import io
        import json

        src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
        with np.load(src, allow_pickle=False) as z:
            return cls(timesteps=z["timesteps"], sigmas=z["sigmas"], latent_norm=z["latent_norm"],
                       x0_norm=z["x0_norm"], thumbnails=z["thumbnails"], labels=json.loads(str(z["labels"])),
                       meta=json.loads(str(z["meta"])))

    @classmethod
    def concat(cls, parts: list["Trajectory"]) -> "Trajectory":
        """Join trajectories of batches run with the same steps along the image axis."""
        if len(parts) == 1:
            return parts[0]
        return cls(timesteps=parts[0].timesteps, sigmas=parts[0].sigmas,
                   latent_norm=np.concatenate([p.latent_norm for p in parts], 1),
                   x0_norm=np.concatenate([p.x0_norm for p in parts], 1),
                   thumbnails=np.concatenate([p.thumbnails for p in parts], 1),
                   labels=[lab for p in parts for lab in p.labels], meta=dict(parts[0].meta))

    def rows(self) -> list[tuple]:
        """Table rows ``(step, timestep, sigma, latent_norm, x0_norm)`` (means over images)."""
        return [(i + 1, float(self.timesteps[i]), float(self.sigmas[i]), float(self.latent_norm[i].mean()),
                 float(self.x0_norm[i].mean())) for i in range(self.steps)]


def compare_trajectories(a: Trajectory, b: Trajectory, image_a: int = 0, image_b: int = 0) -> dict:
    """Step-by-step comparison of two runs (e.g. two schedulers with one seed), aligned on the
    fraction of the run done: for each step of the shorter run, the nearest step of the other.
    Returns arrays ``progress``, ``sigma_a``, ``sigma_b``, ``latent_norm_a``, ``latent_norm_b``
    and ``thumb_diff`` (mean absolute difference of the x0 thumbnails, 0..255)."""
    n = min(a.steps, b.steps)
    if n == 0:
        raise ValueError("cannot compare an empty trajectory")
    frac = (np.arange(n) + 1) / n
    ia = np.clip(np.round(frac * a.steps).astype(int) - 1, 0, a.steps - 1)
    ib = np.clip(np.round(frac * b.steps).astype(int) - 1, 0, b.steps - 1)
    ta, tb = a.thumbnails[ia, image_a].astype(np.float32), b.thumbnails[ib, image_b].astype(np.float32)
    if ta.shape != tb.shape:
        raise ValueError(f"the runs have different sizes ({ta.shape[1:3]} vs {tb.shape[1:3]}); compare runs of one size")
    return {
        "progress": frac, "index_a": ia, "index_b": ib,
        "sigma_a": a.sigmas[ia], "sigma_b": b.sigmas[ib],
        "latent_norm_a": a.latent_norm[ia, image_a], "latent_norm_b": b.latent_norm[ib, image_b],
        "thumb_diff": np.abs(ta - tb).mean(axis=(1, 2, 3)),
    }
