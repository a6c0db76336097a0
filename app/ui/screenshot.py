"""Make the README screenshot: open the window on a fresh session, optionally run tools, grab it.

    python -m app.ui.screenshot docs/screenshot.png [--size 1440x900] [--theme dark|light]
        [--run TOOL key=value ...] [--run ...]

Each ``--run`` selects the tool, sets the given parameters in its form (exactly as typed) and
clicks Run; the script waits for every run to finish before grabbing the window. Works under
Xvfb (``QT_QPA_PLATFORM=xcb``) or offscreen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def pump_until(app, cond, timeout: float) -> bool:
    """Run ``app``'s events until ``cond()`` is true or ``timeout`` seconds pass; returns ``cond()``."""
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)
    return cond()


def isolate(prefix: str) -> Path:
    """A new temporary folder for a screenshot process's settings and logs (unless the environment
    already names them; the user's own are left alone), with the hub kept offline."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    for key, sub in (("IMPLICIT_STUDIO_CONFIG_DIR", "config"), ("IMPLICIT_STUDIO_LOG_DIR", "logs")):
        os.environ.setdefault(key, str(tmp / sub))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tmp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Grab a screenshot of the Implicit Studio window.")
    ap.add_argument("out")
    ap.add_argument("--size", default="1440x900")
    ap.add_argument("--theme", choices=("dark", "light", "system"), default="dark")
    ap.add_argument("--run", nargs="+", action="append", default=[], metavar="TOOL [key=value ...]")
    ap.add_argument("--select", help="tool to leave selected at the end")
    ap.add_argument("--split", action="store_true", help="show the last result as a before/after split")
    ap.add_argument("--session", help="session folder (default: a new temporary one)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)

    tmp = isolate("studio-shot-")
    if args.theme != "system":
        os.environ["IMPLICIT_STUDIO_THEME"] = args.theme

    from app.ui import main_window as mw
    from app.ui.launch import ensure_app

    app = ensure_app([])
    win = mw.MainWindow(session_dir=args.session or (tmp / "session"))
    w, h = (int(x) for x in args.size.lower().split("x"))
    win.resize(w, h)
    win.show()

    def pump(cond, timeout: float) -> bool:
        return pump_until(app, cond, timeout)

    if not pump(win.is_ready, 120):
        print("the session did not open in time", file=sys.stderr)
        return 1
    done: list = []
    win.jobFinished.connect(lambda j, status: done.append(status))
    submitted = 0
    for spec in args.run:
        tool, pairs = spec[0], spec[1:]
        if not win.select_tool(tool):
            print(f"no tool {tool!r}; tools: {', '.join(sorted(win.manager.tools))}", file=sys.stderr)
            return 1
        values = dict(p.split("=", 1) for p in pairs)
        bad = win.tool_panel.set_values({k: _parse_value(v) for k, v in values.items()})
        if bad:
            print(f"could not set {bad} on {tool}", file=sys.stderr)
        if win.run_current() is None:
            print(f"{tool} was not run: {win.statusBar().currentMessage()}", file=sys.stderr)
            return 1
        submitted += 1
        pump(lambda: len(done) >= submitted, args.timeout)
        print(f"{tool}: {done[-1] if done else 'timed out'}")
    if args.select:
        win.select_tool(args.select)
    if args.split and win.result_area.split_btn.isEnabled():
        win.result_area.split_btn.click()
    if win.history is not None:
        win.history.wait_idle()
        win.history.loader.wait(5000)
    pump(lambda: False, 0.8)  # let thumbnails and the last repaint land
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = win.grab().save(str(out))
    print(f"saved {out} ({win.width()}x{win.height()})" if ok else f"could not save {out}")
    win.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
