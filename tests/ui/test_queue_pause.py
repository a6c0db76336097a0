"""Pausing the queue: the running job finishes, waiting jobs do not start until Resume."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt

from .test_main_window import TIMEOUT, choose


def test_pause_holds_waiting_jobs_and_resume_runs_them(qtbot, window):
    finished = []
    window.jobFinished.connect(lambda j, s: finished.append((j, s)))
    form = choose(window, "toy-gradient")
    form.editors["steps"].set_value(20)
    form.editors["delay"].set_value(0.02)
    first = window.run_current()
    form.editors["steps"].set_value(1)
    form.editors["delay"].set_value(0.0)
    # (a bool: waitUntil takes a None answer as success)
    qtbot.waitUntil(lambda: first in window.queue.jobs and window.queue.jobs[first].status == "running", timeout=TIMEOUT)

    pause = window.queue.pause_btn
    assert pause.text() == "Pause"
    qtbot.mouseClick(pause, Qt.MouseButton.LeftButton)
    assert pause.isChecked() and pause.text() == "Resume"
    assert window.controller.paused
    second = window.run_current()  # submitted while paused
    qtbot.waitUntil(lambda: (first, "ok") in finished, timeout=TIMEOUT)  # the running job finishes
    assert window.queue.summary.text().startswith("Paused")
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:  # a 1-step toy job would be done well within this
        qtbot.wait(50)
        assert window.queue.jobs[second].status == "queued"
    assert [j.id for j in window.controller.runner.queued()] == [second]

    qtbot.mouseClick(pause, Qt.MouseButton.LeftButton)
    assert not pause.isChecked() and not window.controller.paused
    qtbot.waitUntil(lambda: (second, "ok") in finished, timeout=TIMEOUT)
    assert not window.queue.summary.text().startswith("Paused")


def test_pause_before_any_job_then_resume(qtbot, window):
    choose(window, "toy-gradient")
    window.set_queue_paused(True)
    assert window.queue.pause_btn.isChecked()  # the toggle follows the window's call
    job = window.run_current()
    qtbot.waitUntil(lambda: job in window.queue.jobs, timeout=TIMEOUT)
    qtbot.wait(400)
    assert window.queue.jobs[job].status == "queued"
    assert window.controller.runner.is_paused(window.controller.runner.job(job).queue)
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        window.set_queue_paused(False)
    assert blocker.args == [job, "ok"]
