"""``implicit-studio batch``: run a batch plan, and see, resume, cancel or export a batch.

::

    implicit-studio batch PLAN.toml [--engine local|ray] [--ray-address ADDR] [--workers N]
                                    [--session S] [--device D] [--dry-run]
    implicit-studio batch status [ID]        # without ID: the session's batches
    implicit-studio batch resume ID [--engine ...] [--workers N] [--retry-failed]
    implicit-studio batch cancel ID
    implicit-studio batch export ID [--csv FILE] [--grid FILE.png]

Exit status: 0 when every item finished ok, 1 when some failed or the batch stopped, 2 for bad
input (a plan that is wrong, an unknown batch), 130 when interrupted (the batch is resumable).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from app.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PROG, UsageError, _manager, _session_path, new_parser

ACTIONS = ("status", "resume", "cancel", "export")


def _engine_options(parser: Any) -> None:
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: worker processes on this machine (default); ray: Ray actors on a cluster")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="the Ray cluster to use (e.g. 10.0.0.5:6379 or auto); default: start a local Ray")
    parser.add_argument("--ray-cpus", type=float, default=1, metavar="N",
                        help="CPUs each Ray actor asks for (default 1; torch uses that many threads in it)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes / actors, each holding the loaded model (default 1)")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps (default: the plan's, else settings)")
    parser.add_argument("--max-attempts", type=int, default=3, metavar="N",
                        help="times an item is sent again when its worker dies (default 3)")
    parser.add_argument("--session", metavar="PATH", help="session folder (default: the default session)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")


def _open(session: Optional[str], create: bool) -> Any:
    from app.cli_commands import _open_store

    return _open_store(_session_path(session), create=create, recover=create, readonly=None if create else False)


def _workers(n: Optional[int]) -> int:
    if n is None:
        return 1
    if n < 1:
        raise UsageError(f"--workers: at least 1, got {n}")
    return n


def cmd_batch(argv: list[str]) -> int:
    if not argv:
        raise UsageError(f"give a plan file or one of {', '.join(ACTIONS)} (see {PROG} batch --help)")
    if argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return EXIT_OK
    if argv[0] in ACTIONS:
        return {"status": _status, "resume": _resume, "cancel": _cancel, "export": _export}[argv[0]](argv[1:])
    return _start(argv)


def _start(argv: list[str]) -> int:
    parser = new_parser(prog=f"{PROG} batch", description="Run a batch plan (TOML): one tool over the "
                        "combinations of its sweep axes, each item recorded in the session as it finishes.")
    parser.add_argument("plan", metavar="PLAN.toml")
    parser.add_argument("--dry-run", action="store_true", help="check the plan and list its items; run nothing")
    _engine_options(parser)
    args = parser.parse_args(argv)
    from app.batch.plan import PlanError, load_plan

    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        raise UsageError(f"{args.plan}: {exc}") from None
    manager = _manager()
    if args.dry_run:
        try:
            items = plan.check(_lookup(manager)(plan.tool))
        except (PlanError, LookupError) as exc:
            raise UsageError(f"{args.plan}: {str(exc).strip(chr(39))}") from None
        for it in items:
            print(f"{it.index + 1:5d}  {it.key}")
        print(f"{len(items)} item(s) of {plan.tool}")
        return EXIT_OK
    _check_engine(args.engine)
    store = _open(args.session, create=True)
    try:
        driver = _driver(store, manager, args)
        try:
            batch_id = driver.create(plan)
        except PlanError as exc:
            raise UsageError(f"{args.plan}: {exc}") from None
        if not args.quiet and not args.json:
            print(f"batch {batch_id}: {plan.count} item(s) of {plan.tool}, engine {args.engine}, "
                  f"{driver.workers} worker(s), session {store.folder}", file=sys.stderr)
        return _drive(driver, batch_id, args)
    finally:
        store.close()


def _lookup(manager: Any):
    def lookup(tool_id: str):
        from app.plugins import UnknownToolError

        try:
            return manager.tool(tool_id)
        except UnknownToolError as exc:
            raise LookupError(str(exc)) from None

    return lookup


def _check_engine(name: str) -> None:
    from app.batch.engine import RAY_INSTALL_HINT, ray_available

    if name == "ray" and not ray_available():
        raise UsageError(RAY_INSTALL_HINT)


def _driver(store: Any, manager: Any, args: Any) -> Any:
    from app import devices
    from app.batch.driver import BatchDriver

    if args.device:
        try:
            devices.parse_device(args.device)
        except devices.DeviceError as exc:
            raise UsageError(str(exc)) from None
    if args.ray_cpus <= 0:
        raise UsageError(f"--ray-cpus: more than 0, got {args.ray_cpus}")
    if args.max_attempts < 1:
        raise UsageError(f"--max-attempts: at least 1, got {args.max_attempts}")
    return BatchDriver(store, _lookup(manager), engine=args.engine, workers=_workers(args.workers),
                       ray_address=args.ray_address, device=args.device or os.environ.get("IMPLICIT_STUDIO_DEVICE"),
                       max_attempts=args.max_attempts, ray_cpus=args.ray_cpus, listener=_printer(args.quiet or args.json))


def _printer(quiet: bool):
    def on_event(ev: Any) -> None:
        if quiet:
            return
        d = ev.data
        if ev.kind == "started" and d.get("skipped"):
            print(f"batch {ev.batch_id}: {d['skipped']} item(s) already recorded, {d['todo']} to do", file=sys.stderr)
        elif ev.kind == "item":
            tail = f"  {d['error']}" if d.get("error") else ""
            print(f"[{d['ok'] + d['failed']}/{d['ok'] + d['failed'] + d['left']}] {d['key']}: {d['status']} "
                  f"(run {d['run_id']}, {d['items_per_s'] * 60:.1f} items/min){tail}", file=sys.stderr, flush=True)
        elif ev.kind == "retry":
            print(f"batch {ev.batch_id}: {d['key']} sent again (attempt {d['attempt']}): {d['reason']}",
                  file=sys.stderr, flush=True)
        elif ev.kind == "worker" and d.get("state") in ("lost", "init-failed"):
            print(f"batch {ev.batch_id}: worker {d['slot']} {d['state']}: {d.get('reason')}", file=sys.stderr, flush=True)

    return on_event


def _drive(driver: Any, batch_id: int, args: Any, retry_failed: bool = False) -> int:
    from app.batch.engine import EngineUnavailable

    try:
        summary = driver.run(batch_id, retry_failed=retry_failed)
    except KeyboardInterrupt:
        print(f"{PROG}: batch {batch_id} interrupted; '{PROG} batch resume {batch_id}' goes on with the items left",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except EngineUnavailable as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"batch_id": batch_id, "status": summary.status, "total": summary.total, "ok": summary.ok,
                          "failed": summary.failed, "left": summary.left, "skipped": summary.skipped,
                          "seconds": round(summary.seconds, 3), "error": summary.error}))
    elif not args.quiet:
        print(f"batch {batch_id} {summary.status}: {summary.ok} ok, {summary.failed} failed, {summary.left} left "
              f"of {summary.total} ({summary.seconds:.1f} s)" + (f"; {summary.error}" if summary.error else ""))
    return EXIT_OK if summary.status == "done" and summary.failed == 0 else EXIT_FAILED


def _id_parser(action: str, description: str, optional: bool = False) -> Any:
    parser = new_parser(prog=f"{PROG} batch {action}", description=description)
    parser.add_argument("id", type=int, nargs="?" if optional else None, metavar="ID")
    return parser


def _batch(store: Any, batch_id: int) -> Any:
    from storage import batches

    try:
        return batches.get_batch(store, batch_id)
    except batches.BatchNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _status(argv: list[str]) -> int:
    parser = _id_parser("status", "Show a batch (or list the session's batches).", optional=True)
    parser.add_argument("--session", metavar="PATH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from app.cli_commands import _open_store
    from storage import batches

    store = _open_store(_session_path(args.session), create=False)
    try:
        infos = [_batch(store, args.id)] if args.id is not None else batches.list_batches(store)
        if args.json:
            print(json.dumps([{"id": b.id, "name": b.name, "tool": b.tool_id, "state": b.state, "total": b.total,
                               "ok": b.ok, "failed": b.failed, "left": b.left, "engine": b.engine,
                               "workers": b.workers, "error": b.error} for b in infos]))
            return EXIT_OK
        if not infos:
            print(f"No batches in the session {store.folder}.")
            return EXIT_OK
        for b in infos:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.created_at))
            print(f"batch {b.id}  {b.state:10s} {b.ok} ok, {b.failed} failed, {b.left} left of {b.total}  "
                  f"{b.tool_id}  {b.engine} x{b.workers}  {when}  {b.name}" + (f"  ({b.error})" if b.error else ""))
        if args.id is not None:
            for it in batches.batch_items(store, args.id):
                if it.status == "failed":
                    print(f"  failed {it.key} (run {it.run_id}, {it.attempts} attempt(s)): {it.error}")
    finally:
        store.close()
    return EXIT_OK


def _resume(argv: list[str]) -> int:
    parser = _id_parser("resume", "Run the items of a batch that are not recorded yet.")
    parser.add_argument("--retry-failed", action="store_true", help="also run the items that failed again")
    _engine_options(parser)
    args = parser.parse_args(argv)
    _check_engine(args.engine)
    manager = _manager()
    store = _open(args.session, create=True)
    try:
        info = _batch(store, args.id)
        if args.workers is None:
            args.workers = info.workers
        driver = _driver(store, manager, args)
        from storage import batches

        try:
            return _drive(driver, args.id, args, retry_failed=args.retry_failed)
        except batches.BatchBusyError as exc:
            raise UsageError(str(exc)) from None
    finally:
        store.close()


def _cancel(argv: list[str]) -> int:
    parser = _id_parser("cancel", "Stop a batch: its driver sends no more items and records those in flight.")
    parser.add_argument("--session", metavar="PATH")
    args = parser.parse_args(argv)
    from app.cli_commands import _open_store
    from storage import batches

    store = _open_store(_session_path(args.session), create=False, readonly=False)
    try:
        _batch(store, args.id)
        status = batches.request_cancel(store, args.id)
    finally:
        store.close()
    print(f"batch {args.id}: {status}" + (" (its driver stops after the items in flight)" if status == "cancelling" else ""))
    return EXIT_OK


def _export(argv: list[str]) -> int:
    parser = _id_parser("export", "Write a batch's items as CSV (parameters, status, metrics) and/or its result grid.")
    parser.add_argument("--csv", metavar="FILE", help="the items as CSV")
    parser.add_argument("--grid", metavar="FILE.png", help="the results laid out by the sweep's axes")
    parser.add_argument("--session", metavar="PATH")
    args = parser.parse_args(argv)
    if not args.csv and not args.grid:
        raise UsageError("give --csv FILE and/or --grid FILE.png")
    from app.batch.export import write_grid_png, write_items_csv
    from app.cli_commands import _open_store

    store = _open_store(_session_path(args.session), create=False)
    try:
        _batch(store, args.id)
        for flag, fn in ((args.csv, write_items_csv), (args.grid, write_grid_png)):
            if flag:
                try:
                    print(fn(store, args.id, Path(flag)))
                except OSError as exc:
                    raise UsageError(f"cannot write {flag}: {exc}") from None
    finally:
        store.close()
    return EXIT_OK
