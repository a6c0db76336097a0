"""The Ray engine: one Ray actor per worker, each holding the loaded tool (an
:class:`app.batch.worker.ItemRunner`), on a cluster (``ray.init(address=...)``) or on a local Ray
started for the batch when no address is given.

Actors run the installed package's code, so every node needs Implicit Studio installed in the
Python that ``ray start`` runs (the same version as the driver). Payloads come back as Ray
objects (plain dicts with bytes); the driver records them. An actor that dies, or whose node is
lost, surfaces as a ``lost`` event; the driver sends its item again and asks for a new actor,
which Ray places on a node that is still there.

Each actor asks Ray for ``--ray-cpus`` CPUs (default 1; Ray gives torch that many threads in it)
and one GPU when the device is CUDA, so ``--workers N`` spreads over the cluster's nodes as their
resources allow.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from app.batch.events import EngineEvent, EngineUnavailable


class _Actor:
    """The actor class (wrapped with ``ray.remote`` at start)."""

    def __init__(self, tool_id: str, device: Optional[str]):
        self.error: Optional[str] = None
        self.runner = None
        try:
            from app.batch.worker import ItemRunner

            self.runner = ItemRunner(tool_id, device)
        except BaseException as exc:  # noqa: BLE001 - reported by describe(), the driver decides
            self.error = f"{type(exc).__name__}: {exc}"

    def describe(self) -> dict[str, Any]:
        import ray

        if self.runner is None:
            return {"error": self.error}
        return {**self.runner.describe(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.runner.run(item)
        except BaseException as exc:  # noqa: BLE001 - the item fails, the actor goes on
            import traceback

            return {"key": item.get("key"), "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(), "results": []}


class RayEngine:
    name = "ray"

    def __init__(self, tool_id: str, workers: int = 1, device: Optional[str] = None, address: Optional[str] = None,
                 cpus_per_worker: float = 1):
        if workers < 1:
            raise ValueError(f"a batch needs at least one worker, got {workers}")
        if cpus_per_worker <= 0:
            raise ValueError(f"each worker needs some CPU, got {cpus_per_worker}")
        self.tool_id, self.size, self.device, self.address = tool_id, workers, device, address
        self.cpus = cpus_per_worker
        self._actors: dict[str, Any] = {}
        self._ready: set[str] = set()
        self._busy: set[str] = set()
        self._refs: dict[Any, tuple[str, str]] = {}  # object ref -> (slot, "ready" | "done")
        self._serial = 0
        self._own_ray = False
        self._cls: Any = None

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            try:
                # "local": a new Ray for this batch, never a cluster `ray start` left running here
                ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING", configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                raise EngineUnavailable(f"cannot start or reach {where}: {exc}") from None
            self._own_ray = True
        gpus = 1 if (self.device or "").startswith("cuda") else 0
        # Ray also sets the actor's OMP_NUM_THREADS (torch's CPU threads) to its CPUs
        self._cls = ray.remote(num_cpus=self.cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(_Actor)
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> str:
        self._serial += 1
        slot = f"a{self._serial}"
        actor = self._cls.options(name=None).remote(self.tool_id, self.device)
        self._actors[slot] = actor
        self._refs[actor.describe.remote()] = (slot, "ready")
        return slot

    def idle(self) -> list[str]:
        return [s for s in self._actors if s in self._ready and s not in self._busy]

    def alive(self) -> int:
        return len(self._actors)

    def send(self, slot: str, item: dict[str, Any]) -> None:
        self._busy.add(slot)
        self._refs[self._actors[slot].run.remote(item)] = (slot, "done")

    def poll(self, timeout: float) -> list[EngineEvent]:
        import ray
        from ray import exceptions as rex

        if not self._refs:
            time.sleep(min(timeout, 0.1))
            return []
        refs = list(self._refs)
        done, rest = ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=True)
        if done and rest:  # and whatever else is ready now
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)
            done += more
        events: list[EngineEvent] = []
        for ref in done:
            slot, what = self._refs.pop(ref)
            if slot not in self._actors:
                continue  # an actor given up earlier
            try:
                value = ray.get(ref)
            except (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError,
                    rex.OwnerDiedError, rex.ActorUnavailableError) as exc:
                self._drop(slot)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                events.append(EngineEvent("lost", slot, f"actor {slot} lost ({type(exc).__name__}: {first[:200]})"))
                continue
            except rex.RayTaskError as exc:  # not expected: run() catches everything
                if what == "ready":
                    self._drop(slot)
                    events.append(EngineEvent("init-failed", slot, str(exc)[:500]))
                else:
                    self._busy.discard(slot)
                    events.append(EngineEvent("done", slot, {"status": "failed", "error": str(exc)[:2000], "results": []}))
                continue
            if what == "ready":
                if value.get("error"):
                    self._drop(slot)
                    events.append(EngineEvent("init-failed", slot, value["error"]))
                else:
                    self._ready.add(slot)
                    events.append(EngineEvent("ready", slot, value))
            else:
                self._busy.discard(slot)
                events.append(EngineEvent("done", slot, value))
        return events

    def _drop(self, slot: str) -> None:
        import ray

        actor = self._actors.pop(slot, None)
        self._ready.discard(slot)
        self._busy.discard(slot)
        for ref in [r for r, (s, _w) in self._refs.items() if s == slot]:
            del self._refs[ref]
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def replace(self, slot: str) -> Optional[str]:
        return self._spawn()

    def close(self) -> None:
        import ray

        for slot in list(self._actors):
            self._drop(slot)
        self._refs.clear()
        if self._own_ray and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False

