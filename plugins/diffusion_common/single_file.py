"""Export a diffusers Stable Diffusion 1.x-structured folder as ONE single-file checkpoint.

The file uses the original latent-diffusion (CompVis/LDM) tensor names that AUTOMATIC1111,
ComfyUI and ``StableDiffusionPipeline.from_single_file`` read:

- ``model.diffusion_model.*``: the UNet (``input_blocks``, ``middle_block``, ``output_blocks``,
  ``time_embed``, ``out``);
- ``first_stage_model.*``: the VAE (``encoder.down.N.block.M``, ``decoder.up.N.block.M``, ``mid``);
- ``cond_stage_model.transformer.text_model.*``: the CLIP text encoder.

This is the inverse of diffusers' single-file conversion. The index arithmetic is derived from
the pipeline's own configs (``block_out_channels``, ``layers_per_block``, block types), so any
width, depth or attention layout of the SD 1.x structure is exported, not just SD 1.5's.

What peers cannot read from tensor names travels with the file:

- the safetensors metadata holds the diffusers configs (``implicit_studio.diffusers_configs``),
  the tokenizer (``implicit_studio.tokenizer``: vocab, merges and its config) and
  ``modelspec.prediction_type``; the studio and the ComfyUI node in ``integrations/comfyui`` rebuild
  the exact model from them;
- a v-prediction model gets the empty ``v_pred`` tensor ComfyUI writes and reads (and ``ztsnr``
  for zero-terminal-SNR schedules);
- a sidecar ``<name>.yaml`` next to the file is the original (LDM) config AUTOMATIC1111 and
  diffusers' legacy converter read: sizes, noise schedule, latent scale and, for v-prediction,
  ``parameterization: "v"``.

:func:`peer_support` says, before anything is written, which tools read a given model and why not.
Compute layer: no Qt; torch and safetensors are imported when a function runs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_TEXT_PREFIX = "cond_stage_model.transformer.text_model."

#: Value of the ``layout`` metadata entry of exported files.
LAYOUT = "ldm-sd1"

#: Pipeline classes whose folders have the SD 1.x component structure.
SD_PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")

_UNET_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UNET_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")

#: diffusers ResnetBlock2D layer -> LDM ResBlock layer (UNet).
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

#: diffusers VAE mid-block attention layer -> LDM AttnBlock layer (old diffusers names too).
_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
    "query": "q",
    "key": "k",
    "value": "v",
    "proj_attn": "proj_out",
}

_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class ExportResult:
    """What :func:`export_single_file` wrote: the file, its weight-tensor count and size, the tensor
    count per component, the safetensors metadata, the marker tensors (``v_pred``...) and the
    sidecar yaml (None when not written)."""

    path: Path
    tensors: int
    bytes: int
    components: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    markers: list[str] = field(default_factory=list)
    sidecar: Path | None = None


# ------------------------------------------------------------------------------------------------
# Reading the folder
# ------------------------------------------------------------------------------------------------

def _not_sd(folder: Path, why: str) -> ValueError:
    return ValueError(f"{folder} is not a Stable Diffusion 1.x-structured diffusers pipeline folder: {why}")


def _read_json(path: Path, folder: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _not_sd(folder, f"{path.relative_to(folder)} is missing") from None
    except (OSError, ValueError) as exc:
        raise _not_sd(folder, f"{path.relative_to(folder)} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _not_sd(folder, f"{path.relative_to(folder)} does not hold a JSON object")
    return data


def _weight_files(component: Path, folder: Path) -> list[Path]:
    """The safetensors file(s) of one component: a sharded set named by its index file, else the
    one non-variant file (a ``.fp16`` variant only when it is the only one)."""
    indexes = sorted(component.glob("*.safetensors.index.json"))
    if indexes:
        index = _read_json(indexes[0], folder)
        names = sorted(set((index.get("weight_map") or {}).values()))
        files = [component / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if not files or missing:
            raise _not_sd(folder, f"{indexes[0].relative_to(folder)} names missing shards: {', '.join(missing) or 'none'}")
        return files
    files = sorted(component.glob("*.safetensors"))
    plain = [f for f in files if len(f.name.split(".")) == 2]
    if len(plain) == 1:
        return plain
    if len(files) == 1:
        return files
    if not files:
        other = sorted(p.name for p in component.iterdir() if p.suffix in (".bin", ".ckpt", ".pt", ".pth"))
        extra = f" (found {', '.join(other)}; only safetensors weights are read)" if other else ""
        raise _not_sd(folder, f"{component.name}/ has no .safetensors weights{extra}")
    raise _not_sd(folder, f"{component.name}/ has several weight files ({', '.join(f.name for f in files)}) "
                          "and no index saying which to use")


def _load_tensors(files: list[Path]) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in files:
        try:
            out.update(load_file(str(f), device="cpu"))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
            raise ValueError(f"cannot read the weights in {f}: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    return out


def _check_structure(folder: Path) -> dict[str, dict]:
    """Validate the folder and return its configs (``unet``, ``vae``, ``text_encoder``,
    ``scheduler`` (may be empty), ``index``). Raises ValueError with the reason otherwise."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: give the diffusers pipeline folder (the one with model_index.json)")
    if not (folder / "model_index.json").is_file():
        raise _not_sd(folder, "it has no model_index.json")
    index = _read_json(folder / "model_index.json", folder)
    cls = str(index.get("_class_name", ""))
    if cls not in SD_PIPELINE_CLASSES:
        raise _not_sd(folder, f"its pipeline class is {cls or '(none)'}; expected one of {', '.join(SD_PIPELINE_CLASSES)}")
    want = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel"}
    for name, klass in want.items():
        spec = index.get(name)
        found = spec[1] if isinstance(spec, (list, tuple)) and len(spec) == 2 else spec
        if found != klass:
            raise _not_sd(folder, f"its {name} is {found or 'missing'}, expected {klass}")
        if not (folder / name).is_dir():
            raise _not_sd(folder, f"model_index.json lists {name} but the {name}/ folder is missing")
    unet = _read_json(folder / "unet" / "config.json", folder)
    vae = _read_json(folder / "vae" / "config.json", folder)
    text = _read_json(folder / "text_encoder" / "config.json", folder)

    down = list(unet.get("down_block_types") or [])
    up = list(unet.get("up_block_types") or [])
    bad = [t for t in down if t not in _UNET_DOWN_TYPES] + [t for t in up if t not in _UNET_UP_TYPES]
    if not down or len(down) != len(up) or bad:
        raise _not_sd(folder, f"its UNet blocks are {down} / {up}; SD 1.x uses CrossAttnDownBlock2D/DownBlock2D "
                              "down and CrossAttnUpBlock2D/UpBlock2D up, as many up as down")
    mid = unet.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    if mid != "UNetMidBlock2DCrossAttn":
        raise _not_sd(folder, f"its UNet mid block is {mid}, expected UNetMidBlock2DCrossAttn")
    for key in ("class_embed_type", "addition_embed_type", "encoder_hid_dim", "num_class_embeds", "time_cond_proj_dim"):
        if unet.get(key) not in (None, False):
            raise _not_sd(folder, f"its UNet has {key}={unet[key]!r}, which the SD 1.x layout has no place for")
    if (unet.get("time_embedding_type") or "positional") != "positional":
        raise _not_sd(folder, f"its UNet time embedding is {unet['time_embedding_type']!r}, not positional")
    lpb = unet.get("layers_per_block", 2)
    if isinstance(lpb, list) and len(lpb) != len(down):
        raise _not_sd(folder, f"its UNet layers_per_block {lpb} does not have one entry per block")

    vdown = list(vae.get("down_block_types") or [])
    vup = list(vae.get("up_block_types") or [])
    if not vdown or any(t != "DownEncoderBlock2D" for t in vdown) or any(t != "UpDecoderBlock2D" for t in vup) \
            or len(vdown) != len(vup):
        raise _not_sd(folder, f"its VAE blocks are {vdown} / {vup}, expected DownEncoderBlock2D / UpDecoderBlock2D")
    archs = text.get("architectures") or []
    if text.get("model_type") not in (None, "clip_text_model") or (archs and "CLIPTextModel" not in archs):
        raise _not_sd(folder, f"its text encoder is {archs or text.get('model_type')}, expected CLIPTextModel")
    sched_file = folder / "scheduler" / "scheduler_config.json"
    sched = _read_json(sched_file, folder) if sched_file.is_file() else {}
    return {"index": index, "unet": unet, "vae": vae, "text_encoder": text, "scheduler": sched}


# ------------------------------------------------------------------------------------------------
# Key mapping, diffusers -> LDM
# ------------------------------------------------------------------------------------------------

class _UNetLayout:
    """Where each diffusers UNet block lands among LDM's flat ``input_blocks``/``output_blocks``.

    LDM numbers the down path as ``input_blocks.0`` (conv_in), then per level ``n`` blocks of
    [resnet, attention?] and, except at the last level, one block holding the downsampler. The up
    path has ``n + 1`` blocks per level of [resnet, attention?, upsampler?], the upsampler (all but
    the last level) in the level's last block after the attention, if any."""

    def __init__(self, cfg: dict):
        down = list(cfg["down_block_types"])
        up = list(cfg["up_block_types"])
        lpb = cfg.get("layers_per_block", 2)
        per_down = list(lpb) if isinstance(lpb, (list, tuple)) else [int(lpb)] * len(down)
        per_up = [n + 1 for n in reversed(per_down)]
        self.per_down, self.per_up = per_down, per_up
        self.up_has_attn = [t.startswith("CrossAttn") for t in up]
        self.down_start, pos = [], 1
        for i, n in enumerate(per_down):
            self.down_start.append(pos)
            pos += n + (1 if i < len(per_down) - 1 else 0)
        self.up_start, pos = [], 0
        for n in per_up:
            self.up_start.append(pos)
            pos += n

    def _check(self, what: str, block: int, layer: int, limit: list[int], key: str) -> None:
        if block >= len(limit) or layer >= limit[block]:
            raise ValueError(f"UNet tensor {key} does not fit the UNet config ({what} block {block} has "
                             f"{limit[block] if block < len(limit) else 0} layers)")

    def map(self, key: str) -> str:
        fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
                 "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
                 "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
        for old, new in fixed.items():
            if key.startswith(old):
                return new + key[len(old):]
        m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$", key)
        if m:
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            self._check("down", b, j, self.per_down, key)
            idx = self.down_start[b] + j
            return f"input_blocks.{idx}.0.{_resnet_rest(rest, key)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
        m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$", key)
        if m:
            b = int(m[1])
            if b >= len(self.per_down) - 1:
                raise ValueError(f"UNet tensor {key}: the last down block has no downsampler in the SD layout")
            return f"input_blocks.{self.down_start[b] + self.per_down[b]}.0.op.{m[2]}"
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)$", key)
        if m:
            kind, j, rest = m[1], int(m[2]), m[3]
            if kind == "resnets" and j in (0, 1):
                return f"middle_block.{2 * j}.{_resnet_rest(rest, key)}"
            if kind == "attentions" and j == 0:
                return f"middle_block.1.{rest}"
            raise ValueError(f"UNet tensor {key}: the SD mid block has two resnets and one attention")
        m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$", key)
        if m:
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            self._check("up", b, j, self.per_up, key)
            idx = self.up_start[b] + j
            return f"output_blocks.{idx}.0.{_resnet_rest(rest, key)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$", key)
        if m:
            b = int(m[1])
            if b >= len(self.per_up) - 1:
                raise ValueError(f"UNet tensor {key}: the last up block has no upsampler in the SD layout")
            slot = 2 if self.up_has_attn[b] else 1
            return f"output_blocks.{self.up_start[b] + self.per_up[b] - 1}.{slot}.conv.{m[2]}"
        raise ValueError(f"UNet tensor {key} has no place in the SD 1.x checkpoint layout")


def _resnet_rest(rest: str, key: str) -> str:
    layer, _, param = rest.partition(".")
    if layer not in _UNET_RESNET:
        raise ValueError(f"UNet tensor {key}: unknown resnet layer {layer!r}")
    return f"{_UNET_RESNET[layer]}.{param}"


def _vae_key(key: str, n_up: int) -> str:
    for side in ("encoder.", "decoder."):
        if not key.startswith(side):
            continue
        rest = key[len(side):]
        simple = {"conv_in.": "conv_in.", "conv_out.": "conv_out.", "conv_norm_out.": "norm_out."}
        for old, new in simple.items():
            if rest.startswith(old):
                return side + new + rest[len(old):]
        m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.resnets\.(\d+)\.(.+)$", rest)
        if m:
            kind, b, j, param = m[1], int(m[2]), int(m[3]), m[4].replace("conv_shortcut.", "nin_shortcut.")
            if kind == "down_blocks":
                return f"{side}down.{b}.block.{j}.{param}"
            return f"{side}up.{n_up - 1 - b}.block.{j}.{param}"
        m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$", rest)
        if m:
            return f"{side}down.{m[1]}.downsample.conv.{m[2]}"
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$", rest)
        if m:
            return f"{side}up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        m = re.match(r"mid_block\.resnets\.(\d+)\.(.+)$", rest)
        if m and int(m[1]) in (0, 1):
            return f"{side}mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut.', 'nin_shortcut.')}"
        m = re.match(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)$", rest)
        if m and m[1] in _VAE_ATTN:
            return f"{side}mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
        break
    if key.split(".")[0] in ("quant_conv", "post_quant_conv"):
        return key
    raise ValueError(f"VAE tensor {key} has no place in the SD 1.x checkpoint layout")


def _text_key(key: str) -> str | None:
    """CLIPTextModel tensor -> LDM name; None for buffers the LDM file does not carry."""
    rest = key[len("text_model."):] if key.startswith("text_model.") else key
    if rest == "embeddings.position_ids":
        return None
    if not rest.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
        raise ValueError(f"text encoder tensor {key} is not part of a CLIPTextModel (SD 1.x has no text projection)")
    return LDM_TEXT_PREFIX + rest


def convert_to_ldm(unet: dict, vae: dict, text: dict, unet_config: dict, vae_config: dict) -> dict:
    """The LDM-layout state dict of the three components' diffusers state dicts (tensors are
    shared, not copied, except the VAE attention weights reshaped to 1x1 convolutions)."""
    out: dict[str, Any] = {}

    def put(name: str, tensor, source: str) -> None:
        if name in out:
            raise ValueError(f"two tensors map to {name} (the second is {source}); the folder does not have the "
                             "SD 1.x structure its config claims")
        out[name] = tensor

    layout = _UNetLayout(unet_config)
    for k, t in unet.items():
        put(LDM_UNET_PREFIX + layout.map(k), t, f"unet {k}")
    n_up = len(vae_config["up_block_types"])
    for k, t in vae.items():
        name = _vae_key(k, n_up)
        if ".mid.attn_1." in name and name.endswith(".weight") and t.ndim == 2:
            t = t.reshape(*t.shape, 1, 1)  # linear -> 1x1 convolution
        put(LDM_VAE_PREFIX + name, t, f"vae {k}")
    for k, t in text.items():
        name = _text_key(k)
        if name is not None:
            put(name, t, f"text_encoder {k}")
    return out


# ------------------------------------------------------------------------------------------------
# What travels with the file: tokenizer, prediction type, the original (LDM) config
# ------------------------------------------------------------------------------------------------

#: diffusers beta schedule -> the name the original LDM code (and so A1111's yaml) uses
LDM_BETA_SCHEDULES = {"scaled_linear": "linear", "linear": "sqrt_linear", "squaredcos_cap_v2": "cosine"}

#: The text encoder of SD 1.x (CLIP ViT-L/14's text tower): what stock tools build for any SD 1.x file.
CLIP_L_TEXT = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "vocab_size": 49408, "max_position_embeddings": 77}
#: SD 1.x's UNet and VAE sizes that stock loaders assume.
SD1_UNET = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "norm_num_groups": 32}
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32, "latent_channels": 4}
SD_SCALE = 0.18215


def prediction_type(configs: dict[str, dict]) -> str:
    """``"epsilon"``, ``"v_prediction"`` or ``"sample"`` from the scheduler config."""
    return str((configs.get("scheduler") or {}).get("prediction_type") or "epsilon")


def read_tokenizer(folder: Path) -> dict[str, Any] | None:
    """The tokenizer files of a pipeline folder as one JSON-able dict (``vocab``, ``merges`` and
    the ``tokenizer_config`` / ``special_tokens_map``), or None when it has no slow-tokenizer files."""
    tok = folder / "tokenizer"
    if not (tok / "vocab.json").is_file() or not (tok / "merges.txt").is_file():
        return None
    out: dict[str, Any] = {"vocab": _read_json(tok / "vocab.json", folder)}
    out["merges"] = (tok / "merges.txt").read_text(encoding="utf-8")
    for name in ("tokenizer_config", "special_tokens_map"):
        f = tok / f"{name}.json"
        if f.is_file():
            data = _read_json(f, folder)
            out[name] = {k: v for k, v in data.items() if k not in ("is_local", "local_files_only", "name_or_path")}
    return out


def is_standard_clip_vocab(vocab: dict[str, int] | None) -> bool:
    """True when ``vocab`` is CLIP's own 49,408-token vocabulary (the one stock tools ship)."""
    if not vocab or len(vocab) != CLIP_L_TEXT["vocab_size"]:
        return False
    from .standard import clip_vocab

    return vocab == clip_vocab()


def _ldm_attention_resolutions(unet: dict) -> list[int]:
    return [2 ** i for i, t in enumerate(unet["down_block_types"]) if t.startswith("CrossAttn")]


def _heads(unet: dict) -> tuple[int, int]:
    """(num_heads, num_head_channels) in the LDM convention: one of them is -1."""
    widths = list(unet["block_out_channels"])
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim") or 8
    per = list(heads) if isinstance(heads, (list, tuple)) else [int(heads)] * len(widths)
    if len(set(per)) == 1:
        return int(per[0]), -1
    dims = {w // h for w, h in zip(widths, per)}
    if len(dims) == 1:
        return -1, dims.pop()
    raise ValueError(f"the UNet's attention heads {per} are neither one count nor one width per head")


def ldm_config(configs: dict[str, dict]) -> dict[str, Any]:
    """The original latent-diffusion config of the model (what ``v1-inference.yaml`` holds for
    SD 1.5), with this model's sizes, noise schedule, latent scale and parameterization."""
    unet, vae, sched = configs["unet"], configs["vae"], configs.get("scheduler") or {}
    lpb = unet.get("layers_per_block", 2)
    widths = list(unet["block_out_channels"])
    base = widths[0]
    num_heads, head_channels = _heads(unet)
    depth = unet.get("transformer_layers_per_block", 1)
    pred = prediction_type(configs)
    params: dict[str, Any] = {
        "linear_start": float(sched.get("beta_start", 0.00085)),
        "linear_end": float(sched.get("beta_end", 0.012)),
        "beta_schedule": LDM_BETA_SCHEDULES.get(sched.get("beta_schedule", "scaled_linear"), "linear"),
        "num_timesteps_cond": 1,
        "log_every_t": 200,
        "timesteps": int(sched.get("num_train_timesteps", 1000)),
        "first_stage_key": "jpg",
        "cond_stage_key": "txt",
        "image_size": int(unet.get("sample_size", 64)),
        "channels": int(unet.get("in_channels", 4)) if unet.get("in_channels", 4) != 9 else 4,
        "cond_stage_trainable": False,
        "conditioning_key": "hybrid" if unet.get("in_channels") == 9 else "crossattn",
        "monitor": "val/loss_simple_ema",
        "scale_factor": float(vae.get("scaling_factor", SD_SCALE)),
        "use_ema": False,
    }
    if pred == "v_prediction":
        params["parameterization"] = "v"
    params["unet_config"] = {
        "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
        "params": {
            "image_size": int(unet.get("sample_size", 64)),
            "in_channels": int(unet.get("in_channels", 4)),
            "out_channels": int(unet.get("out_channels", 4)),
            "model_channels": base,
            "attention_resolutions": _ldm_attention_resolutions(unet),
            "num_res_blocks": list(lpb) if isinstance(lpb, (list, tuple)) else int(lpb),
            "channel_mult": [w // base for w in widths],
            "num_heads": num_heads,
            "num_head_channels": head_channels,
            "use_spatial_transformer": True,
            "use_linear_in_transformer": bool(unet.get("use_linear_projection", False)),
            "transformer_depth": list(depth) if isinstance(depth, (list, tuple)) else int(depth),
            "context_dim": int(unet["cross_attention_dim"]),
            "use_checkpoint": False,
            "legacy": False,
        },
    }
    vwidths = list(vae["block_out_channels"])
    params["first_stage_config"] = {
        "target": "ldm.models.autoencoder.AutoencoderKL",
        "params": {
            "embed_dim": int(vae.get("latent_channels", 4)),
            "monitor": "val/rec_loss",
            "ddconfig": {
                "double_z": True,
                "z_channels": int(vae.get("latent_channels", 4)),
                "resolution": int(vae.get("sample_size", 256)),
                "in_channels": int(vae.get("in_channels", 3)),
                "out_ch": int(vae.get("out_channels", 3)),
                "ch": vwidths[0],
                "ch_mult": [w // vwidths[0] for w in vwidths],
                "num_res_blocks": int(vae.get("layers_per_block", 2)),
                "attn_resolutions": [],
                "dropout": 0.0,
            },
            "lossconfig": {"target": "torch.nn.Identity"},
        },
    }
    params["cond_stage_config"] = {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}
    return {"model": {"base_learning_rate": 1.0e-04, "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
                      "params": params}}


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def to_yaml(data: Any, indent: int = 0) -> str:
    """A small YAML writer for nested dicts, flat lists and scalars (all the LDM config needs)."""
    pad = "  " * indent
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(value, indent + 1))
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    return "\n".join(lines)


@dataclass
class PeerSupport:
    """Whether one tool reads the export: ``reads`` is ``"yes"``, ``"partly"`` (loads, but
    draws wrongly unless the user does what ``why`` says) or ``"no"``; ``why`` names the reasons."""

    tool: str
    reads: str
    why: list[str] = field(default_factory=list)

    def line(self) -> str:
        word = {"yes": "reads it", "partly": "loads it but", "no": "cannot read it"}[self.reads]
        text = f"{self.tool}: {word}"
        if self.why:
            text += (": " if self.reads != "partly" else " ") + "; ".join(self.why)
        return text


def peer_support(configs: dict[str, dict], tokenizer: dict | None) -> list[PeerSupport]:
    """Which tools read the single file of a pipeline with these configs, and why not.

    Stock ComfyUI detects SD 1.x/2.x by UNet width and text size and then builds everything else
    from hard-coded SD sizes (GroupNorm(32), the 8x SD VAE, CLIP ViT-L and its 49,408-token
    vocabulary, latent scale 0.18215, SD's scaled-linear noise schedule); it reads v-prediction
    from the ``v_pred`` key for SDXL only. AUTOMATIC1111 builds the UNet and VAE from the sidecar
    yaml (any sizes, schedule and parameterization) but its LDM code hard-codes GroupNorm(32) and
    loads CLIP ViT-L by name."""
    unet, vae, text, sched = configs["unet"], configs["vae"], configs["text_encoder"], configs.get("scheduler") or {}
    ugroups, vgroups = unet.get("norm_num_groups", 32), vae.get("norm_num_groups", 32)
    widths, vwidths = list(unet["block_out_channels"]), list(vae["block_out_channels"])
    factor = 2 ** (len(vwidths) - 1)
    vocab = (tokenizer or {}).get("vocab")
    text_std = all(text.get(k) == v for k, v in CLIP_L_TEXT.items()) and (vocab is None or is_standard_clip_vocab(vocab))
    pred = prediction_type(configs)
    sched_std = (sched.get("beta_schedule", "scaled_linear") == "scaled_linear"
                 and abs(float(sched.get("beta_start", 0.00085)) - 0.00085) < 1e-9
                 and abs(float(sched.get("beta_end", 0.012)) - 0.012) < 1e-9)
    group_msgs = []
    if ugroups != 32:
        group_msgs.append(f"its UNet uses GroupNorm({ugroups}), the code hard-codes GroupNorm(32)")
    if vgroups != 32:
        group_msgs.append(f"its VAE uses GroupNorm({vgroups}), the code hard-codes GroupNorm(32)")
    text_msg = (f"its text encoder is {text.get('hidden_size')} wide with {text.get('num_hidden_layers')} layers and a "
                f"{text.get('vocab_size')}-token vocabulary; stock loaders build CLIP ViT-L (768 wide, 12 layers, "
                "49,408 tokens) and its own tokenizer")

    comfy_no, comfy_partly = [], []
    detected = (widths[0] == 320 and ((unet["cross_attention_dim"] == 768 and not unet.get("use_linear_projection"))
                                      or (unet["cross_attention_dim"] == 1024 and unet.get("use_linear_projection"))))
    if not detected:
        comfy_no.append(f"its UNet is {widths[0]} wide with text size {unet['cross_attention_dim']}; model detection "
                        "knows SD 1.x (320 wide, 768) and SD 2.x (320 wide, 1024) only ('Could not detect model type')")
    comfy_no += group_msgs
    if any(vae.get(k) != v for k, v in SD_VAE.items()):
        comfy_no.append(f"its VAE is {'-'.join(map(str, vwidths))} wide ({factor}x), ComfyUI hard-codes the SD VAE "
                        "(128-256-512-512, 8x)")
    if not text_std:
        comfy_no.append(text_msg)
    if abs(float(vae.get("scaling_factor", SD_SCALE)) - SD_SCALE) > 1e-6:
        comfy_partly.append(f"its latent scale {float(vae['scaling_factor']):.4g} is not read (SD's 0.18215 is assumed)")
    if not sched_std:
        comfy_partly.append(f"its noise schedule ({sched.get('beta_schedule')}) is not read (SD's scaled-linear is assumed)")
    if pred == "v_prediction":
        comfy_partly.append("it reads the v_pred key for SDXL only: add a ModelSamplingDiscrete node set to v_prediction")
    node_why = ["the Implicit Studio loader node (integrations/comfyui) builds the model from the file's metadata"]
    rows = []
    if comfy_no:
        rows.append(PeerSupport("ComfyUI (stock Load Checkpoint)", "no", comfy_no + comfy_partly))
    else:
        rows.append(PeerSupport("ComfyUI (stock Load Checkpoint)", "partly" if comfy_partly else "yes", comfy_partly))
    rows.append(PeerSupport("ComfyUI with the Implicit Studio loader node", "yes", node_why))

    a1111_no = list(group_msgs)
    if not text_std:
        a1111_no.append(text_msg)
    a1111_why = ["with the sidecar .yaml next to it (sizes, noise schedule, latent scale"
                 + (", parameterization v" if pred == "v_prediction" else "") + ")"]
    rows.append(PeerSupport("AUTOMATIC1111 / Forge", "no" if a1111_no else "yes", a1111_no or a1111_why))
    std_sizes = (not comfy_no) and widths == SD1_UNET["block_out_channels"]
    rows.append(PeerSupport(
        "diffusers from_single_file", "yes",
        ["offline with config= a diffusers folder of the same sizes"
         + ("" if not std_sizes else " (or the SD 1.5 config in its Hugging Face cache)")]))
    rows.append(PeerSupport("Implicit Studio", "yes", ["builds the model from the file's own metadata, offline"]))
    return rows


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

#: Empty marker tensors peers read: ComfyUI's v-prediction and zero-terminal-SNR flags.
V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"


def _metadata(folder: Path, configs: dict[str, dict], dtype: str, tokenizer: dict | None) -> dict[str, str]:
    unet = configs["unet"]
    meta = {
        "format": "pt",
        "source": "diffusers",
        "source_model": folder.name,
        "converted_by": "Implicit Studio",
        "layout": LAYOUT,
        "dtype": dtype,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.title": folder.name,
        "modelspec.implementation": "https://github.com/CompVis/stable-diffusion",
        "modelspec.prediction_type": {"v_prediction": "v", "epsilon": "epsilon"}.get(prediction_type(configs),
                                                                                      prediction_type(configs)),
        # the sizes that cannot be read back from tensor names alone: scheduler, VAE scaling and
        # the diffusers configs, so the exact folder can be rebuilt from the file
        "implicit_studio.diffusers_configs": json.dumps(
            {k: configs[k] for k in ("unet", "vae", "text_encoder", "scheduler")}, sort_keys=True),
    }
    if tokenizer is not None:
        meta["implicit_studio.tokenizer"] = json.dumps(tokenizer, ensure_ascii=False, sort_keys=True)
    if unet.get("cross_attention_dim") == 768 and unet.get("in_channels", 4) in (4, 9):
        meta["modelspec.architecture"] = "stable-diffusion-v1" + ("/inpainting" if unet.get("in_channels") == 9 else "")
    if configs["vae"].get("scaling_factor") is not None:
        meta["vae_scaling_factor"] = repr(float(configs["vae"]["scaling_factor"]))
    return meta


def _umask() -> int:
    """The process umask, read without changing it (Linux), else the usual 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _publish(tmp: Path, out: Path) -> None:
    """Give ``tmp`` the mode of an ordinarily created file (0644 under the usual umask:
    safetensors' writer makes 0600 files another user's ComfyUI cannot read), then rename it."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, out)


def sidecar_path(out: Path) -> Path:
    """``model.yaml`` beside ``model.safetensors``: where A1111 looks for a checkpoint's config."""
    return out.with_suffix(".yaml")


def check_export(pipeline_dir: str | os.PathLike) -> tuple[dict[str, dict], dict | None, list[PeerSupport]]:
    """Validate a pipeline folder for export without writing anything: its configs, its tokenizer
    files (None when it has none) and which tools will read the file (:func:`peer_support`)."""
    folder = Path(pipeline_dir).expanduser()
    configs = _check_structure(folder)
    tokenizer = read_tokenizer(folder)
    if tokenizer is None and configs["text_encoder"].get("vocab_size") != CLIP_L_TEXT["vocab_size"]:
        raise _not_sd(folder, f"its tokenizer/ folder has no vocab.json and merges.txt, and its "
                              f"{configs['text_encoder'].get('vocab_size')}-token vocabulary is not CLIP's")
    ldm_config(configs)  # raises for attention heads the LDM layout cannot express
    return configs, tokenizer, peer_support(configs, tokenizer)


def export_single_file(pipeline_dir: str | os.PathLike, out_path: str | os.PathLike, *,
                       dtype: str | None = None, sidecar: bool = True) -> ExportResult:
    """Write the diffusers SD 1.x-structured pipeline at ``pipeline_dir`` as one safetensors file
    in the original LDM layout at ``out_path`` (written to a temporary name, then renamed), and
    with ``sidecar`` its original config as ``<name>.yaml`` beside it.

    ``dtype`` ``None`` keeps the stored precision; ``"float16"``/``"bfloat16"``/``"float32"``
    converts the floating-point tensors. Raises ValueError with the reason for a folder that is
    not an SD 1.x-structured pipeline, or whose weights do not match its configs."""
    folder = Path(pipeline_dir).expanduser()
    out = Path(out_path).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise ValueError(f"the single-file checkpoint must be a .safetensors file, not {out.name}")
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)} (or None to keep the stored one), not {dtype!r}")
    configs, tokenizer, _ = check_export(folder)

    import torch
    from safetensors.torch import save_file

    parts = {name: _load_tensors(_weight_files(folder / name, folder)) for name in ("unet", "vae", "text_encoder")}
    state = convert_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"], configs["unet"], configs["vae"])
    if dtype is not None:
        target = getattr(torch, dtype)
        state = {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    n_weights = len(state)
    markers = []
    if prediction_type(configs) == "v_prediction":
        markers.append(V_PRED_KEY)
    if configs["scheduler"].get("rescale_betas_zero_snr"):
        markers.append(ZTSNR_KEY)
    for key in markers:
        state[key] = torch.tensor([])
    meta = _metadata(folder, configs, ",".join(dtypes), tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    yaml_out = sidecar_path(out) if sidecar else None
    yaml_tmp = out.with_name(f".{out.stem}.{os.getpid()}.yaml.tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
        if yaml_out is not None:
            head = (f"# Original (latent-diffusion) config of {out.name}, written by Implicit Studio.\n"
                    "# AUTOMATIC1111 reads it from beside the checkpoint.\n")
            yaml_tmp.write_text(head + to_yaml(ldm_config(configs)) + "\n", encoding="utf-8")
            _publish(yaml_tmp, yaml_out)
        _publish(tmp, out)
    finally:
        for t in (tmp, yaml_tmp):
            if t.exists():
                t.unlink()
    counts = {
        "unet": sum(k.startswith(LDM_UNET_PREFIX) for k in state),
        "vae": sum(k.startswith(LDM_VAE_PREFIX) for k in state),
        "text_encoder": sum(k.startswith(LDM_TEXT_PREFIX) for k in state),
    }
    return ExportResult(path=out, tensors=n_weights, bytes=out.stat().st_size, components=counts, metadata=meta,
                        markers=markers, sidecar=yaml_out)
