"""What the window and the run controller read from and write to the open session (no Qt).

Wraps ``storage.SessionStore`` (opened on the session folder, off the GUI thread) and hands out
its own frozen records, :class:`RunInfo` and :class:`ResultInfo` (re-exported here, so the views
name them without importing ``storage``). Only this module and the job runner call the store.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from app import api

if TYPE_CHECKING:
    from storage import SessionStore
    from storage.types import ResultInfo, RunInfo

__all__ = ["INPUT_TOOL_ID", "ResultInfo", "RunInfo", "SessionView", "SessionWatcher", "result_label", "run_device_text",
           "run_subtitle", "run_tooltip", "run_when"]

log = logging.getLogger("implicit_studio.session")

#: The tool id of the runs that record an input given in memory (a painted mask, an array).
INPUT_TOOL_ID = "input"


# ---------------------------------------------------------------------------------------------
# how a run reads in the history
# ---------------------------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    # RunInfo and ResultInfo are imported on first use: the window makes its SessionView before
    # its first paint, which needs neither
    if name in ("RunInfo", "ResultInfo"):
        from storage import types  # noqa: PLC0415

        return getattr(types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_when(run: RunInfo) -> str:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromtimestamp(run.started_at).strftime("%d %b %H:%M:%S")


def run_subtitle(run: RunInfo, seed: bool = True) -> str:
    """"seed 3  ·  06 Dec 14:02:11  ·  1.2s  ·  cpu float32" (without the seed when ``seed`` is
    False: the window shows it apart, whole)."""
    parts = [f"seed {run.seed}" if seed and run.seed is not None else "", run_when(run),
             f"{run.duration_s:.1f}s" if run.duration_s else "", run_device_text(run)]
    return "  ·  ".join(p for p in parts if p)


def run_device_text(run: RunInfo) -> str:
    """Where a run computed and in what: "cuda:0 float16" (the device alone for a run recorded
    before runs kept their dtype)."""
    dtype = getattr(run, "dtype", None)
    return f"{run.device} {dtype}" if dtype else run.device


def run_tooltip(run: RunInfo) -> str:
    lines = [f"Run #{run.id} — {run.tool_id} ({run.status})", run_subtitle(run)]
    if run.model_ref:
        lines.append(f"model: {run.model_ref}")
    for k, v in run.params.items():
        text = str(v)
        lines.append(f"{k}: {text[:80]}{'…' if len(text) > 80 else ''}")
    if run.tags:
        lines.append("tags: " + ", ".join(run.tags))
    if run.rating:
        lines.append("rating: " + "★" * int(run.rating))
    if run.error:
        lines.append("error: " + run.error)
    return "\n".join(line for line in lines if line)


def result_label(res: ResultInfo) -> str:
    """The result's own name ("seed 3", "trajectory filmstrip"); may be empty."""
    label = res.metadata.get("label") if isinstance(res.metadata, dict) else None
    return str(label or "")


def _result_id(ref: Any) -> Optional[int]:
    """The id in a ``result:<id>`` reference, else None."""
    if isinstance(ref, str) and ref.startswith(api.RESULT_REF_PREFIX):
        text = ref[len(api.RESULT_REF_PREFIX):].strip()
        if text.isdigit():
            return int(text)
    return None


class SessionView:
    """The open session. ``store`` is None while it opens and when it could not be opened
    (``error`` says why); reading methods then answer empty, writing ones raise ``LookupError``."""

    def __init__(self, store: Optional[SessionStore], folder: Path, error: str = "", opening: bool = False):
        self.store = store
        self.folder = folder
        self.error = error
        self.opening = opening

    @staticmethod
    def resolve_folder(folder: str | os.PathLike | None) -> Path:
        if folder is None:
            from app.settings import default_session_dir  # noqa: PLC0415

            folder = default_session_dir()
        return Path(folder)

    @classmethod
    def pending(cls, folder: str | os.PathLike | None) -> SessionView:
        """A view whose store is opened later with :meth:`open_store` (off the GUI thread)."""
        return cls(None, cls.resolve_folder(folder), opening=True)

    @classmethod
    def open(cls, folder: str | os.PathLike | None) -> SessionView:
        view = cls.pending(folder)
        view.open_store()
        return view

    def open_store(self) -> None:
        """Open the store (imports SQLAlchemy; may take a while: call it from a worker thread).
        Never raises: a failure is kept in :attr:`error` and the window goes on without history."""
        try:
            from app.jobs import open_session  # noqa: PLC0415

            # also marks runs left "running" by a process that stopped as failed
            self.store = open_session(self.folder)
            self.error = ""
        except Exception as exc:  # the window still opens; runs are then not recorded
            log.error("could not open the session %s: %s", self.folder, exc)
            self.store = None
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.opening = False

    def label(self) -> str:
        if self.opening:
            return "opening session…"
        if self.store is None:
            return f"no session ({self.error})" if self.error else "no session"
        return f"session: {self.folder.name}"

    def watch(self, on_change: Callable[[], None], interval: float = 1.0) -> Optional[SessionWatcher]:
        """Start watching the session's database for commits made by other connections (another
        process such as the command line, or this process's own writes): ``on_change()`` is called
        on the watcher's thread after each. None when no session is open."""
        if self.store is None:
            return None
        watcher = SessionWatcher(Path(self.store.db_path), on_change, interval)
        watcher.start()
        return watcher

    def close(self) -> None:
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                log.warning("closing the session failed", exc_info=True)

    def _need_store(self) -> SessionStore:
        if self.store is None:
            raise LookupError(f"no session is open ({self.error})" if self.error else "no session is open")
        return self.store

    # --- reading runs -------------------------------------------------------------------
    def list_runs(self, limit: int = 100, offset: int = 0, tool: str | None = None, tag: str | None = None,
                  text: str | None = None) -> list[RunInfo]:
        """Runs newest first (empty while no session is open)."""
        if self.store is None:
            return []
        return self.store.list_runs(limit=limit, offset=offset, tool=tool, tag=tag, text=text)

    def run(self, run_id: int) -> RunInfo:
        return self._need_store().get_run(int(run_id))

    def tool_ids(self) -> list[str]:
        """The tools of the recent runs (for the history's filter)."""
        return sorted({r.tool_id for r in self.list_runs(limit=500)})

    def all_tags(self) -> list[str]:
        if self.store is None:
            return []
        return sorted(tag for tag, _count in self.store.all_tags())

    # --- tags, ratings, notes ----------------------------------------------------------------
    def add_tag(self, run_id: int, tag: str) -> None:
        self._need_store().add_tag(run_id, tag)

    def set_rating(self, run_id: int, rating: int | None) -> None:
        self._need_store().set_rating(run_id, rating or None)

    def set_note(self, run_id: int, note: str) -> None:
        self._need_store().set_note(run_id, note)

    # --- results ---------------------------------------------------------------------------
    def result_file(self, result_id: int | None) -> Path | None:
        """The file of a stored result; None without a session or a result id, or when the file
        is gone (``LookupError`` for an id the session does not have)."""
        from storage import MissingFileError  # noqa: PLC0415

        if self.store is None or result_id is None:
            return None
        try:
            return self.store.result_path(int(result_id))
        except MissingFileError as exc:
            log.warning("%s", exc)
            return None

    def result_size(self, result_id: int) -> Optional[tuple[int, int]]:
        """(width, height) of a stored image or mask result, None when unknown."""
        if self.store is None:
            return None
        try:
            info = self.store.get_result(int(result_id))
        except LookupError:
            return None
        return (int(info.width), int(info.height)) if info.width and info.height else None

    def load_result(self, result_id: int) -> api.Result:
        from app.jobs import load_stored_result  # noqa: PLC0415

        return load_stored_result(self._need_store(), int(result_id))

    def image_choices(self) -> list[tuple[str, str, str | None]]:
        """Recent image/mask results as (``"result:<id>"``, label, thumbnail path) for pickers."""
        out = []
        for run in self.list_runs(limit=40):
            for res in run.results:
                if res.kind in ("image", "mask"):
                    # a run's second picture (a trajectory filmstrip) is named, not listed as the first again
                    label = result_label(res)
                    out.append((f"{api.RESULT_REF_PREFIX}{res.id}",
                                f"#{run.id} {run.tool_id}" + (f" · {label}" if label else "") + f" ({res.kind})",
                                str(res.path)))
        return out

    def record_input(self, value: Any, kind: str, tool_id: str, param: str) -> int:
        """Keep an input given in memory (a painted mask, an array) in the session, as the result
        of an ``input`` run, and return its result id: a run can then name it as
        ``result:<id>``, so the session records what the run was given and Reproduce finds it."""
        from app import __version__, results_io  # noqa: PLC0415

        store = self._need_store()
        res = api.MaskResult(mask=value) if kind == "mask" else api.ImageResult(image=value)
        res.label = f"{param} of {tool_id}"
        enc = results_io.encode(res, {"tool": INPUT_TOOL_ID})
        run_id = store.record_run(
            tool_id=INPUT_TOOL_ID, plugin="app", plugin_version=__version__, params={"tool": tool_id, "param": param},
            seed=None, device="", results=[dict(kind=enc.kind, data=enc.data, ext=enc.ext, width=enc.width,
                                                height=enc.height, shape=enc.shape, metadata=enc.metadata)])
        return store.get_run(run_id).results[0].id

    # --- lineage --------------------------------------------------------------------------------
    def run_of_result(self, result_id: int) -> Optional[int]:
        if self.store is None:
            return None
        try:
            return self.store.get_result(int(result_id)).run_id
        except LookupError:  # storage's not-found errors are LookupErrors
            return None

    def parents_from_params(self, tool: api.ToolSpec, values: Mapping[str, Any]) -> list[int]:
        """Runs whose results a run takes as inputs (its ``result:<id>`` values), in the order of
        the tool's parameters."""
        parents: list[int] = []
        for p in tool.params:
            rid = _result_id(values.get(p.name))
            run_id = self.run_of_result(rid) if rid is not None else None
            if run_id is not None and run_id not in parents:
                parents.append(run_id)
        return parents

    def input_image_for(self, tool: api.ToolSpec, values: dict[str, Any]) -> Any:
        """The first image input of a run (for the before/after view), as a path or array."""
        for p in tool.params:
            if not isinstance(p, api.ImageParam) or isinstance(p, api.MaskParam):
                continue
            v = values.get(p.name)
            rid = _result_id(v)
            if rid is not None:
                try:
                    path = self.result_file(rid)
                except (LookupError, OSError):
                    return None
                return str(path) if path else None
            if isinstance(v, str) and Path(v).is_file():
                return v
            if isinstance(v, api.ImageResult):
                return v.image
            if hasattr(v, "shape"):
                return v
        return None

    # --- reproduce -------------------------------------------------------------------------------
    def compare_outputs(self, orig_run_id: int, new_run_id: Optional[int],
                        new_results: list[api.Result]) -> tuple[bool, str]:
        """Do the outputs of the two runs match bit for bit? Compares decoded pixels/arrays of
        each result in order (PNG bytes may differ in metadata such as the run id)."""
        import numpy as np  # noqa: PLC0415

        orig = self.run(orig_run_id)
        if new_run_id is not None:
            new_loaded = [self.load_result(r.id) for r in self.run(new_run_id).results]
        else:
            new_loaded = list(new_results)
        old_loaded = [self.load_result(r.id) for r in orig.results]
        if len(old_loaded) != len(new_loaded):
            return False, f"run #{orig_run_id} had {len(old_loaded)} results, the new run {len(new_loaded)}"
        if not old_loaded:
            return False, f"run #{orig_run_id} has no results to compare"
        for i, (a, b) in enumerate(zip(old_loaded, new_loaded)):
            if a.kind != b.kind:
                return False, f"result {i + 1}: kind {a.kind} vs {b.kind}"
            fa, fb = _arrays(a), _arrays(b)
            if fa.keys() != fb.keys():
                return False, f"result {i + 1}: different contents"
            for k in fa:
                x, y = fa[k], fb[k]
                if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                    x, y = np.asarray(x), np.asarray(y)
                    if x.shape != y.shape:
                        return False, f"result {i + 1}: {k} shape {x.shape} vs {y.shape}"
                    if x.dtype != y.dtype or x.tobytes() != y.tobytes():
                        diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
                        frac = float((diff > 0).mean()) * 100
                        return False, (f"outputs differ (new run #{new_run_id}): result {i + 1} {k}: "
                                       f"max difference {diff.max():g}, {frac:.2f}% of values differ")
                elif x != y:
                    return False, f"result {i + 1}: {k} differs"
        n = len(old_loaded)
        return True, f"identical bit for bit ({n} result{'s' if n != 1 else ''}, new run #{new_run_id})"

    # --- PNG parameters, export ---------------------------------------------------------------------
    @staticmethod
    def png_params(path: str) -> dict[str, Any] | None:
        """Parameters from a PNG's text chunks: ``{"tool", "params", "seed", "source",
        "plugin_version"}`` or None (the version of the plugin that made it, when the PNG says).

        Our own JSON chunk names the tool exactly; an A1111 ``parameters`` text (or a ComfyUI
        graph) maps onto text-to-image."""
        from storage import pngmeta  # noqa: PLC0415

        try:
            meta = pngmeta.read_png_metadata(path)
        except (ValueError, OSError):
            return None
        tool, params, seed = meta.restore()
        if tool is None and params:
            tool = "text-to-image"
        if not tool:
            return None
        version = (meta.implicit or {}).get("plugin_version") if isinstance(meta.implicit, dict) else None
        return {"tool": str(tool), "params": dict(params), "seed": seed, "source": meta.source,
                "plugin_version": str(version) if version else None}

    def export(self, result_id: int | None, path: str, result: api.Result | None = None,
               run_id: int | None = None) -> str:
        """Write a stored result (its file: a PNG keeps the run's parameters), or a result shown
        but not stored, to ``path``; returns the path written."""
        if result_id is not None and self.store is not None:
            data = self.store.read_result(int(result_id))
        elif result is not None:
            from app import results_io  # noqa: PLC0415

            data = results_io.encode(result, {"run_id": run_id}).data
        else:
            raise ValueError("nothing to export")
        tmp = Path(path).with_name("." + Path(path).name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path


class SessionWatcher:
    """Notices commits to a session's database made through any other connection.

    A thread of its own polls SQLite's ``PRAGMA data_version`` on a private read-only connection
    every ``interval`` seconds (a few microseconds each: no table is read, no lock taken) and calls
    ``on_change()`` when it moved. SQLite changes that number for every commit made by another
    connection, in this process or another, so runs the command line records while the window is
    open are seen within ``interval``."""

    def __init__(self, db_path: Path, on_change: Callable[[], None], interval: float = 1.0):
        self.db_path = Path(db_path)
        self.on_change = on_change
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.polls = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="session-watcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _connect(self):  # noqa: ANN202 - a sqlite3 connection
        import sqlite3  # noqa: PLC0415
        from urllib.parse import quote  # noqa: PLC0415

        uri = "file:" + quote(self.db_path.as_posix()) + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False)

    def _loop(self) -> None:
        conn = None
        last: Optional[int] = None
        warned = False
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                version = int(conn.execute("PRAGMA data_version").fetchone()[0])
                self.polls += 1
                if last is not None and version != last:
                    self.on_change()
                last = version
                warned = False
            except Exception as exc:  # noqa: BLE001 - a busy or vanished file: try again later
                if not warned:
                    log.warning("watching %s: %s", self.db_path, exc)
                    warned = True
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn, last = None, None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()


def _arrays(res: api.Result) -> dict[str, Any]:
    out = {}
    for attr in ("image", "mask", "vertices", "faces", "values", "support", "weights", "rows", "data"):
        v = getattr(res, attr, None)
        if v is not None:
            out[attr] = v
    return out
