"""h-Edit: training-free editing by Doob's h-transform (text-, reward- and combined guidance).

Written from the notes in ``shared/research/algorithms-hedit-copaint.md`` (no reference code
copied). Pure torch, no Qt. Works with any diffusers ``StableDiffusionPipeline``-shaped object.

Each reverse step of the edited latent is a **reconstruction** term plus an **editing** term:

- Reconstruction. An inversion of the source image stores, for every step i (timestep t_i to
  t_{i+1}), the residual ``u_i = x_{i+1} - mu(x_i, t_i, eps_src)``, so replaying
  ``x_{i+1} = mu(x_i, t_i, eps_{w_orig}(x_i, src)) + u_i`` reproduces the inverted path exactly.
  *random* (h-Edit-R): edit-friendly DDPM inversion, independent noisy latents per step, eta = 1
  (``u_i = sigma_i z_i``). *deterministic* (h-Edit-D): DDIM inversion (eta = 0) and its residuals.
- Text editing term ``k(t_i, t_{i+1}) * f`` with ``f = eps_{w_edit}(tar) - eps_{w_src_edit}(src)``
  and ``k = d mu / d eps`` (negative). *explicit*: f at the current latent x_i; *implicit*: f at the
  candidate x_{i+1} (after the reconstruction step, UNet at t_{i+1}), repeated ``inner_steps``
  times with an L1 pull of strength ``lambda_rec`` back toward the reconstruction.
- Reward term: the gradient of a differentiable reward of the decoded predicted clean image,
  taken w.r.t. the latent through the VAE decoder only (eps held fixed, so the UNet is not
  differentiated); the step is RMS-normalised: ``weight * sqrt(1 - ab) * g / RMS(g)``. (The paper
  scales by RMS of the text correction in combined editing and uses raw gradients with a
  per-reward weight for face swapping; a normalised step keeps one weight meaningful for any
  reward and for reward-only edits.)
- Prompt-to-Prompt (``p2p.py``): cross-/self-attention of the edit row taken from the source row
  (the original latent on the inversion path) for the first fractions of the steps.
- Baselines: ``baseline-ef`` (edit-friendly DDPM inversion, then the stored noise replayed with the
  target prompt, no h-term) and ``baseline-ddim`` (DDIM inversion, then plain DDIM sampling with
  the target prompt).

Text-guided editing runs entirely under ``torch.no_grad``.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np
import torch

from app.api import Cancelled, ParamError
from plugins.diffusion_common import editing as D
from plugins.diffusion_common.recommended import model_folder, recommended_settings

from .p2p import AttentionController, align_tokens, attention_control, prompts_alignable

VARIANTS = ("explicit", "implicit", "baseline-ef", "baseline-ddim")
INVERSIONS = ("random", "deterministic")
ATTENTION = ("auto", "p2p", "none")


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------


@dataclass
class HEditSettings:
    """Options the paper exposes, with defaults from its scripts (scaled to the step count).

    ``None`` means "the default for this variant/inversion/step count" (see :meth:`resolved`).
    """

    variant: str = "implicit"
    inversion: str = "random"
    num_steps: int = 25
    # Guidance weights; None: the model's recommendation (``implicit_studio.json`` in its folder),
    # else the paper's scripts.
    w_orig: Optional[float] = None  # source weight of the reconstruction step (cfg_src; 1.0)
    w_src_edit: Optional[float] = None  # source weight inside the editing term (5.0 R / 9.0 D)
    w_edit: Optional[float] = None  # target weight (7.5 R / 10.0 D)
    edit_strength: float = 1.0  # multiplies the text editing term (1 = the paper)
    inner_steps: int = 1  # K of the implicit form
    lambda_rec: float = 0.1  # weight_reconstruction of the implicit form
    skip: Optional[int] = None  # steps skipped at the start (0 with P2P, 30 % of the steps without)
    edit_stop: Optional[int] = None  # no editing term from this step on (default: all steps)
    attention: str = "auto"  # auto: P2P when the prompts differ by alignable words
    cross_replace: float = 0.4
    self_replace: Optional[float] = None  # 0.35 R / 0.6 D
    reward: Optional[str] = None  # e.g. "colour:blue"
    reward_weight: float = 0.1
    reward_inner_steps: int = 1
    feather: int = 2  # pixels of feathering at the edge of a region mask
    seed: int = 0
    preview_every: int = 0  # 0: no previews

    def resolved(self, prompts_differ_alignably: bool, has_text_term: bool,
                 recommended: Optional[dict] = None) -> "HEditSettings":
        """Defaults filled in. ``recommended``: the model's weights for this inversion
        (``w_orig``/``w_src_edit``/``w_edit``), used where a weight is None."""
        s = replace(self)
        rec = recommended or {}
        if s.variant not in VARIANTS:
            raise ParamError(f"unknown variant {s.variant!r}; choose one of {', '.join(VARIANTS)}", "variant")
        if s.variant == "baseline-ef":
            s.inversion = "random"
        elif s.variant == "baseline-ddim":
            s.inversion = "deterministic"
        if s.inversion not in INVERSIONS:
            raise ParamError(f"unknown inversion {s.inversion!r}; choose random or deterministic", "inversion")
        if s.attention not in ATTENTION:
            raise ParamError(f"unknown attention control {s.attention!r}; choose auto, p2p or none", "attention")
        if not (1 <= int(s.num_steps) <= 1000):
            raise ParamError(f"number of steps must be between 1 and 1000, got {s.num_steps}", "steps")
        n = s.num_steps = int(s.num_steps)
        det = s.inversion == "deterministic"
        paper = {"w_orig": 1.0, "w_src_edit": 9.0 if det else 5.0, "w_edit": 10.0 if det else 7.5}
        for name, value in paper.items():
            if getattr(s, name) is None:
                setattr(s, name, float(rec.get(name, value)))
        if s.self_replace is None:
            s.self_replace = 0.6 if det else 0.35
        if s.inner_steps < 1:
            raise ParamError("inner steps must be at least 1", "inner_steps")
        if s.attention == "auto":
            s.attention = "p2p" if (prompts_differ_alignably and has_text_term) else "none"
        if s.skip is None:
            s.skip = round(0.3 * n) if (has_text_term and s.attention == "none") else 0
        if s.edit_stop is None:
            s.edit_stop = n
        if not (0 <= s.skip < n):
            raise ParamError(f"skip must be between 0 and {n - 1} for {n} steps, got {s.skip}", "skip")
        s.edit_stop = max(s.skip, min(int(s.edit_stop), n))
        for name in ("cross_replace", "self_replace"):
            v = getattr(s, name)
            if not 0.0 <= v <= 1.0:
                raise ParamError(f"{name.replace('_', ' ')} must be a fraction between 0 and 1, got {v}", name)
        return s


# ------------------------------------------------------------------------------------------
# Inversion and its cache
# ------------------------------------------------------------------------------------------


@dataclass
class Inversion:
    kind: str  # random | deterministic
    timesteps: list[int]
    latents: list[torch.Tensor]  # latents[i] at timesteps[i]; latents[N] = clean latent
    residuals: list[torch.Tensor]  # u_i for the step i -> i + 1
    seconds: float = 0.0

    @property
    def x0(self) -> torch.Tensor:
        return self.latents[-1]


class InversionCache:
    """In-memory LRU of inversions keyed by (image, model, steps, kind, source prompt, w_orig, seed)."""

    def __init__(self, max_items: int = 6):
        self.max_items = max_items
        self._items: OrderedDict[tuple, Inversion] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image_hash: str, model_hash: str, steps: int, kind: str, source_prompt: str,
            w_orig: float, seed: int) -> tuple:
        return (image_hash, model_hash, int(steps), kind, source_prompt, float(w_orig),
                int(seed) if kind == "random" else 0)

    def get(self, key: tuple) -> Optional[Inversion]:
        with self._lock:
            inv = self._items.get(key)
            if inv is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return inv

    def put(self, key: tuple, inv: Inversion) -> None:
        with self._lock:
            self._items[key] = inv
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


DEFAULT_CACHE = InversionCache()


def _eps_w(es: dict[str, torch.Tensor], cond: str, w: float) -> torch.Tensor:
    return D.cfg(es.get("null"), es[cond], w)


@torch.no_grad()
def invert(pipe, x0: torch.Tensor, sched: D.Schedule, eps: D.EpsModel, kind: str, w_orig: float,
           seed: int = 0, progress: Optional[Callable[[int, int], None]] = None) -> Inversion:
    """Invert the clean latent ``x0`` along ``sched`` with the source prompt (``eps`` names "src")."""
    start = time.perf_counter()
    n = len(sched)
    need_null = w_orig != 1.0

    def e_src(x: torch.Tensor, level: int) -> torch.Tensor:
        rows = [(x, "src")] + ([(x, "null")] if need_null else [])
        out = eps(sched.t_model(level), rows)
        return D.cfg(out[1] if need_null else None, out[0], w_orig)

    if kind == "random":
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        xs = []
        for i in range(n):
            a = sched.ab(i)
            noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(x0.device, x0.dtype)
            xs.append(math.sqrt(a) * x0 + math.sqrt(1 - a) * noise)
        xs.append(x0.clone())
        eta = 1.0
    elif kind == "deterministic":
        xs = [None] * (n + 1)
        xs[n] = x0.clone()
        for i in range(n - 1, -1, -1):  # up: level i+1 -> i, network at the upper timestep t_i
            lower = xs[i + 1]
            out = eps(sched.t_model(i), [(lower, "src")] + ([(lower, "null")] if need_null else []))
            e = D.cfg(out[1] if need_null else None, out[0], w_orig)
            x0hat = D.predict_x0(lower, e, sched.ab(i + 1))
            a = sched.ab(i)
            xs[i] = math.sqrt(a) * x0hat + math.sqrt(1 - a) * e
            if progress:
                progress(n - i, 2 * n)
        eta = 0.0
    else:
        raise ValueError(f"unknown inversion {kind!r}")

    residuals = []
    for i in range(n):
        mu = D.step_mean(sched, i, xs[i], e_src(xs[i], i), eta)
        u = xs[i + 1] - mu
        residuals.append(u)
        xs[i + 1] = mu + u  # the replay then reproduces xs exactly (no rounding drift)
        if progress:
            progress((n if kind == "deterministic" else 0) + i + 1, 2 * n if kind == "deterministic" else n)
    return Inversion(kind, list(sched.timesteps), xs, residuals, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------
# Editing
# ------------------------------------------------------------------------------------------


@dataclass
class EditResult:
    image: np.ndarray  # HxWx3 uint8 at the input image's size
    latent: torch.Tensor  # final latent
    settings: HEditSettings  # resolved settings actually used
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    mask: Optional[np.ndarray] = None  # HxW uint8 region mask used (if any)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.float().pow(2).mean().sqrt()


prepare_image = D.prepare_image
prepare_mask = D.prepare_mask
feathered_weight = D.feathered_weight
composite = D.composite


def h_edit(
    pipe,
    image: Any,
    source_prompt: str,
    target_prompt: str,
    settings: Optional[HEditSettings] = None,
    *,
    region_mask: Any = None,
    reward_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    cache: Optional[InversionCache] = DEFAULT_CACHE,
    model_hash: Optional[str] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    preview: Optional[Callable[[np.ndarray], None]] = None,
    is_cancelled: Optional[Callable[[], bool]] = None,
    resize_mask: bool = False,
) -> EditResult:
    """Edit ``image`` from ``source_prompt`` toward ``target_prompt`` and/or a reward.

    ``image``: HxWx3 array, PIL image or file path. ``region_mask``: optional HxW mask (white =
    may change) confining the edit. ``reward_fn``: a score callable (see ``rewards.py``);
    otherwise ``settings.reward`` is parsed. Callbacks: ``progress(step, total, message)``,
    ``preview(uint8 image)``, ``is_cancelled()``.
    """
    settings = settings or HEditSettings()
    notes: list[str] = []
    t_start = time.perf_counter()
    source_prompt = (source_prompt or "").strip()
    target_prompt = (target_prompt or "").strip()
    has_reward = reward_fn is not None or bool(settings.reward)
    if not target_prompt:
        if not has_reward:
            raise ParamError("the target prompt is empty: describe what the edited image should show, "
                             "or choose a reward for a reward-only edit", "target_prompt")
        target_prompt = source_prompt
        notes.append("no target prompt: reward-only edit (target = source prompt)")
    if not math.isfinite(settings.reward_weight) or not math.isfinite(settings.edit_strength):
        raise ValueError("weights must be finite numbers")

    original, img = prepare_image(pipe, image, notes)
    D.check_vae_encoder(pipe)
    size = img.shape[0]
    factor = D.vae_scale_factor(pipe)
    device, dtype = D.model_device(pipe), D.model_dtype(pipe)

    region_px = None
    region_lat = None
    if region_mask is not None:
        region_px = prepare_mask(region_mask, original.shape[:2], "region mask", resize=resize_mask)
        if not region_px.any():
            raise ParamError("the region mask is empty: paint the area the edit may change, or clear the mask", "region")
        model_mask = prepare_mask(region_px.astype(np.uint8) * 255, (size, size), "region mask", resize=True) \
            if region_px.shape != (size, size) else region_px
        region_lat = D.latent_mask(torch.from_numpy(model_mask.astype(np.float32)), factor).to(device, dtype)

    src_ids = D.token_ids(pipe, source_prompt)
    tar_ids = D.token_ids(pipe, target_prompt)
    text_differs = src_ids != tar_ids
    s0 = settings
    kind = {"baseline-ef": "random", "baseline-ddim": "deterministic"}.get(s0.variant, s0.inversion)
    recommended = recommended_settings(model_folder(pipe), "h-edit", kind, notes)
    s = settings.resolved(prompts_alignable(src_ids, tar_ids),
                          has_text_term=text_differs or (s0.w_edit is not None and s0.w_src_edit is not None
                                                         and s0.w_edit != s0.w_src_edit),
                          recommended=recommended)
    if recommended and any(getattr(s0, k) is None for k in recommended):
        notes.append("guidance weights recommended by the model: " + ", ".join(
            f"{k} {getattr(s, k):g}" for k in ("w_orig", "w_src_edit", "w_edit") if getattr(s0, k) is None))
    if s.variant.startswith("baseline") and has_reward:
        notes.append("rewards are not used by the baselines (they have no h-term)")
    n = s.num_steps

    # reward
    score = None
    if s.variant in ("explicit", "implicit") and has_reward:
        if reward_fn is not None:
            score = reward_fn
        else:
            from .rewards import make_reward

            region_t = torch.from_numpy(model_mask.astype(np.float32))[None, None] if region_px is not None else None
            score = make_reward(s.reward, region_t, target_prompt)

    sched = D.Schedule.from_pipe(pipe, n)
    embeds = D.encode_prompts(pipe, ["", source_prompt, target_prompt])
    eps = D.EpsModel(pipe, {"null": embeds[0:1], "src": embeds[1:2], "tar": embeds[2:3]})
    length = embeds.shape[1]
    mapper, alpha, _ = align_tokens(src_ids, tar_ids, length)
    controller = AttentionController(mapper, alpha,
                                     cross_replace_steps=int(round(s.cross_replace * n)) if s.attention == "p2p" else 0,
                                     self_replace_steps=int(round(s.self_replace * n)) if s.attention == "p2p" else 0)
    total_units = n - s.skip + 1

    def report(step: int, msg: str) -> None:
        if is_cancelled is not None and is_cancelled():
            raise Cancelled("edit cancelled")
        if progress is not None:
            progress(step, total_units, msg)

    # attention control is installed only around the controlled UNet calls (P2P)
    # ---- inversion (cached)
    x0 = D.vae_encode(pipe, D.image_to_tensor(img, device, dtype))
    mh = model_hash or D.weights_key(pipe)
    key = InversionCache.key(D.image_hash(img), mh, n, s.inversion, source_prompt, s.w_orig, s.seed)
    inv = cache.get(key) if cache is not None else None
    cached = inv is not None
    if inv is None:
        report(0, "inverting the source image")
        inv = invert(pipe, x0, sched, eps, s.inversion, s.w_orig, s.seed)
        if cache is not None:
            cache.put(key, inv)
    report(1, "inversion cached" if cached else "inversion done")
    t_inv = time.perf_counter()

    stats: dict[str, Any] = {"inversion_cached": cached, "inversion_seconds": 0.0 if cached else inv.seconds,
                             "reward_dropped": False, "unet_rows": 0, "p2p": s.attention == "p2p"}
    xs, us = inv.latents, inv.residuals
    eta = 0.0 if s.inversion == "deterministic" else 1.0
    need_null = any(w != 1.0 for w in (s.w_orig, s.w_src_edit, s.w_edit))
    reward_on = score is not None
    rows_before = eps.calls

    def text_F(y: torch.Tensor, level: int, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """f = eps_{w_edit}(y, tar) - eps_{w_src_edit}(y, src) at ``level`` (uncontrolled src,
        P2P-controlled tar when on), plus the raw predictions."""
        controller.step = step
        rows = [(y, "src")] + ([(y, "null")] if need_null else [])
        p2p_now = s.attention == "p2p" and (step < controller.cross_replace_steps or step < controller.self_replace_steps)
        if p2p_now:
            out = eps(sched.t_model(level), rows)
            controller.pairs = [(0, 1)]
            try:
                with attention_control(pipe.unet, controller):
                    out += eps(sched.t_model(level), [(xs[level], "src"), (y, "tar")], together=True)[1:]
            finally:
                controller.pairs = []
        else:
            rows += [(y, "tar")]
            out = eps(sched.t_model(level), rows)
        es = {"src": out[0], "tar": out[-1]}
        if need_null:
            es["null"] = out[1]
        f = _eps_w(es, "tar", s.w_edit) - _eps_w(es, "src", s.w_src_edit)
        return f * s.edit_strength, es

    def base_step(x: torch.Tensor, i: int, es: Optional[dict] = None) -> torch.Tensor:
        if es is None:
            out = eps(sched.t_model(i), [(x, "src")] + ([(x, "null")] if s.w_orig != 1.0 else []))
            es = {"src": out[0]}
            if s.w_orig != 1.0:
                es["null"] = out[1]
        return D.step_mean(sched, i, x, _eps_w(es, "src", s.w_orig), eta) + us[i]

    def reward_step(y: torch.Tensor, level: int, e_fixed: torch.Tensor) -> Optional[torch.Tensor]:
        nonlocal reward_on
        ab = sched.ab(level)
        for _ in range(max(1, s.reward_inner_steps)):
            with torch.enable_grad():
                yv = y.detach().clone().requires_grad_(True)
                x0hat = D.predict_x0(yv, e_fixed.detach(), ab)
                r = score(D.vae_decode(pipe, x0hat)).sum()
                (g,) = torch.autograd.grad(r, yv)
            if not (torch.isfinite(r) and torch.isfinite(g).all()):
                warnings.warn("the reward's gradient is not finite (NaN/inf); the reward term is dropped "
                              "for the rest of this edit", RuntimeWarning, stacklevel=2)
                notes.append(f"reward gradient was NaN/inf at step {level}: reward term dropped, edit continued")
                stats["reward_dropped"] = True
                reward_on = False
                return y
            if region_lat is not None:
                g = g * region_lat
            rms = _rms(g)
            if rms > 0:
                y = y + (s.reward_weight * math.sqrt(1 - ab) * g / rms).to(y.dtype)
        return y

    def baseline_eps(x: torch.Tensor, i: int, p2p_now: bool) -> torch.Tensor:
        """eps_{w_edit}(x, tar) (P2P-controlled against the source path when on)."""
        e_null = eps(sched.t_model(i), [(x, "null")])[0] if s.w_edit != 1.0 else None
        if p2p_now:
            controller.pairs = [(0, 1)]
            try:
                with attention_control(pipe.unet, controller):
                    e_tar = eps(sched.t_model(i), [(xs[i], "src"), (x, "tar")], together=True)[1]
            finally:
                controller.pairs = []
        else:
            e_tar = eps(sched.t_model(i), [(x, "tar")])[0]
        return D.cfg(e_null, e_tar, s.w_edit)

    # ---- the edit loop
    x = xs[s.skip].clone()
    if s.variant == "implicit" and s.skip > 0 and text_differs and s.skip < s.edit_stop:
        f, _ = text_F(x, s.skip, s.skip)
        x = x + sched.k_coef(s.skip - 1, eta) * f
    for i in range(s.skip, n):
        editing = i < s.edit_stop
        kc = sched.k_coef(i, eta)
        if not editing:
            x_next = base_step(x, i)
        elif s.variant == "explicit":
            f, es = text_F(x, i, i)
            x_next = base_step(x, i, es) + kc * f
            if reward_on:
                e_fix = _eps_w(es, "tar", s.w_edit) if text_differs else _eps_w(es, "src", s.w_orig)
                delta = reward_step(x, i, e_fix) - x
                x_next = x_next + delta
        elif s.variant == "implicit":
            base = base_step(x, i)
            y = base
            for kk in range(s.inner_steps):
                f, es = text_F(y, i + 1, i)
                if kk > 0 and s.lambda_rec > 0:
                    g = torch.sign(y - base) / y.numel()
                    rho = s.lambda_rec * _rms(f) / (_rms(g) + 1e-8)
                    y = y - rho * g
                y = y + kc * f
                if reward_on:
                    e_fix = _eps_w(es, "tar", s.w_edit) if text_differs else _eps_w(es, "src", s.w_orig)
                    y = reward_step(y, i + 1, e_fix)
            x_next = y
        elif s.variant == "baseline-ef":
            controller.step = i
            p2p_now = s.attention == "p2p" and (i < controller.cross_replace_steps or i < controller.self_replace_steps)
            e = baseline_eps(x, i, p2p_now)
            x_next = D.step_mean(sched, i, x, e, 1.0) + us[i]
        else:  # baseline-ddim
            controller.step = i
            p2p_now = s.attention == "p2p" and (i < controller.cross_replace_steps or i < controller.self_replace_steps)
            e = baseline_eps(x, i, p2p_now)
            x_next = D.step_mean(sched, i, x, e, 0.0)
        if region_lat is not None:
            x_next = region_lat * x_next + (1 - region_lat) * xs[i + 1]
        x = x_next
        report(i - s.skip + 2, f"step {i + 1}/{n}")
        if preview is not None and s.preview_every and ((i + 1) % s.preview_every == 0 or i == n - 1):
            with torch.no_grad():
                # the edited latent shares the inverted path's noise, so its clean estimate is
                # the original latent plus the (signal) difference, rescaled to the clean level
                est = xs[-1] + (x - xs[i + 1]) / math.sqrt(sched.ab(i + 1))
                preview(D.tensor_to_uint8(D.vae_decode(pipe, est)))

    with torch.no_grad():
        out_img = D.tensor_to_uint8(D.vae_decode(pipe, x))
    stats["unet_rows"] = eps.calls - rows_before
    stats["edit_seconds"] = time.perf_counter() - t_inv
    stats["seconds"] = time.perf_counter() - t_start
    stats["p2p_cross_replaced"] = controller.replaced_cross
    stats["p2p_self_replaced"] = controller.replaced_self

    mask_out = None
    if out_img.shape != original.shape:
        notes.append(f"result upscaled from {size}x{size} to {original.shape[1]}x{original.shape[0]}")
    if region_px is not None:
        out_img = composite(original, out_img, region_px, s.feather)
        mask_out = region_px.astype(np.uint8) * 255
    elif out_img.shape != original.shape:
        out_img = D.resize_uint8(out_img, (original.shape[1], original.shape[0]))
    return EditResult(out_img, x.detach(), s, notes, stats, mask_out)
