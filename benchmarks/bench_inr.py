"""INR benchmarks (CPU by default; CUDA when present for the torch path).

    nice -n 10 .venv/bin/python benchmarks/bench_inr.py [--quick] [--json out.json]

1. Field evaluation throughput of a 3x256 SIREN (3D -> 1): batched (64k-point chunks under
   inference_mode, preallocated output) vs a naive per-chunk loop (1k points, autograd on, a new
   tensor and a list append per chunk), plus ONNX Runtime, in the same run.
2. Marching cubes at 128^3 end to end for a fitted SDF (the bundled torus sample, or one fitted
   here): full bake vs progressive 32->64->128 narrow-band bake, then skimage marching cubes.
3. Fitting a 256x256 image to 30 dB PSNR: time and steps, SIREN vs ReLU+PE (both 3x128, full
   batch, Adam at each family's default rate), in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _timeit(fn, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_throughput(n_points: int, threads: int) -> dict:
    import numpy as np
    import torch

    from plugins.inr.fields import OnnxField, TorchEvaluator, export_onnx
    from plugins.inr.models import build_model, preset

    model = build_model(preset("siren", 3, 1, hidden_features=256, hidden_layers=3), seed=0).eval()
    pts = np.random.default_rng(0).uniform(-1, 1, (n_points, 3)).astype(np.float32)
    batched = TorchEvaluator(model, device="cpu", chunk=65536)

    def naive():
        outs = []
        for s in range(0, len(pts), 1024):
            x = torch.tensor(pts[s: s + 1024])  # copy, autograd graph kept
            outs.append(model(x).detach().numpy().copy())
        return np.concatenate(outs)

    batched(pts[:4096])
    t_b = _timeit(lambda: batched(pts))
    t_n = _timeit(naive, repeat=1)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_inr_siren.onnx"
    export_onnx(model, tmp)
    ort = OnnxField(tmp, model.config, chunk=65536, threads=threads)
    ort(pts[:4096])
    t_o = _timeit(lambda: ort(pts))
    np.testing.assert_allclose(ort(pts[:1000]), batched(pts[:1000]), atol=1e-4)
    return {"points": n_points, "torch_batched_pts_per_s": n_points / t_b, "torch_naive_pts_per_s": n_points / t_n,
            "onnxruntime_pts_per_s": n_points / t_o, "speedup_batched_vs_naive": t_n / t_b,
            "speedup_onnx_vs_torch": t_b / t_o}


def _sdf_model(quick: bool):
    from plugins.inr.models import load_inr

    sample = ROOT / "resources" / "samples" / "inr" / "sdf-torus.json"
    if sample.exists():
        return load_inr(sample), "bundled sample sdf-torus (SIREN 3x64)"
    from plugins.inr.fit import SDFTarget, fit_sdf_steps, run_fit
    from plugins.inr.models import preset

    cfg = preset("siren", 3, 1, hidden_features=64, hidden_layers=3, w0=15.0)
    res = run_fit(fit_sdf_steps(SDFTarget(shape="torus"), cfg, steps=150 if quick else 400, preview_every=0))
    return res.model, "torus fitted here (SIREN 3x64)"


def bench_marching_cubes(quick: bool) -> dict:
    import numpy as np

    from plugins.inr.fields import TorchEvaluator, bake_grid, bake_progressive, make_evaluator
    from plugins.inr.geometry import marching_cubes

    model, what = _sdf_model(quick)
    bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
    out: dict = {"model": what}
    for backend in ("torch", "onnx"):
        ev = TorchEvaluator(model, device="cpu") if backend == "torch" else make_evaluator(model, backend="onnx")
        t0 = time.perf_counter()
        full = bake_grid(ev, bounds, 128)
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        levels = list(bake_progressive(ev, bounds, (32, 64, 128)))
        t_prog = time.perf_counter() - t0
        first = levels[0].seconds
        grid = levels[-1].grid
        t0 = time.perf_counter()
        mesh = marching_cubes(grid, bounds)
        t_mc = time.perf_counter() - t0
        near = np.abs(full) < 0.05
        out[backend] = {"bake_full_s": t_full, "bake_progressive_s": t_prog, "first_level_32_s": first,
                        "evaluated_points_progressive": int(sum(lv.evaluated for lv in levels)),
                        "max_abs_diff_near_surface": float(np.abs(full - grid)[near].max()),
                        "marching_cubes_s": t_mc, "end_to_end_progressive_s": t_prog + t_mc,
                        "end_to_end_full_s": t_full + t_mc, "faces": int(len(mesh.faces))}
    return out


def bench_fit(size: int, target_db: float, max_steps: int, max_seconds: float) -> dict:
    import numpy as np

    from plugins.inr.fit import fit_image_steps
    from plugins.inr.image2d import procedural_image

    try:
        from skimage import data, transform

        cam = data.camera().astype(np.float32) / 255.0
        img = transform.resize(cam, (size, size), anti_aliasing=True).astype(np.float32)[..., None]
        name = f"skimage camera {size}x{size} (gray)"
    except Exception:
        img = procedural_image(size)
        name = f"procedural {size}x{size} RGB"
    out: dict = {"image": name, "target_db": target_db}
    for arch in ("siren", "relu_pe"):
        gen = fit_image_steps(img, arch, steps=max_steps, target_psnr=target_db, stop_at_target=True,
                              preview_every=0, config_overrides={"hidden_features": 128, "hidden_layers": 3})
        t0 = time.perf_counter()
        best = -math.inf
        step = 0
        reached = None
        while True:
            try:
                s = next(gen)
            except StopIteration as stop:
                break
            step, best = s.step, max(best, s.metric)
            if s.metric >= target_db and reached is None:
                reached = (s.step, s.elapsed)
            if time.perf_counter() - t0 > max_seconds:
                gen.close()
                break
        out[arch] = {"reached": reached is not None, "steps": reached[0] if reached else step,
                     "seconds": reached[1] if reached else time.perf_counter() - t0, "best_db": best}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: all cores)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--fit-seconds", type=float, default=600.0, help="time cap per fitted architecture")
    args = ap.parse_args(argv)
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": threads,
            "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    print(json.dumps(info))
    results = {"info": info}
    n = 65536 if args.quick else 262144
    results["throughput"] = r = bench_throughput(n, threads)
    print(f"[throughput] SIREN 3x256, {n} points: batched torch {r['torch_batched_pts_per_s']:,.0f} pts/s, "
          f"naive loop {r['torch_naive_pts_per_s']:,.0f} pts/s ({r['speedup_batched_vs_naive']:.2f}x), "
          f"ONNX Runtime {r['onnxruntime_pts_per_s']:,.0f} pts/s ({r['speedup_onnx_vs_torch']:.2f}x torch)", flush=True)
    results["marching_cubes_128"] = mc = bench_marching_cubes(args.quick)
    for b in ("torch", "onnx"):
        m = mc[b]
        print(f"[mc 128^3, {b}] {mc['model']}: full bake {m['bake_full_s']:.2f} s, progressive {m['bake_progressive_s']:.2f} s "
              f"(first 32^3 view {m['first_level_32_s']:.2f} s, {m['evaluated_points_progressive']:,} points), "
              f"marching cubes {m['marching_cubes_s'] * 1000:.0f} ms, end to end {m['end_to_end_progressive_s']:.2f} s, "
              f"{m['faces']:,} faces", flush=True)
    size = 128 if args.quick else 256
    results["fit"] = f = bench_fit(size, 30.0, 300 if args.quick else 5000, 60 if args.quick else args.fit_seconds)
    for arch in ("siren", "relu_pe"):
        a = f[arch]
        state = "reached" if a["reached"] else "did NOT reach"
        print(f"[fit {f['image']}] {arch} 3x128: {state} {f['target_db']} dB at step {a['steps']} in {a['seconds']:.1f} s "
              f"(best {a['best_db']:.2f} dB)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
