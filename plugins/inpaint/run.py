"""Run function of the ``inpaint`` tool: adapts the RunContext to ``compute.inpaint``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.api import ImageResult, MaskResult, ParamError, ToolError


def run_inpaint(ctx, image, mask, prompt="", negative_prompt="", method="copaint", steps=25, guidance=7.5,
                resize_mask=False, feather=2, lr=0.02, grad_steps=2, reg=1e-4, tt_length=0, tt_interval=0,
                tt_repeats=2, jump_length=0, resamplings=10, mask_history="", model="default", seed=0) -> list[Any]:
    from plugins.diffusion_common import onestep
    from plugins.diffusion_common.models import load_sd_model

    from . import compute as C

    arr = image.image if isinstance(image, ImageResult) else image
    m = mask.mask if isinstance(mask, MaskResult) else mask
    student = onestep.student_route(model, steps, ctx.resolve_model)
    if student is not None:  # a one-step student redraws the region (live mode draws this way)
        # a ModelError (an image or mask that does not fit) is a ToolError: its sentence is the message
        picture, used = onestep.redraw_region(student, prompt, seed, arr, m, device=ctx.device, dtype=ctx.dtype,
                                              resize_mask=resize_mask)
        note = (f"drawn in one step by the student {Path(student).name} (no guidance; method, feather and the "
                f"advanced settings are not used)")
        ctx.logger.info(note)
        meta = {"prompt": prompt, "method": "one-step", "notes": [note]}
        return [ImageResult(image=picture, metadata=meta, label=f"inpaint (one step): {prompt}"),
                MaskResult(mask=used, metadata={"role": "input mask"}, label="inpaint mask")]
    pipe, _hash = load_sd_model(ctx.resolve_model(model), device=ctx.device, dtype=ctx.dtype)
    settings = C.InpaintSettings(
        method=method, num_steps=steps, guidance=guidance, seed=seed, lr=lr, grad_steps=grad_steps, reg=reg,
        tt_length=tt_length or None, tt_interval=tt_interval or None, tt_repeats=tt_repeats,
        jump_length=jump_length or None, resamplings=resamplings, feather=feather,
        preview_every=max(1, steps // 10))
    try:
        res = C.inpaint(pipe, arr, m, prompt, settings, negative_prompt=negative_prompt, resize_mask=resize_mask,
                        progress=ctx.progress, preview=ctx.preview, is_cancelled=lambda: ctx.cancelled)
    except ParamError:
        raise
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    for note in res.notes:
        ctx.logger.info(note)
    meta = {"prompt": prompt, "method": res.settings.method, "notes": res.notes,
            "stats": {k: v for k, v in res.stats.items() if isinstance(v, (int, float, bool, str))}}
    return [ImageResult(image=res.image, metadata=meta, label=f"inpaint ({res.settings.method}): {prompt}"),
            MaskResult(mask=res.mask, metadata={"role": "input mask"}, label="inpaint mask")]
