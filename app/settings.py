"""User settings and log files (no Qt).

Settings are a small JSON document in the user's config folder
(``platformdirs.user_config_dir("implicit-studio")``), written atomically. Keys used by the
services: ``plugins.disabled`` (list of plugin names), ``device`` (``"auto"``, ``"cpu"``,
``"cuda"``, ``"cuda:1"``, ``"mps"``), ``precision`` (``"auto"``, ``"fp32"``, ``"fp16"``,
``"bf16"``), ``plugin_settings`` (``{section: {name: value}}``) and
``last_params`` (``{tool_id: {name: value}}``). The window keeps its layout in QSettings.

Environment overrides (used by tests and portable installs):
``IMPLICIT_STUDIO_CONFIG_DIR``, ``IMPLICIT_STUDIO_LOG_DIR``, ``IMPLICIT_STUDIO_DATA_DIR``,
``IMPLICIT_STUDIO_CACHE_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable

APP_NAME = "implicit-studio"
LOG_FILE_NAME = "implicit-studio.log"

_log = logging.getLogger("implicit_studio.settings")


def config_dir() -> Path:
    """Folder of ``settings.json``."""
    env = os.environ.get("IMPLICIT_STUDIO_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Folder of user data: the default session lives here."""
    env = os.environ.get("IMPLICIT_STUDIO_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    """Folder of the log file."""
    env = os.environ.get("IMPLICIT_STUDIO_LOG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Folder of files that can be made again (model fingerprints, exports, converted weights):
    ``IMPLICIT_STUDIO_CACHE_DIR``, else ``cache`` in the data folder."""
    env = os.environ.get("IMPLICIT_STUDIO_CACHE_DIR")
    if env:
        return Path(env)
    return data_dir() / "cache"


def plugin_data_dir(plugin: str) -> Path:
    """A plugin's own folder of files the user keeps: ``<data>/plugin-data/<plugin>``."""
    return data_dir() / "plugin-data" / _folder_name(plugin)


def plugin_cache_dir(plugin: str) -> Path:
    """A plugin's own cache folder: ``<cache>/plugin-cache/<plugin>``."""
    return cache_dir() / "plugin-cache" / _folder_name(plugin)


def _folder_name(plugin: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (plugin or "").strip()).strip(".")
    return name or "unregistered"


def default_session_dir() -> Path:
    """The session opened when none is given."""
    return data_dir() / "sessions" / "default"


class Settings:
    """A JSON-backed settings store. Thread-safe; every ``set`` writes the file at once."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else config_dir() / "settings.json"
        self._lock = threading.RLock()
        self._data: dict[str, Any] = {}
        self.reload()

    def reload(self) -> None:
        with self._lock:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                self._data = {}
                return
            except OSError as exc:
                _log.warning("cannot read settings %s: %s", self.path, exc)
                self._data = {}
                return
            try:
                data = json.loads(text)
                self._data = data if isinstance(data, dict) else {}
            except json.JSONDecodeError as exc:
                _log.warning("settings file %s is not valid JSON (%s); starting from defaults", self.path, exc)
                self._data = {}

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._save()

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._data))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._data, fh, indent=2, sort_keys=True, default=str)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # -- typed accessors -----------------------------------------------------------------------
    @property
    def disabled_plugins(self) -> set[str]:
        return set(self.get("plugins.disabled", []) or [])

    def set_plugin_enabled(self, name: str, enabled: bool) -> None:
        disabled = self.disabled_plugins
        if enabled:
            disabled.discard(name)
        else:
            disabled.add(name)
        self.set("plugins.disabled", sorted(disabled))

    @property
    def device(self) -> str:
        return str(self.get("device", "auto") or "auto")

    @property
    def precision(self) -> str:
        """The arithmetic runs ask for (``auto``, ``fp32``, ``fp16``, ``bf16``; see app.devices)."""
        return str(self.get("precision", "auto") or "auto")

    def plugin_settings(self) -> dict[str, dict[str, Any]]:
        value = self.get("plugin_settings", {}) or {}
        return value if isinstance(value, dict) else {}

    def set_plugin_setting(self, section: str, name: str, value: Any) -> None:
        with self._lock:
            all_sections = self.plugin_settings()
            all_sections.setdefault(section, {})[name] = value
            self.set("plugin_settings", all_sections)

    def last_params(self, tool_id: str) -> dict[str, Any]:
        value = (self.get("last_params", {}) or {}).get(tool_id, {})
        return value if isinstance(value, dict) else {}

    def set_last_params(self, tool_id: str, params: dict[str, Any]) -> None:
        with self._lock:
            allp = dict(self.get("last_params", {}) or {})
            allp[tool_id] = params
            self.set("last_params", allp)


_logging_lock = threading.Lock()
_file_handler: logging.Handler | None = None


class SizeRotatingFileHandler(logging.FileHandler):
    """A log file that is rotated when it reaches ``max_bytes``: ``name`` -> ``name.1`` ... ->
    ``name.<backups>`` (the oldest is dropped). Does what ``logging.handlers.RotatingFileHandler``
    does for the studio without importing ``logging.handlers``, which pulls in socket and pickle
    and is a measurable part of the window's start-up."""

    def __init__(self, path: str | os.PathLike, max_bytes: int, backups: int) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.max_bytes, self.backups = int(max_bytes), int(backups)

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            if self.stream is not None and self.max_bytes > 0 and self.stream.tell() >= self.max_bytes:
                self._rotate()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
        super().emit(record)

    def _rotate(self) -> None:
        self.stream.close()
        self.stream = None  # FileHandler.emit opens a fresh file
        base = self.baseFilename
        for i in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{base}.{i}"):
                os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        if self.backups > 0:
            os.replace(base, f"{base}.1")
        else:
            os.remove(base)


def setup_logging(level: int = logging.INFO, stderr_level: int | None = None, extra: Iterable[logging.Handler] = ()) -> Path | None:
    """Send the ``implicit_studio`` loggers to a rotating log file in :func:`log_dir` (once per
    process) and return its path; ``None`` if the folder cannot be written. ``stderr_level``
    also prints records of that level and above on stderr."""
    global _file_handler
    root = logging.getLogger("implicit_studio")
    with _logging_lock:
        root.setLevel(min(level, stderr_level or level))
        for h in extra:
            root.addHandler(h)
        if stderr_level is not None and not any(getattr(h, "_studio_stderr", False) for h in root.handlers):
            sh = logging.StreamHandler()
            sh.setLevel(stderr_level)
            sh.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            sh._studio_stderr = True  # type: ignore[attr-defined]
            root.addHandler(sh)
        if _file_handler is not None:
            return Path(_file_handler.baseFilename)  # type: ignore[attr-defined]
        folder = log_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fh = SizeRotatingFileHandler(folder / LOG_FILE_NAME, max_bytes=2_000_000, backups=3)
        except OSError:
            return None
        fh.setLevel(level)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        root.addHandler(fh)
        _file_handler = fh
        return folder / LOG_FILE_NAME


def log_file_path() -> Path:
    """Where :func:`setup_logging` writes."""
    return log_dir() / LOG_FILE_NAME
