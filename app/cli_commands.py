"""The built-in sub-commands of ``implicit-studio`` (``run``, ``tools``, ``plugins``, ``devices``,
``history``, ``export``, ``new-plugin``).

:mod:`app.cli` registers them by ``"module:function"`` name, so this module (and argparse, json,
the job runner, storage) is imported only when a command runs, never when the window opens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from app import api
from app.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    _err,
    _manager,
    _session_path,
    new_parser,
)


def _warn_failed_plugins(manager: Any) -> None:
    bad = [r for r in manager.records.values() if r.status in ("failed", "incompatible")]
    for r in bad:
        print(f"{PROG}: note: plugin {r.name!r} {r.status}: {r.error} (see '{PROG} plugins')", file=sys.stderr)



def _open_store(path: Path, create: bool = True, recover: bool = False, readonly: Optional[bool] = None):
    """The session store at ``path``: for writing when ``create`` (``run``; ``recover`` marks
    runs left running by a stopped process as failed), else read-only (``history``, ``export``:
    they work on read-only folders and never change the session). ``readonly=False`` opens an
    existing session for writing without creating one (``reproduce``)."""
    if readonly is None:
        readonly = not create
    try:
        from storage import SessionStore  # type: ignore

        from app.jobs import open_session
    except ImportError as exc:
        raise UsageError(f"the session storage layer is not available ({exc})") from None
    if not create and not path.exists():
        raise UsageError(f"no session at {path}")
    try:
        if readonly:
            return SessionStore.open(path, readonly=True)
        return open_session(path) if recover else SessionStore.open(path)
    except Exception as exc:  # noqa: BLE001 - StorageError and OS errors become one line
        raise UsageError(f"cannot open session {path}: {exc}") from None


def _close_store(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------


#: The options of ``run TOOL`` itself; a tool parameter whose option would be one of these is
#: offered as ``--param-NAME`` instead (a plugin's ``device`` parameter cannot break ``run``).
RUN_OPTIONS = frozenset({"--params-from", "--out", "--session", "--no-session", "--device", "--precision", "--json",
                         "--quiet", "--help"})


def tool_option(p: api.Param) -> str:
    """The command-line option of parameter ``p`` on ``run TOOL``."""
    return p.cli_option if p.cli_option not in RUN_OPTIONS else "--param-" + p.cli_option[2:]


def _dest(p: api.Param) -> str:
    """Where argparse keeps parameter ``p``'s value (apart from the run options' own)."""
    return "param:" + p.name


def _tool_parser(tool: api.ToolSpec) -> Any:
    # argparse formats an argument's help with %: a plugin's "30%" must reach it as "30%%"
    parser = new_parser(prog=f"{PROG} run {tool.id}",
                        description=tool.title + (f": {tool.description}" if tool.description else ""),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("tool parameters")
    for p in tool.params:
        text = _pct((p.help + " " if p.help else "") + f"[{p.describe()}]")
        if isinstance(p, api.BoolParam):
            group.add_argument(tool_option(p), dest=_dest(p), action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            group.add_argument(tool_option(p), dest=_dest(p), default=None, metavar=p.type_name.upper(), help=text)
    common = parser.add_argument_group("run options")
    common.add_argument("--params-from", metavar="FILE.png",
                        help="start from the parameters stored in a PNG (the studio's own, AUTOMATIC1111's or "
                             "ComfyUI's); options given explicitly override them")
    common.add_argument("--out", metavar="DIR", help="also write the results as files into DIR")
    common.add_argument("--session", metavar="PATH", help="session folder to record the run in (default: the default session)")
    common.add_argument("--no-session", action="store_true", help="do not record the run in a session")
    common.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps (default: settings, else auto)")
    common.add_argument("--precision", metavar="P", help=_pct(PRECISION_HELP))
    common.add_argument("--json", action="store_true", help="print the outcome as JSON")
    common.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    return parser


def _pct(text: str) -> str:
    """A text for argparse's help, which is %-formatted: every % doubled."""
    return text.replace("%", "%%")


PRECISION_HELP = ("arithmetic: auto (float16 on CUDA, float32 elsewhere), fp32, fp16 (on the CPU: float32, "
                  "said on stderr) or bf16 (refused on a GPU without it) (default: IMPLICIT_STUDIO_PRECISION, "
                  "else settings, else auto)")


def _device_and_precision(args: Any, settings: Any) -> tuple[str, str]:
    """The device and precision a command's run asks for: its options, else the environment's
    (precision), else the settings'; a malformed name is a usage error."""
    from app import devices

    try:
        device = devices.parse_device(args.device or settings.device)
        precision = devices.parse_precision(args.precision or os.environ.get("IMPLICIT_STUDIO_PRECISION")
                                            or settings.precision)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    return device, precision


def _progress_printer(quiet: bool) -> Callable[[Any], None]:
    tty = sys.stderr.isatty()
    last = [0.0]

    def on_event(event: Any) -> None:
        if event.kind == "started" and not quiet:
            for note in event.data.get("notes") or ():  # what became of the precision asked for
                print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
        if quiet or event.kind != "progress":
            return
        d = event.data
        now = time.monotonic()
        final = d["step"] >= d["total"] > 0
        if not tty and not final and now - last[0] < 2.0:
            return
        last[0] = now
        # one progress model: the share of the tool's own units, its own words, the runner's ETA
        eta = f" ETA {d['eta_s']:.1f}s" if d.get("eta_s") is not None else ""
        pct = f"{100 * d['step'] // d['total']:3d}%" if d["total"] > 0 else "  …"
        msg = d.get("message") or f"{d['step']}/{d['total']}"
        line = f"[{pct}] {msg}{eta}"
        if tty:
            print("\r" + line.ljust(60), end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return on_event


def _params_from_png(path: str, tool: api.ToolSpec) -> dict[str, Any]:
    """The parameters stored in a PNG, for ``tool``: our own chunk (only when it was made by the
    same tool), else A1111's or ComfyUI's settings mapped onto the tool's parameter names. What
    the tool has no parameter for, or cannot take, is left out with a note on stderr."""
    from storage.pngmeta import read_png_metadata

    try:
        meta = read_png_metadata(Path(path).expanduser())
    except FileNotFoundError:
        raise UsageError(f"--params-from: no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--params-from: {exc}") from None
    tool_id, params, seed = meta.restore()
    if not params:
        raise UsageError(f"--params-from: {path} holds no parameters (no studio, AUTOMATIC1111 or ComfyUI chunk)")
    if tool_id is not None and tool_id != tool.id:
        raise UsageError(f"--params-from: {path} was made by {tool_id!r}, not {tool.id!r}")
    for note in meta.restore_notes():
        print(f"{PROG}: note: {note}", file=sys.stderr)
    names = {p.name: p for p in tool.params}
    out: dict[str, Any] = {}
    for name, value in params.items():
        p = names.get(name)
        if p is None:
            continue
        try:
            out[name] = p.validate(value)
        except (api.ParamError, TypeError, ValueError) as exc:
            print(f"{PROG}: note: {path}: {name} = {value!r} is not used ({exc})", file=sys.stderr)
    seed_param = next((p.name for p in tool.params if isinstance(p, api.SeedParam)), None)
    if seed_param and seed is not None:
        out[seed_param] = seed
    return out


def cmd_run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        manager = _manager()
        print(f"usage: {PROG} run TOOL [--param value ...] [--out DIR] [--session PATH] [--device D] "
              "[--precision P]\n")
        print(f"Run a tool headless. '{PROG} run TOOL --help' lists its parameters.\n\ntools:")
        for t in sorted(manager.tools.values(), key=lambda t: t.id):
            print(f"  {t.id:24s} {t.title}")
        return EXIT_OK if argv else EXIT_USAGE
    tool_id, rest = argv[0], argv[1:]
    if tool_id.startswith("-"):
        raise UsageError(f"expected a tool id before {tool_id} (see {PROG} tools)")
    manager = _manager()
    from app.plugins import UnknownToolError

    try:
        tool = manager.tool(tool_id)
    except UnknownToolError as exc:
        _warn_failed_plugins(manager)
        raise UsageError(str(exc)) from None
    args = _tool_parser(tool).parse_args(rest)
    values: dict[str, Any] = _params_from_png(args.params_from, tool) if args.params_from else {}
    for p in tool.params:
        raw = getattr(args, _dest(p))
        if raw is None:
            continue
        try:
            values[p.name] = raw if isinstance(p, api.BoolParam) else p.parse(raw)
        except api.ParamError as exc:
            raise UsageError(f"{tool_option(p)}: {exc}") from None
    try:
        values = tool.validate(values)
        from app.inputs import check_image_inputs

        check_image_inputs(tool, values)  # a non-image or a mask of the wrong size: exit 2, before any work
    except api.ParamError as exc:
        raise UsageError(_param_message(tool, exc)) from None

    from app.controller import RunController
    from app.jobs import JobRunner, JobState
    from app.session_view import SessionView
    from app.settings import Settings

    settings = Settings()
    device, precision = _device_and_precision(args, settings)
    out_dir = Path(args.out).expanduser() if args.out else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {out_dir}: {exc}") from None
    session_dir = None if args.no_session else _session_path(args.session)
    store = None if session_dir is None else _open_store(session_dir, recover=True)
    if store is not None:
        _note_interrupted_runs(store)
    # the same controller the window submits to: one run request, one path to the runner
    session = SessionView(store, session_dir) if store is not None else None
    controller = RunController(manager, session, settings=settings,
                               runner=JobRunner(manager, store, settings=settings, device=device,
                                                precision=precision))
    try:
        request = controller.request(tool, values, device=device)
        try:
            job = controller.run(request, listener=_progress_printer(args.quiet or args.json),
                                 around=_ctrl_c_cancels)  # in this thread
        except KeyboardInterrupt:  # the controller has cancelled the job and recorded it
            _err("interrupted")
            return EXIT_INTERRUPTED
        written = []
        if out_dir is not None and job.state is JobState.FINISHED:
            from storage import StorageError

            try:
                written = _write_outputs(job, out_dir)
            except StorageError as exc:  # a sentence naming the file and the reason
                return _out_failed(job, out_dir, exc)
    finally:
        if store is not None:
            _close_store(store)
    if job.state is JobState.FINISHED:
        if args.json:
            print(json.dumps({
                "run_id": job.run_id, "status": "finished", "tool": tool.id, "seed": job.seed,
                "device": job.device, "dtype": job.dtype, "elapsed_s": round(job.elapsed_s, 3),
                "results": [{"kind": r.kind, "id": rid, "file": str(w) if w else None}
                            for r, rid, w in _zip_longest(job.results, job.result_ids, written)],
                "children": [{"run_id": c.run_id, "tool": c.tool.id, "status": c.state.value}
                             for c in job.children],
            }))
        elif not args.quiet:
            where = f"run {job.run_id}" if job.run_id is not None else "run"
            print(f"{where} finished: {tool.id}, seed {job.seed}, {job.device} {job.dtype}, {job.elapsed_s:.2f} s, "
                  f"{len(job.results)} result(s)")
            for r, rid, w in _zip_longest(job.results, job.result_ids, written):
                ref = f" result:{rid}" if rid is not None else ""
                print(f"  {r.kind}{ref}" + (f" -> {w}" if w else ""))
            if job.children:
                runs = ", ".join(f"#{c.run_id}" if c.run_id is not None else c.tool.id for c in job.children)
                print(f"  ran {len(job.children)} other tool run(s): {runs}")
        return EXIT_OK
    if job.state is JobState.CANCELLED:
        kept = f"; {len(job.result_ids)} result(s) it kept are recorded with run {job.run_id}" if job.result_ids else ""
        _err(f"run of {tool.id} was cancelled{kept}")
        return EXIT_INTERRUPTED
    if job.param_error is not None:  # the tool refused a value: bad input, like a parser error
        _err(_param_message(tool, job.param_error) + (f" (run {job.run_id} is recorded as failed)"
                                                      if job.run_id is not None else ""))
        return EXIT_USAGE
    _err(job.error or "the tool failed")
    if job.traceback:
        print(f"{PROG}: details are in the log file {_log_file()}", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": job.run_id, "status": "failed", "tool": tool.id, "error": job.error}))
    return EXIT_FAILED


def _log_file() -> str:
    from app.settings import log_file_path

    return str(log_file_path())


def _param_message(tool: api.ToolSpec, exc: api.ParamError) -> str:
    names = {p.name for p in tool.params}
    opt = tool_option(tool.param(exc.param)) if exc.param and exc.param in names else ""
    return f"{opt + ': ' if opt else ''}{exc}"


def _note_interrupted_runs(store: Any) -> None:
    """Tell which runs a stopped process left unfinished, and which plugin crashed it if one did."""
    from app import crashguard
    from app.jobs import interrupted_runs

    for line in crashguard.notes(interrupted_runs(store)):
        print(f"{PROG}: note: {line}", file=sys.stderr)


class _ctrl_c_cancels:
    """While a run is in this thread: the first Ctrl-C cancels it (the tool stops at its next
    check, within a second for the built-in tools), a second one stops at once."""

    def __init__(self, job: Any):
        self.job = job
        self.previous = None

    def _handler(self, signum, frame) -> None:
        from app import crashguard

        if not self.job.cancel_requested:
            self.job._cancel.set()
            print(f"\n{PROG}: cancelling the run (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
            return
        crashguard.USER_INTERRUPT.set()
        raise KeyboardInterrupt

    def __enter__(self) -> "_ctrl_c_cancels":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _zip_longest(*seqs: Sequence[Any]):
    n = max((len(s) for s in seqs), default=0)
    for i in range(n):
        yield tuple(s[i] if i < len(s) else None for s in seqs)


def _out_failed(job: Any, out_dir: Path, exc: Exception) -> int:
    """The run finished (and is recorded) but its files could not be written into ``--out``."""
    if job.run_id is not None:
        _err(f"run {job.run_id} finished and is recorded in the session, but its results could not "
             f"be written into {out_dir}: {exc} Write them later with '{PROG} export {job.run_id} "
             f"--out DIR'.")
    else:
        _err(f"the run finished, but its results could not be written into {out_dir}: {exc}")
    return EXIT_FAILED


def _write_outputs(job: Any, out_dir: Path) -> list[Path]:
    """Write the job's results into ``out_dir``; images carry ``job.run_info`` (the same run
    record the session's copies carry: tool, plugin and version, parameters, seed, model, device).
    A failed write leaves no partial file and raises ``storage.StorageError`` naming the file."""
    from storage.filestore import write_file_atomically

    from app import results_io

    written = []
    info = job.run_info or {"tool": job.tool.id, "params": job.recorded_params, "seed": job.seed,
                            "device": job.device, "dtype": job.dtype, "run_id": job.run_id}
    stem = f"{job.tool.id}-{job.run_id}" if job.run_id is not None else f"{job.tool.id}-seed{job.seed}"
    for i, res in enumerate(job.results, 1):
        enc = results_io.encode(res, info)
        suffix = f"-{res.label}" if res.label and res.label.replace("-", "").replace("_", "").isalnum() else ""
        path = out_dir / f"{stem}-{i}{suffix}{enc.ext}"
        write_file_atomically(path, enc.data)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# tools, plugins, devices
# ---------------------------------------------------------------------------------------------


def cmd_tools(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} tools", description="List the tools and their parameters.")
    parser.add_argument("tool", nargs="?", help="show only this tool")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    manager = _manager()
    from app.plugins import UnknownToolError

    if args.tool:
        try:
            tools = [manager.tool(args.tool)]
        except UnknownToolError as exc:
            raise UsageError(str(exc)) from None
    else:
        tools = sorted(manager.tools.values(), key=lambda t: (t.plugin, t.id))
    if args.json:
        print(json.dumps([{
            "id": t.id, "title": t.title, "plugin": t.plugin, "group": t.group, "results": list(t.results),
            "backends": list(t.backends), "description": t.description,
            "params": [{"name": p.name, "option": tool_option(p), "type": p.type_name,
                        "default": p.to_json(p.default), "required": p.required, "help": p.help}
                       for p in t.params],
        } for t in tools], indent=2))
        return EXIT_OK
    for t in tools:
        print(f"{t.id}  ({t.plugin}) {t.title}")
        if t.description:
            print(f"    {t.description}")
        for p in t.params:
            print(f"    {tool_option(p):22s} {p.describe()}" + (f"  {p.help}" if p.help else ""))
    if not tools:
        print("no tools (see 'implicit-studio plugins')")
    _warn_failed_plugins(manager)
    return EXIT_OK


def cmd_plugins(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} plugins", description="List plugins, or enable/disable one.")
    parser.add_argument("action", nargs="?", choices=("list", "enable", "disable"), default="list")
    parser.add_argument("name", nargs="?")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of failed plugins")
    args = parser.parse_args(argv)
    manager = _manager()
    if args.action in ("enable", "disable"):
        if not args.name:
            raise UsageError(f"{PROG} plugins {args.action}: give a plugin name")
        try:
            rec = manager.set_enabled(args.name, args.action == "enable")
        except KeyError:
            raise UsageError(f"no plugin named {args.name!r}; see '{PROG} plugins'") from None
        print(f"{rec.name}: {rec.status}" + (f" ({rec.error})" if rec.error and rec.status != "disabled" else ""))
        return EXIT_OK
    recs = sorted(manager.records.values(), key=lambda r: (not r.builtin, r.name))
    if args.json:
        print(json.dumps([{
            "name": r.name, "dist": r.dist, "version": r.version, "author": r.author, "status": r.status,
            "builtin": r.builtin, "source": r.source, "tools": r.tools, "error": r.error,
            "traceback": r.traceback, "problems": r.problems, "load_ms": round(r.load_ms, 1),
            "import_ms": round(r.import_ms, 1), "hook_ms": {k: round(v, 1) for k, v in r.hook_ms.items()},
            "slow_hooks": sorted(r.slow_hooks), "heavy_imports": r.heavy_imports, "warnings": r.warnings,
            "earlier_errors": [{k: e.get(k) for k in ("time", "what", "error")} for e in r.earlier_errors],
            "runtime_errors": [e.splitlines()[0] for e in r.runtime_errors],
        } for r in recs], indent=2))
        return EXIT_OK
    from app.plugin_history import describe_error

    for r in recs:
        kind = "built-in" if r.builtin else (r.dist or r.source)
        took = f"  {r.load_ms:.0f} ms" if r.ok else ""
        print(f"{r.name:16s} {r.version or '-':10s} {r.status:12s} {kind}  tools: {', '.join(r.tools) or '-'}{took}")
        if r.error:
            print(f"    {r.error}")
        for prob in r.problems:
            print(f"    warning: {prob}")
        for text in r.warnings:
            print(f"    slow start-up: {text}")
        for entry in r.earlier_errors[-3:]:
            print(f"    error in an earlier session: {describe_error(entry)}")
        if len(r.earlier_errors) > 3:
            print(f"    ({len(r.earlier_errors) - 3} more errors in earlier sessions; --json lists them)")
        if args.verbose and r.traceback:
            print("    " + r.traceback.rstrip().replace("\n", "\n    "))
        if args.verbose:
            for entry in r.earlier_errors:
                if entry.get("traceback"):
                    print("    " + str(entry["traceback"]).rstrip().replace("\n", "\n    "))
    return EXIT_OK


def cmd_devices(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} devices", description="Show the compute devices found and the one chosen.")
    parser.add_argument("--device", help="preference to resolve (default: settings, else auto)")
    parser.add_argument("--precision", help="precision to resolve on it (default: IMPLICIT_STUDIO_PRECISION, "
                                            "else settings, else auto)")
    args = parser.parse_args(argv)
    from app import devices
    from app.settings import Settings

    settings = Settings()
    try:
        for line in devices.summary(args.device or settings.device,
                                    args.precision or os.environ.get("IMPLICIT_STUDIO_PRECISION") or settings.precision):
            print(line)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# history and export (storage layer)
# ---------------------------------------------------------------------------------------------


def cmd_history(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} history", description="List the runs recorded in a session.")
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)
    store = _open_store(_session_path(args.session), create=False)
    try:
        from storage import StorageError, cli_support  # type: ignore

        try:
            text = cli_support.format_history(store, args.limit)
        except StorageError as exc:
            raise UsageError(str(exc)) from None
    finally:
        _close_store(store)
    if text:
        print(text.rstrip("\n"))
    return EXIT_OK


def cmd_export(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} export", description="Copy a run's results and parameters into a folder.")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--out", metavar="DIR", default=".")
    args = parser.parse_args(argv)
    store = _open_store(_session_path(args.session), create=False)
    try:
        from storage import StorageError, cli_support  # type: ignore

        try:
            written = cli_support.export_run(store, args.run_id, Path(args.out))
        except (KeyError, StorageError) as exc:  # no such run, a missing file, an unwritable folder
            raise UsageError(str(exc).strip("'\"")) from None
    finally:
        _close_store(store)
    for path in written or []:
        print(path)
    return EXIT_OK


def cmd_reproduce(argv: list[str]) -> int:
    """Re-run a recorded run with its parameters, seed and model (through the same run controller
    as the window's Reproduce) and say whether the outputs match bit for bit."""
    parser = new_parser(prog=f"{PROG} reproduce", description=(
        "Run a recorded run again with its parameters, seed and model, record the repeat in the "
        "session, and check that it made the same outputs bit for bit (exit 0 if so, 1 if not)."))
    parser.add_argument("run_id", type=int)
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps (default: settings, else auto)")
    parser.add_argument("--precision", metavar="P", help=PRECISION_HELP)
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    manager = _manager()
    from dataclasses import replace

    from app.controller import RunController
    from app.jobs import JobRunner, JobState
    from app.session_view import SessionView
    from app.settings import Settings

    settings = Settings()
    device, precision = _device_and_precision(args, settings)
    session_dir = _session_path(args.session)
    store = _open_store(session_dir, create=False, recover=True, readonly=False)
    _note_interrupted_runs(store)
    controller = RunController(manager, SessionView(store, session_dir), settings=settings,
                               runner=JobRunner(manager, store, settings=settings, device=device,
                                                precision=precision))
    try:
        try:
            request, notes = controller.reproduce_plan(args.run_id)
            request = replace(request, device=device)
        except (LookupError, ValueError) as exc:  # no such run or tool, an input not kept
            raise UsageError(str(exc).strip("'\"")) from None
        for note in notes:  # recorded parameters the installed tool does not take
            print(f"{PROG}: note: {note}", file=sys.stderr)
        try:
            job = controller.run(request, listener=_progress_printer(args.quiet or args.json),
                                 around=_ctrl_c_cancels)
        except KeyboardInterrupt:
            _err("interrupted")
            return EXIT_INTERRUPTED
        matched, message = controller.check_reproduction(args.run_id, job)
    finally:
        _close_store(store)
    if args.json:
        print(json.dumps({"run_id": args.run_id, "new_run_id": job.run_id, "status": job.state.value,
                          "matched": matched, "message": message, "request": request.to_dict()}))
    elif not args.quiet or not matched:
        print(f"run {args.run_id}: {message}", file=sys.stdout if matched else sys.stderr)
    if job.state is JobState.CANCELLED:
        return EXIT_INTERRUPTED
    return EXIT_OK if matched else EXIT_FAILED


def cmd_new_plugin(argv: list[str]) -> int:
    from app import scaffold

    return int(scaffold.main(argv) or 0)
