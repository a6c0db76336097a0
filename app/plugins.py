"""The plugin manager: finds plugins, loads each one behind its own guard, and indexes what they
contribute (tools, readers, writers, viewers, settings pages, reward models, CLI commands).

Discovery goes through the ``implicit_studio.plugins`` entry-point group; the built-in plugins
are found the same way as third-party ones. Each entry point is imported and registered inside
its own ``try``: a plugin that fails to import, asks for a newer API, uses an unknown hook or
raises in a registration hook is recorded (:class:`PluginRecord` with the traceback, in the log)
and the others load normally. Every later call into plugin code goes through :meth:`PluginManager.guarded`.

Environment switches:

- ``IMPLICIT_STUDIO_NO_PLUGINS=1`` loads only the built-in plugins; ``=all`` loads none.
- ``IMPLICIT_STUDIO_LOAD_PLUGINS=a,b`` loads only the plugins named.
- ``IMPLICIT_STUDIO_PLUGINS_DIR=folder[:folder]`` also loads plugin modules (``*.py`` files or
  packages) found in those folders (used by desktop bundles and for quick experiments).
- ``IMPLICIT_STUDIO_STRICT_PLUGINS=1`` turns the first plugin failure into an exception (for CI).

No Qt here, and nothing heavy: the plugin modules themselves import only ``app.api``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import pluggy

from app import api, crashguard, hookspecs
from app import entrypoints as _ep

_log = logging.getLogger("implicit_studio.plugins")

ENTRY_POINT_GROUP = "implicit_studio.plugins"
BUILTIN_DIST = "implicit-studio"
#: The package of the built-in plugins; their resources are the studio's bundled ``resources/``.
BUILTIN_PACKAGE = "plugins"
SLOW_HOOK_MS = 100.0

#: Modules an entry module should not import at start-up (they take a second or more); a plugin
#: that does is flagged (``PluginRecord.heavy_imports``). Seen by comparing ``sys.modules``
#: before and after the import, so only the first plugin to import one is named.
HEAVY_IMPORTS = ("torch", "diffusers", "transformers", "onnxruntime", "tensorflow", "jax", "cv2", "scipy",
                 "sklearn", "matplotlib", "pyqtgraph", "PySide6")

LOADED, FAILED, DISABLED, INCOMPATIBLE = "loaded", "failed", "disabled", "incompatible"

#: Registration hooks, the record type each returns, and the attribute holding the record's key.
REGISTRATION_HOOKS: dict[str, tuple[type, str]] = {
    "studio_tools": (api.ToolSpec, "id"),
    "studio_readers": (api.ReaderSpec, "id"),
    "studio_writers": (api.WriterSpec, "id"),
    "studio_viewers": (api.ViewerSpec, "id"),
    "studio_settings": (api.SettingsSpec, "section"),
    "studio_rewards": (api.RewardSpec, "id"),
    "studio_commands": (api.CommandSpec, "name"),
}

#: Passed through ``guarded`` unchanged: they carry a user-facing meaning.
_PASS_THROUGH = (api.Cancelled, api.ToolError, api.ParamError)

# SystemExit and KeyboardInterrupt from plugin code are the plugin's failure; only the user's Ctrl-C
# on the command line passes through (see app.crashguard).
_from_the_user = crashguard.from_the_user
_describe = crashguard.describe


class PluginCallError(Exception):
    """A call into plugin code raised. ``plugin`` names the plugin, ``what`` the call,
    ``original`` is the exception and ``traceback_text`` its formatted traceback."""

    def __init__(self, plugin: str, what: str, original: BaseException, traceback_text: str):
        super().__init__(f"plugin {plugin!r} failed in {what}: {_describe(original)}")
        self.plugin = plugin
        self.what = what
        self.original = original
        self.traceback_text = traceback_text


class UnknownToolError(LookupError):
    """No tool with this id is registered; the message lists the known ones."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class StrictPluginError(RuntimeError):
    """Raised instead of recording a failure when ``IMPLICIT_STUDIO_STRICT_PLUGINS=1``."""


@dataclass
class PluginRecord:
    """What the Plugins dialog and ``implicit-studio plugins`` show about one plugin."""

    name: str
    module: str = ""
    dist: Optional[str] = None
    version: Optional[str] = None
    author: Optional[str] = None
    summary: str = ""
    status: str = LOADED
    error: Optional[str] = None
    traceback: Optional[str] = None
    builtin: bool = False
    source: str = "entry-point"
    #: Start-up cost: importing the entry module, registering it and its registration hooks.
    load_ms: float = 0.0
    #: The part of ``load_ms`` spent importing the entry module.
    import_ms: float = 0.0
    hook_ms: dict[str, float] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    runtime_errors: list[str] = field(default_factory=list)
    #: Heavy modules (:data:`HEAVY_IMPORTS`) the entry module imported at start-up.
    heavy_imports: list[str] = field(default_factory=list)
    #: Run-time errors of this plugin remembered from earlier sessions (dicts with ``what``,
    #: ``error``, ``traceback``, ``time``; see :mod:`app.plugin_history`).
    earlier_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == LOADED

    @property
    def slow_hooks(self) -> dict[str, float]:
        """Registration hooks that took more than :data:`SLOW_HOOK_MS`, with their time."""
        return {k: v for k, v in self.hook_ms.items() if v > SLOW_HOOK_MS}

    @property
    def warnings(self) -> list[str]:
        """Sentences about what slows the studio's start-up: slow hooks, a slow or heavy import."""
        out = []
        if self.heavy_imports:
            out.append(f"its entry module imports {', '.join(self.heavy_imports)} at start-up; import "
                       f"{'it' if len(self.heavy_imports) == 1 else 'them'} inside the run function instead")
        elif self.import_ms > SLOW_HOOK_MS:
            out.append(f"importing its entry module took {self.import_ms:.0f} ms (keep it to app.api records)")
        for name, ms in self.slow_hooks.items():
            out.append(f"hook {name} took {ms:.0f} ms at start-up (keep registration hooks cheap)")
        return out


@dataclass
class _Candidate:
    name: str
    loader: Callable[[], Any]
    module: str
    dist: Optional[str]
    version: Optional[str]
    author: Optional[str]
    summary: str
    builtin: bool
    source: str


def _dist_info(ep: Any) -> tuple[Optional[str], Optional[str], Optional[str], str]:
    if isinstance(ep, _ep.EntryPoint):  # read without importlib.metadata (start-up)
        meta = ep.metadata
        if not meta:
            return None, None, None, ""
        version = meta.get("Version") or None
    else:  # an importlib.metadata.EntryPoint (tests, zip paths)
        dist = getattr(ep, "dist", None)
        if dist is None:
            return None, None, None, ""
        meta, version = dist.metadata, dist.version
    name = meta.get("Name") or None
    author = meta.get("Author") or None
    if not author:
        email = meta.get("Author-email") or ""
        author = email.split("<")[0].strip().strip('"') or None
    return name, version, author, meta.get("Summary") or ""


def _norm(name: Optional[str]) -> str:
    return (name or "").lower().replace("_", "-")


class PluginManager:
    """Loads plugins and indexes their contributions.

    ``settings`` (an :class:`app.settings.Settings`) supplies and remembers the disabled list.
    ``entry_points`` replaces discovery (tests); ``env`` replaces ``os.environ``.
    Call :meth:`load` once; then read :attr:`records`, :attr:`tools`, :attr:`readers`...
    """

    def __init__(
        self,
        settings: Any = None,
        *,
        entry_points: Optional[Iterable[Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        history: Any = None,
    ) -> None:
        self.settings = settings
        # what is remembered between sessions (tools per plugin, run-time errors): by default
        # for a manager of the user's settings (the app), not for a bare one (tests, checks)
        if history is None and settings is not None:
            from app.plugin_history import PluginHistory  # noqa: PLC0415

            history = PluginHistory()
        self.history = history
        self._disabled_tools: dict[str, str] = {}
        self.env = dict(os.environ if env is None else env)
        self._entry_points = list(entry_points) if entry_points is not None else None
        self.pm = pluggy.PluginManager(api.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.tools: dict[str, api.ToolSpec] = {}
        self.readers: list[api.ReaderSpec] = []
        self.writers: list[api.WriterSpec] = []
        self.viewers: list[api.ViewerSpec] = []
        self.settings_pages: list[api.SettingsSpec] = []
        self.rewards: dict[str, api.RewardSpec] = {}
        self.commands: dict[str, api.CommandSpec] = {}
        self._candidates: dict[str, _Candidate] = {}
        self._ref_cache: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._error_listeners: list[Callable[[PluginCallError], None]] = []
        self.loaded = False
        self.load_ms = 0.0

    # ------------------------------------------------------------------------------------------
    # discovery and loading
    # ------------------------------------------------------------------------------------------
    def load(self) -> "PluginManager":
        """Discover and load every plugin (once). Never raises for a plugin's fault unless strict."""
        if self.loaded:
            return self
        t0 = time.perf_counter()
        for cand in self._discover():
            self._load_candidate(cand)
        self.loaded = True
        self.load_ms = (time.perf_counter() - t0) * 1000.0
        _log.info("plugins: %d loaded, %d not loaded, %.0f ms",
                  sum(r.ok for r in self.records.values()),
                  sum(not r.ok for r in self.records.values()), self.load_ms)
        return self

    def _discover(self) -> list[_Candidate]:
        found: dict[str, _Candidate] = {}
        eps = self._entry_points
        if eps is None:
            eps = _ep.entry_points(ENTRY_POINT_GROUP)
        seen_values: set[tuple[str, str]] = set()
        for ep in eps:
            if (ep.name, ep.value) in seen_values:
                continue  # the same distribution visible twice on sys.path
            seen_values.add((ep.name, ep.value))
            dist, version, author, summary = _dist_info(ep)
            cand = _Candidate(
                name=ep.name,
                loader=ep.load,
                module=ep.value,
                dist=dist,
                version=version,
                author=author,
                summary=summary,
                builtin=_norm(dist) == BUILTIN_DIST,
                source="entry-point",
            )
            if ep.name in found:
                other = found[ep.name]
                self._add_record(cand, FAILED, error=(
                    f"plugin name {ep.name!r} is already used by {other.dist or other.module}; "
                    f"this one ({dist or ep.value}) was not loaded"))
                continue
            found[ep.name] = cand
        for folder in self._plugin_dirs():
            for cand in self._scan_folder(folder):
                if cand.name in found:
                    self._add_record(cand, FAILED, error=(
                        f"plugin name {cand.name!r} from {folder} clashes with an installed plugin; not loaded"))
                    continue
                found[cand.name] = cand
        # built-ins first so their tool ids win over third-party duplicates; then by name
        return sorted(found.values(), key=lambda c: (not c.builtin, c.name))

    def _plugin_dirs(self) -> list[Path]:
        text = self.env.get("IMPLICIT_STUDIO_PLUGINS_DIR", "")
        return [Path(p) for p in text.split(os.pathsep) if p.strip()]

    def _scan_folder(self, folder: Path) -> list[_Candidate]:
        if not folder.is_dir():
            _log.warning("IMPLICIT_STUDIO_PLUGINS_DIR folder %s does not exist", folder)
            return []
        out = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.suffix == ".py" and entry.is_file():
                modname = entry.stem
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                modname = entry.name
            else:
                continue
            if not modname.isidentifier():
                continue

            def loader(folder=folder, modname=modname):
                if str(folder) not in sys.path:
                    sys.path.insert(0, str(folder))
                return importlib.import_module(modname)

            out.append(_Candidate(name=modname, loader=loader, module=modname, dist=None, version=None,
                                  author=None, summary="", builtin=False, source=f"folder {folder}"))
        return out

    def _switched_off(self, cand: _Candidate) -> Optional[str]:
        no = self.env.get("IMPLICIT_STUDIO_NO_PLUGINS", "").strip().lower()
        if no in ("all",):
            return "all plugins are switched off by IMPLICIT_STUDIO_NO_PLUGINS=all"
        if no in ("1", "true", "yes", "on") and not cand.builtin:
            return "third-party plugins are switched off by IMPLICIT_STUDIO_NO_PLUGINS"
        only = [n.strip() for n in self.env.get("IMPLICIT_STUDIO_LOAD_PLUGINS", "").split(",") if n.strip()]
        if only and cand.name not in only:
            return "not listed in IMPLICIT_STUDIO_LOAD_PLUGINS"
        if self.settings is not None and cand.name in self.settings.disabled_plugins:
            return "disabled by the user"
        return None

    def _add_record(self, cand: _Candidate, status: str, error: Optional[str] = None, tb: Optional[str] = None) -> PluginRecord:
        rec = PluginRecord(name=cand.name, module=cand.module, dist=cand.dist, version=cand.version,
                           author=cand.author, summary=cand.summary, status=status, error=error,
                           traceback=tb, builtin=cand.builtin, source=cand.source)
        key = cand.name if cand.name not in self.records or status != FAILED else f"{cand.name} ({cand.dist or cand.source})"
        self.records[key] = rec
        return rec

    def _strict(self) -> bool:
        return self.env.get("IMPLICIT_STUDIO_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")

    def _fail(self, rec: PluginRecord, status: str, error: str, tb: Optional[str]) -> None:
        rec.status = status
        rec.error = error
        rec.traceback = tb
        _log.error("plugin %r (%s) %s: %s%s", rec.name, rec.dist or rec.source, status, error,
                   ("\n" + tb) if tb else "")
        if self._strict():
            raise StrictPluginError(f"plugin {rec.name!r} {status}: {error}")

    def _load_candidate(self, cand: _Candidate, switches: bool = True) -> PluginRecord:
        self._candidates[cand.name] = cand
        reason = self._switched_off(cand) if switches else None
        if reason:
            rec = self._add_record(cand, DISABLED, error=reason)
            if self.history is not None:  # its tools, as it provided them when it last loaded
                for tool_id in self.history.tools_of(cand.name):
                    self._disabled_tools.setdefault(tool_id, cand.name)
                rec.earlier_errors = self.history.earlier_errors(cand.name)
            return rec
        rec = self._add_record(cand, LOADED)
        t0 = time.perf_counter()
        try:
            return self._load_record(cand, rec, t0)
        finally:
            rec.load_ms = (time.perf_counter() - t0) * 1000.0
            if rec.ok and self.history is not None:
                self.history.remember_tools(rec.name, rec.tools)

    def _load_record(self, cand: _Candidate, rec: PluginRecord, t0: float) -> PluginRecord:
        if self.history is not None:
            rec.earlier_errors = self.history.earlier_errors(rec.name)
        heavy_before = {m for m in HEAVY_IMPORTS if m in sys.modules}
        try:
            plugin = cand.loader()
        except BaseException as exc:  # noqa: BLE001 - isolation boundary (sys.exit at import too)
            if _from_the_user(exc):
                raise
            rec.import_ms = (time.perf_counter() - t0) * 1000.0
            self._fail(rec, FAILED, f"import failed: {_describe(exc)}", traceback.format_exc())
            return rec
        rec.import_ms = (time.perf_counter() - t0) * 1000.0
        rec.heavy_imports = [m for m in HEAVY_IMPORTS if m in sys.modules and m not in heavy_before]
        if rec.heavy_imports:
            _log.warning("plugin %r: importing %s imported %s at start-up (import heavy modules inside the run "
                         "function)", rec.name, cand.module, ", ".join(rec.heavy_imports))
        elif rec.import_ms > SLOW_HOOK_MS:
            _log.warning("plugin %r: importing %s took %.0f ms (keep the entry module cheap)",
                         rec.name, cand.module, rec.import_ms)
        if rec.version is None:
            rec.version = str(getattr(plugin, "__version__", "") or "") or None
        if not rec.summary:
            doc = (getattr(plugin, "__doc__", "") or "").strip()
            rec.summary = doc.splitlines()[0] if doc else ""
        required = getattr(plugin, "REQUIRES_API", None)
        if required is not None:
            try:
                api.check_api_version(str(required), what=f"plugin {rec.name!r}", dist=rec.dist, version=rec.version)
            except api.IncompatibleAPIError as exc:
                self._fail(rec, INCOMPATIBLE, str(exc), None)
                return rec
        try:
            self.pm.register(plugin, name=cand.name)
        except BaseException as exc:  # noqa: BLE001 - e.g. pluggy.PluginValidationError
            if _from_the_user(exc):
                raise
            self._fail(rec, FAILED, f"registration failed: {_describe(exc)}", traceback.format_exc())
            return rec
        unknown = [hc.name for hc in (self.pm.get_hookcallers(plugin) or []) if hc.spec is None]
        if unknown:
            self._unregister(cand.name)
            known = ", ".join(sorted(n for n in hookspecs.__all__ if n.startswith("studio_")))
            self._fail(rec, FAILED, f"unknown hook(s) {', '.join(sorted(unknown))}; known hooks: {known}", None)
            return rec
        self._collect(rec)
        return rec

    def _unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)

    def _impls(self, hook_name: str, plugin_name: str) -> list[Any]:
        caller = getattr(self.pm.hook, hook_name)
        return [impl for impl in caller.get_hookimpls() if impl.plugin_name == plugin_name]

    def _collect(self, rec: PluginRecord) -> None:
        """Call each registration hook of one plugin; on any failure undo its contributions."""
        staged: dict[str, list[Any]] = {}
        for hook_name, (record_type, _key) in REGISTRATION_HOOKS.items():
            for impl in self._impls(hook_name, rec.name):
                t0 = time.perf_counter()
                try:
                    items = impl.function()
                    items = list(items) if items is not None else []
                except BaseException as exc:  # noqa: BLE001 - isolation boundary
                    if _from_the_user(exc):
                        raise
                    self._unregister(rec.name)
                    self._fail(rec, FAILED, f"hook {hook_name} raised {_describe(exc)}", traceback.format_exc())
                    return
                finally:
                    ms = (time.perf_counter() - t0) * 1000.0
                    rec.hook_ms[hook_name] = ms
                    if ms > SLOW_HOOK_MS:
                        _log.warning("plugin %r: hook %s took %.0f ms at start-up (over %d ms; keep "
                                     "registration hooks cheap)", rec.name, hook_name, ms, SLOW_HOOK_MS)
                bad = [x for x in items if not isinstance(x, record_type)]
                if bad:
                    self._unregister(rec.name)
                    self._fail(rec, FAILED, f"hook {hook_name} returned {type(bad[0]).__name__}, expected "
                                            f"app.api.{record_type.__name__} records", None)
                    return
                staged.setdefault(hook_name, []).extend(items)
        with self._lock:
            for spec in staged.get("studio_tools", []):
                self._add_tool(rec, spec)
            for spec in staged.get("studio_readers", []):
                self.readers.append(dataclasses.replace(spec, plugin=rec.name))
            for spec in staged.get("studio_writers", []):
                self.writers.append(dataclasses.replace(spec, plugin=rec.name))
            for spec in staged.get("studio_viewers", []):
                self.viewers.append(dataclasses.replace(spec, plugin=rec.name))
            for spec in staged.get("studio_settings", []):
                self.settings_pages.append(dataclasses.replace(spec, plugin=rec.name))
            for spec in staged.get("studio_rewards", []):
                if spec.id in self.rewards:
                    self._problem(rec, f"reward model {spec.id!r} is already provided by plugin "
                                       f"{self.rewards[spec.id].plugin!r}; this one was ignored")
                    continue
                self.rewards[spec.id] = dataclasses.replace(spec, plugin=rec.name)
            for spec in staged.get("studio_commands", []):
                if spec.name in self.commands or spec.name in RESERVED_COMMANDS:
                    self._problem(rec, f"command {spec.name!r} is already taken; this one was ignored")
                    continue
                self.commands[spec.name] = dataclasses.replace(spec, plugin=rec.name)
            self.readers.sort(key=lambda r: -r.priority)
            self.viewers.sort(key=lambda v: -v.priority)

    def _problem(self, rec: PluginRecord, text: str) -> None:
        rec.problems.append(text)
        _log.warning("plugin %r: %s", rec.name, text)

    def _add_tool(self, rec: PluginRecord, spec: api.ToolSpec) -> None:
        if spec.id in self.tools:
            self._problem(rec, f"tool id {spec.id!r} is already provided by plugin "
                               f"{self.tools[spec.id].plugin!r}; this one was ignored")
            return
        try:
            api.check_api_version(spec.requires_api, what=f"tool {spec.id!r}", dist=rec.dist, version=rec.version)
        except api.IncompatibleAPIError as exc:
            self._problem(rec, f"{exc}; the tool was not added")
            return
        self.tools[spec.id] = dataclasses.replace(spec, plugin=rec.name)
        rec.tools.append(spec.id)

    def register_plugin(self, plugin: Any, name: str, *, version: str | None = None, builtin: bool = False) -> PluginRecord:
        """Register an already imported plugin object (a module or any object with hook
        implementations) through the same guarded path as discovered ones. Used by tests and the
        ``app.testing`` fixtures."""
        if name in self.records and self.records[name].ok:
            raise ValueError(f"a plugin named {name!r} is already loaded")
        cand = _Candidate(name=name, loader=lambda: plugin, module=getattr(plugin, "__name__", repr(plugin)),
                          dist=None, version=version, author=None, summary="", builtin=builtin, source="registered")
        self.records.pop(name, None)
        return self._load_candidate(cand, switches=False)

    # ------------------------------------------------------------------------------------------
    # enable / disable
    # ------------------------------------------------------------------------------------------
    def set_enabled(self, name: str, enabled: bool) -> PluginRecord:
        """Enable or disable a plugin now and remember the choice in the settings."""
        if name not in self.records:
            raise KeyError(f"no plugin named {name!r}")
        if self.settings is not None:
            self.settings.set_plugin_enabled(name, enabled)
        rec = self.records[name]
        if not enabled:
            if rec.ok:
                self._unregister(name)
                self._drop_contributions(name)
            for tool_id in rec.tools:
                self._disabled_tools[tool_id] = name
            rec.status, rec.error, rec.traceback = DISABLED, "disabled by the user", None
            rec.tools = []
            return rec
        for tool_id in [t for t, plugin in self._disabled_tools.items() if plugin == name]:
            del self._disabled_tools[tool_id]
        cand = self._candidates.get(name)
        if cand is None or rec.ok:
            return rec
        del self.records[name]
        return self._load_candidate(cand, switches=cand.source != "registered")

    def _drop_contributions(self, name: str) -> None:
        with self._lock:
            self.tools = {k: v for k, v in self.tools.items() if v.plugin != name}
            self.readers = [r for r in self.readers if r.plugin != name]
            self.writers = [w for w in self.writers if w.plugin != name]
            self.viewers = [v for v in self.viewers if v.plugin != name]
            self.settings_pages = [s for s in self.settings_pages if s.plugin != name]
            self.rewards = {k: v for k, v in self.rewards.items() if v.plugin != name}
            self.commands = {k: v for k, v in self.commands.items() if v.plugin != name}

    # ------------------------------------------------------------------------------------------
    # the guarded boundary
    # ------------------------------------------------------------------------------------------
    def add_error_listener(self, callback: Callable[[PluginCallError], None]) -> None:
        """``callback(error)`` is called (on the failing thread) for every guarded failure."""
        self._error_listeners.append(callback)

    def guarded(self, plugin: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call plugin code. :class:`~app.api.Cancelled`, :class:`~app.api.ToolError` and
        :class:`~app.api.ParamError` pass through; anything else it raises (``SystemExit`` and
        ``KeyboardInterrupt`` included, unless the user pressed Ctrl-C: see
        :data:`USER_INTERRUPT`) is logged with its traceback, remembered on the plugin's record
        and re-raised as :class:`PluginCallError`."""
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # noqa: BLE001 - isolation boundary
            if _from_the_user(exc) or isinstance(exc, GeneratorExit):
                raise
            tb = traceback.format_exc()
            err = PluginCallError(plugin, what, exc, tb)
            rec = self.records.get(plugin)
            if rec is not None:
                rec.runtime_errors.append(f"{what}: {_describe(exc)}\n{tb}")
                del rec.runtime_errors[:-20]
            if self.history is not None:  # shown again in the next sessions
                self.history.record_error(plugin, what, _describe(exc), tb)
            _log.error("plugin %r failed in %s: %s\n%s", plugin, what, _describe(exc), tb)
            for cb in list(self._error_listeners):
                try:
                    cb(err)
                except Exception:  # noqa: BLE001 - a listener must not break the caller
                    _log.exception("plugin error listener failed")
            raise err from exc
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            if what.startswith("hook ") and ms > SLOW_HOOK_MS:
                _log.warning("plugin %r: %s took %.0f ms", plugin, what, ms)

    def resolve(self, ref: str, plugin: str, what: str = "") -> Any:
        """Import a ``"module:attr"`` reference of ``plugin`` (cached), guarded."""
        with self._lock:
            if ref in self._ref_cache:
                return self._ref_cache[ref]
        obj = self.guarded(plugin, what or f"import {ref}", api.load_ref, ref)
        with self._lock:
            self._ref_cache[ref] = obj
        return obj

    def run_function(self, tool: api.ToolSpec) -> Callable[..., Any]:
        """The run function of ``tool``, imported on first use."""
        fn = self.resolve(tool.run, tool.plugin, f"importing the run function of tool {tool.id!r} ({tool.run})")
        if not callable(fn):
            raise PluginCallError(tool.plugin, f"tool {tool.id!r}", TypeError(f"{tool.run} is not callable"), "")
        return fn

    # ------------------------------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------------------------------
    def tool(self, tool_id: str) -> api.ToolSpec:
        """The tool with this id; :class:`UnknownToolError` with the known ids otherwise."""
        try:
            return self.tools[tool_id]
        except KeyError:
            known = ", ".join(sorted(self.tools)) or "none"
            hint = ""
            for rec in self.records.values():
                if not rec.ok and rec.status != DISABLED:
                    hint = " (some plugins failed to load: see 'implicit-studio plugins')"
                    break
            raise UnknownToolError(f"unknown tool {tool_id!r}; available tools: {known}{hint}") from None

    def disabled_tool(self, tool_id: str) -> Optional[str]:
        """The name of the disabled plugin that provides ``tool_id`` (as far as is known: a plugin
        disabled in this session, or one whose tools an earlier session remembered), else None."""
        if tool_id in self.tools:
            return None
        name = self._disabled_tools.get(tool_id)
        if name is not None and name in self.records and self.records[name].status == DISABLED:
            return name
        return None

    def tools_by_plugin(self) -> dict[str, list[api.ToolSpec]]:
        out: dict[str, list[api.ToolSpec]] = {}
        for t in self.tools.values():
            out.setdefault(t.plugin, []).append(t)
        return out

    def readers_for(self, path: str | os.PathLike) -> list[api.ReaderSpec]:
        return [r for r in self.readers if r.matches(path)]

    def read_file(self, path: str | os.PathLike) -> list[api.Result]:
        """Read a file with the first reader that accepts it; ``ValueError`` if none does."""
        path = os.fspath(path)
        errors = []
        for reader in self.readers_for(path):
            fn = self.resolve(reader.read, reader.plugin, f"reader {reader.id!r}")
            try:
                out = self.guarded(reader.plugin, f"reader {reader.id!r}", fn, path)
            except PluginCallError as exc:
                if isinstance(exc.original, ValueError):
                    errors.append(f"{reader.id}: {exc.original}")
                    continue
                raise
            results = list(out) if isinstance(out, (list, tuple)) else [out]
            return [r for r in results if isinstance(r, api.Result)]
        detail = f" ({'; '.join(errors)})" if errors else ""
        raise ValueError(f"no reader can open {Path(path).name}{detail}")

    def writers_for(self, kind: str) -> list[api.WriterSpec]:
        return [w for w in self.writers if kind in w.kinds]

    def viewers_for(self, kind: str) -> list[api.ViewerSpec]:
        return [v for v in self.viewers if v.kind == kind]

    # ------------------------------------------------------------------------------------------
    # what a plugin gets from the studio (the run context's services, API 1.1)
    # ------------------------------------------------------------------------------------------
    def resources_dir(self, plugin: str) -> Path:
        """The read-only files ``plugin`` ships: the studio's bundled ``resources/`` folder for the
        built-in plugins, else the ``resources`` folder beside the plugin's entry module."""
        rec = self.records.get(plugin)
        module_name = (rec.module if rec is not None else "").partition(":")[0]  # "pkg.mod:attr" entry points
        if module_name.split(".")[0] == BUILTIN_PACKAGE or (rec is not None and rec.builtin):
            from app.paths import resources_dir

            return resources_dir()
        module = sys.modules.get(module_name)
        where = getattr(module, "__file__", None)
        if not where:
            raise LookupError(f"plugin {plugin!r} has no module file to find its resources folder beside")
        return Path(where).resolve().parent / "resources"

    def find_model(self, ref: str) -> Optional[Path]:
        """The path the ``studio_resolve_model`` hook gives for a model name, or ``None``.

        Implementations are asked in pluggy's order, each with its own resources folder and
        behind the guard; the first answer that is not ``None`` wins, one that raises is reported
        (log, Plugins dialog) and skipped."""
        for impl in reversed(self.pm.hook.studio_resolve_model.get_hookimpls()):
            kwargs: dict[str, Any] = {"ref": ref}
            if "resources_dir" in impl.argnames:
                try:
                    kwargs["resources_dir"] = self.resources_dir(impl.plugin_name)
                except LookupError:  # a plugin object registered without a module (tests)
                    kwargs["resources_dir"] = None
            try:
                found = self.guarded(impl.plugin_name, "hook studio_resolve_model",
                                     lambda fn=impl.function, kw=kwargs: _as_path(fn(**kw)))
            except PluginCallError:
                continue
            if found is not None:
                return found
        return None

    def resolve_model(self, ref: str | os.PathLike) -> Path:
        """The one resolution of a model reference (see :meth:`app.api.RunContext.resolve_model`):
        a name through the hook, else a local path; :class:`~app.api.ToolError` if nothing is there."""
        return self.context("").resolve_model(ref)

    def context(self, plugin: str, **kwargs: Any) -> api.RunContext:
        """A :class:`~app.api.RunContext` for code of ``plugin`` wired to this manager: its
        resources folder, named-model resolution through the hook, the rewards of all plugins.
        ``kwargs`` are the other context arguments (device, seed, callbacks, settings...)."""
        resources = None
        if plugin in self.records:
            try:
                resources = self.resources_dir(plugin)
            except LookupError:
                resources = None
        return api.RunContext(plugin=plugin, resources_dir=resources, model_lookup=self.find_model,
                              rewards=dict(self.rewards), **kwargs)

    def run_command(self, spec: api.CommandSpec, argv: list[str]) -> int:
        """Run a plugin command guarded; a ``main`` with a ``ctx`` parameter also receives the
        plugin's context (its folders, the user's plugin settings, model resolution)."""
        fn = self.resolve(spec.main, spec.plugin, f"command {spec.name!r}")
        kwargs: dict[str, Any] = {}
        try:
            takes_ctx = "ctx" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_ctx = False
        if takes_ctx:
            settings = self.settings.plugin_settings() if self.settings is not None else {}
            kwargs["ctx"] = self.context(spec.plugin, settings=settings, tool_id=spec.name)

        def command(argv: list[str]) -> Any:
            try:
                return fn(argv, **kwargs)
            except SystemExit as exc:  # a command's own exit status (argparse's --help...)
                if exc.code is None or isinstance(exc.code, int):
                    return exc.code or 0
                print(exc.code, file=sys.stderr)  # sys.exit("message")
                return 1

        return int(self.guarded(spec.plugin, f"command {spec.name!r}", command, argv) or 0)

    def notify(self, event: api.SessionEvent) -> None:
        """Give ``event`` to every ``studio_session_event`` implementation; failures are logged."""
        for impl in self.pm.hook.studio_session_event.get_hookimpls():
            kwargs = {"event": event} if "event" in impl.argnames else {}
            try:
                self.guarded(impl.plugin_name, "hook studio_session_event", impl.function, **kwargs)
            except PluginCallError:
                pass


def _as_path(value: Any) -> Optional[Path]:
    return None if value is None else Path(os.fspath(value))


#: Sub-command names the studio keeps for itself.
RESERVED_COMMANDS = frozenset({"run", "tools", "plugins", "history", "export", "reproduce", "devices",
                               "new-plugin", "help", "gui", "session"})


_default: Optional[PluginManager] = None
_default_lock = threading.Lock()


def get_manager(settings: Any = None) -> PluginManager:
    """The process-wide manager, loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            if settings is None:
                from app.settings import Settings

                settings = Settings()
            _default = PluginManager(settings).load()
        return _default


def set_manager(manager: Optional[PluginManager]) -> None:
    """Replace the process-wide manager (tests, or a window opened with a custom one)."""
    global _default
    with _default_lock:
        _default = manager
