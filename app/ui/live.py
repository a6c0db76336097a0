"""Live mode in the window: a Live switch under the selected tool's form that redraws the picture
as the person types, changes a parameter or paints a mask, and a Keep button that records the
picture shown as a normal run.

The scheduling (debounce, latest wins, stale frames dropped, the worker thread) is
:mod:`app.live`, without Qt; this module only wires widgets to it:

- the form's editors (every parameter editor's ``changed``), an image panel's mask strokes (while
  the stroke is painted: :attr:`app.widgets.mask_canvas.MaskCanvas.strokeMoved`) and its image ask
  for a redraw; the GUI thread reads the form's values and hands them over, nothing more;
- the worker draws with the tool's own run function (:class:`app.live.ToolDrawer`) at the live
  step count: 1-4 steps of the bundled model are drawn by its one-step student (text-to-image,
  inpainting and h-Edit route them so), any other model at the steps chosen;
- a frame comes back as a queued signal; one that is no longer the newest request is dropped;
- **Keep** submits the values of the picture shown (its seed, parameters, model) to the run
  controller, so the session records a normal run that makes the same picture; **Generate** runs
  the form as always. Nothing else is recorded.

Frames are shown in the centre's preview, or, when the panel has given its canvas to the window's
centre (the person paints there), in the live view under the switch.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from app import api
from app.live import Frame, LiveScheduler, ToolDrawer, live_capable, live_values
from app.widgets.image_view import ImageView

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger("implicit_studio.ui.live")

#: Seconds without a new keystroke, value or stroke before a request is drawn.
DEBOUNCE_S = 0.015
LIVE_STEPS_MAX = 10


class _Bridge(QObject):
    """The scheduler's callbacks (worker thread) as queued signals (GUI thread)."""

    frame = Signal(object)
    error = Signal(str)
    status = Signal(str)


class LiveBar(QWidget):
    """The Live switch, the live step count, Keep, a status line and the live view."""

    TOGGLE_TIP = ("Redraw as you type, change a value or paint (1-4 steps of the default model are drawn by its "
                  "one-step student). Nothing is recorded until you press Keep or Generate.")

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.toggle = QCheckBox("Live", self)
        self.toggle.setToolTip(self.TOGGLE_TIP)
        self.steps = QSpinBox(self)
        self.steps.setRange(1, LIVE_STEPS_MAX)
        self.steps.setValue(1)
        self.steps.setPrefix("steps ")
        self.steps.setToolTip("Steps of each live picture (1-4 steps of the default model: its one-step student)")
        self.keep = QPushButton("Keep", self)
        self.keep.setToolTip("Record the picture shown as a run (its seed, parameters and model)")
        self.keep.setEnabled(False)
        self.status = QLabel("", self)
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.view = ImageView(self, placeholder="Paint or type: the live picture appears here")
        self.view.setMinimumHeight(160)
        self.view.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.toggle)
        row.addWidget(self.steps)
        row.addStretch(1)
        row.addWidget(self.keep)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.view, 1)

    def say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e5484d;" if error else "")


class LiveMode(QObject):
    """Live mode of one main window (made by the window after its first paint)."""

    frameShown = Signal(object)  # the Frame just put on screen
    kept = Signal(int)  # the job id of a kept picture's run

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.bar = LiveBar()
        self._place(window.tool_panel, self.bar)
        self.bridge = _Bridge(self)
        self.bridge.frame.connect(self._on_frame, Qt.ConnectionType.QueuedConnection)
        self.bridge.error.connect(self._on_error, Qt.ConnectionType.QueuedConnection)
        self.bridge.status.connect(self._on_status, Qt.ConnectionType.QueuedConnection)
        self.scheduler: Optional[LiveScheduler] = None
        self.tool: Optional[api.ToolSpec] = None
        self.seed = 0
        self.latest = 0  # the newest request's number
        self.shown: Optional[Frame] = None
        self.last_error = ""
        self._connected: list[tuple[Any, Any]] = []
        self._waiting = False  # for the session to open before starting
        self.bar.toggle.toggled.connect(self.set_enabled)
        self.bar.steps.valueChanged.connect(lambda _v: self.request())
        self.bar.keep.clicked.connect(self.keep)
        window.installEventFilter(self)  # the window closing stops the worker
        window.tool_panel.toolSelected.connect(self._on_tool)
        window.tool_panel.toolCleared.connect(lambda: self._on_tool(None))
        self._on_tool(window.tool_panel.current_tool)

    @staticmethod
    def _place(tool_panel: QWidget, bar: QWidget) -> None:
        """Put the bar above the Run button's row in the tool panel."""
        box = tool_panel.run_btn.parentWidget()
        lay = box.layout() if box is not None else None
        if isinstance(lay, QVBoxLayout):
            lay.insertWidget(max(0, lay.count() - 1), bar)
        else:  # a layout this module does not know: under the panel
            tool_panel.layout().addWidget(bar)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self.window and ev.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    # -- on and off -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.scheduler is not None

    def _on_tool(self, tool: Optional[api.ToolSpec]) -> None:
        was_on = self.active
        self.stop()
        self.tool = tool
        ok = tool is not None and live_capable(tool)
        self.bar.toggle.setEnabled(ok)
        self.bar.steps.setEnabled(ok)
        self.bar.toggle.setToolTip(LiveBar.TOGGLE_TIP if ok else "This tool cannot draw live: it makes no picture "
                                   "or has no steps to lower")
        if not ok:
            self.bar.toggle.setChecked(False)
            self.bar.say("")
        elif was_on and self.bar.toggle.isChecked():
            self.start()

    def set_enabled(self, on: bool) -> None:
        if self.bar.toggle.isChecked() != bool(on):
            self.bar.toggle.setChecked(bool(on))  # comes back here through toggled
            return
        if on:
            self.start()
        else:
            self.stop()
            self.bar.say("")

    def start(self) -> bool:
        w, tool = self.window, self.tool
        if self.active:
            return True
        if tool is None or not live_capable(tool):
            return False
        if not w.is_ready() or w.controller is None or w.controller.runner is None:
            self.bar.say("The session is still opening; live drawing starts when it is open.")
            if not self._waiting:
                self._waiting = True
                w.sessionReady.connect(self._start_when_ready)
            return False
        runner = w.controller.runner
        settings = w.settings.plugin_settings() if w.settings is not None else {}
        drawer = ToolDrawer(w.manager, tool, load_input=runner.load_input, settings=settings,
                            device=getattr(runner, "device", None))
        self.seed = secrets.randbelow(api.SEED_MAX + 1)
        self.shown = None
        self.last_error = ""
        self.bar.keep.setEnabled(False)
        self.scheduler = LiveScheduler(drawer, load=drawer.load, on_frame=self.bridge.frame.emit,
                                       on_error=self.bridge.error.emit, on_status=self.bridge.status.emit,
                                       debounce_s=DEBOUNCE_S, name=f"live-{tool.id}").start()
        self._connect_inputs()
        self.bar.view.setVisible(self._has_canvas())
        self.bar.say(f"Live: drawing {tool.title} as you work…")
        self.request()
        return True

    def _start_when_ready(self) -> None:
        self._waiting = False
        self.window.sessionReady.disconnect(self._start_when_ready)
        if self.bar.toggle.isChecked() and not self.active:
            self.start()

    def stop(self) -> None:
        """Stop drawing (at once: a drawing under way ends on the worker and is dropped)."""
        self._disconnect_inputs()
        sched, self.scheduler = self.scheduler, None
        if sched is not None:
            sched.stop(timeout=0)
        self.bar.keep.setEnabled(False)
        self.bar.view.hide()
        area = self.window.result_area
        if sched is not None and area.current_viewer() is area.preview and area.caption.text().startswith("Live ·"):
            area.sub.setText("live preview, stopped: not recorded")

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop and wait for the worker (the window is closing)."""
        sched, self.scheduler = self.scheduler, None
        self._disconnect_inputs()
        if sched is not None:
            sched.stop(timeout=timeout)

    # -- what asks for a redraw -----------------------------------------------------------------
    def _panel(self) -> Any:
        form = self.window.tool_panel.form
        return getattr(form, "widget", None)

    def _has_canvas(self) -> bool:
        """Whether the panel paints on a canvas shown outside it (the window's centre): frames
        then go to the live view under the switch, so the canvas stays in sight."""
        panel = self._panel()
        canvas = getattr(getattr(panel, "editor", None), "canvas", None)
        return canvas is not None and not panel.isAncestorOf(canvas)

    def _connect_inputs(self) -> None:
        form = self.window.tool_panel.form
        if form is None:
            return
        signals = [ed.changed for ed in getattr(form, "editors", {}).values()]
        panel = self._panel()
        editor = getattr(panel, "editor", None)
        if editor is not None:
            signals += [editor.maskChanged, editor.canvas.strokeMoved]
        for name in ("source", "use_mask"):
            obj = getattr(panel, name, None)
            sig = getattr(obj, "chosen", None) or getattr(obj, "toggled", None)
            if sig is not None:
                signals.append(sig)
        for sig in signals:
            slot = self._changed
            sig.connect(slot)
            self._connected.append((sig, slot))

    def _disconnect_inputs(self) -> None:
        for sig, slot in self._connected:
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):  # the editor is gone with its panel
                pass
        self._connected.clear()

    def _changed(self, *_args: Any) -> None:
        self.request()

    def values(self) -> dict[str, Any]:
        """The live values of the form now (with the mask of a stroke being painted)."""
        form = self.window.tool_panel.form
        vals = dict(form.values()) if form is not None else {}
        panel = self._panel()
        editor = getattr(panel, "editor", None)
        mask_param = getattr(panel, "mask_param", None)
        use = getattr(panel, "use_mask", None)
        stroke = editor.canvas.stroke_mask() if editor is not None and mask_param else None
        if stroke is not None and (use is None or use.isChecked()):
            vals[mask_param] = stroke
        return live_values(self.tool, vals, seed=self.seed, steps=self.bar.steps.value())

    def request(self) -> int:
        """Hand the form's values now to the worker; returns the request's number (0 when off)."""
        if self.scheduler is None or self.tool is None:
            return 0
        try:
            self.latest = self.scheduler.submit(self.values())
        except RuntimeError:
            return 0
        return self.latest

    # -- what comes back --------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        if self.scheduler is None or frame.seq != self.latest:
            return  # stale: a newer request was made while this frame waited in the event queue
        self.shown = frame
        caption = f"Live · {self.tool.title} · seed {frame.payload.get('seed', self.seed)}"
        if self.bar.view.isVisible():
            self.bar.view.set_image(frame.image, keep_view=True)
        else:
            self.window.result_area.show_preview(frame.image, caption)
            self.window.result_area.sub.setText(f"live preview · {frame.draw_s * 1000:.0f} ms · Keep to record it")
        self.bar.keep.setEnabled(True)
        if self.window.statusBar().currentMessage().startswith("Live: loading"):
            self.window.statusBar().clearMessage()
        ms = (time.monotonic() - frame.asked_at) * 1000
        self.bar.say(f"Live · {frame.draw_s * 1000:.0f} ms a picture ({ms:.0f} ms from the change) · seed "
                     f"{frame.payload.get('seed', self.seed)}")
        self.frameShown.emit(frame)

    def _on_error(self, message: str) -> None:
        if self.scheduler is None:
            return
        self.last_error = message
        self.bar.say(message, error=True)
        self.window.statusBar().showMessage(message, 10000)

    def _on_status(self, status: str) -> None:
        if self.scheduler is None or self.tool is None:
            return
        if status == "loading":
            msg = f"Live: loading the model for {self.tool.title}…"
            self.bar.say(msg)
            self.window.statusBar().showMessage(msg, 5000)

    # -- keep ---------------------------------------------------------------------------------
    def keep(self) -> Optional[int]:
        """Record the picture shown as a run (the values it was drawn with); returns the job id."""
        w, frame, tool = self.window, self.shown, self.tool
        if frame is None or tool is None or w.controller is None:
            return None
        try:
            request = w.controller.request(tool, frame.payload)
            job_id = w.controller.submit(request)
        except api.ParamError as exc:
            w.show_error(f"Cannot keep this picture of {tool.title}", exc.message)
            return None
        except Exception as exc:  # noqa: BLE001 - the session could not keep an input, the queue refused
            w.show_error(f"Could not keep this picture of {tool.title}", f"{type(exc).__name__}: {exc}")
            return None
        self.bar.say(f"Kept: recorded as a run of {tool.title} (seed {request.seed}).")
        self.kept.emit(job_id)
        return job_id
