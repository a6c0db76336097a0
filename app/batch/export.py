"""A batch's items as CSV and its results as one grid image (no Qt; the dock and the CLI use them)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Optional

from app.batch.plan import BatchPlan, grid_axes


def _metrics_of(store: Any, run: Any) -> dict[str, float]:
    """The tool's metrics of a run: the last value of each in its metrics table."""
    out: dict[str, float] = {}
    for res in run.results:
        if res.kind != "table" or (res.metadata or {}).get("role") != "metrics":
            continue
        try:
            text = store.read_result(res.id).decode("utf-8")
        except Exception:  # noqa: BLE001 - a missing file leaves the metrics out
            continue
        for row in csv.DictReader(io.StringIO(text)):
            try:
                out[str(row["metric"])] = float(row["value"])
            except (KeyError, TypeError, ValueError):
                continue
    return out


def item_rows(store: Any, batch_id: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): one row per item of the plan (recorded or not) with its axis values,
    status, run id, seed, seconds, error, the run's parameters and the tool's metrics."""
    from storage import batches

    info = batches.get_batch(store, batch_id)
    plan = BatchPlan.from_dict(info.plan)
    recorded = {it.key: it for it in batches.batch_items(store, batch_id)}
    rows: list[dict[str, Any]] = []
    params_cols: dict[str, None] = {}
    metric_cols: dict[str, None] = {}
    for item in plan.items():
        row: dict[str, Any] = {"key": item.key, **{f"axis:{k}": v for k, v in item.coords.items()}}
        rec = recorded.get(item.key)
        row.update(status=rec.status if rec else "left", run_id=rec.run_id if rec else "",
                   attempts=rec.attempts if rec else "", error=(rec.error or "") if rec else "")
        if rec is not None:
            try:
                run = store.get_run(rec.run_id)
            except Exception:  # noqa: BLE001 - the run was deleted meanwhile
                run = None
            if run is not None:
                row.update(seed=run.seed, seconds=round(run.duration_s or 0.0, 4), worker=rec.worker or "")
                for k, v in run.params.items():
                    params_cols.setdefault(k)
                    row[f"param:{k}"] = v
                for k, v in _metrics_of(store, run).items():
                    metric_cols.setdefault(k)
                    row[f"metric:{k}"] = v
        rows.append(row)
    axes = [f"axis:{a.name}" for a in plan.axes]
    columns = (["key", *axes, "status", "run_id", "seed", "seconds", "attempts", "worker", "error"]
               + [f"param:{k}" for k in params_cols] + [f"metric:{k}" for k in metric_cols])
    return columns, rows


def write_items_csv(store: Any, batch_id: int, path: str | os.PathLike) -> Path:
    columns, rows = item_rows(store, batch_id)
    path = Path(path).expanduser()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (v if not isinstance(v, (list, dict)) else repr(v)) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def grid_cells(store: Any, batch_id: int) -> tuple[list[str], list[str], dict[tuple[int, int], dict[str, Any]]]:
    """The grid of a batch by two of its axes: (row labels, column labels, cells). A cell is
    ``{"key", "status", "run_id", "image": result id or None, "coords"}``; with more than two
    axes, the first item of each cell's place is shown (the others stay in the CSV)."""
    from storage import batches

    info = batches.get_batch(store, batch_id)
    plan = BatchPlan.from_dict(info.plan)
    down, across = grid_axes(plan)
    rows_l = list(down.labels) if down is not None else [""]
    cols_l = list(across.labels) if across is not None else [""]
    recorded = {it.key: it for it in batches.batch_items(store, batch_id)}
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for item in plan.items():
        r = rows_l.index(item.coords[down.name]) if down is not None else 0
        c = cols_l.index(item.coords[across.name]) if across is not None else 0
        if (r, c) in cells:
            continue
        rec = recorded.get(item.key)
        image = None
        if rec is not None and rec.status == "ok":
            try:
                run = store.get_run(rec.run_id)
                image = next((res.id for res in run.results if res.kind in ("image", "mask")
                              and (res.metadata or {}).get("role") not in ("grid", "filmstrip")), None)
            except Exception:  # noqa: BLE001 - a deleted run shows as an empty cell
                image = None
        cells[(r, c)] = {"key": item.key, "coords": item.coords, "status": rec.status if rec else "left",
                         "run_id": rec.run_id if rec else None, "image": image}
    return rows_l, cols_l, cells


def grid_image(store: Any, batch_id: int, cell: int = 128, label_px: int = 18) -> Any:
    """The grid as one RGB uint8 image (numpy), labels drawn with Pillow's default font."""
    import numpy as np
    from PIL import Image, ImageDraw

    rows_l, cols_l, cells = grid_cells(store, batch_id)
    left = label_px * 4 if any(rows_l) else 0
    top = label_px if any(cols_l) else 0
    pad = 2
    w = left + len(cols_l) * (cell + pad)
    h = top + len(rows_l) * (cell + pad)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, lab in enumerate(cols_l):
        draw.text((left + c * (cell + pad) + 4, 2), lab, fill=(0, 0, 0))
    for r, lab in enumerate(rows_l):
        draw.text((2, top + r * (cell + pad) + cell // 2 - 6), lab, fill=(0, 0, 0))
    for (r, c), info in cells.items():
        x, y = left + c * (cell + pad), top + r * (cell + pad)
        if info["image"] is not None:
            try:
                img = Image.open(io.BytesIO(store.read_result(info["image"]))).convert("RGB")
                img.thumbnail((cell, cell))
                canvas.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
                continue
            except Exception:  # noqa: BLE001 - drawn as a missing cell
                pass
        colour = (230, 120, 120) if info["status"] == "failed" else (225, 225, 225)
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour)
        draw.text((x + 4, y + cell // 2 - 6), info["status"], fill=(0, 0, 0))
    return np.asarray(canvas)


def write_grid_png(store: Any, batch_id: int, path: str | os.PathLike, cell: Optional[int] = None) -> Path:
    from PIL import Image

    arr = grid_image(store, batch_id, cell=cell or 128)
    path = Path(path).expanduser()
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
