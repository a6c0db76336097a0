"""The scheduler table shared by the diffusion tools (names shown in forms and on the CLI)."""

from __future__ import annotations

import copy
import json
from typing import Any, Mapping

#: name -> (label, diffusers class name, extra config)
SCHEDULERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "default": ("Model default", "", {}),
    "ddim": ("DDIM", "DDIMScheduler", {}),
    "ddpm": ("DDPM", "DDPMScheduler", {}),
    "euler": ("Euler", "EulerDiscreteScheduler", {}),
    "euler-a": ("Euler ancestral", "EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m": ("DPM++ 2M", "DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp-2m-karras": ("DPM++ 2M Karras", "DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "lcm": ("LCM", "LCMScheduler", {}),
    "unipc": ("UniPC", "UniPCMultistepScheduler", {}),
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)
SCHEDULER_LABELS: tuple[str, ...] = tuple(v[0] for v in SCHEDULERS.values())

#: Schedulers of flow-matching models (SD3, FLUX): only their own one applies.
FLOW_SCHEDULERS = ("default", "euler")

# Config keys a scheduler class would not understand or that belong to another family.
_DROP = {"_class_name", "_diffusers_version"}


def make_scheduler(name: str, base_config: Mapping[str, Any], flow_matching: bool = False,
                   overrides: Mapping[str, Any] | None = None):
    """A fresh scheduler object ``name`` configured from a model's scheduler config (its betas,
    prediction type...). Raises ``ParamError`` for an unknown name or one the model can't use."""
    from .errors import ParamError

    key = (name or "default").strip().lower()
    if key not in SCHEDULERS:
        raise ParamError(f"Scheduler: unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}",
                         "scheduler")
    import diffusers

    config = {k: v for k, v in dict(base_config).items() if k not in _DROP}
    config.update(overrides or {})
    # Building a scheduler from its config inspects signatures (a fifth of a one-step draw's time):
    # build each once and hand out copies (schedulers carry per-run state such as their timesteps).
    cache_key = (key, flow_matching, base_config.get("_class_name"), json.dumps(config, sort_keys=True, default=str))
    proto = _made.get(cache_key)
    if proto is None:
        proto = _make(key, base_config, config, flow_matching, diffusers)
        if len(_made) >= 32:
            _made.clear()
        _made[cache_key] = proto
    return copy.deepcopy(proto)


_made: dict = {}


def _make(key: str, base_config, config: dict, flow_matching: bool, diffusers):
    from .errors import ParamError

    if flow_matching:
        if key not in FLOW_SCHEDULERS:
            raise ParamError(f"Scheduler: this model uses flow matching; scheduler {key!r} does not apply "
                             f"(use {' or '.join(FLOW_SCHEDULERS)})", "scheduler")
        cls_name = base_config.get("_class_name") or "FlowMatchEulerDiscreteScheduler"
        return getattr(diffusers, cls_name).from_config(config)
    if key == "default":
        cls_name = base_config.get("_class_name") or "DDIMScheduler"
        return getattr(diffusers, cls_name).from_config(config)
    _, cls_name, extra = SCHEDULERS[key]
    return getattr(diffusers, cls_name).from_config(config, **extra)


def scheduler_label(name: str) -> str:
    return SCHEDULERS.get(name, (name,))[0]
