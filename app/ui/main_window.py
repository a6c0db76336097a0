"""The main window of Implicit Studio and :func:`launch`, which the command line calls.

Layout: the Tools dock (tool list grouped by plugin, the selected tool's form, Run) on the left,
the current result in the centre (viewer chosen by result kind), History and Queue docks on the
right, the Log dock at the bottom. Long work runs in the services' job runner; its callbacks
arrive here as queued Qt signals (:mod:`app.ui.job_bridge`), so the GUI thread never waits.

Start-up imports only Qt, the plugin records and the session index: no torch, diffusers,
transformers or onnxruntime (a test checks ``sys.modules`` after the window is shown).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QEvent, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import adapters as ad
from app.ui.icons import icon, std
from app.ui.image_view import ImageView, SplitView
from app.ui.startup import ms_since_start
from app.ui.theme import apply_theme, follow_system

log = logging.getLogger("implicit_studio.ui")

def _file_dialog():
    """QFileDialog, imported when a dialog is opened (its type costs ~6 ms to create)."""
    from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415

    return QFileDialog


_ACRONYMS = {"rl", "inr", "sdf", "ai", "gan", "vae", "onnx", "3d", "2d"}
ORG_NAME = "ImplicitStudio"
APP_NAME = "implicit-studio"
STATE_VERSION = 1


def window_settings() -> QSettings:
    """Where the window keeps its layout. With ``IMPLICIT_STUDIO_CONFIG_DIR`` set (tests, portable
    installs) an INI file in that folder; otherwise the platform's native settings for
    ``ORG_NAME``/``APP_NAME``."""
    if os.environ.get("IMPLICIT_STUDIO_CONFIG_DIR"):
        from app.settings import config_dir  # noqa: PLC0415

        return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)
    return QSettings(ORG_NAME, APP_NAME)


class ResultArea(QWidget):
    """The central area: a caption bar and a stack of viewers (one per viewer kind, created on
    first use), a live-preview view, and a before/after split for edits."""

    def __init__(self, registry, parent: QWidget | None = None):
        super().__init__(parent)
        self._registry = registry  # the registry or a callable returning it (built lazily)
        self.caption = QLabel("")
        self.caption.setObjectName("title")
        self.sub = QLabel("")
        self.sub.setObjectName("muted")
        # the run details may be cut short in a narrow window rather than widen it (the tooltip keeps them)
        self.sub.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.sub.setMinimumWidth(40)
        self.fit_btn = self._tool("Fit", "Fit the image to the view (F)", lambda: self._view_call("fit"))
        self.one_btn = self._tool("1:1", "Show pixels 1:1 (1)", lambda: self._view_call("actual_size"))
        self.split_btn = self._tool("Before / after", "Compare with the input image", self._toggle_split)
        self.split_btn.setCheckable(True)
        self.split_btn.setEnabled(False)
        for b in (self.split_btn, self.fit_btn, self.one_btn):
            b.setVisible(False)
        from PySide6.QtWidgets import QComboBox  # noqa: PLC0415

        self.picker = QComboBox()  # which result of the run is shown, when it made several
        self.picker.setToolTip("This run made several results; choose the one to show")
        # sized to a short label, not the longest result name, so the header never sets the window's width
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(16)
        self.picker.setVisible(False)
        self.picker.activated.connect(self._picked)
        self._pick_callback = None
        from PySide6.QtWidgets import QMenu  # noqa: PLC0415

        self.send_btn = QToolButton()  # "Send to ▸": the window fills the menu when it opens
        self.send_btn.setText("Send to ▸")
        self.send_btn.setToolTip("Open a tool that takes an image with this result as its input")
        self.send_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.send_btn.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.send_menu = QMenu(self.send_btn)
        self.send_btn.setMenu(self.send_menu)
        self.send_btn.setVisible(False)
        bar = QHBoxLayout()
        bar.setContentsMargins(12, 8, 12, 4)
        bar.setSpacing(6)
        bar.addWidget(self.caption)
        bar.addWidget(self.sub, 1)
        bar.addWidget(self.picker)
        bar.addWidget(self.send_btn)
        bar.addWidget(self.split_btn)
        bar.addWidget(self.fit_btn)
        bar.addWidget(self.one_btn)
        self.stack = QStackedWidget()
        self.welcome = ImageView(placeholder="Choose a tool on the left, set its parameters and press Generate (Ctrl+Enter).\n\nDrop an image or a PNG made by Implicit Studio here to open it.")
        self.welcome.setObjectName("welcome")
        self.preview = ImageView(placeholder="Waiting for the first preview…")
        self.split = SplitView()
        for w in (self.welcome, self.preview, self.split):
            self.stack.addWidget(w)
        self.viewers: dict[str, QWidget] = {}
        self.current_result: Any = None
        self.current_input: Any = None
        self.viewer_error = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)

    def _tool(self, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    def _view_call(self, name: str) -> None:
        w = self.stack.currentWidget()
        fn = getattr(w, name, None)
        if callable(fn):
            fn()

    def viewer_for(self, kind: str) -> QWidget:
        w = self.viewers.get(kind)
        if w is None:
            reg = self._registry() if callable(self._registry) else self._registry
            w, _entry, err = reg.create(kind)
            self.viewer_error = err
            self.viewers[kind] = w
            self.stack.addWidget(w)
        return w

    def show_result(self, result: Any, caption: str = "", sub: str = "", input_image: Any = None) -> QWidget:
        from app.ui.viewers import GenericResultViewer, result_kind  # noqa: PLC0415

        kind = result_kind(result)
        w = self.viewer_for(kind)
        try:
            w.set_result(result)
        except Exception as exc:  # a plugin viewer failed on this result: fall back
            log.exception("viewer for %s failed", kind)
            gw = GenericResultViewer()
            gw.set_result(result, note=f"The viewer failed: {type(exc).__name__}: {exc}")
            self.stack.addWidget(gw)
            w = gw
        self.current_result = result
        self.current_input = input_image
        for b in (self.split_btn, self.fit_btn, self.one_btn):
            b.setVisible(True)
        self.caption.setText(caption)
        self.sub.setText(sub)
        self.sub.setToolTip(sub)
        self.split_btn.setEnabled(input_image is not None and kind in ("image", "mask"))
        if self.split_btn.isChecked() and self.split_btn.isEnabled():
            self._toggle_split(True)
        else:
            self.split_btn.setChecked(False)
            self.stack.setCurrentWidget(w)
        return w

    def set_choices(self, labels: list[str], callback, current: int = 0) -> None:
        """Offer the results of one run; ``callback(index)`` shows the chosen one."""
        self.picker.blockSignals(True)
        self.picker.clear()
        self.picker.addItems(labels)
        self.picker.setCurrentIndex(current)
        self.picker.blockSignals(False)
        self.picker.setVisible(len(labels) > 1)
        self._pick_callback = callback

    def _picked(self, index: int) -> None:
        if self._pick_callback is not None:
            self._pick_callback(index)

    def _toggle_split(self, on: bool | None = None) -> None:
        on = self.split_btn.isChecked() if on is None or not isinstance(on, bool) else on
        if on and self.current_result is not None and self.current_input is not None:
            after = getattr(self.current_result, "image", None)
            if after is None:
                after = getattr(self.current_result, "mask", None)
            self.split.set_images(self.current_input, after)
            self.stack.setCurrentWidget(self.split)
        elif self.current_result is not None:
            from app.ui.viewers import result_kind  # noqa: PLC0415

            self.stack.setCurrentWidget(self.viewer_for(result_kind(self.current_result)))

    def show_preview(self, image: Any, caption: str = "") -> None:
        data = getattr(image, "image", image)
        first = self.stack.currentWidget() is not self.preview
        self.preview.set_image(data, keep_view=not first)
        self.stack.setCurrentWidget(self.preview)
        if caption:
            self.caption.setText(caption)
            self.sub.setText("live preview")

    def current_viewer(self) -> QWidget:
        return self.stack.currentWidget()


class MainWindow(QMainWindow):
    firstPainted = Signal(float)  # ms since process start
    resultShown = Signal(object)  # the result object
    jobFinished = Signal(object, str)  # job id, status
    reproduceChecked = Signal(object, bool, str)  # run id, matched, message
    errorShown = Signal(str, str)  # message, details
    sessionReady = Signal()  # the session store is open and runs can be recorded
    _sessionOpened = Signal()

    def __init__(self, session_dir: str | os.PathLike | None = None, manager: Any = None,
                 settings: Any = None, runner: Any = None):
        super().__init__()
        t0 = time.perf_counter()
        self._painted = False
        self.setWindowTitle("Implicit Studio")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.setDocumentMode(True)
        self.last_error: tuple[str, str] | None = None
        self.error_dialog: QMessageBox | None = None
        self.crash_notice: QMessageBox | None = None  # "plugin X crashed the last session" offer

        # A job thread running pure Python holds the GIL for up to the switch interval (5 ms by
        # default) each time the GUI thread asks for it; painting one frame asks many times.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        from app.settings import Settings  # noqa: PLC0415

        self.settings = settings if settings is not None else Settings()
        if manager is None:
            from app.plugins import PluginManager, get_manager, set_manager  # noqa: PLC0415

            manager = get_manager(self.settings)
        self.manager = manager
        self.manager.add_error_listener(self._on_plugin_error_any_thread)

        self._viewers = None
        self.undo_stack = QUndoStack(self)

        # --- session -------------------------------------------------------------------
        # opened after the first paint on a worker thread (SQLAlchemy alone takes ~0.5 s to import)
        from app.ui.session_view import SessionView  # noqa: PLC0415

        self.session = SessionView.pending(session_dir)
        self._ready = False
        self._session_thread = None

        # --- central -------------------------------------------------------------------
        self.result_area = ResultArea(lambda: self.viewers)
        self.setCentralWidget(self.result_area)

        # --- docks ---------------------------------------------------------------------
        # The Tools dock is complete at the first paint; History, Queue and Log get their
        # contents right after it (see _build_secondary_docks), in the same dock frames, so the
        # saved layout applies to all four from the start.
        from app.ui.tool_panel import ToolPanel  # noqa: PLC0415

        self.tool_panel = ToolPanel(self.undo_stack, session_images=lambda: self.session.image_choices())
        self.tool_panel.result_file = lambda rid: self.session.result_file(rid)
        self.history = None
        self.queue = None
        self.log_view = None
        self.tools_dock = self._dock("Tools", "tools", self.tool_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.history_dock = self._dock("History", "history", QWidget(), Qt.DockWidgetArea.RightDockWidgetArea)
        self.queue_dock = self._dock("Queue", "queue", QWidget(), Qt.DockWidgetArea.RightDockWidgetArea)
        self.log_dock = self._dock("Log", "log", QWidget(), Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(self.history_dock, self.queue_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.tools_dock, self.history_dock], [360, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.history_dock, self.queue_dock], [520, 260], Qt.Orientation.Vertical)
        self.resizeDocks([self.log_dock], [120], Qt.Orientation.Vertical)

        # --- jobs ----------------------------------------------------------------------
        from app.ui.job_bridge import JobBridge  # noqa: PLC0415

        self._runner_given = runner
        self.jobs = JobBridge(self.manager, self.session, self.settings, parent=self)
        self.jobs.queued.connect(self._on_job_queued)
        self.jobs.started.connect(self._on_job_started)
        self.jobs.progress.connect(self._on_job_progress)
        self.jobs.preview.connect(self._on_job_preview)
        self.jobs.finished.connect(self._on_job_finished)
        self._job_meta: dict[Any, dict] = {}
        self.current_source: tuple | None = None  # (run id, result id) of the shown stored result
        self._pending_reproduce: dict[Any, Any] = {}

        # --- wiring ----------------------------------------------------------------------
        self.tool_panel.toolSelected.connect(self._on_tool_selected)
        self.tool_panel.toolCleared.connect(self._update_run_enabled)
        self.tool_panel.runRequested.connect(self.run_current)
        self.result_area.send_menu.aboutToShow.connect(self._fill_send_menu)

        self._build_actions()
        self.status_label = QLabel("")
        self.status_label.setObjectName("muted")
        self.statusBar().addPermanentWidget(self.status_label)

        self.refresh_tools()
        self._restore_state()
        self._sessionOpened.connect(self._on_session_opened, Qt.ConnectionType.QueuedConnection)
        self.firstPainted.connect(lambda _ms: QTimer.singleShot(0, self._after_first_paint))
        log.info("window built in %.0f ms", (time.perf_counter() - t0) * 1000)

    # ------------------------------------------------------------------------------------
    # the session opens after the first paint, off the GUI thread
    # ------------------------------------------------------------------------------------
    @property
    def viewers(self):
        """The result viewer registry (built on first use; plugin viewers included)."""
        if self._viewers is None:
            from app.ui.viewers import ViewerRegistry  # noqa: PLC0415

            self._viewers = ViewerRegistry()
            for spec in getattr(self.manager, "viewers", []):
                self._viewers.add_spec(spec)
        return self._viewers

    def _build_secondary_docks(self) -> None:
        if self.history is not None:
            return
        from app.ui.history_dock import HistoryDock  # noqa: PLC0415
        from app.ui.log_dock import LogDock  # noqa: PLC0415
        from app.ui.queue_dock import QueueDock  # noqa: PLC0415

        self.log_view = LogDock()
        self.log_view.attach()
        self.history = HistoryDock()
        self.queue = QueueDock()
        for dock, w in ((self.history_dock, self.history), (self.queue_dock, self.queue), (self.log_dock, self.log_view)):
            old = dock.widget()
            dock.setWidget(w)
            if old is not None:
                old.deleteLater()
        if not self._state_restored:
            def default_sizes() -> None:
                self.resizeDocks([self.log_dock], [90], Qt.Orientation.Vertical)
                self.resizeDocks([self.history_dock, self.queue_dock], [440, 300], Qt.Orientation.Vertical)

            QTimer.singleShot(0, default_sizes)
        self.jobs.orderChanged.connect(self.queue.reorder)
        self.queue.cancelRequested.connect(self.jobs.cancel)
        self.queue.moveRequested.connect(self.jobs.move)
        self.queue.removeRequested.connect(self._remove_job)
        self.queue.pauseToggled.connect(self.set_queue_paused)
        self.queue.set_paused(self.jobs.paused)
        self.history.sendToRequested.connect(self.send_to)
        self.history.set_send_targets(self.send_targets())
        self.history.openRequested.connect(self.open_result)
        self.history.useParamsRequested.connect(self.use_run_params)
        self.history.reproduceRequested.connect(self.reproduce)
        self.history.compareRequested.connect(self.compare)
        self.history.exportRequested.connect(self.export_result)
        self.history.refreshed.connect(self._on_history_refreshed)
        self.history.set_known_tools(list(self.manager.tools))
        self._report_failed_plugins()

    def _after_first_paint(self) -> None:
        """Work kept off the path to the first paint: the History, Queue and Log docks' contents,
        icons drawn from SVG, the form of the remembered tool, and opening the session (on a
        worker thread)."""
        self._build_secondary_docks()
        self.setWindowIcon(icon("app"))
        self.tool_panel.run_btn.setIcon(icon("play"))
        if self.tool_panel.current_tool is None and self._initial_tool:
            self.tool_panel.select_tool(self._initial_tool)
        self._start_session()

    def _start_session(self) -> None:
        if self._session_thread is not None:
            return
        import threading  # noqa: PLC0415

        def work() -> None:
            self.session.open_store()
            try:
                self._sessionOpened.emit()
            except RuntimeError:  # window already deleted
                pass

        self._session_thread = threading.Thread(target=work, name="open-session", daemon=True)
        self._session_thread.start()

    def _on_history_refreshed(self) -> None:
        run_id = getattr(self, "_select_after_refresh", None)
        if run_id is not None:
            self._select_after_refresh = None
            self.history.select(run_id)

    def _on_session_opened(self) -> None:
        self.jobs.attach_runner(self._runner_given)
        self.history.set_source(self.session)
        self._ready = True
        self._update_status_right()
        self._update_run_enabled()
        if self.session.error:
            self.statusBar().showMessage(f"The session could not be opened; runs will not be recorded ({self.session.error})", 20000)
            self.log_view.message(f"session {self.session.folder}: {self.session.error}", logging.ERROR)
        self._offer_to_disable_crashed_plugin()
        self.sessionReady.emit()

    def _offer_to_disable_crashed_plugin(self) -> None:
        """When the last session ended in a native crash during a run, name the tool's plugin and
        offer to disable it (non-blocking)."""
        from app import crashguard  # noqa: PLC0415
        from app.jobs import interrupted_runs  # noqa: PLC0415

        crashed = crashguard.crashed(interrupted_runs(self.session.store)) if self.session.store else []
        if not crashed:
            return
        run = crashed[-1]
        text = (f"Implicit Studio crashed ({run.fatal_error}) the last time while tool "
                f"{run.tool_id!r} of plugin {run.plugin!r} was running (run {run.run_id}, now marked "
                f"failed).\n\nDisable the plugin {run.plugin!r}? It can be enabled again in Plugins.")
        box = QMessageBox(QMessageBox.Icon.Warning, "Implicit Studio", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.button(QMessageBox.StandardButton.Yes).setText(f"Disable {run.plugin}")
        box.button(QMessageBox.StandardButton.No).setText("Keep it")
        box.setWindowModality(Qt.WindowModality.NonModal)

        def answered(button) -> None:
            if box.standardButton(button) == QMessageBox.StandardButton.Yes:
                try:
                    self.manager.set_enabled(run.plugin, False)
                except KeyError:  # not installed any more
                    pass
                self.refresh_tools()
                self.statusBar().showMessage(f"Plugin {run.plugin} disabled; enable it again in Plugins.", 15000)

        box.buttonClicked.connect(answered)
        self.log_view.message(text.replace("\n\n", " "), logging.WARNING)
        self.crash_notice = box
        box.show()

    def is_ready(self) -> bool:
        """True once the session is open (or failed to open) and runs can be submitted."""
        return self._ready

    def _update_run_enabled(self) -> None:
        ok = self._ready and self.tool_panel.current_tool is not None
        self.tool_panel.run_btn.setEnabled(ok)
        self.act_run.setEnabled(ok)
        if not self._ready:
            self.tool_panel.run_btn.setToolTip("Opening the session…")

    # ------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock_{name}")
        d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                      | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, d)
        return d

    def _build_actions(self) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("toolbar_main")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

        self.act_run = QAction(std("MediaPlay"), "Generate", self)
        self.act_run.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.act_run.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.act_run.setToolTip("Run the selected tool (Ctrl+Enter)")
        self.act_run.triggered.connect(self.run_current)
        self.act_cancel = QAction(std("BrowserStop"), "Cancel", self)
        self.act_cancel.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.act_cancel.setToolTip("Cancel the running job (Esc)")
        self.act_cancel.triggered.connect(self.cancel_running)
        self.act_undo = QAction(std("ArrowBack"), "Undo", self)
        self.act_undo.setShortcut(QKeySequence("Ctrl+Z"))
        self.act_undo.triggered.connect(self.undo_stack.undo)
        self.act_undo.setEnabled(False)
        self.undo_stack.canUndoChanged.connect(self.act_undo.setEnabled)
        self.undo_stack.undoTextChanged.connect(lambda t: self.act_undo.setToolTip(f"Undo {t} (Ctrl+Z)" if t else "Undo (Ctrl+Z)"))
        self.act_redo = QAction(std("ArrowForward"), "Redo", self)
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_redo.triggered.connect(self.undo_stack.redo)
        self.act_redo.setEnabled(False)
        self.undo_stack.canRedoChanged.connect(self.act_redo.setEnabled)
        self.undo_stack.redoTextChanged.connect(lambda t: self.act_redo.setToolTip(f"Redo {t} (Ctrl+Shift+Z)" if t else "Redo (Ctrl+Shift+Z)"))
        self.act_open = QAction(std("DialogOpenButton"), "Open…", self)
        self.act_open.setShortcut(QKeySequence("Ctrl+O"))
        self.act_open.triggered.connect(self._open_dialog)
        self.act_export = QAction(std("DialogSaveButton"), "Export…", self)
        self.act_export.setShortcut(QKeySequence("Ctrl+E"))
        self.act_export.triggered.connect(lambda: self.export_result(None, None))
        self.act_plugins = QAction(std("FileDialogListView"), "Plugins", self)
        self.act_plugins.triggered.connect(self.show_plugins)
        self.act_prefs = QAction("Preferences…", self)
        self.act_prefs.setShortcut(QKeySequence("Ctrl+,"))
        self.act_prefs.triggered.connect(self.show_preferences)
        for a in (self.act_run, self.act_cancel):
            tb.addAction(a)
        tb.addSeparator()
        for a in (self.act_undo, self.act_redo):
            tb.addAction(a)
        tb.addSeparator()
        for a in (self.act_open, self.act_export):
            tb.addAction(a)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy().Preferred)
        tb.addWidget(spacer)
        tb.addAction(self.act_plugins)
        self.addAction(self.act_run)
        self.addAction(self.act_cancel)

        mb = self.menuBar()
        m_file = mb.addMenu("&File")
        m_file.addAction(self.act_open)
        m_file.addAction(self.act_export)
        m_file.addSeparator()
        quit_act = m_file.addAction("Quit")
        quit_act.setShortcut(QKeySequence("Ctrl+Q"))
        quit_act.triggered.connect(self.close)
        m_edit = mb.addMenu("&Edit")
        m_edit.addAction(self.act_undo)
        m_edit.addAction(self.act_redo)
        m_edit.addSeparator()
        m_edit.addAction(self.act_prefs)
        m_run = mb.addMenu("&Run")
        m_run.addAction(self.act_run)
        m_run.addAction(self.act_cancel)
        m_view = mb.addMenu("&View")
        for d in (self.tools_dock, self.history_dock, self.queue_dock, self.log_dock):
            m_view.addAction(d.toggleViewAction())
        m_view.addSeparator()
        reset = m_view.addAction("Reset layout")
        reset.triggered.connect(self.reset_layout)
        m_plugins = mb.addMenu("&Plugins")
        m_plugins.addAction(self.act_plugins)
        m_help = mb.addMenu("&Help")
        about = m_help.addAction("About Implicit Studio")
        about.triggered.connect(self._about)

    def _update_status_right(self) -> None:
        dev = self.jobs.device_label() if self._ready else ""
        sess = self.session.label() if self.session is not None else ""
        self.status_label.setText("  ·  ".join(x for x in (sess, dev) if x))

    # ------------------------------------------------------------------------------------
    # first paint
    # ------------------------------------------------------------------------------------
    def event(self, ev: QEvent) -> bool:
        handled = super().event(ev)
        if not self._painted and ev.type() == QEvent.Type.Paint:
            self._painted = True
            self.firstPainted.emit(ms_since_start())
        return handled

    # ------------------------------------------------------------------------------------
    # tools and forms
    # ------------------------------------------------------------------------------------
    def refresh_tools(self) -> None:
        tools = list(self.manager.tools.values())
        titles = {name: _plugin_title(name) for name in getattr(self.manager, "records", {})}
        self.tool_panel.set_tools(tools, titles)
        if self.history is not None:
            self.history.set_known_tools(list(self.manager.tools))
            self.history.set_send_targets(self.send_targets())

    def _on_tool_selected(self, tool: Any) -> None:
        tid = ad.tool_id(tool)
        last = self.settings.last_params(tid) if hasattr(self.settings, "last_params") else {}
        if last:
            self.tool_panel.set_values(last, record_undo=False)
        self.undo_stack.clear()
        self.act_run.setText(self.tool_panel._run_label(tool))
        self._update_run_enabled()
        self.statusBar().showMessage(f"{ad.tool_title(tool)} selected", 4000)

    def select_tool(self, tool_id: str) -> bool:
        return self.tool_panel.select_tool(tool_id)

    @property
    def form(self):
        return self.tool_panel.form

    # ------------------------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------------------------
    def run_current(self) -> Any:
        """Validate the form and queue a run; returns the job id, or None when refused."""
        tool = self.tool_panel.current_tool
        if tool is None:
            self.show_error("Choose a tool first.", "")
            return None
        if not self._ready:
            self.statusBar().showMessage("The session is still opening; try again in a moment.", 4000)
            return None
        form = self.tool_panel.form
        form.clear_errors()
        values = form.values()
        from app.api import ParamError  # noqa: PLC0415

        try:
            tool.validate(values)
        except ParamError as exc:
            shown = form.show_error(exc.param, exc.message)
            self.statusBar().showMessage(f"Cannot run {ad.tool_title(tool)}: {exc.message}", 10000)
            log.warning("run refused: %s", exc.message)
            if not shown:
                self.show_error(f"Cannot run {ad.tool_title(tool)}", exc.message)
            return None
        try:
            self.settings.set_last_params(ad.tool_id(tool), _json_safe(values))
        except Exception:  # settings folder not writable: not a reason to refuse the run
            log.warning("could not remember the parameters", exc_info=True)
        parents = self.session.parents_from_params(tool, values)
        return self.submit(tool, values, parents=parents)

    def submit(self, tool: Any, values: dict, parents: list | None = None, title: str | None = None,
               reproduce_of: Any = None) -> Any:
        try:
            job_id = self.jobs.submit(tool, values, parents=parents or [], title=title)
        except Exception as exc:
            self.show_error(f"Could not start {ad.tool_title(tool)}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        self._job_meta[job_id] = {"tool": tool, "values": dict(values), "parents": parents or []}
        if reproduce_of is not None:
            self._pending_reproduce[job_id] = reproduce_of
        return job_id

    def cancel_running(self) -> None:
        j = self.queue.running_job()
        if j is None:
            waiting = [k for k, s in self.queue.jobs.items() if s.status == "queued"]
            if not waiting:
                self.statusBar().showMessage("Nothing to cancel", 3000)
                return
            j = waiting[0]
        self.jobs.cancel(j)
        self.statusBar().showMessage("Cancelling…", 3000)

    def _remove_job(self, job_id: Any) -> None:
        if self.jobs.remove(job_id):
            self.queue.remove_job(job_id)

    def _on_job_queued(self, job_id: Any, title: str) -> None:
        self.queue.add_job(job_id, title)

    def _on_job_started(self, job_id: Any) -> None:
        self.queue.set_status(job_id, "running")
        meta = self._job_meta.get(job_id, {})
        tool = meta.get("tool")
        self.statusBar().showMessage(f"Running {ad.tool_title(tool) if tool else job_id}…")

    def _on_job_progress(self, job_id: Any, step: int, total: int, message: str) -> None:
        self.queue.set_progress(job_id, step, total, message)
        st = self.queue.jobs.get(job_id)
        if st is not None and st.status == "cancelling":
            return
        from app.ui.queue_dock import format_eta  # noqa: PLC0415

        eta = format_eta(st.eta()) if st is not None else ""
        self.statusBar().showMessage(f"{st.title if st else ''}: step {step}/{total}" + (f", about {eta} left" if eta else ""))

    def _on_job_preview(self, job_id: Any, image: Any) -> None:
        st = self.queue.jobs.get(job_id)
        self.result_area.show_preview(image, st.title if st else "")
        if not self.queue.preview.isVisible() or self.queue_dock.visibleRegion().isEmpty():
            return
        self.queue.set_preview(job_id, image)

    def _on_job_finished(self, job_id: Any, outcome: Any) -> None:
        status = outcome.status
        self.queue.set_status(job_id, status, outcome.error or "")
        meta = self._job_meta.pop(job_id, {})
        tool = meta.get("tool")
        title = ad.tool_title(tool) if tool is not None else str(job_id)
        if status == "ok":
            if outcome.results:
                inp = self.session.input_image_for(tool, meta.get("values", {})) if tool is not None else None
                results, sub = list(outcome.results), self._run_sub(outcome)
                rids = list(outcome.result_ids or [])

                def source(i: int) -> tuple | None:
                    ok = outcome.run_id is not None and i < len(rids) and len(rids) == len(results)
                    return (outcome.run_id, rids[i]) if ok else None

                self._show(results[0], f"{title}", sub, inp, source=source(0))
                if getattr(results[0], "kind", "") == "image":  # the preview ends on the finished picture
                    self.queue.set_preview(job_id, results[0])
                self.result_area.set_choices(_result_labels(results),
                                             lambda i: self._show(results[i], f"{title}", sub, inp, keep_choices=True,
                                                                  source=source(i)))
            self.statusBar().showMessage(f"{title} finished in {outcome.duration:.1f}s" + (f" (run #{outcome.run_id})" if outcome.run_id is not None else ""), 8000)
        elif status == "cancelled":
            self.statusBar().showMessage(f"{title} was cancelled", 8000)
            if self.result_area.stack.currentWidget() is self.result_area.preview and self.result_area.current_result is not None:
                self.result_area._toggle_split(False)
        else:
            self.show_error(f"{title} failed: {outcome.error}", outcome.traceback or outcome.error or "")
        if outcome.run_id is not None and status == "ok":
            self._select_after_refresh = outcome.run_id
        self.history.refresh()
        orig = self._pending_reproduce.pop(job_id, None)
        if orig is not None:
            self._finish_reproduce(orig, outcome)
        self.jobFinished.emit(job_id, status)

    @staticmethod
    def _run_sub(outcome: Any) -> str:
        parts = []
        if outcome.run_id is not None:
            parts.append(f"run #{outcome.run_id}")
        if outcome.seed is not None:
            parts.append(f"seed {outcome.seed}")
        if outcome.duration:
            parts.append(f"{outcome.duration:.1f}s")
        return "  ·  ".join(parts)

    def _show(self, result: Any, caption: str, sub: str = "", input_image: Any = None,
              keep_choices: bool = False, source: tuple | None = None) -> None:
        if not keep_choices:
            self.result_area.set_choices([], None)
        self.result_area.show_result(result, caption, sub, input_image)
        from app.ui.viewers import result_kind  # noqa: PLC0415

        # only a stored image can be sent on (as ``result:<id>``)
        self.current_source = source if source is not None and result_kind(result) == "image" else None
        self.result_area.send_btn.setVisible(self.current_source is not None)
        if self.result_area.viewer_error:
            self.log_view.message(self.result_area.viewer_error, logging.WARNING)
        self.resultShown.emit(result)

    # ------------------------------------------------------------------------------------
    # errors
    # ------------------------------------------------------------------------------------
    def show_error(self, message: str, details: str = "", tb: str = "") -> None:
        """Status bar + a non-blocking dialog with details; the window keeps working."""
        self.last_error = (message, details or tb)
        self.statusBar().showMessage(message, 15000)
        log.error("%s%s", message, ("\n" + (tb or details)) if (tb or details) else "")
        if self.error_dialog is not None:
            self.error_dialog.close()
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Implicit Studio")
        box.setText(message)
        if details or tb:
            box.setDetailedText(tb or details)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.destroyed.connect(lambda *_: setattr(self, "error_dialog", None))
        self.error_dialog = box
        box.show()
        self.errorShown.emit(message, details or tb)

    def _on_plugin_error_any_thread(self, err: Any) -> None:
        # called on whichever thread failed; only log here (the job outcome reaches the GUI)
        pass

    def _report_failed_plugins(self) -> None:
        bad = [r for r in getattr(self.manager, "records", {}).values() if getattr(r, "status", "loaded") in ("failed", "incompatible")]
        self.act_plugins.setText(f"Plugins ({len(bad)} failed)" if bad else "Plugins")
        self.act_plugins.setIcon(std("MessageBoxWarning") if bad else std("FileDialogListView"))
        if bad:
            names = ", ".join(r.name for r in bad)
            self.act_plugins.setToolTip(f"Could not be loaded: {names}")
            msg = f"{len(bad)} plugin{'s' if len(bad) > 1 else ''} could not be loaded: {names}. See Plugins for details."
            self.statusBar().showMessage(msg, 20000)
            for r in bad:
                self.log_view.message(f"plugin {r.name} {r.status}: {r.error}", logging.ERROR)

    # ------------------------------------------------------------------------------------
    # history actions
    # ------------------------------------------------------------------------------------
    def open_result(self, run_id: Any, result_id: Any = None) -> Any:
        try:
            run = self.session.run(run_id)
            if result_id is None:
                if not run.results:
                    self.statusBar().showMessage(f"Run #{run_id} has no results ({run.status})", 6000)
                    return None
                result_id = run.results[0].id
            result = self.session.load_result(result_id)
        except Exception as exc:
            self.show_error(f"Could not open run #{run_id}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        tool = self.manager.tools.get(run.tool_id)
        inp = self.session.input_image_for(tool, run.params) if tool is not None else None
        caption = f"{run.tool_id} #{run.id}"
        self._show(result, caption, run.subtitle(), inp, source=(run.id, result_id))
        ids = [r.id for r in run.results]

        def pick(i: int) -> None:
            try:
                self._show(self.session.load_result(ids[i]), caption, run.subtitle(), inp, keep_choices=True,
                           source=(run.id, ids[i]))
            except Exception as exc:
                self.show_error(f"Could not open result {ids[i]} of run #{run.id}", str(exc), traceback.format_exc())

        self.result_area.set_choices([f"{i + 1}. {r.kind}" for i, r in enumerate(run.results)], pick,
                                     ids.index(result_id) if result_id in ids else 0)
        return result

    # ------------------------------------------------------------------------------------
    # send to: a result becomes the image input of another tool
    # ------------------------------------------------------------------------------------
    def send_targets(self) -> list:
        from app.ui.send_to import send_targets  # noqa: PLC0415

        return send_targets(self.manager.tools.values())

    def _fill_send_menu(self) -> None:
        from app.ui.send_to import fill_menu  # noqa: PLC0415

        src = self.current_source
        fill_menu(self.result_area.send_menu, self.send_targets(),
                  lambda t: self.send_to(src[0], src[1], t.tool_id) if src else None, enabled=src is not None)

    def send_to(self, run_id: Any, result_id: Any, tool_id: str) -> bool:
        """Select ``tool_id`` and set its image input to stored result ``result_id`` (of run
        ``run_id``); a source prompt the tool has is filled from the run's prompt."""
        from app.ui.send_to import image_param, sent_values  # noqa: PLC0415

        tool = self.manager.tools.get(tool_id)
        if tool is None:
            self.show_error(f"The tool {tool_id!r} is not available", "Its plugin may be disabled or not installed. See Plugins.")
            return False
        param = image_param(tool)
        if param is None:
            self.show_error(f"{ad.tool_title(tool)} does not take an image", f"None of the parameters of {tool_id} is an image input.")
            return False
        if result_id is None:
            self.show_error("Choose a result to send", "The selected run has no stored result.")
            return False
        params: dict = {}
        if run_id is not None:
            try:
                params = dict(self.session.run(run_id).params or {})
            except Exception:  # the prompt is a convenience; the image still goes
                log.warning("could not read run #%s for its prompt", run_id, exc_info=True)
        if not self.tool_panel.select_tool(tool_id):
            self.show_error(f"Could not open {ad.tool_title(tool)}", "The tool is not listed in the Tools panel.")
            return False
        bad = self.tool_panel.set_values(sent_values(tool, param, result_id, params))
        if param in bad:
            self.show_error(f"Could not set the image of {ad.tool_title(tool)}", f"The form refused result:{result_id}.")
            return False
        self.tools_dock.raise_()
        src = f"run #{run_id}" if run_id is not None else f"result {result_id}"
        self.statusBar().showMessage(f"Sent {src} to {ad.tool_title(tool)}", 8000)
        return True

    def set_queue_paused(self, paused: bool) -> None:
        """Hold the queue (the running job finishes, waiting jobs wait) or resume it."""
        self.jobs.set_paused(paused)
        if self.queue is not None and self.queue.paused != bool(paused):
            self.queue.set_paused(paused)
        self.statusBar().showMessage("Queue paused: waiting jobs will not start" if paused else "Queue resumed", 6000)

    def use_run_params(self, run_id: Any) -> bool:
        run = self.session.run(run_id)
        return self.restore_params(run.tool_id, run.params, seed=run.seed, source=f"run #{run_id}")

    def restore_params(self, tool_id: str, params: dict, seed: Any = None, source: str = "") -> bool:
        if tool_id not in self.manager.tools:
            self.show_error(f"The tool {tool_id!r} is not available", "Its plugin may be disabled or not installed. See Plugins.")
            return False
        self.tool_panel.select_tool(tool_id)
        values = dict(params)
        tool = self.manager.tools[tool_id]
        if seed is not None:
            for p in ad.tool_params(tool):
                if ad.param_kind(p) == "seed":
                    values[ad.param_name(p)] = seed
        bad = self.tool_panel.set_values(values)
        msg = f"Parameters of {tool_id} restored" + (f" from {source}" if source else "")
        if bad:
            msg += f" (not restored: {', '.join(bad)})"
        self.statusBar().showMessage(msg, 8000)
        return True

    def reproduce(self, run_id: Any) -> Any:
        """Re-run ``run_id`` with identical parameters and seed; on finish, report whether the
        output matches bit for bit (``reproduceChecked``)."""
        try:
            run = self.session.run(run_id)
        except Exception as exc:
            self.show_error(f"Could not read run #{run_id}", str(exc), traceback.format_exc())
            return None
        tool = self.manager.tools.get(run.tool_id)
        if tool is None:
            self.show_error(f"Cannot reproduce run #{run_id}: the tool {run.tool_id!r} is not available", "")
            return None
        values = dict(run.params)
        for p in ad.tool_params(tool):
            if ad.param_kind(p) == "seed" and run.seed is not None:
                values[ad.param_name(p)] = run.seed
        known = {ad.param_name(p) for p in ad.tool_params(tool)}
        values = {k: v for k, v in values.items() if k in known}
        return self.submit(tool, values, parents=list(run.parents), title=f"Reproduce #{run_id}", reproduce_of=run_id)

    def _finish_reproduce(self, orig_run_id: Any, outcome: Any) -> None:
        if outcome.status != "ok":
            msg = f"Reproducing run #{orig_run_id} did not finish ({outcome.status})."
            self.reproduceChecked.emit(orig_run_id, False, msg)
            self.statusBar().showMessage(msg, 10000)
            return
        try:
            matched, msg = self.session.compare_outputs(orig_run_id, outcome.run_id, outcome.results)
        except Exception as exc:
            matched, msg = False, f"could not compare: {type(exc).__name__}: {exc}"
        text = f"Reproduce run #{orig_run_id}: " + msg
        self.statusBar().showMessage(text, 15000)
        self.log_view.message(text, logging.INFO if matched else logging.WARNING)
        box = QMessageBox(QMessageBox.Icon.Information if matched else QMessageBox.Icon.Warning, "Reproduce", text,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.reproduceChecked.emit(orig_run_id, matched, msg)

    def compare(self, a: tuple, b: tuple) -> Any:
        from app.ui.compare_dialog import CompareDialog  # noqa: PLC0415

        sides = []
        for run_id, result_id in (a, b):
            run = self.session.run(run_id)
            img = None
            if result_id is not None:
                path = self.session.result_file(result_id)
                img = str(path) if path is not None else None
            params = {"tool": run.tool_id, "seed": run.seed, **run.params}
            sides.append({"title": f"#{run.id} {run.tool_id}", "image": img, "params": params})
        dlg = CompareDialog(sides[0], sides[1], self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dlg.show()
        self.compare_dialog = dlg
        return dlg

    def export_result(self, run_id: Any, result_id: Any) -> None:
        result = self.result_area.current_result
        if run_id is not None:
            try:
                run = self.session.run(run_id)
                if result_id is None and run.results:
                    result_id = run.results[0].id
            except Exception as exc:
                self.show_error("Could not export", str(exc))
                return
        if result_id is None and result is None:
            self.statusBar().showMessage("Nothing to export yet", 4000)
            return
        path, _ = _file_dialog().getSaveFileName(self, "Export result", "", "PNG image (*.png);;All files (*)")
        if not path:
            return
        try:
            out = self.session.export(result_id, path, result=result, run_id=run_id)
        except Exception as exc:
            self.show_error("Export failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        self.statusBar().showMessage(f"Exported to {out}", 8000)

    # ------------------------------------------------------------------------------------
    # files: open, drag and drop
    # ------------------------------------------------------------------------------------
    def _open_dialog(self) -> None:
        paths, _ = _file_dialog().getOpenFileNames(self, "Open files", "", "All files (*)")
        for p in paths:
            self.open_path(p)

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dragMoveEvent(self, ev) -> None:
        self.dragEnterEvent(ev)

    def dropEvent(self, ev) -> None:
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        ev.acceptProposedAction()
        for p in paths:
            self.open_path(p)

    def open_path(self, path: str | os.PathLike) -> bool:
        """Open a file: a PNG carrying our parameters restores its tool and parameters (and shows
        the image); other files go through the plugins' reader hooks."""
        path = os.fspath(path)
        name = Path(path).name
        meta = self.session.png_params(path) if path.lower().endswith(".png") else None
        if meta and meta.get("tool"):
            restored = self.restore_params(meta["tool"], meta.get("params", {}), seed=meta.get("seed"), source=name)
            try:
                from app.api import ImageResult  # noqa: PLC0415
                from app.ui.imaging import qimage_to_array  # noqa: PLC0415
                from app.ui.imaging import to_qimage  # noqa: PLC0415

                self._show(ImageResult(image=qimage_to_array(to_qimage(path))), name, "parameters restored" if restored else "")
            except Exception:
                log.warning("could not show %s", path, exc_info=True)
            return restored
        try:
            results = self.manager.read_file(path)
        except ValueError as exc:
            # no reader: plain images still open in the image viewer
            from PySide6.QtGui import QImageReader  # noqa: PLC0415

            if QImageReader.imageFormat(path):
                from app.api import ImageResult  # noqa: PLC0415
                from app.ui.imaging import qimage_to_array, to_qimage  # noqa: PLC0415

                self._show(ImageResult(image=qimage_to_array(to_qimage(path))), name, "opened")
                return True
            self.show_error(f"Cannot open {name}", str(exc))
            return False
        except Exception as exc:
            self.show_error(f"Cannot open {name}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return False
        if not results:
            self.show_error(f"{name} contained nothing to show", "")
            return False
        self._show(results[0], name, "opened")
        if len(results) > 1:
            self.result_area.set_choices(_result_labels(results),
                                         lambda i: self._show(results[i], name, "opened", keep_choices=True))
        return True

    # ------------------------------------------------------------------------------------
    # plugins dialog
    # ------------------------------------------------------------------------------------
    def show_plugins(self) -> Any:
        from app.ui.plugins_dialog import PluginsDialog  # noqa: PLC0415

        def set_enabled(name: str, enabled: bool) -> None:
            try:
                self.manager.set_enabled(name, enabled)
            except Exception as exc:
                self.show_error(f"Could not {'enable' if enabled else 'disable'} {name}", str(exc), traceback.format_exc())
            self.refresh_tools()
            dlg.note.setText(f"{name} {'enabled' if enabled else 'disabled'}; the choice is remembered.")

        dlg = PluginsDialog(list(self.manager.records.values()), set_enabled, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dlg.show()
        self.plugins_dialog = dlg
        return dlg

    def show_preferences(self) -> Any:
        from app.ui.preferences import PreferencesDialog  # noqa: PLC0415

        dlg = PreferencesDialog(self.settings, list(getattr(self.manager, "settings_pages", [])), self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)

        def saved() -> None:
            runner = self.jobs.runner
            if runner is not None:
                try:
                    from app import devices  # noqa: PLC0415

                    runner.device = devices.parse_device(self.settings.device)
                except Exception as exc:
                    self.show_error("The device setting was not applied", str(exc))
            self._update_status_right()
            self.statusBar().showMessage("Preferences saved", 4000)

        dlg.accepted.connect(saved)
        dlg.show()
        self.preferences_dialog = dlg
        return dlg

    def _about(self) -> None:
        from app import __version__  # noqa: PLC0415
        from app.api import API_VERSION  # noqa: PLC0415

        QMessageBox.about(self, "About Implicit Studio",
                          f"<b>Implicit Studio</b> {__version__}<br>Plugin API {API_VERSION}<br><br>"
                          "Diffusion image generation and editing, implicit neural representations and distributional RL, "
                          "in one plugin-based desktop studio.")

    # ------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------
    def _restore_state(self) -> None:
        s = window_settings()
        geo = s.value("window/geometry")
        state = s.value("window/state")
        if isinstance(geo, (QByteArray, bytes)) and geo:
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 880)
        self._state_restored = False
        if isinstance(state, (QByteArray, bytes)) and state:
            self._state_restored = bool(self.restoreState(state, STATE_VERSION))
        # the form of this tool is built right after the first paint
        tool = s.value("window/tool")
        self._initial_tool = None
        if tool and tool in self.manager.tools:
            self._initial_tool = str(tool)
        elif self.manager.tools:
            first = sorted(self.manager.tools.values(), key=lambda t: (t.plugin, t.title))[0]
            self._initial_tool = (self.manager.tools.get("text-to-image") or first).id

    def save_state(self) -> None:
        s = window_settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(STATE_VERSION))
        if self.tool_panel.current_tool is not None:
            s.setValue("window/tool", ad.tool_id(self.tool_panel.current_tool))
            try:
                self.settings.set_last_params(ad.tool_id(self.tool_panel.current_tool), _json_safe(self.tool_panel.values()))
            except Exception:
                log.warning("could not remember the parameters", exc_info=True)
        s.sync()

    def reset_layout(self) -> None:
        for d in (self.tools_dock, self.history_dock, self.queue_dock, self.log_dock):
            d.setFloating(False)
            d.show()
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.tools_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.history_dock)
        self.splitDockWidget(self.history_dock, self.queue_dock, Qt.Orientation.Vertical)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)

    def closeEvent(self, ev) -> None:
        self.save_state()
        self.jobs.shutdown()
        if self.log_view is not None:
            self.log_view.detach()
        if self.history is not None:
            self.history.loader.wait(2000)
            self.history._pool.waitForDone(5000)
        if self._session_thread is not None:
            self._session_thread.join(30)
        self.session.close()
        super().closeEvent(ev)


def _result_labels(results: list) -> list[str]:
    out = []
    for i, r in enumerate(results):
        kind = getattr(r, "kind", "result")
        label = getattr(r, "label", "") or ""
        out.append(f"{i + 1}. {kind}" + (f" — {label}" if label else ""))
    return out


def _plugin_title(name: str) -> str:
    """``"text_to_image"`` -> ``"Text to image"``, ``"rl"`` -> ``"RL"``."""
    words = [w.upper() if w in _ACRONYMS else w for w in name.replace("_", " ").replace("-", " ").split()]
    if not words:
        return name
    first = words[0] if words[0].isupper() else words[0].capitalize()
    return " ".join([first] + words[1:])


def _json_safe(values: dict) -> dict:
    out = {}
    for k, v in values.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def _ensure_app(argv: list[str]) -> QApplication:
    app = QApplication.instance()
    if app is None:
        QApplication.setOrganizationName(ORG_NAME)
        QApplication.setApplicationName(APP_NAME)
        QApplication.setApplicationDisplayName("Implicit Studio")
        prog = sys.argv[0] if sys.argv else APP_NAME
        args = list(argv)
        if args and args[0] == prog:
            args = args[1:]
        QApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)  # before the app: GL views share
        app = QApplication([prog] + args)
    apply_theme(app)
    follow_system(app)
    return app


def launch(argv: list[str] | None = None, session_dir: str | os.PathLike | None = None,
           exit_after_paint: bool = False) -> int:
    """Open the main window on ``session_dir`` (the default session when ``None``) and run the
    event loop; returns the exit status. With ``exit_after_paint`` print ``first-paint-ms: N``
    (from process start to the window's first paint) and exit 0."""
    app = _ensure_app(list(argv or []))
    try:
        from app.settings import setup_logging  # noqa: PLC0415

        setup_logging()
    except Exception:
        pass
    try:
        win = MainWindow(session_dir=session_dir)
    except Exception as exc:
        tb = traceback.format_exc()
        print(f"implicit-studio: the window could not be opened: {exc}\n{tb}", file=sys.stderr)
        if not exit_after_paint:
            QMessageBox.critical(None, "Implicit Studio", f"The window could not be opened:\n{exc}")
        return 1
    if exit_after_paint:
        def done(ms: float) -> None:
            print(f"first-paint-ms: {ms:.0f}", flush=True)
            QTimer.singleShot(0, lambda: app.exit(0))

        win.firstPainted.connect(done)
        win.show()
        return app.exec()
    win.show()
    status = app.exec()
    return status
