"""Start-up benchmark: process start to the first paint of the main window.

Runs, interleaved and several times, in fresh processes:

* **studio**: ``python -m app --session TMP --exit-after-paint`` (every installed plugin,
  built-ins included, is registered before the window paints), which prints ``first-paint-ms``;
* **bare**: a PySide6 script that shows an empty ``QMainWindow`` and prints the same measure.
  It is shown at the studio's default window size (1400x880; ``--bare-size`` changes it), so
  both paint and flush the same number of pixels.

Both measure from the kernel's record of the process start (``/proc/self/stat``) to the first
paint event of the main window, so interpreter start-up is included in both. Byte code is cached
in a temporary folder (``PYTHONPYCACHEPREFIX``) after a warm-up run, as for an installed app.

Floors (issue 2): the studio's median at most 2.0x the bare median, and under 1.5 s.

    python benchmarks/bench_startup.py [--reps 7] [--platform offscreen|xcb]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE = r'''
import os, sys, time
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow

def start_epoch():
    with open("/proc/self/stat", "rb") as fh:
        stat = fh.read().decode()
    rest = stat[stat.rindex(")") + 2:].split()
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(rest[19]) / os.sysconf("SC_CLK_TCK")
    return time.time() - age

class Window(QMainWindow):
    painted = False
    def event(self, ev):
        handled = super().event(ev)
        if not self.painted and ev.type() == QEvent.Type.Paint:
            self.painted = True
            print(f"first-paint-ms: {(time.time() - start_epoch()) * 1000:.0f}", flush=True)
            QTimer.singleShot(0, app.quit)
        return handled

app = QApplication(sys.argv)
w = Window()
w.resize(int(os.environ.get("BARE_W", "1400")), int(os.environ.get("BARE_H", "880")))
w.show()
sys.exit(app.exec())
'''


def _run(cmd: list[str], env: dict, timeout: float = 120) -> float:
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    m = re.search(r"^first-paint-ms: (\d+)", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--platform", default=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--bare-size", default="1400x880", help="size of the bare window, WxH")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    bare = tmp / "bare_window.py"
    bare.write_text(BARE)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("IMPLICIT_STUDIO_T0", None)
    env.update(QT_QPA_PLATFORM=args.platform, PYTHONPYCACHEPREFIX=str(tmp / "pycache"), HF_HUB_OFFLINE="1",
               IMPLICIT_STUDIO_CONFIG_DIR=str(tmp / "config"), IMPLICIT_STUDIO_DATA_DIR=str(tmp / "data"),
               IMPLICIT_STUDIO_LOG_DIR=str(tmp / "logs"))
    bw, bh = args.bare_size.lower().split("x")
    env.update(BARE_W=bw, BARE_H=bh)
    studio_cmd = [sys.executable, "-m", "app", "--session", str(tmp / "session"), "--exit-after-paint"]
    bare_cmd = [sys.executable, str(bare)]

    # warm-up: byte code, font caches, the session folder
    _run(bare_cmd, env)
    _run(studio_cmd, env)

    studio, baseline = [], []
    for _ in range(args.reps):
        baseline.append(_run(bare_cmd, env))
        studio.append(_run(studio_cmd, env))
    s_med, b_med = statistics.median(studio), statistics.median(baseline)
    ratio = s_med / b_med
    ok_ratio, ok_abs = ratio <= 2.0, s_med < 1500
    print(f"platform: {args.platform}, repetitions: {args.reps}, cpu count: {os.cpu_count()}, bare window {args.bare_size}")
    print(f"bare PySide6 QMainWindow  first paint ms: median {b_med:.0f}  min {min(baseline):.0f}  all {baseline}")
    print(f"Implicit Studio           first paint ms: median {s_med:.0f}  min {min(studio):.0f}  all {studio}")
    print(f"ratio (median/median): {ratio:.2f}x   floor <= 2.0x: {'PASS' if ok_ratio else 'FAIL'}")
    print(f"absolute: {s_med:.0f} ms   floor < 1500 ms: {'PASS' if ok_abs else 'FAIL'}")
    if args.json:
        print(json.dumps({"bare_ms": baseline, "studio_ms": studio, "ratio": ratio, "studio_median_ms": s_med,
                          "bare_median_ms": b_med, "platform": args.platform}))
    return 0 if (ok_ratio and ok_abs) else 1


if __name__ == "__main__":
    sys.exit(main())
