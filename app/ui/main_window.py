"""The main window of Implicit Studio (:func:`app.ui.launch.launch` opens it).

Layout: the Tools dock (tool list grouped by plugin, the selected tool's form, Run) on the left,
the current result in the centre (:mod:`app.ui.result_area`), History and Queue docks on the
right, the Log dock at the bottom. The window only wires widgets together: runs go through the
Qt-free run controller (:mod:`app.controller`), whose events arrive as queued Qt signals
(:mod:`app.ui.job_bridge`); what is shown of them is :mod:`app.ui.run_feedback`, the actions on
recorded runs and files are :mod:`app.ui.run_actions`, menus and dialogs
:mod:`app.ui.window_actions`, the saved layout :mod:`app.ui.window_state`.

Start-up imports only Qt, the plugin records and the session index: no torch, diffusers,
transformers or onnxruntime (a test checks ``sys.modules`` after the window is shown).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Optional

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox

from app.ui import window_actions, window_docks, window_state
from app.ui.tool_panel import plugin_title
from app.ui.result_area import ResultArea
from app.ui.startup import ms_since_start
from app.widgets.icons import icon

if TYPE_CHECKING:
    from app.api import ToolSpec
    from app.controller import RunController
    from app.ui.job_bridge import JobBridge
    from app.jobs import JobRunner
    from app.plugins import PluginManager
    from app.settings import Settings
    from app.ui.viewers import ViewerRegistry

log = logging.getLogger("implicit_studio.ui")

class MainWindow(QMainWindow):
    firstPainted = Signal(float)  # ms since process start
    resultShown = Signal(object)  # the result object
    jobFinished = Signal(object, str)  # job id, status
    reproduceChecked = Signal(object, bool, str)  # run id, matched, message
    errorShown = Signal(str, str)  # message, details
    sessionReady = Signal()  # the session store is open and runs can be recorded
    sessionChanged = Signal()  # another connection (the command line…) committed to the session
    _sessionOpened = Signal()

    def __init__(self, session_dir: str | os.PathLike | None = None, manager: Optional[PluginManager] = None,
                 settings: Optional[Settings] = None, runner: Optional[JobRunner] = None):
        super().__init__()
        t0 = time.perf_counter()
        self._painted = False
        self._ready = False
        self.setWindowTitle("Implicit Studio")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.setDocumentMode(True)
        self.last_error: tuple[str, str] | None = None
        self.error_dialog: QMessageBox | None = None
        self.compare_dialog = self.plugins_dialog = self.preferences_dialog = None  # the last one opened
        self.current_source: tuple[int, int] | None = None  # (run id, result id) of the shown stored result
        self.current_file: str | None = None  # the file the shown result was opened from (not stored)
        self.current_file_kind = ""
        self.current_file_params: dict | None = None  # the parameters an opened PNG carries
        self.crash_notice: QMessageBox | None = None  # "plugin X crashed the last session" offer
        # A job thread running pure Python holds the GIL for up to the switch interval (5 ms by
        # default) each time the GUI thread asks for it; painting one frame asks many times.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        from app.session_view import SessionView  # noqa: PLC0415
        from app.settings import Settings  # noqa: PLC0415
        from app.ui.run_actions import RunActions  # noqa: PLC0415
        from app.ui.run_feedback import RunFeedback  # noqa: PLC0415
        from app.ui.tool_panel import ToolPanel  # noqa: PLC0415

        self.settings = settings if settings is not None else Settings()
        if manager is None:
            from app.plugins import get_manager  # noqa: PLC0415

            manager = get_manager(self.settings)
        self.manager = manager
        self._viewers: Optional[ViewerRegistry] = None
        self.undo_stack = QUndoStack(self)
        # the session opens after the first paint on a worker thread (SQLAlchemy alone takes ~0.5 s to import)
        self.session = SessionView.pending(session_dir)
        self._session_thread: Optional[threading.Thread] = None
        self._watcher = None  # app.session_view.SessionWatcher, once the session is open
        self._runner_given = runner
        # the run controller and its Qt bridge are made right after the first paint (_build_run_side)
        self.controller: Optional[RunController] = None
        self.jobs: Optional[JobBridge] = None

        self.result_area = ResultArea(lambda: self.viewers)
        self.setCentralWidget(self.result_area)
        # The Tools dock is complete at the first paint; History, Queue and Log get their contents
        # right after it (_build_secondary_docks), in the same dock frames, so the saved layout
        # applies to all four from the start.
        self.tool_panel = ToolPanel(self.undo_stack, session_images=self.session.image_choices)
        self.tool_panel.result_file = self.session.result_file
        self.tool_panel.result_caption = self._result_caption
        self.tool_panel.vocabulary_of = self._vocabulary_of
        self._vocabularies: dict[str, object] = {}
        self.history = self.queue = self.log_view = None
        self.live = None  # app.ui.live.LiveMode, made after the first paint
        window_state.build_docks(self)  # tools_dock, history_dock, queue_dock, log_dock

        self.feedback = RunFeedback(self)
        self.run_actions = RunActions(self)
        self.tool_panel.toolSelected.connect(self._on_tool_selected)
        self.tool_panel.toolCleared.connect(self._update_run_enabled)
        self.tool_panel.runRequested.connect(self.run_current)
        self.tool_panel.canvasChanged.connect(self.result_area.set_canvas)
        self.result_area.send_menu.aboutToShow.connect(self._fill_send_menu)
        window_actions.build_actions(self)
        self.status_label = QLabel("")
        self.status_label.setObjectName("muted")
        self.statusBar().addPermanentWidget(self.status_label)

        self.refresh_tools()
        self._state_restored, self._initial_tool = window_state.restore_state(self)
        self._sessionOpened.connect(self._on_session_opened, Qt.ConnectionType.QueuedConnection)
        self.firstPainted.connect(lambda _ms: QTimer.singleShot(0, self._after_first_paint))
        log.info("window built in %.0f ms", (time.perf_counter() - t0) * 1000)

    # --- after the first paint: the other docks, then the session (off the GUI thread) -------
    @property
    def viewers(self) -> ViewerRegistry:
        """The result viewer registry (built on first use; plugin viewers included)."""
        if self._viewers is None:
            from app.ui.viewers import ViewerRegistry  # noqa: PLC0415

            self._viewers = ViewerRegistry()
            for spec in self.manager.viewers:
                self._viewers.add_spec(spec)
        return self._viewers

    def _build_run_side(self) -> None:
        from app.controller import RunController  # noqa: PLC0415
        from app.ui.job_bridge import JobBridge  # noqa: PLC0415

        self.controller = RunController(self.manager, self.session, settings=self.settings, worker_niceness=5)
        self.jobs = JobBridge(self.controller, parent=self)
        self.feedback.connect(self.jobs)

    def _build_secondary_docks(self) -> None:
        window_docks.build_secondary_docks(self)

    def _result_caption(self, result_id: int) -> str:
        """"run #3 text-to-image, image": how a stored result is named in input fields."""
        return window_docks.result_caption(self, result_id)

    def _after_first_paint(self) -> None:
        """Work kept off the path to the first paint: the History, Queue and Log docks' contents,
        icons drawn from SVG, the form of the remembered tool, and opening the session (on a
        worker thread)."""
        self._build_secondary_docks()
        self.setWindowIcon(icon("app"))
        self.tool_panel.run_btn.setIcon(icon("play"))
        if self.tool_panel.current_tool is None and self._initial_tool:
            self.tool_panel.select_tool(self._initial_tool)
        if self._session_thread is None:
            self._session_thread = threading.Thread(target=self._open_session, name="open-session", daemon=True)
            self._session_thread.start()

    def _open_session(self) -> None:
        self.session.open_store()
        try:
            self._sessionOpened.emit()
        except RuntimeError:  # window already deleted
            pass

    def _on_session_opened(self) -> None:
        self.controller.attach(self._runner_given)
        self.history.set_source(self.session)
        window_docks.watch_session(self)  # runs the command line records appear without a refresh
        self._ready = True
        self.update_status_right()
        self._update_run_enabled()
        if self.session.error:
            self.statusBar().showMessage(f"The session could not be opened; runs will not be recorded ({self.session.error})", 20000)
            self.log_view.message(f"session {self.session.folder}: {self.session.error}", logging.ERROR)
        window_actions.offer_to_disable_crashed_plugin(self)
        self.sessionReady.emit()

    def _vocabulary_of(self, model_ref: object):  # noqa: ANN202 - a Vocabulary or None
        """The vocabulary a model declares (its folder's card or closed tokenizer), read once."""
        key = str(model_ref)
        if key not in self._vocabularies:
            from app.widgets.vocabulary import read_vocabulary  # noqa: PLC0415

            self._vocabularies[key] = read_vocabulary(self.manager.resolve_model, key)
        return self._vocabularies[key]

    def is_ready(self) -> bool:
        """True once the session is open (or failed to open) and runs can be submitted."""
        return self._ready

    def _update_run_enabled(self) -> None:
        ok = self._ready and self.tool_panel.current_tool is not None
        self.tool_panel.run_btn.setEnabled(ok)
        self.act_run.setEnabled(ok)
        if not self._ready:
            self.tool_panel.run_btn.setToolTip("Opening the session…")

    def update_status_right(self) -> None:
        dev = self.controller.device_label() if self._ready else ""
        self.status_label.setText("  ·  ".join(x for x in (self.session.label(), dev) if x))

    def event(self, ev: QEvent) -> bool:
        handled = super().event(ev)
        if not self._painted and ev.type() == QEvent.Type.Paint:
            self._painted = True
            self.firstPainted.emit(ms_since_start())
        return handled

    # --- tools and runs -----------------------------------------------------------------------
    def refresh_tools(self) -> None:
        self.tool_panel.set_tools(list(self.manager.tools.values()), {n: plugin_title(n) for n in self.manager.records})
        if self.history is not None:
            self.history.set_known_tools(list(self.manager.tools))

    def _on_tool_selected(self, tool: ToolSpec) -> None:
        last = self.settings.last_params(tool.id)
        if last:
            self.tool_panel.set_values(last, record_undo=False)
        self.undo_stack.clear()
        self.act_run.setText(self.tool_panel._run_label(tool))
        self._update_run_enabled()
        self.statusBar().showMessage(f"{tool.title} selected", 4000)

    def select_tool(self, tool_id: str) -> bool:
        return self.tool_panel.select_tool(tool_id)

    @property
    def form(self):  # noqa: ANN201 - a ParamForm or the adapter of a custom panel
        return self.tool_panel.form

    def run_current(self) -> Optional[int]:
        """Validate the form and queue a run; returns the job id, or None when refused."""
        from app.api import ParamError  # noqa: PLC0415

        tool, form = self.tool_panel.current_tool, self.tool_panel.form
        if tool is None:
            self.show_error("Choose a tool first.", "")
            return None
        if not self._ready:
            self.statusBar().showMessage("The session is still opening; try again in a moment.", 4000)
            return None
        form.clear_errors()
        values = form.values()
        try:
            from app.inputs import check_image_inputs  # noqa: PLC0415

            check_image_inputs(tool, values, self.session.result_size)  # before any work, as the CLI does
            request = self.controller.request(tool, values, parents=self.tool_panel.sent_parents(values))
        except ParamError as exc:
            self.statusBar().showMessage(f"Cannot run {tool.title}: {exc.message}", 10000)
            log.warning("run refused: %s", exc.message)
            if not form.show_error(exc.param, exc.message):
                self.show_error(f"Cannot run {tool.title}", exc.message)
            return None
        except Exception as exc:  # the session could not keep an input given in memory
            self.show_error(f"Could not start {tool.title}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        window_state.remember_params(self, tool.id, values)
        try:
            return self.controller.submit(request)
        except Exception as exc:
            self.show_error(f"Could not start {tool.title}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None

    def cancel_running(self) -> None:
        j = self.queue.running_job()
        if j is None:
            waiting = [k for k, s in self.queue.jobs.items() if s.status == "queued"]
            if not waiting:
                self.statusBar().showMessage("Nothing to cancel", 3000)
                return
            j = waiting[0]
        self._cancel_job(j)
        self.statusBar().showMessage("Cancelling…", 3000)

    def _cancel_job(self, job_id: int) -> None:
        if self.controller.cancel(job_id) and job_id in self.queue.jobs and self.queue.jobs[job_id].status == "running":
            self.queue.set_status(job_id, "cancelling")

    def _remove_job(self, job_id: int) -> None:
        if self.controller.remove(job_id):
            self.queue.remove_job(job_id)

    def set_queue_paused(self, paused: bool) -> None:
        """Hold the queue (the running job finishes, waiting jobs wait) or resume it."""
        if self.controller is None:
            return
        self.controller.set_paused(paused)
        if self.queue is not None and self.queue.paused != bool(paused):
            self.queue.set_paused(paused)
        self.statusBar().showMessage("Queue paused: waiting jobs will not start" if paused else "Queue resumed", 6000)

    def _fill_send_menu(self) -> None:
        from app.ui.send_to import fill_menu  # noqa: PLC0415

        acts = self.run_actions
        fill_menu(self.result_area.send_menu, acts.targets_for(acts.shown_sources()), acts.send_target)

    def settings_value(self, key: str, default: str = "") -> str:
        """A value the window keeps between starts (the export folder)."""
        return str(window_state.window_settings().value(key, default) or default)

    def set_settings_value(self, key: str, value: str) -> None:
        s = window_state.window_settings()
        s.setValue(key, value)
        s.sync()

    # --- what the history, the menus and drops ask for (app.ui.run_actions) -----------------
    def send_to(self, run_id: Optional[int], result_id: Optional[int], tool_id: str) -> bool:
        return self.run_actions.send_to(run_id, result_id, tool_id)

    def open_path(self, path: str | os.PathLike) -> bool:
        return self.run_actions.open_path(path)

    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dragMoveEvent(self, ev) -> None:  # noqa: N802
        self.dragEnterEvent(ev)

    def dropEvent(self, ev) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        for p in paths:
            self.open_path(p)

    def show_plugins(self):  # noqa: ANN201
        self.plugins_dialog = window_actions.show_plugins(self)
        return self.plugins_dialog

    def show_preferences(self):  # noqa: ANN201
        self.preferences_dialog = window_actions.show_preferences(self)
        return self.preferences_dialog

    def reset_layout(self) -> None:
        window_state.reset_layout(self)

    # --- errors and closing -----------------------------------------------------------------------
    def show_error(self, message: str, details: str = "", tb: str = "") -> None:
        """Status bar + a non-blocking dialog with details; the window keeps working."""
        self.last_error = (message, details or tb)
        self.statusBar().showMessage(message, 15000)
        log.error("%s%s", message, ("\n" + (tb or details)) if (tb or details) else "")
        if self.error_dialog is not None:
            self.error_dialog.close()
        self.error_dialog = window_actions.error_box(self, message, tb or details)
        self.error_dialog.destroyed.connect(lambda *_: setattr(self, "error_dialog", None))
        self.errorShown.emit(message, details or tb)

    def closeEvent(self, ev) -> None:  # noqa: N802
        window_state.save_state(self)
        if getattr(self, "batch", None) is not None:
            self.batch.shutdown()  # batches driven here stop sending items; they can be resumed
        window_docks.stop_watching_session(self)
        if self.controller is not None:
            self.jobs.detach()
            self.controller.shutdown()
        if self.log_view is not None:
            self.log_view.detach()
        if self.history is not None:
            # no read of the session may still run when the dock is deleted: the thread pool's
            # destructor waits for it while holding the interpreter lock the read needs
            self.history.source = None
            self.history.loader.wait(2000)
            self.history._pool.waitForDone(5000)
        if self._session_thread is not None:
            self._session_thread.join(30)
        self.session.close()
        super().closeEvent(ev)
