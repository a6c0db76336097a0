"""SiD against DMD2 on the same teacher after equal compute time, from two training runs' evaluations.

    python -m lab.distill.compare --run sid=DIR --run dmd=DIR [--clock seconds|cpu_seconds] [--json OUT]

Each run is a folder of ``python -m lab.distill.train_student`` whose ``evals.jsonl`` holds the
generator's scores (held-out prompts, the bundled model's detector) with the run's compute time when
they were taken. The table puts the runs side by side at the largest time both reached (each run's last
evaluation at or before it), and at the evaluations before that, so that quality is compared after
equal time, not after an equal number of iterations (a DMD2 iteration costs more: several fake-score
updates per generator update).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("colour", "shape", "position", "count", "size", "sharpness_ratio")


def load_evals(run: Path) -> list[dict]:
    path = run / "evals.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run} has no evals.jsonl (a lab.distill.train_student run folder is needed)")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def at_time(evals: list[dict], t: float, clock: str) -> dict:
    """The last evaluation taken at or before compute time ``t``."""
    before = [e for e in evals if e[clock] <= t + 1e-6]
    return max(before, key=lambda e: e[clock]) if before else evals[0]


def compare(runs: dict[str, list[dict]], clock: str = "seconds", points: int = 4) -> dict:
    common = min(max(e[clock] for e in ev) for ev in runs.values())
    times = [common * (i + 1) / points for i in range(points)]
    rows = []
    for t in times:
        for name, ev in runs.items():
            e = at_time(ev, t, clock)
            rows.append({"time": t, "run": name, **{k: e[k] for k in ("step", "seconds", "cpu_seconds", *COLUMNS)}})
    what = "wall time" if clock == "seconds" else "CPU time"
    lines = [f"| after ({what}) | method | iteration | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
             "|---:|---|---:|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cells = [f"{r[c]:.2f}" if c == "sharpness_ratio" else f"{100 * r[c]:.1f}%" for c in COLUMNS]
        lines.append(f"| {r['time'] / 60:.0f} min | {r['run']} | {r['step']} | " + " | ".join(cells) + " |")
    return {"clock": clock, "common_time": common, "rows": rows, "text": "\n".join(lines)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.distill.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="NAME=DIR, twice or more")
    p.add_argument("--clock", choices=("seconds", "cpu_seconds"), default="seconds")
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    runs = {}
    for spec in a.run:
        name, sep, folder = spec.partition("=")
        if not sep:
            p.error(f"--run takes NAME=DIR, not {spec!r}")
        runs[name] = load_evals(Path(folder))
    res = compare(runs, a.clock, a.points)
    print(res["text"])
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
