"""pytest fixtures and helpers for plugin authors (registered as the ``implicit_studio`` pytest11
plugin, so they are available in any project that has Implicit Studio installed).

Fixtures
    ``studio_env``       private settings/data/log folders for the test (env vars), offline hub.
    ``studio_manager``   a loaded :class:`app.plugins.PluginManager` with the installed plugins.
    ``studio_session``   a fresh session store in a temporary folder.
    ``run_tool``         ``run_tool(tool_id, **params) -> list[Result]``: runs a tool to the end,
                         records it in ``studio_session``, raises :class:`ToolRunError` on failure.
    ``studio_cli``       ``studio_cli(*args) -> CliResult`` runs the command line in-process.
    ``studio_window``    the real main window with the installed plugins (needs pytest-qt);
                         ``make_studio_window`` (from :mod:`app.testing_kit`) builds more.
    ``plugin_dist``      ``plugin_dist(dist_name, {entry_name: "module"}, paths=[folder])``
                         installs a throw-away distribution so discovery finds it.

Helpers
    :func:`install_plugin_dist`, :func:`assert_plugin_conforms`.

Nothing heavy is imported at module level: this module is loaded by every pytest run.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import pytest

HEAVY_MODULES = ("torch", "diffusers", "transformers", "onnxruntime")


class ToolRunError(AssertionError):
    """``run_tool`` saw the run fail or get cancelled; the message holds the error and traceback."""


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


# ---------------------------------------------------------------------------------------------
# distributions for discovery
# ---------------------------------------------------------------------------------------------


def install_plugin_dist(site_dir: Path, dist_name: str, entry_points: Mapping[str, str], *,
                        version: str = "0.1.0", author: str = "Plugin Author", summary: str = "") -> Path:
    """Write a minimal ``<dist>-<version>.dist-info`` (METADATA + entry_points.txt for the
    ``implicit_studio.plugins`` group) into ``site_dir``. With ``site_dir`` on ``sys.path``,
    ``importlib.metadata`` finds it like any installed distribution."""
    site_dir = Path(site_dir)
    norm = dist_name.replace("-", "_")
    info = site_dir / f"{norm}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\nAuthor: {author}\n"
        f"Summary: {summary or dist_name}\n", encoding="utf-8")
    lines = ["[implicit_studio.plugins]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return info


@contextlib.contextmanager
def plugin_dists_on_path(site_dir: Path, extra_paths: Sequence[Path] = ()) -> Iterator[None]:
    """Put ``site_dir`` (and module folders) on ``sys.path`` for the block; forget the modules
    imported from them afterwards."""
    added = [str(p) for p in [site_dir, *extra_paths]]
    before = set(sys.modules)
    for p in reversed(added):
        sys.path.insert(0, p)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for p in added:
            while p in sys.path:
                sys.path.remove(p)
        for name in set(sys.modules) - before:
            mod = sys.modules.get(name)
            f = getattr(mod, "__file__", None) or ""
            if any(f.startswith(p) for p in added):
                del sys.modules[name]
        importlib.invalidate_caches()


# ---------------------------------------------------------------------------------------------
# conformance
# ---------------------------------------------------------------------------------------------


def assert_plugin_conforms(entry_module: str | Sequence[str], *, python: str = sys.executable,
                           env: Optional[Mapping[str, str]] = None) -> dict:
    """Check plugin entry modules the way the studio relies on them:

    - importing them (in a fresh interpreter) and calling their registration hooks imports none
      of torch, diffusers, transformers, onnxruntime, and each one loads without problems;
    - every ``"module:attr"`` reference of their tools, readers, writers, rewards and commands
      resolves (imported in that interpreter *after* the check above; Qt viewer and panel
      references are only listed) and every parameter default validates.

    ``entry_module`` is one import name or several (checked together in one interpreter).
    Returns a summary dict; raises ``AssertionError`` listing the problems found.
    """
    modules = [entry_module] if isinstance(entry_module, str) else list(entry_module)
    script = r"""
import importlib, json, sys
from app import api, plugins
m = plugins.PluginManager(entry_points=[], env={})
problems = []
for i, name in enumerate(sys.argv[1:]):
    rec = m.register_plugin(importlib.import_module(name), f"plugin-{i}-{name}")
    if not rec.ok:
        problems.append(f"{name} did not load: {rec.status}: {rec.error}")
    problems += [f"{name}: {p}" for p in rec.problems]
heavy = [h for h in %r if h in sys.modules]
refs = [t.run for t in m.tools.values()]
refs += [r.read for r in m.readers] + [w.write for w in m.writers] + [r.load for r in m.rewards.values()]
refs += [c.main for c in m.commands.values()]
for t in m.tools.values():
    for p in t.params:
        if isinstance(p, (api.ImageParam, api.PathParam, api.ModelParam)):
            continue
        if api.is_empty_value(p.default) and (p.required or getattr(p, "allow_empty", True) is False):
            continue  # an empty default is how a value the user must give is declared
        try:
            p.validate(p.default)
        except api.ParamError as e:
            problems.append(f"tool {t.id}: default of {p.name} is invalid: {e}")
qt_refs = [v.widget for v in m.viewers] + [t.panel for t in m.tools.values() if t.panel]
for ref in refs:
    try:
        api.load_ref(ref)
    except Exception as e:
        problems.append(f"reference {ref} does not resolve: {type(e).__name__}: {e}")
print(json.dumps({"heavy": heavy, "problems": problems, "tools": sorted(m.tools), "qt_refs": qt_refs}))
""" % (HEAVY_MODULES,)
    run_env = dict(os.environ)
    run_env.update(env or {})
    proc = subprocess.run([python, "-c", script, *modules], capture_output=True, text=True, env=run_env, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"checking {', '.join(modules)} crashed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = []
    if out["heavy"]:
        errors.append(f"registering {', '.join(modules)} imported heavy modules: {', '.join(out['heavy'])}")
    errors += out["problems"]
    if errors:
        raise AssertionError("plugin does not conform:\n- " + "\n- ".join(errors))
    return out


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def studio_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private config, data and log folders for one test; model hubs offline."""
    root = tmp_path_factory.mktemp("studio-env")
    for key, sub in (("IMPLICIT_STUDIO_CONFIG_DIR", "config"), ("IMPLICIT_STUDIO_DATA_DIR", "data"),
                     ("IMPLICIT_STUDIO_LOG_DIR", "log")):
        (root / sub).mkdir()
        monkeypatch.setenv(key, str(root / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.fixture
def studio_manager(studio_env: Path):
    """A freshly loaded plugin manager (installed plugins, this test's settings); also the
    process-wide manager for the test's duration."""
    from app import plugins
    from app.settings import Settings

    manager = plugins.PluginManager(Settings()).load()
    previous = plugins._default
    plugins.set_manager(manager)
    try:
        yield manager
    finally:
        plugins.set_manager(previous)


@pytest.fixture
def studio_session(tmp_path: Path):
    """A new, empty session store in a temporary folder (closed after the test)."""
    from storage import SessionStore  # type: ignore

    store = SessionStore.open(tmp_path / "session")
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


@pytest.fixture
def run_tool(studio_manager: Any, studio_session: Any) -> Callable[..., list]:
    """``run_tool(tool_id, device="cpu", **params)`` runs a tool to completion in this thread,
    through the same run controller as the window and the command line (so a tool that calls
    ``ctx.run_tool`` works, and its children are recorded), records it in ``studio_session`` and
    returns its results. ``run_tool.last_job`` holds the job (``.run_id``, ``.children``...),
    ``run_tool.controller`` the controller, ``run_tool.session`` the session store."""
    from app.controller import RunController
    from app.jobs import JobRunner, JobState
    from app.session_view import SessionView

    runner = JobRunner(studio_manager, studio_session, device="cpu")
    controller = RunController(studio_manager, SessionView(studio_session, Path(studio_session.folder)),
                               runner=runner)

    def _run(tool_id: str, device: str = "cpu", **params: Any) -> list:
        job = controller.run(controller.request(tool_id, params, device=device))
        _run.last_job = job  # type: ignore[attr-defined]
        if job.state is not JobState.FINISHED:
            raise ToolRunError(f"{tool_id} {job.state.value}: {job.error}\n{job.traceback or ''}")
        return job.results

    _run.last_job = None  # type: ignore[attr-defined]
    _run.runner = runner  # type: ignore[attr-defined]
    _run.controller = controller  # type: ignore[attr-defined]
    _run.session = studio_session  # type: ignore[attr-defined]
    return _run


@pytest.fixture
def studio_cli(studio_env: Path) -> Callable[..., CliResult]:
    """``studio_cli(*args)`` runs ``implicit-studio args...`` in-process and returns its exit code
    and captured output. Plugins are discovered afresh for each call."""
    from app import cli, plugins

    def _run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        previous = plugins._default
        plugins.set_manager(None)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main([str(a) for a in args])
        finally:
            plugins.set_manager(previous)
        return CliResult(int(code), out.getvalue(), err.getvalue())

    return _run


@pytest.fixture
def plugin_dist(tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """``plugin_dist(dist_name, {entry: "module"}, paths=[folders with the modules], version=...)``
    makes discovery see a distribution for the rest of the test (it also lifts an
    ``IMPLICIT_STUDIO_NO_PLUGINS`` switch, which would hide it, for the test)."""
    stack = contextlib.ExitStack()

    def _install(dist_name: str, entry_points: Mapping[str, str], paths: Sequence[Path] = (), **kw: Any) -> Path:
        monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
        site = tmp_path_factory.mktemp("site")
        info = install_plugin_dist(site, dist_name, entry_points, **kw)
        stack.enter_context(plugin_dists_on_path(site, [Path(p) for p in paths]))
        return info

    with stack:
        yield _install


# The window fixtures (make_studio_window) live in app.testing_kit, the second pytest11 plugin of
# the studio: pytest loads both. A fixture must be defined in one plugin only: imported here too,
# it was registered twice and ``pytest --fixtures`` crashed sorting the duplicates. Only the
# helpers that are not fixtures are re-exported.
from app.testing_kit import WindowRun, run_in_window  # noqa: E402,F401


@pytest.fixture
def studio_window(request: pytest.FixtureRequest):
    """The real main window, shown offscreen, with the installed plugins and a private session
    (``make_studio_window()`` of :mod:`app.testing_kit`; needs pytest-qt). Drive it with
    ``app.testing_kit.run_in_window(qtbot, window, tool_id, **values)``."""
    factory = request.getfixturevalue("make_studio_window")
    return factory()


def heavy_modules_loaded() -> list[str]:
    """Which of torch, diffusers, transformers, onnxruntime are imported in this process."""
    return [m for m in HEAVY_MODULES if m in sys.modules]


__all__ = [
    "CliResult",
    "ToolRunError",
    "install_plugin_dist",
    "plugin_dists_on_path",
    "assert_plugin_conforms",
    "heavy_modules_loaded",
    "studio_env",
    "studio_manager",
    "studio_session",
    "run_tool",
    "studio_cli",
    "plugin_dist",
    "studio_window",
]
