"""Adapts the run controller's events (:class:`app.controller.RunController`) to Qt signals.

The controller calls its listeners on the job runner's worker threads. The listener here never
touches a widget: it stores the event and wakes the GUI thread through a queued signal. Progress
and preview events are coalesced per job (only the latest is delivered), so a tool that reports
thousands of steps a second cannot flood the event loop; queued/started/finished and
reproduce-checked events are delivered in order.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from app import api

if TYPE_CHECKING:
    from app.controller import RunController
    from app.jobs import JobEvent

log = logging.getLogger("implicit_studio.ui.jobs")


@dataclass
class Outcome:
    """How a job ended, as the window sees it."""

    status: str  # "ok", "failed" or "cancelled"
    results: list[api.Result] = field(default_factory=list)
    result_ids: list[int] = field(default_factory=list)
    run_id: Optional[int] = None
    error: str = ""
    traceback: str = ""
    seed: Optional[int] = None
    duration: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    tool: Optional[api.ToolSpec] = None


def _preview_qimage(image: Any) -> QImage | Any:
    """Turn a preview into a QImage here, on the worker thread (QImage, unlike QPixmap, may be
    made off the GUI thread), so the GUI thread only has to paint it."""
    if image is None:
        return None
    try:
        from app.widgets.imaging import to_qimage  # noqa: PLC0415

        return to_qimage(getattr(image, "image", image))
    except Exception:  # the GUI thread will try again and report
        return image


def _title(tool: api.ToolSpec, params: dict[str, Any]) -> str:
    for key in ("prompt", "text", "edit_prompt", "target_prompt"):
        v = params.get(key)
        if isinstance(v, str) and v.strip():
            snippet = " ".join(v.split())
            return f"{tool.title}: {snippet[:40]}{'…' if len(snippet) > 40 else ''}"
    return tool.title


class JobBridge(QObject):
    queued = Signal(object, str)  # job id, title
    started = Signal(object)  # job id
    progress = Signal(object, int, int, str, float)  # job id, step, total, message, seconds left (-1: not known)
    preview = Signal(object, object)  # job id, QImage
    metric = Signal(object, str, float, float)
    finished = Signal(object, object)  # job id, Outcome
    reproduceChecked = Signal(object, bool, str)  # the run reproduced, matched, message
    orderChanged = Signal(list)  # ids of waiting jobs in run order
    _wake = Signal()

    def __init__(self, controller: RunController, parent: QObject | None = None):
        super().__init__(parent)
        self.controller = controller
        self._lock = threading.Lock()
        self._ordered: list[tuple[str, Optional[int], dict[str, Any]]] = []  # events delivered in order
        self._latest_progress: OrderedDict[int, tuple[int, int, str, float]] = OrderedDict()
        self._latest_preview: OrderedDict[int, Any] = OrderedDict()
        self._metrics: list[tuple[int, str, float, float]] = []
        self._order_dirty = False
        self._wake_pending = False
        self._titles: dict[int, str] = {}
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        controller.add_listener(self._on_event)

    def set_title(self, job_id: int, title: str) -> None:
        """The queue's title of a job (set right after submitting: "queued" reaches the GUI
        thread later, through a queued signal, so this one wins)."""
        self._titles[job_id] = title

    # --- worker threads ---------------------------------------------------------------------
    def _on_event(self, ev: JobEvent) -> None:
        job = ev.job
        jid = job.id if job is not None else None
        with self._lock:
            if ev.kind == "progress":
                eta = ev.data.get("eta_s")
                self._latest_progress[jid] = (int(ev.data.get("step", 0)), int(ev.data.get("total", 0)),
                                              str(ev.data.get("message", "")), -1.0 if eta is None else float(eta))
            elif ev.kind == "preview":
                self._latest_preview[jid] = _preview_qimage(ev.data.get("image"))
            elif ev.kind == "metric":
                self._metrics.append((jid, str(ev.data.get("name")), float(ev.data.get("step", 0)), float(ev.data.get("value", 0))))
            elif ev.kind == "queue-changed":
                self._order_dirty = True
            elif ev.kind in ("queued", "started", "finished", "failed", "cancelled"):
                self._ordered.append((ev.kind, jid, self._snapshot(ev)))
            elif ev.kind == "reproduce-checked":
                self._ordered.append((ev.kind, jid, dict(ev.data)))
            else:
                return
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._wake.emit()
        except RuntimeError:  # bridge deleted while the app closes
            pass

    @staticmethod
    def _snapshot(ev: JobEvent) -> dict[str, Any]:
        job = ev.job
        if job is None:
            return {}
        snap = {"tool": job.tool, "params": dict(job.recorded_params or job.params)}
        if ev.kind in ("finished", "failed", "cancelled"):
            dur = 0.0
            if job.started_at is not None and job.finished_at is not None:
                dur = job.finished_at - job.started_at
            snap.update(results=list(job.results), result_ids=list(job.result_ids), run_id=job.run_id,
                        error=job.error or "", traceback=job.traceback or "", seed=job.seed, duration=dur)
        return snap

    # --- GUI thread ----------------------------------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            ordered, self._ordered = self._ordered, []
            progress, self._latest_progress = self._latest_progress, OrderedDict()
            previews, self._latest_preview = self._latest_preview, OrderedDict()
            metrics, self._metrics = self._metrics, []
            order_dirty, self._order_dirty = self._order_dirty, False
            self._wake_pending = False
        finished_now = set()
        for kind, jid, snap in ordered:
            if kind == "queued":
                title = self._titles.get(jid) or _title(snap["tool"], snap["params"])
                self._titles[jid] = title
                self.queued.emit(jid, title)
            elif kind == "started":
                self.started.emit(jid)
                # progress that arrived before "started" was drained belongs after it
            elif kind == "reproduce-checked":
                self.reproduceChecked.emit(snap["run_id"], bool(snap["matched"]), str(snap["message"]))
            else:
                # deliver the last progress/preview first so the bar ends where the job ended
                if jid in progress:
                    self.progress.emit(jid, *progress.pop(jid))
                previews.pop(jid, None)
                status = {"finished": "ok", "failed": "failed", "cancelled": "cancelled"}[kind]
                self.finished.emit(jid, Outcome(status=status, results=snap.get("results", []),
                                                result_ids=snap.get("result_ids", []), run_id=snap.get("run_id"),
                                                error=snap.get("error", ""), traceback=snap.get("traceback", ""),
                                                seed=snap.get("seed"), duration=snap.get("duration", 0.0),
                                                params=snap.get("params", {}), tool=snap.get("tool")))
                finished_now.add(jid)
        for jid, args in progress.items():
            if jid not in finished_now:
                self.progress.emit(jid, *args)
        for jid, img in previews.items():
            if jid not in finished_now and img is not None:
                self.preview.emit(jid, img)
        for m in metrics:
            self.metric.emit(*m)
        if order_dirty:
            try:
                runner = self.controller.runner
                self.orderChanged.emit([j.id for j in runner.queued()] if runner is not None else [])
            except Exception:
                log.debug("could not read the queue order", exc_info=True)

    def detach(self) -> None:
        self.controller.remove_listener(self._on_event)
