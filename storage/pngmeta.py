"""Parameters inside PNG files: write ours, read ours and other tools' (A1111, ComfyUI).

Two text chunks are written into exported PNGs:

* ``implicit_studio`` — our JSON (``{"format": "implicit-studio/1", "tool_id", "params", "seed",
  ...}``), enough to restore the tool and its exact parameters;
* ``parameters`` — the A1111-style text most other tools read::

      a red circle on grass
      Negative prompt: blurry
      Steps: 20, Sampler: ddim, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 1a2b3c4d5e, Model: default

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

# our parameter name(s) -> A1111 label, in A1111's usual order
_A1111_FIELDS: list[tuple[tuple[str, ...], str]] = [
    (("steps", "num_inference_steps"), "Steps"),
    (("sampler", "scheduler", "sampler_name"), "Sampler"),
    (("guidance_scale", "cfg_scale", "cfg", "guidance"), "CFG scale"),
    (("seed",), "Seed"),
    (("strength", "denoising_strength", "denoise"), "Denoising strength"),
]
_PROMPT_KEYS = ("prompt",)
_NEGATIVE_KEYS = ("negative_prompt", "negative")
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


def format_parameters(
    params: dict[str, Any],
    *,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    model: str | None = None,
    model_hash: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A1111-style ``parameters`` text for ``params`` (prompt, negative prompt, settings line).

    Known names (prompt, negative_prompt, steps, scheduler/sampler, guidance_scale, seed,
    width/height, strength) map to A1111's labels; other scalar parameters follow as
    ``Title case: value``; nested values are left out (they are in our JSON chunk).
    """
    params = dict(params or {})
    if seed is None and isinstance(params.get("seed"), int):
        seed = params["seed"]
    prompt = next((params[k] for k in _PROMPT_KEYS if isinstance(params.get(k), str)), "")
    negative = next((params[k] for k in _NEGATIVE_KEYS if isinstance(params.get(k), str)), None)
    used = set(_PROMPT_KEYS) | set(_NEGATIVE_KEYS) | {"seed"}
    items: list[tuple[str, Any]] = []
    for keys, label in _A1111_FIELDS:
        if label == "Seed":
            if seed is not None:
                items.append(("Seed", seed))
            continue
        for k in keys:
            if k in params and params[k] is not None and not isinstance(params[k], (dict, list)):
                items.append((label, params[k]))
                used.update(keys)
                break
    w = width if width is not None else params.get("width")
    h = height if height is not None else params.get("height")
    if isinstance(w, int) and isinstance(h, int):
        items.append(("Size", f"{w}x{h}"))
        used.update(_SIZE_KEYS)
    if model_hash:
        items.append(("Model hash", model_hash[:10]))
    if model:
        items.append(("Model", Path(str(model)).name or str(model)))
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
                        **extra)
    width = getattr(result, "width", None)
    height = getattr(result, "height", None)
    text = format_parameters(run.params, seed=run.seed, width=width, height=height,
                             model=run.model_ref, model_hash=run.model_hash,
                             extra={"Tool": run.tool_id})
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
        """``(tool_id, params, seed)`` to restore in the window.

        Our JSON gives the exact tool and parameters. Otherwise A1111/ComfyUI settings are mapped
        onto text-to-image parameter names: prompt, negative_prompt, steps, guidance_scale,
        scheduler, width, height, strength (tool id None: the caller picks text-to-image or, with
        a denoising strength, an image-to-image tool).
        """
        if self.implicit and isinstance(self.implicit.get("params"), dict):
            return (self.implicit.get("tool_id"), dict(self.implicit["params"]),
                    self.implicit.get("seed"))
        if not self.parameters:
            return None, {}, None
        p = self.parameters
        mapping = {"prompt": "prompt", "negative_prompt": "negative_prompt", "steps": "steps",
                   "cfg_scale": "guidance_scale", "sampler": "scheduler", "width": "width",
                   "height": "height", "denoising_strength": "strength"}
        params = {dst: p[src] for src, dst in mapping.items() if src in p}
        seed = p.get("seed") if isinstance(p.get("seed"), int) else None
        return None, params, seed


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
