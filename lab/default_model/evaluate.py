"""Measure the default model: attribute accuracy by the non-learned detector, sharpness, speed.

    python -m lab.default_model.evaluate [--model DIR] [--prompts 200] [--seeds 2]
                                             [--steps 4,10,25] [--guidance 5] [--json OUT]

Prompts come from held-out scenes (seeds from 10,000,000 up, never used in training) written in
an evaluation wording whose word order no training caption uses. Every image is generated with
the plain diffusers pipeline and DDIM, then read back by ``detector.detect``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EVAL_SEED_BASE = 10_000_000


def eval_scenes(n: int):
    from .shapes import make_sample

    return [make_sample(EVAL_SEED_BASE + i, eval_wording=True) for i in range(n)]


def load_pipeline(model_dir: Path, threads: int = 2):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float, batch: int = 50):
    import numpy as np
    import torch

    out = []
    for b in range(0, len(prompts), batch):
        ps, ss = prompts[b : b + batch], seeds[b : b + batch]
        gens = [torch.Generator().manual_seed(s) for s in ss]
        res = pipe(ps, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np")
        out.extend((np.clip(res.images, 0, 1) * 255).round().astype("uint8"))
    return out


def score_images(scenes, images, reference_sharpness: float) -> dict:
    """The detector's accuracies (per asked object), shape breakdown and sharpness of ``images``,
    each read against the scene it was asked for (``scenes[k]`` for ``images[k]``)."""
    import numpy as np

    from .detector import detect, score, shape_breakdown, shape_readings, sharpness

    totals: dict[str, float] = {}
    readings = []
    for scene, img in zip(scenes, images):
        det = detect(img)
        for key, v in score(scene.background, scene.objects, det).items():
            totals[key] = totals.get(key, 0.0) + v
        readings += shape_readings(scene.objects, det)
    row = {k: v / len(images) for k, v in totals.items()}
    row["shapes"] = shape_breakdown(readings)
    row["sharpness"] = float(np.mean([sharpness(i) for i in images]))
    row["sharpness_ratio"] = row["sharpness"] / reference_sharpness
    return row


def evaluate(model_dir: Path, n_prompts: int = 200, seeds=(0, 1), steps_list=(4, 10, 25), guidance: float = 5.0,
             threads: int = 2, save_grid: Path | None = None) -> dict:
    import numpy as np

    from .detector import sharpness

    pipe = load_pipeline(model_dir, threads)
    scenes = eval_scenes(n_prompts)
    truth_sharp = float(np.mean([sharpness(s.image) for s in scenes]))
    results = {"model": str(model_dir), "prompts": n_prompts, "seeds": list(seeds), "guidance": guidance,
               "reference_sharpness": truth_sharp, "by_steps": {}}
    for steps in steps_list:
        prompts = [s.caption for s in scenes for _ in seeds]
        seed_list = [sd for _ in scenes for sd in seeds]
        t0 = time.time()
        images = generate(pipe, prompts, seed_list, steps, guidance)
        gen_time = time.time() - t0
        row = score_images([scenes[k // len(seeds)] for k in range(len(images))], images, truth_sharp)
        row["seconds_per_image_batched"] = gen_time / len(images)
        results["by_steps"][str(steps)] = row
        print(f"steps={steps}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
        if save_grid and steps == max(steps_list):
            from PIL import Image

            tiles = images[: 8 * 6 * len(seeds) : len(seeds)][:48]
            rows = [np.concatenate(tiles[r * 8 : (r + 1) * 8], 1) for r in range(len(tiles) // 8)]
            Image.fromarray(np.concatenate(rows, 0)).resize((8 * 64 * 2, len(rows) * 64 * 2), Image.NEAREST).save(save_grid)
    return results


def sampling_speed(model_dir: Path, steps: int = 25, repeats: int = 5, threads: int = 2) -> dict:
    """Seconds for one 64x64 image at ``steps`` DDIM steps, guidance 5 (median of ``repeats``):
    the plain diffusers pipeline, the studio's torch backend and its ONNX Runtime backend
    (exported on first use, cached by the weights' hash), all in this process."""
    import statistics

    import torch

    from plugins.text_to_image.compute import GenerationParams, generate

    torch.set_num_threads(threads)
    prompt = "a red circle in the center on a white background"
    pipe = load_pipeline(model_dir, threads)

    def timed(fn) -> float:
        times = []
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            fn(r)
            if r:  # the first call warms up (and, for ONNX, exports)
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    out = {"steps": steps}
    out["diffusers_s"] = timed(lambda r: pipe(prompt, num_inference_steps=steps, guidance_scale=5.0,
                                              generator=torch.Generator().manual_seed(r)))
    params = lambda r: GenerationParams(prompt=prompt, seed=r, steps=steps, guidance=5.0, scheduler="ddim")  # noqa: E731
    out["torch_s"] = timed(lambda r: generate(params(r), model=str(model_dir), backend="torch"))
    out["onnx_s"] = timed(lambda r: generate(params(r), model=str(model_dir), backend="onnx", ort_threads=threads))
    out["onnx_over_torch"] = out["onnx_s"] / out["torch_s"]
    out["studio_over_diffusers"] = out["torch_s"] / out["diffusers_s"]
    return out


def main(argv=None) -> int:
    from app.paths import default_model_dir

    p = argparse.ArgumentParser(prog="python -m lab.default_model.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="pipeline folder (default: the bundled model)")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", default="4,10,25")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--grid", type=Path, default=None, help="save a PNG grid of samples")
    p.add_argument("--no-speed", action="store_true")
    a = p.parse_args(argv)
    model = a.model or default_model_dir()
    if not (Path(model) / "model_index.json").exists():
        p.error(f"{model} is not a diffusers pipeline folder (no model_index.json)")
    res = evaluate(model, a.prompts, tuple(range(a.seeds)), tuple(int(s) for s in a.steps.split(",")), a.guidance,
                   a.threads, a.grid)
    if not a.no_speed:
        res["speed"] = sampling_speed(model, threads=a.threads)
        print("speed:", res["speed"])
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
