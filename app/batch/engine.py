"""What the batch driver asks of an engine (no Qt), and how an engine is chosen.

An engine keeps a set of worker *slots* (a local process, a Ray actor), each holding a loaded
tool and running one item at a time:

- ``start()`` starts its workers; ``idle()`` lists the slots ready for an item;
- ``send(slot, item)`` hands a slot an item (a plain dict);
- ``poll(timeout)`` returns :class:`EngineEvent` s: ``ready`` (a slot can take items),
  ``done`` (``data``: the item's payload), ``lost`` (the slot's worker died or its node went away,
  with the item it held, ``data``: why), ``init-failed`` (a worker could not load the tool);
- ``replace(slot)`` starts a new worker in place of a lost one; ``close()`` stops them all.

The driver (:mod:`app.batch.driver`) keeps which item each slot holds, retries the items of
lost slots (bounded) and records every payload; engines never touch the session.
"""

from __future__ import annotations

from typing import Any, Optional

from app.batch.events import EngineEvent, EngineUnavailable

__all__ = ["ENGINES", "RAY_INSTALL_HINT", "EngineEvent", "EngineUnavailable", "make_engine", "ray_available"]

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = ("the ray engine needs Ray, which is not installed: pip install -e \".[ray]\" "
                    "(or pip install \"implicit-studio[ray]\"); the local engine needs nothing")


def ray_available() -> bool:
    """Whether Ray can be imported here (imported only when the ray engine is asked for)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def make_engine(name: str, tool_id: str, workers: int, *, device: Optional[str] = None,
                ray_address: Optional[str] = None, niceness: int = 0, ray_cpus: float = 1) -> Any:
    """The engine called ``name`` (``EngineUnavailable`` with a sentence when it cannot run)."""
    if name == "local":
        from app.batch.local import LocalEngine

        return LocalEngine(tool_id, workers, device=device, niceness=niceness)
    if name == "ray":
        if not ray_available():
            raise EngineUnavailable(RAY_INSTALL_HINT)
        from app.batch.ray_engine import RayEngine

        return RayEngine(tool_id, workers, device=device, address=ray_address, cpus_per_worker=ray_cpus)
    raise EngineUnavailable(f"unknown engine {name!r}; use {' or '.join(ENGINES)}")
