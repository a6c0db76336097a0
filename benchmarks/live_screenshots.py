"""Screenshots of live mode (docs/live-typing.png, docs/live-mask.png) from the real window.

1. text-to-image with Live on: a prompt typed key by key into the prompt box (QTest), the window
   grabbed once the picture of the whole prompt is on screen;
2. inpainting with Live on: the picture of step 1 opened, a new prompt, a brush stroke painted with
   mouse events and grabbed while the button is still down (the region redrawn as it is painted).

    QT_QPA_PLATFORM=xcb DISPLAY=:N python benchmarks/live_screenshots.py [--out docs] [--size 1440x900]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_live import isolated_studio  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--size", default="1440x900")
    ap.add_argument("--theme", default="dark")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    tmp = isolated_studio("live-shots-")
    os.environ["IMPLICIT_STUDIO_THEME"] = args.theme
    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest

    from app.plugins import PluginManager
    from app.settings import Settings
    from app.ui import main_window as mw
    from app.ui.launch import ensure_app

    app = ensure_app([])
    settings = Settings()
    settings.set("device", "cpu")
    win = mw.MainWindow(session_dir=tmp / "session", manager=PluginManager(settings).load(), settings=settings)
    w, h = (int(x) for x in args.size.split("x"))
    win.resize(w, h)
    win.show()

    def pump(cond, timeout=120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            app.processEvents()
            if cond():
                return True
            time.sleep(0.01)
        return False

    def settle(ms=300):
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    assert pump(win.is_ready, 60), "the session did not open"
    settle()

    # 1. typing a prompt
    assert win.select_tool("text-to-image")
    settle()
    prompt = "a red circle in the center on a white background"
    win.tool_panel.set_values({"prompt": "", "model": "default", "seed": 7, "steps": 25}, record_undo=False)
    win.live.bar.toggle.setChecked(True)
    assert pump(lambda: win.live.shown is not None, 180), win.live.bar.status.text()
    box = win.form.editors["prompt"].focus_widget()
    box.setFocus()
    for ch in prompt:
        QTest.keyClick(box, ch)
        settle(60)
    assert pump(lambda: win.live.shown.payload["prompt"] == prompt)
    settle(500)
    picture = np.asarray(win.live.shown.image)[..., :3]
    win.grab().save(str(out / "live-typing.png"))
    win.live.bar.toggle.setChecked(False)
    src = tmp / "picture.png"
    Image.fromarray(picture).save(src)

    # 2. painting a mask
    assert win.select_tool("inpaint")
    settle()
    panel = win.form.widget
    assert panel.open_image(str(src))
    win.tool_panel.set_values({"prompt": "a big blue square", "model": "default", "steps": 25, "seed": 3},
                              record_undo=False)
    settle()
    win.live.bar.toggle.setChecked(True)
    assert pump(lambda: win.live.shown is not None, 180), win.live.bar.status.text()
    canvas = panel.editor.canvas
    canvas.brush_size = 11
    at = lambda x, y: canvas.to_widget(QPointF(x, y)).toPoint()  # noqa: E731
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(14, 40))
    for x, y in zip(range(14, 52, 2), [40 - int(6 * np.sin(i / 3)) for i in range(19)]):
        QTest.mouseMove(canvas, at(x, y))
        settle(40)
    first = win.live.shown.seq
    assert pump(lambda: win.live.shown.seq > first and win.live.scheduler.idle())
    settle(400)
    win.grab().save(str(out / "live-mask.png"))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(50, 40))
    win.live.bar.toggle.setChecked(False)
    settle()
    win.close()
    print("wrote", out / "live-typing.png", "and", out / "live-mask.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
