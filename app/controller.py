"""One run request, one controller (no Qt).

A run is one serialisable record, :class:`RunRequest` (tool, parameters, seed, model, device,
parent runs). The window, the command line — and later ``ctx.run_tool`` and a batch engine —
submit such records to one :class:`RunController`, which wraps the job runner
(:class:`app.jobs.JobRunner`) and the open session (:class:`app.session_view.SessionView`):

- :meth:`RunController.request` turns form values into a request (an input given in memory, such
  as a painted mask, is kept in the session first, so the request names it ``result:<id>``);
- :meth:`~RunController.submit` queues a request, :meth:`~RunController.run` runs one in the
  calling thread (the CLI);
- :meth:`~RunController.reproduce` re-runs a recorded run with its parameters, seed and model and,
  when it finishes, checks bit for bit that it made the same outputs (a ``reproduce-checked``
  event);
- :meth:`~RunController.send_to` gives the values that open another tool on a stored result;
- :meth:`~RunController.compare` gives the two sides of a comparison and the parameters that differ;
- the queue: :meth:`~RunController.cancel`, :meth:`~RunController.move`,
  :meth:`~RunController.remove`, :meth:`~RunController.set_paused`.

Listeners (:meth:`~RunController.add_listener`) get the runner's :class:`app.jobs.JobEvent` s and
the controller's own ``reproduce-checked`` events, on whichever thread they happen; the window
adapts them to Qt signals (:mod:`app.ui.job_bridge`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Mapping, Optional

from app import api

if TYPE_CHECKING:
    from app.jobs import Job, JobEvent, JobRunner
    from app.plugins import PluginManager
    from app.session_view import SessionView
    from app.settings import Settings

log = logging.getLogger("implicit_studio.controller")

#: What a run records for an input that was given in memory and not kept (``ImageParam.to_json``).
_IN_MEMORY = ("<image given in memory>", "<mask given in memory>")


# ---------------------------------------------------------------------------------------------
# the request
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """One run of a tool, as a record that can be stored, sent and submitted again.

    - ``tool``: the tool id.
    - ``params``: parameter values by name, as the tool's form or command line gives them (file
      paths and ``result:<id>`` references for images; JSON-safe once made by
      :meth:`RunController.request` with a session open). The tool's seed and model parameters
      are carried by ``seed`` and ``model`` instead.
    - ``seed``: the seed; ``None`` draws one at run time (the run records the one drawn).
    - ``model``: a model reference (a name the tool declares, or a local path); ``None`` is the
      tool's default.
    - ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``None`` is the settings'.
    - ``parents``: ids of the runs this run descends from (the first is recorded as its parent;
      without any, the run of its first ``result:<id>`` input is).
    """

    tool: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    model: Optional[str] = None
    device: Optional[str] = None
    parents: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.tool, str) or not self.tool:
            raise ValueError(f"a run request needs a tool id, got {self.tool!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"the parameters of a run request are a mapping of names to values, got "
                             f"{type(self.params).__name__}")
        object.__setattr__(self, "params", dict(self.params))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= api.SEED_MAX):
            raise ValueError(f"the seed of a run request is a whole number from 0 to {api.SEED_MAX} "
                             f"(or null for a random one), got {self.seed!r}")
        for name in ("model", "device"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ValueError(f"the {name} of a run request is a non-empty text or null, got {v!r}")
        parents = tuple(self.parents)
        if any(isinstance(p, bool) or not isinstance(p, int) for p in parents):
            raise ValueError(f"the parents of a run request are run ids (whole numbers), got {list(parents)!r}")
        object.__setattr__(self, "parents", parents)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "params": dict(self.params), "seed": self.seed, "model": self.model,
                "device": self.device, "parents": list(self.parents)}

    def to_json(self, indent: Optional[int] = None) -> str:
        """The request as JSON; ``ValueError`` naming the parameter whose value is not JSON-safe
        (an image given in memory with no session to keep it)."""
        for name, value in self.params.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ValueError(f"the parameter {name!r} of this {self.tool} request holds a "
                                 f"{type(value).__name__}, which cannot be written as JSON; give a file "
                                 f"path or a result:<id> reference") from None
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRequest:
        if not isinstance(data, Mapping):
            raise ValueError(f"a run request is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"tool", "params", "seed", "model", "device", "parents"})
        if unknown:
            raise ValueError(f"a run request has no field {unknown[0]!r} (fields: tool, params, seed, model, "
                             f"device, parents)")
        if "tool" not in data:
            raise ValueError("a run request needs a 'tool' field")
        return cls(tool=data["tool"], params=data.get("params") or {}, seed=data.get("seed"),
                   model=data.get("model"), device=data.get("device"), parents=tuple(data.get("parents") or ()))

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"a run request must be JSON: {exc}") from None
        return cls.from_dict(data)

    # -- against the tool ----------------------------------------------------------------------
    def values_for(self, tool: api.ToolSpec) -> dict[str, Any]:
        """The run function's keyword values: ``params`` with the seed and the model put under
        the tool's own seed and model parameters (``ParamError`` if it has none)."""
        values = dict(self.params)
        if self.seed is not None:
            values[_param_of(tool, api.SeedParam, "seed").name] = self.seed
        if self.model is not None:
            values[_param_of(tool, api.ModelParam, "model").name] = self.model
        return values


def _param_of(tool: api.ToolSpec, kind: type[api.Param], what: str) -> api.Param:
    found = _first(tool, kind)
    if found is None:
        raise api.ParamError(f"the tool {tool.id!r} takes no {what}", what)
    return found


def _first(tool: api.ToolSpec, kind: type[api.Param]) -> Optional[api.Param]:
    return next((p for p in tool.params if isinstance(p, kind)), None)


def _accelerated(tool: api.ToolSpec) -> bool:
    """Runs on the accelerator's queue (torch or ONNX Runtime), not the CPU queue."""
    return any(b in ("torch", "onnx") for b in tool.backends)


# ---------------------------------------------------------------------------------------------
# send to, compare
# ---------------------------------------------------------------------------------------------

#: A text parameter that describes the input image, filled from the source run's prompt.
SOURCE_PROMPT_PARAMS = ("source_prompt",)
PROMPT_PARAMS = ("prompt", "target_prompt")


@dataclass(frozen=True)
class SendTarget:
    tool_id: str
    title: str
    param: str  # the image parameter that receives the result


def image_param(tool: api.ToolSpec) -> Optional[str]:
    """The name of the first image input of ``tool`` (masks do not count), else None."""
    for p in tool.params:
        if isinstance(p, api.ImageParam) and not isinstance(p, api.MaskParam):
            return p.name
    return None


def send_targets(tools: Iterable[api.ToolSpec]) -> list[SendTarget]:
    """Every tool with an image input, sorted by title: where a stored image can be sent."""
    out = []
    for tool in tools:
        name = image_param(tool)
        if name is not None:
            out.append(SendTarget(tool.id, tool.title, name))
    return sorted(out, key=lambda t: (t.title.lower(), t.tool_id))


def sent_values(tool: api.ToolSpec, param: str, result_id: int, source_params: Optional[Mapping[str, Any]] = None
                ) -> dict[str, Any]:
    """The form values that send result ``result_id`` to ``tool``: its image parameter set to the
    ``result:<id>`` reference and, where the tool has a source prompt, the source run's prompt."""
    values: dict[str, Any] = {param: f"{api.RESULT_REF_PREFIX}{result_id}"}
    names = {p.name for p in tool.params}
    src = source_params or {}
    prompt = next((src[k] for k in PROMPT_PARAMS if isinstance(src.get(k), str) and src[k].strip()), None)
    if prompt is not None:
        for k in SOURCE_PROMPT_PARAMS:
            if k in names:
                values[k] = prompt
    return values


def param_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """Rows (name, value in a, value in b, differs) over the union of keys; differing first."""
    keys = list(dict.fromkeys(list(a) + list(b)))
    rows = [(k, a.get(k), b.get(k), a.get(k) != b.get(k)) for k in keys]
    rows.sort(key=lambda r: (not r[3], keys.index(r[0])))
    return rows


@dataclass(frozen=True)
class CompareSide:
    title: str
    image: Optional[str]  # the result's file, when it has one
    params: dict[str, Any]  # tool, seed, model and the run's parameters


@dataclass(frozen=True)
class Carried:
    """Recorded parameters carried forward to the installed tool: the ``values`` it takes and
    ``notes``, one sentence per problem (parameters it does not take, a migration that failed)."""

    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class SendError(ValueError):
    """A result cannot be sent to a tool; ``str()`` is a sentence, ``details`` says more."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


# ---------------------------------------------------------------------------------------------
# the controller
# ---------------------------------------------------------------------------------------------

Listener = Callable[["JobEvent"], None]


class RunController:
    """Submits run requests to the job runner and keeps the bookkeeping around them (see the
    module docstring). ``session`` may be None (runs are then not recorded and nothing can be
    reproduced); the runner is built on the session's store by :meth:`attach` (the window calls
    it once the session is open) unless one is given."""

    def __init__(self, manager: PluginManager, session: Optional[SessionView] = None, *,
                 settings: Optional[Settings] = None, runner: Optional[JobRunner] = None,
                 worker_niceness: int = 0):
        self.manager = manager
        self.session = session
        self.settings = settings
        self.worker_niceness = worker_niceness
        self._runner: Optional[JobRunner] = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._reproduces: dict[int, int] = {}  # job id -> the run it reproduces
        self._notes: dict[int, list[str]] = {}  # run reproduced -> parameters not carried forward
        self.paused = False  # the whole queue is held: running jobs finish, waiting ones wait
        self._paused_queues: set[str] = set()
        if runner is not None:
            self.attach(runner)

    # -- the runner --------------------------------------------------------------------------
    @property
    def runner(self) -> Optional[JobRunner]:
        return self._runner

    def attach(self, runner: Optional[JobRunner] = None) -> JobRunner:
        """Use ``runner``, or build the job runner on the session's store (once)."""
        if self._runner is not None:
            return self._runner
        if runner is None:
            from app.jobs import JobRunner  # noqa: PLC0415 - kept off the window's start-up path

            store = self.session.store if self.session is not None else None
            runner = JobRunner(self.manager, store, settings=self.settings, worker_niceness=self.worker_niceness)
        self._runner = runner
        if getattr(runner, "controller", None) is None:
            runner.controller = self  # ctx.run_tool of the runner's jobs comes back here
        runner.add_listener(self._on_event)
        return runner

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: JobEvent) -> None:
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the others
                log.exception("controller listener failed on %s", event.kind)

    def _on_event(self, event: JobEvent) -> None:
        self._emit(event)
        job = event.job
        if job is None or event.kind not in ("finished", "failed", "cancelled"):
            return
        with self._lock:
            orig = self._reproduces.pop(job.id, None)
        if orig is not None:
            matched, message = self.check_reproduction(orig, job)
            from app.jobs import JobEvent  # noqa: PLC0415

            self._emit(JobEvent("reproduce-checked", job, {"run_id": orig, "matched": matched, "message": message}))

    # -- requests -----------------------------------------------------------------------------
    def tool(self, tool_id: str) -> api.ToolSpec:
        """The tool with this id (``LookupError`` naming the known ones)."""
        return self.manager.tool(tool_id)

    def request(self, tool: api.ToolSpec | str, values: Mapping[str, Any], *, device: Optional[str] = None,
                parents: Iterable[int] = ()) -> RunRequest:
        """A request from a form's values: validated (``ParamError``), the seed and model taken
        out of the values, an image or mask given in memory kept in the session (so the request
        names it ``result:<id>``), and the parent runs found from the ``result:<id>`` inputs."""
        spec = self.tool(tool) if isinstance(tool, str) else tool
        spec.validate(values)
        params = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in values.items()}
        seed = model = None
        seed_p, model_p = _first(spec, api.SeedParam), _first(spec, api.ModelParam)
        if seed_p is not None and seed_p.name in params:
            chosen = seed_p.validate(params.pop(seed_p.name))
            seed = None if chosen == -1 else chosen
        if model_p is not None and model_p.name in params:
            model = model_p.validate(params.pop(model_p.name))
        params = self._keep_inputs(spec, params)
        parents = list(parents) or (self.session.parents_from_params(spec, params) if self.session is not None else [])
        return RunRequest(tool=spec.id, params=params, seed=seed, model=model, device=device, parents=tuple(parents))

    def _keep_inputs(self, tool: api.ToolSpec, params: dict[str, Any]) -> dict[str, Any]:
        store_open = self.session is not None and self.session.store is not None
        for p in tool.params:
            v = params.get(p.name)
            if not isinstance(p, api.ImageParam) or v is None or isinstance(v, str) or not store_open:
                continue
            data = v.mask if isinstance(v, api.MaskResult) else v.image if isinstance(v, api.ImageResult) else v
            rid = self.session.record_input(data, "mask" if isinstance(p, api.MaskParam) else "image", tool.id, p.name)
            params[p.name] = f"{api.RESULT_REF_PREFIX}{rid}"
        return params

    def submit(self, request: RunRequest) -> int:
        """Queue a request; returns the job id at once (``ParamError`` for bad parameters,
        ``LookupError`` for an unknown tool)."""
        runner = self.attach()
        tool = self.tool(request.tool)
        values = request.values_for(tool)
        parent = request.parents[0] if request.parents else None
        with self._lock:
            if self.paused:  # hold the job's queue before the job enters it, so it cannot start
                self._pause_queue(runner.prepare(tool, values, request.device).queue)
        return runner.submit(tool, values, device=request.device, parent_run_id=parent).id

    def run(self, request: RunRequest, listener: Optional[Listener] = None,
            around: Optional[Callable[[Job], ContextManager[Any]]] = None) -> Job:
        """Run a request in the calling thread and return its job when done (the CLI). A
        ``KeyboardInterrupt`` cancels the job, records the run as cancelled ("interrupted") and
        is raised again. ``around(job)``, when given, is a context manager held while the job runs
        (the CLI's: the first Ctrl-C cancels, a second stops at once)."""
        runner = self.attach()
        tool = self.tool(request.tool)
        job = runner.prepare(tool, request.values_for(tool), request.device,
                             request.parents[0] if request.parents else None)
        if listener is not None:
            self.add_listener(listener)
        try:
            with (around(job) if around is not None else contextlib.nullcontext()):
                runner.run_job(job)
        except KeyboardInterrupt:
            runner.cancel(job.id)
            store = self.session.store if self.session is not None else None
            if store is not None and job.run_id is not None:
                try:
                    store.finish_run(job.run_id, "cancelled", error="interrupted")
                except Exception:  # noqa: BLE001 - already leaving; the next start marks it failed
                    log.warning("could not record run %s as interrupted", job.run_id, exc_info=True)
            raise
        finally:
            if listener is not None:
                self.remove_listener(listener)
        return job

    # -- a tool run by another tool (ctx.run_tool) -------------------------------------------------
    def runnable_tool(self, tool_id: str) -> api.ToolSpec:
        """The tool ``tool_id`` if it can be run now; :class:`~app.api.ToolError` saying why not
        (its plugin is disabled, or no installed plugin provides it)."""
        tool = self.manager.tools.get(tool_id)
        if tool is not None:
            return tool
        disabled = self.manager.disabled_tool(tool_id) if hasattr(self.manager, "disabled_tool") else None
        if disabled is not None:
            raise api.ToolError(f"the tool {tool_id!r} cannot be run: its plugin {disabled!r} is disabled (enable it "
                                f"in Plugins, or with 'implicit-studio plugins enable {disabled}')")
        known = ", ".join(sorted(self.manager.tools)) or "none"
        off = sorted(name for name, rec in getattr(self.manager, "records", {}).items() if not rec.ok)
        hint = f"; plugins not loaded, which may provide it: {', '.join(off)}" if off else ""
        raise api.ToolError(f"the tool {tool_id!r} cannot be run: no installed plugin provides it (tools: {known}){hint}")

    def run_nested(self, parent: Job, parent_ctx: api.RunContext, tool_id: str,
                   params: Mapping[str, Any]) -> list[api.Result]:
        """``ctx.run_tool(tool_id, **params)`` of the run ``parent``: the request is made as the
        window makes one (:meth:`request`: validated, seed and model taken out, in-memory inputs
        kept in the session), with the parent's device and the parent's run as its parent, and
        run in the calling thread by :meth:`app.jobs.JobRunner.run_nested`. Returns its results;
        raises :class:`~app.api.ToolError` (not runnable, bad parameters, failed) or
        :class:`~app.api.Cancelled` carrying the results it kept. A batch engine that runs
        requests for a parent run (issue 30) calls this too."""
        tool = self.runnable_tool(tool_id)
        caller = parent.tool
        if _accelerated(tool) and not _accelerated(caller):
            raise api.ToolError(
                f"the tool {caller.id!r} runs {tool.id!r}, which uses {', '.join(tool.backends)}, but declares "
                f"backends={caller.backends!r}: add 'torch' (or 'onnx') to the backends of {caller.id!r} so it "
                f"runs on the accelerator's queue with the tools it calls")
        # an input the caller was given, or a result of a tool it ran, goes on by its reference
        params = {k: ((parent.known_ref(v) or v) if isinstance(v, api.Result) else v) for k, v in params.items()}
        try:
            request = self.request(tool, params, device=parent.device_preference,
                                   parents=(parent.run_id,) if parent.run_id is not None else ())
        except api.ParamError as exc:
            raise api.ToolError(f"{caller.id!r} ran {tool.id!r} with a value it refuses: {exc}") from None
        runner = self.attach()
        try:
            job = runner.run_nested(parent, parent_ctx, tool, request.values_for(tool), device=request.device,
                                    parent_run_id=request.parents[0] if request.parents else None)
        except api.ParamError as exc:
            raise api.ToolError(f"{caller.id!r} ran {tool.id!r} with a value it refuses: {exc}") from None
        from app.jobs import JobState  # noqa: PLC0415

        for res, rid in zip(job.results, job.result_ids):
            parent.remember_ref(res, f"{api.RESULT_REF_PREFIX}{rid}")
        if job.state is JobState.FINISHED:
            return list(job.results)
        where = f" (run #{job.run_id})" if job.run_id is not None else ""
        if job.state is JobState.CANCELLED:
            raise api.Cancelled(f"{tool.id}{where} was cancelled", results=list(job.results))
        raise api.ToolError(f"{tool.title}{where} failed: {job.error or 'no reason given'}")

    # -- reproduce ------------------------------------------------------------------------------
    def reproduce_request(self, run_id: int) -> RunRequest:
        """The request that repeats recorded run ``run_id``: its parameters (carried forward by
        the tool's ``migrate_params`` when another version of the plugin recorded them), seed and
        model (``LookupError`` for an unknown run or tool, ``ValueError`` for a run that cannot be
        repeated). :meth:`reproduce_plan` also says what could not be carried forward."""
        return self.reproduce_plan(run_id)[0]

    def reproduce_plan(self, run_id: int) -> tuple[RunRequest, list[str]]:
        """:meth:`reproduce_request` and the sentences about recorded parameters that the
        installed version of the tool does not take (they are left out of the request)."""
        if self.session is None:
            raise LookupError("no session is open")
        run = self.session.run(run_id)
        tool = self.tool(run.tool_id)
        carried = self.carry_forward(tool, run.params, run.plugin_version)
        seed_p, model_p = _first(tool, api.SeedParam), _first(tool, api.ModelParam)
        skip = {p.name for p in (seed_p, model_p) if p is not None}
        params = {k: v for k, v in carried.values.items() if k not in skip}
        lost = [k for k, v in params.items() if v in _IN_MEMORY]
        if lost:
            raise ValueError(f"run #{run_id} was given its {', '.join(lost)} in memory and the session did not "
                             f"keep it, so the run cannot be repeated")
        model = run.model_ref if model_p is not None else None
        if model is None and model_p is not None:
            model = carried.values.get(model_p.name)
        request = RunRequest(tool=run.tool_id, params=params, seed=run.seed if seed_p is not None else None,
                             model=model, parents=(run.parent_run_id,) if run.parent_run_id is not None else ())
        return request, carried.notes

    # -- parameters recorded by another version of a plugin ---------------------------------------
    def carry_forward(self, tool: api.ToolSpec, params: Mapping[str, Any],
                      version: Optional[str] = None) -> Carried:
        """Recorded ``params`` of ``tool`` (by version ``version`` of its plugin; ``None`` or
        ``""`` if unknown) as the installed tool takes them: through the tool's
        ``migrate_params`` when the versions differ, then only the names the tool declares.
        Whatever does not fit is named in :attr:`Carried.notes`, never dropped silently."""
        current = None
        rec = getattr(self.manager, "records", {}).get(tool.plugin)
        if rec is not None:
            current = rec.version
        values = dict(params)
        notes: list[str] = []
        if tool.migrate_params and (version or "") != (current or ""):
            try:
                fn = self.manager.resolve(tool.migrate_params, tool.plugin, f"migrate_params of tool {tool.id!r}")
                out = self.manager.guarded(tool.plugin, f"migrate_params of tool {tool.id!r}", fn,
                                           version or "", dict(values))
                if not isinstance(out, Mapping):
                    raise TypeError(f"{tool.migrate_params} returned {type(out).__name__}, not a dict of parameters")
                values = dict(out)
            except Exception as exc:  # noqa: BLE001 - the plugin's fault: say so, keep the values as recorded
                original = getattr(exc, "original", exc)
                notes.append(f"the parameters recorded by {tool.plugin} {version or '(unknown version)'} could not "
                             f"be carried forward by {tool.migrate_params}: {type(original).__name__}: {original}")
        known = {p.name for p in tool.params}
        left = [k for k in values if k not in known]
        for name in left:
            del values[name]
        if left:
            by = f"{tool.plugin} {version}" if version else "an earlier version"
            now = f"{tool.plugin} {current}" if current else "the installed version"
            notes.append(f"{', '.join(left)} (recorded by {by}) cannot be used: {now} of {tool.id} has no such "
                         f"parameter" + ("" if tool.migrate_params else "; the plugin can carry renamed parameters "
                                                                        "forward with ToolSpec(migrate_params=...)"))
        return Carried(values, notes)

    def reproduce(self, run_id: int) -> int:
        """Re-run ``run_id``; when it ends a ``reproduce-checked`` event says whether its outputs
        match the original's bit for bit. Returns the job id."""
        request, notes = self.reproduce_plan(run_id)
        if notes:
            with self._lock:
                self._notes[run_id] = notes
        job_id = self.submit(request)
        with self._lock:
            job = self._runner.job(job_id) if self._runner is not None else None
            if job is not None and job.state.done:  # finished before we got here (a very fast tool)
                pending = True
            else:
                self._reproduces[job_id] = run_id
                pending = False
        if pending:
            matched, message = self.check_reproduction(run_id, job)
            from app.jobs import JobEvent  # noqa: PLC0415

            self._emit(JobEvent("reproduce-checked", job, {"run_id": run_id, "matched": matched, "message": message}))
        return job_id

    def check_reproduction(self, orig_run_id: int, job: Job) -> tuple[bool, str]:
        """Did ``job`` (a repeat of ``orig_run_id``) make the same outputs, bit for bit?"""
        from app.jobs import JobState  # noqa: PLC0415

        with self._lock:
            notes = self._notes.pop(orig_run_id, [])
        extra = "".join(f" Note: {n}." for n in notes)
        if job.state is not JobState.FINISHED:
            return False, f"Reproducing run #{orig_run_id} did not finish ({job.state.value}: {job.error or ''}).{extra}"
        try:
            matched, message = self.session.compare_outputs(orig_run_id, job.run_id, job.results)
        except Exception as exc:  # noqa: BLE001 - reported as the check's outcome
            return False, f"could not compare: {type(exc).__name__}: {exc}{extra}"
        return matched, message + extra

    # -- send to, compare, restore --------------------------------------------------------------
    def send_targets(self) -> list[SendTarget]:
        return send_targets(self.manager.tools.values())

    def send_to(self, run_id: Optional[int], result_id: Optional[int], tool_id: str) -> dict[str, Any]:
        """The values that open ``tool_id`` on stored result ``result_id`` (of run ``run_id``);
        ``SendError`` when the tool is missing, takes no image or there is no result."""
        tool = self.manager.tools.get(tool_id)
        if tool is None:
            raise SendError(f"The tool {tool_id!r} is not available",
                            "Its plugin may be disabled or not installed. See Plugins.")
        param = image_param(tool)
        if param is None:
            raise SendError(f"{tool.title} does not take an image", f"None of the parameters of {tool_id} is an image input.")
        if result_id is None:
            raise SendError("Choose a result to send", "The selected run has no stored result.")
        params: dict[str, Any] = {}
        if run_id is not None and self.session is not None:
            try:
                params = dict(self.session.run(run_id).params)
            except Exception:  # noqa: BLE001 - the prompt is a convenience; the image still goes
                log.warning("could not read run #%s for its prompt", run_id, exc_info=True)
        return sent_values(tool, param, result_id, params)

    def compare(self, a: tuple[int, Optional[int]], b: tuple[int, Optional[int]]) -> tuple[CompareSide, CompareSide]:
        """The two sides of a comparison of (run id, result id) pairs."""
        if self.session is None:
            raise LookupError("no session is open")
        sides = []
        for run_id, result_id in (a, b):
            run = self.session.run(run_id)
            path = self.session.result_file(result_id) if result_id is not None else None
            params = {"tool": run.tool_id, "seed": run.seed, "model": run.model_ref, **run.params}
            sides.append(CompareSide(f"#{run.id} {run.tool_id}", str(path) if path is not None else None, params))
        return sides[0], sides[1]

    def restore_values(self, tool_id: str, params: Mapping[str, Any], seed: Optional[int] = None,
                       version: Optional[str] = None) -> dict[str, Any]:
        """Form values of ``tool_id`` from recorded parameters (a run's, a PNG's), with ``seed``
        put under the tool's seed parameter (``LookupError`` for a tool that is not available).
        ``version`` is the plugin version that recorded them: the tool's ``migrate_params``
        carries them forward (:meth:`restore` also gives the notes on what it could not)."""
        return self.restore(tool_id, params, seed, version).values

    def restore(self, tool_id: str, params: Mapping[str, Any], seed: Optional[int] = None,
                version: Optional[str] = None) -> Carried:
        """:meth:`restore_values` with the notes about parameters that could not be carried
        forward (for the status line: "not restored: ...")."""
        tool = self.manager.tools.get(tool_id)
        if tool is None:
            raise LookupError(f"The tool {tool_id!r} is not available")
        carried = self.carry_forward(tool, params, version) if version is not None or tool.migrate_params \
            else Carried(dict(params), [])
        values = dict(carried.values)
        seed_p = _first(tool, api.SeedParam)
        if seed is not None and seed_p is not None:
            values[seed_p.name] = seed
        return Carried(values, carried.notes)

    # -- the queue ------------------------------------------------------------------------------
    def cancel(self, job_id: int) -> bool:
        return self._runner is not None and self._runner.cancel(job_id)

    def remove(self, job_id: int) -> bool:
        return self._runner is not None and self._runner.remove(job_id)

    def move(self, job_id: int, delta: int) -> None:
        """Move a waiting job ``delta`` places in its queue (negative: sooner)."""
        runner = self._runner
        if runner is None or job_id not in [j.id for j in runner.queued()]:
            return
        same_queue = [j.id for j in runner.queued(runner.job(job_id).queue)]
        try:
            runner.move(job_id, max(0, same_queue.index(job_id) + delta))
        except ValueError:
            log.info("job %s is no longer waiting", job_id)

    def set_paused(self, paused: bool) -> None:
        """Hold the whole queue (the running job finishes; waiting jobs do not start) or resume it."""
        with self._lock:
            self.paused = bool(paused)
            runner = self._runner
            if runner is None:
                return  # applied to each queue as jobs are submitted
            if self.paused:
                for name in sorted({j.queue for j in runner.jobs()}):
                    self._pause_queue(name)
            else:
                for name in sorted(self._paused_queues):
                    runner.resume(name)
                self._paused_queues.clear()

    def _pause_queue(self, name: str) -> None:
        if name not in self._paused_queues:
            self._runner.pause(name)
            self._paused_queues.add(name)

    def set_device(self, device: str) -> None:
        """The device new runs use (``DeviceError`` for a bad name)."""
        if self._runner is not None:
            from app import devices  # noqa: PLC0415

            self._runner.device = devices.parse_device(device)

    def device_label(self) -> str:
        try:
            from app import devices  # noqa: PLC0415

            pref = (self._runner.device if self._runner is not None else None) or (
                self.settings.device if self.settings is not None else None) or "auto"
            hint = devices.accelerator_hint() if pref == "auto" else pref
            return f"device: {hint}" + (" (auto)" if pref == "auto" else "")
        except Exception:  # noqa: BLE001 - the status bar goes without it
            return ""

    def shutdown(self) -> None:
        if self._runner is None:
            return
        try:
            self._runner.remove_listener(self._on_event)
            self._runner.shutdown(cancel=True, timeout=5.0)
        except Exception:  # noqa: BLE001 - closing
            log.warning("job runner did not shut down cleanly", exc_info=True)
