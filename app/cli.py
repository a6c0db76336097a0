"""The ``implicit-studio`` command (also ``python -m app``).

Without a command it opens the window on the default session (or ``--session PATH``). Commands:

``run TOOL [--param value ...] [--out DIR] [--session PATH] [--device D]``
    run a tool headless, record the run in the session, and write its results to ``--out``;
``tools [TOOL]``, ``plugins [enable|disable NAME]``, ``history``, ``export RUN_ID``,
``devices``, ``new-plugin NAME``, and any command a plugin adds through ``studio_commands``.

Errors are one line on stderr: exit status 2 for bad input (unknown tool, invalid parameter,
missing file, unusable session), 1 when the tool itself fails, 130 when interrupted.

Sub-commands live in :data:`SUBCOMMANDS`; :func:`register_subcommand` adds one (a handler taking
the argument list after the command name and returning the exit status).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import app
from app import api

PROG = "implicit-studio"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    handler: Callable[[list[str]], int]


#: Every sub-command by name. Plugins add more through the ``studio_commands`` hook.
SUBCOMMANDS: dict[str, Subcommand] = {}


def register_subcommand(name: str, help: str, handler: Callable[[list[str]], int] | str) -> None:
    """Add ``implicit-studio NAME``; ``handler`` is a callable or a lazy ``"module:function"``
    taking the remaining arguments and returning an exit status."""
    if isinstance(handler, str):
        ref = handler

        def handler(argv: list[str], _ref: str = ref) -> int:  # type: ignore[misc]
            return int(api.load_ref(_ref)(argv) or 0)

    SUBCOMMANDS[name] = Subcommand(name, help, handler)  # type: ignore[arg-type]


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2 through :class:`UsageError`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _manager():
    from app.plugins import get_manager
    from app.settings import Settings

    return get_manager(Settings())


def _warn_failed_plugins(manager: Any) -> None:
    bad = [r for r in manager.records.values() if r.status in ("failed", "incompatible")]
    for r in bad:
        print(f"{PROG}: note: plugin {r.name!r} {r.status}: {r.error} (see '{PROG} plugins')", file=sys.stderr)


def _session_path(value: Optional[str]) -> Path:
    if value:
        return Path(value).expanduser()
    from app.settings import default_session_dir

    return default_session_dir()


def _open_store(path: Path, create: bool = True):
    try:
        from storage import SessionStore  # type: ignore
    except ImportError as exc:
        raise UsageError(f"the session storage layer is not available ({exc})") from None
    if not create and not path.exists():
        raise UsageError(f"no session at {path}")
    try:
        return SessionStore.open(path)
    except Exception as exc:  # noqa: BLE001 - StorageError and OS errors become one line
        raise UsageError(f"cannot open session {path}: {exc}") from None


def _close_store(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------


def _tool_parser(tool: api.ToolSpec) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{PROG} run {tool.id}", description=(tool.title + (f": {tool.description}" if tool.description else "")),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("tool parameters")
    for p in tool.params:
        text = (p.help + " " if p.help else "") + f"[{p.describe()}]"
        if isinstance(p, api.BoolParam):
            group.add_argument(p.cli_option, dest=p.name, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            group.add_argument(p.cli_option, dest=p.name, default=None, metavar=p.type_name.upper(), help=text)
    common = parser.add_argument_group("run options")
    common.add_argument("--out", metavar="DIR", help="also write the results as files into DIR")
    common.add_argument("--session", metavar="PATH", help="session folder to record the run in (default: the default session)")
    common.add_argument("--no-session", action="store_true", help="do not record the run in a session")
    common.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps (default: settings, else auto)")
    common.add_argument("--json", action="store_true", help="print the outcome as JSON")
    common.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    return parser


def _progress_printer(quiet: bool) -> Callable[[Any], None]:
    tty = sys.stderr.isatty()
    last = [0.0]

    def on_event(event: Any) -> None:
        if quiet or event.kind != "progress":
            return
        d = event.data
        now = time.monotonic()
        final = d["step"] >= d["total"] > 0
        if not tty and not final and now - last[0] < 2.0:
            return
        last[0] = now
        eta = f" ETA {d['eta_s']:.1f}s" if d.get("eta_s") is not None else ""
        msg = f" {d['message']}" if d.get("message") else ""
        line = f"[{d['step']}/{d['total']}]{msg}{eta}"
        if tty:
            print("\r" + line.ljust(60), end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return on_event


def cmd_run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        manager = _manager()
        print(f"usage: {PROG} run TOOL [--param value ...] [--out DIR] [--session PATH] [--device D]\n")
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
    values: dict[str, Any] = {}
    for p in tool.params:
        raw = getattr(args, p.name)
        if raw is None:
            continue
        try:
            values[p.name] = raw if isinstance(p, api.BoolParam) else p.parse(raw)
        except api.ParamError as exc:
            raise UsageError(f"{p.cli_option}: {exc}") from None
    try:
        values = tool.validate(values)
    except api.ParamError as exc:
        opt = tool.param(exc.param).cli_option if exc.param and exc.param in {p.name for p in tool.params} else ""
        raise UsageError(f"{opt + ': ' if opt else ''}{exc}") from None

    from app import devices
    from app.jobs import JobRunner, JobState
    from app.settings import Settings

    settings = Settings()
    try:
        device = devices.parse_device(args.device or settings.device)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    out_dir = Path(args.out).expanduser() if args.out else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {out_dir}: {exc}") from None
    store = None if args.no_session else _open_store(_session_path(args.session))
    runner = JobRunner(manager, store, settings=settings, device=device)
    try:
        job = runner.prepare(tool, values, device)
        listener = _progress_printer(args.quiet or args.json)
        runner.add_listener(listener)
        try:
            runner.run_job(job)  # in this thread
        except KeyboardInterrupt:
            job._cancel.set()
            if store is not None and job.run_id is not None:
                try:
                    store.finish_run(job.run_id, "cancelled", error="interrupted")
                except Exception:  # noqa: BLE001 - already leaving
                    pass
            _err("interrupted")
            return EXIT_INTERRUPTED
        written = _write_outputs(job, out_dir) if (out_dir is not None and job.state is JobState.FINISHED) else []
    finally:
        if store is not None:
            _close_store(store)
    if job.state is JobState.FINISHED:
        if args.json:
            print(json.dumps({
                "run_id": job.run_id, "status": "finished", "tool": tool.id, "seed": job.seed,
                "device": job.device, "elapsed_s": round(job.elapsed_s, 3),
                "results": [{"kind": r.kind, "id": rid, "file": str(w) if w else None}
                            for r, rid, w in _zip_longest(job.results, job.result_ids, written)],
            }))
        elif not args.quiet:
            where = f"run {job.run_id}" if job.run_id is not None else "run"
            print(f"{where} finished: {tool.id}, seed {job.seed}, {job.device}, {job.elapsed_s:.2f} s, "
                  f"{len(job.results)} result(s)")
            for r, rid, w in _zip_longest(job.results, job.result_ids, written):
                ref = f" result:{rid}" if rid is not None else ""
                print(f"  {r.kind}{ref}" + (f" -> {w}" if w else ""))
        return EXIT_OK
    if job.state is JobState.CANCELLED:
        _err(f"run of {tool.id} was cancelled")
        return EXIT_INTERRUPTED
    _err(job.error or "the tool failed")
    if job.traceback:
        print(f"{PROG}: details are in the log file", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": job.run_id, "status": "failed", "tool": tool.id, "error": job.error}))
    return EXIT_FAILED


def _zip_longest(*seqs: Sequence[Any]):
    n = max((len(s) for s in seqs), default=0)
    for i in range(n):
        yield tuple(s[i] if i < len(s) else None for s in seqs)


def _write_outputs(job: Any, out_dir: Path) -> list[Path]:
    from app import results_io

    written = []
    info = {"tool": job.tool.id, "params": job.recorded_params, "seed": job.seed, "device": job.device,
            "run_id": job.run_id}
    stem = f"{job.tool.id}-{job.run_id}" if job.run_id is not None else f"{job.tool.id}-seed{job.seed}"
    for i, res in enumerate(job.results, 1):
        enc = results_io.encode(res, info)
        suffix = f"-{res.label}" if res.label and res.label.replace("-", "").replace("_", "").isalnum() else ""
        path = out_dir / f"{stem}-{i}{suffix}{enc.ext}"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(enc.data)
        os.replace(tmp, path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# tools, plugins, devices
# ---------------------------------------------------------------------------------------------


def cmd_tools(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} tools", description="List the tools and their parameters.")
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
            "params": [{"name": p.name, "option": p.cli_option, "type": p.type_name,
                        "default": p.to_json(p.default), "help": p.help} for p in t.params],
        } for t in tools], indent=2))
        return EXIT_OK
    for t in tools:
        print(f"{t.id}  ({t.plugin}) {t.title}")
        if t.description:
            print(f"    {t.description}")
        for p in t.params:
            print(f"    {p.cli_option:22s} {p.describe()}" + (f"  {p.help}" if p.help else ""))
    if not tools:
        print("no tools (see 'implicit-studio plugins')")
    _warn_failed_plugins(manager)
    return EXIT_OK


def cmd_plugins(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} plugins", description="List plugins, or enable/disable one.")
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
        } for r in recs], indent=2))
        return EXIT_OK
    for r in recs:
        kind = "built-in" if r.builtin else (r.dist or r.source)
        print(f"{r.name:16s} {r.version or '-':10s} {r.status:12s} {kind}  tools: {', '.join(r.tools) or '-'}")
        if r.error:
            print(f"    {r.error}")
        for prob in r.problems:
            print(f"    warning: {prob}")
        if args.verbose and r.traceback:
            print("    " + r.traceback.rstrip().replace("\n", "\n    "))
    return EXIT_OK


def cmd_devices(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} devices", description="Show the compute devices found and the one chosen.")
    parser.add_argument("--device", help="preference to resolve (default: settings, else auto)")
    args = parser.parse_args(argv)
    from app import devices
    from app.settings import Settings

    try:
        for line in devices.summary(args.device or Settings().device):
            print(line)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# history and export (storage layer)
# ---------------------------------------------------------------------------------------------


def cmd_history(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} history", description="List the runs recorded in a session.")
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)
    store = _open_store(_session_path(args.session), create=False)
    try:
        from storage import cli_support  # type: ignore

        text = cli_support.format_history(store, args.limit)
    finally:
        _close_store(store)
    if text:
        print(text.rstrip("\n"))
    return EXIT_OK


def cmd_export(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} export", description="Copy a run's results and parameters into a folder.")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--out", metavar="DIR", default=".")
    args = parser.parse_args(argv)
    store = _open_store(_session_path(args.session), create=False)
    try:
        from storage import cli_support  # type: ignore

        try:
            written = cli_support.export_run(store, args.run_id, Path(args.out))
        except KeyError as exc:
            raise UsageError(str(exc).strip("'\"")) from None
    finally:
        _close_store(store)
    for path in written or []:
        print(path)
    return EXIT_OK


def cmd_new_plugin(argv: list[str]) -> int:
    from app import scaffold

    return int(scaffold.main(argv) or 0)


register_subcommand("run", "run a tool headless and record it in the session", cmd_run)
register_subcommand("tools", "list tools and their parameters", cmd_tools)
register_subcommand("plugins", "list plugins (version, state, errors); enable or disable one", cmd_plugins)
register_subcommand("history", "list the runs of a session", cmd_history)
register_subcommand("export", "export a run's results and parameters", cmd_export)
register_subcommand("devices", "show the compute devices and the one chosen", cmd_devices)
register_subcommand("new-plugin", "write a new plugin project from the template", cmd_new_plugin)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def _top_parser(list_plugin_commands: bool = False) -> argparse.ArgumentParser:
    lines = [f"  {name:20s} {sc.help}" for name, sc in sorted(SUBCOMMANDS.items())]
    plugin_commands = []
    if list_plugin_commands:  # only for --help: loading plugins is not free
        try:
            plugin_commands = sorted(_manager().commands.values(), key=lambda c: c.name)
        except Exception:  # noqa: BLE001 - help must always work
            plugin_commands = []
    if plugin_commands:
        lines.append("\ncommands added by plugins:")
        lines += [f"  {c.name:20s} {c.help} [{c.plugin}]" for c in plugin_commands]
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [options] [COMMAND [args]]",
        description="Implicit Studio: diffusion image generation and editing, implicit neural "
                    "representations and distributional RL, with plugins. Without a command, opens the window.",
        epilog="commands:\n" + "\n".join(lines) + f"\n\n'{PROG} COMMAND --help' describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {app.__version__} (plugin API {api.API_VERSION})")
    parser.add_argument("--session", metavar="PATH", help="session folder to open (default: the default session)")
    parser.add_argument("--device", metavar="D", help="compute device: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--exit-after-paint", action="store_true",
                        help="open the window, print 'first-paint-ms: N' after its first paint, and exit")
    return parser


def _split_global(argv: list[str]) -> tuple[list[str], Optional[str], list[str]]:
    """Split ``[global options] [command args...]``."""
    takes_value = {"--session", "--device"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            i += 2 if a in takes_value else 1
            continue
        return argv[:i], a, argv[i + 1:]
    return argv, None, []


def _launch_window(session: Optional[str], exit_after_paint: bool) -> int:
    try:
        from app.ui.main_window import launch
    except ImportError as exc:
        raise UsageError(f"the window cannot start: {exc}") from None
    session_dir = _session_path(session)
    return int(launch([sys.argv[0] if sys.argv else PROG], session_dir=session_dir, exit_after_paint=exit_after_paint) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from app.settings import setup_logging

        setup_logging()
        global_args, command, rest = _split_global(argv)
        wants_help = any(a in ("-h", "--help") for a in global_args)
        opts = _top_parser(wants_help).parse_args(global_args)
        if opts.device:
            from app import devices

            try:
                devices.parse_device(opts.device)
            except devices.DeviceError as exc:
                raise UsageError(str(exc)) from None
        if command is None:
            if opts.device:
                os.environ["IMPLICIT_STUDIO_DEVICE"] = opts.device
            return _launch_window(opts.session, opts.exit_after_paint)
        # global --session/--device apply to the command unless it gives its own
        if opts.session and command in ("run", "history", "export") and "--session" not in rest:
            rest = rest + ["--session", opts.session]
        if opts.device and command == "run" and "--device" not in rest:
            rest = rest + ["--device", opts.device]
        sub = SUBCOMMANDS.get(command)
        if sub is None:
            manager = _manager()
            spec = manager.commands.get(command)
            if spec is None:
                known = ", ".join(sorted(set(SUBCOMMANDS) | set(manager.commands)))
                raise UsageError(f"unknown command {command!r}; commands: {known}")
            fn = manager.resolve(spec.main, spec.plugin, f"command {spec.name!r}")
            return int(manager.guarded(spec.plugin, f"command {spec.name!r}", fn, rest) or 0)
        return sub.handler(rest)
    except UsageError as exc:
        msg = str(exc)
        print(msg if msg.startswith(PROG) else f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except api.ToolError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, details in the log
        import logging

        logging.getLogger("implicit_studio.cli").exception("unexpected error")
        _err(f"{type(exc).__name__}: {exc} (details in the log file)")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
