"""The main window's secondary docks (History, Queue, Log, live mode, Batch) and its watch on the
session: wiring kept out of ``MainWindow`` (which holds widgets and their layout only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer

from app.ui import window_actions

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def build_secondary_docks(win: "MainWindow") -> None:
    """Fill the History, Queue and Log docks, connect them to the run controller and the run
    actions, and add live mode and the Batch dock (once, after the first paint)."""
    if win.history is not None:
        return
    win._build_run_side()
    from app.ui.history_dock import HistoryDock  # noqa: PLC0415
    from app.ui.log_dock import LogDock  # noqa: PLC0415
    from app.ui.queue_dock import QueueDock  # noqa: PLC0415

    win.log_view = LogDock()
    win.log_view.attach()
    win.history = HistoryDock()
    win.queue = QueueDock()
    for dock, w in ((win.history_dock, win.history), (win.queue_dock, win.queue), (win.log_dock, win.log_view)):
        old = dock.widget()
        dock.setWidget(w)
        if old is not None:
            old.deleteLater()
    if not win._state_restored:
        def default_sizes() -> None:
            win.resizeDocks([win.log_dock], [90], Qt.Orientation.Vertical)
            win.resizeDocks([win.history_dock, win.queue_dock], [440, 300], Qt.Orientation.Vertical)

        QTimer.singleShot(0, default_sizes)
    win.jobs.orderChanged.connect(win.queue.reorder)
    win.queue.cancelRequested.connect(win._cancel_job)
    win.queue.moveRequested.connect(win.controller.move)
    win.queue.removeRequested.connect(win._remove_job)
    win.queue.pauseToggled.connect(win.set_queue_paused)
    win.queue.set_paused(win.controller.paused)
    h, acts = win.history, win.run_actions
    h.sendToRequested.connect(win.send_to)
    h.set_targets_provider(lambda run_id, result_id: acts.targets_for(acts.sources_of(run_id, result_id)))
    h.openRequested.connect(win.feedback.open_result)
    h.useParamsRequested.connect(acts.use_run_params)
    h.reproduceRequested.connect(acts.reproduce)
    h.compareRequested.connect(acts.compare)
    h.exportRequested.connect(acts.export_result)
    h.set_known_tools(list(win.manager.tools))
    window_actions.report_failed_plugins(win)
    from app.ui.live import LiveMode  # noqa: PLC0415 - live mode (its switch under the form)

    win.live = LiveMode(win)
    from app.ui import batch_dock  # noqa: PLC0415

    batch_dock.install(win)  # win.batch, win.batch_dock


def watch_session(win: "MainWindow") -> None:
    """Add runs that another process (the command line) records to History as they appear: the
    session's watcher calls back on its own thread; a short timer on the GUI thread folds bursts."""
    win._changes = QTimer(win)
    win._changes.setSingleShot(True)
    win._changes.setInterval(400)
    win._changes.timeout.connect(lambda: win.history.refresh(keep_limit=True))
    win.sessionChanged.connect(win._changes.start, Qt.ConnectionType.QueuedConnection)

    def committed() -> None:  # on the watcher's thread
        try:
            win.sessionChanged.emit()
        except RuntimeError:  # the window is gone
            pass

    win._watcher = win.session.watch(committed)


def stop_watching_session(win: "MainWindow") -> None:
    """Stop the watcher and the pending refresh (on close: no History refresh may start after)."""
    if getattr(win, "_watcher", None) is not None:
        win._watcher.stop()
        win._watcher = None
    changes = getattr(win, "_changes", None)
    if changes is not None:
        changes.stop()
        try:
            win.sessionChanged.disconnect()
        except (RuntimeError, TypeError):
            pass


def result_caption(win: "MainWindow", result_id: int) -> str:
    """"run #3 text-to-image, image": how a stored result is named in input fields."""
    from app.session_view import result_label  # noqa: PLC0415

    run_id = win.session.run_of_result(result_id)
    if run_id is None:
        return ""
    run = win.session.run(run_id)
    res = next((r for r in run.results if r.id == result_id), None)
    what = (result_label(res) or res.kind) if res is not None else f"result {result_id}"
    return f"run #{run.id} {run.tool_id}, {what}"
