"""What a tool run through ``ctx.run_tool`` costs against the same tool run on its own (issue 26).

A toy tool that makes a 64x64 image is run N times as top-level runs through the run controller
(the CLI's path: request, validation, recording, a PNG per result), then N times from one
composing run through ``ctx.run_tool`` (the same path, in the caller's thread, recorded as child
runs), in the same process and session, alternating rounds. The figure is the ratio of the
per-run times: nested / top-level (1.0 means no extra cost for composing).

    python benchmarks/bench_nested_runs.py [--runs 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import api  # noqa: E402


@api.hookimpl
def studio_tools():
    return [
        api.ToolSpec(id="bench-leaf", title="Leaf", run=f"{__name__}:leaf",
                     params=(api.IntParam(name="level", default=1, min=0, max=255), api.SeedParam(name="seed"))),
        api.ToolSpec(id="bench-compose", title="Compose", run=f"{__name__}:compose", seeded=False,
                     params=(api.IntParam(name="n", default=10, min=1, max=10_000),)),
    ]


def leaf(ctx, level, seed):
    ctx.progress(0, 1)
    rng = np.random.default_rng(seed)
    return api.ImageResult(image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def compose(ctx, n):
    for i in range(n):
        ctx.progress(i, n)
        ctx.run_tool("bench-leaf", level=i % 256, seed=i)  # the children keep their pictures
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from app.controller import RunController
    from app.plugins import PluginManager
    from app.session_view import SessionView

    tmp = Path(tempfile.mkdtemp(prefix="bench-nested-"))
    manager = PluginManager(entry_points=[], env={"IMPLICIT_STUDIO_LOAD_PLUGINS": "bench"}).load()
    manager.register_plugin(sys.modules[__name__], "bench", version="1.0")
    session = SessionView.open(tmp / "session")
    controller = RunController(manager, session)
    controller.attach()
    top, nested = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for i in range(args.runs):
            job = controller.run(controller.request("bench-leaf", {"level": i % 256, "seed": i}, device="cpu"))
            assert job.state.value == "finished", job.error
        top.append((time.perf_counter() - t0) / args.runs)
        t0 = time.perf_counter()
        job = controller.run(controller.request("bench-compose", {"n": args.runs}, device="cpu"))
        assert job.state.value == "finished" and len(job.children) == args.runs, job.error
        nested.append((time.perf_counter() - t0) / args.runs)
    controller.shutdown()
    session.close()
    t, n = statistics.median(top), statistics.median(nested)
    print(f"runs per round: {args.runs}, rounds: {args.rounds}")
    print(f"top-level run through the controller: {t * 1000:.2f} ms per run (rounds: "
          f"{', '.join(f'{x * 1000:.2f}' for x in top)})")
    print(f"nested run through ctx.run_tool:     {n * 1000:.2f} ms per run (rounds: "
          f"{', '.join(f'{x * 1000:.2f}' for x in nested)})")
    print(f"ratio nested / top-level: {n / t:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
