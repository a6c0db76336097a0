"""Choose which of a run's exported students to ship, on scenes the evaluation never uses.

    python -m lab.distill.select SNAPSHOT_DIR... [--prompts 100] [--seeds 2] [--json OUT]

Each folder is a student written by ``python -m lab.distill.train_student --export-now`` (or a run's
``student``). They are scored at one step on a selection set: scenes from seeds 20,000,000 up in the
evaluation's wording, disjoint from the evaluation's (10,000,000 up) and from training's (below
100,000), so that choosing a checkpoint does not fit the figures the card reports. The pick is the
student of the most iterations whose selection scores meet every floor (colour, position, shape).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SELECT_SEED_BASE = 20_000_000


def selection_scenes(n: int):
    from lab.default_model.shapes import make_sample

    return [make_sample(SELECT_SEED_BASE + i, eval_wording=True) for i in range(n)]


def score_student(folder: Path, scenes, seeds=(0, 1), threads: int = 1) -> dict:
    from lab.default_model.evaluate import generate, load_pipeline, score_images

    from .evaluate import _reference_sharpness

    pipe = load_pipeline(folder, threads)
    prompts = [s.caption for s in scenes for _ in seeds]
    images = generate(pipe, prompts, [sd for _ in scenes for sd in seeds], 1, 1.0)
    return score_images([s for s in scenes for _ in seeds], images, _reference_sharpness(scenes))


def main(argv=None) -> int:
    from .evaluate import FLOORS, meets_floors

    p = argparse.ArgumentParser(prog="python -m lab.distill.select", description=__doc__.split("\n\n")[0])
    p.add_argument("students", type=Path, nargs="+")
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    scenes = selection_scenes(a.prompts)
    rows = []
    for folder in a.students:
        record = json.loads((folder / "implicit_studio.json").read_text())["distilled"]
        row = score_student(folder, scenes, tuple(range(a.seeds)), a.threads)
        rows.append({"student": str(folder), "iterations": record["iterations"],
                     **{k: row[k] for k in ("colour", "shape", "position", "count", "sharpness_ratio")},
                     "meets_floors": meets_floors(row)})
        print(f"{folder} (iteration {record['iterations']}): " + ", ".join(
            f"{k} {100 * row[k]:.1f}%" for k in FLOORS) + f", count {100 * row['count']:.1f}%", flush=True)
    ok = [r for r in rows if r["meets_floors"]]
    pick = max(ok, key=lambda r: r["iterations"]) if ok else None
    print(f"pick: {pick['student']} (iteration {pick['iterations']})" if pick else "no student meets the floors")
    if a.json:
        a.json.write_text(json.dumps({"prompts": a.prompts, "seeds": a.seeds, "rows": rows, "pick": pick}, indent=2))
    return 0 if pick else 1


if __name__ == "__main__":
    raise SystemExit(main())
