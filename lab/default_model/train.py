"""Train the bundled default model from nothing, on the CPU or a GPU, resumably.

    implicit-studio train-default-model --out DIR          (or: python -m lab.default_model.train --out DIR)

Stages, each checkpointed in DIR so an interrupted run resumes where it stopped:
  1. ``vae``     AutoencoderKL on random 32x32 crops, then on full 64x64 images.
  2. ``latents`` the training set (procedural shape images, see ``shapes.py``) encoded once.
  3. ``decoder`` the VAE decoder alone fine-tuned for crisp corners (the encoder, and so the
                 latents, stay as they are), on slightly noisy latents so that it forgives the
                 diffusion model's small errors. Only the 8x8x16 recipe has steps for it; the
                 shipped 16x16x4 recipe's stage says so and does nothing.
  4. ``unet``    UNet2DConditionModel and CLIPTextModel trained together on the latents with the
                 v-prediction objective on a cosine schedule (x0-error weight clamp(SNR, 1, 5), 10%
                 caption dropout for guidance), EMA weights. Captions are drawn afresh at every step
                 from the compositional caption generator, so each image is seen in many wordings.
  5. ``export``  a diffusers StableDiffusionPipeline folder (safetensors) in DIR/pipeline.

The stages run on ``--device`` (auto: app.devices' choice, CUDA when there is one; cpu; cuda;
cuda:N): the models, their passes and the optimiser there, the training images, their sampling and
every random draw on the CPU, so a seed draws the same batches and noise on every device. The
forward passes of every stage run under bfloat16 autocast where ``--precision auto`` finds it fast
(a CPU with AMX, a GPU with bfloat16 arithmetic: NVIDIA Ampere or later; float32 elsewhere), the
weights, optimiser state and losses in float32. Each checkpoint records the arithmetic and the
devices its steps were computed with; a run resumed elsewhere adds to the record.
Checkpoints are safetensors files plus a JSON state file: nothing is ever unpickled.
``--smoke`` runs a few steps of every stage on a few hundred images and checks the losses fall.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.default_model.shapes import vocabulary_by_role
# The checkpoint helpers are shared with the distillation tool (plugins/diffusion_common/checkpoint.py:
# safetensors + JSON meta, atomic writes, the meta also in the tensor file's header; threads on a shared CPU).
from plugins.diffusion_common.checkpoint import adapt_threads  # noqa: F401
from plugins.diffusion_common.checkpoint import load_state as _load_state
from plugins.diffusion_common.checkpoint import pack as _pack
from plugins.diffusion_common.checkpoint import pack_optimizer as _pack_optimizer
from plugins.diffusion_common.checkpoint import restore_optimizer as _restore_optimizer
from plugins.diffusion_common.checkpoint import save_state as _save_state
from plugins.diffusion_common.checkpoint import unpack as _unpack
# The arithmetic of the training passes (bfloat16 autocast with float32 attention, or float32), also shared.
from plugins.diffusion_common.precision import PRECISIONS, flush_denormals, mixed_precision  # noqa: F401
from plugins.diffusion_common.precision import resolve_precision as _resolve_precision


# What the studio's tools use with this model where a setting is left at its default
# (plugins/diffusion_common/recommended.py). h-Edit's weights come from a sweep on the model's own
# images (python -m lab.hedit_eval; model card, "Settings for the studio's tools"): with the paper's
# 1 / 5 / 7.5 the editing term amplifies the source prompt's guidance, which on this model distorts
# shapes and shifts backgrounds.
STUDIO_SETTINGS = {
    "about": "Settings Implicit Studio's tools use for this model where a setting is left at its default. "
             "h-Edit's guidance weights were chosen on this model's own images (model card, 'Settings for the studio's tools'); "
             "the paper's (1 / 5 / 7.5) distort shapes and backgrounds here.",
    "h-edit": {"random": {"w_orig": 3.0, "w_src_edit": 2.0, "w_edit": 7.5}},
}

# The words its captions use, by role: the studio's prompt box marks the others and completes these.
# Written beside the card as vocabulary.jsonl, a file the model's fingerprint does not cover (a
# description of the model, not part of what it computes: adding it left the fingerprint, and the
# one-step student's record of its teacher, as they were).
VOCABULARY_ABOUT = ("The only words this model was trained on, by the role its captions give them; other words "
                    "are read letter by letter and have no effect. White, black and gray are background colours "
                    "only: no object was ever drawn in them.")


def vocabulary_lines() -> str:
    """vocabulary.jsonl: a first line {"about": ...}, then one {"role": ..., "words": [...]} a role."""
    lines = [json.dumps({"about": VOCABULARY_ABOUT})]
    lines += [json.dumps({"role": role, "words": words}) for role, words in vocabulary_by_role().items()]
    return "\n".join(lines) + "\n"


OBJECTIVE = "v_prediction"
SCHEDULE = "squaredcos_cap_v2"


# What each latent geometry's recipe sets beyond TrainConfig's field defaults, which are the shipped
# model's recipe (16x16x4). The 16x16x4 autoencoder reads back 95.8% of shapes as the VAE stage leaves
# it, so that recipe has no decoder stage; the 8x8x16 one needs it (rounded corners otherwise, 79%).
# The shipped 16x16x4 UNet is the narrow one (48/96/96, 14,000 steps, one cosine): a step costs
# 0.65-0.69 of the 64/128/128 UNet's (benchmarks/bench_unet_widths.py), so the recipe costs about 0.76
# of the previous 16x16x4 recipe's (64/128/128, 12,000 steps: 10,000 planned, extended at step 10,000).
RECIPES = {
    "16x16x4": {},
    "8x8x16": {"unet_steps": 12000, "decoder_steps": 3000, "unet_channels": ()},
}


@dataclass
class TrainConfig:
    num_images: int = 100_000
    vae_crop_steps: int = 1000
    vae_full_steps: int = 600
    vae_batch: int = 32
    vae_full_batch: int = 16
    vae_lr: float = 1e-3
    decoder_steps: int = 0
    decoder_batch: int = 16
    decoder_lr: float = 3e-4
    decoder_latent_noise: float = 0.1
    unet_steps: int = 14000
    unet_batch: int = 64
    unet_lr: float = 3e-4
    warmup: int = 200
    ema_decay: float = 0.9995
    cond_drop: float = 0.1
    min_snr_gamma: float = 5.0  # x0-error weight clamp(SNR, 1, gamma): truncated min-SNR
    # Share of each batch drawn from the noisiest timesteps (t >= high_noise_from), where the input
    # holds (almost) nothing of the picture and the layout must come from the prompt alone; with
    # uniform timesteps the model read positions off the noise instead and ignored "top left".
    high_noise_frac: float = 0.3
    high_noise_from: int = 950
    threads: int = 2
    seed: int = 0
    checkpoint_every: int = 200
    latent: str = "16x16x4"  # latent geometry (build.LATENTS); the shipped model's
    # Earlier lengths of the UNet's cosine learning-rate schedule, for a run that was extended: up
    # to step L the schedule was L steps long, after the last one it is unet_steps long. The previous
    # shipped model (64/128/128) had (10000,): planned at 10,000 steps, extended to 12,000.
    unet_lr_lengths: tuple = ()
    # Smaller batches for the first UNet steps: (until_step, batch) pairs, unet_batch after the last.
    # Off in the shipped recipe. Tried with the 64/128/128 UNet to fit that recipe in two hours (a
    # batch-32 step cost 0.38 s against 0.64 s at 64): 6,000 steps at batch 32 then 6,000 at 64 (one
    # 12,000-step cosine) took 117 min in all, but its loss at step 6,000 was twice the full-batch
    # run's (0.160 vs 0.076) and it drew shapes at 47% (colour 92%, position 86%) against 83%
    # (benchmarks/RESULTS.md). The narrower UNet keeps the full batch instead.
    unet_batch_ramp: tuple = ()
    # The UNet's three block widths; empty for the geometry's default (build.UNET_CHANNELS, the widths
    # of folders made before this was a setting: 64/128/128 at 16x16, the previous shipped model's).
    unet_channels: tuple = (48, 96, 96)
    # Arithmetic of the training passes: "bf16" runs the forward passes under bfloat16 autocast
    # (weights, optimiser state, EMA and losses stay float32), "fp32" runs them in float32, "auto"
    # takes bf16 where the CPU multiplies bfloat16 matrices in hardware (AMX) and fp32 elsewhere. On an
    # AMX CPU a UNet step costs 0.61-0.68 of the float32 one, a VAE step 0.61
    # (benchmarks/bench_train_precision.py), and the recipe took 107 min from nothing there. On a
    # CUDA device "auto" takes bf16 where the GPU computes it (compute capability 8.0 on).
    precision: str = "auto"
    # Where the stages train: "auto" (app.devices' choice: CUDA, then MPS, then the CPU), "cpu",
    # "cuda" or "cuda:N". Not part of the recipe: the command line below never names it.
    device: str = "auto"

    @classmethod
    def for_latent(cls, latent: str) -> "TrainConfig":
        """The full recipe for a latent geometry (RECIPES says what differs between them)."""
        from .build import latent_geometry

        latent_geometry(latent)  # a clear ValueError for an unknown name
        return cls(latent=latent, **RECIPES[latent])

    @classmethod
    def smoke(cls) -> "TrainConfig":
        return cls(num_images=384, vae_crop_steps=30, vae_full_steps=6, vae_batch=16, vae_full_batch=8,
                   decoder_steps=20, decoder_batch=8, unet_steps=40, unet_batch=32, warmup=5, checkpoint_every=20, vae_lr=1e-3, unet_lr=5e-4,
                   unet_lr_lengths=(), unet_batch_ramp=((20, 16),))


def unet_batch_at(cfg: TrainConfig, step: int) -> int:
    """The UNet batch size at ``step`` (``unet_batch_ramp``'s smaller batches come first)."""
    return next((int(b) for until, b in sorted(cfg.unet_batch_ramp) if step < until), cfg.unet_batch)


def unet_samples(cfg: TrainConfig, step: int) -> int:
    """Training samples the UNet has seen after ``step`` steps (its work, for the progress ETA)."""
    total, start = 0, 0
    for until, b in sorted(cfg.unet_batch_ramp):
        n = max(0, min(step, int(until)) - start)
        total, start = total + n * int(b), max(start, int(until))
    return total + max(0, step - start) * cfg.unet_batch


def lr_length(cfg: TrainConfig, step: int) -> int:
    """The length of the cosine learning-rate schedule in force at ``step``."""
    return next((int(n) for n in sorted(cfg.unet_lr_lengths) if step < n), cfg.unet_steps)


def resolve_device(device: str | None) -> str:
    """The torch device the stages train on: ``auto`` is app.devices' choice (CUDA, then MPS, then
    the CPU); an explicit one must exist (ValueError saying what to use instead)."""
    from app import devices

    try:
        return devices.choose(device or "auto", ("torch",)).device
    except devices.DeviceError as exc:
        raise ValueError(str(exc)) from None


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """The arithmetic the stages use on ``device`` ("bf16" or "fp32"): on a CUDA GPU app.devices
    judges bfloat16 (the studio's one decision point; an explicit bf16 it refuses is a ValueError with
    its message), elsewhere the shared training rule (plugins.diffusion_common.precision)."""
    if str(device).split(":")[0] == "cuda" and precision in ("auto", "bf16"):
        from app import devices

        try:
            devices.resolve_dtype(str(device), "bf16")
            return "bf16"
        except devices.DeviceError as exc:
            if precision == "bf16":
                raise ValueError(str(exc)) from None
            return "fp32"
    return _resolve_precision(precision, device)


def _precisions(meta, now: str) -> list:
    """The arithmetic a checkpoint's steps were computed in, over every process that ran them."""
    return sorted(set((meta or {}).get("precisions") or ()) | {now})


def _devices(meta, now: str) -> list:
    """The devices a checkpoint's steps were computed on, over every process that ran them (a
    checkpoint from before the record was made on the CPU, where the trainer then always ran)."""
    before = (meta or {}).get("devices") or (["cpu"] if meta else [])
    return sorted(set(before) | {now})


def _kl(mean, logvar):
    """KL divergence of N(mean, exp(logvar)) from N(0, 1) per sample, in float32."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3))


# ----------------------------------------------------------------------------- progress
class Progress:
    """A plain progress line with ETA (works in logs and terminals alike)."""

    def __init__(self, name: str, total: int, start: int = 0, work=None):
        self.name, self.total, self.start = name, total, start
        # work(step): the work done by step ``step`` (default: the step count). The ETA is the work
        # left over the work rate so far, so it stays right when later steps cost more (a batch ramp).
        self.work = work or (lambda s: float(s))
        self.t0 = time.time()
        self.last = 0.0

    def update(self, step: int, **metrics) -> None:
        now = time.time()
        if now - self.last < 2.0 and step < self.total:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = (step - self.start) / elapsed
        work_rate = (self.work(step) - self.work(self.start)) / elapsed
        eta = (self.work(self.total) - self.work(step)) / work_rate if work_rate > 0 else float("inf")
        width = 30
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        m = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        import torch

        print(f"[{self.name}] |{bar}| {step}/{self.total} {m} {rate:.2f} it/s ETA {eta/60:.1f} min "
              f"threads={torch.get_num_threads()}", flush=True)


# ----------------------------------------------------------------------------- data
def _images(cfg: TrainConfig, start: int, count: int, with_masks: bool = False):
    import numpy as np

    from .shapes import make_sample

    imgs = np.empty((count, 64, 64, 3), np.uint8)
    masks = np.empty((count, 64, 64), bool) if with_masks else None
    caps = []
    for i in range(count):
        s = make_sample(cfg.seed * 10_000_019 + start + i)
        imgs[i] = s.image
        caps.append(s.caption)
        if with_masks:
            masks[i] = s.mask
    return (imgs, caps, masks) if with_masks else (imgs, caps)


def _to_tensor(imgs):
    import torch

    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------- stage 1: VAE
def _autoencoder_pool(cfg: TrainConfig):
    """Up to 20,000 training images as tensors, with per-pixel loss weights and object masks.

    Objects cover a few percent of the pixels: they (and a 1-pixel rim) weigh ten times as much,
    so that the autoencoder learns shapes and colours, not only backgrounds.
    """
    import torch

    pool_n = min(cfg.num_images, 20_000)
    imgs, _, masks = _images(cfg, 0, pool_n, with_masks=True)
    fg = torch.nn.functional.max_pool2d(torch.from_numpy(masks).float()[:, None], 3, 1, 1)
    return pool_n, _to_tensor(imgs), 1.0 + 9.0 * fg, masks


def _autoencoder_update(vae, opt, params, loss, step: int, total: int, losses: list, prog, ck: Path,
                        cfg: TrainConfig, precisions: list, devices: list) -> int:
    """One optimiser step of an autoencoder stage, with logging and checkpoints; the new step."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    step += 1
    losses.append(float(loss.detach()))
    prog.update(step, loss=sum(losses[-20:]) / len(losses[-20:]))
    if step % 25 == 0:
        adapt_threads(cfg.threads)
    if step % cfg.checkpoint_every == 0 or step == total:
        _save_state(ck, {**_pack("vae", vae), **_pack_optimizer("opt", opt)},
                    {"step": step, "losses": losses, "precisions": precisions, "devices": devices})
    return step


def _resume_autoencoder(vae, opt, tensors, meta, name: str, log) -> tuple[int, list]:
    if tensors is None:
        return 0, []
    vae.load_state_dict(_unpack(tensors, "vae"))
    _restore_optimizer(opt, tensors, "opt")
    log(f"[{name}] resuming at step {meta['step']}")
    return meta["step"], meta["losses"]


def train_vae(out: Path, cfg: TrainConfig, log=print) -> list[float]:
    import numpy as np
    import torch

    from .build import make_vae

    ck = out / "vae_ckpt"
    device = resolve_device(cfg.device)
    vae = make_vae(cfg.latent).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    tensors, meta = _load_state(ck)
    step, losses = _resume_autoencoder(vae, opt, tensors, meta, "vae", log)
    total = cfg.vae_crop_steps + cfg.vae_full_steps
    precision = resolve_precision(cfg.precision, device)
    precisions, devices = _precisions(meta, precision), _devices(meta, device)
    if step >= total:
        return losses
    pool_n, data, weights, masks = _autoencoder_pool(cfg)
    centres = [np.argwhere(m) for m in masks]
    g = torch.Generator().manual_seed(cfg.seed + step)
    prog = Progress("vae", total, step)
    vae.train()
    while step < total:
        full = step >= cfg.vae_crop_steps
        bs = cfg.vae_full_batch if full else cfg.vae_batch
        idx = torch.randint(0, pool_n, (bs,), generator=g)
        x, w = data[idx], weights[idx]
        if not full:
            # crops that contain an object: centred near a random object pixel
            xs, ws = [], []
            for j, i in enumerate(idx.tolist()):
                pts = centres[i]
                cy, cx = pts[int(torch.randint(0, len(pts), (1,), generator=g))]
                jy, jx = (int(v) for v in torch.randint(-8, 9, (2,), generator=g))
                oy, ox = min(max(cy - 16 + jy, 0), 32), min(max(cx - 16 + jx, 0), 32)
                xs.append(x[j, :, oy : oy + 32, ox : ox + 32])
                ws.append(w[j, :, oy : oy + 32, ox : ox + 32])
            x, w = torch.stack(xs), torch.stack(ws)
        x, w = x.to(device), w.to(device)
        lr = cfg.vae_lr * min(1.0, (step + 1) / 50) * (0.3 if full else 1.0)
        for grp in opt.param_groups:
            grp["lr"] = lr
        with mixed_precision(precision, device):
            post = vae.encode(x).latent_dist
            # Deterministic latents (the posterior mean): sampling adds unit noise at initialisation
            # and slows learning many times over; the diffusion model is trained on the means too.
            rec = vae.decode(post.mean).sample
        kl = _kl(post.mean, post.logvar).mean() / x[0].numel()
        err = rec.float() - x
        loss = ((err.abs() + err.pow(2)) * w).mean() / w.mean() + 1e-4 * kl
        step = _autoencoder_update(vae, opt, vae.parameters(), loss, step, total, losses, prog, ck, cfg, precisions,
                                   devices)
    return losses


def _latent_of(out: Path) -> str:
    """The latent geometry the training folder ``out`` was made with."""
    cfg_file = Path(out) / "train_config.json"
    return json.loads(cfg_file.read_text()).get("latent", "8x8x16") if cfg_file.exists() else "8x8x16"


def _unet_channels_of(out: Path) -> tuple:
    """The UNet block widths the training folder ``out`` was made with (empty: the geometry's default)."""
    cfg_file = Path(out) / "train_config.json"
    return tuple(json.loads(cfg_file.read_text()).get("unet_channels") or ()) if cfg_file.exists() else ()


def load_vae(out: Path, decoder: bool = True):
    """The trained VAE; with ``decoder`` its fine-tuned decoder where that stage has run."""
    from .build import make_vae

    vae = make_vae(_latent_of(out))
    tensors, _ = _load_state(out / "vae_ckpt")
    if tensors is None:
        raise FileNotFoundError(f"no VAE checkpoint in {out}")
    vae.load_state_dict(_unpack(tensors, "vae"))
    dec, _ = _load_state(out / "decoder_ckpt")
    if dec is not None and decoder:
        vae.load_state_dict(_unpack(dec, "vae"))
    return vae.eval()


# ----------------------------------------------------------------------------- stage 2: latents
def encode_latents(out: Path, cfg: TrainConfig, log=print):
    import torch
    from safetensors.torch import load_file, save_file

    from .build import MAX_TOKENS, load_tokenizer, write_tokenizer

    path = out / "latents.safetensors"
    tok_dir = out / "tokenizer"
    if not (tok_dir / "vocab.json").exists():
        write_tokenizer(tok_dir)
    if path.exists():
        return load_file(str(path))
    device = resolve_device(cfg.device)
    vae = load_vae(out, decoder=False).to(device)
    tok = load_tokenizer(tok_dir)
    precision = resolve_precision(cfg.precision, device)
    means, logvars, ids = [], [], []
    chunk = 1000
    prog = Progress("latents", cfg.num_images)
    with torch.no_grad():
        for start in range(0, cfg.num_images, chunk):
            n = min(chunk, cfg.num_images - start)
            imgs, caps = _images(cfg, start, n)
            x = _to_tensor(imgs)
            for b in range(0, n, 250):
                with mixed_precision(precision, device):
                    d = vae.encode(x[b : b + 250].to(device)).latent_dist
                means.append(d.mean.float().cpu())
                logvars.append(d.logvar.float().cpu())
            ids.append(tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids)
            prog.update(start + n)
    mean = torch.cat(means)
    tensors = {
        "mean": mean.contiguous(),
        "logvar": torch.cat(logvars).contiguous(),
        "ids": torch.cat(ids).contiguous(),
        "scaling_factor": torch.tensor([1.0 / float(mean.std())]),
        "empty_ids": tok([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids[0],
    }
    metadata = {"precision": precision, "device": device}
    tmp = out / "latents.tmp.safetensors"
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    log(f"[latents] {cfg.num_images} encoded; latent std {float(mean.std()):.4f}")
    return tensors


# ----------------------------------------------------------------------------- stage 3: decoder
def _edges(x):
    """Horizontal and vertical differences of an image batch."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def train_decoder(out: Path, cfg: TrainConfig, log=print) -> list[float]:
    """Fine-tune the VAE decoder on the frozen encoder's latents (which the UNet is trained on)."""
    import torch

    if cfg.decoder_steps <= 0:
        log("[decoder] no decoder stage in this recipe (decoder steps 0)")
        return []

    lat_scale = float(encode_latents(out, cfg, log)["scaling_factor"])
    ck = out / "decoder_ckpt"
    device = resolve_device(cfg.device)
    vae = load_vae(out, decoder=False).to(device)
    tensors, meta = _load_state(ck)
    dec_params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.AdamW(dec_params, lr=cfg.decoder_lr, weight_decay=0.0)
    step, losses = _resume_autoencoder(vae, opt, tensors, meta, "decoder", log)
    if step >= cfg.decoder_steps:
        return losses
    precision = resolve_precision(cfg.precision, device)
    precisions, devices = _precisions(meta, precision), _devices(meta, device)
    pool_n, data, weights, _ = _autoencoder_pool(cfg)
    g = torch.Generator().manual_seed(cfg.seed + 17 + step)
    for p in vae.encoder.parameters():
        p.requires_grad_(False)
    vae.train()
    prog = Progress("decoder", cfg.decoder_steps, step)
    while step < cfg.decoder_steps:
        idx = torch.randint(0, pool_n, (cfg.decoder_batch,), generator=g)
        x, w = data[idx].to(device), weights[idx].to(device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
            # noise of a fraction of the latent spread, in the UNet's scaled units (drawn on the CPU)
            z = z + (torch.randn(z.shape, generator=g) * (cfg.decoder_latent_noise / lat_scale)
                     * float(torch.rand(1, generator=g))).to(device)
        with mixed_precision(precision, device):
            rec = vae.decode(z).sample
        rec = rec.float()
        err = rec - x
        pix = ((err.abs() + err.pow(2)) * w).mean() / w.mean()
        (rx, ry), (tx, ty) = _edges(rec), _edges(x)
        edge = (rx - tx).abs().mean() + (ry - ty).abs().mean()
        loss = pix + edge
        lr = cfg.decoder_lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.decoder_steps)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        step = _autoencoder_update(vae, opt, dec_params, loss, step, cfg.decoder_steps, losses, prog, ck, cfg,
                                   precisions, devices)
    return losses


def _scenes(cfg: TrainConfig, count: int):
    """(background, objects) of the first ``count`` training images, without rendering them."""
    import numpy as np

    from .shapes import random_scene

    return [random_scene(np.random.default_rng(cfg.seed * 10_000_019 + i)) for i in range(count)]


def _caption_ids(tok, scenes, idx, rng, max_tokens: int):
    """Token ids of a fresh caption for each picked scene (re-drawn if it would be truncated)."""
    from .shapes import caption_for

    rows = []
    for i in idx:
        bg, objs = scenes[i]
        for _ in range(8):
            cap = caption_for(bg, objs, rng)
            ids = tok(cap).input_ids
            if len(ids) <= max_tokens:
                break
        else:  # eight long draws in a row: keep the last one, cut to length (end token kept)
            ids = tok(cap, truncation=True, max_length=max_tokens).input_ids
        rows.append(ids)
    # each caption is tokenized once; padding the ids gives what a padded batch call gives
    return tok.pad({"input_ids": rows}, padding="max_length", max_length=max_tokens, return_tensors="pt")["input_ids"]


# ----------------------------------------------------------------------------- stage 4: UNet
def train_unet(out: Path, cfg: TrainConfig, log=print) -> list[float]:
    import copy

    import torch

    import numpy as np

    from .build import MAX_TOKENS, load_tokenizer, make_scheduler, make_text_encoder, make_unet

    lat = encode_latents(out, cfg, log)
    tok = load_tokenizer(out / "tokenizer")
    device = resolve_device(cfg.device)
    unet, te = make_unet(cfg.latent, cfg.unet_channels).to(device), make_text_encoder(tok).to(device)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(te).eval()
    ck = out / "unet_ckpt"
    tensors, meta = _load_state(ck)
    step, losses = 0, []
    high_since = 0 if cfg.high_noise_frac else None
    if tensors is not None:
        unet.load_state_dict(_unpack(tensors, "unet"))
        te.load_state_dict(_unpack(tensors, "te"))
        ema_unet.load_state_dict(_unpack(tensors, "ema_unet"))
        ema_te.load_state_dict(_unpack(tensors, "ema_te"))
        _restore_optimizer(opt, tensors, "opt")
        step, losses = meta["step"], meta["losses"]
        high_since = meta.get("high_noise_since", step if cfg.high_noise_frac else None)
        log(f"[unet] resuming at step {step}")
        if (meta.get("objective", "epsilon"), meta.get("schedule", "scaled_linear")) != (OBJECTIVE, SCHEDULE):
            raise SystemExit(f"{ck} was trained with another objective or noise schedule "
                             f"({meta.get('objective', 'epsilon')}, {meta.get('schedule', 'scaled_linear')}); "
                             "use a new --out folder")
    if step >= cfg.unet_steps:
        return losses
    # compute time of the kept steps, summed over the processes that ran them (a process that is
    # stopped loses only the steps since its last checkpoint, and their time is not counted)
    seconds_before, t_start = float((meta or {}).get("seconds", 0.0)), time.time()
    precision = resolve_precision(cfg.precision, device)
    precisions, devices = _precisions(meta, precision), _devices(meta, device)
    log(f"[unet] arithmetic: {'bfloat16 autocast' if precision == 'bf16' else 'float32'} on {device}")
    sched = make_scheduler()
    acp = sched.alphas_cumprod.float()
    snr = acp / (1 - acp)
    # ||v - v_hat||^2 = (SNR + 1) ||x0 - x0_hat||^2: weight the clean-image error by clamp(SNR, 1, gamma),
    # min-SNR's cap at low noise, and no less than the x0 error at high noise, where the layout is decided.
    weight = torch.clamp(snr, min=1.0, max=cfg.min_snr_gamma) / (snr + 1)
    sf = float(lat["scaling_factor"])
    mean = lat["mean"]
    empty = lat["empty_ids"]
    n = mean.shape[0]
    scenes = _scenes(cfg, n)
    g = torch.Generator().manual_seed(cfg.seed * 7 + step)
    cap_rng = np.random.default_rng(cfg.seed * 13 + step)
    prog = Progress("unet", cfg.unet_steps, step, work=lambda s: unet_samples(cfg, s))
    ema_params = list(ema_unet.parameters()) + list(ema_te.parameters())
    unet.train(), te.train()
    while step < cfg.unet_steps:
        batch = unet_batch_at(cfg, step)
        idx = torch.randint(0, n, (batch,), generator=g)
        z0 = mean[idx] * sf
        tok_ids = _caption_ids(tok, scenes, idx.tolist(), cap_rng, MAX_TOKENS)
        drop = torch.rand(batch, generator=g) < cfg.cond_drop
        tok_ids[drop] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        n_high = int(round(batch * cfg.high_noise_frac))
        if n_high:
            t[:n_high] = torch.randint(cfg.high_noise_from, sched.config.num_train_timesteps, (n_high,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        a = acp[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - acp[t]).sqrt().view(-1, 1, 1, 1)
        zt = a * z0 + s * noise
        warm = min(1.0, (step + 1) / cfg.warmup)
        prog_frac = step / max(lr_length(cfg, step), 1)
        lr = cfg.unet_lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog_frac)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        with mixed_precision(precision, device):
            cond = te(tok_ids.to(device)).last_hidden_state
            pred = unet(zt.to(device), t.to(device), cond).sample
        pred = pred.float()
        target = (a * noise - s * z0).to(device)  # v = sqrt(alpha_bar) * eps - sqrt(1 - alpha_bar) * x0
        per = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = (per * weight[t].to(device)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        d = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema_params, params):
                pe.lerp_(p, 1 - d)
        losses.append(float(per.detach().mean()))
        prog.update(step, loss=sum(losses[-50:]) / len(losses[-50:]), lr=lr)
        if step % 25 == 0:
            adapt_threads(cfg.threads)
        if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
            _save_state(
                ck,
                {**_pack("unet", unet), **_pack("te", te), **_pack("ema_unet", ema_unet),
                 **_pack("ema_te", ema_te), **_pack_optimizer("opt", opt)},
                {"step": step, "losses": losses, "config": asdict(cfg), "objective": OBJECTIVE, "schedule": SCHEDULE,
                 "high_noise_since": high_since, "seconds": seconds_before + time.time() - t_start,
                 "precisions": precisions, "devices": devices},
            )
    return losses


# ----------------------------------------------------------------------------- stage 4: export
def export_pipeline(out: Path, dest: Path | None = None, log=print) -> Path:
    """Assemble the EMA weights into a diffusers StableDiffusionPipeline folder."""
    import shutil

    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from .build import load_tokenizer, make_scheduler, make_text_encoder, make_unet

    dest = Path(dest or out / "pipeline")
    tok = load_tokenizer(out / "tokenizer")
    tensors, _ = _load_state(out / "unet_ckpt")
    if tensors is None:
        raise FileNotFoundError(f"no UNet checkpoint in {out}")
    unet, te = make_unet(_latent_of(out), _unet_channels_of(out)), make_text_encoder(tok)
    unet.load_state_dict(_unpack(tensors, "ema_unet"))
    te.load_state_dict(_unpack(tensors, "ema_te"))
    vae = load_vae(out)
    sf = float(load_file(str(out / "latents.safetensors"))["scaling_factor"])
    vae.register_to_config(scaling_factor=sf)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet.eval(), scheduler=make_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    # Newer transformers save only tokenizer.json; keep CLIP's vocab.json and merges.txt beside it,
    # as every Stable Diffusion checkpoint has them and other tools read those.
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        if not (tmp / "tokenizer" / name).exists():
            shutil.copy2(out / "tokenizer" / name, tmp / "tokenizer" / name)
    (tmp / "implicit_studio.json").write_text(json.dumps(STUDIO_SETTINGS, indent=2) + "\n")
    (tmp / "vocabulary.jsonl").write_text(vocabulary_lines())
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    log(f"[export] pipeline written to {dest}")
    return dest


def run(out: Path, cfg: TrainConfig, stages=("vae", "latents", "decoder", "unet", "export"), log=print) -> dict:
    import torch

    out = Path(out)
    # checked before anything changes, in the folder or in this process's torch settings
    made_with = _latent_of(out) if (out / "vae_ckpt.safetensors").exists() else cfg.latent
    if made_with != cfg.latent:
        raise SystemExit(f"{out} holds a model with {made_with} latents, not {cfg.latent}; "
                         "use a new --out folder or the same --latent")
    from .build import UNET_CHANNELS, latent_geometry

    default = UNET_CHANNELS[latent_geometry(cfg.latent)[0]]  # a folder's empty widths mean these
    if (out / "unet_ckpt.safetensors").exists() and \
            tuple(_unet_channels_of(out) or default) != tuple(cfg.unet_channels or default):
        had = "/".join(map(str, _unet_channels_of(out) or default))
        want = "/".join(map(str, cfg.unet_channels or default))
        raise SystemExit(f"{out} holds a UNet with block widths {had}, not {want}; "
                         f"use a new --out folder or --unet-channels {had.replace('/', ',')}")
    try:
        device = resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    log(f"[train] device {device}, arithmetic {'bfloat16 autocast' if precision == 'bf16' else 'float32'}")
    torch.set_num_threads(cfg.threads)
    with flush_denormals():  # tiny activations on flat images otherwise slow the CPU many times over
        torch.manual_seed(cfg.seed)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        report: dict = {}
        timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
        for stage in stages:
            t0 = time.time()
            if stage == "vae":
                report["vae_losses"] = train_vae(out, cfg, log)
            elif stage == "latents":
                encode_latents(out, cfg, log)
            elif stage == "decoder":
                report["decoder_losses"] = train_decoder(out, cfg, log)
            elif stage == "unet":
                report["unet_losses"] = train_unet(out, cfg, log)
            elif stage == "export":
                report["pipeline"] = str(export_pipeline(out, log=log))
            spent = time.time() - t0
            # re-read: another process may have run a different stage into the same folder meanwhile
            timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
            timings[stage] = timings.get(stage, 0.0) + spent
            (out / "timings.json").write_text(json.dumps(timings, indent=2))
    report["timings"] = timings
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="implicit-studio train-default-model", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="working folder (checkpoints; resumes if present)")
    p.add_argument("--smoke", action="store_true", help="a few steps of every stage; checks the losses fall")
    p.add_argument("--unet-steps", type=int, default=None)
    p.add_argument("--unet-lr-lengths", default=None,
                   help="earlier lengths of the cosine learning-rate schedule, comma-separated, for an extended run "
                        "(the recipe sets them; 'none' for a single cosine over --unet-steps)")
    p.add_argument("--unet-batch-ramp", default=None,
                   help="smaller UNet batches for the first steps, as UNTIL:BATCH pairs separated by commas "
                        "(the recipe sets them; 'none' for the full batch from the first step)")
    p.add_argument("--unet-channels", default=None,
                   help="the UNet's three block widths, e.g. 48,96,96 (the recipe sets them; 'default' for the geometry's)")
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--decoder-steps", type=int, default=None)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="arithmetic of the training passes: bf16 (bfloat16 autocast), fp32, or auto (the recipe's: "
                        "bf16 where the CPU has AMX or the GPU computes bfloat16, fp32 elsewhere)")
    p.add_argument("--device", default=None,
                   help="where to train: auto (the studio's choice: CUDA, then Apple MPS, then the CPU; the default), "
                        "cpu, cuda or cuda:N")
    p.add_argument("--stages", default="vae,latents,decoder,unet,export")
    p.add_argument("--latent", default=None, help="latent geometry: 16x16x4 (the shipped model's recipe) or 8x8x16 (the previous one's)")
    a = p.parse_args(argv)
    if a.latent:
        from .build import latent_geometry

        try:
            latent_geometry(a.latent)
        except ValueError as exc:
            p.error(str(exc))
    cfg = TrainConfig.smoke() if a.smoke else TrainConfig.for_latent(a.latent or TrainConfig.latent)
    if a.unet_steps:
        cfg.unet_steps = a.unet_steps
    if a.unet_lr_lengths is not None:
        try:
            cfg.unet_lr_lengths = tuple(int(n) for n in a.unet_lr_lengths.split(",") if n.strip() and n.strip() != "none")
        except ValueError:
            p.error(f"--unet-lr-lengths takes step counts separated by commas, not {a.unet_lr_lengths!r}")
    if a.unet_batch_ramp is not None:
        try:
            cfg.unet_batch_ramp = tuple(
                tuple(int(x) for x in pair.split(":", 1)) for pair in a.unet_batch_ramp.split(",")
                if pair.strip() and pair.strip() != "none")
            if any(len(pair) != 2 or min(pair) < 1 for pair in cfg.unet_batch_ramp):
                raise ValueError
        except ValueError:
            p.error(f"--unet-batch-ramp takes UNTIL:BATCH pairs separated by commas (e.g. 6000:32), not {a.unet_batch_ramp!r}")
    if a.unet_channels is not None:
        try:
            cfg.unet_channels = tuple(int(c) for c in a.unet_channels.split(",") if c.strip() and c.strip() != "default")
            from .build import make_unet

            if cfg.unet_channels:
                make_unet(cfg.latent, cfg.unet_channels)  # a clear error now, not after the VAE stage
        except ValueError as exc:
            p.error(f"--unet-channels takes three block widths separated by commas (e.g. 48,96,96), not {a.unet_channels!r}"
                    + (f": {exc}" if "block widths" in str(exc) else ""))
    if a.decoder_steps is not None:
        cfg.decoder_steps = a.decoder_steps
    if a.num_images:
        cfg.num_images = a.num_images
    if a.precision:
        cfg.precision = a.precision
    if a.device:
        cfg.device = a.device
    try:  # a device that is not there, or bf16 on a GPU without it: said now, before any stage
        resolve_precision(cfg.precision, resolve_device(cfg.device))
    except ValueError as exc:
        p.error(str(exc))
    if a.threads:
        cfg.threads = a.threads
    if a.smoke and a.latent:
        cfg.latent = a.latent
    report = run(a.out, cfg, tuple(s.strip() for s in a.stages.split(",") if s.strip()))
    if a.smoke:
        ok = True
        for key in ("vae_losses", "decoder_losses", "unet_losses"):
            ls = report.get(key) or []
            if len(ls) >= 10:
                k = max(3, len(ls) // 5)
                first, last = sum(ls[:k]) / k, sum(ls[-k:]) / k
                print(f"[smoke] {key}: first {first:.4f} -> last {last:.4f}")
                ok &= last < first
        if not ok:
            print("[smoke] FAILED: a loss did not fall", file=sys.stderr)
            return 1
        print("[smoke] ok: losses fall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
