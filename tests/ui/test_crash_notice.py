"""The window after a crash (issue 27): a session with a damaged row and odd text still lists
every run, and a run interrupted by a plugin's native crash is named at the next start with an
offer to disable that plugin."""

from __future__ import annotations

import sqlite3

from PySide6.QtWidgets import QMessageBox

from .conftest import needs_storage
from .test_main_window import settle


def _crashed_session(folder):
    """Runs as a crashed process leaves them: one damaged row, odd text, and a run of plugin 'toy'
    left running with its fatal-error log written (what faulthandler writes on abort)."""
    from storage import SessionStore

    with SessionStore.open(folder) as s:
        for prompt in ("first", "odd \ud800 \x1b[2J text", "third"):
            s.record_run(tool_id="toy-gradient", plugin="toy", plugin_version="1",
                         params={"prompt": prompt}, seed=1)
        log = folder / "running" / "fatal-4242.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text("Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n")
        s.owners.fatal_log = str(log)
        s.begin_run(tool_id="toy-gradient", plugin="toy", plugin_version="1", params={}, seed=2)
    conn = sqlite3.connect(folder / "session.db")
    conn.execute("UPDATE runs SET params_json = 'not json' WHERE id = 1")
    conn.commit()
    conn.close()


@needs_storage
def test_window_lists_every_run_and_offers_to_disable_the_crashed_plugin(qtbot, make_window, studio_env):
    _crashed_session(studio_env / "crashed")
    window = make_window(session="crashed")
    qtbot.waitUntil(lambda: window.crash_notice is not None, timeout=10000)
    box = window.crash_notice
    assert "toy-gradient" in box.text() and "'toy'" in box.text() and "Segmentation fault" in box.text()
    settle(qtbot, window.history)
    assert len(window.history.runs) == 4  # the damaged row and the odd text are listed too
    disable = box.button(QMessageBox.StandardButton.Yes)
    disable.click()
    assert window.manager.records["toy"].status == "disabled"
