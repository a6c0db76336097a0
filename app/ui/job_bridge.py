"""Adapts the services' :class:`app.jobs.JobRunner` to Qt signals.

The runner calls its listeners on its worker threads. The listener here never touches a widget:
it stores the event and wakes the GUI thread through a queued signal. Progress and preview
events are coalesced per job (only the latest is delivered), so a tool that reports thousands of
steps a second cannot flood the event loop; queued/started/finished events are delivered in order.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from app.ui import adapters as ad

log = logging.getLogger("implicit_studio.ui.jobs")


@dataclass
class Outcome:
    """How a job ended, as the window sees it."""

    status: str  # "ok", "failed" or "cancelled"
    results: list = field(default_factory=list)
    result_ids: list = field(default_factory=list)
    run_id: Any = None
    error: str = ""
    traceback: str = ""
    seed: Any = None
    duration: float = 0.0
    params: dict = field(default_factory=dict)


def _preview_qimage(image: Any) -> Any:
    """Turn a preview into a QImage here, on the worker thread (QImage, unlike QPixmap, may be
    made off the GUI thread), so the GUI thread only has to paint it."""
    if image is None:
        return None
    try:
        from app.ui.imaging import to_qimage  # noqa: PLC0415

        return to_qimage(getattr(image, "image", image))
    except Exception:  # the GUI thread will try again and report
        return image


def _title(tool: Any, params: dict) -> str:
    title = ad.tool_title(tool)
    for key in ("prompt", "text", "edit_prompt", "target_prompt"):
        v = params.get(key)
        if isinstance(v, str) and v.strip():
            snippet = " ".join(v.split())
            return f"{title}: {snippet[:40]}{'…' if len(snippet) > 40 else ''}"
    return title


class JobBridge(QObject):
    queued = Signal(object, str)  # job id, title
    started = Signal(object)  # job id
    progress = Signal(object, int, int, str)  # job id, step, total, message
    preview = Signal(object, object)  # job id, ImageResult
    metric = Signal(object, str, float, float)
    finished = Signal(object, object)  # job id, Outcome
    orderChanged = Signal(list)  # ids of waiting jobs in run order
    _wake = Signal()

    def __init__(self, manager: Any, session: Any, settings: Any = None, runner: Any = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.manager = manager
        self.session = session
        self.settings = settings
        self.runner: Any = None
        self._lock = threading.Lock()
        self._ordered: list[tuple[str, Any, dict]] = []  # queued/started/finished events in order
        self._latest_progress: OrderedDict[Any, tuple] = OrderedDict()
        self._latest_preview: OrderedDict[Any, Any] = OrderedDict()
        self._metrics: list[tuple] = []
        self._order_dirty = False
        self._wake_pending = False
        self._titles: dict[Any, str] = {}
        self.paused = False  # the whole queue is held: running jobs finish, waiting ones wait
        self._paused_queues: set[str] = set()
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        if runner is not None:
            self.attach_runner(runner)

    def attach_runner(self, runner: Any = None) -> Any:
        """Use ``runner``, or build the services' job runner on the session's store. Done once the
        session is open (importing the runner is kept off the start-up path)."""
        if self.runner is not None:
            return self.runner
        if runner is None:
            from app.jobs import JobRunner  # noqa: PLC0415

            store = self.session.store if self.session is not None else None
            runner = JobRunner(self.manager, store, settings=self.settings, worker_niceness=5)
        self.runner = runner
        self.runner.add_listener(self._on_event)
        return runner

    # --- worker threads ---------------------------------------------------------------------
    def _on_event(self, ev: Any) -> None:
        job = ev.job
        jid = job.id if job is not None else None
        with self._lock:
            if ev.kind == "progress":
                self._latest_progress[jid] = (int(ev.data.get("step", 0)), int(ev.data.get("total", 0)), str(ev.data.get("message", "")))
            elif ev.kind == "preview":
                self._latest_preview[jid] = _preview_qimage(ev.data.get("image"))
            elif ev.kind == "metric":
                self._metrics.append((jid, str(ev.data.get("name")), float(ev.data.get("step", 0)), float(ev.data.get("value", 0))))
            elif ev.kind == "queue-changed":
                self._order_dirty = True
            elif ev.kind in ("queued", "started", "finished", "failed", "cancelled"):
                self._ordered.append((ev.kind, jid, self._snapshot(ev)))
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
    def _snapshot(ev: Any) -> dict:
        job = ev.job
        if job is None:
            return {}
        snap = {"tool": job.tool, "params": dict(getattr(job, "recorded_params", {}) or job.params)}
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
                                                params=snap.get("params", {})))
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
                self.orderChanged.emit([j.id for j in self.runner.queued()])
            except Exception:
                log.debug("could not read the queue order", exc_info=True)

    # --- requests from the window ----------------------------------------------------------------
    def submit(self, tool: Any, params: dict, parents: list | None = None, title: str | None = None) -> Any:
        """Queue a run; returns the job id. ``ParamError`` for bad parameters."""
        self.attach_runner()
        if self.paused:
            # hold the job's device queue before the job enters it, so it cannot start
            self._pause_queue(self.runner.prepare(tool, params).queue)
        job = self.runner.submit(tool, params)
        # "queued" is delivered to the GUI thread later (queued signal), so the title set here wins
        self._titles[job.id] = title or _title(tool, dict(job.params))
        return job.id

    def cancel(self, job_id: Any) -> bool:
        if self.runner is None:
            return False
        ok = self.runner.cancel(job_id)
        parent = self.parent()
        queue = getattr(parent, "queue", None)
        if ok and queue is not None and job_id in queue.jobs and queue.jobs[job_id].status == "running":
            queue.set_status(job_id, "cancelling")
        return ok

    def move(self, job_id: Any, delta: int) -> None:
        if self.runner is None:
            return
        waiting = [j.id for j in self.runner.queued()]
        if job_id not in waiting:
            return
        job = self.runner.job(job_id)
        same_queue = [j.id for j in self.runner.queued(job.queue)]
        idx = same_queue.index(job_id)
        try:
            self.runner.move(job_id, max(0, idx + delta))
        except ValueError:
            log.info("job %s is no longer waiting", job_id)

    def set_paused(self, paused: bool) -> None:
        """Hold the whole queue (the running job finishes; waiting jobs do not start) or resume it."""
        self.paused = bool(paused)
        if self.runner is None:
            return  # applied to each queue as jobs are submitted
        if self.paused:
            for name in sorted({j.queue for j in self.runner.jobs()}):
                self._pause_queue(name)
        else:
            for name in sorted(self._paused_queues):
                self.runner.resume(name)
            self._paused_queues.clear()

    def _pause_queue(self, name: str) -> None:
        if name not in self._paused_queues:
            self.runner.pause(name)
            self._paused_queues.add(name)

    def remove(self, job_id: Any) -> bool:
        return self.runner is not None and self.runner.remove(job_id)

    def cancel_all(self) -> None:
        if self.runner is not None:
            self.runner.cancel_all()

    def device_label(self) -> str:
        try:
            from app import devices  # noqa: PLC0415

            pref = getattr(self.runner, "device", None) or (getattr(self.settings, "device", None) or "auto")
            hint = devices.accelerator_hint() if pref == "auto" else pref
            return f"device: {hint}" + (" (auto)" if pref == "auto" else "")
        except Exception:
            return ""

    def shutdown(self) -> None:
        if self.runner is None:
            return
        try:
            self.runner.remove_listener(self._on_event)
            self.runner.shutdown(cancel=True, timeout=5.0)
        except Exception:
            log.warning("job runner did not shut down cleanly", exc_info=True)
