"""Evaluations as batch plans: write an evaluation's items as a plan, run it on a batch engine, read
the results back from the session (shared by ``lab.hedit_eval`` and ``lab.inpaint_eval``).

An evaluation prepares its inputs in-process (source images, masks: PNG files under a work folder)
and writes one plan of its tool whose CSV rows are the items it would loop over (one row per
method x case), plus ``eval.json`` beside it: what the scoring needs that is not a tool parameter
(each case's ground truth). The plan runs through :class:`app.batch.driver.BatchDriver`, the same
driver as ``implicit-studio batch`` (local worker processes or Ray actors); only the driver writes
the session. The scoring then reads each item's recorded run and its image back from the session,
so a plan written with ``--plan-only`` can run anywhere (``implicit-studio batch PLAN --engine ray
--ray-address ...``) and be scored later with ``--from-batch ID --session S``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

META_NAME = "eval.json"
INPUTS = "inputs"


def add_engine_options(p: Any) -> None:
    """The evaluations' batch options (none given: the in-process loop, as before)."""
    g = p.add_argument_group("as a batch (app.batch: worker processes or a Ray cluster)")
    g.add_argument("--engine", choices=("local", "ray"), default=None,
                   help="run the evaluation's items as a batch plan on this engine and score them from the session")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="batch workers (default 1)")
    g.add_argument("--ray-address", metavar="ADDR", default=None, help="Ray cluster (default: a local Ray)")
    g.add_argument("--device", metavar="D", default=None,
                   help="the workers' device: auto, cpu, cuda, cuda:N or mps (on Ray, cuda asks one GPU per worker)")
    g.add_argument("--session", metavar="PATH", default=None,
                   help="session that records the batch (default: the default session)")
    g.add_argument("--work", type=Path, default=None, metavar="DIR",
                   help="folder for the plan and its input images (default: a new folder under the studio's "
                        "data folder, evaluations/)")
    g.add_argument("--plan-only", type=Path, default=None, metavar="OUT.toml",
                   help="write the plan (inputs beside it) and stop; run it with `implicit-studio batch OUT.toml`")
    g.add_argument("--from-batch", type=int, default=None, metavar="ID",
                   help="score a batch of a plan written by --plan-only (with --session)")


def chosen_methods(args: Any, known: Any) -> list[str]:
    """The methods of ``known`` that ``--methods`` names (a comma-separated list; all by default),
    in ``known``'s order; exits with a sentence for an unknown one."""
    names = [n.strip() for n in (getattr(args, "methods", None) or ",".join(known)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return [n for n in known if n in names]


def batch_mode(args: Any) -> bool:
    return bool(args.engine or args.plan_only or args.from_batch is not None)


def session_dir(session: Optional[str]) -> Path:
    if session:
        return Path(session).expanduser()
    from app.settings import default_session_dir

    return default_session_dir()


def work_dir(args: Any, tool: str) -> Path:
    """Where the plan, its CSV rows, eval.json and the input images go."""
    if args.plan_only:
        return Path(args.plan_only).expanduser().resolve().parent
    if args.work:
        return Path(args.work).expanduser().resolve()
    from app.settings import data_dir

    return (data_dir() / "evaluations" / f"{tool}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}").resolve()


def plan_name(args: Any) -> str:
    return Path(args.plan_only).name if args.plan_only else "plan.toml"


def run_as_batch(args: Any, tool: str, write: Any, score: Any) -> dict[str, Any]:
    """Write the evaluation's plan (``write(args, folder, log) -> plan path``), run it on
    ``args.engine`` and score the batch (``score(args, batch_id, log) -> result``); with
    ``--plan-only`` stop after writing (``{"plan": path}``), with ``--from-batch`` only score."""
    log = stderr_log(args.quiet)
    if args.from_batch is not None:
        return score(args, args.from_batch, log)
    if not args.plan_only:
        check_engine(args.engine, args.device)  # before the inputs are made
    plan = write(args, work_dir(args, tool), log)
    if args.plan_only:
        return dict(plan=str(plan))
    batch_id = run_plan(plan, args.engine, args.workers, args.ray_address, args.session, log, args.device)
    return score(args, batch_id, log)


def save_png(array: np.ndarray, path: Path) -> str:
    """A uint8 image (HxWx3) or a boolean mask (HxW, white = True) as a lossless PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    Image.fromarray(a).save(path)
    return str(path)


def load_png(path: str | Path, mask: bool = False) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if mask:
            return np.asarray(im.convert("L")) > 127
        return np.asarray(im.convert("RGB")).copy()


def write_plan(folder: Path, tool: str, name: str, params: dict[str, Any], rows: list[dict[str, Any]],
               meta: dict[str, Any], plan_name: str = "plan.toml") -> Path:
    """``folder/plan.toml`` (the tool, the fixed ``params`` and ``rows = "items.csv"``),
    ``folder/items.csv`` (one row per item) and ``folder/eval.json`` (``meta``)."""
    folder.mkdir(parents=True, exist_ok=True)
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
    lines = [f"# written by python -m {meta.get('evaluation', 'lab')}; score a batch of it with --from-batch ID",
             f"tool = {_toml_value(tool)}", f"name = {_toml_value(name)}", 'rows = "items.csv"', "", "[params]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    path = folder / plan_name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / META_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return path


def _toml_value(v: Any) -> str:
    """A plan's scalar value as TOML (text as a JSON string is a TOML basic string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v, ensure_ascii=False)
    raise TypeError(f"a plan parameter must be a number, text or true/false, got {type(v).__name__}")


def check_engine(engine: Optional[str], device: Optional[str]) -> None:
    """``RuntimeError`` (a sentence) for Ray when it is not installed, or a device that does not exist."""
    from app.batch.engine import RAY_INSTALL_HINT, ray_available

    if engine == "ray" and not ray_available():
        raise RuntimeError(RAY_INSTALL_HINT)
    if device:
        from app import devices

        try:
            devices.parse_device(device)
        except devices.DeviceError as exc:
            raise RuntimeError(f"--device: {exc}") from None


def run_plan(plan_path: Path, engine: str, workers: int, ray_address: Optional[str], session: Optional[str],
             log: Any, device: Optional[str] = None) -> int:
    """Run a plan as ``implicit-studio batch`` does; the batch id. ``RuntimeError`` when the engine is
    missing, the plan is refused or no worker could run the items."""
    from app.batch.driver import BatchDriver
    from app.batch.plan import load_plan
    from app.jobs import open_session
    from app.plugins import get_manager
    from app.settings import Settings

    check_engine(engine, device)
    plan = load_plan(plan_path)
    manager = get_manager(Settings())

    def on_event(ev: Any) -> None:
        d = ev.data
        if ev.kind == "item":
            log(f"[{d['ok'] + d['failed']}/{d['ok'] + d['failed'] + d['left']}] {d['key']}: {d['status']}"
                + (f" {d['error']}" if d.get("error") else ""))

    store = open_session(session_dir(session))
    try:
        driver = BatchDriver(store, manager.tool, engine=engine, workers=max(1, int(workers)),
                             ray_address=ray_address, device=device, listener=on_event)
        batch_id = driver.create(plan)
        log(f"batch {batch_id}: {plan.count} item(s) of {plan.tool}, engine {engine}, session {store.folder}")
        summary = driver.run(batch_id)
    finally:
        store.close()
    if summary.status != "done":
        raise RuntimeError(f"batch {batch_id} {summary.status}: {summary.error or 'not finished'}; "
                           f"`implicit-studio batch resume {batch_id}` goes on, then score it with --from-batch")
    return batch_id


@dataclass
class ItemOutput:
    """One recorded item of a batch, in plan order."""

    position: int
    key: str
    status: str  # ok, failed, or left (not recorded)
    params: dict[str, Any]
    image: Optional[np.ndarray]  # the first image result
    seconds: float
    error: Optional[str]


def batch_outputs(session: Optional[str], batch_id: int) -> tuple[list[ItemOutput], dict[str, Any]]:
    """(the items of a batch with their first image, eval.json of its plan)."""
    from app.batch.plan import BatchPlan
    from storage import SessionStore, batches

    folder = session_dir(session)
    if not folder.exists():
        raise RuntimeError(f"no session at {folder}")
    store = SessionStore.open(folder, readonly=True)
    try:
        try:
            info = batches.get_batch(store, batch_id)
        except batches.BatchNotFoundError as exc:
            raise RuntimeError(str(exc)) from None
        items = BatchPlan.from_dict(info.plan).items()
        recorded = {it.key: it for it in batches.batch_items(store, batch_id)}
        out = []
        for item in items:
            rec = recorded.get(item.key)
            image, seconds, status, error = None, float("nan"), "left", None
            if rec is not None:
                status, error = rec.status, rec.error
                run = store.get_run(rec.run_id)
                seconds = float(run.duration_s or float("nan"))
                img = next((r for r in run.results if r.kind == "image"), None)
                if rec.status == "ok" and img is not None:
                    image = load_png(store.result_path(img.id))
            out.append(ItemOutput(item.index, item.key, status, dict(item.params), image, seconds, error))
    finally:
        store.close()
    return out, _meta_for(out, batch_id)


def _meta_for(items: list[ItemOutput], batch_id: int) -> dict[str, Any]:
    """eval.json beside the plan's input images (inputs/ is a folder of the plan's)."""
    for it in items:
        img = it.params.get("image")
        if isinstance(img, str):
            for folder in (Path(img).parent.parent, Path(img).parent):
                if (folder / META_NAME).is_file():
                    return json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    raise RuntimeError(f"batch {batch_id} was not written by an evaluation: no {META_NAME} beside its input images")


def check_outputs(items: list[ItemOutput], meta: dict[str, Any], evaluation: str) -> None:
    if meta.get("evaluation") != evaluation:
        raise RuntimeError(f"this batch was written by {meta.get('evaluation')!r}, not {evaluation!r}")
    if len(items) != len(meta["items"]):
        raise RuntimeError(f"the batch has {len(items)} items, its {META_NAME} {len(meta['items'])}")
    missing = [it for it in items if it.status != "ok" or it.image is None]
    if missing:
        first = missing[0]
        raise RuntimeError(f"{len(missing)} of {len(items)} item(s) have no result (first: {first.key}, "
                           f"{first.status}{': ' + first.error if first.error else ''}); resume the batch "
                           "(`implicit-studio batch resume ID --retry-failed`) before scoring it")


def stderr_log(quiet: bool):
    return (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))


def run_and_report(prog: str, args: Any, run: Any, format_table: Any) -> int:
    """An evaluation's ``main`` after parsing: run it (in-process or as a batch), print its table
    (or where the plan was written), write ``--out``; the exit status."""
    try:
        result = run(args)
    except RuntimeError as exc:  # a batch that could not run or be scored: its sentence
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if "plan" in result:
        plan = result["plan"]
        print(f"plan written: {plan}\nrun it: implicit-studio batch {plan} [--engine ray --ray-address ADDR] "
              f"[--workers N] [--session S]\nscore it: {prog} --from-batch ID [--session S]")
        return 0
    print(format_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0
