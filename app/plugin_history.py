"""What the plugin manager remembers between sessions (no Qt): the tools each plugin provided
and the run-time errors of plugin code, in ``<data>/plugin-history.json``.

The Plugins dialog and ``implicit-studio plugins`` show the errors of earlier sessions (a
``KeyError`` in a run yesterday is still listed today), and ``ctx.run_tool`` can say that a tool
exists but its plugin is disabled, even for a plugin disabled before this process started (and
therefore never imported by it).

The file is small and written whole, to a temporary name then renamed; two processes writing at
once may lose one entry, never the file. A file that cannot be read or written only costs the
memory: the studio goes on (logged).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

_log = logging.getLogger("implicit_studio.plugins")

FILE_NAME = "plugin-history.json"
#: Errors kept, newest last (over all plugins), and the characters kept of each traceback.
MAX_ERRORS = 60
MAX_TRACEBACK = 6000

#: This process, as errors name it (an error of another process is "of an earlier session").
_PROCESS = f"{os.getpid()}@{time.time():.0f}"


class PluginHistory:
    """The remembered tools and errors; ``path`` defaults to ``<data>/plugin-history.json``."""

    def __init__(self, path: Optional[str | os.PathLike] = None):
        if path is None:
            from app.settings import data_dir  # noqa: PLC0415

            path = data_dir() / FILE_NAME
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data = self._read()
        self.process = _PROCESS

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"tools": {}, "errors": []}
        except (OSError, ValueError) as exc:
            _log.warning("cannot read %s (%s); starting a new plugin history", self.path, exc)
            return {"tools": {}, "errors": []}
        if not isinstance(data, dict):
            return {"tools": {}, "errors": []}
        tools = data.get("tools") if isinstance(data.get("tools"), dict) else {}
        errors = [e for e in data.get("errors", []) if isinstance(e, dict) and isinstance(e.get("plugin"), str)]
        return {"tools": {k: [str(t) for t in v] for k, v in tools.items() if isinstance(v, list)}, "errors": errors}

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._data, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            _log.warning("cannot write %s: %s", self.path, exc)

    # -- tools -----------------------------------------------------------------------------------
    def remember_tools(self, plugin: str, tool_ids: list[str]) -> None:
        """Record the tools ``plugin`` provides now (written only when they changed)."""
        ids = sorted(tool_ids)
        with self._lock:
            if self._data["tools"].get(plugin) == ids:
                return
            self._data["tools"][plugin] = ids
            self._write()

    def tools_of(self, plugin: str) -> list[str]:
        with self._lock:
            return list(self._data["tools"].get(plugin, []))

    def plugin_of_tool(self, tool_id: str) -> Optional[str]:
        """The plugin that last provided ``tool_id``, if any did."""
        with self._lock:
            for plugin, ids in self._data["tools"].items():
                if tool_id in ids:
                    return plugin
        return None

    # -- errors ----------------------------------------------------------------------------------
    def record_error(self, plugin: str, what: str, error: str, traceback_text: str = "") -> None:
        """Remember a run-time error of ``plugin``'s code (written at once)."""
        entry = {"plugin": plugin, "what": what, "error": error, "traceback": traceback_text[-MAX_TRACEBACK:],
                 "time": time.time(), "process": self.process}
        with self._lock:
            fresh = self._read()  # another process may have written since we read
            fresh["errors"] = (fresh["errors"] + [entry])[-MAX_ERRORS:]
            fresh["tools"] = {**fresh["tools"], **self._data["tools"]}
            self._data = fresh
            self._write()

    def earlier_errors(self, plugin: str) -> list[dict[str, Any]]:
        """The remembered errors of ``plugin`` from other processes (earlier sessions), oldest
        first: dicts with ``what``, ``error``, ``traceback``, ``time``."""
        with self._lock:
            return [dict(e) for e in self._data["errors"] if e.get("plugin") == plugin and e.get("process") != self.process]

    def clear_errors(self, plugin: str) -> None:
        """Forget the remembered errors of ``plugin`` (e.g. after it was updated)."""
        with self._lock:
            fresh = self._read()
            fresh["errors"] = [e for e in fresh["errors"] if e.get("plugin") != plugin]
            self._data = fresh
            self._write()


def describe_error(entry: dict[str, Any]) -> str:
    """One line for a remembered error: ``2024-05-01 14:02 tool 'x': KeyError: 'colours'``."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(entry.get("time") or 0)))
    return f"{when} {entry.get('what', '')}: {entry.get('error', '')}"
