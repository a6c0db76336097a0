"""Batch records of a session (no Qt): a batch, and one row per finished item linked to its run.

Only a batch's driver writes them (``app.batch.driver``), through the session's single writer.
:func:`record_item` writes an item's run, its results and its ``batch_items`` row in ONE
transaction: a driver killed at any moment leaves an item either fully recorded or not at all,
and an item already recorded ``ok`` is never written again (a second driver, or a retry that
raced a late answer, gets the first run's id back and writes nothing).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from sqlalchemy import delete, func, select, update

from .errors import InvalidParamsError, NotFoundError, StorageError
from .models import BATCH_STATUSES, Batch, BatchItem
from .types import NewResult

#: A batch whose driver is gone reads as this state (its row still says ``running``).
STOPPED = "stopped"


class BatchNotFoundError(NotFoundError):
    """No batch with that id in the session."""


class BatchBusyError(StorageError):
    """Another live process is driving the batch."""


@dataclass(frozen=True)
class BatchInfo:
    id: int
    name: str
    tool_id: str
    plan: dict[str, Any]
    total: int
    engine: str
    workers: int
    status: str  # as stored: running, cancelling, cancelled, done, stopped
    created_at: float
    updated_at: float
    driver_pid: Optional[int]
    driver_host: Optional[str]
    error: Optional[str]
    ok: int = 0
    failed: int = 0

    @property
    def left(self) -> int:
        return max(0, self.total - self.ok - self.failed)

    @property
    def driver_alive(self) -> bool:
        return driver_alive(self.driver_pid, self.driver_host)

    @property
    def state(self) -> str:
        """The status, with a ``running`` batch whose driver is gone shown as ``stopped``."""
        if self.status in ("running", "cancelling") and not self.driver_alive:
            return STOPPED
        return self.status


@dataclass(frozen=True)
class BatchItemInfo:
    batch_id: int
    key: str
    position: int
    run_id: int
    status: str  # ok or failed
    attempts: int
    error: Optional[str]
    worker: Optional[str]
    finished_at: float
    extra: dict[str, Any] = field(default_factory=dict)


def this_host() -> str:
    return socket.gethostname()


def driver_alive(pid: Optional[int], host: Optional[str]) -> bool:
    """Whether the driver process ``pid`` on ``host`` still runs (a driver on another machine
    is taken as alive: it cannot be checked from here)."""
    if pid is None:
        return False
    if host is not None and host != this_host():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _has_tables(c: Any) -> bool:
    """False in a session of revision 0001/0002 opened read-only (not upgraded): it has no batches."""
    return c.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'batches'").first() is not None


def _info(row: Batch, ok: int = 0, failed: int = 0) -> BatchInfo:
    try:
        plan = json.loads(row.plan_json)
    except ValueError:
        plan = {}
    return BatchInfo(id=row.id, name=row.name, tool_id=row.tool_id, plan=plan, total=row.total,
                     engine=row.engine, workers=row.workers, status=row.status, created_at=row.created_at,
                     updated_at=row.updated_at, driver_pid=row.driver_pid, driver_host=row.driver_host,
                     error=row.error, ok=ok, failed=failed)


def _counts(s: Any, batch_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    rows = s.execute(select(BatchItem.batch_id, BatchItem.status, func.count())
                     .where(BatchItem.batch_id.in_(list(batch_ids)))
                     .group_by(BatchItem.batch_id, BatchItem.status)).all()
    out: dict[int, list[int]] = {}
    for bid, status, n in rows:
        out.setdefault(bid, [0, 0])[0 if status == "ok" else 1] += n
    return {k: (v[0], v[1]) for k, v in out.items()}


def create_batch(store: Any, *, name: str, tool_id: str, plan: dict[str, Any], total: int, engine: str,
                 workers: int) -> int:
    """Record a new batch, driven by this process; returns its id."""
    if not isinstance(total, int) or total < 0:
        raise InvalidParamsError(f"A batch's item count is a whole number >= 0, not {total!r}.")
    now = time.time()
    with store._write("Recording the batch") as s:
        row = Batch(name=name or tool_id, tool_id=tool_id, plan_json=json.dumps(plan), total=total,
                    engine=engine, workers=int(workers), status="running", created_at=now, updated_at=now,
                    driver_pid=os.getpid(), driver_host=this_host())
        s.add(row)
        s.flush()
        return row.id


def claim_batch(store: Any, batch_id: int, *, engine: str, workers: int) -> BatchInfo:
    """Make this process the driver of a batch again (resume). ``BatchBusyError`` when another
    live process drives it; a cancelled batch is resumed too (it is the user's explicit ask)."""
    with store._write("Resuming the batch") as s:
        row = s.get(Batch, batch_id)
        if row is None:
            raise BatchNotFoundError(f"There is no batch {batch_id} in the session {store.folder}.")
        if (row.status in ("running", "cancelling") and row.driver_pid != os.getpid()
                and driver_alive(row.driver_pid, row.driver_host)):
            raise BatchBusyError(f"Batch {batch_id} is being run by process {row.driver_pid} on "
                                 f"{row.driver_host}; cancel it first ('implicit-studio batch cancel {batch_id}') "
                                 "or wait for it to finish.")
        row.status, row.engine, row.workers = "running", engine, int(workers)
        row.driver_pid, row.driver_host, row.updated_at, row.error = os.getpid(), this_host(), time.time(), None
        counts = _counts(s, [batch_id]).get(batch_id, (0, 0))
        return _info(row, *counts)


def set_status(store: Any, batch_id: int, status: str, error: Optional[str] = None) -> None:
    if status not in BATCH_STATUSES:
        raise InvalidParamsError(f"A batch status is one of {', '.join(BATCH_STATUSES)}, not {status!r}.")
    with store._write("Updating the batch") as s:
        values: dict[str, Any] = {"status": status, "updated_at": time.time(), "error": error}
        if status in ("cancelled", "done", "stopped"):
            values["driver_pid"] = None
        s.execute(update(Batch).where(Batch.id == batch_id).values(**values))


def request_cancel(store: Any, batch_id: int) -> str:
    """Ask a batch to stop: a running driver sees ``cancelling`` and stops after its items in
    flight; a batch with no live driver is marked ``cancelled`` at once. Returns the new status."""
    with store._write("Cancelling the batch") as s:
        row = s.get(Batch, batch_id)
        if row is None:
            raise BatchNotFoundError(f"There is no batch {batch_id} in the session {store.folder}.")
        if row.status in ("done", "cancelled"):
            return row.status
        live = row.status in ("running", "cancelling") and driver_alive(row.driver_pid, row.driver_host)
        row.status = "cancelling" if live else "cancelled"
        row.updated_at = time.time()
        if not live:
            row.driver_pid = None
        return row.status


def status_of(store: Any, batch_id: int) -> str:
    with store._read() as c:
        v = None if not _has_tables(c) else c.execute(select(Batch.status).where(Batch.id == batch_id)).scalar_one_or_none()
    if v is None:
        raise BatchNotFoundError(f"There is no batch {batch_id} in the session {store.folder}.")
    return v


def get_batch(store: Any, batch_id: int) -> BatchInfo:
    from sqlalchemy.orm import Session

    with store._read() as c, Session(bind=c) as s:
        row = s.get(Batch, batch_id) if _has_tables(c) else None
        if row is None:
            raise BatchNotFoundError(f"There is no batch {batch_id} in the session {store.folder}.")
        counts = _counts(s, [batch_id]).get(batch_id, (0, 0))
        return _info(row, *counts)


def list_batches(store: Any, limit: int = 50) -> list[BatchInfo]:
    """The most recent batches first (an empty list for a session that has none)."""
    from sqlalchemy.orm import Session

    with store._read() as c, Session(bind=c) as s:
        if not _has_tables(c):
            return []
        rows = s.execute(select(Batch).order_by(Batch.id.desc()).limit(limit)).scalars().all()
        counts = _counts(s, [r.id for r in rows])
        return [_info(r, *counts.get(r.id, (0, 0))) for r in rows]


def batch_items(store: Any, batch_id: int) -> list[BatchItemInfo]:
    """The finished items of a batch, in plan order."""
    with store._read() as c:
        if not _has_tables(c):
            return []
        rows = c.execute(select(BatchItem.batch_id, BatchItem.key, BatchItem.position, BatchItem.run_id,
                                BatchItem.status, BatchItem.attempts, BatchItem.error, BatchItem.worker,
                                BatchItem.finished_at)
                         .where(BatchItem.batch_id == batch_id).order_by(BatchItem.position)).all()
    return [BatchItemInfo(*r) for r in rows]


def batch_of_run(store: Any, run_id: int) -> Optional[tuple[int, str]]:
    """(batch id, item key) of a run recorded as a batch item, else None."""
    with store._read() as c:
        if not _has_tables(c):
            return None
        r = c.execute(select(BatchItem.batch_id, BatchItem.key).where(BatchItem.run_id == run_id)).first()
    return (r[0], r[1]) if r is not None else None


def delete_batch(store: Any, batch_id: int) -> None:
    """Forget a batch and its item rows; its runs stay in the history."""
    with store._write("Deleting the batch") as s:
        s.execute(delete(BatchItem).where(BatchItem.batch_id == batch_id))
        s.execute(delete(Batch).where(Batch.id == batch_id))


def record_item(store: Any, batch_id: int, key: str, position: int, *, status: str, attempts: int,
                run: dict[str, Any], results: Iterable[NewResult] = (), error: Optional[str] = None,
                worker: Optional[str] = None) -> tuple[int, bool]:
    """Record one finished item: its run (``run``: the keyword arguments of
    ``SessionStore.record_run`` other than results/status/error), its results and its item row,
    in one transaction. Returns ``(run id, written)``; ``written`` is False when the item was
    already recorded ``ok`` (nothing is written then). A ``failed`` item recorded again replaces
    its row (its earlier failed run stays in the history)."""
    if status not in ("ok", "failed"):
        raise InvalidParamsError(f"A batch item finishes ok or failed, not {status!r}.")
    specs = list(results)
    for spec in specs:
        store._check_result(spec)
    store._need_writable("recording a batch item")
    with store._lock:
        stored = [store.files.put(spec.data, spec.ext) for spec in specs]
        with store._write("Recording the batch item") as s:
            if s.get(Batch, batch_id) is None:
                raise BatchNotFoundError(f"There is no batch {batch_id} in the session {store.folder}.")
            existing = s.get(BatchItem, (batch_id, key))
            if existing is not None and existing.status == "ok":
                return existing.run_id, False
            store._keep_files([(st, spec.data) for st, spec in zip(stored, specs)])
            started = run.get("started_at")
            finished = run.pop("finished_at", None)
            duration = run.pop("duration_s", None)
            row = store._insert_run(s, tool_id=run["tool_id"], plugin=run["plugin"],
                                    plugin_version=run.get("plugin_version", ""), params=run.get("params"),
                                    seed=run.get("seed"), model_ref=run.get("model_ref"),
                                    model_hash=run.get("model_hash"), device=run.get("device", "cpu"),
                                    backend=run.get("backend"), inputs=run.get("inputs", ()),
                                    parent_run_id=run.get("parent_run_id"), started_at=started,
                                    dtype=run.get("dtype"))
            for pos, (spec, st) in enumerate(zip(specs, stored)):
                s.add(store._result_row(row.id, pos, spec, st))
            end = time.time() if finished is None else float(finished)
            row.status, row.error, row.finished_at = status, error, end
            row.duration_s = max(0.0, end - row.started_at) if duration is None else float(duration)
            s.flush()
            if existing is not None:
                existing.run_id, existing.status, existing.attempts = row.id, status, int(attempts)
                existing.error, existing.worker, existing.finished_at = error, worker, end
            else:
                s.add(BatchItem(batch_id=batch_id, key=key, position=int(position), run_id=row.id, status=status,
                                attempts=int(attempts), error=error, worker=worker, finished_at=end))
            s.execute(update(Batch).where(Batch.id == batch_id).values(updated_at=time.time()))
            s.flush()
            return row.id, True
