"""Make the bundled INR samples the viewers show on first open.

    python -m lab.inr_samples --out resources/samples/inr

Writes (config JSON + safetensors each, all small):

* ``image-siren``: a 3x64 SIREN fitted to a procedurally generated 128x128 image, with
  ``image-target.png`` (its ground truth) beside it;
* ``image-relu-pe``: a ReLU + positional-encoding network fitted to the same image (to compare
  architectures);
* ``sdf-torus`` and ``sdf-sphere``: 3x64 SIREN SDFs of a torus and a sphere, started from the
  same initial weights so that weight-space interpolation between them morphs smoothly;
* ``samples.json``: what each file is, how well it fits, and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def make(out: Path, image_steps: int = 400, sdf_steps: int = 600, size: int = 128, seed: int = 0,
         log=print) -> dict:
    import numpy as np
    import torch

    from plugins.inr.fields import TorchEvaluator, bake_grid
    from plugins.inr.fit import SDFTarget, fit_image_steps, fit_sdf_steps, run_fit
    from plugins.inr.geometry import chamfer_and_normals, marching_cubes
    from plugins.inr.image2d import procedural_image, psnr, render_image, save_image, ssim
    from plugins.inr.models import count_parameters, preset, save_inr

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    summary: dict = {"command": "python -m lab.inr_samples --out resources/samples/inr",
                     "seed": seed, "samples": {}}
    img = procedural_image(size, seed=seed)
    save_image(img, out / "image-target.png")
    for name, arch, over in (("image-siren", "siren", {"hidden_features": 64, "hidden_layers": 3}),
                             ("image-relu-pe", "relu_pe", {"hidden_features": 64, "hidden_layers": 3})):
        t0 = time.perf_counter()
        res = run_fit(fit_image_steps(img, arch, steps=image_steps, seed=seed, config_overrides=over, preview_every=0))
        rend = render_image(TorchEvaluator(res.model, device="cpu"), size, size)
        p, s = psnr(rend, img), ssim(rend, img)
        save_inr(res.model, out / name, extra={"psnr": round(p, 3), "ssim": round(s, 4), "steps": res.steps,
                                               "ground_truth": "image-target.png"})
        summary["samples"][name] = {"kind": "image", "arch": arch, "parameters": count_parameters(res.model),
                                    "steps": res.steps, "psnr_db": round(p, 2), "ssim": round(s, 4),
                                    "seconds": round(time.perf_counter() - t0, 1), "ground_truth": "image-target.png"}
        log(f"{name}: PSNR {p:.2f} dB, SSIM {s:.3f} after {res.steps} steps ({time.perf_counter() - t0:.0f} s)")
    bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
    cfg = preset("siren", 3, 1, hidden_features=64, hidden_layers=3, w0=15.0, bounds=bounds.tolist())
    for name, shape in (("sdf-torus", "torus"), ("sdf-sphere", "sphere")):
        t0 = time.perf_counter()
        target = SDFTarget(shape=shape, seed=seed)
        res = run_fit(fit_sdf_steps(target, cfg, steps=sdf_steps, points_per_step=4096, bounds=bounds, seed=seed,
                                    preview_every=0, eval_every=20))
        grid = bake_grid(TorchEvaluator(res.model, device="cpu"), bounds, 64)
        m = marching_cubes(grid, bounds)
        metrics = chamfer_and_normals(m, target.mesh, n=10000)
        save_inr(res.model, out / name, extra={"val_error": round(res.best_metric, 5), "shape": shape,
                                               "chamfer": round(metrics["chamfer"], 5)})
        summary["samples"][name] = {"kind": "sdf", "shape": shape, "arch": "siren", "parameters": count_parameters(res.model),
                                    "steps": res.steps, "validation_abs_error": round(res.best_metric, 5),
                                    "chamfer_64": round(metrics["chamfer"], 5),
                                    "normal_consistency_64": round(metrics["normal_consistency"], 4),
                                    "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{name}: |error| {res.best_metric:.4f}, Chamfer {metrics['chamfer']:.4f} ({time.perf_counter() - t0:.0f} s)")
    (out / "samples.json").write_text(json.dumps(summary, indent=2))
    write_card(out, summary)
    return summary


def write_card(out: Path, summary: dict) -> Path:
    """A README card: how the samples were made, on what, and how well they fit."""
    lines = ["# Bundled INR samples", "",
             f"Made by `{summary['command']}` (seed {summary['seed']}); no downloads: the image is generated "
             "procedurally (`plugins.inr.image2d.procedural_image`, 128x128) and the shapes are analytic SDFs.", "",
             "| file | kind | architecture | parameters | steps | fit |", "|---|---|---|---|---|---|"]
    for name, s in summary["samples"].items():
        if s["kind"] == "image":
            fit = f"PSNR {s['psnr_db']} dB, SSIM {s['ssim']} vs `{s['ground_truth']}`"
        else:
            fit = (f"mean abs SDF error {s['validation_abs_error']}, Chamfer {s['chamfer_64']} and normal "
                   f"consistency {s['normal_consistency_64']} at 64^3 vs the analytic {s['shape']}")
        lines.append(f"| `{name}.json` + `.safetensors` | {s['kind']} | {s['arch']} 3x64 | {s['parameters']:,} | "
                     f"{s['steps']} | {fit} |")
    lines += ["", "The two SDFs start from the same initial weights (same seed and architecture), so linear "
              "interpolation between them in weight space morphs one shape into the other.", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.inr_samples", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="resources/samples/inr")
    ap.add_argument("--image-steps", type=int, default=400)
    ap.add_argument("--sdf-steps", type=int, default=600)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    make(Path(args.out), args.image_steps, args.sdf_steps, args.size, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
