"""What a plugin's failure costs, and naming the plugin afterwards (no Qt).

* ``SystemExit`` and ``KeyboardInterrupt`` raised by plugin code are that plugin's failure, like
  any exception (:func:`describe`, :func:`from_the_user`): only a Ctrl-C the user pressed on the
  command line (:data:`USER_INTERRUPT`) passes through plugin boundaries.
* A native crash (abort, segmentation fault) cannot be caught. While a tool runs, the process's
  fatal-error handler (:mod:`faulthandler`) writes into ``<session>/running/fatal-<pid>.log``,
  and the run's lock file (:mod:`storage.owners`) points at it. The next start finds the run
  interrupted, reads the fatal error and names the tool's plugin (:func:`notes`), so the user
  can disable it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator

#: Set by the command line's Ctrl-C handler before it raises ``KeyboardInterrupt``: that one comes
#: from the user. Any other ``KeyboardInterrupt`` raised inside plugin code is the plugin's own.
USER_INTERRUPT = threading.Event()


def from_the_user(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt) and USER_INTERRUPT.is_set()


def describe(exc: BaseException) -> str:
    """``"ValueError: bad"``; ``SystemExit`` and ``KeyboardInterrupt`` say what they tried."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin tried to end the application"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt raised by the plugin's own code"
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- native crashes
_lock = threading.Lock()
_active: dict[str, Any] = {"path": None, "file": None, "users": 0, "was_enabled": False}
_recovered: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def fatal_log_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / "running" / f"fatal-{os.getpid()}.log"


def prepare(store: Any) -> None:
    """Point the lock files of ``store``'s runs at this process's fatal-error log."""
    owners = getattr(store, "owners", None)
    if owners is not None and not getattr(store, "readonly", True):
        owners.fatal_log = str(fatal_log_path(store.folder))


@contextlib.contextmanager
def watching(store: Any) -> Iterator[None]:
    """While the block runs (a tool), a fatal error of the process is written to ``store``'s
    fatal-error log. Nested and concurrent blocks share one log (the first store's); without a
    prepared store nothing is done."""
    path = getattr(getattr(store, "owners", None), "fatal_log", None)
    if not path:
        yield
        return
    _enter(path)
    try:
        yield
    finally:
        _leave()


def _enter(path: str) -> None:
    with _lock:
        if _active["users"] == 0:
            try:
                Path(path).parent.mkdir(exist_ok=True)
                handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open while it runs
            except OSError:
                handle = None
            if handle is not None:
                _active.update(path=path, file=handle, was_enabled=faulthandler.is_enabled())
                faulthandler.enable(handle, all_threads=True)
        _active["users"] += 1


def _leave() -> None:
    with _lock:
        _active["users"] -= 1
        if _active["users"] > 0 or _active["file"] is None:
            return
        faulthandler.disable()
        if _active["was_enabled"] and sys.__stderr__ is not None:
            try:
                faulthandler.enable(sys.__stderr__)
            except (ValueError, OSError):  # no usable stderr (a windowed app)
                pass
        _active["file"].close()
        try:
            os.unlink(_active["path"])
        except OSError:
            pass
        _active.update(path=None, file=None)


def remember(store: Any, runs: list) -> None:
    _recovered[store] = list(runs)


def recovered(store: Any) -> list:
    """The runs found interrupted when ``store`` was opened (``storage.InterruptedRun``)."""
    return list(_recovered.get(store, ()))


def crashed(runs: list) -> list:
    """The interrupted runs whose process died of a fatal error (a plugin most likely crashed it)."""
    return [r for r in runs if r.fatal_error]


def notes(runs: list) -> list[str]:
    """Sentences for the command line about runs found interrupted at start-up."""
    out = []
    for r in crashed(runs):
        out.append(f"the application crashed ({r.fatal_error}) while tool {r.tool_id!r} of plugin "
                   f"{r.plugin!r} was running (run {r.run_id}, now marked failed). If it happens "
                   f"again, disable the plugin: implicit-studio plugins disable {r.plugin}")
    others = [r for r in runs if not r.fatal_error]
    if others:
        names = ", ".join(f"{r.run_id} ({r.tool_id}, plugin {r.plugin!r})" for r in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        out.append(f"run(s) {names}{more} were left unfinished by a process that stopped; they "
                   "are marked failed")
    return out
