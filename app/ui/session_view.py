"""What the window needs from the session store, in one place.

Wraps ``storage.SessionStore`` (opened on the session folder) and turns its rows into small view
records (:class:`RunView`, :class:`ResultView`) for the history dock, the compare dialog and
reproduce. No widgets here; only this module knows the store's method names.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from app.ui.adapters import _get

log = logging.getLogger("implicit_studio.ui.session")


def _ts(v: Any) -> float | None:
    from datetime import datetime  # noqa: PLC0415

    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        return v.timestamp()
    try:
        return datetime.fromisoformat(str(v)).timestamp()
    except ValueError:
        return None


class ResultView:
    """One result of a run, as the history shows it."""

    __slots__ = ("id", "kind", "path", "thumb_path", "width", "height", "label")

    def __init__(self, id: Any, kind: str, path: str | None = None, thumb_path: str | None = None,
                 width: int | None = None, height: int | None = None, label: str = ""):
        self.id, self.kind, self.path, self.thumb_path, self.width, self.height = id, kind, path, thumb_path, width, height
        self.label = label  # the result's own name ("seed 3", "trajectory filmstrip"), may be empty

    def __repr__(self) -> str:
        return f"ResultView(id={self.id!r}, kind={self.kind!r}, path={self.path!r})"


class RunView:
    """One run, as the history shows it (plain attributes; built from the store's rows)."""

    def __init__(self, id: Any, tool_id: str, params: dict, seed: Any, status: str, started: float | None = None,
                 duration: float | None = None, error: str = "", results: list | None = None,
                 parents: list | None = None, tags: list | None = None, rating: int | None = None,
                 note: str = "", device: str = ""):
        self.id, self.tool_id, self.params, self.seed, self.status = id, tool_id, params, seed, status
        self.started, self.duration, self.error = started, duration, error
        self.results: list[ResultView] = list(results or [])
        self.parents = list(parents or [])
        self.tags = list(tags or [])
        self.rating, self.note, self.device = rating, note, device

    def __repr__(self) -> str:
        return f"RunView(id={self.id!r}, tool_id={self.tool_id!r}, status={self.status!r})"

    def when(self) -> str:
        if self.started is None:
            return ""
        from datetime import datetime  # noqa: PLC0415

        return datetime.fromtimestamp(self.started).strftime("%d %b %H:%M:%S")

    def subtitle(self) -> str:
        parts = [f"seed {self.seed}" if self.seed is not None else "", self.when(),
                 f"{self.duration:.1f}s" if self.duration else "", self.device]
        return "  ·  ".join(p for p in parts if p)

    def tooltip(self) -> str:
        lines = [f"Run #{self.id} — {self.tool_id} ({self.status})", self.subtitle()]
        for k, v in self.params.items():
            text = str(v)
            lines.append(f"{k}: {text[:80]}{'…' if len(text) > 80 else ''}")
        if self.tags:
            lines.append("tags: " + ", ".join(self.tags))
        if self.rating:
            lines.append("rating: " + "★" * int(self.rating))
        if self.error:
            lines.append("error: " + self.error)
        return "\n".join(line for line in lines if line)


class SessionView:
    """The open session, as the window reads it."""

    def __init__(self, store: Any, folder: Path | None, error: str = "", opening: bool = False):
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
    def pending(cls, folder: str | os.PathLike | None) -> "SessionView":
        """A view whose store is opened later with :meth:`open_store` (off the GUI thread)."""
        return cls(None, cls.resolve_folder(folder), opening=True)

    @classmethod
    def open(cls, folder: str | os.PathLike | None) -> "SessionView":
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
        return f"session: {self.folder.name if self.folder else '?'}"

    def close(self) -> None:
        if self.store is not None and hasattr(self.store, "close"):
            try:
                self.store.close()
            except Exception:
                log.warning("closing the session failed", exc_info=True)

    # --- reading runs -------------------------------------------------------------------
    def _result_view(self, r: Any) -> ResultView:
        rid = _get(r, "id", "result_id")
        path = _get(r, "path", "file_path", default=None)
        if path is None and self.store is not None and hasattr(self.store, "result_path"):
            try:
                path = self.store.result_path(rid)
            except Exception:
                path = None
        thumb = _get(r, "thumb_path", "thumbnail_path", "thumbnail", default=None)
        meta = _get(r, "metadata", default=None)
        label = str(meta.get("label") or "") if isinstance(meta, dict) else ""
        return ResultView(id=rid, kind=str(_get(r, "kind", default="file")), path=str(path) if path else None,
                          thumb_path=str(thumb) if thumb else None, width=_get(r, "width", default=None),
                          height=_get(r, "height", default=None), label=label)

    def _run_view(self, r: Any) -> RunView:
        params = _get(r, "params", "parameters", default={}) or {}
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                params = {}
        results = [self._result_view(x) for x in (_get(r, "results", default=()) or ())]
        parents = list(_get(r, "parents", "parent_run_ids", "parent_ids", default=()) or ())
        if not parents:
            p = _get(r, "parent_run_id", "parent_id", default=None)
            if p is not None:
                parents = [p]
        tags = list(_get(r, "tags", default=()) or ())
        started = _ts(_get(r, "started_at", "started", "created_at", default=None))
        finished = _ts(_get(r, "finished_at", "finished", default=None))
        duration = _get(r, "duration", "duration_s", default=None)
        if duration is None and started is not None and finished is not None:
            duration = finished - started
        status = str(_get(r, "status", default="") or "")
        status = {"finished": "ok"}.get(status, status)
        return RunView(id=_get(r, "id", "run_id"), tool_id=str(_get(r, "tool_id", "tool", default="?")),
                       params=dict(params), seed=_get(r, "seed", default=None), status=status,
                       started=started, duration=duration, error=str(_get(r, "error", default="") or ""),
                       results=results, parents=parents, tags=[str(t) for t in tags],
                       rating=_get(r, "rating", default=None), note=str(_get(r, "note", "notes", default="") or ""),
                       device=str(_get(r, "device", default="") or ""))

    def list_runs(self, limit: int = 100, offset: int = 0, tool: str | None = None, tag: str | None = None,
                  text: str | None = None) -> list[RunView]:
        if self.store is None:
            return []
        rows = self.store.list_runs(limit=limit, offset=offset, tool=tool, tag=tag, text=text)
        runs = []
        for row in rows:
            if _get(row, "results", default=None) is None and hasattr(self.store, "get_run"):
                try:
                    row = self.store.get_run(_get(row, "id", "run_id"))
                except Exception:
                    pass
            runs.append(self._run_view(row))
        return runs

    def run(self, run_id: Any) -> RunView:
        if self.store is None:
            raise LookupError("no session is open")
        return self._run_view(self.store.get_run(run_id))

    def tool_ids(self) -> list[str]:
        if self.store is None:
            return []
        for name in ("tool_ids", "list_tools", "tools"):
            fn = getattr(self.store, name, None)
            if callable(fn):
                try:
                    return sorted(str(t) for t in fn())
                except Exception:
                    break
        return sorted({r.tool_id for r in self.list_runs(limit=500)})

    def all_tags(self) -> list[str]:
        if self.store is None:
            return []
        for name in ("all_tags", "list_tags", "tags"):
            fn = getattr(self.store, name, None)
            if callable(fn):
                try:
                    tags = fn()
                    return sorted(str(t[0] if isinstance(t, (tuple, list)) else t) for t in tags)
                except TypeError:
                    continue
                except Exception:
                    break
        return []

    # --- tags, ratings, notes ----------------------------------------------------------------
    def add_tag(self, run_id: Any, tag: str) -> None:
        self.store.add_tag(run_id, tag)

    def set_rating(self, run_id: Any, rating: int) -> None:
        self.store.set_rating(run_id, rating or None)

    def set_note(self, run_id: Any, note: str) -> None:
        self.store.set_note(run_id, note)

    # --- results ---------------------------------------------------------------------------
    def result_file(self, result_id: Any) -> Path | None:
        if self.store is None or result_id is None:
            return None
        p = self.store.result_path(result_id)
        return Path(p) if p else None

    def load_result(self, result_id: Any) -> Any:
        from app.jobs import load_stored_result  # noqa: PLC0415

        return load_stored_result(self.store, int(result_id))

    def result_bytes(self, result_id: Any) -> bytes:
        for name in ("read_result_bytes", "result_bytes", "read_result"):
            fn = getattr(self.store, name, None)
            if callable(fn):
                data = fn(result_id)
                if isinstance(data, (bytes, bytearray)):
                    return bytes(data)
        return Path(self.store.result_path(result_id)).read_bytes()

    def image_choices(self) -> list[tuple[str, str, str | None]]:
        """Recent image/mask results as (``"result:<id>"``, label, thumbnail path) for pickers."""
        out = []
        for run in self.list_runs(limit=40):
            for res in run.results:
                if res.kind in ("image", "mask"):
                    out.append((f"result:{res.id}", f"#{run.id} {run.tool_id} ({res.kind})", res.thumb_path or res.path))
        return out

    # --- lineage --------------------------------------------------------------------------------
    def parents_from_params(self, tool: Any, values: dict) -> list:
        """Runs whose results this run takes as inputs (from ``result:<id>`` parameter values)."""
        parents = []
        for v in values.values():
            if isinstance(v, str) and v.startswith("result:") and self.store is not None:
                try:
                    rid = int(v.split(":", 1)[1])
                    run_id = self._run_of_result(rid)
                    if run_id is not None and run_id not in parents:
                        parents.append(run_id)
                except (ValueError, LookupError):
                    continue
        return parents

    def _run_of_result(self, result_id: int) -> Any:
        for name in ("get_result", "result_info"):
            fn = getattr(self.store, name, None)
            if callable(fn):
                try:
                    r = fn(result_id)
                    return _get(r, "run_id", default=None)
                except Exception:
                    return None
        return None

    def input_image_for(self, tool: Any, values: dict) -> Any:
        """The first image input of a run (for the before/after view), as a path or array."""
        if tool is None:
            return None
        from app.ui.adapters import param_kind, param_name, tool_params  # noqa: PLC0415

        for p in tool_params(tool):
            if param_kind(p) != "image":
                continue
            v = values.get(param_name(p))
            if isinstance(v, str) and v.startswith("result:"):
                try:
                    path = self.result_file(int(v.split(":", 1)[1]))
                    return str(path) if path else None
                except (ValueError, LookupError, OSError):
                    return None
            if isinstance(v, str) and Path(v).is_file():
                return v
            img = getattr(v, "image", None)
            if img is not None:
                return img
        return None

    # --- reproduce -------------------------------------------------------------------------------
    def compare_outputs(self, orig_run_id: Any, new_run_id: Any, new_results: list) -> tuple[bool, str]:
        """Do the outputs of the two runs match bit for bit? Compares decoded pixels/arrays of
        each result in order (PNG bytes may differ in metadata such as the run id)."""
        import numpy as np  # noqa: PLC0415

        orig = self.run(orig_run_id)
        if new_run_id is not None:
            new = self.run(new_run_id)
            new_loaded = [self.load_result(r.id) for r in new.results]
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
    def png_params(self, path: str) -> dict | None:
        """Parameters from a PNG's text chunks: ``{"tool", "params", "seed"}`` or None.

        Our own JSON chunk names the tool exactly; an A1111 ``parameters`` text (or a ComfyUI
        graph) maps onto text-to-image."""
        try:
            from storage import pngmeta  # noqa: PLC0415

            meta = pngmeta.read_png_metadata(path)
            tool, params, seed = meta.restore()
            if tool is None and params:
                tool = "text-to-image"
            if tool:
                return {"tool": str(tool), "params": dict(params), "seed": seed, "source": meta.source}
        except (ImportError, AttributeError):
            pass
        except ValueError:
            return None
        try:  # the services' own chunk, when the storage reader is not there
            from app import results_io  # noqa: PLC0415

            reader = getattr(results_io, "read_png_info", None) or getattr(results_io, "read_png_text")
            data = reader(Path(path).read_bytes())
        except Exception:
            return None
        if not isinstance(data, dict) or not data:
            return None
        tool = data.get("tool") or data.get("tool_id")
        params = data.get("params") or {}
        if not tool or not isinstance(params, dict):
            return None
        return {"tool": str(tool), "params": dict(params), "seed": data.get("seed"), "source": "implicit-studio"}

    def export(self, result_id: Any, path: str, result: Any = None, run_id: Any = None) -> str:
        """Write a result to ``path`` (PNG with parameters for images)."""
        if result_id is not None and self.store is not None:
            for name in ("export_result",):
                fn = getattr(self.store, name, None)
                if callable(fn):
                    out = fn(result_id, path)
                    return str(out or path)
            Path(path).write_bytes(self.result_bytes(result_id))
            return path
        if result is not None:
            from app import results_io  # noqa: PLC0415

            enc = results_io.encode(result, {"run_id": run_id})
            Path(path).write_bytes(enc.data)
            return path
        raise ValueError("nothing to export")


def _arrays(res: Any) -> dict:
    out = {}
    for attr in ("image", "mask", "vertices", "faces", "values", "support", "weights", "rows", "data"):
        v = getattr(res, attr, None)
        if v is not None:
            out[attr] = v
    return out
