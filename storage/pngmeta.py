"""Parameters inside PNG files: write ours, read ours and other tools' (A1111, ComfyUI).

Two text chunks are written into exported PNGs:

* ``implicit_studio`` — our JSON (``{"format": "implicit-studio/1", "tool_id", "params", "seed",
  ...}``), enough to restore the tool and its exact parameters;
* ``parameters`` — the A1111-style text most other tools read::

      a red circle on grass
      Negative prompt: blurry
      Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 1a2b3c4d5e, Model: default

Sampler and schedule names are A1111's (and ComfyUI's in its graphs): :data:`A1111_SAMPLERS`,
:data:`COMFYUI_SAMPLERS` and their schedule tables map every one of them onto the studio's
scheduler and schedule names (``plugins.diffusion_common.schedulers``) and back.

Chunks are inserted into the existing PNG byte stream (no re-encoding, pixels untouched).  Reading
uses Pillow and understands our JSON, A1111 ``parameters`` text and ComfyUI's ``prompt`` graph.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUR_KEY = "implicit_studio"
A1111_KEY = "parameters"
FORMAT = "implicit-studio/1"

# ----------------------------------------------------------------------------- sampler names

#: The studio's scheduler name -> A1111's sampler label (and the schedule type it implies).
A1111_SAMPLERS: dict[str, str] = {
    "ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler", "euler-a": "Euler a", "heun": "Heun", "lms": "LMS",
    "dpm2": "DPM2", "dpmpp-2m": "DPM++ 2M", "dpmpp-2m-karras": "DPM++ 2M",
    "dpmpp-2m-sde": "DPM++ 2M SDE", "dpmpp-3m-sde": "DPM++ 3M SDE", "dpmpp-2s": "DPM++ 2S", "deis": "DEIS",
    "pndm": "PLMS", "lcm": "LCM", "unipc": "UniPC",
}
#: The studio's schedule name -> A1111's "Schedule type" (the model's default writes none).
A1111_SCHEDULES: dict[str, str] = {"karras": "Karras", "exponential": "Exponential", "beta": "Beta",
                                   "trailing": "Simple", "leading": "DDIM"}
#: Every A1111 (and Forge) sampler label, lower case -> (studio scheduler, exact?). Samplers diffusers
#: has no solver for map onto the nearest one the studio has, marked inexact.
A1111_TO_STUDIO: dict[str, tuple[str, bool]] = {
    "ddim": ("ddim", True), "ddpm": ("ddpm", True), "euler": ("euler", True), "euler a": ("euler-a", True),
    "heun": ("heun", True), "lms": ("lms", True), "dpm2": ("dpm2", True), "dpm2 a": ("euler-a", False),
    "dpm++ 2m": ("dpmpp-2m", True), "dpm++ 2m sde": ("dpmpp-2m-sde", True), "dpm++ 3m sde": ("dpmpp-3m-sde", True),
    "dpm++ 2s": ("dpmpp-2s", True), "deis": ("deis", True), "plms": ("pndm", True), "lcm": ("lcm", True),
    "unipc": ("unipc", True),
    "dpm++ 2s a": ("dpmpp-2s", False), "dpm++ sde": ("dpmpp-2m-sde", False), "dpm++ 2m sde heun": ("dpmpp-2m-sde", False),
    "dpm++ 2m sde gpu": ("dpmpp-2m-sde", False), "dpm++ 3m sde gpu": ("dpmpp-3m-sde", False),
    "dpm fast": ("euler", False), "dpm adaptive": ("euler", False), "restart": ("euler", False),
    "ddim cfg++": ("ddim", False), "euler cfg++": ("euler", False), "euler a cfg++": ("euler-a", False),
    "heun++": ("heun", False), "ipndm": ("pndm", False), "ipndm_v": ("pndm", False),
}
#: Every A1111 schedule type, lower case -> (studio schedule, exact?).
A1111_SCHEDULE_TO_STUDIO: dict[str, tuple[str, bool]] = {
    "automatic": ("default", True), "uniform": ("default", True), "normal": ("default", True),
    "karras": ("karras", True), "exponential": ("exponential", True), "beta": ("beta", True),
    "simple": ("trailing", True), "sgm uniform": ("trailing", True), "ddim": ("leading", True),
    "polyexponential": ("exponential", False), "kl optimal": ("default", False),
    "align your steps": ("default", False), "align your steps gits": ("default", False),
    "align your steps 11": ("default", False), "align your steps 32": ("default", False),
    "turbo": ("trailing", False),
}
#: The studio's scheduler -> ComfyUI's sampler_name.
COMFYUI_SAMPLERS: dict[str, str] = {
    "ddim": "ddim", "ddpm": "ddpm", "euler": "euler", "euler-a": "euler_ancestral", "heun": "heun", "lms": "lms",
    "dpm2": "dpm_2", "dpmpp-2m": "dpmpp_2m", "dpmpp-2m-karras": "dpmpp_2m",
    "dpmpp-2m-sde": "dpmpp_2m_sde", "dpmpp-3m-sde": "dpmpp_3m_sde", "dpmpp-2s": "dpmpp_2s_ancestral",
    "deis": "deis", "pndm": "ipndm", "lcm": "lcm", "unipc": "uni_pc",
}
#: The studio's schedule -> ComfyUI's scheduler.
COMFYUI_SCHEDULES: dict[str, str] = {"default": "normal", "karras": "karras", "exponential": "exponential",
                                     "beta": "beta", "trailing": "simple", "leading": "ddim_uniform"}
#: Every ComfyUI sampler_name -> (studio scheduler, exact?).
COMFYUI_TO_STUDIO: dict[str, tuple[str, bool]] = {
    "ddim": ("ddim", True), "ddpm": ("ddpm", True), "euler": ("euler", True), "euler_ancestral": ("euler-a", True),
    "heun": ("heun", True), "lms": ("lms", True), "dpm_2": ("dpm2", True), "dpm_2_ancestral": ("euler-a", False),
    "dpmpp_2m": ("dpmpp-2m", True), "dpmpp_2m_sde": ("dpmpp-2m-sde", True), "dpmpp_2m_sde_gpu": ("dpmpp-2m-sde", True),
    "dpmpp_3m_sde": ("dpmpp-3m-sde", True), "dpmpp_3m_sde_gpu": ("dpmpp-3m-sde", True), "deis": ("deis", True),
    "lcm": ("lcm", True), "uni_pc": ("unipc", True),
    "dpmpp_2s_ancestral": ("dpmpp-2s", False), "dpmpp_2s_ancestral_cfg_pp": ("dpmpp-2s", False),
    "dpmpp_sde": ("dpmpp-2m-sde", False), "dpmpp_sde_gpu": ("dpmpp-2m-sde", False),
    "dpmpp_2m_cfg_pp": ("dpmpp-2m", False), "dpmpp_2m_sde_heun": ("dpmpp-2m-sde", False),
    "dpmpp_2m_sde_heun_gpu": ("dpmpp-2m-sde", False), "dpmpp_3m_sde_cfg_pp": ("dpmpp-3m-sde", False),
    "euler_cfg_pp": ("euler", False), "euler_ancestral_cfg_pp": ("euler-a", False), "heunpp2": ("heun", False),
    "dpm_fast": ("euler", False), "dpm_adaptive": ("euler", False), "ipndm": ("pndm", False),
    "ipndm_v": ("pndm", False), "uni_pc_bh2": ("unipc", False), "res_multistep": ("dpmpp-2m", False),
    "res_multistep_cfg_pp": ("dpmpp-2m", False), "res_multistep_ancestral": ("euler-a", False),
    "res_multistep_ancestral_cfg_pp": ("euler-a", False), "gradient_estimation": ("euler", False),
    "gradient_estimation_cfg_pp": ("euler", False), "er_sde": ("dpmpp-2m-sde", False), "seeds_2": ("dpmpp-2m-sde", False),
    "seeds_3": ("dpmpp-3m-sde", False), "sa_solver": ("dpmpp-2m-sde", False), "sa_solver_pece": ("dpmpp-2m-sde", False),
    "lcm_cfg_pp": ("lcm", False),
}
#: Every ComfyUI scheduler -> (studio schedule, exact?).
COMFYUI_SCHEDULE_TO_STUDIO: dict[str, tuple[str, bool]] = {
    "normal": ("default", True), "karras": ("karras", True), "exponential": ("exponential", True),
    "beta": ("beta", True), "simple": ("trailing", True), "sgm_uniform": ("trailing", True),
    "ddim_uniform": ("leading", True), "linear_quadratic": ("default", False), "kl_optimal": ("default", False),
}
#: diffusers scheduler class -> the studio's scheduler name (what "Model default" is).
CLASS_TO_STUDIO = {
    "DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler-a", "HeunDiscreteScheduler": "heun", "LMSDiscreteScheduler": "lms",
    "KDPM2DiscreteScheduler": "dpm2",
    "DPMSolverMultistepScheduler": "dpmpp-2m", "DPMSolverSinglestepScheduler": "dpmpp-2s",
    "DEISMultistepScheduler": "deis", "PNDMScheduler": "pndm", "LCMScheduler": "lcm",
    "UniPCMultistepScheduler": "unipc",
}


def _studio_names(scheduler: str | None, schedule: str | None, scheduler_class: str | None) -> tuple[str, str]:
    """The studio's (scheduler, schedule) with "default" named after the model's scheduler class
    and the Karras pair spelt out."""
    name = (scheduler or "default").strip().lower()
    if name == "default":
        name = CLASS_TO_STUDIO.get(scheduler_class or "", "")
    sched = (schedule or "default").strip().lower()
    if name == "dpmpp-2m-karras" and sched == "default":
        sched = "karras"
    return name, sched


def sampler_to_a1111(scheduler: str | None, schedule: str | None = None,
                     scheduler_class: str | None = None) -> tuple[str | None, str | None]:
    """(A1111 "Sampler", A1111 "Schedule type" or None) for a studio scheduler and schedule;
    ``"default"`` is named after the model's own scheduler class when it is known."""
    name, sched = _studio_names(scheduler, schedule, scheduler_class)
    return A1111_SAMPLERS.get(name), A1111_SCHEDULES.get(sched)


def sampler_to_comfyui(scheduler: str | None, schedule: str | None = None,
                       scheduler_class: str | None = None) -> tuple[str | None, str]:
    """(ComfyUI sampler_name, ComfyUI scheduler) for a studio scheduler and schedule."""
    name, sched = _studio_names(scheduler, schedule, scheduler_class)
    return COMFYUI_SAMPLERS.get(name), COMFYUI_SCHEDULES.get(sched, "normal")


def _to_studio(who: str, sampler_key: str, sampler_label: str, schedule_key: str, schedule_label: str,
               samplers: dict[str, tuple[str, bool]], schedules: dict[str, tuple[str, bool]]):
    """(studio scheduler or None, studio schedule, notes) from another tool's names (looked up by
    their keys in that tool's tables)."""
    notes: list[str] = []
    name = None
    found = samplers.get(sampler_key)
    if found is None:
        if sampler_label:
            notes.append(f"{who}sampler {sampler_label!r} is not one the studio knows; the scheduler is left as it was")
    else:
        name = found[0]
        if not found[1]:
            notes.append(f"{who}sampler {sampler_label!r} has no diffusers solver: restored as the nearest, "
                         f"{A1111_SAMPLERS.get(name, name)}")
    schedule = "default"
    if schedule_key:
        sfound = schedules.get(schedule_key)
        if sfound is None:
            notes.append(f"{who}schedule {schedule_label!r} is not one the studio knows; the model's default is used")
        else:
            schedule = sfound[0]
            if not sfound[1]:
                notes.append(f"{who}schedule {schedule_label!r} has no diffusers equivalent: restored as "
                             f"{A1111_SCHEDULES.get(schedule, 'the model default')}")
    if name is None:
        return None, schedule, notes
    if name == "dpmpp-2m" and schedule == "karras":
        name, schedule = "dpmpp-2m-karras", "default"  # the studio's own name for the pair
    return name, schedule, notes


def sampler_from_a1111(sampler: str | None, schedule_type: str | None = None) -> tuple[str | None, str, list[str]]:
    """(studio scheduler or None, studio schedule, notes) for an A1111 sampler label and schedule
    type, including old labels that carry the schedule ("DPM++ 2M Karras")."""
    label = (sampler or "").strip()
    key = label.lower()
    sched_key = (schedule_type or "").strip().lower()
    if key not in A1111_TO_STUDIO:
        for suffix in (" karras", " exponential"):
            if key.endswith(suffix) and key[:-len(suffix)] in A1111_TO_STUDIO:
                key, sched_key = key[:-len(suffix)], sched_key or suffix.strip()
                break
    return _to_studio("", key, label, sched_key, schedule_type or sched_key, A1111_TO_STUDIO, A1111_SCHEDULE_TO_STUDIO)


def sampler_from_comfyui(sampler_name: str | None, scheduler: str | None = None) -> tuple[str | None, str, list[str]]:
    """(studio scheduler or None, studio schedule, notes) for ComfyUI's KSampler sampler_name
    and scheduler."""
    name, sched = (sampler_name or "").strip(), (scheduler or "").strip()
    return _to_studio("ComfyUI ", name, name, sched, sched, COMFYUI_TO_STUDIO, COMFYUI_SCHEDULE_TO_STUDIO)


_PROMPT_KEYS = ("prompt",)
_NEGATIVE_KEYS = ("negative_prompt", "negative")
_GUIDANCE_KEYS = ("guidance", "guidance_scale", "cfg_scale", "cfg")
_SIZE_KEYS = ("width", "height")
# A1111 label -> key of the parsed dict
_PARSE_NAMES = {
    "steps": "steps", "sampler": "sampler", "cfg scale": "cfg_scale", "seed": "seed",
    "size": "size", "model hash": "model_hash", "model": "model",
    "denoising strength": "denoising_strength", "schedule type": "schedule_type",
    "clip skip": "clip_skip", "version": "version",
}

# ----------------------------------------------------------------------------- A1111 text


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    s = str(value)
    if any(ch in s for ch in ',:"\n') or s != s.strip():
        return json.dumps(s, ensure_ascii=False)
    return s


def _title(key: str) -> str:
    words = re.split(r"[_\-\s]+", key.strip())
    t = " ".join(w for w in words if w)
    return t[:1].upper() + t[1:]


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _model_hash10(value: Any) -> str | None:
    """A1111's short model hash: the first 10 hex digits of the sha256 (any "sha256:" prefix dropped)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().split(":", 1)[-1]
    return text[:10] if re.fullmatch(r"[0-9a-fA-F]{10,}", text) else None


def format_parameters(
    params: dict[str, Any],
    *,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    model: str | None = None,
    model_hash: str | None = None,
    extra: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> str:
    """A1111-style ``parameters`` text for ``params`` (prompt, negative prompt, settings line),
    in A1111's field names and order: ``Steps, Sampler, Schedule type, CFG scale, Seed, Size,
    Model hash, Model, Denoising strength, Clip skip``.

    ``meta`` is the result's own record (what the tool actually used: the image size, the
    model's scheduler class for "Model default", the model hash); ``width``/``height`` are the
    picture's pixels, used when neither the record nor the parameters give the generated size.
    Denoising strength is written only when an init image was given (A1111 writes it for
    img2img only). A diffusion tool's other parameters are left out (they are in our JSON chunk);
    other tools' scalar parameters follow as ``Title case: value``.
    """
    params = dict(params or {})
    meta = dict(meta or {})
    if seed is None and isinstance(meta.get("seed"), int):
        seed = meta["seed"]
    if seed is None and isinstance(params.get("seed"), int):
        seed = params["seed"]
    prompt = next((params[k] for k in _PROMPT_KEYS if isinstance(params.get(k), str)), "")
    negative = next((params[k] for k in _NEGATIVE_KEYS if isinstance(params.get(k), str)), None)
    diffusion = "steps" in params or "scheduler" in params
    items: list[tuple[str, Any]] = []
    steps = params.get("steps", params.get("num_inference_steps"))
    if isinstance(steps, int) and not isinstance(steps, bool):
        items.append(("Steps", steps))
    sampler_value = params.get("scheduler", params.get("sampler"))
    if isinstance(sampler_value, str):
        sampler, schedule_type = sampler_to_a1111(sampler_value, params.get("schedule"),
                                                  meta.get("scheduler_class"))
        if sampler:
            items.append(("Sampler", sampler))
        if schedule_type:
            items.append(("Schedule type", schedule_type))
    cfg = next((params[k] for k in _GUIDANCE_KEYS if isinstance(params.get(k), (int, float))
                and not isinstance(params.get(k), bool)), None)
    if cfg is not None:
        items.append(("CFG scale", cfg))
    if seed is not None:
        items.append(("Seed", seed))
    w = _positive_int(meta.get("width")) or _positive_int(params.get("width")) or _positive_int(width)
    h = _positive_int(meta.get("height")) or _positive_int(params.get("height")) or _positive_int(height)
    if w and h:
        items.append(("Size", f"{w}x{h}"))
    short = _model_hash10(model_hash) or _model_hash10(meta.get("model_hash"))
    if short:
        items.append(("Model hash", short))
    model = model or meta.get("model") or params.get("model")
    if model:
        items.append(("Model", Path(str(model)).name or str(model)))
    strength = next((params[k] for k in ("strength", "denoising_strength", "denoise") if k in params), None)
    if isinstance(strength, (int, float)) and params.get("init_image") not in (None, ""):
        items.append(("Denoising strength", strength))
    clip_skip = params.get("clip_skip")
    if isinstance(clip_skip, int) and not isinstance(clip_skip, bool) and clip_skip > 0:
        items.append(("Clip skip", clip_skip + 1))  # A1111 counts the last layer as 1
    used = set(_PROMPT_KEYS) | set(_NEGATIVE_KEYS) | set(_GUIDANCE_KEYS) | set(_SIZE_KEYS) | {"seed"}
    if not diffusion:
        for k, v in params.items():
            if k in used or isinstance(v, (dict, list)) or v is None:
                continue
            items.append((_title(k), v))
    for k, v in (extra or {}).items():
        items.append((k, v))
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{label}: {_fmt_value(v)}" for label, v in items))
    return "\n".join(lines)


_SETTING_RE = re.compile(r'\s*([\w][\w \-/.()+]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _convert(value: str) -> Any:
    v = value.strip()
    if v.startswith('"') and v.endswith('"') and len(v) >= 2:
        try:
            return json.loads(v)
        except ValueError:
            return v[1:-1]
    if re.fullmatch(r"[-+]?(0|[1-9]\d*)", v):  # "0123" stays text (hashes, ids)
        return int(v)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", v):
        return float(v)
    if v in ("True", "False"):
        return v == "True"
    return v


def _snake(label: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")


def parse_settings_line(line: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in _SETTING_RE.finditer(line):
        label, raw = m.group(1).strip(), m.group(2)
        if not label:
            continue
        key = _PARSE_NAMES.get(label.lower(), _snake(label))
        value = _convert(raw)
        if (key in ("model", "model_hash", "version", "sampler") or "hash" in key) and not (
                raw.strip().startswith('"')):
            value = raw.strip()
        if key == "size" and isinstance(value, str):
            sm = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
            if sm:
                out["width"], out["height"] = int(sm.group(1)), int(sm.group(2))
                continue
        if key in ("seed", "steps", "clip_skip") and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse A1111-style ``parameters`` text into a dict.

    Returns ``prompt``, ``negative_prompt`` (if any) and the settings with snake_case keys:
    ``steps`` (int), ``sampler``, ``cfg_scale`` (float), ``seed`` (int), ``width``/``height``,
    ``model_hash``, ``model``, ``denoising_strength``, and any other ``Label: value`` pairs.
    """
    if not isinstance(text, str):
        raise ValueError("A1111 parameters must be text.")
    lines = text.strip("\n").split("\n")
    settings: dict[str, Any] = {}
    if lines:
        last = lines[-1].strip()
        if len(_SETTING_RE.findall(last)) >= 3 or re.match(r"^Steps:\s*\d", last):
            settings = parse_settings_line(last)
            lines = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    for line in lines:
        if negative_lines is None and line.startswith("Negative prompt:"):
            negative_lines = [line[len("Negative prompt:"):].lstrip()]
        elif negative_lines is not None:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt_lines).strip()}
    if negative_lines is not None:
        out["negative_prompt"] = "\n".join(negative_lines).strip()
    out.update(settings)
    return out


# ----------------------------------------------------------------------------- ComfyUI


def parse_comfyui_prompt(graph: dict) -> dict[str, Any]:
    """Best-effort settings from a ComfyUI API-format ``prompt`` graph (the KSampler and its inputs)."""
    out: dict[str, Any] = {}
    if not isinstance(graph, dict):
        return out
    samplers = [n for n in graph.values() if isinstance(n, dict)
                and str(n.get("class_type", "")).startswith("KSampler")]
    if not samplers:
        return out
    inputs = samplers[0].get("inputs", {}) or {}

    def follow(link, field_names=("text",)):
        if isinstance(link, list) and link and str(link[0]) in graph:
            node = graph[str(link[0])]
            for f in field_names:
                v = (node.get("inputs") or {}).get(f)
                if isinstance(v, (str, int, float)):
                    return v
        return None

    for src, dst in (("seed", "seed"), ("noise_seed", "seed"), ("steps", "steps"),
                     ("cfg", "cfg_scale"), ("sampler_name", "sampler"),
                     ("scheduler", "schedule_type"), ("denoise", "denoising_strength")):
        if isinstance(inputs.get(src), (int, float, str)):
            out[dst] = inputs[src]
    if isinstance(out.get("denoising_strength"), (int, float)) and out["denoising_strength"] >= 1.0:
        del out["denoising_strength"]  # ComfyUI writes denoise 1.0 on plain text-to-image
    pos = follow(inputs.get("positive"))
    neg = follow(inputs.get("negative"))
    if isinstance(pos, str):
        out["prompt"] = pos
    if isinstance(neg, str):
        out["negative_prompt"] = neg
    w = follow(inputs.get("latent_image"), ("width",))
    h = follow(inputs.get("latent_image"), ("height",))
    if isinstance(w, int) and isinstance(h, int):
        out["width"], out["height"] = w, h
    for node in graph.values():
        if isinstance(node, dict) and "Checkpoint" in str(node.get("class_type", "")):
            name = (node.get("inputs") or {}).get("ckpt_name")
            if isinstance(name, str):
                out["model"] = name
    return out


# ----------------------------------------------------------------------------- PNG chunks


def _check_png(data: bytes) -> None:
    if not isinstance(data, (bytes, bytearray)) or not bytes(data[:8]) == PNG_SIGNATURE:
        raise ValueError("These bytes are not a PNG image (the PNG signature is missing).")


def _iter_chunks(data: bytes):
    _check_png(data)
    pos = 8
    n = len(data)
    while pos < n:
        if pos + 8 > n:
            raise ValueError("The PNG is truncated (incomplete chunk header).")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > n:
            raise ValueError("The PNG is truncated (a chunk runs past the end of the file).")
        yield ctype, data[pos + 8:pos + 8 + length], data[pos:end]
        pos = end
        if ctype == b"IEND":
            return
    raise ValueError("The PNG has no IEND chunk (it is truncated).")


def _text_keyword(ctype: bytes, body: bytes) -> str | None:
    if ctype in (b"tEXt", b"zTXt", b"iTXt"):
        return body.split(b"\0", 1)[0].decode("latin-1")
    return None


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(
        ">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    kw = key.encode("latin-1")
    if not 1 <= len(kw) <= 79 or b"\0" in kw:
        raise ValueError(f"PNG text keyword {key!r} must be 1-79 Latin-1 characters.")
    try:
        return _chunk(b"tEXt", kw + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # lone surrogates (from non-UTF-8 file names or text) are written as \\udcff escapes
        return _chunk(b"iTXt", kw + b"\0\0\0\0\0" + value.encode("utf-8", "backslashreplace"))


def add_png_text(png: bytes, texts: dict[str, str]) -> bytes:
    """Return ``png`` with text chunks ``texts`` (replacing chunks with the same keywords).

    The chunks go right after IHDR so that readers that stop at the image data see them.
    """
    out = [PNG_SIGNATURE]
    inserted = False
    for ctype, body, raw in _iter_chunks(bytes(png)):
        kw = _text_keyword(ctype, body)
        if kw is not None and kw in texts:
            continue
        out.append(raw)
        if ctype == b"IHDR" and not inserted:
            out.extend(_text_chunk(k, v) for k, v in texts.items())
            inserted = True
    if not inserted:
        raise ValueError("The PNG has no IHDR chunk.")
    return b"".join(out)


def our_json(*, tool_id: str, params: dict, seed: int | None = None, plugin: str | None = None,
             plugin_version: str | None = None, model_ref: str | None = None,
             model_hash: str | None = None, device: str | None = None,
             backend: str | None = None, **extra: Any) -> dict[str, Any]:
    d = {"format": FORMAT, "tool_id": tool_id, "plugin": plugin, "plugin_version": plugin_version,
         "params": params, "seed": seed, "model_ref": model_ref, "model_hash": model_hash,
         "device": device, "backend": backend}
    d.update(extra)
    return d


def write_png_metadata(png: bytes, *, implicit: dict | None = None,
                       parameters: str | None = None, extra: dict[str, str] | None = None) -> bytes:
    """Add our JSON (key ``implicit_studio``) and/or A1111 ``parameters`` text to PNG bytes."""
    texts: dict[str, str] = {}
    if implicit is not None:
        texts[OUR_KEY] = json.dumps(implicit, ensure_ascii=True, allow_nan=False,
                                    separators=(",", ":"))
    if parameters is not None:
        texts[A1111_KEY] = parameters
    texts.update(extra or {})
    return add_png_text(png, texts)


def png_for_run(png: bytes, run, result=None) -> bytes:
    """PNG bytes of a stored result with the run's parameters in both formats."""
    extra = {}
    if result is not None:
        extra = {"run_id": run.id, "result_id": result.id, "kind": result.kind}
    implicit = our_json(tool_id=run.tool_id, params=run.params, seed=run.seed, plugin=run.plugin,
                        plugin_version=run.plugin_version, model_ref=run.model_ref,
                        model_hash=run.model_hash, device=run.device, backend=run.backend,
                        **({"dtype": run.dtype} if getattr(run, "dtype", None) else {}), **extra)
    width = getattr(result, "width", None)
    height = getattr(result, "height", None)
    text = format_parameters(run.params, seed=run.seed, width=width, height=height,
                             model=run.model_ref, model_hash=run.model_hash,
                             meta=getattr(result, "metadata", None) or {}, extra={"Tool": run.tool_id})
    return write_png_metadata(png, implicit=implicit, parameters=text)


def encode_png(image, *, implicit: dict | None = None, parameters: str | None = None) -> bytes:
    """Encode a PIL image (or HxW[xC] uint8 array) to PNG with the metadata chunks."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return write_png_metadata(buf.getvalue(), implicit=implicit, parameters=parameters)


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PngMetadata:
    text: dict[str, str] = field(default_factory=dict)  # every text chunk, raw
    implicit: dict | None = None  # our JSON
    parameters_text: str | None = None
    parameters: dict | None = None  # parsed A1111 text, or settings parsed from a ComfyUI graph
    comfyui_prompt: dict | None = None
    comfyui_workflow: dict | None = None
    source: str | None = None  # "implicit-studio", "a1111", "comfyui" or None

    def restore(self) -> tuple[str | None, dict[str, Any], int | None]:
        """``(tool_id, params, seed)`` to restore in the window or on the command line.

        Our JSON gives the exact tool and parameters. Otherwise A1111/ComfyUI settings are mapped
        onto the text-to-image tool's parameter names: prompt, negative_prompt, steps, guidance
        (CFG), scheduler and schedule (every A1111 and ComfyUI sampler/schedule name, see
        :func:`sampler_from_a1111`), width, height, clip_skip and, for img2img, strength (tool id
        None: the caller picks text-to-image or an image-to-image tool). :meth:`restore_notes`
        says what could only be restored approximately."""
        tool, params, seed, _ = self._restore()
        return tool, params, seed

    def restore_notes(self) -> list[str]:
        """What :meth:`restore` could not restore exactly (samplers diffusers has no solver for...)."""
        return self._restore()[3]

    def _restore(self) -> tuple[str | None, dict[str, Any], int | None, list[str]]:
        if self.implicit and isinstance(self.implicit.get("params"), dict):
            return (self.implicit.get("tool_id"), dict(self.implicit["params"]), self.implicit.get("seed"), [])
        if not self.parameters:
            return None, {}, None, []
        p = self.parameters
        mapping = {"prompt": "prompt", "negative_prompt": "negative_prompt", "steps": "steps",
                   "cfg_scale": "guidance", "width": "width", "height": "height", "denoising_strength": "strength"}
        params = {dst: p[src] for src, dst in mapping.items() if src in p}
        if isinstance(params.get("guidance"), int):
            params["guidance"] = float(params["guidance"])
        notes: list[str] = []
        if self.source == "comfyui":
            scheduler, schedule, notes = sampler_from_comfyui(p.get("sampler"), p.get("schedule_type"))
        else:
            scheduler, schedule, notes = sampler_from_a1111(p.get("sampler"), p.get("schedule_type"))
        if scheduler is not None:
            params["scheduler"] = scheduler
        if scheduler is not None or p.get("schedule_type"):
            params["schedule"] = schedule
        if isinstance(p.get("clip_skip"), int) and p["clip_skip"] >= 1:
            params["clip_skip"] = p["clip_skip"] - 1  # A1111 counts the last layer as 1
        seed = p.get("seed") if isinstance(p.get("seed"), int) else None
        return None, params, seed, notes


def _json_or_none(text: str | None):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_png_metadata(source: bytes | str | Path) -> PngMetadata:
    """Read the parameter chunks of a PNG (bytes or a path) written by us, A1111 or ComfyUI."""
    from PIL import Image, UnidentifiedImageError

    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    _check_png(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            text = dict(getattr(im, "text", {}) or {})
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"The PNG cannot be read: {exc}.") from exc
    text = {str(k): str(v) for k, v in text.items()}
    implicit = _json_or_none(text.get(OUR_KEY))
    if implicit is not None and not str(implicit.get("format", "")).startswith("implicit-studio/"):
        implicit = None
    ptext = text.get(A1111_KEY)
    parameters = parse_parameters(ptext) if ptext is not None else None
    comfy_prompt = _json_or_none(text.get("prompt"))
    comfy_workflow = _json_or_none(text.get("workflow"))
    source_kind = None
    if implicit is not None:
        source_kind = "implicit-studio"
    elif parameters is not None:
        source_kind = "a1111"
    elif comfy_prompt is not None or comfy_workflow is not None:
        source_kind = "comfyui"
        if comfy_prompt is not None:
            parameters = parse_comfyui_prompt(comfy_prompt) or None
    return PngMetadata(text=text, implicit=implicit, parameters_text=ptext, parameters=parameters,
                       comfyui_prompt=comfy_prompt, comfyui_workflow=comfy_workflow,
                       source=source_kind)
