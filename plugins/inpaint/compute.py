"""Inpainting for any diffusion model: CoPaint (+ time travel), RePaint, blend, and 9-channel
inpainting checkpoints. Pure torch, no Qt.

Written from the notes in ``shared/research/algorithms-hedit-copaint.md``; no reference code
copied (RePaint's code is non-commercial, CoPaint's has no licence).

Conventions: the user's mask is white (True) where new content is wanted; the *known* region is
the rest. ``y0`` is the VAE latent of the original image.

Methods (all with classifier-free guidance on the prompt):

- ``blend``: at every step the known part of the latent is replaced by ``y0`` noised to the
  current level (fresh noise), then a DDIM step (eta 0 by default).
- ``repaint``: the same replacement, ancestral steps (eta 1) and RePaint's resampling schedule:
  after reaching a jump point, go back up ``jump_length`` steps (``x <- sqrt(ab_hi/ab_lo) x +
  sqrt(1 - ab_hi/ab_lo) n``) and denoise again, ``resamplings - 1`` times per jump point.
- ``copaint``: at each step, ``grad_steps`` gradient steps on the *whole* latent x_t minimising
  ``sum over known pixels (y - Dec(x0(x_t)))^2 + lam_t * sum (x_t - x_t_before)^2`` where x0 is the
  one-step (Tweedie) prediction; each step size is searched (x0.8 back-off while the loss is NaN or
  larger), then a deterministic DDIM step from the optimised latent. ``copaint-tt`` adds time
  travel: the RePaint-style schedule with ``tt_length``/``tt_interval``/``tt_repeats``, one extra
  optimisation before each jump back.
- ``checkpoint``: a model whose UNet takes 2 x latent channels + 1 inputs (9 for SD: a dedicated
  inpainting checkpoint)
  goes through diffusers' ``StableDiffusionInpaintPipeline``.

Porting CoPaint to latent models (our extension; the paper works in pixel space):

- The x0 prediction is a latent, decoded through the VAE decoder so the loss is measured on the
  known *pixels* (faithful to the method, gradients pass through decoder and UNet). It is **not
  clamped** to [-1, 1]: latents are unbounded (the decoded image is compared unclamped too).
- The known region enters the loss at pixel resolution; where the latent itself is blended or
  pasted (blend, RePaint, final latent) the mask is mapped to latent resolution by **dilation**
  (max-pooling over each 8x8 block: a latent cell counts as unknown if any of its pixels is), never
  nearest sampling, so every masked pixel is regenerated.
- Rates retuned: the loss is a sum over 64x64x3 pixels instead of 256x256x3 and gradients reach the
  latent through the decoder, so the learning rate default differs from the paper (see
  ``InpaintSettings``); the paper's per-step growth factors (lr x1.012, lam x1.01 per step at 250
  steps) are rescaled so their total growth over the run is the same for any step count, and the
  "smart" ``sqrt(ab_t / ab_0)`` scaling is kept.
- The step-size search is capped (``max_backoff`` halvings by 0.8) and a NaN/inf loss or gradient
  rejects the step and keeps x (the reference loops forever on NaN).
- Output: the decoded result is composited over the original: outside the mask the original
  pixels are kept exactly, blended over a feathered edge inside it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np
import torch

from app.api import Cancelled, ParamError
from plugins.diffusion_common import editing as D

METHODS = ("copaint", "copaint-tt", "repaint", "blend", "checkpoint")


@dataclass
class InpaintSettings:
    method: str = "copaint"
    num_steps: int = 25
    guidance: float = 7.5
    seed: int = 0
    eta: Optional[float] = None  # blend: 0 (DDIM); repaint: 1 (ancestral)
    # RePaint
    jump_length: Optional[int] = None  # default: 10/250 of the steps (at least 1)
    resamplings: int = 10
    # CoPaint
    lr: float = 0.02
    lr_decay: Optional[float] = None  # per step; default 1.012 ** (250 / steps)
    grad_steps: int = 2
    reg: float = 1e-4
    reg_decay: Optional[float] = None  # per step; default 1.01 ** (250 / steps)
    smart_lr: bool = True
    max_backoff: int = 10
    tt_length: Optional[int] = None  # default: 10/250 of the steps (at least 1)
    tt_interval: Optional[int] = None  # distance between time-travel points; default = tt_length
    tt_repeats: int = 2
    # output
    feather: int = 2
    preview_every: int = 0

    def resolved(self) -> "InpaintSettings":
        s = replace(self)
        if s.method not in METHODS:
            raise ParamError(f"unknown inpainting method {s.method!r}; choose one of {', '.join(METHODS)}", "method")
        if not (1 <= int(s.num_steps) <= 1000):
            raise ParamError(f"number of steps must be between 1 and 1000, got {s.num_steps}", "steps")
        n = s.num_steps = int(s.num_steps)
        scaled = max(1, round(10 * n / 250))
        if s.eta is None:
            s.eta = 1.0 if s.method == "repaint" else 0.0
        if s.jump_length is None:
            s.jump_length = scaled
        if s.tt_length is None:
            s.tt_length = scaled
        if s.tt_interval is None:
            s.tt_interval = s.tt_length
        if s.lr_decay is None:
            s.lr_decay = 1.012 ** (250 / n)
        if s.reg_decay is None:
            s.reg_decay = 1.01 ** (250 / n)
        for name in ("jump_length", "resamplings", "tt_length", "tt_interval", "tt_repeats"):
            if getattr(s, name) < 1:
                raise ParamError(f"{name.replace('_', ' ')} must be at least 1", name)
        if s.grad_steps < 0 or s.max_backoff < 0:
            raise ParamError("gradient steps and back-off count cannot be negative", "grad_steps")
        for name in ("lr", "reg", "guidance"):
            v = getattr(s, name)
            if not math.isfinite(v) or v < 0:
                raise ParamError(f"{name} must be a finite number >= 0, got {v}", name)
        return s


def jump_schedule(n: int, length: int, repeats: int, interval: Optional[int] = None) -> list[int]:
    """RePaint-style list of step indices (0 = the first, noisiest level; n = clean).

    Consecutive entries that increase are reverse (denoising) steps, decreasing ones are forward
    (re-noising) steps. Jump points are every ``interval`` (default ``length``) levels, measured
    from the clean end; each is revisited ``repeats - 1`` times by going ``length`` levels back.
    """
    interval = interval or length
    jumps = {j: repeats - 1 for j in range(0, n - length, interval)}  # in "time" (n-1 = top)
    t = n - 1
    seq = [t]
    while t >= 0:
        t -= 1
        seq.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(length):
                t += 1
                seq.append(t)
    return [n - 1 - v for v in seq]


@dataclass
class InpaintResult:
    image: np.ndarray  # HxWx3 uint8 at the input size: composited
    raw: np.ndarray  # the decoded result at the model size, before compositing
    mask: np.ndarray  # HxW uint8 (255 = filled) at the input size
    settings: InpaintSettings
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def check_mask(mask: np.ndarray) -> None:
    if not mask.any():
        raise ParamError("the mask is empty: paint the region to fill (white = repaint) before inpainting", "mask")
    if mask.all():
        raise ParamError("the mask covers the whole image, so nothing is left to keep; "
                         "use text-to-image instead, or leave part of the image unmasked", "mask")


def inpaint(
    pipe,
    image: Any,
    mask: Any,
    prompt: str = "",
    settings: Optional[InpaintSettings] = None,
    *,
    negative_prompt: str = "",
    resize_mask: bool = False,
    progress: Optional[Callable[[int, int, str], None]] = None,
    preview: Optional[Callable[[np.ndarray], None]] = None,
    is_cancelled: Optional[Callable[[], bool]] = None,
) -> InpaintResult:
    """Fill the white part of ``mask`` in ``image`` (arrays, PIL images or file paths)."""
    s = (settings or InpaintSettings()).resolved()
    notes: list[str] = []
    t0 = time.perf_counter()
    original, img = D.prepare_image(pipe, image, notes)
    m = D.prepare_mask(mask, original.shape[:2], "mask", resize=resize_mask)
    check_mask(m)
    size = img.shape[0]
    m_model = m if m.shape == (size, size) else D.prepare_mask(m.astype(np.uint8) * 255, (size, size), resize=True)
    if not m_model.any():
        m_model = m_model.copy()
        notes.append("the mask is thinner than one model pixel; it was grown so the model sees it")
        mt = torch.from_numpy(m.astype(np.float32))[None, None]
        m_model = torch.nn.functional.adaptive_max_pool2d(mt, (size, size))[0, 0].numpy() > 0
    D.check_vae_encoder(pipe)
    in_ch = int(pipe.unet.config.in_channels)
    lat_ch = int(pipe.vae.config.latent_channels)
    if in_ch == 2 * lat_ch + 1:  # latent + mask + masked-image latent: an inpainting checkpoint
        if s.method != "checkpoint":
            notes.append(f"this is an inpainting checkpoint ({in_ch}-channel UNet): used its own pipeline "
                         f"instead of {s.method}")
        s.method = "checkpoint"
    elif s.method == "checkpoint":
        raise ValueError(f"the 'checkpoint' method needs an inpainting model (a UNet with {2 * lat_ch + 1} input "
                         f"channels); this model has {in_ch} — choose copaint, repaint or blend")
    elif in_ch != lat_ch:
        raise ValueError(f"unsupported UNet with {in_ch} input channels")

    stats: dict[str, Any] = {"method": s.method}
    if s.method == "checkpoint":
        raw = _run_checkpoint(pipe, img, m_model, prompt, negative_prompt, s, progress, is_cancelled)
    else:
        raw = _run_latent(pipe, img, m_model, prompt, negative_prompt, s, stats, progress, preview, is_cancelled)
    out = D.composite(original, raw, m, s.feather)
    if raw.shape != original.shape:
        notes.append(f"result upscaled from {size}x{size} to {original.shape[1]}x{original.shape[0]} inside the mask")
    stats["seconds"] = time.perf_counter() - t0
    return InpaintResult(out, raw, m.astype(np.uint8) * 255, s, notes, stats)


def _run_checkpoint(pipe, img, m, prompt, negative_prompt, s, progress, is_cancelled) -> np.ndarray:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from PIL import Image

    inp = StableDiffusionInpaintPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    inp.set_progress_bar_config(disable=True)
    size = img.shape[0]

    def on_step(_pipe, i, _t, kw):
        if is_cancelled is not None and is_cancelled():
            raise Cancelled("inpainting cancelled")
        if progress is not None:
            progress(i + 1, s.num_steps, f"step {i + 1}/{s.num_steps}")
        return kw

    gen = torch.Generator(device="cpu").manual_seed(int(s.seed))
    out = inp(prompt=prompt or "", negative_prompt=negative_prompt or None, image=Image.fromarray(img),
              mask_image=Image.fromarray(m.astype(np.uint8) * 255), height=size, width=size,
              num_inference_steps=s.num_steps, guidance_scale=s.guidance, generator=gen, output_type="np",
              callback_on_step_end=on_step)
    return D.to_uint8_rgb(out.images[0])


def _run_latent(pipe, img, m, prompt, negative_prompt, s, stats, progress, preview, is_cancelled) -> np.ndarray:
    device, dtype = D.model_device(pipe), D.model_dtype(pipe)
    factor = D.vae_scale_factor(pipe)
    n = s.num_steps
    sched = D.Schedule.from_pipe(pipe, n)
    emb = D.encode_prompts(pipe, [negative_prompt or "", prompt or ""])
    eps_model = D.EpsModel(pipe, {"null": emb[:1], "cond": emb[1:]})
    y_img = D.image_to_tensor(img, device, dtype)
    y0 = D.vae_encode(pipe, y_img)
    known_px = torch.from_numpy((~m).astype(np.float32))[None, None].to(device, dtype)
    unknown_lat = D.latent_mask(torch.from_numpy(m.astype(np.float32)), factor).to(device, dtype)
    known_lat = 1.0 - unknown_lat
    gen = torch.Generator(device="cpu").manual_seed(int(s.seed))

    def randn():
        return torch.randn(y0.shape, generator=gen, dtype=torch.float32).to(device, dtype)

    def eps(x: torch.Tensor, i: int) -> torch.Tensor:
        t = sched.t_model(i)
        if s.guidance == 1.0:
            return eps_model(t, [(x, "cond")])[0]
        e_null, e_cond = eps_model(t, [(x, "null"), (x, "cond")])
        return D.cfg(e_null, e_cond, s.guidance)

    def noised_known(i: int) -> torch.Tensor:
        a = sched.ab(i)
        return math.sqrt(a) * y0 + math.sqrt(1 - a) * randn()

    if s.method in ("repaint", "copaint-tt"):
        if s.method == "repaint":
            seq = jump_schedule(n, s.jump_length, s.resamplings)
        else:
            seq = jump_schedule(n, s.tt_length, s.tt_repeats, s.tt_interval)
    else:
        seq = list(range(n + 1))
    reverse_total = sum(1 for a, b in zip(seq, seq[1:]) if b > a)
    stats.update({"reverse_steps": reverse_total, "forward_steps": len(seq) - 1 - reverse_total})
    copaint = s.method in ("copaint", "copaint-tt")
    known_hist: list[tuple[float, float]] = []
    cp_stats = {"backoffs": 0, "rejected": 0, "grad_evals": 0}

    def lr_at(i: int) -> tuple[float, float]:
        lr = s.lr * s.lr_decay ** i
        if s.smart_lr:
            lr *= math.sqrt(sched.ab(i) / sched.final_alpha)
        return lr, s.reg * s.reg_decay ** i

    x = randn()
    done = 0
    with torch.no_grad():
        for k, (a, b) in enumerate(zip(seq, seq[1:])):
            if is_cancelled is not None and is_cancelled():
                raise Cancelled("inpainting cancelled")
            if b < a:  # time travel / resampling: re-noise one level up
                if copaint and (k == 0 or seq[k - 1] < a) and s.grad_steps > 0:
                    lr, lam = lr_at(a)  # optimise once more before travelling back
                    x, _, _ = copaint_optimise(pipe, eps, x, a, sched, y_img, known_px, lr, lam, s, cp_stats)
                r = sched.ab(b) / sched.ab(a)
                x = math.sqrt(r) * x + math.sqrt(1 - r) * randn()
                continue
            i = a
            if copaint:
                lr, lam = lr_at(i)
                if s.grad_steps > 0 and lr > 0:
                    x, e, hist = copaint_optimise(pipe, eps, x, i, sched, y_img, known_px, lr, lam, s, cp_stats)
                    known_hist.append(hist)
                else:
                    e = eps(x, i)
                x = D.step_mean(sched, i, x, e, 0.0)
            else:
                x = known_lat * noised_known(i) + unknown_lat * x
                e = eps(x, i)
                x = D.step_mean(sched, i, x, e, s.eta)
                if s.eta > 0:
                    x = x + sched.sigma(i, s.eta) * randn()
            done += 1
            if progress is not None:
                progress(done, reverse_total, f"step {done}/{reverse_total}")
            if preview is not None and s.preview_every and done % s.preview_every == 0:
                preview(D.tensor_to_uint8(D.vae_decode(pipe, x)))
        if not copaint:
            x = known_lat * y0 + unknown_lat * x
        raw = D.tensor_to_uint8(D.vae_decode(pipe, x))
    stats["unet_rows"] = eps_model.calls
    if copaint:
        stats.update(cp_stats)
        stats["known_loss"] = known_hist  # (before, after) the optimisation, per denoising step
    return raw


def copaint_loss(pipe, eps, x, i, sched, y_img, known_px):
    """(known-region loss, eps, x0) at x for level i, with the graph."""
    e = eps(x, i)
    x0 = D.predict_x0(x, e, sched.ab(i))
    dec = D.vae_decode(pipe, x0)
    known = ((y_img - dec) ** 2 * known_px).sum()
    return known, e


def copaint_optimise(pipe, eps, x_t, i, sched, y_img, known_px, lr, lam, s, st):
    """Gradient steps on x_t for the CoPaint objective with a capped, NaN-safe step search.
    Returns (x, eps at x, (known loss before, after))."""
    x_ref = x_t.detach()
    x = x_ref.clone()
    with torch.enable_grad():
        xv = x.requires_grad_(True)
        known, e = copaint_loss(pipe, eps, xv, i, sched, y_img, known_px)
        loss = known  # the regulariser is 0 at the start
        first = float(known.detach())
        for _ in range(s.grad_steps):
            if not torch.isfinite(loss):
                st["rejected"] += 1
                break
            (g,) = torch.autograd.grad(loss, xv)
            st["grad_evals"] += 1
            if not torch.isfinite(g).all():
                st["rejected"] += 1
                break
            step = lr
            accepted = None
            for _b in range(s.max_backoff + 1):
                cand = (xv.detach() - step * g).requires_grad_(True)
                k2, e2 = copaint_loss(pipe, eps, cand, i, sched, y_img, known_px)
                l2 = k2 + lam * ((cand - x_ref) ** 2).sum()
                if torch.isfinite(l2) and l2 <= loss:
                    accepted = (cand, k2, e2, l2)
                    break
                st["backoffs"] += 1
                step *= 0.8
            if accepted is None:  # no acceptable step within the cap (or NaN): keep x
                st["rejected"] += 1
                break
            xv, known, e, loss = accepted
    last = float(known.detach())
    return xv.detach(), e.detach(), (first, last)
