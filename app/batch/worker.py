"""What a batch worker runs (no Qt, no session): the tool's own run path, items in, bytes out.

An :class:`ItemRunner` is made once per worker (a local process or a Ray actor): it loads the
plugins and keeps one :class:`app.controller.RunController` (the one path every run request takes)
on a job runner with no session, so a tool's in-process model cache (the text-to-image pipeline,
ONNX sessions...) is filled by the first item and reused by every later one. A tool that runs
other tools (``ctx.run_tool``) runs them here too; only the item's own run is recorded.
:meth:`ItemRunner.run` takes an item (a plain dict) and returns a payload (a
plain dict of JSON-safe values and ``bytes``): the run's record and its results encoded as the
session stores them. The worker never opens the session; the driver records the payload.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from typing import Any, Optional

from app import api


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ItemRunner:
    """Runs the items of one tool in this process."""

    def __init__(self, tool_id: str, device: Optional[str] = None):
        from app.controller import RunController
        from app.jobs import JobRunner
        from app.plugins import get_manager
        from app.settings import Settings

        settings = Settings()
        self.manager = get_manager(settings)
        try:
            self.tool = self.manager.tool(tool_id)
        except LookupError as exc:
            raise api.ToolError(f"on worker {worker_name()}: {exc}") from None
        self.runner = JobRunner(self.manager, None, settings=settings, device=device)
        self.controller = RunController(self.manager, None, settings=settings, runner=self.runner)
        self.device = device
        self.name = worker_name()
        self.items_run = 0

    def describe(self) -> dict[str, Any]:
        return {"worker": self.name, "tool": self.tool.id, "pid": os.getpid()}

    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        """Run one item: ``{"key", "position", "params", "attempt"}`` -> payload (see module)."""
        from app import results_io

        t0 = time.time()
        base = {"key": item["key"], "position": item["position"], "attempt": item.get("attempt", 1),
                "worker": self.name, "tool_id": self.tool.id, "plugin": self.tool.plugin or "unregistered",
                "plugin_version": self._plugin_version(), "backend": ",".join(self.tool.backends),
                "started_at": t0}
        try:
            request = self.controller.request(self.tool, item["params"], device=self.device)
            job = self.controller.run(request)
        except ValueError as exc:  # ParamError, DeviceError: a value refused (the plan was checked before)
            return {**base, "status": "failed", "error": str(exc), "params": _json_params(item["params"]),
                    "seed": None, "device": self.device or "cpu", "finished_at": time.time(), "results": []}
        self.items_run += 1
        from app.jobs import JobState

        model_ref = next((job.recorded_params.get(p.name) for p in self.tool.params
                          if isinstance(p, api.ModelParam)), None)
        payload = {**base, "params": job.recorded_params or _json_params(item["params"]), "seed": job.seed,
                   "device": job.device or "cpu", "dtype": job.dtype, "model_ref": job.run_info.get("model", model_ref),
                   "model_hash": job.run_info.get("model_hash"),
                   "started_at": job.started_at or t0, "finished_at": job.finished_at or time.time(),
                   "metrics": {k: v[-1][1] for k, v in job.metrics.items() if v}, "results": []}
        if job.state is JobState.FINISHED:
            try:
                for res in job.results:
                    enc = results_io.encode(res, job.run_info)
                    payload["results"].append({"kind": enc.kind, "data": enc.data, "ext": enc.ext,
                                               "width": enc.width, "height": enc.height,
                                               "shape": list(enc.shape) if enc.shape is not None else None,
                                               "metadata": enc.metadata})
            except Exception as exc:  # noqa: BLE001 - an unencodable result fails the item, not the worker
                return {**payload, "status": "failed", "results": [],
                        "error": f"could not encode the results: {type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()}
            return {**payload, "status": "ok", "error": None}
        status = "cancelled" if job.state is JobState.CANCELLED else "failed"
        return {**payload, "status": "failed", "error": job.error or status, "traceback": job.traceback}

    def _plugin_version(self) -> str:
        rec = getattr(self.manager, "records", {}).get(self.tool.plugin)
        return (getattr(rec, "version", None) or "") if rec is not None else ""


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in params.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = repr(v)
    return out
