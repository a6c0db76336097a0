"""The artist's walk of issue 28 under a real X server, with screenshots of each stop.

    Xvfb :117 -screen 0 1600x1000x24 & DISPLAY=:117 QT_QPA_PLATFORM=xcb \
        python docs/screenshots/walk.py docs/screenshots

Generates with the bundled model, h-Edits the result with a region painted on the big canvas,
inpaints it with a mask painted there, fits an SDF and opens the 3D viewer, exports the first
image from the window and opens the export again (its parameters restored). The mouse strokes are
real events on the canvas; the export's file dialog is answered with its own suggested name.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="studio-walk-"))
    for key, sub in (("IMPLICIT_STUDIO_CONFIG_DIR", "config"), ("IMPLICIT_STUDIO_LOG_DIR", "logs"),
                     ("IMPLICIT_STUDIO_DATA_DIR", "data"), ("IMPLICIT_STUDIO_CACHE_DIR", "cache")):
        os.environ.setdefault(key, str(tmp / sub))
    os.environ.setdefault("IMPLICIT_STUDIO_THEME", "dark")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    from app.ui import main_window as mw
    from app.ui import run_actions
    from app.ui.launch import ensure_app
    from app.ui.screenshot import pump_until

    app = ensure_app([])
    win = mw.MainWindow(session_dir=tmp / "session")
    win.resize(1600, 960)
    win.show()

    def pump(cond, timeout: float) -> bool:
        return pump_until(app, cond, timeout)

    def shot(name: str, widget=None) -> None:
        pump(lambda: False, 1.0)
        path = out / name
        (widget or win).grab().save(str(path))
        print(f"saved {path} ({(widget or win).width()}x{(widget or win).height()})", flush=True)

    done: list = []
    win.jobFinished.connect(lambda j, status: done.append(status))

    def run(tool: str, values: dict, timeout: float = 900) -> str:
        assert win.select_tool(tool), tool
        bad = win.tool_panel.set_values(values)
        assert not bad, (tool, bad)
        return go(tool, timeout)

    def go(tool: str, timeout: float = 900) -> str:
        n = len(done)
        assert win.run_current() is not None, win.statusBar().currentMessage()
        pump(lambda: len(done) > n, timeout)
        print(f"{tool}: {done[-1] if len(done) > n else 'timed out'} {win.last_error or ''}", flush=True)
        return done[-1] if len(done) > n else "timed out"

    def stroke(points) -> None:
        canvas = win.result_area.canvas.canvas
        win.result_area.show_canvas()
        pump(lambda: canvas.isVisible(), 5)
        pts = [QPoint(int(x * canvas.width()), int(y * canvas.height())) for x, y in points]
        QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
        for p in pts[1:]:
            QTest.mouseMove(canvas, p)
            app.processEvents()
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])
        QTest.mouseMove(canvas, pts[-1])  # the brush cursor shows where it ended

    if not pump(win.is_ready, 120):
        print("the session did not open", file=sys.stderr)
        return 1
    prompt = "a large red circle in the center on a blue background"
    run("text-to-image", {"prompt": prompt, "steps": 25, "seed": 4083813968})
    first = win.session.list_runs(limit=1)[0]
    image_ref = f"result:{first.results[0].id}"
    shot("01-generate.png")

    # h-Edit: the region painted on the big canvas
    assert win.select_tool("h-edit")
    win.tool_panel.set_values({"image": image_ref, "source_prompt": prompt,
                               "target_prompt": "a large green circle in the center on a blue background",
                               "steps": 25, "seed": 11})
    pump(lambda: False, 1.0)
    win.result_area.canvas.canvas.set_brush_size(4)
    stroke([(0.40, 0.40), (0.50, 0.45), (0.60, 0.50), (0.55, 0.60), (0.45, 0.58)])
    shot("02-h-edit-canvas.png")
    go("h-edit")
    if win.result_area.split_btn.isEnabled():
        win.result_area.split_btn.click()
    shot("03-h-edit-result.png")
    if win.result_area.split_btn.isChecked():
        win.result_area.split_btn.click()

    # inpainting: the mask painted on the big canvas
    assert win.select_tool("inpaint")
    win.tool_panel.set_values({"image": image_ref, "prompt": "a large yellow triangle in the center on a blue background",
                               "steps": 25, "seed": 12})
    pump(lambda: False, 1.0)
    win.result_area.canvas.canvas.set_brush_size(7)
    stroke([(0.35, 0.30), (0.50, 0.35), (0.65, 0.40), (0.60, 0.55), (0.45, 0.65), (0.40, 0.50), (0.50, 0.50)])
    shot("04-inpaint-canvas.png")
    go("inpaint")
    shot("05-inpaint-result.png")

    # the 3D viewer of an SDF fit
    run("inr-fit-sdf", {"shape": "torus", "steps": 200, "resolution": 64}, timeout=1200)
    shot("06-viewer-3d.png")

    # export the first image from the window; open the export again
    win.history.wait_idle()
    win.feedback.open_result(first.id, first.results[0].id)
    export_dir = tmp / "exports"
    export_dir.mkdir()
    win.set_settings_value("export/dir", str(export_dir))

    class Answer:
        @staticmethod
        def getSaveFileName(parent, caption, suggested, filters):  # noqa: N802
            print(f"export dialog suggests {Path(suggested).name}", flush=True)
            return suggested, filters

    run_actions._file_dialog = lambda: Answer
    written = win.run_actions.export_result(first.id, first.results[0].id)
    print(f"exported {written}", flush=True)
    assert win.select_tool("text-to-image")
    win.tool_panel.set_values({"prompt": "something else", "steps": 7, "seed": 1})
    assert written and win.open_path(written)
    form = win.form.values()
    print(f"reopened: prompt={form.get('prompt')!r} steps={form.get('steps')} seed={form.get('seed')}", flush=True)
    shot("07-export-reopened.png")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
