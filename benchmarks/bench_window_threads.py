"""Threads for runs from the window (issue 28, item 14): intra-op threads and OpenMP's wait policy.

Generation slowed 10-40x when another process loaded the CPU (2 threads on 2 cores): OpenMP's
threads spin at every barrier while the other process holds the core they wait for. This measures,
in fresh processes that each load the bundled model and make one 64x64 image of ``--steps`` DDIM
steps the way the window does (on a worker thread niced +5, as the job runner's are), four
configurations, interleaved round by round:

- ``default``: as torch starts (intra-op threads = cores, libgomp's default wait policy);
- ``cores-1``: ``OMP_NUM_THREADS = cores - 1``;
- ``passive``: ``OMP_WAIT_POLICY = PASSIVE`` (waiting threads sleep instead of spinning);
- ``cores-1+passive``: both;

each while the machine is otherwise as it is ("idle", which on a shared machine it is not: the load
average is printed beside the figures) and while ``--load`` busy processes (one per core by
default) run at normal priority. Each configuration's median is given as a ratio to ``default`` in
the same condition and the same run.

    python benchmarks/bench_window_threads.py [--steps 25] [--rounds 3] [--images 3] [--load N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, os, statistics, sys, threading, time
sys.path.insert(0, sys.argv[1])
import torch
from app.plugins import get_manager
from plugins.text_to_image.compute import GenerationParams, generate
steps, images = int(sys.argv[2]), int(sys.argv[3])
model = str(get_manager().resolve_model("default"))
params = GenerationParams(prompt="a small red star in the top left on a blue background", seed=1, steps=steps,
                          guidance=5.0)
out = {}

def work():
    # as the job runner's worker threads: 5 nicer than the process (Linux, per thread)
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 5))
    generate(params, model, record_trajectory=False)  # warm-up: the model loaded, the first pass made
    times = []
    for _ in range(images):
        t0 = time.perf_counter()
        generate(params, model, record_trajectory=False)
        times.append(time.perf_counter() - t0)
    out["times"] = times
    out["threads"] = torch.get_num_threads()

t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps(out), flush=True)
'''

BUSY = "import time\nend = time.time() + float(__import__('sys').argv[1])\nx = 0\nwhile time.time() < end:\n    x += 1\n"

CONFIGS = {
    "default": {},
    "cores-1": {"OMP_NUM_THREADS": "{cores_1}"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "cores-1+passive": {"OMP_NUM_THREADS": "{cores_1}", "OMP_WAIT_POLICY": "PASSIVE"},
}


def run_config(name: str, steps: int, images: int) -> dict:
    cores = os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["HF_HUB_OFFLINE"] = "1"
    for k, v in CONFIGS[name].items():
        env[k] = v.format(cores_1=max(1, cores - 1))
    p = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(steps), str(images)], env=env,
                       capture_output=True, text=True, timeout=3600)
    line = next((x for x in p.stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"{name} failed:\n{p.stderr[-3000:]}")
    return json.loads(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=3, help="timed images per process (after one warm-up)")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes for the loaded condition")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    results: dict[str, dict[str, list[float]]] = {"idle": {k: [] for k in CONFIGS},
                                                   "load": {k: [] for k in CONFIGS}}
    loadavg: dict[str, list[float]] = {"idle": [], "load": []}
    for rnd in range(args.rounds):
        for cond in ("idle", "load"):
            busy = []
            if cond == "load":
                busy = [subprocess.Popen([sys.executable, "-c", BUSY, "3600"]) for _ in range(args.load)]
                time.sleep(1.0)
            try:
                order = list(CONFIGS) if rnd % 2 == 0 else list(reversed(CONFIGS))
                for name in order:
                    loadavg[cond].append(os.getloadavg()[0])
                    r = run_config(name, args.steps, args.images)
                    results[cond][name] += r["times"]
                    print(f"round {rnd + 1} {cond:4s} {name:16s} threads {r['threads']}: "
                          + ", ".join(f"{t:.2f}" for t in r["times"]) + " s", flush=True)
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
    fig = {"cores": cores, "steps": args.steps, "rounds": args.rounds, "images_per_process": args.images,
           "busy_processes": args.load, "conditions": {}}
    print(f"\n{cores} cores, {args.steps} steps at 64x64, worker thread niced +5; median seconds per image and ratio to "
          "'default' in the same condition")
    print("| condition | load average (1 min) | config | median s | ratio |\n|---|---|---|---|---|")
    for cond in ("idle", "load"):
        base = statistics.median(results[cond]["default"])
        la = f"{min(loadavg[cond]):.1f}-{max(loadavg[cond]):.1f}"
        fig["conditions"][cond] = {"load_average": la, "median_s": {}, "ratio": {}}
        for name in CONFIGS:
            med = statistics.median(results[cond][name])
            fig["conditions"][cond]["median_s"][name] = round(med, 3)
            fig["conditions"][cond]["ratio"][name] = round(med / base, 3)
            print(f"| {cond} | {la} | {name} | {med:.2f} | {med / base:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
