"""More pytest fixtures for plugin authors: the real main window with *your* plugin in it.

:mod:`app.testing` (the ``implicit_studio`` pytest11 plugin) gives managers, sessions, a
``run_tool`` helper and the CLI. This module adds what a plugin author needs to test a plugin
the way a user meets it, in the window:

``make_studio_window``
    ``make_studio_window(*plugins, installed=True, session_dir=None) -> MainWindow``: the real
    main window, offscreen, with the installed plugins (``installed=True``) and/or the plugin
    modules given (module objects or import names, registered through the same guarded path as
    discovered plugins), on a private session in a temporary folder. With ``show=True`` (the
    default) it returns once the window is painted and its session is open, ready to run tools.
    Windows are closed at the end of the test. Needs pytest-qt.

``run_in_window(qtbot, window, tool_id, timeout_ms=60000, **values)``
    drives the window as a person would: selects the tool, types the values into its form,
    presses Run and waits for the job to end. Returns a :class:`WindowRun` (status, job id, the
    result the window shows).

Installing Implicit Studio registers this module as a pytest plugin (the ``implicit_studio_kit``
entry in the ``pytest11`` group, beside ``implicit_studio`` for :mod:`app.testing`), so the
fixture is available in any project with no import: do not import it into a conftest (a fixture
defined twice breaks ``pytest --fixtures``). It builds on the ``studio_env`` fixture of
:mod:`app.testing`.

:class:`WindowRun` fields: ``status`` (``"ok"``, ``"failed"`` or ``"cancelled"``), ``job_id`` (the
queue's id of the run), ``result`` (the result the window shows after the run, its first one, or
``None``), ``error`` (the window's last error message when the run did not finish, else ``""``).

Qt is imported only inside the fixture, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Union

import pytest

PluginLike = Union[str, ModuleType, Any]


@dataclass
class WindowRun:
    """Outcome of :func:`run_in_window`: ``status`` (``"ok"``, ``"failed"`` or ``"cancelled"``),
    ``job_id`` (the queue's id of the run), ``result`` (what the window shows after the run: its
    first result, or ``None``) and ``error`` (the window's error message if it did not finish)."""

    status: str  # "ok", "failed" or "cancelled"
    job_id: Any
    result: Any  # what the window shows after the run (the first result), or None
    error: str = ""  # the window's last error message, if the run failed


def _plugin_module(plugin: PluginLike) -> tuple[Any, str]:
    if isinstance(plugin, str):
        module = importlib.import_module(plugin)
        return module, plugin.replace(".", "_")
    name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return plugin, str(name).replace(".", "_")


@pytest.fixture
def make_studio_window(request: pytest.FixtureRequest, studio_env: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Factory of real main windows with plugins loaded (see the module docstring)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    qtbot = request.getfixturevalue("qtbot")
    windows: list[Any] = []

    def _make(*plugins: PluginLike, installed: bool = True, session_dir: str | os.PathLike | None = None,
              show: bool = True) -> Any:
        from app.plugins import PluginManager
        from app.settings import Settings
        from app.ui.main_window import MainWindow

        settings = Settings()
        manager = PluginManager(settings, entry_points=None if installed else []).load()
        for plugin in plugins:
            module, name = _plugin_module(plugin)
            record = manager.register_plugin(module, name)
            if not record.ok:
                raise AssertionError(f"plugin {name} did not load: {record.status}: {record.error}\n"
                                     f"{record.traceback or ''}")
            if record.problems:
                raise AssertionError(f"plugin {name} loaded with problems: {'; '.join(record.problems)}")
        folder = Path(session_dir) if session_dir is not None else tmp_path_factory.mktemp("session") / "session"
        window = MainWindow(session_dir=folder, manager=manager, settings=settings)
        windows.append(window)
        ready: list[bool] = []
        ready_signal = getattr(window, "sessionReady", None)  # the session opens after the first paint
        if ready_signal is not None:
            ready_signal.connect(lambda: ready.append(True))
        if show:
            window.resize(1200, 800)
            window.show()
            qtbot.waitExposed(window)
            if ready_signal is not None:
                qtbot.waitUntil(lambda: bool(ready), timeout=30000)
        return window

    yield _make
    for window in windows:
        try:
            window.close()
        finally:
            window.deleteLater()
    qtbot.wait(10)  # let deleteLater run before the next test


def run_in_window(qtbot: Any, window: Any, tool_id: str, timeout_ms: int = 60000, **values: Any) -> WindowRun:
    """Select ``tool_id`` in the window's tool list, put ``values`` into its form (names of the
    tool's parameters; others keep their defaults), press Run and wait until the job ends."""
    if not window.select_tool(tool_id):
        known = ", ".join(sorted(getattr(window.manager, "tools", {}))) or "none"
        raise AssertionError(f"the window has no tool {tool_id!r} (tools: {known})")
    if values:
        rejected = window.tool_panel.set_values({k: (os.fspath(v) if isinstance(v, os.PathLike) else v)
                                                 for k, v in values.items()})
        if rejected:
            raise AssertionError(f"the form of {tool_id!r} did not accept {rejected}")
    finished: list[tuple[Any, str]] = []

    def on_finished(job_id: Any, status: str) -> None:
        finished.append((job_id, status))

    window.jobFinished.connect(on_finished)
    try:
        job_id = window.run_current()
        if job_id is None:
            message = window.last_error[0] if getattr(window, "last_error", None) else ""
            raise AssertionError(f"the window refused to run {tool_id!r}: {message or window.statusBar().currentMessage()}")
        qtbot.waitUntil(lambda: any(j == job_id for j, _ in finished), timeout=timeout_ms)
    finally:
        window.jobFinished.disconnect(on_finished)
    status = next(s for j, s in finished if j == job_id)
    error = ""
    if status != "ok" and getattr(window, "last_error", None):
        error = " ".join(str(x) for x in window.last_error if x)
    return WindowRun(status=status, job_id=job_id, result=window.result_area.current_result, error=error)


__all__ = ["WindowRun", "make_studio_window", "run_in_window"]
