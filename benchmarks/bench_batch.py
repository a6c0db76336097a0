"""Batch benchmark: a batch of text-to-image items vs a shell loop of ``implicit-studio run``, and
the Ray engine's per-item cost vs the local engine's at the same worker count.

In one run, on the bundled model, prompt "a red circle in the center on a white background":

- ``loop``: ``implicit-studio run text-to-image --steps S --seed i`` once per item, one after the
  other (a new process per item: start-up, plugin loading and model load every time), wall time;
- ``batch``: ``implicit-studio batch PLAN.toml --workers W`` over the same items (seeds 0..N-1),
  wall time of the whole command (its start-up and each worker's model load included);
- ``per-item``: the local and the Ray engine (a local Ray started by the engine) at the same
  worker count run the same plan in this process; the steady-state time per item is the time
  between the first and the last item recorded divided by the items between them (start-up and
  model loads left out), so their ratio is Ray's overhead per item (target <= 15 %).

    python benchmarks/bench_batch.py [--items 32] [--steps 10] [--workers 1] [--ray-items 16]
        [--skip-loop] [--engines-only] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a red circle in the center on a white background"
CLI = [sys.executable, "-m", "app"]


def _plan(path: Path, items: int, steps: int) -> Path:
    path.write_text(f'tool = "text-to-image"\n[params]\nprompt = "{PROMPT}"\nsteps = {steps}\n'
                    f'[sweep]\nseed = {{ seeds = {items} }}\n', encoding="utf-8")
    return path


def _loop(tmp: Path, items: int, steps: int) -> float:
    t0 = time.perf_counter()
    for seed in range(items):
        r = subprocess.run([*CLI, "run", "text-to-image", "--prompt", PROMPT, "--steps", str(steps), "--seed",
                            str(seed), "--session", str(tmp / "loop"), "--quiet"], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"run {seed} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def _batch(tmp: Path, plan: Path, workers: int) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([*CLI, "batch", str(plan), "--workers", str(workers), "--session", str(tmp / "batch"),
                        "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"the batch failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def _per_item(tmp: Path, plan_path: Path, engine: str, workers: int) -> dict:
    from app.batch.driver import BatchDriver
    from app.batch.plan import load_plan
    from app.plugins import get_manager
    from storage import SessionStore

    times: list[float] = []

    def on_event(ev) -> None:
        if ev.kind == "item":
            if ev.data["status"] != "ok":
                raise SystemExit(f"{engine}: item {ev.data['key']} failed: {ev.data['error']}")
            times.append(time.perf_counter())

    manager = get_manager()
    with SessionStore.open(tmp / f"per-item-{engine}") as store:
        # the same CPU threads per worker on both engines: a local worker's torch uses every core, a
        # Ray actor's as many as the CPUs it asks for
        cpus = max(1, (os.cpu_count() or 1) // workers)
        driver = BatchDriver(store, manager.tool, engine=engine, workers=workers, listener=on_event, ray_cpus=cpus)
        bid = driver.create(load_plan(plan_path))
        t0 = time.perf_counter()
        summary = driver.run(bid)
        total = time.perf_counter() - t0
    if summary.ok < 3:
        raise SystemExit(f"{engine}: too few items to time ({summary})")
    steady = (times[-1] - times[0]) / (len(times) - 1)
    return {"engine": engine, "items": summary.ok, "total_s": total, "per_item_s": steady,
            "first_item_s": times[0] - t0}


def _record_cost(tmp: Path, n: int = 60) -> float:
    """Seconds the driver spends recording one item (its run, a 64x64 PNG and a 5 KB table, its
    item row: one transaction): the ceiling of any engine's throughput is 1 / this."""
    import numpy as np

    from app.results_io import encode_png
    from storage import NewResult, SessionStore, batches

    rng = np.random.default_rng(0)
    with SessionStore.open(tmp / "record-cost") as store:
        bid = batches.create_batch(store, name="r", tool_id="text-to-image", plan={}, total=n, engine="local", workers=1)
        t0 = time.perf_counter()
        for i in range(n):
            png = encode_png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
            res = [NewResult("image", png, ".png", 64, 64), NewResult("table", rng.bytes(5000), ".csv")]
            run = {"tool_id": "text-to-image", "plugin": "text_to_image", "params": {"prompt": PROMPT, "seed": i},
                   "seed": i, "device": "cpu"}
            batches.record_item(store, bid, f"seed={i}", i, status="ok", attempts=1, run=run, results=res)
        return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ray-items", type=int, default=16)
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--engines-only", action="store_true", help="only the local vs ray per-item comparison")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    out: dict = {"items": args.items, "steps": args.steps, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as d:
        tmp = Path(d)
        os.environ.setdefault("IMPLICIT_STUDIO_CONFIG_DIR", str(tmp / "cfg"))
        os.environ.setdefault("IMPLICIT_STUDIO_LOG_DIR", str(tmp / "log"))
        plan = _plan(tmp / "plan.toml", args.items, args.steps)
        if not args.engines_only:
            out["batch_s"] = _batch(tmp, plan, args.workers)
            print(f"batch ({args.workers} worker(s)): {out['batch_s']:.1f} s for {args.items} items", flush=True)
        if not (args.skip_loop or args.engines_only):
            out["loop_s"] = _loop(tmp, args.items, args.steps)
            out["speedup"] = out["loop_s"] / out["batch_s"]
            print(f"shell loop: {out['loop_s']:.1f} s; batch is {out['speedup']:.2f}x faster (target >= 3x)",
                  flush=True)
        small = _plan(tmp / "small.toml", args.ray_items, args.steps)
        local = _per_item(tmp, small, "local", args.workers)
        print(f"local engine: {local['per_item_s']:.3f} s per item (steady), {local['total_s']:.1f} s in all", flush=True)
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: pip install -e \".[ray]\" to measure the ray engine")
        else:
            ray_r = _per_item(tmp, small, "ray", args.workers)
            out["ray_overhead"] = ray_r["per_item_s"] / local["per_item_s"] - 1
            out["ray"] = ray_r
            print(f"ray engine: {ray_r['per_item_s']:.3f} s per item (steady), {ray_r['total_s']:.1f} s in all; "
                  f"overhead per item {out['ray_overhead'] * 100:+.1f}% (target <= 15%)", flush=True)
        out["local"] = local
        out["record_s"] = _record_cost(tmp)
        print(f"the driver records an item in {out['record_s'] * 1000:.1f} ms "
              f"(ceiling {3600 / out['record_s']:.0f} items/hour)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
