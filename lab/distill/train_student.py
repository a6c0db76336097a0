"""Train the bundled model's one-step student, resumably, evaluating it as it goes.

    python -m lab.distill.train_student --out DIR [--method sid|dmd] [--iterations N] [--eval-every 100]
                                        [distill settings: --batch --lr --fake-lr --guidance ...]

The same distillation as ``implicit-studio run distill --teacher default --prompts PROMPTS --run-dir DIR``
(``plugins.distill.compute.run``, the same defaults) with the bundled model's training captions as its
prompts (``lab.distill.prompts``, written to ``DIR/prompts.txt`` once) and, after every ``--eval-every``
iterations, the generator scored on held-out prompts by the bundled model's detector
(``lab.distill.evaluate.generator_scores``; 48 prompts, seed 0), appended to ``DIR/evals.jsonl`` with
the iteration and the run's compute time so far (wall and CPU seconds of the kept iterations, evaluation
time excluded). Stop it at any time: running the same command again resumes from the last checkpoint.
At the last iteration the student folder is written to ``DIR/student``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

# the run's settings that differ from the distill tool's defaults (chosen by the pilots: model card)
RECIPE = {
    "sid": dict(batch=16, lr=1e-5, fake_lr=1e-5, guidance=2.0, fake_guidance=2.0),
    "dmd": dict(batch=16, lr=1e-5, fake_lr=1e-5, guidance=2.0),
}


def _finite(value: float):
    return round(value, 5) if math.isfinite(value) else None


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(prog="python -m lab.distill.train_student", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--method", choices=("sid", "dmd"), default="sid")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-prompts", type=int, default=48)
    p.add_argument("--prompt-count", type=int, default=20000)
    p.add_argument("--export-now", type=Path, default=None, metavar="DEST",
                   help="only write the student of the last checkpoint to DEST (the run can go on meanwhile)")
    for name, kind in (("batch", int), ("lr", float), ("fake_lr", float), ("guidance", float),
                       ("fake_guidance", float), ("alpha", float), ("fake_updates", int), ("ema_halflife", float),
                       ("checkpoint_every", int), ("preview_every", int), ("threads", int), ("precision", str),
                       ("seed", int)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    a = p.parse_args(argv)

    from app.paths import default_model_dir
    from plugins.distill import compute

    from .evaluate import generator_scores
    from .prompts import training_prompts

    if a.export_now:
        print(f"student written to {compute.export_run('default', a.out, a.export_now)}")
        return 0

    settings = dict(RECIPE[a.method])
    for key in ("batch", "lr", "fake_lr", "guidance", "fake_guidance", "alpha", "fake_updates", "ema_halflife",
                "checkpoint_every", "preview_every", "threads", "precision", "seed"):
        if getattr(a, key) is not None:
            settings[key] = getattr(a, key)
    settings.setdefault("checkpoint_every", a.eval_every)
    cfg = compute.DistillConfig(method=a.method, iterations=a.iterations, **settings)
    a.out.mkdir(parents=True, exist_ok=True)
    prompts_file = a.out / "prompts.txt"
    if not prompts_file.is_file():
        from transformers import CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(str(default_model_dir() / "tokenizer"))
        prompts_file.write_text("\n".join(training_prompts(a.prompt_count, tokenizer=tok)) + "\n", encoding="utf-8")
    evals = a.out / "evals.jsonl"

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    def on_checkpoint(distiller, meta: dict) -> None:
        if meta["step"] % a.eval_every and meta["step"] != cfg.iterations:
            return
        row = generator_scores(distiller, a.eval_prompts, (0,))
        rec = {**{k: round(v, 4) for k, v in row.items() if isinstance(v, float)},
               "step": meta["step"], "seconds": round(meta["seconds"], 1), "cpu_seconds": round(meta["cpu_seconds"], 1),
               "prompts": a.eval_prompts,
               "generator_loss": _finite(compute.tail_mean(distiller.losses["generator"], a.eval_every)),
               "fake_loss": _finite(compute.tail_mean(distiller.losses["fake"], a.eval_every))}
        with evals.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        log("eval " + " ".join(f"{k}={v}" for k, v in rec.items()))

    if not evals.exists():  # the teacher's own one-step picture, the generator's starting point
        teacher = compute.load_teacher("default")
        on_checkpoint(compute.Distiller(teacher, cfg), {"step": 0, "seconds": 0.0, "cpu_seconds": 0.0})
    report = compute.run("default", a.out, cfg, compute.read_prompts(prompts_file), log=log,
                         on_checkpoint=on_checkpoint)
    log(f"at iteration {report.step} of {report.total}: {report.seconds / 60:.1f} min wall, "
        f"{report.cpu_seconds / 60:.1f} min CPU" + (f"; student in {report.student}" if report.student else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
