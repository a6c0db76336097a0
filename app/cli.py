"""The ``implicit-studio`` command (also ``python -m app``).

Without a command it opens the window on the default session (or ``--session PATH``). Commands:

``run TOOL [--param value ...] [--out DIR] [--session PATH] [--device D] [--precision P]``
    run a tool headless, record the run in the session, and write its results to ``--out``;
``tools [TOOL]``, ``plugins [enable|disable NAME]``, ``history``, ``export RUN_ID``,
``session check|repair|backup``,
``devices``, ``new-plugin NAME``, and any command a plugin adds through ``studio_commands``.

Errors are one line on stderr: exit status 2 for bad input (unknown tool, invalid parameter,
missing file, unusable session), 1 when the tool itself fails, 130 when interrupted.

Sub-commands live in :data:`SUBCOMMANDS`; :func:`register_subcommand` adds one (a handler taking
the argument list after the command name and returning the exit status).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
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


_parser_class: Any = None


def new_parser(*args: Any, **kwargs: Any) -> Any:
    """An ``argparse.ArgumentParser`` that reports errors as one line (exit 2 through
    :class:`UsageError`). argparse is imported on first use: opening the window needs none."""
    global _parser_class
    if _parser_class is None:
        import argparse

        class _Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")

        _parser_class = _Parser
    return _parser_class(*args, **kwargs)


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _manager():
    from app.plugins import get_manager
    from app.settings import Settings

    return get_manager(Settings())


def _session_path(value: Optional[str]) -> Path:
    if value:
        return Path(value).expanduser()
    from app.settings import default_session_dir

    return default_session_dir()


# The built-in commands live in app.cli_commands, imported only when one of them runs.
register_subcommand("run", "run a tool headless and record it in the session", "app.cli_commands:cmd_run")
register_subcommand("tools", "list tools and their parameters", "app.cli_commands:cmd_tools")
register_subcommand("plugins", "list plugins (version, state, errors); enable or disable one", "app.cli_commands:cmd_plugins")
register_subcommand("history", "list the runs of a session", "app.cli_commands:cmd_history")
register_subcommand("export", "export a run's results and parameters", "app.cli_commands:cmd_export")
register_subcommand("reproduce", "run a recorded run again and check its outputs bit for bit",
                    "app.cli_commands:cmd_reproduce")
register_subcommand("devices", "show the compute devices and the one chosen", "app.cli_commands:cmd_devices")
register_subcommand("new-plugin", "write a new plugin project from the template", "app.cli_commands:cmd_new_plugin")
register_subcommand("session", "check, repair or back up a session", "app.cli_session:cmd_session")


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def _top_parser(list_plugin_commands: bool = False) -> Any:
    import argparse

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
    parser = new_parser(
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
    parser.add_argument("--precision", metavar="P", help="arithmetic: auto (float16 on CUDA, float32 elsewhere), "
                                                         "fp32, fp16 or bf16")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (every plugin, the bundled model, a session) and exit; "
                             "'--self-test --help' lists its options")
    parser.add_argument("--exit-after-paint", action="store_true",
                        help="open the window, print 'first-paint-ms: N' after its first paint, and exit")
    return parser


def _split_global(argv: list[str]) -> tuple[list[str], Optional[str], list[str]]:
    """Split ``[global options] [command args...]``."""
    takes_value = {"--session", "--device", "--precision"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            i += 2 if a in takes_value else 1
            continue
        return argv[:i], a, argv[i + 1:]
    return argv, None, []


def _plain_window_options(args: list[str]) -> Optional[SimpleNamespace]:
    """The options of a plain window launch (``--session P``, ``--device D``, ``--precision P``,
    ``--exit-after-paint``) read without argparse; ``None`` for anything else (argparse then
    parses it and reports what is wrong)."""
    opts = SimpleNamespace(session=None, device=None, precision=None, exit_after_paint=False)
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--session", "--device", "--precision") and i + 1 < len(args) and not args[i + 1].startswith("-"):
            setattr(opts, a[2:], args[i + 1])
            i += 2
        elif a == "--exit-after-paint":
            opts.exit_after_paint = True
            i += 1
        else:
            return None
    return opts


def _no_display() -> bool:
    """True on Linux without an X11 or Wayland display when no Qt platform was chosen: Qt would
    abort (core dump) trying to open the window."""
    return (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"))


def _launch_window(session: Optional[str], exit_after_paint: bool) -> int:
    if _no_display():
        if not exit_after_paint:
            raise UsageError(
                "there is no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set); "
                "run it on a desktop, under Xvfb (xvfb-run implicit-studio), or with "
                "QT_QPA_PLATFORM=offscreen to run it without showing anything "
                f"('{PROG} --help' lists the commands that need no display)")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a measurement: nothing needs to be seen
    try:
        from app.ui.launch import launch
    except ImportError as exc:
        raise UsageError(f"the window cannot start: {exc}") from None
    session_dir = _session_path(session)
    return int(launch([sys.argv[0] if sys.argv else PROG], session_dir=session_dir, exit_after_paint=exit_after_paint) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:
        from app.selftest import main as selftest_main

        return selftest_main(argv[1:])
    try:
        from app.settings import setup_logging

        setup_logging()
        global_args, command, rest = _split_global(argv)
        opts = _plain_window_options(global_args) if command is None else None
        if opts is None:
            wants_help = any(a in ("-h", "--help") for a in global_args)
            opts = _top_parser(wants_help).parse_args(global_args)
        if opts.device or opts.precision:
            from app import devices

            try:
                if opts.device:
                    devices.parse_device(opts.device)
                if opts.precision:
                    devices.parse_precision(opts.precision)
            except devices.DeviceError as exc:
                raise UsageError(str(exc)) from None
        if command is None:
            if opts.device:
                os.environ["IMPLICIT_STUDIO_DEVICE"] = opts.device
            if opts.precision:
                os.environ["IMPLICIT_STUDIO_PRECISION"] = opts.precision
            return _launch_window(opts.session, opts.exit_after_paint)
        # global --session/--device apply to the command unless it gives its own
        if opts.session and command in ("run", "history", "export", "reproduce", "session") and "--session" not in rest:
            rest = rest + ["--session", opts.session]
        if opts.device and command == "run" and "--device" not in rest:
            rest = rest + ["--device", opts.device]
        if opts.precision and command in ("run", "reproduce") and "--precision" not in rest:
            rest = rest + ["--precision", opts.precision]
        sub = SUBCOMMANDS.get(command)
        if sub is None:
            manager = _manager()
            spec = manager.commands.get(command)
            if spec is None:
                known = ", ".join(sorted(set(SUBCOMMANDS) | set(manager.commands)))
                raise UsageError(f"unknown command {command!r}; commands: {known}")
            return manager.run_command(spec, rest)
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
        if _is_storage_error(exc):  # an unusable session or file: its sentence says what to do
            _err(str(exc))
            return EXIT_USAGE
        import logging

        logging.getLogger("implicit_studio.cli").exception("unexpected error")
        from app.settings import log_file_path

        _err(f"{type(exc).__name__}: {exc} (details are in the log file {log_file_path()})")
        return EXIT_FAILED


def _is_storage_error(exc: BaseException) -> bool:
    errors = sys.modules.get("storage.errors")  # not imported: then it cannot be one
    return errors is not None and isinstance(exc, errors.StorageError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
