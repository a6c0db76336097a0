"""Distil a Stable-Diffusion-structured text-to-image model into a one-step generator, data-free.

Two methods of the score-distillation family, on the same machinery:

- ``sid``: Score identity Distillation (Zhou et al. 2024) with the long-and-short guidance of SiD-LSG
  for text-to-image. Three networks in the teacher's UNet format: the one-step generator ``G`` and
  the fake-score network ``f_psi`` (both initialised from the teacher) and the frozen teacher
  ``f_phi``. Every iteration first fits ``f_psi`` to the generator's current samples (denoising loss,
  guidance kappa1 on its own outputs with 10% empty prompts), then moves ``G`` along the SiD loss
  ``(y_real - y_fake) . ((y_real - x_g) - alpha (y_real - y_fake)) / |x_g - y_real|``, where
  ``y_real`` and ``y_fake`` are the teacher's (guidance kappa4) and the fake network's (guidance
  kappa2) clean-image predictions at a noised copy of the sample ``x_g``; the gradient flows through
  both networks' inputs into ``G``.
- ``dmd``: DMD2's regression-free distribution matching (Yin et al. 2024) without its GAN term, which
  needs real images: the generator follows ``(y_fake - y_real) / |x_g - y_real|`` (no gradient through
  the score networks), and the fake-score network is updated ``fake_updates`` times per generator
  update (the two-time-scale update rule), without guidance; the teacher's guidance is the only one.

Both methods only sample the generator, so they need prompts and no images. The generator maps pure
noise at the last training timestep to a clean latent exactly as a one-step DDIM sampler with
"trailing" timesteps calls a UNet, so the student is an ordinary diffusers folder
(:func:`export_student`) that plain diffusers and the studio run with ``num_inference_steps=1`` and no
guidance (the guidance is distilled into it).

Runs are resumable: every ``checkpoint_every`` iterations (and when cancelled) the three networks'
trainable states, the optimisers, the EMA and the random generator go to ``DIR/distill_ckpt``
(safetensors + JSON, atomic; :mod:`plugins.diffusion_common.checkpoint`); running again on the same
folder continues bit for bit where the checkpoint stopped (same device and thread count).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from app.api import ParamError
from plugins.diffusion_common.errors import ModelError

_log = logging.getLogger("implicit_studio.distill")

METHODS = ("sid", "dmd")
METHOD_LABELS = ("SiD (Score identity Distillation, SiD-LSG guidance)", "DMD2 (regression-free, two time-scale)")
CHECKPOINT = "distill_ckpt"
STUDENT = "student"
FORMAT = "implicit-studio-distill-1"

#: What each method sets where the user leaves a setting at its default (None).
METHOD_DEFAULTS = {
    # SiD-LSG: Adam with beta1 = 0 for both networks, one fake update per generator update,
    # alpha = 1.2 (the SiD paper's), teacher timesteps 20..980.
    "sid": {"fake_updates": 1, "betas": (0.0, 0.999), "weight_decay": 0.0},
    # DMD2: AdamW (0.9, 0.999), weight decay 0.01, five fake updates per generator update.
    "dmd": {"fake_updates": 5, "betas": (0.9, 0.999), "weight_decay": 0.01},
}

# Settings that decide what a checkpoint means: resuming with other values is refused.
_FIXED = ("method", "batch", "guidance", "fake_guidance", "alpha", "tmin", "tmax", "init_timestep", "cond_drop",
          "fake_updates", "seed", "ema_halflife")


@dataclass
class DistillConfig:
    """One distillation run's settings (see the module docstring for the methods)."""

    method: str = "sid"
    iterations: int = 1000          # generator updates
    batch: int = 16
    lr: float = 1e-5                # generator learning rate
    fake_lr: float = 1e-5           # fake-score network learning rate
    guidance: float = 2.0           # the teacher's classifier-free guidance (SiD-LSG kappa4; DMD2's real guidance)
    # SiD-LSG kappa1 = kappa2 = kappa3: guidance on the fake network's outputs. None (or 0): for sid the
    # teacher's (SiD-LSG's equal guidance: at the start, where the fake network is the teacher, the loss is
    # then zero; with 4.5 on the teacher and 1 on the fake network a pilot on the bundled model lost a
    # quarter of its colours in 50 iterations), for dmd 1 (DMD2 reads its fake network without guidance).
    fake_guidance: Optional[float] = None
    alpha: float = 1.2              # SiD's alpha (sid only)
    fake_updates: Optional[int] = None  # fake-score updates per generator update (method default: sid 1, dmd 5)
    tmin: int = 20                  # the range of timesteps at which the score networks judge the samples
    tmax: int = 980
    init_timestep: int = -1         # the generator's timestep; -1: the last training timestep (pure noise)
    cond_drop: float = 0.1          # empty prompts while fitting a guided fake network (sid with fake_guidance != 1)
    ema_halflife: float = 0.0       # EMA of the generator, half-life in iterations (0: none; the student is G itself)
    seed: int = 0
    checkpoint_every: int = 50
    preview_every: int = 50
    precision: str = "auto"         # auto | bf16 | fp32 (bf16 autocast on CUDA with bf16 and on AMX CPUs)
    threads: int = 0                # CPU threads: 0 follows the machine's load (up to all cores), N fixes N
    betas: Optional[tuple] = None   # Adam betas (method default)
    weight_decay: Optional[float] = None

    def resolved(self) -> "DistillConfig":
        """A copy with the method's defaults filled in and every value checked (ParamError)."""
        if self.method not in METHODS:
            raise ParamError(f"Method: unknown method {self.method!r}; choose one of {', '.join(METHODS)}", "method")
        cfg = copy.copy(self)
        for key, value in METHOD_DEFAULTS[self.method].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if not cfg.fake_guidance:
            cfg.fake_guidance = cfg.guidance if cfg.method == "sid" else 1.0
        cfg.betas = tuple(float(b) for b in cfg.betas)
        checks = [
            (cfg.iterations >= 1, "iterations", "must be at least 1"),
            (cfg.batch >= 1, "batch", "must be at least 1"),
            (cfg.lr > 0 and cfg.fake_lr > 0, "lr", "learning rates must be positive"),
            (cfg.guidance >= 1.0 and cfg.fake_guidance >= 1.0, "guidance", "guidance scales must be at least 1"),
            (cfg.fake_updates >= 1, "fake_updates", "must be at least 1"),
            (0 <= cfg.tmin < cfg.tmax, "tmin", f"need 0 <= tmin < tmax, got {cfg.tmin} and {cfg.tmax}"),
            (0.0 <= cfg.cond_drop < 1.0, "cond_drop", "must be in [0, 1)"),
            (cfg.ema_halflife >= 0, "ema_halflife", "must be 0 (no EMA) or positive"),
            (cfg.checkpoint_every >= 1 and cfg.preview_every >= 0, "checkpoint_every", "must be at least 1"),
            (cfg.threads >= 0, "threads", "must be 0 (follow the load) or a positive count"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise ParamError(f"{name.replace('_', ' ').capitalize()}: {message}", name)
        if cfg.method == "dmd" and cfg.fake_guidance != 1.0:
            raise ParamError("Fake guidance: DMD2 trains and reads its fake-score network without guidance; "
                             "leave it at 1 (the teacher's guidance is --guidance)", "fake_guidance")
        return cfg

    def record(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas) if self.betas is not None else None
        return out


@dataclass
class DistillReport:
    """What a run did: the folder, the iteration reached, the losses, the time and the student."""

    out: Path
    step: int
    total: int
    losses: dict = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    seconds_per_iteration: float = float("nan")
    student: Optional[Path] = None
    preview: Any = None
    resumed_from: int = 0
    cancelled: bool = False


# ------------------------------------------------------------------------------------------------
# The noise schedule and the networks' outputs
# ------------------------------------------------------------------------------------------------

class Schedule:
    """The teacher's variance-preserving schedule: x_t = a_t x0 + s_t eps, and its output conversions."""

    def __init__(self, scheduler_config: dict, device):
        import torch
        from diffusers import DDPMScheduler

        cfg = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
        keep = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                "prediction_type", "rescale_betas_zero_snr"}
        ddpm = DDPMScheduler.from_config({k: v for k, v in cfg.items() if k in keep})
        self.prediction_type = str(cfg.get("prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ModelError(f"the teacher predicts {self.prediction_type!r}; distillation needs epsilon, "
                             "v_prediction or sample")
        acp = ddpm.alphas_cumprod.double()
        self.num_train_timesteps = int(ddpm.config.num_train_timesteps)
        self.a = acp.sqrt().float().to(device)
        self.s = (1 - acp).sqrt().float().to(device)

    def coefs(self, t):
        return self.a[t].view(-1, 1, 1, 1), self.s[t].view(-1, 1, 1, 1)

    def add_noise(self, x0, noise, t):
        a, s = self.coefs(t)
        return a * x0 + s * noise

    def x0(self, out, x_t, t):
        """The clean latents a network output means at (x_t, t)."""
        a, s = self.coefs(t)
        if self.prediction_type == "v_prediction":
            return a * x_t - s * out
        if self.prediction_type == "sample":
            return out
        return (x_t - s * out) / a

    def eps(self, out, x_t, t):
        """The noise a network output means at (x_t, t)."""
        a, s = self.coefs(t)
        if self.prediction_type == "v_prediction":
            return a * out + s * x_t
        if self.prediction_type == "sample":
            return (x_t - a * out) / s
        return out


def guided(unet, x_t, t, cond, uncond, scale: float, context):
    """The UNet's output at (x_t, t) for ``cond``, with classifier-free guidance ``scale`` against
    ``uncond`` (one batched pass of both halves) when ``scale`` != 1."""
    import torch

    if scale == 1.0:
        with context():
            return unet(x_t, t, encoder_hidden_states=cond, return_dict=False)[0].float()
    with context():
        out = unet(torch.cat([x_t, x_t]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond]),
                   return_dict=False)[0].float()
    out_u, out_c = out.chunk(2)
    return out_u + scale * (out_c - out_u)


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------

def read_prompts(path: str | Path | None) -> list[str]:
    """Prompts, one a line (blank lines and lines starting with # skipped)."""
    if not path:
        raise ParamError("Prompts: a text file of prompts (one a line) is needed; distillation draws its "
                         "training prompts from it", "prompts")
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ParamError(f"Prompts: cannot read {p} ({exc.strerror or exc})", "prompts") from exc
    except UnicodeDecodeError as exc:
        raise ParamError(f"Prompts: {p} is not UTF-8 text", "prompts") from exc
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ParamError(f"Prompts: {p} holds no prompt (one a line)", "prompts")
    return prompts


# ------------------------------------------------------------------------------------------------
# The distiller
# ------------------------------------------------------------------------------------------------

ProgressFn = Callable[[int, int, str], None]


class Distiller:
    """The three networks, their optimisers and one iteration of either method.

    ``teacher`` is a loaded pipeline's parts (tokenizer, text encoder, UNet, VAE, scheduler config);
    use :func:`load_teacher` to get them from a model reference.
    """

    def __init__(self, teacher: "Teacher", cfg: DistillConfig, device: str = "cpu"):
        import torch

        self.cfg = cfg.resolved()
        self.teacher = teacher
        self.device = torch.device(device)
        from plugins.diffusion_common.precision import mixed_precision, resolve_precision

        self.precision = resolve_precision(self.cfg.precision, str(device))
        self.context = lambda: mixed_precision(self.precision, str(device))
        self.schedule = Schedule(teacher.scheduler_config, self.device)
        T = self.schedule.num_train_timesteps
        if self.cfg.tmax > T:
            raise ParamError(f"Tmax: the teacher has {T} timesteps; tmax must be at most {T}", "tmax")
        self.t_init = T - 1 if self.cfg.init_timestep < 0 else int(self.cfg.init_timestep)
        if not 0 < self.t_init < T:
            raise ParamError(f"Init timestep: must be in 1..{T - 1} (or -1 for the last), got {self.t_init}",
                             "init_timestep")
        self.real = teacher.unet.to(self.device).eval().requires_grad_(False)
        self.G = copy.deepcopy(self.real).float().train().requires_grad_(True)
        self.fake = copy.deepcopy(self.real).float().train().requires_grad_(True)
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False) if self.cfg.ema_halflife > 0 else None
        Opt = torch.optim.AdamW if self.cfg.weight_decay else torch.optim.Adam
        extra = {"weight_decay": self.cfg.weight_decay} if self.cfg.weight_decay else {}
        self.opt_g = Opt(self.G.parameters(), lr=self.cfg.lr, betas=self.cfg.betas, eps=1e-8, **extra)
        self.opt_f = Opt(self.fake.parameters(), lr=self.cfg.fake_lr, betas=self.cfg.betas, eps=1e-8, **extra)
        self.rng = torch.Generator("cpu").manual_seed(int(self.cfg.seed))
        self.step = 0
        self.losses: dict[str, list[float]] = {"generator": [], "fake": []}
        self.latent_shape = (int(self.real.config.in_channels), teacher.latent_size, teacher.latent_size)
        self.uncond = teacher.encode([""])  # 1 x L x D

    # -- random draws (on the CPU generator, so a resumed run and another device draw the same) --
    def _randn(self, *shape):
        import torch

        return torch.randn(*shape, generator=self.rng).to(self.device)

    def _batch(self, prompts: Sequence[str], drop: float = 0.0):
        """A batch: prompt embeddings (some emptied with probability ``drop``), noise z, noise n, t."""
        import torch

        b = self.cfg.batch
        idx = torch.randint(0, len(prompts), (b,), generator=self.rng).tolist()
        chosen = [prompts[i] for i in idx]
        if drop > 0:
            mask = (torch.rand(b, generator=self.rng) < drop).tolist()
            chosen = ["" if m else p for p, m in zip(chosen, mask)]
        emb = self.teacher.encode(chosen)
        z = self._randn(b, *self.latent_shape)
        n = self._randn(b, *self.latent_shape)
        return emb, z, n

    def _timesteps(self, lo: int, hi: int):
        import torch

        return torch.randint(lo, hi, (self.cfg.batch,), generator=self.rng).to(self.device)

    # -- the networks --------------------------------------------------------------------------
    def generate(self, z, emb, unet=None):
        """The generator's clean latents for noise ``z`` and prompt embeddings ``emb``."""
        import torch

        unet = unet or self.G
        t = torch.full((z.shape[0],), self.t_init, device=self.device, dtype=torch.long)
        with self.context():
            out = unet(z, t, encoder_hidden_states=emb, return_dict=False)[0].float()
        return self.schedule.x0(out, z, t)

    def _clean(self, unet, x_t, t, emb, uncond, scale: float):
        """A score network's clean-latent prediction at (x_t, t), with guidance ``scale``."""
        return self.schedule.x0(guided(unet, x_t, t, emb, uncond, scale, self.context), x_t, t)

    def _uncond(self, n: int):
        return self.uncond.expand(n, -1, -1)

    # -- one iteration ----------------------------------------------------------------------------
    def fake_update(self, prompts: Sequence[str]) -> float:
        """Fit the fake-score network to the generator's current samples (one optimiser step)."""
        import torch

        cfg = self.cfg
        sid_guided = cfg.method == "sid" and cfg.fake_guidance != 1.0
        emb, z, n = self._batch(prompts, drop=cfg.cond_drop if sid_guided else 0.0)
        # SiD-LSG judges the fake network at the teacher's range; DMD2 fits it at every timestep
        t = self._timesteps(cfg.tmin, cfg.tmax) if cfg.method == "sid" else \
            self._timesteps(0, self.schedule.num_train_timesteps)
        with torch.no_grad():
            x_g = self.generate(z, emb)
        x_t = self.schedule.add_noise(x_g, n, t)
        scale = cfg.fake_guidance if cfg.method == "sid" else 1.0
        out = guided(self.fake, x_t, t, emb, self._uncond(len(t)), scale, self.context)
        # the denoising loss in noise space (what SiD-LSG's snr/(snr+1)-weighted v loss is)
        loss = (self.schedule.eps(out, x_t, t) - n).pow(2).mean()
        self.opt_f.zero_grad(set_to_none=True)
        loss.backward()
        _finite_grads(self.fake)
        self.opt_f.step()
        return float(loss.detach())

    def generator_update(self, prompts: Sequence[str]) -> float:
        """One generator step of the method's loss."""
        import torch

        cfg = self.cfg
        emb, z, n = self._batch(prompts)
        t = self._timesteps(cfg.tmin, cfg.tmax)
        x_g = self.generate(z, emb)
        uncond = self._uncond(len(t))
        self.fake.requires_grad_(False)
        try:
            if cfg.method == "sid":
                x_t = self.schedule.add_noise(x_g, n, t)
                y_fake = self._clean(self.fake, x_t, t, emb, uncond, cfg.fake_guidance)
                y_real = self._clean(self.real, x_t, t, emb, uncond, cfg.guidance)
                with torch.no_grad():
                    w = (x_g - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-5)
                diff = y_real - y_fake
                per = (diff * ((y_real - x_g) - cfg.alpha * diff) / w).flatten(1).sum(1)
                loss = per.mean()
            else:
                with torch.no_grad():
                    x_t = self.schedule.add_noise(x_g.detach(), n, t)
                    y_fake = self._clean(self.fake, x_t, t, emb, uncond, 1.0)
                    y_real = self._clean(self.real, x_t, t, emb, uncond, cfg.guidance)
                    w = (x_g - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-5)
                    grad = torch.nan_to_num((y_fake - y_real) / w)
                loss = 0.5 * (x_g - (x_g - grad).detach()).pow(2).mean()
        finally:
            self.fake.requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        _finite_grads(self.G)
        self.opt_g.step()
        if self.ema is not None:
            beta = 0.5 ** (1.0 / self.cfg.ema_halflife)
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.G.parameters()):
                    pe.lerp_(p, 1 - beta)
        return float(loss.detach())

    def iteration(self, prompts: Sequence[str]) -> tuple[float, float]:
        """Fake-score update(s), then one generator update; returns (generator loss, mean fake loss)."""
        fake = [self.fake_update(prompts) for _ in range(self.cfg.fake_updates)]
        g = self.generator_update(prompts)
        self.step += 1
        self.losses["generator"].append(g)
        self.losses["fake"].append(sum(fake) / len(fake))
        return g, self.losses["fake"][-1]

    def student_unet(self):
        """The network the student ships: the EMA where there is one, else G."""
        return self.ema if self.ema is not None else self.G

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict:
        from plugins.diffusion_common.checkpoint import pack, pack_optimizer, pack_rng

        tensors = {**pack("G", self.G), **pack("fake", self.fake), **pack_optimizer("opt_g", self.opt_g),
                   **pack_optimizer("opt_f", self.opt_f), **pack_rng("rng", self.rng)}
        if self.ema is not None:
            tensors.update(pack("ema", self.ema))
        return tensors

    def load(self, tensors: dict, meta: dict) -> None:
        from plugins.diffusion_common.checkpoint import restore_optimizer, restore_rng, unpack

        self.G.load_state_dict(unpack(tensors, "G"))
        self.fake.load_state_dict(unpack(tensors, "fake"))
        if self.ema is not None:
            self.ema.load_state_dict(unpack(tensors, "ema"))
        restore_optimizer(self.opt_g, tensors, "opt_g")
        restore_optimizer(self.opt_f, tensors, "opt_f")
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_f, self.cfg.fake_lr)):
            for group in opt.param_groups:  # a resumed run may change the learning rates
                group["lr"] = lr
        restore_rng(self.rng, tensors, "rng")
        self.step = int(meta["step"])
        self.losses = {k: list(v) for k, v in meta["losses"].items()}


def _finite_grads(module) -> None:
    import torch

    for p in module.parameters():
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


# ------------------------------------------------------------------------------------------------
# The teacher
# ------------------------------------------------------------------------------------------------

@dataclass
class Teacher:
    """What distillation needs of the teacher model."""

    pipe: Any
    unet: Any
    scheduler_config: dict
    latent_size: int
    path: Path
    hash: str
    arch: str
    device: str

    def encode(self, prompts: Sequence[str]):
        """Prompt embeddings (no gradient), as the studio's sampler computes them."""
        import torch

        tok, te = self.pipe.tokenizer, self.pipe.text_encoder
        max_len = int(getattr(tok, "model_max_length", 77) or 77)
        if max_len > 4096:
            max_len = 77
        ids = tok(list(prompts), padding="max_length", max_length=max_len, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        with torch.no_grad():
            return te(ids)[0].float()


def load_teacher(ref: str, device: str = "cpu", allow_pickle: bool = False, load_options=None) -> Teacher:
    """Load an SD-1.x/2.x-structured text-to-image model (diffusers folder or single-file checkpoint)
    in float32 on ``device`` as a distillation teacher. Raises ModelError with a sentence otherwise."""
    from plugins.diffusion_common.models import load_pipeline

    loaded = load_pipeline(ref, device=device, dtype="float32", allow_pickle=allow_pickle, options=load_options)
    info = loaded.info
    pipe = loaded.pipe
    if info.family != "sd":
        raise ModelError(f"{info.path.name} is a {info.arch_name} model; the distill tool takes SD 1.x/2.x-structured "
                         "text-to-image models (UNet with cross-attention, CLIP text encoder, VAE)")
    for part in ("unet", "text_encoder", "tokenizer", "vae", "scheduler"):
        if getattr(pipe, part, None) is None:
            raise ModelError(f"the model at {info.path} has no {part}; it cannot be distilled")
    unet = pipe.unet
    if info.inpainting or unet.config.in_channels != unet.config.out_channels:
        raise ModelError(f"{info.path.name} is an inpainting model ({unet.config.in_channels} input channels); "
                         "distil the text-to-image model it was made from")
    if getattr(unet.config, "addition_embed_type", None) or getattr(unet.config, "time_cond_proj_dim", None):
        raise ModelError(f"{info.path.name}'s UNet takes extra conditioning (SDXL-style or a guidance embedding); "
                         "the distill tool takes plain SD 1.x/2.x UNets")
    sample = unet.config.sample_size
    sample = int(sample[0] if isinstance(sample, (list, tuple)) else sample)
    return Teacher(pipe=pipe, unet=unet, scheduler_config=dict(loaded.scheduler_config or pipe.scheduler.config),
                   latent_size=sample, path=Path(info.path), hash=loaded.hash, arch=info.arch, device=device)


# ------------------------------------------------------------------------------------------------
# Previews and the student folder
# ------------------------------------------------------------------------------------------------

def preview_grid(distiller: Distiller, prompts: Sequence[str], seed: int = 2024, columns: int = 4):
    """The student's pictures of ``prompts`` from fixed noise, as one uint8 grid (H x W x 3)."""
    import numpy as np
    import torch

    from plugins.diffusion_common.preview import to_uint8_images

    g = torch.Generator("cpu").manual_seed(seed)
    z = torch.randn(len(prompts), *distiller.latent_shape, generator=g).to(distiller.device)
    with torch.no_grad():
        x0 = distiller.generate(z, distiller.teacher.encode(prompts), unet=distiller.student_unet())
        vae = distiller.teacher.pipe.vae
        sf = float(getattr(vae.config, "scaling_factor", 0.18215) or 0.18215)
        images = to_uint8_images(vae.decode(x0 / sf, return_dict=False)[0])
    rows = []
    for r in range(0, len(images), columns):
        row = list(images[r:r + columns])
        row += [np.full_like(images[0], 255)] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def student_scheduler_config(teacher_config: dict) -> dict:
    """The teacher's scheduler as a DDIM sampler whose one step is the generator's call: the first
    timestep is the last training one ("trailing") and the step returns the clean prediction itself."""
    cfg = {k: v for k, v in teacher_config.items() if not k.startswith("_")}
    cfg.update(timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, thresholding=False)
    return cfg


def export_student(distiller: Distiller, dest: Path, record: dict) -> Path:
    """Write the student as a diffusers ``StableDiffusionPipeline`` folder at ``dest`` (atomically):
    the teacher's tokenizer, text encoder and VAE, the generator's UNet, a one-step DDIM scheduler,
    and ``implicit_studio.json`` telling the studio's tools to draw it in one step without guidance."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    dest = Path(dest)
    pipe = distiller.teacher.pipe
    unet = copy.deepcopy(distiller.student_unet()).float().cpu().eval()
    if distiller.t_init != distiller.schedule.num_train_timesteps - 1:
        raise ModelError("a student made at an earlier init timestep is not a one-step DDIM sampler; "
                         "export needs --init-timestep -1")
    student = StableDiffusionPipeline(
        vae=copy.deepcopy(pipe.vae).float().cpu(), text_encoder=copy.deepcopy(pipe.text_encoder).float().cpu(),
        tokenizer=pipe.tokenizer, unet=unet,
        scheduler=DDIMScheduler.from_config(student_scheduler_config(distiller.teacher.scheduler_config)),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    student.save_pretrained(str(tmp), safe_serialization=True)
    teacher_tok = distiller.teacher.path / "tokenizer"
    if teacher_tok.is_dir():  # keep CLIP's vocab.json/merges.txt where newer transformers write only tokenizer.json
        for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            if (teacher_tok / name).exists() and not (tmp / "tokenizer" / name).exists():
                shutil.copy2(teacher_tok / name, tmp / "tokenizer" / name)
    settings = {
        "about": "A one-step student distilled by Implicit Studio's distill tool: draw it with 1 step and no "
                 "guidance (its guidance is distilled into it).",
        "text-to-image": {"steps": 1, "guidance": 1.0},
        "distilled": record,
    }
    (tmp / "implicit_studio.json").write_text(json.dumps(settings, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


# ------------------------------------------------------------------------------------------------
# A run
# ------------------------------------------------------------------------------------------------

def tail_mean(values: Sequence[float], n: int = 20) -> float:
    tail = list(values[-n:])
    return sum(tail) / len(tail) if tail else float("nan")


def run(teacher_ref: str, out: str | Path, cfg: DistillConfig, prompts: Sequence[str], *, device: str = "cpu",
        preview_prompts: Sequence[str] | None = None, on_progress: ProgressFn | None = None,
        on_preview: Callable[[Any], None] | None = None, on_metric: Callable[[str, float, float], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
        export: bool = True, allow_pickle: bool = False, load_options=None,
        stop_after: Optional[int] = None,
        on_checkpoint: Callable[[Distiller, dict], None] | None = None) -> DistillReport:
    """Distil ``teacher_ref`` into a one-step student in folder ``out`` (resuming its checkpoint).

    Calls ``on_progress(step, total, message)`` after every iteration (the message carries the losses,
    from the third iteration on the measured seconds per iteration, and at the third the run's cost),
    ``on_metric(name, step, value)`` with the losses, ``on_preview(grid)`` every ``preview_every``
    iterations. ``is_cancelled()`` (or ``on_progress`` raising) stops the run after writing a
    checkpoint of the last finished iteration. ``stop_after`` ends this process's share of the run after
    that many iterations (checkpointed; the run resumes later). The student folder is written at the
    end (``out/student``). ``on_checkpoint(distiller, meta)`` is called after every checkpoint written
    between iterations (to evaluate the generator as the run goes); its time is not counted as the run's.
    """
    import torch

    from plugins.diffusion_common.checkpoint import ComputeClock, adapt_threads, load_state, save_state
    from plugins.diffusion_common.precision import flush_denormals

    log = log or _log.info
    cfg = cfg.resolved()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParamError(f"Run dir: {out} is a file; give a folder for the run", "run_dir")
    ck = out / CHECKPOINT
    tensors, meta = load_state(ck)
    if meta is not None:
        _check_resume(meta, cfg, ck)
    cores = torch.get_num_threads() if device != "cpu" else (os.cpu_count() or 1)
    max_threads = cfg.threads or cores
    if device == "cpu":
        torch.set_num_threads(max_threads)
    with flush_denormals():  # tiny activations otherwise slow CPU arithmetic many times over
        teacher = load_teacher(teacher_ref, device=device, allow_pickle=allow_pickle, load_options=load_options)
        if meta is not None and meta.get("teacher_hash") not in (None, teacher.hash):
            raise ParamError(f"Run dir: {out} holds a run distilling another model (hash "
                             f"{meta['teacher_hash'][:12]}, not {teacher.hash[:12]}); use a new folder", "run_dir")
        distiller = Distiller(teacher, cfg, device)
        if tensors is not None:
            distiller.load(tensors, meta)
            log(f"resuming at iteration {distiller.step} of {cfg.iterations} from {ck}.safetensors")
        resumed_from = distiller.step
        clock = ComputeClock(meta)
        precisions = sorted(set((meta or {}).get("precisions") or ()) | {distiller.precision})
        out.mkdir(parents=True, exist_ok=True)
        preview_prompts = list(preview_prompts or prompts[:8])
        report = DistillReport(out=out, step=distiller.step, total=cfg.iterations, resumed_from=resumed_from)

        def checkpoint() -> dict:
            totals = clock.totals()
            save_state(ck, distiller.state(), {
                "format": FORMAT, "step": distiller.step, "losses": distiller.losses, "config": cfg.record(),
                "teacher": str(teacher.path), "teacher_hash": teacher.hash, "teacher_arch": teacher.arch,
                "precisions": precisions, "device": device, **totals,
                "seconds_per_iteration": report.seconds_per_iteration})
            report.seconds, report.cpu_seconds = totals["seconds"], totals["cpu_seconds"]
            return totals

        def cancelled() -> bool:
            return bool(is_cancelled and is_cancelled())

        def show_preview() -> None:
            grid = preview_grid(distiller, preview_prompts)
            report.preview = grid
            if on_preview is not None:
                on_preview(grid)
            from PIL import Image

            Image.fromarray(grid).save(out / "preview.png")

        log(f"distilling {teacher.path} ({teacher.arch}) with {cfg.method} on {device} "
            f"({'bfloat16 autocast' if distiller.precision == 'bf16' else 'float32'}), batch {cfg.batch}, "
            f"{cfg.fake_updates} fake update(s) per generator update, {len(prompts)} prompts")
        if cfg.preview_every and distiller.step == 0:
            show_preview()
        timed_from, t_timed = None, 0.0
        end = cfg.iterations if stop_after is None else min(cfg.iterations, distiller.step + int(stop_after))
        try:
            while distiller.step < end:
                if cancelled():
                    raise _Stop()
                g_loss, f_loss = distiller.iteration(prompts)
                step = distiller.step
                now = time.perf_counter()
                if timed_from is None:  # the first iteration warms up; time the ones after it
                    timed_from, t_timed = step, now
                elif step - timed_from >= 2:
                    report.seconds_per_iteration = (now - t_timed) / (step - timed_from)
                if on_metric is not None:
                    on_metric("generator loss", step, g_loss)
                    on_metric("fake-score loss", step, f_loss)
                msg = f"{cfg.method} iteration {step}/{cfg.iterations}: generator {g_loss:.4f}, fake {f_loss:.4f}"
                spi = report.seconds_per_iteration
                left = ""
                if math.isfinite(spi):
                    left = f", ETA {_duration(spi * (cfg.iterations - step))}"
                    msg += f"; {spi:.2f} s/iteration"
                    if step - timed_from == 2:  # the cost, measured, before the run goes on
                        cost = (f"{spi:.2f} s per iteration on {device}: {cfg.iterations} iterations take about "
                                f"{_duration(spi * cfg.iterations)} ({_duration(spi * (cfg.iterations - step))} left)")
                        msg += f" (cost measured: {cost})"
                        log("cost: " + cost)
                if step == resumed_from + 1 and resumed_from:
                    msg += f" (resumed from the checkpoint of iteration {resumed_from})"
                if on_progress is not None:
                    try:
                        on_progress(step, cfg.iterations, msg)
                    except BaseException:
                        checkpoint()  # a cancel raised from the progress callback keeps this iteration
                        raise
                if step % 25 == 0 or step == resumed_from + 1:
                    log(msg + left + f" (mean of 20: generator {tail_mean(distiller.losses['generator']):.4f}, "
                              f"fake {tail_mean(distiller.losses['fake']):.4f})")
                if device == "cpu" and not cfg.threads and step % 10 == 0:
                    adapt_threads(max_threads)
                if step % cfg.checkpoint_every == 0 or step == end:
                    totals = checkpoint()
                    if on_checkpoint is not None:
                        with clock.excluded():
                            on_checkpoint(distiller, {"step": step, **totals})
                if cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.iterations):
                    show_preview()
        except _Stop:
            checkpoint()
            report.cancelled = True
            log(f"cancelled at iteration {distiller.step}; the checkpoint keeps it (run again on {out} to resume)")
        report.step = distiller.step
        report.losses = distiller.losses
        if not report.cancelled:
            if export and distiller.step >= cfg.iterations:
                record = _student_record(distiller, report.seconds, report.cpu_seconds, device, precisions)
                report.student = export_student(distiller, out / STUDENT, record)
                log(f"student written to {report.student}")
        return report


def export_run(teacher_ref: str, run_dir: str | Path, dest: str | Path | None = None, device: str = "cpu") -> Path:
    """Write the student of a run's checkpoint, finished or not, to ``dest`` (default ``run_dir/student``)."""
    from plugins.diffusion_common.checkpoint import load_state

    run_dir = Path(run_dir)
    tensors, meta = load_state(run_dir / CHECKPOINT)
    if tensors is None:
        raise ParamError(f"Run dir: {run_dir} holds no distillation checkpoint", "run_dir")
    if meta.get("format") != FORMAT:
        raise ParamError(f"Run dir: {run_dir} holds no distillation checkpoint of this version", "run_dir")
    teacher = load_teacher(teacher_ref, device=device)
    if meta.get("teacher_hash") not in (None, teacher.hash):
        raise ParamError(f"Run dir: {run_dir} distils another model than {teacher_ref}", "run_dir")
    cfg = config_from({**meta["config"], "betas": tuple(meta["config"]["betas"])})
    distiller = Distiller(teacher, cfg, device)
    distiller.load(tensors, meta)
    record = _student_record(distiller, float(meta.get("seconds", 0)), float(meta.get("cpu_seconds", 0)),
                             meta.get("device", device), meta.get("precisions"))
    return export_student(distiller, Path(dest) if dest else run_dir / STUDENT, record)


def _student_record(distiller: Distiller, seconds: float, cpu_seconds: float, device: str, precisions) -> dict:
    """How a student was made, as its folder's implicit_studio.json records it."""
    teacher = distiller.teacher
    return {"teacher": str(teacher.path), "teacher_hash": teacher.hash, "method": distiller.cfg.method,
            "iterations": distiller.step, "config": distiller.cfg.record(), "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1), "device": device, "precisions": precisions}


class _Stop(Exception):
    pass


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _check_resume(meta: dict, cfg: DistillConfig, ck: Path) -> None:
    if meta.get("format") != FORMAT:
        raise ParamError(f"Run dir: {ck}.safetensors is not a distillation checkpoint of this version; use a new "
                         "folder", "run_dir")
    had = meta.get("config") or {}
    now = cfg.record()
    changed = [k for k in _FIXED if k in had and had[k] != now[k]]
    if changed:
        what = ", ".join(f"{k} {had[k]!r} (asked {now[k]!r})" for k in changed)
        raise ParamError(f"Run dir: the run in {ck.parent} was started with {what}; resume it with the same settings "
                         "or use a new folder", changed[0])


def config_from(values: dict) -> DistillConfig:
    """A DistillConfig from keyword values (unknown keys are refused)."""
    names = {f.name for f in fields(DistillConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ParamError(f"unknown distillation settings: {', '.join(unknown)}")
    return DistillConfig(**values)
