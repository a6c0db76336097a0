"""The job runner: runs tools off the caller's thread, one job at a time per device (no Qt).

A job is one run of a tool with validated parameters. :class:`JobRunner` keeps one queue and one
worker thread per device (``"cpu"``, ``"cuda"``, ``"mps"``): numpy-only tools go to the CPU queue,
torch/ONNX tools to the chosen accelerator's queue. Queued jobs can be reordered, held (paused),
resumed and removed; a running job is cancelled cooperatively at its next
``ctx.progress()``/``ctx.check_cancelled()``.

Everything that happens is delivered as a :class:`JobEvent` to listeners, on the worker thread:
``queued``, ``started``, ``progress`` (with ETA), ``preview``, ``metric``, ``finished``,
``failed``, ``cancelled``, ``queue-changed``. The window adapts them to Qt signals; the CLI
prints them.

Every run is recorded in the session (when a store is given) through the storage API:
``begin_run`` before the tool starts, ``add_result`` per result, ``finish_run`` with the status.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from app import api, crashguard, devices, results_io

_log = logging.getLogger("implicit_studio.jobs")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    """One run of a tool. Read its fields from listeners; change it only through the runner."""

    id: int
    tool: api.ToolSpec
    params: dict[str, Any]
    device_preference: str
    queue: str
    #: the arithmetic asked for (app.devices.PRECISIONS); ``dtype`` is what it resolved to
    precision_preference: str = "auto"
    state: JobState = JobState.QUEUED
    held: bool = False
    step: int = 0
    total: int = 0
    message: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    seed: Optional[int] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    run_id: Optional[int] = None
    results: list[api.Result] = field(default_factory=list)
    result_ids: list[Any] = field(default_factory=list)
    metrics: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    error: Optional[str] = None
    traceback: Optional[str] = None
    param_error: Optional[api.ParamError] = None  # the tool refused a parameter value
    recorded_params: dict[str, Any] = field(default_factory=dict)
    parent_run_id: Optional[int] = None  # recorded lineage when given; else the run of the first input
    #: what the run's PNG text chunks say about it (tool, plugin, params, seed, model, model hash...)
    run_info: dict[str, Any] = field(default_factory=dict)
    model_ref: Optional[str] = None
    model_hash: Optional[str] = None
    plugin_version: Optional[str] = None
    #: The job whose run function ran this one with ``ctx.run_tool`` (None for a queued job).
    parent: Optional["Job"] = field(default=None, repr=False)
    #: Jobs this one ran with ``ctx.run_tool``, in order.
    children: list["Job"] = field(default_factory=list, repr=False)
    #: ``id()`` of an image or mask result this run's function holds -> (the reference it is
    #: known by in the session, a digest of its pixels): its own inputs as given and the stored
    #: results of the tools it ran, so one handed on unchanged to ``ctx.run_tool`` is recorded by
    #: reference, not kept again (:func:`known_ref`).
    known_refs: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)

    def remember_ref(self, result: Any, ref: str) -> None:
        digest = pixels_digest(result)
        if digest is not None:
            self.known_refs[id(result)] = (ref, digest)

    def known_ref(self, result: Any) -> Optional[str]:
        """The session reference of ``result`` if this run got it as such and its pixels are
        unchanged since (an edited copy is not the stored one), else None."""
        entry = self.known_refs.get(id(result))
        if entry is None or pixels_digest(result) != entry[1]:
            return None
        return entry[0]

    _step_times: list = field(default_factory=list, repr=False)  # (fraction, time): the first past step 0 and the last
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    @property
    def nested(self) -> bool:
        """True for a run started by another run's ``ctx.run_tool`` (it is not in a queue)."""
        return self.parent is not None

    @property
    def eta_s(self) -> Optional[float]:
        """Seconds left: the mean time per share of the run since the first report past step 0
        (what came before it, such as loading a model, is not counted) times the share left. A mean
        over the whole run so far, not over the last few steps, so the estimate converges as the run
        goes on; the window and the command line both show this one. Measured on the fraction done,
        so a bar whose total changes (a tool that runs other tools reports their steps inside its
        own) still gives a sensible figure. ``None`` until two reports are seen."""
        if self.total <= 0 or len(self._step_times) < 2:
            return None
        (f0, t0), (f1, t1) = self._step_times[0], self._step_times[-1]
        if f1 <= f0:
            return None
        per_fraction = (t1 - t0) / (f1 - f0)
        return max(0.0, per_fraction * (1.0 - self.fraction))

    @property
    def fraction(self) -> float:
        return (self.step / self.total) if self.total > 0 else 0.0

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job is done; False on timeout."""
        return self._done.wait(timeout)


@dataclass(frozen=True)
class JobEvent:
    """``kind`` is one of queued, started, progress, preview, metric, finished, failed,
    cancelled, queue-changed. ``data``: started -> device, dtype, seed, notes (what became of
    the precision asked for, if not what it says); progress -> step, total, message, eta_s; preview ->
    image (an ImageResult); metric -> name, step, value; failed -> error, traceback."""

    kind: str
    job: Optional[Job]
    data: Mapping[str, Any] = field(default_factory=dict)


Listener = Callable[[JobEvent], None]


# ---------------------------------------------------------------------------------------------
# runner
# ---------------------------------------------------------------------------------------------


class JobRunner:
    """Runs jobs, one at a time per device queue.

    ``manager``: a :class:`app.plugins.PluginManager` (resolves run functions through its guarded
    boundary, reads files through reader hooks, receives session events); ``store``: a
    ``storage`` ``SessionStore`` or ``None`` (runs are then not recorded); ``settings``: gives the
    plugin settings and default device; ``device``: the default device preference (else
    ``IMPLICIT_STUDIO_DEVICE``, set by ``implicit-studio --device D``, else the settings);
    ``precision``: the default arithmetic (else ``IMPLICIT_STUDIO_PRECISION``, set by
    ``implicit-studio --precision P``, else the settings' ``precision`` as it is when a job is
    prepared, so a change in Preferences applies to the next run).
    """

    def __init__(
        self,
        manager: Any = None,
        store: Any = None,
        *,
        settings: Any = None,
        device: Optional[str] = None,
        precision: Optional[str] = None,
        preview_interval_s: float = 0.15,
        listeners: Iterable[Listener] = (),
        worker_niceness: int = 0,
    ) -> None:
        self.manager = manager
        # Worker threads run this much "nicer" than the process (Linux: per-thread niceness), so
        # that a window's event loop wins the CPU whenever it has something to do; the threads
        # torch starts for a job inherit it. 0 leaves the workers as they are (CLI, tests).
        self.worker_niceness = int(worker_niceness)
        self.store = store
        self.settings = settings
        self.device = devices.parse_device(device or os.environ.get("IMPLICIT_STUDIO_DEVICE")
                                           or (settings.device if settings is not None else "auto"))
        self._precision = devices.parse_precision(precision) if precision else None
        self.preview_interval_s = preview_interval_s
        self._listeners: list[Listener] = list(listeners)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._queues: dict[str, list[Job]] = {}
        self._running: dict[str, Job] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._paused_queues: set[str] = set()
        self._jobs: dict[int, Job] = {}
        self._closing = False
        #: The run controller that submits to this runner (set by ``RunController.attach``);
        #: ``ctx.run_tool`` goes through it.
        self.controller: Any = None

    @property
    def precision(self) -> str:
        """The precision new jobs ask for unless they name one: the one given to the runner, else
        ``IMPLICIT_STUDIO_PRECISION``, else the settings' (read now), else ``auto``."""
        if self._precision is not None:
            return self._precision
        return devices.parse_precision(os.environ.get("IMPLICIT_STUDIO_PRECISION")
                                       or (self.settings.precision if self.settings is not None else "auto"))

    @precision.setter
    def precision(self, value: Optional[str]) -> None:
        self._precision = devices.parse_precision(value) if value else None

    # -- listeners ----------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, kind: str, job: Optional[Job], **data: Any) -> None:
        if job is not None and job.parent is not None:
            # a nested run is not a job of the queue: its start and end are told as child-*
            # events (its progress and previews went to the run that started it)
            if kind not in ("started", "finished", "failed", "cancelled"):
                return
            kind = f"child-{kind}"
            data["parent_job_id"] = job.parent.id
        event = JobEvent(kind, job, data)
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop jobs
                _log.exception("job listener failed on %s", kind)

    # -- submitting -----------------------------------------------------------------------------
    def _tool(self, tool: api.ToolSpec | str) -> api.ToolSpec:
        if isinstance(tool, api.ToolSpec):
            return tool
        if self.manager is None:
            raise LookupError(f"unknown tool {tool!r}: no plugin manager")
        return self.manager.tool(tool)

    def prepare(self, tool: api.ToolSpec | str, params: Optional[Mapping[str, Any]] = None,
                device: Optional[str] = None, parent_run_id: Optional[int] = None,
                precision: Optional[str] = None) -> Job:
        """Validate and build a job without queueing it (:class:`~app.api.ParamError` on bad
        input, :class:`~app.devices.DeviceError` for an unknown device or precision name)."""
        spec = self._tool(tool)
        values = spec.validate(dict(params or {}))
        pref = devices.parse_device(device or self.device)
        prec = devices.parse_precision(precision or self.precision)
        queue = devices.queue_name(pref, spec.backends)
        return Job(id=next(self._ids), tool=spec, params=values, device_preference=pref, queue=queue,
                   precision_preference=prec, parent_run_id=parent_run_id)

    def submit(self, tool: api.ToolSpec | str, params: Optional[Mapping[str, Any]] = None, *,
               device: Optional[str] = None, held: bool = False, parent_run_id: Optional[int] = None,
               precision: Optional[str] = None) -> Job:
        """Queue a run; returns at once. Raises :class:`~app.api.ParamError` for bad parameters."""
        job = self.prepare(tool, params, device, parent_run_id, precision)
        job.held = held
        with self._cond:
            if self._closing:
                raise RuntimeError("the job runner is shut down")
            self._jobs[job.id] = job
            self._queues.setdefault(job.queue, []).append(job)
            self._ensure_worker(job.queue)
            self._cond.notify_all()
        self._emit("queued", job)
        self._emit("queue-changed", None, queue=job.queue)
        return job

    def run_sync(self, tool: api.ToolSpec | str, params: Optional[Mapping[str, Any]] = None, *,
                 device: Optional[str] = None, listener: Optional[Listener] = None,
                 precision: Optional[str] = None) -> Job:
        """Run a job in the calling thread (the CLI and tests) and return it when done."""
        job = self.prepare(tool, params, device, precision=precision)
        if listener is not None:
            self.add_listener(listener)
        try:
            self.run_job(job)
        finally:
            if listener is not None:
                self.remove_listener(listener)
        return job

    def run_nested(self, parent: Job, parent_ctx: api.RunContext, tool: api.ToolSpec | str,
                   params: Optional[Mapping[str, Any]] = None, *, device: Optional[str] = None,
                   parent_run_id: Optional[int] = None) -> Job:
        """Run ``tool`` for the run function of ``parent`` (its ``ctx.run_tool``), in this thread
        — the parent's worker thread, which is busy with the parent: queueing it would wait for
        ever — and return the finished job. It shares the parent's cancel event and queue, and
        reports its progress and previews through ``parent_ctx``. Validation, seeds, device,
        inputs, recording and results go through the same :meth:`_execute` as any job; the
        session records it as a child of ``parent_run_id``. Listeners see ``child-started`` and
        ``child-finished``/``child-failed``/``child-cancelled`` events (``parent_job_id`` in
        their data). :class:`~app.api.ParamError` for bad parameters."""
        job = self.prepare(tool, params, device or parent.device_preference, parent_run_id)
        job.queue = parent.queue
        job._cancel = parent._cancel
        job.parent = parent
        parent.children.append(job)
        self._execute(job, parent_ctx)
        return job

    def _run_tool_for(self, job: Job, ctx: api.RunContext, tool_id: str, params: dict[str, Any]) -> list[api.Result]:
        """``ctx.run_tool`` of ``job``'s run function: through the run controller attached to
        this runner (``RunController.attach``), the one path every run request takes."""
        if self.controller is None:
            raise api.ToolError(f"cannot run the tool {tool_id!r} from {job.tool.id!r}: this job runner has no run "
                                f"controller (make it with app.controller.RunController(manager, session, "
                                f"runner=...))")
        return self.controller.run_nested(job, ctx, tool_id, params)

    def run_job(self, job: Job) -> Job:
        """Run a job from :meth:`prepare` in the calling thread; :meth:`cancel` from another
        thread (or a ``KeyboardInterrupt`` handler) stops it at its next step."""
        with self._cond:
            self._jobs[job.id] = job
        self._execute(job)
        return job

    # -- queue operations -------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job the runner knows, oldest first."""
        with self._cond:
            return sorted(self._jobs.values(), key=lambda j: j.id)

    def job(self, job_id: int) -> Job:
        with self._cond:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise KeyError(f"no job {job_id}") from None

    def queued(self, queue: Optional[str] = None) -> list[Job]:
        """Jobs waiting, in the order they will run."""
        with self._cond:
            names = [queue] if queue else sorted(self._queues)
            return [j for n in names for j in self._queues.get(n, [])]

    def running(self) -> list[Job]:
        with self._cond:
            return list(self._running.values())

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or ask a running one to stop at its next step."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state.done:
                return False
            job._cancel.set()
            if job.state is JobState.QUEUED:
                q = self._queues.get(job.queue, [])
                if job in q:
                    q.remove(job)
                    self._finish_cancelled_unstarted(job)
                    changed = True
                else:
                    changed = False
            else:
                changed = False
        if changed:
            self._emit("cancelled", job)
            self._emit("queue-changed", None, queue=job.queue)
        return True

    def _finish_cancelled_unstarted(self, job: Job) -> None:
        job.state = JobState.CANCELLED
        job.finished_at = time.time()
        job._done.set()

    def cancel_all(self) -> None:
        for job in self.jobs():
            if not job.state.done:
                self.cancel(job.id)

    def remove(self, job_id: int) -> bool:
        """Take a queued job out of the queue (it is forgotten, not recorded)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.QUEUED:
                return False
            q = self._queues.get(job.queue, [])
            if job in q:
                q.remove(job)
            del self._jobs[job_id]
            job._cancel.set()
            self._finish_cancelled_unstarted(job)
        self._emit("queue-changed", None, queue=job.queue)
        return True

    def move(self, job_id: int, index: int) -> None:
        """Move a queued job to position ``index`` of its queue (0 = next)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.QUEUED:
                raise ValueError(f"job {job_id} is not waiting in a queue")
            q = self._queues[job.queue]
            q.remove(job)
            q.insert(max(0, min(index, len(q))), job)
            self._cond.notify_all()
        self._emit("queue-changed", None, queue=job.queue)

    def hold(self, job_id: int, held: bool = True) -> None:
        """Hold a queued job (it is skipped until released) or release it."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.QUEUED:
                raise ValueError(f"job {job_id} is not waiting in a queue")
            job.held = held
            self._cond.notify_all()
        self._emit("queue-changed", None, queue=job.queue)

    def pause(self, queue: str = "cpu") -> None:
        """Stop starting new jobs from ``queue`` (the running one goes on)."""
        with self._cond:
            self._paused_queues.add(queue)
        self._emit("queue-changed", None, queue=queue)

    def resume(self, queue: str = "cpu") -> None:
        with self._cond:
            self._paused_queues.discard(queue)
            self._cond.notify_all()
        self._emit("queue-changed", None, queue=queue)

    def is_paused(self, queue: str) -> bool:
        with self._cond:
            return queue in self._paused_queues

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until no job is queued (unheld) or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                busy = bool(self._running) or any(
                    any(not j.held for j in q) and name not in self._paused_queues
                    for name, q in self._queues.items())
                if not busy:
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 0.5)

    def shutdown(self, cancel: bool = True, timeout: float = 10.0) -> None:
        """Stop the workers (cancelling running and queued jobs when ``cancel``)."""
        if cancel:
            self.cancel_all()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            workers = list(self._workers.values())
        for w in workers:
            w.join(timeout)

    # -- workers --------------------------------------------------------------------------------
    def _ensure_worker(self, queue: str) -> None:
        worker = self._workers.get(queue)
        if worker is not None and worker.is_alive():
            return
        worker = threading.Thread(target=self._worker_loop, args=(queue,), name=f"jobs-{queue}", daemon=True)
        self._workers[queue] = worker
        worker.start()

    def _next_job(self, queue: str) -> Optional[Job]:
        with self._cond:
            while True:
                if self._closing:
                    return None
                if queue not in self._paused_queues:
                    for job in self._queues.get(queue, []):
                        if not job.held:
                            self._queues[queue].remove(job)
                            self._running[queue] = job
                            job.state = JobState.RUNNING
                            return job
                self._cond.wait(1.0)

    def _lower_priority(self) -> None:
        if self.worker_niceness <= 0 or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
            return
        try:  # on Linux a thread id names one thread for setpriority
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.worker_niceness))
        except OSError as exc:  # not allowed here: run at the normal priority
            _log.debug("could not lower the job thread's priority: %s", exc)

    def _worker_loop(self, queue: str) -> None:
        self._lower_priority()
        while True:
            job = self._next_job(queue)
            if job is None:
                return
            self._emit("queue-changed", None, queue=queue)
            try:
                self._execute(job)
            except BaseException:  # noqa: BLE001 - the worker must survive anything
                _log.exception("job %s crashed the worker", job.id)
            finally:
                with self._cond:
                    self._running.pop(queue, None)
                    self._cond.notify_all()
                self._emit("queue-changed", None, queue=queue)

    # -- executing one job --------------------------------------------------------------------
    def _guarded(self, plugin: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.manager is not None:
            return self.manager.guarded(plugin, what, fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def _run_function(self, tool: api.ToolSpec) -> Callable[..., Any]:
        if self.manager is not None:
            return self.manager.run_function(tool)
        return api.load_ref(tool.run)

    def _context(self, plugin: str, **kwargs: Any) -> api.RunContext:
        """The run's context: wired to the manager's services (the plugin's resources, model
        names through ``studio_resolve_model``, rewards) when there is a manager."""
        if self.manager is not None:
            return self.manager.context(plugin, **kwargs)
        return api.RunContext(plugin=plugin, **kwargs)

    def _model_path(self, param: api.ModelParam, ref: str) -> Optional[Path]:
        """Where the run's model is, by the same resolution the run function uses
        (:meth:`app.api.RunContext.resolve_model`). ``None`` for one of the parameter's own
        ``aliases`` that no plugin resolves (a tool of API 1.0 that resolves it itself): the run
        is then recorded without a fingerprint."""
        try:
            return self._context("").resolve_model(ref)
        except api.ToolError:
            if ref in param.aliases:
                return None
            raise

    def _notify(self, kind: str, job: Job, error: Optional[str] = None) -> None:
        if self.manager is None:
            return
        path = None
        if self.store is not None:
            path = str(getattr(self.store, "root", getattr(self.store, "path", "")) or "") or None
        self.manager.notify(api.SessionEvent(kind=kind, session_path=path, run_id=job.run_id,
                                             tool_id=job.tool.id, error=error))

    def load_input(self, ref: Any, kind: str = "image") -> api.Result:
        """Resolve an input reference (``result:<id>``, a path, an array or a Result)."""
        if isinstance(ref, api.Result):
            res = ref
        elif isinstance(ref, str) and ref.startswith(api.RESULT_REF_PREFIX):
            if self.store is None:
                raise api.ToolError(f"cannot load {ref}: no session is open")
            res = load_stored_result(self.store, int(ref[len(api.RESULT_REF_PREFIX):]))
        elif isinstance(ref, (str, os.PathLike)):
            res = self._read_path(os.fspath(ref), kind)
        else:  # array or PIL image given in memory
            res = api.MaskResult(mask=ref) if kind == "mask" else api.ImageResult(image=ref)
        if kind == "mask" and isinstance(res, api.ImageResult):
            import numpy as np

            arr = res.image
            gray = arr[..., 3] if arr.shape[2] == 4 and arr[..., 3].min() < 255 else arr[..., :3].mean(axis=2)
            res = api.MaskResult(mask=np.asarray(gray, dtype=np.uint8), metadata=res.metadata)
        if kind == "image" and isinstance(res, api.MaskResult):
            res = api.ImageResult(image=res.mask, metadata=res.metadata)
        return res

    def _read_path(self, path: str, kind: str) -> api.Result:
        if not Path(path).is_file():
            raise api.ToolError(f"input file not found: {path}")
        if self.manager is not None and self.manager.readers_for(path):
            for res in self.manager.read_file(path):
                if res.kind in ("image", "mask"):
                    return res
        try:
            return api.ImageResult(image=api._read_image_file(path), metadata={"source": path})
        except Exception as exc:  # noqa: BLE001 - report as a user error
            raise api.ToolError(f"cannot read {path} as an image: {exc}") from None

    def _execute(self, job: Job, parent_ctx: Optional[api.RunContext] = None) -> None:
        """Run one job in this thread. ``parent_ctx`` is the context of the run whose
        ``ctx.run_tool`` started ``job`` (a nested run): its progress and previews then go to
        that run's bar and preview instead of events of their own."""
        tool = job.tool
        job.state = JobState.RUNNING
        job.started_at = time.time()
        last_preview = [0.0]
        to_parent = parent_ctx._child_progress(tool.title) if parent_ctx is not None else None

        def on_progress(step: int, total: int, message: str) -> None:
            job.step, job.total, job.message = step, total, message
            mark = (job.fraction, time.monotonic())
            if step > 0:  # the first report past step 0 (a model loaded, a step made) and the latest
                job._step_times[1:] = [mark]
            if to_parent is not None:
                to_parent(step, total, message)
            else:
                self._emit("progress", job, step=step, total=total, message=message, eta_s=job.eta_s)

        def on_preview(image: api.ImageResult) -> None:
            if parent_ctx is not None:
                parent_ctx.preview(image)  # the caller's throttle applies
                return
            now = time.monotonic()
            if now - last_preview[0] >= self.preview_interval_s:
                last_preview[0] = now
                self._emit("preview", job, image=image)

        def on_metric(name: str, step: float, value: float) -> None:
            job.metrics.setdefault(name, []).append((step, value))
            if parent_ctx is None:
                self._emit("metric", job, name=name, step=step, value=value)

        try:
            # seeds, device, inputs: anything wrong here is the user's input, reported plainly
            params = self._resolve_seeds(job)
            choice = devices.choose(job.device_preference, tool.backends, precision=job.precision_preference)
            job.device, job.dtype = choice.device, choice.dtype
            for note in choice.notes:  # what became of the precision asked for (fp16 on the CPU)
                logging.getLogger(f"implicit_studio.tool.{tool.id}").warning("%s", note)
            recorded = {p.name: p.to_json(params[p.name]) for p in tool.params}
            job.recorded_params = recorded
            inputs = [int(v[len(api.RESULT_REF_PREFIX):]) for p in tool.params if isinstance(p, api.ImageParam)
                      for v in [params[p.name]] if isinstance(v, str) and v.startswith(api.RESULT_REF_PREFIX)]
            for p in tool.params:
                if isinstance(p, api.ModelParam):
                    job.model_ref = params[p.name]
                    path = self._model_path(p, job.model_ref)
                    job.model_hash = api.model_fingerprint(path) if path is not None else None
                    break
            for p in tool.params:
                if isinstance(p, api.ImageParam) and params[p.name] is not None:
                    given = params[p.name]
                    params[p.name] = self.load_input(given, "mask" if isinstance(p, api.MaskParam) else "image")
                    if isinstance(given, str):
                        job.remember_ref(params[p.name], given)
            if self.manager is not None and tool.plugin in getattr(self.manager, "records", {}):
                job.plugin_version = self.manager.records[tool.plugin].version
            if self.store is not None:
                job.run_id = self.store.begin_run(
                    tool_id=tool.id, plugin=tool.plugin or "unregistered", plugin_version=job.plugin_version or "",
                    params=recorded, seed=job.seed, model_ref=job.model_ref, model_hash=job.model_hash,
                    device=choice.device, dtype=choice.dtype, backend=",".join(tool.backends), inputs=inputs,
                    parent_run_id=job.parent_run_id)
        except (api.ToolError, api.ParamError, devices.DeviceError) as exc:
            self._fail(job, str(exc), None)
            return
        except Exception as exc:  # noqa: BLE001 - storage or reader failure
            self._fail(job, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return

        plugin_settings = self.settings.plugin_settings() if self.settings is not None else {}
        ctx = self._context(
            tool.plugin, device=choice.device, dtype=choice.dtype, seed=job.seed if job.seed is not None else 0,
            ort_providers=choice.ort_providers, tool_id=tool.id, run_id=job.run_id, settings=plugin_settings,
            on_progress=on_progress, on_preview=on_preview, on_metric=on_metric,
            input_loader=lambda ref: self.load_input(ref, "image"), cancel_event=job._cancel,
            tools=self.manager.tools if self.manager is not None else {},
            tool_runner=lambda c, tool_id, values: self._run_tool_for(job, c, tool_id, values),
        )
        self._emit("started", job, device=choice.device, dtype=choice.dtype, seed=job.seed, notes=list(choice.notes))
        self._notify("run-started", job)
        try:
            ctx.check_cancelled()
            fn = self._run_function(tool)
            # the results are checked inside the plugin's boundary: a bad one is its failure; a native
            # crash is traced to this tool's plugin (nested runs share the one fatal-error log)
            with crashguard.watching(self.store):
                results = self._guarded(tool.plugin, f"tool {tool.id!r}",
                                        lambda: _as_results(fn(ctx, **params), tool.id))
            if job.metrics:
                results.append(_metrics_table(job.metrics))
            job.results = results
            self._store_results(job, results)
            if self.store is not None:
                # one duration: the job's own, recorded as the run's (history and CLI agree)
                job.finished_at = time.time()
                self.store.finish_run(job.run_id, "ok", finished_at=job.finished_at, duration_s=job.elapsed_s)
        except api.Cancelled as exc:
            self._cancelled(job, exc)
            return
        except api.ParamError as exc:  # a value the tool refused: bad input, the sentence, no traceback
            job.param_error = exc
            self._fail(job, str(exc), None)
            return
        except api.ToolError as exc:  # the user's to act on: the sentence, no traceback
            self._fail(job, str(exc), None)
            return
        except BaseException as exc:  # noqa: BLE001 - PluginCallError, SystemExit and anything else
            if crashguard.from_the_user(exc):
                raise  # Ctrl-C on the command line: it records the run as cancelled
            original = getattr(exc, "original", exc)
            tb = getattr(exc, "traceback_text", None) or traceback.format_exc()
            if type(original).__module__.split(".")[0] == "storage":
                self._fail(job, f"the run could not be recorded in the session: {original}", tb)
            else:
                self._fail(job, f"tool {tool.id!r} of plugin {tool.plugin!r} failed: "
                                f"{crashguard.describe(original)}", tb)
            return
        job.state = JobState.FINISHED
        job.finished_at = job.finished_at or time.time()
        job._done.set()
        self._emit("finished", job, results=list(job.results), result_ids=list(job.result_ids))
        self._notify("run-finished", job)

    def _resolve_seeds(self, job: Job) -> dict[str, Any]:
        """The job's parameters with every random seed drawn (``SeedParam`` ``-1``, the ``-1``
        entries of a ``SeedListParam``), and ``job.seed``: the run's seed (its first
        ``SeedParam``; drawn for a seeded tool without one; ``None`` for ``seeded=False``)."""
        tool = job.tool
        params = dict(job.params)
        seed = None
        for p in tool.params:
            if isinstance(p, api.SeedParam):
                params[p.name] = api.SeedParam.resolve(params[p.name])
                seed = params[p.name] if seed is None else seed
            elif isinstance(p, api.SeedListParam):
                params[p.name] = p.resolve(params[p.name])
        if seed is None and tool.seeded:
            seed = api.SeedParam.resolve(-1)
        job.seed = seed
        return params

    @staticmethod
    def _run_info(job: Job) -> dict[str, Any]:
        """What a run's image files carry in their text chunks (``--out`` files too, through
        ``job.run_info``): tool, plugin and its version, parameters, seed, model and fingerprint,
        device and dtype, back-ends."""
        tool = job.tool
        return {"tool": tool.id, "plugin": tool.plugin or None, "plugin_version": job.plugin_version,
                "params": job.recorded_params, "seed": job.seed, "device": job.device, "dtype": job.dtype,
                "model": job.model_ref,
                "model_hash": job.model_hash, "backend": ",".join(tool.backends), "run_id": job.run_id}

    def _store_results(self, job: Job, results: list[api.Result]) -> None:
        job.run_info = info = self._run_info(job)
        if self.store is None or job.run_id is None:
            return
        for res in results:
            enc = results_io.encode(res, info)
            rid = self.store.add_result(job.run_id, enc.kind, enc.data, enc.ext, width=enc.width,
                                        height=enc.height, shape=enc.shape, metadata=enc.metadata)
            job.result_ids.append(rid)

    def _cancelled(self, job: Job, exc: api.Cancelled) -> None:
        """Record a cancelled run with the results it kept (``Cancelled(results=...)``)."""
        error = None
        try:
            kept = _as_results(list(exc.results), job.tool.id)
            if kept and job.metrics:  # what the tool kept, with the curves that led to it
                kept.append(_metrics_table(job.metrics))
            job.results = kept
            self._store_results(job, kept)
        except Exception as store_exc:  # noqa: BLE001 - still a cancelled run; say what was lost
            error = f"the results kept on cancel could not be stored: {type(store_exc).__name__}: {store_exc}"
            _log.warning("job %s (%s): %s", job.id, job.tool.id, error, exc_info=True)
        job.state = JobState.CANCELLED
        job.finished_at = time.time()
        job.error = error
        self._record_end(job, "cancelled", error)
        job._done.set()
        self._emit("cancelled", job, results=list(job.results), result_ids=list(job.result_ids))
        self._notify("run-cancelled", job)

    def _record_end(self, job: Job, status: str, error: Optional[str]) -> None:
        if self.store is None or job.run_id is None:
            return
        try:
            self.store.finish_run(job.run_id, status, error=error, finished_at=job.finished_at,
                                  duration_s=job.elapsed_s if job.finished_at is not None else None)
        except Exception:  # noqa: BLE001 - do not hide the original outcome
            _log.exception("could not record the end of run %s", job.run_id)

    def _fail(self, job: Job, message: str, tb: Optional[str]) -> None:
        job.state = JobState.FAILED
        job.error = message
        job.traceback = tb
        job.finished_at = time.time()
        self._record_end(job, "failed", message)
        job._done.set()
        _log.warning("job %s (%s) failed: %s", job.id, job.tool.id, message)
        self._emit("failed", job, error=message, traceback=tb)
        self._notify("run-failed", job, error=message)


def pixels_digest(result: Any) -> Optional[str]:
    """A digest of an image or mask result's pixels (shape included); None for anything else."""
    import hashlib

    if isinstance(result, api.ImageResult):
        arr = result.image
    elif isinstance(result, api.MaskResult):
        arr = result.mask
    else:
        return None
    h = hashlib.blake2b(str(arr.shape).encode(), digest_size=16)
    h.update(memoryview(arr).cast("B") if arr.flags.c_contiguous else arr.tobytes())
    return h.hexdigest()


def _as_results(out: Any, tool_id: str) -> list[api.Result]:
    """The results a run function returned, as a list; ``TypeError`` naming what is wrong (not a
    result, or metadata that cannot be stored as JSON, by its key)."""
    if out is None:
        return []
    if isinstance(out, api.Result):
        out = [out]
    elif isinstance(out, (list, tuple)):
        bad = [x for x in out if not isinstance(x, api.Result)]
        if bad:
            raise TypeError(f"tool {tool_id!r} returned a {type(bad[0]).__name__} among its results; "
                            f"return app.api result objects")
    else:
        raise TypeError(f"tool {tool_id!r} returned {type(out).__name__}; return an app.api Result, a list of "
                        f"them or None")
    results = list(out)
    for i, res in enumerate(results, 1):
        if not isinstance(res.metadata, dict):
            raise TypeError(f"tool {tool_id!r}: the metadata of result {i} ({res.kind}) is a "
                            f"{type(res.metadata).__name__}; it must be a dict")
        res.metadata = {str(k): _json_value(v, f"metadata[{k!r}]", tool_id, i, res.kind)
                        for k, v in res.metadata.items()}
    return results


def _json_value(value: Any, where: str, tool_id: str, index: int, kind: str) -> Any:
    """``value`` as JSON can store it: numbers, text, booleans, None, lists and dicts of them
    (numpy scalars become Python numbers); ``TypeError`` naming the key for anything else, which
    would otherwise be stored as a meaningless ``<object at 0x...>``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"tool {tool_id!r}: {where} of result {index} ({kind}) is {value}, which JSON "
                            f"cannot store; use None or a string")
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _json_value(value.item(), where, tool_id, index, kind)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]", tool_id, index, kind) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"tool {tool_id!r}: {where} of result {index} ({kind}) has the key {k!r}; "
                                f"JSON keys are text")
            out[k] = _json_value(v, f"{where}[{k!r}]", tool_id, index, kind)
        return out
    raise TypeError(f"tool {tool_id!r}: {where} of result {index} ({kind}) is {_short_repr(value)} (type "
                    f"{type(value).__name__}), which cannot be stored as JSON; store numbers, text, lists or dicts "
                    f"(for an array, .tolist())")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _metrics_table(metrics: Mapping[str, list[tuple[float, float]]]) -> api.TableResult:
    rows = [(name, step, value) for name, points in metrics.items() for step, value in points]
    return api.TableResult(columns=("metric", "step", "value"), rows=rows, label="metrics",
                           metadata={"role": "metrics"})


def open_session(folder: str | os.PathLike, *, recover: bool = True) -> Any:
    """Open the session store in ``folder`` (created if missing) to record this process's runs.

    With ``recover`` (the default) runs still marked ``running`` whose process is gone (it
    crashed or was killed; another live process's runs are left alone) are first marked failed,
    so the history never shows a run as running for ever; :func:`interrupted_runs` then tells
    which tools they were, and which plugin crashed the application if one did. Leftovers of
    interrupted writes are removed in the background. If that bookkeeping cannot be written (a
    busy, damaged or read-only session) the session is opened all the same. Raises
    ``storage.StorageError``, whose message is a sentence for the user, when the session cannot
    be opened.
    """
    from storage import SessionStore, StorageError

    store = SessionStore.open(folder)
    if store.damage:
        _log.warning("the session %s is damaged (%s): runs cannot be recorded in it; 'implicit-studio session "
                     "repair' copies what it holds into a new session", folder, "; ".join(store.damage[:2]))
    crashguard.prepare(store)
    if recover:
        try:
            runs = store.recover_interrupted_runs()
        except StorageError as exc:
            _log.warning("could not mark the interrupted runs of %s as failed: %s", folder, exc)
        else:
            crashguard.remember(store, runs)
            if runs:
                _log.info("session %s: %d run(s) left running by a stopped process marked failed: %s",
                          folder, len(runs), ", ".join(str(r.run_id) for r in runs))
        store.collect_orphans_in_background()
    return store


def interrupted_runs(store: Any) -> list[Any]:
    """The runs :func:`open_session` found interrupted (``storage.InterruptedRun``: run id, tool,
    plugin, and the fatal error when the application crashed): for the window's "disable this
    plugin?" question and the command line's note."""
    return crashguard.recovered(store)


def load_stored_result(store: Any, result_id: int) -> api.Result:
    """Read a result back from the session store and decode it (``ToolError`` if it is missing)."""
    try:
        info = store.get_result(result_id)
        data = store.read_result(result_id)
    except KeyError as exc:  # storage.NotFoundError
        raise api.ToolError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - storage errors carry a sentence
        if type(exc).__module__.startswith("storage"):
            raise api.ToolError(str(exc)) from None
        raise
    meta = dict(info.metadata or {})
    meta.setdefault("result_id", result_id)
    meta.setdefault("run_id", info.run_id)
    return results_io.decode(info.kind, data, info.ext, meta)
