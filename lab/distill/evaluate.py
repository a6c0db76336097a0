"""The bundled model's own evaluation (held-out prompts, the non-learned detector) for one-step students.

    python -m lab.distill.evaluate [--student DIR] [--teacher DIR] [--prompts 200] [--seeds 2]
                                   [--teacher-steps 1,2,4,25] [--student-steps 1] [--reuse-teacher JSON] [--json OUT]

The student is drawn as the studio draws it: its own scheduler (one DDIM step from pure noise that
returns the clean prediction), no guidance. The teacher is drawn with DDIM at guidance 5, as its
model card's table. Both through the plain diffusers pipeline, with the same held-out scenes and seeds,
scored by ``detector.detect`` (``plugins/default_model/evaluate.py``).

``generator_scores`` scores a :class:`plugins.distill.compute.Distiller`'s generator in the process
that trains it, from the same noise the pipeline would draw for each seed (for pilots and for the
evaluations a training run makes as it goes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

FLOORS = {"colour": 0.95, "position": 0.95, "shape": 0.75}
COLUMNS = ("colour", "shape", "position", "count", "size", "background", "sharpness_ratio")


def _reference_sharpness(scenes) -> float:
    import numpy as np

    from lab.default_model.detector import sharpness

    return float(np.mean([sharpness(s.image) for s in scenes]))


def generator_scores(distiller, n_prompts: int = 48, seeds=(0,), batch: int = 48) -> dict:
    """The detector's scores of the distiller's generator (EMA where it has one) at one step."""
    import torch

    from lab.default_model.evaluate import eval_scenes, score_images
    from plugins.diffusion_common.preview import to_uint8_images

    scenes = eval_scenes(n_prompts)
    asked = [s for s in scenes for _ in seeds]
    seed_list = [sd for _ in scenes for sd in seeds]
    images = []
    vae = distiller.teacher.pipe.vae
    sf = float(vae.config.scaling_factor)
    t0 = time.perf_counter()
    with torch.no_grad():
        for b in range(0, len(asked), batch):
            sc, ss = asked[b:b + batch], seed_list[b:b + batch]
            z = torch.cat([torch.randn((1, *distiller.latent_shape), generator=torch.Generator().manual_seed(s))
                           for s in ss]).to(distiller.device)
            x0 = distiller.generate(z, distiller.teacher.encode([s.caption for s in sc]), unet=distiller.student_unet())
            images.extend(to_uint8_images(vae.decode(x0 / sf, return_dict=False)[0]))
    row = score_images(asked, images, _reference_sharpness(scenes))
    row["eval_seconds"] = time.perf_counter() - t0
    return row


def meets_floors(row: dict) -> bool:
    return all(row[k] >= v for k, v in FLOORS.items())


def table(rows: list[tuple[str, dict]]) -> str:
    """A Markdown table of evaluation rows (label, scores)."""
    head = "| model | steps | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for label, row in rows:
        cells = [f"{row[c]:.2f}" if c == "sharpness_ratio" else f"{100 * row[c]:.1f}%" for c in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from app.paths import default_model_dir
    from lab.default_model.evaluate import evaluate

    p = argparse.ArgumentParser(prog="python -m lab.distill.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--student", type=Path, default=None, help="the student's diffusers folder")
    p.add_argument("--teacher", type=Path, default=None, help="the teacher's folder (default: the bundled model)")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--student-steps", default="1")
    p.add_argument("--teacher-steps", default="1,2,4,25", help="DDIM steps of the teacher at --guidance ('' for none)")
    p.add_argument("--teacher-unguided-steps", default="1",
                   help="DDIM steps of the teacher without guidance (where the student starts; '' for none)")
    p.add_argument("--guidance", type=float, default=5.0, help="the teacher's guidance")
    p.add_argument("--reuse-teacher", type=Path, default=None,
                   help="take the teacher's rows from this earlier --json output instead of drawing them again")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    for folder in (a.student, a.teacher):
        if folder is not None and not (folder / "model_index.json").is_file():
            p.error(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    seeds = tuple(range(a.seeds))
    steps = lambda text: tuple(int(s) for s in text.split(",") if s.strip())  # noqa: E731
    teacher = a.teacher or default_model_dir()
    res: dict = {}
    if a.reuse_teacher:
        old = json.loads(a.reuse_teacher.read_text())
        res.update({k: old[k] for k in ("teacher", "teacher_unguided") if k in old})
        if any(res[k]["prompts"] != a.prompts or len(res[k]["seeds"]) != a.seeds for k in res):
            p.error(f"{a.reuse_teacher} was made with other prompts or seeds")
    else:
        if steps(a.teacher_steps):
            res["teacher"] = evaluate(teacher, a.prompts, seeds, steps(a.teacher_steps), a.guidance, a.threads)
        if steps(a.teacher_unguided_steps):
            res["teacher_unguided"] = evaluate(teacher, a.prompts, seeds, steps(a.teacher_unguided_steps), 1.0,
                                               a.threads)
    if a.student is not None:
        res["student"] = evaluate(a.student, a.prompts, seeds, steps(a.student_steps), 1.0, a.threads)
    rows = [(f"student ({a.student.name}) | {s}", r) for s, r in res.get("student", {}).get("by_steps", {}).items()]
    rows += [(f"teacher, DDIM, guidance {a.guidance:g} | {s}", r)
             for s, r in res.get("teacher", {}).get("by_steps", {}).items()]
    rows += [(f"teacher, DDIM, no guidance | {s}", r)
             for s, r in res.get("teacher_unguided", {}).get("by_steps", {}).items()]
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
