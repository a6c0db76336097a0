"""Text-to-image benchmark: our generation vs a bare diffusers pipeline call, torch vs ONNX Runtime.

In one process, on the same loaded pipeline and identical settings (prompt, seed, steps, guidance,
scheduler, size), it times, interleaved round by round after a warm-up:

- ``bare``: ``pipe(prompt, ...)``, the plain diffusers StableDiffusionPipeline call;
- ``ours``: ``plugins.text_to_image.compute.generate`` with a live preview every step and the
  trajectory recorded (x0 thumbnails, norms, sigmas) -- what the studio runs;
- ``ours-lean``: the same without preview and recording;
- ``onnx``: ``generate(..., backend="onnx")`` (ONNX Runtime, CPU provider here; export cached).

It reports median seconds, the overhead of ``ours`` over ``bare`` (target <= 10 %), the
torch / ONNX Runtime ratio, and checks that ``ours`` and ``bare`` make the same image.

    python benchmarks/bench_text_to_image.py [--model default|PATH] [--steps 25] [--rounds 7]
        [--threads 2] [--json out.json]

With no bundled model installed it builds the tiny random test model (same structure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--scheduler", default="default")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", default="a small red star in the top left on a blue background")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from app.api import ToolError

    torch.set_num_threads(args.threads)
    from app.plugins import get_manager
    from plugins.diffusion_common.models import load_pipeline
    from plugins.text_to_image.compute import GenerationParams, generate

    model = args.model
    note = ""
    try:
        model = str(get_manager().resolve_model(model))  # "default": the bundled model
    except ToolError:
        if model != "default":
            raise
        from plugins.diffusion_common.tiny import build_tiny_pipeline

        model = str(build_tiny_pipeline(Path(tempfile.mkdtemp()) / "tiny", seed=0))
        note = "bundled model not installed: tiny random model of the same structure"
    loaded = load_pipeline(model)
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    params = GenerationParams(prompt=args.prompt, seed=1, steps=args.steps, guidance=args.guidance,
                              scheduler=args.scheduler)
    sink = []

    def bare():
        return pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, output_type="np",
                    generator=torch.Generator().manual_seed(1)).images[0]

    def ours():
        sink.clear()
        return generate(params, model, on_preview=sink.append, on_progress=lambda *a: None).images[0]

    def lean():
        return generate(params, model, record_trajectory=False).images[0]

    def onnx():
        return generate(params, model, backend="onnx", ort_threads=args.threads).images[0]

    cases = {"bare": bare, "ours": ours, "ours-lean": lean}
    if not args.no_onnx:
        cases["onnx"] = onnx
    t_export = time.perf_counter()
    outputs = {name: fn() for name, fn in cases.items()}  # warm-up (ONNX export happens here)
    t_export = time.perf_counter() - t_export
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    bare_img = np.round(outputs["bare"] * 255).astype(np.uint8)
    same = int(np.abs(bare_img.astype(int) - outputs["ours"].astype(int)).max())
    fig = {
        "model": str(loaded.info.path), "arch": loaded.info.arch, "note": note, "steps": args.steps,
        "guidance": args.guidance, "scheduler": args.scheduler, "size": list(outputs["ours"].shape[:2]),
        "threads": args.threads, "rounds": args.rounds, "median_s": {k: round(v, 4) for k, v in med.items()},
        "overhead_ours_vs_bare_pct": round(100 * (med["ours"] / med["bare"] - 1), 1),
        "overhead_lean_vs_bare_pct": round(100 * (med["ours-lean"] / med["bare"] - 1), 1),
        "max_pixel_diff_ours_vs_bare": same, "previews_per_run": len(sink),
        "torch_version": torch.__version__,
    }
    if "onnx" in med:
        fig["torch_over_onnx_ratio"] = round(med["ours-lean"] / med["onnx"], 2)
        fig["max_pixel_diff_torch_vs_onnx"] = int(np.abs(outputs["ours"].astype(int) - outputs["onnx"].astype(int)).max())
    print(f"text-to-image benchmark: {fig['arch']} at {fig['size'][1]}x{fig['size'][0]}, {args.steps} steps, "
          f"guidance {args.guidance}, {args.threads} threads, median of {args.rounds}"
          + (f" ({note})" if note else ""))
    print("| run | median s |\n|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} |")
    print(f"overhead of ours (preview + trajectory) over bare diffusers: {fig['overhead_ours_vs_bare_pct']:+.1f} % "
          f"(target <= 10 %); without preview/recording: {fig['overhead_lean_vs_bare_pct']:+.1f} %")
    print(f"ours vs bare image: max pixel difference {same}; previews per run: {len(sink)}")
    if "onnx" in med:
        print(f"torch / ONNX Runtime time ratio: {fig['torch_over_onnx_ratio']} (>1: ONNX Runtime faster); "
              f"max pixel difference {fig['max_pixel_diff_torch_vs_onnx']}; first ONNX run incl. export "
              f"{t_export:.1f} s for all warm-ups")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
