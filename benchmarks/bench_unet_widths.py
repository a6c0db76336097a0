"""Default-model training: the cost of one UNet step for two sets of block widths, in one process.

A training step of the bundled model's recipe (``lab/default_model/train.py``) is dominated by the
UNet's forward and backward pass. This times one full step (text encoder + UNet forward, v-prediction
loss, backward, AdamW) at the recipe's batch for the shipped widths and for candidate widths,
interleaved round by round after a warm-up, so that the machine's load falls on both alike, and
reports the median seconds per step, the parameter counts and the ratio candidate / baseline.

    python benchmarks/bench_unet_widths.py [--baseline 64,128,128] [--candidate 48,96,96]
        [--latent 16x16x4] [--batch 64] [--rounds 5] [--threads 2] [--json out.json]
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


def _widths(text: str) -> tuple:
    return tuple(int(c) for c in text.split(","))


def _trainer(latent: str, widths: tuple, batch: int, context=contextlib.nullcontext):
    """A closure running one training step of a fresh UNet + text encoder on random latents, its
    forward pass inside ``context()`` (the trainer's arithmetic: ``train.mixed_precision``)."""
    import tempfile

    import torch

    from lab.default_model.build import (MAX_TOKENS, latent_geometry, load_tokenizer, make_text_encoder,
                                             make_unet, write_tokenizer)

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp))
        tok = load_tokenizer(Path(tmp))
    unet, te = make_unet(latent, widths), make_text_encoder(tok)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    size, ch = latent_geometry(latent)
    g = torch.Generator().manual_seed(0)
    ids = tok(["a small red star in the top left on a blue background"] * batch, padding="max_length",
              max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids

    def step() -> float:
        zt = torch.randn(batch, ch, size, size, generator=g)
        target = torch.randn(batch, ch, size, size, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        start = time.perf_counter()
        with context():
            pred = unet(zt, t, te(ids).last_hidden_state).sample
        loss = (pred.float() - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step, sum(p.numel() for p in unet.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="64,128,128", help="the shipped UNet's block widths")
    parser.add_argument("--candidate", default="48,96,96")
    parser.add_argument("--latent", default="16x16x4")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the trainer does
    torch.manual_seed(0)
    runs = {}
    for name, text in (("baseline", args.baseline), ("candidate", args.candidate)):
        step, n_params = _trainer(args.latent, _widths(text), args.batch)
        runs[name] = {"widths": _widths(text), "params": n_params, "step": step, "times": []}
    for _ in range(args.warmup):
        for r in runs.values():
            r["step"]()
    for _ in range(args.rounds):
        for r in runs.values():
            r["times"].append(r["step"]())
    report = {name: {"widths": r["widths"], "params_millions": round(r["params"] / 1e6, 2),
                     "median_s": round(statistics.median(r["times"]), 4),
                     "times_s": [round(x, 4) for x in r["times"]]}
              for name, r in runs.items()}
    ratio = report["candidate"]["median_s"] / report["baseline"]["median_s"]
    report.update(latent=args.latent, batch=args.batch, threads=args.threads, rounds=args.rounds,
                  ratio_candidate_to_baseline=round(ratio, 3), load_average=os.getloadavg()[0])
    for name in ("baseline", "candidate"):
        r = report[name]
        print(f"{name:9s} {'/'.join(map(str, r['widths'])):>12s}  {r['params_millions']:5.2f}M params  "
              f"{r['median_s']:.3f} s/step (median of {args.rounds})")
    print(f"ratio candidate / baseline: {ratio:.3f}  (batch {args.batch}, {args.threads} threads, "
          f"load average {report['load_average']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
