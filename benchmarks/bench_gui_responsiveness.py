"""GUI responsiveness benchmark: the longest gap between event-loop ticks while a CPU-heavy job runs.

The real main window is opened (offscreen by default) on a temporary session with the installed
plugins plus one benchmark tool: a torch matmul loop (``--work torch``, the default) or a
pure-Python loop that holds the GIL (``--work python``), reporting progress every step and a
256x256 preview every few steps, submitted through the window like a click on Run. A 10 ms
QTimer probe records when each tick arrives; the figure is the longest interval between ticks
while the job runs (the same probe is also run idle, as a reference).

Floor (issue 2): the longest gap stays under 50 ms.

    python benchmarks/bench_gui_responsiveness.py [--seconds 6] [--work torch|python]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.api import FloatParam, ChoiceParam, ImageResult, ToolSpec, hookimpl  # noqa: E402


@hookimpl
def studio_tools():
    return [ToolSpec(id="bench-heavy", title="Benchmark: heavy CPU job", run="__main__:heavy", backends=("torch",),
                     params=(FloatParam(name="seconds", default=6.0, min=0.5, max=120.0),
                             ChoiceParam(name="work", choices=("torch", "python"), default="torch")))]


def heavy(ctx, seconds, work):
    import numpy as np

    end = time.monotonic() + seconds
    step = 0
    total = 10_000
    if work == "torch":
        import torch

        a = torch.randn(384, 384)
        b = torch.randn(384, 384)
    while time.monotonic() < end:
        if work == "torch":
            for _ in range(4):
                a = torch.tanh(a @ b)
        else:
            acc = 0
            for i in range(60_000):
                acc += i * i
        step += 1
        ctx.progress(min(step, total - 1), total, "working")
        if step % 3 == 0:
            img = (np.random.default_rng(step).random((256, 256, 3)) * 255).astype("uint8")
            ctx.preview(img)
    return ImageResult(image=np.zeros((64, 64, 3), np.uint8))


def probe(app, seconds: float, until=None, clock=None) -> list[float]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    ticks: list[float] = []
    if clock is None:
        clock = QElapsedTimer()
        clock.start()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
    timer.start()
    loop = QEventLoop()
    stop = QTimer()
    stop.setSingleShot(True)
    stop.timeout.connect(loop.quit)
    stop.start(int(seconds * 1000))
    if until is not None:
        until.connect(lambda *_: loop.quit())
    loop.exec()
    timer.stop()
    return ticks


def gaps(ticks: list[float]) -> list[float]:
    return [b - a for a, b in zip(ticks, ticks[1:])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--work", choices=("torch", "python"), default="torch")
    ap.add_argument("--verbose", action="store_true", help="say which job events surround the longest gap")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    for key, sub in (("IMPLICIT_STUDIO_CONFIG_DIR", "config"), ("IMPLICIT_STUDIO_DATA_DIR", "data"),
                     ("IMPLICIT_STUDIO_LOG_DIR", "logs")):
        os.environ[key] = str(tmp / sub)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        if args.work == "torch":
            print("torch is not installed; use --work python")
            return 2

    from app.plugins import PluginManager
    from app.settings import Settings
    from app.ui import main_window as mw
    from app.ui.launch import ensure_app

    app = ensure_app([])
    settings = Settings()
    manager = PluginManager(settings).load()
    manager.register_plugin(sys.modules[__name__], "bench", version="1.0")
    win = mw.MainWindow(session_dir=tmp / "session", manager=manager, settings=settings)
    win.show()
    t0 = time.monotonic()
    while not win.is_ready() and time.monotonic() - t0 < 60:
        app.processEvents()
        time.sleep(0.01)
    idle = gaps(probe(app, 1.5))

    win.select_tool("bench-heavy")
    win.tool_panel.set_values({"seconds": args.seconds, "work": args.work})
    previews, steps = [], []
    win.jobs.preview.connect(lambda *_: previews.append(1))
    win.jobs.progress.connect(lambda j, step, total, msg: steps.append(step))
    job = win.run_current()
    if job is None:
        print("the benchmark tool could not be submitted:", win.statusBar().currentMessage())
        return 2
    from PySide6.QtCore import QElapsedTimer
    events: list[tuple[float, str]] = []
    clock = QElapsedTimer()
    clock.start()
    for sig, name in ((win.jobs.started, "started"), (win.jobs.progress, "progress"), (win.jobs.preview, "preview"),
                      (win.jobs.finished, "finished")):
        sig.connect(lambda *a, n=name: events.append((clock.nsecsElapsed() / 1e6, n)))
    busy_ticks = probe(app, args.seconds + 30, until=win.jobFinished, clock=clock)
    busy = gaps(busy_ticks)
    status = win.queue.jobs[job].status if job in win.queue.jobs else "?"
    win.close()

    if len(steps) < 5 or not busy:
        print(f"the benchmark job did not run ({status}): {win.last_error}")
        return 2
    if status != "ok":  # the compute ran; recording its result failed (reported, not hidden)
        print(f"note: the job ended as {status}: {win.last_error[0] if win.last_error else ''}")
    worst, worst_idle = max(busy), max(idle)
    if args.verbose:
        i = busy.index(worst)
        t_a, t_b = busy_ticks[i], busy_ticks[i + 1]
        near = [f"{t - t_a:+.0f}ms {n}" for t, n in events if t_a - 30 <= t <= t_b + 30]
        print(f"longest gap from {t_a:.0f} to {t_b:.0f} ms after submit; events around it: {near}")
    print(f"work: {args.work} for {args.seconds:.1f}s on {os.cpu_count()} CPUs; job status: {status}; progress updates shown: {len(steps)} (last step {steps[-1]}); previews shown: {len(previews)}")
    print(f"idle  : {len(idle)} ticks, median gap {statistics.median(idle):.1f} ms, longest {worst_idle:.1f} ms")
    print(f"busy  : {len(busy)} ticks, median gap {statistics.median(busy):.1f} ms, "
          f"p99 {sorted(busy)[int(len(busy) * 0.99) - 1]:.1f} ms, longest {worst:.1f} ms")
    ok = worst < 50.0
    print(f"longest gap while the job runs: {worst:.1f} ms   floor < 50 ms: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
