"""The batch driver (no Qt): hands a plan's items to an engine and records every one.

The driver is the only writer of the session: each payload an engine returns is recorded at
once as a normal run linked to the batch (:func:`storage.batches.record_item`, one transaction
per item), so a driver killed at any moment loses at most the items in flight. Running a batch
again (:meth:`BatchDriver.run` with ``resume``) skips the items already recorded. An item whose
worker died (a crash, a killed process, a lost Ray node) is sent again, at most
``max_attempts`` times in all, then recorded as failed; an item whose tool failed is recorded with
its error at once and the batch goes on. ``implicit-studio batch cancel`` (another process) marks
the batch ``cancelling``; the driver sees it within a second, sends nothing more, records the
items in flight and stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from app import api
from app.batch.engine import make_engine
from app.batch.plan import BatchItem, BatchPlan, PlanError

log = logging.getLogger("implicit_studio.batch")

MAX_ATTEMPTS = 3
CANCEL_POLL_S = 1.0
#: a batch none of whose workers is ready after this time stops (a Ray cluster without the
#: resources an actor asks for, say, would otherwise wait for ever)
READY_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class BatchEvent:
    """``kind``: started (data: total, todo, skipped), sent (slot, key, attempt), item (data: key, status, run_id, error,
    ok, failed, left, items_per_s, seconds), retry (key, attempt, reason), worker (slot, state,
    reason), finished (the :class:`BatchSummary`)."""

    kind: str
    batch_id: int
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchSummary:
    batch_id: int
    status: str
    total: int
    ok: int
    failed: int
    skipped: int
    seconds: float
    error: Optional[str] = None

    @property
    def left(self) -> int:
        return max(0, self.total - self.ok - self.failed)

    @property
    def items_per_s(self) -> float:
        done_now = self.ok + self.failed - self.skipped
        return done_now / self.seconds if self.seconds > 0 else 0.0


class BatchDriver:
    """Runs batches recorded in ``store`` (an open, writable ``storage.SessionStore``).

    ``tool_lookup(tool_id) -> ToolSpec`` checks plans (a plugin manager's ``tool``).
    """

    def __init__(self, store: Any, tool_lookup: Callable[[str], api.ToolSpec], *, engine: str = "local",
                 workers: int = 1, ray_address: Optional[str] = None, device: Optional[str] = None,
                 max_attempts: int = MAX_ATTEMPTS, niceness: int = 0, ray_cpus: float = 1,
                 listener: Optional[Callable[[BatchEvent], None]] = None):
        self.store = store
        self.tool_lookup = tool_lookup
        self.engine_name, self.workers, self.ray_address = engine, int(workers), ray_address
        self.device, self.max_attempts, self.niceness = device, max(1, int(max_attempts)), niceness
        self.listener = listener
        self.ray_cpus = ray_cpus
        self._cancel = threading.Event()
        self.engine: Any = None  # the running engine (tests reach its workers)

    # -- creating ---------------------------------------------------------------------------------
    def create(self, plan: BatchPlan) -> int:
        """Check ``plan`` against its tool and record a new batch (``PlanError`` when wrong)."""
        from storage import batches

        tool = self._tool(plan.tool)
        items = plan.check(tool)
        return batches.create_batch(self.store, name=plan.title, tool_id=tool.id, plan=plan.to_dict(),
                                    total=len(items), engine=self.engine_name, workers=self.workers)

    def _tool(self, tool_id: str) -> api.ToolSpec:
        try:
            return self.tool_lookup(tool_id)
        except LookupError as exc:
            raise PlanError(str(exc).strip("'\"")) from None

    def cancel(self) -> None:
        """Stop sending items (from another thread: the window's Cancel); items in flight finish."""
        self._cancel.set()

    def _emit(self, kind: str, batch_id: int, **data: Any) -> None:
        if self.listener is None:
            return
        try:
            self.listener(BatchEvent(kind, batch_id, data))
        except Exception:  # noqa: BLE001 - a broken listener must not stop the batch
            log.exception("batch listener failed on %s", kind)

    # -- running ----------------------------------------------------------------------------------
    def run(self, batch_id: int, retry_failed: bool = False) -> BatchSummary:
        """Run (or resume) a batch until every item is recorded, it is cancelled, or no worker is
        left. Items already recorded ok are skipped; failed ones too unless ``retry_failed``."""
        from storage import batches

        info = batches.claim_batch(self.store, batch_id, engine=self.engine_name, workers=self.workers)
        plan = BatchPlan.from_dict(info.plan)
        tool = self._tool(plan.tool)
        items = plan.items()
        recorded = {it.key: it.status for it in batches.batch_items(self.store, batch_id)}
        skip = {k for k, st in recorded.items() if st == "ok" or not retry_failed}
        todo = [it for it in items if it.key not in skip]
        ok = sum(1 for st in recorded.values() if st == "ok")
        failed = sum(1 for k, st in recorded.items() if st == "failed" and k in skip)
        skipped = ok + failed
        t0 = time.monotonic()
        self._emit("started", batch_id, total=len(items), todo=len(todo), skipped=skipped)
        status, error = "done", None
        if todo:
            try:
                ok, failed, status, error = self._drive(batch_id, plan, tool, todo, ok, failed, len(items))
            except BaseException as exc:
                batches.set_status(self.store, batch_id, "stopped",
                                   "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
                raise
        batches.set_status(self.store, batch_id, status, error)
        summary = BatchSummary(batch_id, status, len(items), ok, failed, skipped, time.monotonic() - t0, error)
        self._emit("finished", batch_id, summary=summary)
        return summary

    def _drive(self, batch_id: int, plan: BatchPlan, tool: api.ToolSpec, todo: list[BatchItem], ok: int,
               failed: int, total: int) -> tuple[int, int, str, Optional[str]]:
        from storage import batches

        pending: deque[tuple[BatchItem, int]] = deque((it, 0) for it in todo)
        inflight: dict[str, tuple[BatchItem, int]] = {}
        engine = make_engine(self.engine_name, tool.id, min(self.workers, len(todo)),
                             device=self.device or plan.device, ray_address=self.ray_address,
                             niceness=self.niceness, ray_cpus=self.ray_cpus)
        self.engine = engine
        t_start = time.monotonic()
        done_now = 0
        restarts_left = max(2, 2 * self.workers) * self.max_attempts
        init_failures: list[str] = []
        last_poll = 0.0
        cancelled = False
        any_ready = False
        try:
            engine.start()
            while pending or inflight:
                now = time.monotonic()
                if not cancelled and now - last_poll >= CANCEL_POLL_S:
                    last_poll = now
                    cancelled = self._cancel.is_set() or batches.status_of(self.store, batch_id) == "cancelling"
                elif self._cancel.is_set():
                    cancelled = True
                if cancelled and not inflight:
                    break
                if not cancelled:
                    for slot in engine.idle():
                        if slot in inflight or not pending:
                            continue
                        item, attempts = pending.popleft()
                        try:
                            engine.send(slot, self._ship(tool, item, attempts + 1))
                        except Exception as exc:  # noqa: BLE001 - the slot is gone: its loss is reported by poll
                            log.info("could not send %s to %s: %s", item.key, slot, exc)
                            pending.appendleft((item, attempts))
                            continue
                        inflight[slot] = (item, attempts + 1)
                        self._emit("sent", batch_id, slot=slot, key=item.key, attempt=attempts + 1)
                for ev in engine.poll(0.25):
                    if ev.kind == "ready":
                        any_ready = True
                        self._emit("worker", batch_id, slot=ev.slot, state="ready", info=ev.data)
                    elif ev.kind == "done":
                        held = inflight.pop(ev.slot, None)
                        if held is None:
                            continue
                        item, attempts = held
                        run_id, status, err = self._record(batch_id, tool, item, attempts, ev.data)
                        done_now += 1
                        if status == "ok":
                            ok += 1
                        else:
                            failed += 1
                        elapsed = time.monotonic() - t_start
                        self._emit("item", batch_id, key=item.key, coords=item.coords, status=status, run_id=run_id,
                                   error=err, ok=ok, failed=failed, left=total - ok - failed,
                                   items_per_s=done_now / elapsed if elapsed > 0 else 0.0,
                                   seconds=float(ev.data.get("finished_at", 0) - ev.data.get("started_at", 0)))
                    elif ev.kind in ("lost", "init-failed"):
                        held = inflight.pop(ev.slot, None)
                        reason = str(ev.data)
                        self._emit("worker", batch_id, slot=ev.slot, state=ev.kind, reason=reason)
                        if ev.kind == "init-failed":
                            init_failures.append(reason)
                        if held is not None:
                            item, attempts = held
                            if attempts >= self.max_attempts:
                                run_id = self._record_lost(batch_id, tool, item, attempts, reason)
                                failed += 1
                                self._emit("item", batch_id, key=item.key, coords=item.coords, status="failed",
                                           run_id=run_id, error=reason, ok=ok, failed=failed,
                                           left=total - ok - failed, items_per_s=0.0, seconds=0.0)
                            else:
                                pending.appendleft((item, attempts))
                                self._emit("retry", batch_id, key=item.key, attempt=attempts + 1, reason=reason)
                        if ev.kind == "init-failed" and not engine.idle() and engine.alive() == 0 \
                                and len(init_failures) >= self.workers:
                            return ok, failed, "stopped", f"no worker could load the tool: {init_failures[0]}"
                        if ev.kind == "lost" and restarts_left > 0 and (pending or inflight):
                            restarts_left -= 1
                            engine.replace(ev.slot)
                if not any_ready and time.monotonic() - t_start > READY_TIMEOUT_S:
                    return ok, failed, "stopped", (f"no worker was ready after {READY_TIMEOUT_S:.0f} s (on Ray: does the "
                                                   "cluster have a free CPU, and a GPU for a cuda device?)")
                if engine.alive() == 0 and (pending or inflight):
                    why = init_failures[0] if init_failures else "every worker was lost"
                    return ok, failed, "stopped", f"no worker left: {why}"
        finally:
            engine.close()
            self.engine = None
        return ok, failed, ("cancelled" if cancelled and pending else "done"), None

    # -- items ------------------------------------------------------------------------------------
    def _ship(self, tool: api.ToolSpec, item: BatchItem, attempt: int) -> dict[str, Any]:
        """The item as a worker gets it: ``result:<id>`` inputs become the stored files' paths
        (a worker never opens the session)."""
        params = dict(item.params)
        for p in tool.params:
            v = params.get(p.name)
            if isinstance(p, api.ImageParam) and isinstance(v, str) and v.startswith(api.RESULT_REF_PREFIX):
                params[p.name] = str(self.store.result_path(int(v[len(api.RESULT_REF_PREFIX):])))
        return {"key": item.key, "position": item.index, "params": params, "attempt": attempt}

    def _inputs(self, tool: api.ToolSpec, item: BatchItem, recorded: dict[str, Any]) -> list[int]:
        inputs = []
        for p in tool.params:
            v = item.params.get(p.name)
            if isinstance(p, api.ImageParam) and isinstance(v, str) and v.startswith(api.RESULT_REF_PREFIX):
                recorded[p.name] = v
                inputs.append(int(v[len(api.RESULT_REF_PREFIX):]))
        return inputs

    def _record(self, batch_id: int, tool: api.ToolSpec, item: BatchItem, attempts: int,
                payload: Mapping[str, Any]) -> tuple[int, str, Optional[str]]:
        from storage import NewResult, batches

        recorded = dict(payload.get("params") or {})
        inputs = self._inputs(tool, item, recorded)
        status = "ok" if payload.get("status") == "ok" else "failed"
        error = None if status == "ok" else str(payload.get("error") or "failed")
        if payload.get("traceback"):
            log.warning("batch %s item %s failed on %s:\n%s", batch_id, item.key, payload.get("worker"),
                        payload["traceback"])
        run = {"tool_id": payload.get("tool_id") or tool.id, "plugin": payload.get("plugin") or tool.plugin or "unregistered",
               "plugin_version": payload.get("plugin_version") or "", "params": recorded, "seed": payload.get("seed"),
               "model_ref": payload.get("model_ref"), "model_hash": payload.get("model_hash"),
               "device": payload.get("device") or "cpu", "dtype": payload.get("dtype"),
               "backend": payload.get("backend"), "inputs": inputs,
               "started_at": payload.get("started_at"), "finished_at": payload.get("finished_at")}
        results = [NewResult(r["kind"], r["data"], r["ext"], r.get("width"), r.get("height"),
                             tuple(r["shape"]) if r.get("shape") is not None else None, r.get("metadata"))
                   for r in payload.get("results") or ()]
        run_id, written = batches.record_item(self.store, batch_id, item.key, item.index, status=status,
                                              attempts=attempts, run=run, results=results, error=error,
                                              worker=payload.get("worker"))
        if not written:
            log.info("batch %s item %s was already recorded (run %s); its second answer is dropped",
                     batch_id, item.key, run_id)
        return run_id, status, error

    def _record_lost(self, batch_id: int, tool: api.ToolSpec, item: BatchItem, attempts: int, reason: str) -> int:
        recorded = {k: v for k, v in item.params.items() if isinstance(v, (str, int, float, bool, list)) or v is None}
        payload = {"status": "failed", "params": recorded, "seed": None, "device": self.device or "cpu",
                   "error": f"its worker was lost {attempts} times (last: {reason})", "results": []}
        run_id, _status, _err = self._record(batch_id, tool, item, attempts, payload)
        return run_id


def estimate_seconds(store: Any, tool_id: str, n_items: int, workers: int, sample: int = 20) -> Optional[float]:
    """Seconds a batch of ``n_items`` of ``tool_id`` should take on ``workers`` workers, from the
    mean duration of the tool's recent finished runs in the session; None without any."""
    try:
        runs = store.list_runs(limit=sample, tool=tool_id)
    except Exception:  # noqa: BLE001 - no estimate then
        return None
    durations = [r.duration_s for r in runs if r.status == "ok" and r.duration_s]
    if not durations:
        return None
    per_item = sum(durations) / len(durations)
    return per_item * n_items / max(1, workers)


# -- the session's batch records, for views (which do not import storage) -----------------------


def list_batches(store: Any, limit: int = 50) -> list[Any]:
    """The session's batches, newest first (``storage.batches.BatchInfo``)."""
    from storage import batches

    return batches.list_batches(store, limit)


def get_batch(store: Any, batch_id: int) -> Any:
    from storage import batches

    return batches.get_batch(store, batch_id)


def request_cancel(store: Any, batch_id: int) -> str:
    """Ask the process driving a batch to stop (through the session); see
    :func:`storage.batches.request_cancel`."""
    from storage import batches

    return batches.request_cancel(store, batch_id)
