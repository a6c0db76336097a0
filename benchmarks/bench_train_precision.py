"""Default-model training: float32 against bfloat16 autocast, stage by stage, in one process.

The recipe (``lab/default_model/train.py``, ``--precision``) runs its forward passes under bfloat16
autocast where the CPU has AMX. This times, for both arithmetics, interleaved round by round after a
warm-up so that the machine's load falls on both alike:

- a UNet + text-encoder training step at the recipe's widths and batch (forward, loss in float32,
  backward, AdamW: ``bench_unet_widths.py``'s step), as ``train_unet`` runs it;
- a VAE training step on full 64x64 images at the recipe's batch, as ``train_vae`` runs it;
- encoding 250 images with the VAE, as the latents stage does;

and, for the UNet step, two other ways to place attention under bfloat16 autocast, to show why the
recipe computes attention in float32: in bfloat16 with PyTorch's default CPU kernel (flash attention),
and in bfloat16 with the math kernel. It reports median seconds and the ratios to float32, with the
CPU's bf16 features.

    python benchmarks/bench_train_precision.py [--rounds 7] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _unet_step(cfg, context):
    """A closure timing one UNet + text-encoder training step of a fresh model under ``context()``."""
    from benchmarks.bench_unet_widths import _trainer

    return _trainer(cfg.latent, cfg.unet_channels, cfg.unet_batch, context)[0]


def _vae_steps(cfg, context):
    """Closures timing one VAE training step (full images) and one 250-image encode under ``context()``."""
    import torch

    from lab.default_model.build import make_vae
    from lab.default_model.train import _kl

    vae = make_vae(cfg.latent)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)

    def train_step() -> float:
        x = torch.rand(cfg.vae_full_batch, 3, 64, 64, generator=g) * 2 - 1
        start = time.perf_counter()
        with context():
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.mean).sample
        err = rec.float() - x
        loss = (err.abs() + err.pow(2)).mean() + 1e-4 * _kl(post.mean, post.logvar).mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    def encode() -> float:
        x = torch.rand(250, 3, 64, 64, generator=g) * 2 - 1
        start = time.perf_counter()
        with torch.no_grad(), context():
            d = vae.encode(x).latent_dist
            d.mean.float()
        return time.perf_counter() - start

    return train_step, encode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from lab.default_model.train import TrainConfig, mixed_precision

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the trainer does
    torch.manual_seed(0)
    cfg = TrainConfig()

    def autocast_only():  # bf16 autocast with PyTorch's default attention kernel
        return torch.autocast("cpu", dtype=torch.bfloat16)

    @contextlib.contextmanager
    def autocast_math():  # bf16 autocast, attention in bf16 through the math kernel
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
            yield

    fp32, bf16 = (lambda: mixed_precision("fp32")), (lambda: mixed_precision("bf16"))
    vae32, enc32 = _vae_steps(cfg, fp32)
    vae16, enc16 = _vae_steps(cfg, bf16)
    cases = {
        "unet_fp32": _unet_step(cfg, fp32), "unet_bf16": _unet_step(cfg, bf16),
        "unet_bf16_flash_attention": _unet_step(cfg, autocast_only),
        "unet_bf16_math_attention": _unet_step(cfg, autocast_math),
        "vae_fp32": vae32, "vae_bf16": vae16, "encode_fp32": enc32, "encode_bf16": enc16,
    }
    for _ in range(args.warmup):
        for f in cases.values():
            f()
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, f in cases.items():
            times[name].append(f())
    med = {name: statistics.median(ts) for name, ts in times.items()}
    try:
        amx, avx512_bf16 = torch.cpu._is_amx_tile_supported(), torch.cpu._is_avx512_bf16_supported()
    except AttributeError:  # a torch without the probes
        amx = avx512_bf16 = None
    report = {
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "ratio_bf16_to_fp32": {part: round(med[f"{part}_bf16"] / med[f"{part}_fp32"], 3)
                               for part in ("unet", "vae", "encode")},
        "ratio_bf16_flash_attention_to_fp32": round(med["unet_bf16_flash_attention"] / med["unet_fp32"], 3),
        "ratio_bf16_math_attention_to_fp32": round(med["unet_bf16_math_attention"] / med["unet_fp32"], 3),
        "amx": amx, "avx512_bf16": avx512_bf16,
        "unet_widths": cfg.unet_channels, "unet_batch": cfg.unet_batch, "vae_batch": cfg.vae_full_batch,
        "threads": args.threads, "rounds": args.rounds, "load_average": os.getloadavg()[0],
    }
    for part, label in (("unet", f"UNet step (batch {cfg.unet_batch})"), ("vae", f"VAE step (batch {cfg.vae_full_batch})"),
                        ("encode", "encode 250 images")):
        print(f"{label:24s} fp32 {med[f'{part}_fp32']:.3f} s  bf16 {med[f'{part}_bf16']:.3f} s  "
              f"ratio {report['ratio_bf16_to_fp32'][part]:.3f}")
    for kind in ("flash", "math"):
        print(f"{'UNet, bf16 ' + kind + ' attn':24s} bf16 {med[f'unet_bf16_{kind}_attention']:.3f} s  "
              f"ratio {report[f'ratio_bf16_{kind}_attention_to_fp32']:.3f}")
    print(f"AMX {report['amx']}, AVX-512 bf16 {report['avx512_bf16']}; {args.threads} threads, median of "
          f"{args.rounds}, load average {report['load_average']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
