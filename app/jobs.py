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
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from app import api, devices, results_io

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
    recorded_params: dict[str, Any] = field(default_factory=dict)
    parent_run_id: Optional[int] = None  # recorded lineage when given; else the run of the first input
    _step_times: list = field(default_factory=list, repr=False)  # (step, time): the first and the last
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
    def eta_s(self) -> Optional[float]:
        """Seconds left: the mean time per unit since the first report past step 0 (what came before
        it, such as loading a model, is not counted) times the units left. A mean over the whole run so far,
        not over the last few steps, so the estimate converges as the run goes on; the window and
        the command line both show this one. ``None`` until two reports are seen."""
        if self.total <= 0 or len(self._step_times) < 2:
            return None
        (s0, t0), (s1, t1) = self._step_times[0], self._step_times[-1]
        if s1 <= s0:
            return None
        per_step = (t1 - t0) / (s1 - s0)
        return max(0.0, per_step * (self.total - self.step))

    @property
    def fraction(self) -> float:
        return (self.step / self.total) if self.total > 0 else 0.0

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job is done; False on timeout."""
        return self._done.wait(timeout)


@dataclass(frozen=True)
class JobEvent:
    """``kind`` is one of queued, started, progress, preview, metric, finished, failed,
    cancelled, queue-changed. ``data``: progress -> step, total, message, eta_s; preview ->
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
    ``IMPLICIT_STUDIO_DEVICE``, set by ``implicit-studio --device D``, else the settings).
    """

    def __init__(
        self,
        manager: Any = None,
        store: Any = None,
        *,
        settings: Any = None,
        device: Optional[str] = None,
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

    # -- listeners ----------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, kind: str, job: Optional[Job], **data: Any) -> None:
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
                device: Optional[str] = None, parent_run_id: Optional[int] = None) -> Job:
        """Validate and build a job without queueing it (:class:`~app.api.ParamError` on bad input)."""
        spec = self._tool(tool)
        values = spec.validate(dict(params or {}))
        pref = devices.parse_device(device or self.device)
        queue = devices.queue_name(pref, spec.backends)
        return Job(id=next(self._ids), tool=spec, params=values, device_preference=pref, queue=queue,
                   parent_run_id=parent_run_id)

    def submit(self, tool: api.ToolSpec | str, params: Optional[Mapping[str, Any]] = None, *,
               device: Optional[str] = None, held: bool = False, parent_run_id: Optional[int] = None) -> Job:
        """Queue a run; returns at once. Raises :class:`~app.api.ParamError` for bad parameters."""
        job = self.prepare(tool, params, device, parent_run_id)
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
                 device: Optional[str] = None, listener: Optional[Listener] = None) -> Job:
        """Run a job in the calling thread (the CLI and tests) and return it when done."""
        job = self.prepare(tool, params, device)
        if listener is not None:
            self.add_listener(listener)
        try:
            self.run_job(job)
        finally:
            if listener is not None:
                self.remove_listener(listener)
        return job

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
            except Exception:  # noqa: BLE001 - the worker must survive anything
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

    def _execute(self, job: Job) -> None:
        tool = job.tool
        job.state = JobState.RUNNING
        job.started_at = time.time()
        last_preview = [0.0]

        def on_progress(step: int, total: int, message: str) -> None:
            job.step, job.total, job.message = step, total, message
            mark = (step, time.monotonic())
            if step > 0:  # the first report past step 0 (a model loaded, a step made) and the latest
                job._step_times[1:] = [mark]
            self._emit("progress", job, step=step, total=total, message=message, eta_s=job.eta_s)

        def on_preview(image: api.ImageResult) -> None:
            now = time.monotonic()
            if now - last_preview[0] >= self.preview_interval_s:
                last_preview[0] = now
                self._emit("preview", job, image=image)

        def on_metric(name: str, step: float, value: float) -> None:
            job.metrics.setdefault(name, []).append((step, value))
            self._emit("metric", job, name=name, step=step, value=value)

        try:
            # seeds, device, inputs: anything wrong here is the user's input, reported plainly
            params = dict(job.params)
            seed = None
            for p in tool.params:
                if isinstance(p, api.SeedParam):
                    params[p.name] = api.SeedParam.resolve(params[p.name])
                    seed = params[p.name] if seed is None else seed
            job.seed = seed if seed is not None else api.SeedParam.resolve(-1)
            choice = devices.choose(job.device_preference, tool.backends)
            job.device, job.dtype = choice.device, choice.dtype
            recorded = {p.name: p.to_json(params[p.name]) for p in tool.params}
            job.recorded_params = recorded
            inputs = [int(v[len(api.RESULT_REF_PREFIX):]) for p in tool.params if isinstance(p, api.ImageParam)
                      for v in [params[p.name]] if isinstance(v, str) and v.startswith(api.RESULT_REF_PREFIX)]
            model_ref = model_hash_value = None
            for p in tool.params:
                if isinstance(p, api.ModelParam):
                    model_ref = params[p.name]
                    path = self._model_path(p, model_ref)
                    model_hash_value = api.model_fingerprint(path) if path is not None else None
                    break
            for p in tool.params:
                if isinstance(p, api.ImageParam) and params[p.name] is not None:
                    params[p.name] = self.load_input(params[p.name], "mask" if isinstance(p, api.MaskParam) else "image")
            plugin_version = None
            if self.manager is not None and tool.plugin in getattr(self.manager, "records", {}):
                plugin_version = self.manager.records[tool.plugin].version
            if self.store is not None:
                job.run_id = self.store.begin_run(
                    tool_id=tool.id, plugin=tool.plugin or "unregistered", plugin_version=plugin_version or "",
                    params=recorded, seed=job.seed, model_ref=model_ref, model_hash=model_hash_value,
                    device=choice.device, backend=",".join(tool.backends), inputs=inputs,
                    parent_run_id=job.parent_run_id)
        except (api.ToolError, api.ParamError, devices.DeviceError) as exc:
            self._fail(job, str(exc), None)
            return
        except Exception as exc:  # noqa: BLE001 - storage or reader failure
            self._fail(job, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return

        plugin_settings = self.settings.plugin_settings() if self.settings is not None else {}
        ctx = self._context(
            tool.plugin, device=choice.device, dtype=choice.dtype, seed=job.seed, ort_providers=choice.ort_providers,
            tool_id=tool.id, run_id=job.run_id, settings=plugin_settings,
            on_progress=on_progress, on_preview=on_preview, on_metric=on_metric,
            input_loader=lambda ref: self.load_input(ref, "image"), cancel_event=job._cancel,
        )
        self._emit("started", job, device=choice.device, dtype=choice.dtype, seed=job.seed)
        self._notify("run-started", job)
        try:
            ctx.check_cancelled()
            fn = self._run_function(tool)
            out = self._guarded(tool.plugin, f"tool {tool.id!r}", fn, ctx, **params)
            results = _as_results(out, tool.id)
            if job.metrics:
                results.append(_metrics_table(job.metrics))
            job.results = results
            if self.store is not None:
                info = {"tool": tool.id, "plugin": tool.plugin, "plugin_version": plugin_version,
                        "params": recorded, "seed": job.seed, "device": choice.device,
                        "model": model_ref, "model_hash": model_hash_value, "backend": ",".join(tool.backends),
                        "run_id": job.run_id}
                for res in results:
                    enc = results_io.encode(res, info)
                    rid = self.store.add_result(job.run_id, enc.kind, enc.data, enc.ext, width=enc.width,
                                                height=enc.height, shape=enc.shape, metadata=enc.metadata)
                    job.result_ids.append(rid)
                # one duration: the job's own, recorded as the run's (history and CLI agree)
                job.finished_at = time.time()
                self.store.finish_run(job.run_id, "ok", finished_at=job.finished_at, duration_s=job.elapsed_s)
        except api.Cancelled:
            job.state = JobState.CANCELLED
            job.finished_at = time.time()
            self._record_end(job, "cancelled", None)
            job._done.set()
            self._emit("cancelled", job)
            self._notify("run-cancelled", job)
            return
        except (api.ToolError, api.ParamError) as exc:  # the user's to act on: the sentence, no traceback
            self._fail(job, str(exc), None)
            return
        except Exception as exc:  # noqa: BLE001 - PluginCallError and anything else
            original = getattr(exc, "original", exc)
            tb = getattr(exc, "traceback_text", None) or traceback.format_exc()
            if type(original).__module__.split(".")[0] == "storage":
                self._fail(job, f"the run could not be recorded in the session: {original}", tb)
            else:
                self._fail(job, f"tool {tool.id!r} failed: {type(original).__name__}: {original}", tb)
            return
        job.state = JobState.FINISHED
        job.finished_at = job.finished_at or time.time()
        job._done.set()
        self._emit("finished", job, results=list(job.results), result_ids=list(job.result_ids))
        self._notify("run-finished", job)

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


def _as_results(out: Any, tool_id: str) -> list[api.Result]:
    if out is None:
        return []
    if isinstance(out, api.Result):
        return [out]
    if isinstance(out, (list, tuple)):
        bad = [x for x in out if not isinstance(x, api.Result)]
        if not bad:
            return list(out)
        raise TypeError(f"tool {tool_id!r} returned a {type(bad[0]).__name__} among its results; "
                        f"return app.api result objects")
    raise TypeError(f"tool {tool_id!r} returned {type(out).__name__}; return an app.api Result, a list of them or None")


def _metrics_table(metrics: Mapping[str, list[tuple[float, float]]]) -> api.TableResult:
    rows = [(name, step, value) for name, points in metrics.items() for step, value in points]
    return api.TableResult(columns=("metric", "step", "value"), rows=rows, label="metrics",
                           metadata={"role": "metrics"})


def open_session(folder: str | os.PathLike, *, recover: bool = True) -> Any:
    """Open the session store in ``folder`` (created if missing) to record this process's runs.

    With ``recover`` (the default) runs still marked ``running`` in it, left by a process that
    crashed or was killed, are first marked failed (``SessionStore.recover_interrupted``), so the
    history never shows a run as running for ever. Call it before this process starts any run.
    If that bookkeeping cannot be written (a busy or read-only session) the session is opened
    all the same. Raises ``storage.StorageError``, whose message is a sentence for the user,
    when the session cannot be opened.
    """
    from storage import SessionStore, StorageError

    store = SessionStore.open(folder)
    if recover:
        try:
            ids = store.recover_interrupted()
        except StorageError as exc:
            _log.warning("could not mark the interrupted runs of %s as failed: %s", folder, exc)
        else:
            if ids:
                _log.info("session %s: %d run(s) left running by a stopped process marked failed: %s",
                          folder, len(ids), ", ".join(map(str, ids)))
    return store


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
