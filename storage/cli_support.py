"""Helpers behind ``implicit-studio history`` and ``implicit-studio export RUN_ID`` (no Qt)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .errors import RunNotFoundError, StorageError
from .filestore import destination_error, write_file_atomically

# C0 and C1 control characters (ESC, BEL, NUL...) and lone surrogates
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (ESC, BEL, NUL...) and lone
    surrogates are shown as escapes (``\\x1b``, ``\\ud800``) instead of acting on the terminal or
    failing to encode."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", text)


def _short(text: str, width: int) -> str:
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _summary(run) -> str:
    p = run.params
    for key in ("prompt", "text", "name"):
        if isinstance(p.get(key), str) and p[key].strip():
            return p[key]
    return ", ".join(f"{k}={v}" for k, v in p.items() if not isinstance(v, (dict, list)))


def _as_tree(runs: list) -> list[tuple[int, object]]:
    """``(depth, run)`` with each run listed under its parent when the parent is listed too:
    newest trees first, a parent's children in the order they ran (a tool that ran other tools,
    a run and its edits)."""
    listed = {r.id for r in runs}
    children: dict[int, list] = {}
    roots = []
    for r in runs:
        if r.parent_run_id is not None and r.parent_run_id in listed and r.parent_run_id != r.id:
            children.setdefault(r.parent_run_id, []).append(r)
        else:
            roots.append(r)
    out: list[tuple[int, object]] = []
    seen: set[int] = set()

    def walk(run, depth: int) -> None:
        if run.id in seen:
            return
        seen.add(run.id)
        out.append((depth, run))
        for child in sorted(children.get(run.id, []), key=lambda c: c.id):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    out += [(0, r) for r in runs if r.id not in seen]  # a parent loop cannot hide a run
    return out


def format_history(store, limit: int = 20, **filters) -> str:
    """The newest ``limit`` runs as a plain-text table: a run another run started (or derived
    from another run's result) is listed under it, indented, its parent also in its own column."""
    runs = store.list_runs(limit=limit, **filters)
    if not runs:
        return f"No runs in the session {printable(str(store.folder))}."
    header = ("ID", "Parent", "Status", "Tool", "Started", "Time", "Results", "Tags", "Device",
              "Prompt / parameters")
    rows = []
    for depth, r in _as_tree(runs):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
        dur = "" if r.duration_s is None else f"{r.duration_s:.1f}s"
        seed = "" if r.seed is None else f" (seed {r.seed})"
        tool = ("  " * (depth - 1) + "└ " if depth else "") + _short(r.tool_id, 24)
        rows.append((str(r.id), "" if r.parent_run_id is None else str(r.parent_run_id),
                     r.status + ("*" if r.damaged else ""), tool, started, dur,
                     str(len(r.results)), _short(",".join(r.tags), 20),
                     _short(f"{r.device} {r.dtype}" if r.dtype else r.device, 24),
                     _short(_summary(r) + seed, 60)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    lines = [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(row) for row in rows]
    total = store.count_runs()
    if total > len(runs):
        lines.append(f"({len(runs)} newest of {total} runs)")
    damaged = [r for r in runs if r.damaged]
    if damaged:
        lines.append("* damaged: part of the record could not be read (what could is shown):")
        lines += [f"  run {r.id}: {printable('; '.join(r.damage))}" for r in damaged]
        lines.append(f"  'implicit-studio session repair --session {printable(str(store.folder))}' "
                     "copies every readable run into a new session.")
    return "\n".join(lines)


def export_run(store, run_id: int, out_dir: str | os.PathLike) -> list[Path]:
    """Write every result of a run into ``out_dir`` plus ``run-<id>.json`` with its record.

    PNG results carry the parameters in text chunks (our JSON and A1111 ``parameters``).
    Returns the written paths (result files in order, then the JSON).
    """
    from .pngmeta import png_for_run

    try:
        run = store.get_run(int(run_id))
    except (TypeError, ValueError):
        raise RunNotFoundError(f"{run_id!r} is not a run id; run ids are whole numbers.") from None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise destination_error(exc, out) from exc
    written: list[Path] = []
    for res in run.results:
        data = store.read_result(res.id)
        if res.ext == "png":
            try:
                data = png_for_run(data, run, res)
            except ValueError as exc:
                raise StorageError(f"Result {res.id} is not a valid PNG: {exc}") from exc
        # numbered from 1, as ``run --out`` numbers a run's files
        suffix = f"-{res.position + 1}" if len(run.results) > 1 else ""
        path = out / f"run-{run.id}{suffix}-{res.kind}.{res.ext}"
        write_file_atomically(path, data)
        written.append(path)
    record = {
        "run_id": run.id, "tool_id": run.tool_id, "plugin": run.plugin,
        "plugin_version": run.plugin_version, "params": run.params, "seed": run.seed,
        "model_ref": run.model_ref, "model_hash": run.model_hash, "device": run.device, "dtype": run.dtype,
        "backend": run.backend, "status": run.status, "error": run.error,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "duration_s": run.duration_s, "parent_run_id": run.parent_run_id,
        "inputs": list(run.inputs), "tags": list(run.tags), "rating": run.rating, "note": run.note,
        "results": [{"file": p.name, "kind": r.kind, "sha256": r.sha256, "size": r.size,
                     "width": r.width, "height": r.height,
                     "shape": list(r.shape) if r.shape else None, "metadata": r.metadata}
                    for p, r in zip(written, run.results)],
    }
    path = out / f"run-{run.id}.json"
    if run.damage:
        record["damage"] = list(run.damage)
    try:
        text = json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates in a parameter: JSON escapes keep them exactly
        text = json.dumps(record, indent=2, ensure_ascii=True).encode("utf-8")
    write_file_atomically(path, text)
    written.append(path)
    return written


