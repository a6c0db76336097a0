"""One-step student vs its teacher: seconds per picture, same backend, same process.

Times, interleaved round by round after a warm-up, one 64x64 picture of the same prompt and seed:

- ``teacher``: the teacher (the bundled model's folder) at ``--steps`` DDIM steps (25), guidance 5,
  through ``plugins.text_to_image.compute.generate`` (trajectory not recorded);
- ``student``: the student at 1 step, no guidance, through the same ``generate``;
- ``live``: the student through ``plugins.diffusion_common.onestep.OneStepGenerator`` (what a live
  redraw calls: the prompt's embedding remembered, one UNet call, one decode);

on the torch backend and on ONNX Runtime (CPU provider; exported once, cached by hash). Each timed call
follows an untimed call of the same case: the studio keeps one model's ONNX Runtime sessions in memory,
so the first call after another model's reloads them (about a second here), which a person drawing with
one model does not see. The figure asked by issue 29 is ``teacher / student`` on each backend (>= 15).

    python benchmarks/bench_onestep.py [--student default-1step|DIR] [--teacher default|DIR]
        [--steps 25] [--rounds 9] [--threads 2] [--no-onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="default-1step")
    parser.add_argument("--teacher", default="default")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", default="a small red star in the top left on a blue background")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from app.paths import resources_dir
    from plugins.diffusion_common.bundled import bundled_model
    from plugins.diffusion_common.onestep import OneStepGenerator
    from plugins.text_to_image.compute import GenerationParams, generate

    # the teacher by its folder: "default" with few steps would be routed to the student
    def folder(ref: str) -> str:
        return str(bundled_model(ref, resources_dir()) or ref)

    teacher = folder(args.teacher)
    student = folder(args.student)
    backends = ["torch"] + ([] if args.no_onnx else ["onnx"])
    t_params = GenerationParams(prompt=args.prompt, seed=7, steps=args.steps, guidance=args.guidance, scheduler="ddim")
    s_params = GenerationParams(prompt=args.prompt, seed=7, steps=1, guidance=1.0)
    cases = {}
    for be in backends:
        kw = dict(backend=be, record_trajectory=False, ort_threads=args.threads)
        cases[f"teacher-{be}"] = lambda kw=kw: generate(t_params, teacher, **kw)
        cases[f"student-{be}"] = lambda kw=kw: generate(s_params, student, **kw)
        live = OneStepGenerator(student, backend=be, threads=args.threads)
        cases[f"live-{be}"] = lambda live=live: live(args.prompt, 7)
    for fn in cases.values():  # warm-up: loading, ONNX export, first-call allocation
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            fn()  # untimed: the studio keeps one model's ONNX Runtime sessions at a time, so after another
            t0, c0 = time.perf_counter(), time.process_time()  # case's call the first one reloads them
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"teacher": teacher, "student": student, "steps": args.steps, "guidance": args.guidance,
           "threads": args.threads, "rounds": args.rounds, "median_s": med, "median_cpu_s": med_cpu,
           "load_average": os.getloadavg()[0],
           "cpu": _cpu_name(), "torch": torch.__version__}
    print(f"one 64x64 picture, median of {args.rounds} interleaved rounds, {args.threads} threads ({out['cpu']}, "
          f"load average {out['load_average']:.1f}); wall seconds, and this process's CPU seconds in brackets")
    print("| backend | teacher, %d DDIM steps, guidance %g | student, 1 step | live call | teacher / student |"
          % (args.steps, args.guidance))
    print("|---|---:|---:|---:|---:|")
    for be in backends:
        ratio = med[f"teacher-{be}"] / med[f"student-{be}"]
        ratio_cpu = med_cpu[f"teacher-{be}"] / med_cpu[f"student-{be}"]
        out[f"ratio_{be}"], out[f"ratio_cpu_{be}"] = ratio, ratio_cpu
        cell = lambda k: f"{med[k]:.4f} s ({med_cpu[k]:.4f} s)"  # noqa: E731
        print(f"| {be} | {cell(f'teacher-{be}')} | {cell(f'student-{be}')} | {cell(f'live-{be}')} "
              f"| {ratio:.1f}x ({ratio_cpu:.1f}x) |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
