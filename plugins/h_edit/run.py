"""Run function of the ``h-edit`` tool: adapts the RunContext to ``compute.h_edit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from app.api import ImageResult, MaskResult, ParamError, RunContext, ToolError


def source_prompt_from_metadata(meta: dict) -> str:
    """The prompt an image was generated from, if its metadata says."""
    if not isinstance(meta, dict):
        return ""
    for key in ("prompt", "target_prompt"):
        if isinstance(meta.get(key), str) and meta[key].strip():
            return meta[key]
    params = meta.get("params")
    if isinstance(params, dict):
        for key in ("prompt", "target_prompt"):
            if isinstance(params.get(key), str) and params[key].strip():
                return params[key]
    return ""


def _plugin_reward(name: str, ctx: RunContext, prompt: str) -> Callable[[Any], Any]:
    """A reward contributed by a plugin (``studio_rewards``, found through the run context) as a
    score callable; ``ToolError`` naming the built-in and the plugins' rewards if there is none."""
    from .rewards import available_rewards

    if name not in ctx.rewards:
        known = ", ".join([*available_rewards(), *sorted(ctx.rewards)])
        raise ToolError(f"unknown reward {name!r}; rewards: {known}")
    scorer = ctx.load_reward(name)
    return lambda images: scorer(images, prompt)


def run_h_edit(ctx, image, source_prompt="", target_prompt="", reward="", reward_weight=0.1, edit_strength=1.0,
               variant="implicit", inversion="random", region=None, resize_mask=False, steps=25, w_edit=0.0,
               w_src_edit=0.0, w_orig=-1.0, inner_steps=1, lambda_rec=0.1, attention="auto", cross_replace=0.4,
               self_replace=-1.0, skip=-1, edit_stop=-1, feather=2, model="default", seed=0) -> list[Any]:
    from plugins.diffusion_common import onestep
    from plugins.diffusion_common.models import load_sd_model

    from . import compute as C

    meta = getattr(image, "metadata", {}) or {}
    if not (source_prompt or "").strip():
        source_prompt = source_prompt_from_metadata(meta)
    arr = image.image if isinstance(image, ImageResult) else image
    mask = region.mask if isinstance(region, MaskResult) else region
    student = onestep.student_route(model, steps, ctx.resolve_model)
    if student is not None:  # a preview of the edit by a one-step student (live mode draws this way)
        prompt = (target_prompt or "").strip()
        if not prompt:
            raise ParamError("the target prompt is empty: describe what the edited image should show (a one-step "
                             "preview draws the target prompt; rewards need the h-Edit itself)", "target_prompt")
        # a ModelError (an image or mask that does not fit) is a ToolError: its sentence is the message
        picture, used = onestep.redraw_region(student, prompt, seed, arr, mask, device=ctx.device, dtype=ctx.dtype,
                                              resize_mask=resize_mask)
        note = (f"one-step preview by the student {Path(student).name}: the {'region' if mask is not None else 'picture'} "
                f"redrawn from the target prompt (no inversion, reward or attention control; give more than "
                f"{onestep.STUDENT_STEPS} steps for the h-Edit itself)")
        ctx.logger.info(note)
        info = {"source_prompt": source_prompt, "target_prompt": prompt, "prompt": prompt, "variant": "one-step",
                "notes": [note]}
        out_one: list[Any] = [ImageResult(image=picture, metadata=info, label=f"h-Edit (one step): {prompt}")]
        if mask is not None:
            out_one.append(MaskResult(mask=used, metadata={"role": "input region"}, label="edit region"))
        return out_one
    pipe, model_hash = load_sd_model(ctx.resolve_model(model), device=ctx.device, dtype=ctx.dtype)
    settings = C.HEditSettings(
        variant=variant, inversion=inversion, num_steps=steps, w_orig=None if w_orig < 0 else w_orig,
        w_src_edit=w_src_edit or None, w_edit=w_edit or None, edit_strength=edit_strength,
        inner_steps=inner_steps, lambda_rec=lambda_rec, skip=None if skip < 0 else skip,
        edit_stop=None if edit_stop < 0 else edit_stop, attention=attention, cross_replace=cross_replace,
        self_replace=None if self_replace < 0 else self_replace, reward=(reward or "").strip() or None,
        reward_weight=reward_weight, feather=feather, seed=seed, preview_every=max(1, steps // 10))
    reward_fn = None
    if settings.reward:
        from .rewards import available_rewards

        name = settings.reward.split(":", 1)[0].strip().lower()
        if name not in available_rewards():
            reward_fn = _plugin_reward(name, ctx, target_prompt or source_prompt)
    try:
        res = C.h_edit(pipe, arr, source_prompt, target_prompt, settings, region_mask=mask, reward_fn=reward_fn,
                       model_hash=model_hash, resize_mask=resize_mask, progress=ctx.progress, preview=ctx.preview,
                       is_cancelled=lambda: ctx.cancelled)
    except ParamError:
        raise
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    for note in res.notes:
        ctx.logger.info(note)
    s = res.settings
    info = {"source_prompt": source_prompt, "target_prompt": target_prompt or source_prompt,
            "prompt": target_prompt or source_prompt, "variant": s.variant, "inversion": s.inversion,
            "attention": s.attention, "skip": s.skip, "w_edit": s.w_edit, "w_src_edit": s.w_src_edit,
            "w_orig": s.w_orig,
            "notes": res.notes, "stats": {k: v for k, v in res.stats.items() if isinstance(v, (int, float, bool))}}
    out: list[Any] = [ImageResult(image=res.image, metadata=info, label=f"h-Edit: {target_prompt or settings.reward}")]
    if res.mask is not None:
        out.append(MaskResult(mask=res.mask, metadata={"role": "input region"}, label="edit region"))
    return out
