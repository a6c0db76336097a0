"""Live mode's scheduling, without Qt: redraw as the person types, paints or turns a knob.

A live view asks for a picture each time what it shows may have changed (a prompt keystroke, a
parameter, a mask stroke). Drawing takes tens of milliseconds at best, so requests come faster
than pictures; the rules here decide which requests are drawn and which pictures are shown:

- **debounce**: a request is drawn once no newer one has arrived for ``debounce_s`` (a burst of
  keystrokes is one drawing);
- **latest wins**: only the newest request waits; an older one still waiting is replaced;
- **stale frames are dropped**: a picture whose request was superseded while it was being drawn is
  thrown away, never shown (the view would otherwise show the picture of text no longer typed);
- **one worker**: requests are drawn one at a time on one thread of their own, so the caller (the
  window's GUI thread) never waits for a drawing; it hands a request over and returns.

:class:`LiveScheduler` implements these rules for any ``draw(payload)`` callable; callbacks
(``on_frame``, ``on_error``, ``on_status``) run on the worker thread, so a window adapts them to
queued Qt signals (:mod:`app.ui.live`). :class:`ToolDrawer` draws one picture with a tool's own
run function, in this process, without recording anything: the live picture of some values is the
picture a run of the tool with the same values makes, so when the person keeps it the window
submits those values as a normal run (:class:`app.controller.RunController`) and the session
records a run that reproduces it. :func:`live_values` turns form values into the values a live
drawing uses (a fixed seed, the live step count).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from app import api

if TYPE_CHECKING:
    from app.plugins import PluginManager

log = logging.getLogger("implicit_studio.live")

#: The parameter of a tool that sets its number of denoising steps (set to the live step count).
STEPS_PARAM = "steps"
#: Parameters that multiply the work of one run and make no sense live (set to one / off).
SINGLE_PICTURE = {"batch_size": 1, "batch_count": 1, "sweep": "none", "record_trajectory": False}
#: Torch threads of a live drawing (see :func:`torch_threads`).
LIVE_TORCH_THREADS = 1


@dataclass(frozen=True)
class Frame:
    """A picture drawn for request ``seq`` (``payload`` is what was asked)."""

    seq: int
    payload: Any
    image: Any
    draw_s: float  # seconds the drawing took
    asked_at: float  # time.monotonic() when the request was made
    done_at: float  # time.monotonic() when the drawing ended


@dataclass
class LiveStats:
    submitted: int = 0  # requests handed over
    drawn: int = 0  # drawings finished (shown or dropped)
    shown: int = 0  # frames handed to on_frame
    stale: int = 0  # frames dropped because a newer request came while they were drawn
    replaced: int = 0  # requests replaced by a newer one before their drawing began
    failed: int = 0  # drawings that raised
    draw_s: list[float] = field(default_factory=list)


@dataclass
class _Request:
    seq: int
    payload: Any
    at: float


class LiveScheduler:
    """Draws the newest request on a worker thread of its own (see the module docstring).

    - ``draw(payload)`` makes the picture (any object); it may raise: ``on_error(message)`` is
      called with a sentence and the scheduler goes on with the next request.
    - ``load()``, when given, is called once on the worker before the first drawing (the model's
      load); ``on_status("loading")`` before it and ``on_status("ready")`` after. A load that fails
      is reported through ``on_error`` and tried again at the next request.
    - ``on_frame(frame)`` gets each picture that is still the newest when it is done.
    """

    def __init__(self, draw: Callable[[Any], Any], *, on_frame: Callable[[Frame], None],
                 on_error: Callable[[str], None] = lambda message: None,
                 on_status: Callable[[str], None] = lambda status: None,
                 load: Optional[Callable[[], None]] = None, debounce_s: float = 0.0, name: str = "live"):
        self._draw = draw
        self._load = load
        self._on_frame = on_frame
        self._on_error = on_error
        self._on_status = on_status
        self.debounce_s = max(0.0, float(debounce_s))
        self.name = name
        self.stats = LiveStats()
        self._cond = threading.Condition()
        self._pending: Optional[_Request] = None
        self._latest = 0  # seq of the newest request
        self._busy = False
        self._stopping = False
        self._loaded = load is None
        self._thread: Optional[threading.Thread] = None

    # -- the caller's side ------------------------------------------------------------------------
    def start(self) -> LiveScheduler:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name=f"{self.name}-worker", daemon=True)
                self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def submit(self, payload: Any) -> int:
        """Ask for a picture of ``payload``; returns the request's number at once. A request still
        waiting is replaced; a drawing under way will be dropped when it ends."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("live drawing has stopped")
            self._latest += 1
            if self._pending is not None:
                self.stats.replaced += 1
            self._pending = _Request(self._latest, payload, time.monotonic())
            self.stats.submitted += 1
            self._cond.notify_all()
            return self._latest

    def idle(self) -> bool:
        """Nothing waiting and nothing being drawn."""
        with self._cond:
            return self._pending is None and not self._busy

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until :meth:`idle` (tests and the benchmark; never the GUI thread)."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker (a drawing under way finishes and is dropped); True when it has ended."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- the worker ------------------------------------------------------------------------------
    def _next(self) -> Optional[_Request]:
        with self._cond:
            while not self._stopping:
                req = self._pending
                if req is None:
                    self._cond.wait()
                    continue
                left = req.at + self.debounce_s - time.monotonic()
                if left > 0:  # a newer request restarts the wait
                    self._cond.wait(left)
                    continue
                self._pending = None
                self._busy = True
                return req
            return None

    def _work(self) -> None:
        while True:
            req = self._next()
            if req is None:
                break
            try:
                self._serve(req)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _serve(self, req: _Request) -> None:
        if not self._loaded:
            self._on_status("loading")
            try:
                self._load()
            except BaseException as exc:  # noqa: BLE001 - reported; the window goes on
                self.stats.failed += 1
                self._report(f"The model for live drawing could not be loaded: {describe(exc)}", exc)
                return
            self._loaded = True
            self._on_status("ready")
        t0 = time.monotonic()
        try:
            image = self._draw(req.payload)
        except BaseException as exc:  # noqa: BLE001 - one failed drawing costs that picture only
            self.stats.failed += 1
            with self._cond:
                stale = req.seq != self._latest or self._stopping
            if not stale:  # an error of a request already superseded says nothing about the newest
                self._report(f"Live drawing failed: {describe(exc)}", exc)
            return
        done = time.monotonic()
        self.stats.drawn += 1
        self.stats.draw_s.append(done - t0)
        with self._cond:
            stale = req.seq != self._latest or self._stopping
        if stale:
            self.stats.stale += 1
            return
        self.stats.shown += 1
        try:
            self._on_frame(Frame(req.seq, req.payload, image, done - t0, req.at, done))
        except Exception:  # noqa: BLE001 - a broken listener must not stop live drawing
            log.exception("live frame listener failed")

    def _report(self, message: str, exc: BaseException) -> None:
        level = logging.WARNING if isinstance(exc, (api.ParamError, api.ToolError)) else logging.ERROR
        log.log(level, "%s", message, exc_info=level == logging.ERROR)
        try:
            self._on_error(message)
        except Exception:  # noqa: BLE001
            log.exception("live error listener failed")


def describe(exc: BaseException) -> str:
    """A sentence for the person: the message of the studio's own errors, else the error's type
    and message (the cause of a plugin call error)."""
    if isinstance(exc, api.ParamError):
        return exc.message
    if isinstance(exc, api.ToolError):
        return str(exc)
    cause = getattr(exc, "error", None) or exc.__cause__
    if isinstance(cause, BaseException) and cause is not exc:
        return describe(cause)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# drawing with a tool
# ---------------------------------------------------------------------------------------------


def live_capable(tool: api.ToolSpec) -> bool:
    """Whether a tool can be drawn live: it makes images and has a step count to lower."""
    return "image" in tool.results and any(p.name == STEPS_PARAM and isinstance(p, api.IntParam)
                                           for p in tool.params)


def live_values(tool: api.ToolSpec, values: Mapping[str, Any], *, seed: int, steps: int) -> dict[str, Any]:
    """The values a live drawing of ``tool`` uses: the form's ``values`` with the seed fixed to
    ``seed`` when the form asks for a random one, ``steps`` steps, and one picture per run."""
    out = dict(values)
    names = {p.name: p for p in tool.params}
    for p in tool.params:
        if isinstance(p, api.SeedParam) and out.get(p.name, -1) in (None, -1):
            out[p.name] = int(seed)
    if STEPS_PARAM in names:
        out[STEPS_PARAM] = names[STEPS_PARAM].validate(int(steps))
    for name, value in SINGLE_PICTURE.items():
        if name in names:
            out[name] = value
    return out


def first_image(results: Any) -> Any:
    """The first picture (an ``H x W x C`` array) among a run function's results."""
    items = results if isinstance(results, (list, tuple)) else [results]
    for r in items:
        if isinstance(r, api.ImageResult):
            return r.image
    raise api.ToolError("the tool made no picture to show")


class ToolDrawer:
    """``ToolDrawer(manager, tool)(values)`` -> the first picture a run of ``tool`` makes with
    ``values``, drawn in the calling thread through the plugin's guarded run function and a run
    context like the job runner's, and recorded nowhere.

    ``load_input(ref, kind)`` reads an image input (a path, a ``result:<id>`` or an array; the job
    runner's :meth:`app.jobs.JobRunner.load_input`); a file's picture is read once while the file
    is unchanged. ``device`` is a device preference (``None``: auto)."""

    def __init__(self, manager: PluginManager, tool: api.ToolSpec, *,
                 load_input: Callable[[Any, str], api.Result], settings: Optional[Mapping[str, Any]] = None,
                 device: Optional[str] = None, threads: int = LIVE_TORCH_THREADS):
        self.manager = manager
        self.tool = tool
        self.threads = int(threads)
        self._load_input = load_input
        self.settings = dict(settings or {})
        self.device = device
        self._inputs: dict[tuple, api.Result] = {}
        self._fn: Optional[Callable[..., Any]] = None
        self._choice = None

    def _input(self, value: Any, kind: str) -> api.Result:
        if isinstance(value, (str, os.PathLike)) and not str(value).startswith(api.RESULT_REF_PREFIX):
            try:
                st = os.stat(value)
                key = (os.fspath(value), kind, st.st_mtime_ns, st.st_size)
            except OSError:
                key = None
        elif isinstance(value, str):
            key = (value, kind)
        else:
            key = None
        if key is not None and key in self._inputs:
            return self._inputs[key]
        res = self._load_input(value, kind)
        if key is not None:
            if len(self._inputs) > 8:
                self._inputs.clear()
            self._inputs[key] = res
        return res

    def load(self) -> None:
        """Import the run function and choose the device (the model itself loads at the first
        drawing, through the plugin's own model cache, and stays there while it is used)."""
        from app import devices  # noqa: PLC0415 - may import torch: on the worker only

        self._fn = self.manager.run_function(self.tool)
        self._choice = devices.choose(self.device, self.tool.backends)

    def __call__(self, values: Mapping[str, Any]) -> Any:
        if self._fn is None:
            self.load()
        tool, choice = self.tool, self._choice
        params = tool.validate(values)
        seed = 0
        for p in tool.params:
            if isinstance(p, api.SeedParam):
                params[p.name] = api.SeedParam.resolve(params[p.name])
                seed = params[p.name]
            elif isinstance(p, api.ImageParam) and params[p.name] is not None:
                params[p.name] = self._input(params[p.name], "mask" if isinstance(p, api.MaskParam) else "image")
        ctx = self.manager.context(tool.plugin, device=choice.device, dtype=choice.dtype, seed=seed,
                                   ort_providers=choice.ort_providers, tool_id=tool.id, settings=self.settings,
                                   input_loader=lambda ref: self._input(ref, "image"))
        with torch_threads(self.threads if "torch" in tool.backends else 0):
            out = self.manager.guarded(tool.plugin, f"live drawing of {tool.id!r}", self._fn, ctx, **params)
        return first_image(out)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Compute with ``n`` torch threads in this thread for the block (0: leave them as they are).

    A live picture is a few small layers; on a busy 2-core machine two OpenMP threads spin against
    the window's thread and the other processes (the bundled student's picture: 39 ms with one
    thread, 0.3-2.6 s with two, measured while the machine was shared), and on a quiet one one
    thread is as fast (benchmarks/RESULTS.md, the one-step student)."""
    if n <= 0:
        yield
        return
    import torch  # noqa: PLC0415 - the tool has imported it already

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
