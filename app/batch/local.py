"""The local engine: N worker processes on this machine (``multiprocessing``, spawn).

Each worker makes one :class:`app.batch.worker.ItemRunner` (plugins and the model loaded once)
and then runs items one at a time, sent over its own pipe; payloads (bytes) come back over the
same pipe. The driver sees a worker that dies (a crash, a ``kill``) through its process
sentinel and is told which item it held. A worker whose driver is gone (``kill -9`` of the
driver) notices within a second and exits, so nothing is left running.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Optional

from app.batch.events import EngineEvent


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)  # the driver is gone: nothing may be recorded, stop at once


def _worker_main(conn: Any, tool_id: str, device: Optional[str], parent_pid: int, niceness: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the driver decides (it stops sending and
    # closes the workers); an item must not be recorded as failed by a KeyboardInterrupt here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="watch-driver").start()
    if niceness > 0 and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:
            pass
    try:
        from app.batch.worker import ItemRunner

        runner = ItemRunner(tool_id, device)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which decides
        try:
            conn.send(("init-failed", f"{type(exc).__name__}: {exc}"))
        finally:
            return
    conn.send(("ready", runner.describe()))
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        try:
            payload = runner.run(item)
        except BaseException as exc:  # noqa: BLE001 - the item fails, the worker goes on
            import traceback

            payload = {"key": item.get("key"), "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc(), "results": []}
        conn.send(("done", payload))


@dataclass
class _Worker:
    slot: str
    process: Any
    conn: Any
    ready: bool = False
    busy: bool = False
    info: dict = field(default_factory=dict)


class LocalEngine:
    """Worker processes on this machine. See :class:`app.batch.engine.Engine` for the calls."""

    name = "local"

    def __init__(self, tool_id: str, workers: int = 1, device: Optional[str] = None, niceness: int = 0):
        if workers < 1:
            raise ValueError(f"a batch needs at least one worker, got {workers}")
        self.tool_id, self.device, self.niceness = tool_id, device, niceness
        self.size = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}
        self._serial = 0

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> str:
        self._serial += 1
        slot = f"w{self._serial}"
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, name=f"batch-{slot}",
                                 args=(child, self.tool_id, self.device, os.getpid(), self.niceness), daemon=True)
        proc.start()
        child.close()
        self._workers[slot] = _Worker(slot, proc, parent)
        return slot

    def idle(self) -> list[str]:
        return [w.slot for w in self._workers.values() if w.ready and not w.busy]

    def alive(self) -> int:
        return len(self._workers)

    def send(self, slot: str, item: dict[str, Any]) -> None:
        w = self._workers[slot]
        w.busy = True
        w.conn.send(item)

    def poll(self, timeout: float) -> list[EngineEvent]:
        if not self._workers:
            time.sleep(min(timeout, 0.1))
            return []
        by_handle: dict[Any, tuple[str, str]] = {}
        for w in self._workers.values():
            by_handle[w.conn] = (w.slot, "conn")
            by_handle[w.process.sentinel] = (w.slot, "dead")
        events: list[EngineEvent] = []
        dead: set[str] = set()
        for handle in wait(list(by_handle), timeout):
            slot, what = by_handle[handle]
            w = self._workers.get(slot)
            if w is None:
                continue
            if what == "conn":
                try:
                    while w.conn.poll():
                        kind, data = w.conn.recv()
                        if kind == "ready":
                            w.ready, w.info = True, data
                            events.append(EngineEvent("ready", slot, data))
                        elif kind == "init-failed":
                            events.append(EngineEvent("init-failed", slot, data))
                            dead.add(slot)
                        else:
                            w.busy = False
                            events.append(EngineEvent("done", slot, data))
                except (EOFError, OSError):
                    dead.add(slot)
            else:
                dead.add(slot)
        for slot in dead:
            w = self._workers.pop(slot)
            code = w.process.exitcode
            w.process.join(timeout=1.0)
            if not any(e.kind == "init-failed" and e.slot == slot for e in events):
                events.append(EngineEvent("lost", slot, f"worker {slot} (pid {w.process.pid}) stopped"
                                                        f" (exit code {w.process.exitcode if code is None else code})"))
            w.conn.close()
        return events

    def replace(self, slot: str) -> Optional[str]:
        return self._spawn()

    def close(self) -> None:
        for w in list(self._workers.values()):
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5.0
        for w in list(self._workers.values()):
            w.process.join(max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(2.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(1.0)
            w.conn.close()
        self._workers.clear()

    def kill_worker(self, slot: str) -> int:
        """Kill one worker (tests: a worker lost mid-item); returns its pid."""
        w = self._workers[slot]
        w.process.kill()
        return w.process.pid
