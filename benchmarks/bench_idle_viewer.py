"""Idle CPU of the 3D SDF viewer once it has been used (issue 28, item 13).

Each measurement is a fresh process that shows the INR plugin's ``SDFViewer`` (OpenGL, so it needs
an X server: run it under Xvfb with ``QT_QPA_PLATFORM=xcb``) on the bundled torus INR, in the main
window's centre at 1400x880 (``--where alone``: in a 1200x800 window of its own),
waits until the field is baked and the render tab has traced it, turns the camera once as a
person would (a wheel turn over the 3D view), waits for that to settle, and then measures the CPU
time the process uses (all its threads: Qt's, llvmpipe's, torch's) over ``--seconds`` of doing
nothing, with the viewer shown, then again with it hidden (another result shown in the centre).
Result: percent of one core, and the number of sphere-traced renders made while nothing moved.

``--tree PATH`` measures the viewer of another checkout too (e.g. main before this change), in
the same session, runs alternated: the ratio of the two is the figure to read.

    QT_QPA_PLATFORM=xcb python benchmarks/bench_idle_viewer.py [--tree ../main] [--reps 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, os, sys, time
from pathlib import Path
from PySide6.QtCore import QCoreApplication, QPoint, QPointF, Qt
QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
import torch
torch.set_num_threads(1)
app = QApplication(sys.argv)
from plugins.inr.view3d import SDFViewer
if sys.argv[3] == "window":  # in the main window's centre, as an artist meets it
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="idle-bench-"))
    for key in ("IMPLICIT_STUDIO_CONFIG_DIR", "IMPLICIT_STUDIO_DATA_DIR", "IMPLICIT_STUDIO_LOG_DIR"):
        os.environ[key] = str(tmp / key)
    from app.ui.main_window import MainWindow
    win = MainWindow(session_dir=tmp / "session")
    win.resize(1600, 1000)
    win.show()
    end = time.monotonic() + 60
    while not win.is_ready() and time.monotonic() < end:
        app.processEvents(); time.sleep(0.01)
    win.open_path(sys.argv[1])
    v = win.result_area.current_viewer()
    assert isinstance(v, SDFViewer), type(v)
else:
    v = SDFViewer()
    v.resize(1200, 800)
    v.show()

def pump(seconds, until=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        app.processEvents()
        time.sleep(0.005)

pump(2.0)
if sys.argv[3] != "window":
    v.open_inr(str(Path(sys.argv[1])))
pump(120, lambda: v.levels_done and not v.bake_task.busy())
v.wait_idle(120)
v.tabs.setCurrentWidget(v.renderer)
pump(3.0)
v.wait_idle(60)
if v.gl_ok:  # a wheel turn over the 3D view: the camera moved once
    view = v.gl_view
    pos = QPointF(view.rect().center())
    ev = QWheelEvent(pos, QPointF(view.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, -120),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, ev)
pump(3.0)
v.wait_idle(60)
pump(1.0)
secs = float(sys.argv[2])
traces = []
v.renderer.task.done.connect(lambda *a: traces.append(1))
t0, w0 = time.process_time(), time.monotonic()
pump(secs)
shown = 100 * (time.process_time() - t0) / (time.monotonic() - w0)
shown_traces = len(traces)
if sys.argv[3] == "window":  # another result in the centre: the viewer is hidden
    win.result_area.show_result(__import__("app.api", fromlist=["x"]).TableResult(columns=("a",), rows=[(1,)]))
else:
    v.hide()
pump(1.0)
t0, w0 = time.process_time(), time.monotonic()
pump(secs)
hidden = 100 * (time.process_time() - t0) / (time.monotonic() - w0)
print(json.dumps({"gl": v.gl_ok, "shown_pct": round(shown, 2), "hidden_pct": round(hidden, 2),
                  "renders_while_idle": shown_traces}), flush=True)
v.close()
v.wait_idle(10)
'''


def measure(tree: Path, seconds: float, where: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    inr = REPO / "resources" / "samples" / "inr" / "sdf-torus.json"
    out = subprocess.run([sys.executable, "-c", CHILD, str(inr), str(seconds), where], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"the measurement in {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, help="another checkout to measure in the same session (the baseline)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--where", choices=("window", "alone"), default="window",
                    help="the viewer in the main window's centre (default) or alone in a window")
    args = ap.parse_args(argv)
    trees = {"this": REPO}
    if args.tree:
        trees = {"baseline": args.tree.resolve(), "this": REPO}
    rows: dict[str, list[dict]] = {k: [] for k in trees}
    for rep in range(args.reps):
        for name, tree in trees.items():
            r = measure(tree, args.seconds, args.where)
            rows[name].append(r)
            print(f"rep {rep + 1} {name}: {r}", flush=True)
    for name, rs in rows.items():
        shown = statistics.median(r["shown_pct"] for r in rs)
        hidden = statistics.median(r["hidden_pct"] for r in rs)
        print(f"{name}: idle CPU with the viewer shown {shown:.2f}% of a core, hidden {hidden:.2f}% "
              f"(median of {len(rs)}; OpenGL: {rs[0]['gl']})")
    if args.tree:
        b = statistics.median(r["shown_pct"] for r in rows["baseline"])
        t = statistics.median(r["shown_pct"] for r in rows["this"])
        print(f"ratio this/baseline (shown): {t / b:.3f}" if b > 0 else "baseline used no CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
