"""Issue 28, item 1: the window never widens itself. Every built-in tool runs with a 200-character
prompt in a 1280x800 window; after each run (its results shown, its viewer opened) the window is
as wide as it was, and no widget asks for more width than the screen has."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QToolBar, QWidget

from .builtin_window import LONG_PROMPT, artist_steps, builtin_window, picture, run_tool
from .conftest import needs_storage


class WidthWatch(QObject):
    """Records every width the window is resized to."""

    def __init__(self, win):
        super().__init__()
        self.widths = [win.width()]
        win.installEventFilter(self)

    def eventFilter(self, obj, ev):  # noqa: N802
        if ev.type() == QEvent.Type.Resize:
            self.widths.append(ev.size().width())
        return False


def widest(win, limit: int) -> list[str]:
    """What asks for width (for the message): the main parts' minimum widths, and the chain of
    widest children inside each part wider than a third of ``limit``."""
    parts = {"tools": win.tools_dock, "history": win.history_dock, "queue": win.queue_dock,
             "log": win.log_dock, "centre": win.result_area, "toolbar": win.findChild(QToolBar),
             "status": win.statusBar(), "menu": win.menuBar()}
    out = []
    for name, w in parts.items():
        if w is None or not w.isVisible():
            continue
        need = w.minimumSizeHint().width()
        out.append(f"{name} {need}")
        while need > limit // 3:
            kids = [c for c in w.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)
                    if c.isVisible()]
            if not kids:
                break
            w = max(kids, key=lambda c: max(c.minimumSizeHint().width(), c.minimumWidth()))
            need = max(w.minimumSizeHint().width(), w.minimumWidth())
            out.append(f"  > {type(w).__name__}({w.objectName()}) {need}")
    return out


@needs_storage
@pytest.mark.slow
def test_every_builtin_tool_with_a_long_prompt_keeps_the_window_width(qtbot, studio_env, tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("gymnasium")
    win = builtin_window(qtbot, studio_env, 1280, 800)
    screen = win.screen().availableGeometry().width()
    limit = min(screen, 1280)
    watch = WidthWatch(win)
    outputs: dict = {}
    for step in artist_steps(picture(tmp_path)):
        values = step.values(outputs)
        for p in win.manager.tools[step.tool].params:  # every prompt-like text is 200 characters long
            if "prompt" in p.name and p.name not in values:
                values[p.name] = LONG_PROMPT
        status = run_tool(qtbot, win, step.tool, values)
        assert status == "ok", f"{step.tool}: {win.last_error}"
        step.keep(win, outputs)
        qtbot.wait(50)
        assert win.width() == 1280, f"after {step.tool} the window is {win.width()} px wide: {widest(win, limit)}"
        assert win.minimumSizeHint().width() <= limit, (
            f"after {step.tool} the window asks for {win.minimumSizeHint().width()} px: {widest(win, limit)}")
        # the results the run made, each shown in turn, do not widen it either
        picker = win.result_area.picker
        for i in range(picker.count()):
            picker.setCurrentIndex(i)
            picker.activated.emit(i)
            qtbot.wait(20)
            assert win.minimumSizeHint().width() <= limit, (
                f"{step.tool}, result {i + 1}: the window asks for {win.minimumSizeHint().width()} px: "
                f"{widest(win, limit)}")
    assert max(watch.widths) == 1280, watch.widths
