"""Make the Batch dock screenshot: the window on a fresh session, a plan run from the dock, the
finished sweep's grid shown, the window grabbed.

    python -m app.ui.batch_screenshot docs/batch-dock.png PLAN.toml [--workers 2] [--size 1600x1000]

Works under Xvfb (``QT_QPA_PLATFORM=xcb``) or offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Grab the Batch dock with a finished sweep.")
    ap.add_argument("out")
    ap.add_argument("plan")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)
    from app.ui.screenshot import isolate

    tmp = isolate("studio-batch-shot-")
    os.environ.setdefault("IMPLICIT_STUDIO_THEME", "dark")

    from PySide6.QtCore import Qt

    from app.ui import main_window as mw
    from app.ui.launch import ensure_app

    app = ensure_app([])
    win = mw.MainWindow(session_dir=tmp / "session")
    w, h = (int(x) for x in args.size.lower().split("x"))
    win.resize(w, h)
    win.show()

    def pump(cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)
        return cond()

    if not pump(win.is_ready, 120):
        print("the session did not open in time", file=sys.stderr)
        return 1
    dock = win.batch
    win.queue_dock.hide()  # the Batch dock alone on the right, wide enough for its grid
    win.log_dock.hide()
    win.batch_dock.show()
    win.batch_dock.raise_()
    win.resizeDocks([win.batch_dock], [int(w * 0.42)], Qt.Orientation.Horizontal)
    win.resizeDocks([win.history_dock, win.batch_dock], [int(h * 0.22), int(h * 0.7)], Qt.Orientation.Vertical)
    dock.load_plan_file(args.plan)  # its fixed parameters go into the Tools dock's form
    dock.workers.setValue(args.workers)
    finished: list = []
    dock.batchFinished.connect(lambda bid, status: finished.append(status))
    bid = dock.start()
    if bid is None:
        print(f"the plan was not started: {dock.plan_error}", file=sys.stderr)
        return 1
    pump(lambda: bool(finished), args.timeout)
    print(f"batch {bid}: {finished[-1] if finished else 'timed out'}")
    dock.select_batch(bid)
    dock.refresh_grid()
    if dock.grid.rowCount() and dock.grid.columnCount():
        dock.open_cell(dock.grid.rowCount() - 1, dock.grid.columnCount() - 1)
    dock.check_plan()
    pump(lambda: False, 0.5)
    dock._fit_grid()
    pump(lambda: False, 0.5)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = win.grab().save(str(out))
    print(f"saved {out} ({win.width()}x{win.height()})" if ok else f"could not save {out}")
    win.close()
    return 0 if ok and finished and finished[-1] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
