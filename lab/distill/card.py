"""Ship the bundled model's one-step student: copy it from its training run and write its model card.

    python -m lab.distill.card --run DIR --eval eval.json [--speed speed.json ...] [--compare compare.json]
                               [--student DIR] [--note TEXT] [--dest resources/models/default-1step]

``--run`` is the folder of ``python -m lab.distill.train_student`` (its checkpoint meta, ``evals.jsonl``
and ``student/``); ``--eval`` the JSON of ``python -m lab.distill.evaluate --json``; ``--speed`` the
JSON of ``benchmarks/bench_onestep.py --json``; ``--compare`` the JSON of
``python -m lab.distill.compare --json`` (SiD against DMD2 after equal time). Every figure in the card
comes from these files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .evaluate import FLOORS, table


def _mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def loss_text(losses: dict, every: int = 100) -> str:
    g, f = losses["generator"], losses["fake"]
    parts = []
    for end in range(every, len(g) + 1, every):
        parts.append(f"{sum(g[end - every:end]) / every:.2f} / {sum(f[end - every:end]) / every:.4f} ({end})")
    return ", ".join(parts)


def evals_table(rows: list[dict]) -> str:
    lines = ["| iteration | compute (wall) | CPU time | colour | shape | position | count | sharpness ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {_minutes(r['seconds'])} | {_minutes(r['cpu_seconds'])} | "
                     f"{100 * r['colour']:.1f}% | {100 * r['shape']:.1f}% | {100 * r['position']:.1f}% | "
                     f"{100 * r['count']:.1f}% | {r['sharpness_ratio']:.2f} |")
    return "\n".join(lines)


def floors_text(row: dict) -> str:
    parts = [f"{k} {100 * row[k]:.1f}% ({'met' if row[k] >= v else 'NOT met'}, floor {100 * v:.0f}%)"
             for k, v in FLOORS.items()]
    return "; ".join(parts)


def render_card(run: Path, student: Path, eval_json: dict, speeds: list | None = None,
                compare: dict | None = None, note: str = "") -> str:
    """The card of ``student`` (a folder the run wrote, at its last iteration or before it)."""
    record = json.loads((student / "implicit_studio.json").read_text())["distilled"]
    ckpt = json.loads((run / "distill_ckpt.json").read_text())
    cfg, done = record["config"], int(record["iterations"])
    meta = {"step": done, "seconds": record["seconds"], "cpu_seconds": record["cpu_seconds"],
            "device": record.get("device"), "precisions": record.get("precisions"),
            "seconds_per_iteration": ckpt.get("seconds_per_iteration"),
            "losses": {k: v[:done] for k, v in ckpt["losses"].items()}}
    evals = [json.loads(ln) for ln in (run / "evals.jsonl").read_text().splitlines() if ln.strip()] \
        if (run / "evals.jsonl").exists() else []
    evals = [e for e in evals if e["step"] <= done]
    student_rows = eval_json["student"]["by_steps"]
    teacher = eval_json.get("teacher", {})
    rows = [(f"student | {s}", r) for s, r in student_rows.items()]
    rows += [(f"teacher, DDIM, guidance {teacher['guidance']:g} | {s}", r) for s, r in teacher.get("by_steps", {}).items()]
    if "teacher_unguided" in eval_json:
        rows += [(f"teacher, DDIM, no guidance | {s}", r) for s, r in eval_json["teacher_unguided"]["by_steps"].items()]
    one = student_rows.get("1") or next(iter(student_rows.values()))
    n_prompts, seeds = eval_json["student"]["prompts"], len(eval_json["student"]["seeds"])
    flags = " ".join(f"--{k.replace('_', '-')} {cfg[k]}" for k in ("batch", "lr", "fake_lr", "guidance", "fake_guidance")
                     if cfg.get(k) is not None)
    spi = meta.get("seconds_per_iteration")
    out = [
        "# One-step student of the bundled model (`default-1step`)",
        "",
        "A one-step generator distilled by Implicit Studio's `distill` tool from the bundled model "
        "(`resources/models/default`, its teacher), without images: "
        + ("Score identity Distillation with SiD-LSG's guidance" if cfg["method"] == "sid" else
           "DMD2's regression-free distribution matching with its two-time-scale update")
        + ". The folder is the teacher's in everything but the UNet and the scheduler: the same CLIP tokenizer "
          "and text encoder and the same VAE, the distilled UNet, and a DDIM scheduler whose single step (from "
          "the last timestep, pure noise) returns the UNet's clean prediction. Draw it in **one step without "
          "guidance** (the guidance is distilled into it):",
        "",
        "```",
        "implicit-studio run text-to-image --model default-1step --steps 1 --guidance 1 --prompt \"a red circle in the center on a white background\"",
        "implicit-studio run text-to-image --model default --steps 1 --prompt ...   # 1-4 steps of the default model: drawn by this student, no guidance",
        "```",
        "",
        "or with plain diffusers: `StableDiffusionPipeline.from_pretrained(DIR)(prompt, num_inference_steps=1, "
        "guidance_scale=1)`. Live drawing uses `plugins.diffusion_common.onestep.OneStepGenerator`.",
        "",
        f"- Size on disk: {_mb(student):.1f} MB (float32).",
        "",
        "## Training (reproducible)",
        "",
        "```",
        f"python -m lab.distill.train_student --out DIR --method {cfg['method']} --iterations {cfg['iterations']}",
        *([f"python -m lab.distill.train_student --out DIR --export-now DIR/student   # at iteration {done}, "
           "the run going on"] if done < cfg["iterations"] else []),
        f"python -m lab.distill.evaluate --student DIR/student --json eval.json",
        f"python -m lab.distill.card --run DIR --eval eval.json --speed speed.json --compare compare.json",
        "```",
        "",
        "`train_student` writes the bundled model's training captions to `DIR/prompts.txt` (`lab/distill/prompts.py`: "
        "scenes and wordings of its training set, never the evaluation's) and runs the same distillation as "
        f"`implicit-studio run distill --teacher default --method {cfg['method']} --prompts DIR/prompts.txt "
        f"--run-dir DIR --iterations {cfg['iterations']} {flags}`, scoring the generator on held-out prompts as it goes. "
        "It checkpoints (safetensors, atomic) and resumes when run again on the same folder.",
        "",
        f"- Settings: {cfg['iterations']} generator updates, batch {cfg['batch']}, "
        f"{'Adam' if not cfg.get('weight_decay') else 'AdamW'} (betas {tuple(cfg['betas'])}) at learning rate "
        f"{cfg['lr']:g} (generator) and {cfg['fake_lr']:g} (fake-score network), {cfg['fake_updates']} fake-score "
        f"update(s) per generator update, teacher guidance {cfg['guidance']:g}"
        + (f", fake-score guidance {cfg['fake_guidance']:g} (SiD-LSG's kappa1 = kappa2 = kappa3) with "
           f"{cfg['cond_drop']:.0%} empty prompts, alpha {cfg['alpha']:g}" if cfg["method"] == "sid" else "")
        + f", timesteps {cfg['tmin']}-{cfg['tmax']}"
        + (f", EMA half-life {cfg['ema_halflife']:g} iterations (the shipped weights)" if cfg.get("ema_halflife") else
           ", no EMA (the shipped weights are the generator's)") + ".",
        f"- Time: {meta['step']} of the run's {cfg['iterations']} planned iterations in **{_minutes(meta['seconds'])} "
        "of wall time** "
        f"({_minutes(meta['cpu_seconds'])} of this process's CPU time), summed over the processes that ran them "
        f"(evaluations excluded), on {meta.get('device', 'cpu')} in "
        f"{'bfloat16 autocast' if meta.get('precisions') == ['bf16'] else 'float32'}"
        + (f"; the last process measured {spi:.2f} s per iteration" if spi else "") + "." + (f" {note}" if note else ""),
        f"- Losses (mean of 100 iterations: generator / fake-score, at iteration): {loss_text(meta['losses'])}.",
        "",
    ]
    if evals:
        n_eval = evals[-1].get("prompts")
        out += [f"Evaluated as it trained ({f'the first {n_eval} ' if n_eval else ''}held-out prompts, seed 0, one "
                "step; iteration 0 is the teacher's own one-step picture without guidance, where the generator "
                "starts):", "", evals_table(evals), ""]
    out += [
        "## Evaluation",
        "",
        f"The bundled model's evaluation (`lab/distill/evaluate.py`): {n_prompts} held-out prompts x {seeds} seeds "
        "in a wording no training caption uses, every picture read back by the non-learned detector "
        "(`plugins/default_model/detector.py`); per asked object. The student is drawn in one step without "
        "guidance, the teacher with DDIM.",
        "",
        table(rows),
        "",
        f"Floors asked of the student at one step: {floors_text(one)}.",
        "",
    ]
    start = eval_json.get("teacher_unguided", {}).get("by_steps", {}).get("1")
    if start:
        keys = ("colour", "shape", "position", "count")
        moved = ", ".join(f"{k} {100 * start[k]:.1f} -> {100 * one[k]:.1f}%" for k in keys)
        full = teacher.get("by_steps", {}).get(max(teacher.get("by_steps", {"0": 0}), key=int))
        target = "" if not full else (
            f" The teacher at {max(teacher['by_steps'], key=int)} steps, guidance {teacher['guidance']:g}: "
            + ", ".join(f"{k} {100 * full[k]:.1f}%" for k in keys) + f", sharpness ratio {full['sharpness_ratio']:.2f}.")
        out += [f"What the distillation changed: the generator starts as the teacher's UNet, whose one-step "
                f"prediction without guidance is already a clean picture on this model (its scenes are nearly "
                f"determined by their captions), so the starting point meets the floors. From there to the "
                f"student: {moved}; sharpness ratio {start['sharpness_ratio']:.2f} -> {one['sharpness_ratio']:.2f}."
                + target + " Distillation moves the generator towards the teacher's guided pictures, which this "
                "detector scores no higher than the teacher's own one-step mean.", ""]
    if speeds:
        first = speeds[0]
        out += ["## Speed", "",
                f"One 64x64 picture, median of {first['rounds']} interleaved rounds in one process ({first['cpu']}; "
                "`benchmarks/bench_onestep.py`); wall seconds, and in brackets the process's CPU seconds, the steadier "
                "measure where other work shares the cores (the load average of each run is given):", "",
                f"| backend | threads (load) | teacher, {first['steps']} DDIM steps, guidance {first['guidance']:g} | "
                "student, 1 step | live one-step call | teacher / student |", "|---|---|---:|---:|---:|---:|"]
        for speed in speeds:
            m, c = speed["median_s"], speed.get("median_cpu_s", {})
            cell = lambda k: f"{m[k]:.4f} s" + (f" ({c[k]:.4f} s)" if k in c else "")  # noqa: E731
            for be in ("torch", "onnx"):
                if f"ratio_{be}" in speed:
                    ratio = f"{speed[f'ratio_{be}']:.1f}x" + (f" ({speed[f'ratio_cpu_{be}']:.1f}x)"
                                                              if f"ratio_cpu_{be}" in speed else "")
                    out.append(f"| {be} | {speed['threads']} ({speed.get('load_average', float('nan')):.1f}) | "
                               f"{cell(f'teacher-{be}')} | {cell(f'student-{be}')} | {cell(f'live-{be}')} | {ratio} |")
        out.append("")
    if compare:
        out += ["## SiD against DMD2 after equal time", "",
                "Both runs on this teacher with the same batch, learning rates and guidance, started together on "
                "the same machine (`python -m lab.distill.compare`; the evaluations each run made as it went, "
                "each run read at its last evaluation before the time):", "", compare["text"], ""]
    out += [
        "## Limits",
        "",
        "It knows what its teacher knows (flat shapes, 64x64) and nothing else. It was trained to draw in one "
        "step; with 2-4 DDIM steps (each re-noising its own prediction, as the studio draws it when asked for "
        "them) it draws as the table above says.",
    ]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    from app.paths import default_student_dir

    p = argparse.ArgumentParser(prog="python -m lab.distill.card", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--student", type=Path, default=None,
                   help="the student to ship (default: RUN/student; or one python -m lab.distill.train_student "
                        "--export-now wrote from an earlier checkpoint)")
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--speed", type=Path, action="append", default=[], help="bench_onestep.py --json output (repeatable)")
    p.add_argument("--note", default="", help="a sentence on the run's circumstances (a shared machine, say)")
    p.add_argument("--compare", type=Path, default=None)
    p.add_argument("--dest", type=Path, default=None, help="where the student goes (default: the bundled student's folder)")
    a = p.parse_args(argv)
    dest = a.dest or default_student_dir()
    student = a.student or a.run / "student"
    if not (student / "model_index.json").is_file():
        p.error(f"{student} is not a student folder (run lab.distill.train_student to its last iteration, "
                "or --export-now)")
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(student, tmp)
    shutil.copy2(a.eval, tmp / "evaluation.json")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    load = lambda path: json.loads(path.read_text()) if path else None  # noqa: E731
    (dest / "README.md").write_text(render_card(a.run, dest, load(a.eval), [load(s) for s in a.speed], load(a.compare),
                                                a.note))
    print(f"student shipped to {dest} ({_mb(dest):.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
