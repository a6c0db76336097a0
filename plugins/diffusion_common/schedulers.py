"""The scheduler table shared by the diffusion tools (names shown in forms and on the CLI).

A run's sampling is a *scheduler* (the solver: DDIM, Euler, DPM++ 2M...) and a *schedule* (how
its noise levels are spaced: the model's default, Karras, exponential, beta, or uniform
timesteps counted from the end ("trailing", which A1111 calls SGM Uniform and ComfyUI simple) or
from the start ("leading", ComfyUI's ddim_uniform)). How A1111's and ComfyUI's names map onto
these is in ``storage.pngmeta`` (a test keeps the two tables in step). diffusers' DPM2 ancestral is
left out: it gives NaN on schedules that end at pure noise, such as the bundled model's.
"""

from __future__ import annotations

import copy
import inspect
import json
from typing import Any, Mapping

#: name -> (label, diffusers class name, extra config)
SCHEDULERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "default": ("Model default", "", {}),
    "ddim": ("DDIM", "DDIMScheduler", {}),
    "ddpm": ("DDPM", "DDPMScheduler", {}),
    "euler": ("Euler", "EulerDiscreteScheduler", {}),
    "euler-a": ("Euler ancestral", "EulerAncestralDiscreteScheduler", {}),
    "heun": ("Heun", "HeunDiscreteScheduler", {}),
    "lms": ("LMS", "LMSDiscreteScheduler", {}),
    "dpm2": ("DPM2", "KDPM2DiscreteScheduler", {}),
    "dpmpp-2m": ("DPM++ 2M", "DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp-2m-karras": ("DPM++ 2M Karras", "DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "dpmpp-2m-sde": ("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                     {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp-3m-sde": ("DPM++ 3M SDE", "DPMSolverMultistepScheduler",
                     {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "use_karras_sigmas": False}),
    "dpmpp-2s": ("DPM++ 2S", "DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "deis": ("DEIS", "DEISMultistepScheduler", {}),
    "pndm": ("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    "lcm": ("LCM", "LCMScheduler", {}),
    "unipc": ("UniPC", "UniPCMultistepScheduler", {}),
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)
SCHEDULER_LABELS: tuple[str, ...] = tuple(v[0] for v in SCHEDULERS.values())

#: schedule name -> (label, scheduler config it sets)
SCHEDULES: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("Model default", {}),
    "karras": ("Karras", {"use_karras_sigmas": True}),
    "exponential": ("Exponential", {"use_exponential_sigmas": True}),
    "beta": ("Beta", {"use_beta_sigmas": True}),
    "trailing": ("Uniform from the end (SGM uniform, simple)", {"timestep_spacing": "trailing"}),
    "leading": ("Uniform from the start (DDIM uniform)", {"timestep_spacing": "leading"}),
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(SCHEDULES)
SCHEDULE_LABELS: tuple[str, ...] = tuple(v[0] for v in SCHEDULES.values())

#: Schedulers of flow-matching models (SD3, FLUX): only their own one applies.
FLOW_SCHEDULERS = ("default", "euler")

# Config keys a scheduler class would not understand or that belong to another family.
_DROP = {"_class_name", "_diffusers_version"}
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def _accepts(cls, key: str) -> bool:
    return key in inspect.signature(cls.__init__).parameters


def make_scheduler(name: str, base_config: Mapping[str, Any], flow_matching: bool = False,
                   overrides: Mapping[str, Any] | None = None, schedule: str = "default"):
    """A fresh scheduler object ``name`` configured from a model's scheduler config (its betas,
    prediction type...), with the noise ``schedule`` (a key of :data:`SCHEDULES`). Raises
    ``ParamError`` for an unknown name or one the model or scheduler can't use."""
    from app.api import ParamError

    key = (name or "default").strip().lower()
    if key not in SCHEDULERS:
        raise ParamError(f"Scheduler: unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}",
                         "scheduler")
    skey = (schedule or "default").strip().lower()
    if skey not in SCHEDULES:
        raise ParamError(f"Schedule: unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULE_NAMES)}",
                         "schedule")
    import diffusers

    config = {k: v for k, v in dict(base_config).items() if k not in _DROP}
    config.update(overrides or {})
    # Building a scheduler from its config inspects signatures (a fifth of a one-step draw's time):
    # build each once and hand out copies (schedulers carry per-run state such as their timesteps).
    cache_key = (key, skey, flow_matching, base_config.get("_class_name"),
                 json.dumps(config, sort_keys=True, default=str))
    proto = _made.get(cache_key)
    if proto is None:
        proto = _make(key, skey, base_config, config, flow_matching, diffusers)
        if len(_made) >= 32:
            _made.clear()
        _made[cache_key] = proto
    return copy.deepcopy(proto)


_made: dict = {}


def _make(key: str, skey: str, base_config: Mapping[str, Any], config: dict, flow_matching: bool, diffusers):
    from app.api import ParamError

    if flow_matching:
        if key not in FLOW_SCHEDULERS:
            raise ParamError(f"Scheduler: this model uses flow matching; scheduler {key!r} does not apply "
                             f"(use {' or '.join(FLOW_SCHEDULERS)})", "scheduler")
        if skey != "default":
            raise ParamError("Schedule: this model uses flow matching; only its default schedule applies", "schedule")
        cls_name = base_config.get("_class_name") or "FlowMatchEulerDiscreteScheduler"
        return getattr(diffusers, cls_name).from_config(config)
    if key == "default":
        cls_name, extra = base_config.get("_class_name") or "DDIMScheduler", {}
    else:
        _, cls_name, extra = SCHEDULERS[key]
    cls = getattr(diffusers, cls_name)
    extra = dict(extra)
    wanted = SCHEDULES[skey][1]
    if wanted:
        for flag in _SIGMA_FLAGS:  # one sigma spacing at a time
            if flag in wanted or flag in extra:
                config.pop(flag, None)
        if any(k in _SIGMA_FLAGS for k in wanted):
            extra = {k: v for k, v in extra.items() if k not in _SIGMA_FLAGS}
        for k, v in wanted.items():
            if not _accepts(cls, k):
                raise ParamError(f"Schedule: the {SCHEDULES[skey][0]} schedule does not apply to the "
                                 f"{scheduler_label(key) if key != 'default' else cls_name} scheduler", "schedule")
            extra[k] = v
    return cls.from_config(config, **extra)


def scheduler_label(name: str) -> str:
    return SCHEDULERS.get(name, (name,))[0]
