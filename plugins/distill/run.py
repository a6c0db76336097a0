"""The run function of the ``distill`` tool: adapts :func:`compute.run` to the studio's RunContext
(progress with the measured cost and ETA, the losses as live curves, the student's preview grid, cancel
that keeps the checkpoint, the chosen device) and returns typed results.

Results: the student's pictures of the preview prompts (metadata: the student folder, the iteration,
the time), and the losses per iteration as a table.
"""

from __future__ import annotations

import math

from app.api import Cancelled, ImageResult, TableResult

from .plugin import tool_params


#: Tool parameters whose DistillConfig field has another name (``precision`` would shadow the
#: run's own ``--precision`` option on the command line).
_FIELDS = {"train_precision": "precision"}


def _defaults() -> dict:
    return {_FIELDS.get(p.name, p.name): p.default for p in tool_params()}


def run_distill(ctx, *, teacher: str = "default", method: str = "sid", run_dir: str | None = None,
                prompts: str | None = None, preview_prompts: str = "", export: bool = True, **settings):
    """Distil ``teacher`` into a one-step student in ``run_dir`` (resuming what is there)."""
    from app.api import ParamError

    from . import compute

    if not run_dir:
        raise ParamError("Run dir: a folder for the run is needed (checkpoints and the student go there)", "run_dir")
    settings = {_FIELDS.get(k, k): v for k, v in settings.items()}
    values = {k: settings.get(k, v) for k, v in _defaults().items()
              if k in {f for f in compute.DistillConfig.__dataclass_fields__}}
    values["fake_updates"] = int(values.get("fake_updates") or 0) or None  # 0: the method's own
    cfg = compute.config_from({**values, "method": method})
    train_prompts = compute.read_prompts(prompts)
    grid_prompts = [ln.strip() for ln in (preview_prompts or "").splitlines() if ln.strip()] or None
    report = compute.run(
        str(ctx.resolve_model(teacher)), run_dir, cfg, train_prompts, device=ctx.device, preview_prompts=grid_prompts,
        on_progress=ctx.progress, on_preview=ctx.preview, on_metric=ctx.log_metric,
        is_cancelled=lambda: ctx.cancelled, log=ctx.logger.info, export=export)
    if report.cancelled:
        raise Cancelled(f"distillation cancelled at iteration {report.step}; the checkpoint in {report.out} "
                        "keeps it: run again on the same folder to resume")
    meta = {"role": "student-preview", "run_dir": str(report.out), "student": str(report.student or ""),
            "iteration": report.step, "iterations": report.total, "method": cfg.method,
            "seconds": round(report.seconds, 1), "cpu_seconds": round(report.cpu_seconds, 1),
            "seconds_per_iteration": report.seconds_per_iteration if math.isfinite(report.seconds_per_iteration)
            else None, "resumed_from": report.resumed_from}
    results = []
    if report.preview is not None:
        results.append(ImageResult(image=report.preview, label=f"student after {report.step} iterations",
                                   metadata=meta))
    g, f = report.losses.get("generator", []), report.losses.get("fake", [])
    results.append(TableResult(columns=("iteration", "generator_loss", "fake_score_loss"),
                               rows=[(i + 1, float(a), float(b)) for i, (a, b) in enumerate(zip(g, f))],
                               label="distillation losses", metadata=meta))
    return results
