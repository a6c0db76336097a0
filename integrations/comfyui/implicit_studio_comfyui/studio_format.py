"""Reading an Implicit Studio single-file export: what ComfyUI needs to build the model, taken
from the file's safetensors metadata and tensor names. Plain Python (json, struct): no torch, no
ComfyUI, so it can be tested on its own.

``implicit-studio export-checkpoint`` writes into the metadata:

- ``implicit_studio.diffusers_configs``: the diffusers configs of the UNet, VAE, text encoder and
  scheduler (sizes, GroupNorm groups, attention heads, latent scale, noise schedule, prediction);
- ``implicit_studio.tokenizer``: the BPE tokenizer (``vocab``, ``merges``, ``tokenizer_config``);
- ``modelspec.prediction_type`` and, for v-prediction, an empty ``v_pred`` tensor.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIGS_KEY = "implicit_studio.diffusers_configs"
TOKENIZER_KEY = "implicit_studio.tokenizer"
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."

#: diffusers beta schedule -> ComfyUI's ``make_beta_schedule`` name
#: (diffusers' squaredcos_cap_v2 is ComfyUI's "cosine": the same formula with s = 0.008; ComfyUI's own
#: "squaredcos_cap_v2" path returns a numpy array its sampler cannot use)
BETA_SCHEDULES = {"scaled_linear": "linear", "linear": "sqrt_linear", "squaredcos_cap_v2": "cosine"}


class NotAStudioExport(ValueError):
    """The file is not an Implicit Studio export, or its metadata cannot be used."""


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor name -> {"dtype", "shape"}, metadata) of a safetensors file, without reading weights."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise NotAStudioExport(f"{path.name} is not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > 200_000_000:
            raise NotAStudioExport(f"{path.name} is not a safetensors file (bad header length {n})")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotAStudioExport(f"{path.name} is not a safetensors file ({exc})") from exc
    meta = header.pop("__metadata__", None) or {}
    return header, {str(k): str(v) for k, v in meta.items()}


@dataclass
class StudioModel:
    """Everything ComfyUI needs beyond the tensors, in ComfyUI's own terms."""

    num_heads: int
    num_head_channels: int
    unet_groups: int
    vae_groups: int
    vae_ddconfig: dict[str, Any]
    vae_embed_dim: int
    downscale: int
    latent_channels: int
    latent_scale: float
    sampling: dict[str, Any]
    prediction: str  # "eps" or "v"
    text_config: dict[str, Any]
    max_length: int
    start_token: int
    end_token: int
    pad_token: int
    tokenizer: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pad_with_end(self) -> bool:
        return self.pad_token == self.end_token


def _heads(unet: dict) -> tuple[int, int]:
    widths = list(unet["block_out_channels"])
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim") or 8
    per = list(heads) if isinstance(heads, (list, tuple)) else [int(heads)] * len(widths)
    if len(set(per)) == 1:
        return int(per[0]), -1
    dims = {w // h for w, h in zip(widths, per)}
    if len(dims) == 1:
        return -1, dims.pop()
    raise NotAStudioExport(f"the UNet's attention heads {per} are neither one count nor one width per head")


def describe(metadata: dict[str, str], tensor_names) -> StudioModel:
    """Read a studio export's metadata (and its marker tensors) into a :class:`StudioModel`.
    Raises :class:`NotAStudioExport` saying what is missing."""
    names = set(tensor_names)
    raw = metadata.get(CONFIGS_KEY)
    if not raw:
        raise NotAStudioExport("the file has no implicit_studio.diffusers_configs metadata: it was not written by "
                               "'implicit-studio export-checkpoint' (use ComfyUI's own Load Checkpoint for other files)")
    try:
        configs = json.loads(raw)
        unet, vae, text = configs["unet"], configs["vae"], configs["text_encoder"]
        sched = configs.get("scheduler") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise NotAStudioExport(f"the file's implicit_studio.diffusers_configs metadata is unreadable ({exc})") from exc
    if UNET_PREFIX + "input_blocks.0.0.weight" not in names:
        raise NotAStudioExport("the file has no SD-structured UNet (model.diffusion_model.input_blocks.*)")
    if unet.get("addition_embed_type") or unet.get("class_embed_type"):
        raise NotAStudioExport("only SD 1.x-structured exports are supported (this UNet has extra embeddings)")
    notes = []
    tokenizer = None
    if metadata.get(TOKENIZER_KEY):
        try:
            tokenizer = json.loads(metadata[TOKENIZER_KEY])
            vocab = tokenizer["vocab"]
            if not isinstance(vocab, dict) or not isinstance(tokenizer.get("merges"), str):
                raise TypeError("vocab must be an object and merges text")
        except (ValueError, KeyError, TypeError) as exc:
            raise NotAStudioExport(f"the file's implicit_studio.tokenizer metadata is unreadable ({exc})") from exc
    elif int(text.get("vocab_size", 49408)) != 49408:
        raise NotAStudioExport(f"the file carries no tokenizer and its {text.get('vocab_size')}-token vocabulary is "
                               "not CLIP's: export it again with a current Implicit Studio")
    else:
        notes.append("no tokenizer in the file: ComfyUI's CLIP tokenizer is used")

    pred_name = str(sched.get("prediction_type") or "epsilon")
    if "v_pred" in names or metadata.get("modelspec.prediction_type") == "v":
        pred_name = "v_prediction"
    if pred_name not in ("epsilon", "v_prediction"):
        raise NotAStudioExport(f"prediction type {pred_name!r} is not supported (epsilon and v_prediction are)")
    schedule = str(sched.get("beta_schedule") or "scaled_linear")
    if schedule not in BETA_SCHEDULES:
        raise NotAStudioExport(f"noise schedule {schedule!r} has no ComfyUI equivalent "
                               f"({', '.join(BETA_SCHEDULES)} do)")
    if sched.get("trained_betas"):
        raise NotAStudioExport("explicit trained_betas are not supported")
    num_heads, head_channels = _heads(unet)
    vwidths = list(vae["block_out_channels"])
    vlpb = vae.get("layers_per_block", 2)
    latent = int(vae.get("latent_channels", 4))
    ddconfig = {
        "double_z": True, "z_channels": latent, "resolution": int(vae.get("sample_size", 256)),
        "in_channels": int(vae.get("in_channels", 3)), "out_ch": int(vae.get("out_channels", 3)),
        "ch": vwidths[0], "ch_mult": [w // vwidths[0] for w in vwidths], "num_res_blocks": int(vlpb),
        "attn_resolutions": [], "dropout": 0.0,
    }
    tok_cfg = (tokenizer or {}).get("tokenizer_config") or {}
    vocab = (tokenizer or {}).get("vocab") or {}
    max_length = int(text.get("max_position_embeddings", 77))
    if tok_cfg.get("model_max_length") and int(tok_cfg["model_max_length"]) < max_length:
        max_length = int(tok_cfg["model_max_length"])
    bos = vocab.get(tok_cfg.get("bos_token", "<|startoftext|>"), text.get("bos_token_id", 49406))
    eos = vocab.get(tok_cfg.get("eos_token", "<|endoftext|>"), text.get("eos_token_id", 49407))
    pad = vocab.get(tok_cfg.get("pad_token", "<|endoftext|>"), eos)
    text_config = dict(text)
    text_config["eos_token_id"] = int(eos)
    text_config.setdefault("hidden_act", "quick_gelu")
    return StudioModel(
        num_heads=num_heads, num_head_channels=head_channels,
        unet_groups=int(unet.get("norm_num_groups", 32)), vae_groups=int(vae.get("norm_num_groups", 32)),
        vae_ddconfig=ddconfig, vae_embed_dim=latent, downscale=2 ** (len(vwidths) - 1), latent_channels=latent,
        latent_scale=float(vae.get("scaling_factor", 0.18215)),
        sampling={"beta_schedule": BETA_SCHEDULES[schedule],
                  "linear_start": float(sched.get("beta_start", 0.00085)),
                  "linear_end": float(sched.get("beta_end", 0.012)),
                  "timesteps": int(sched.get("num_train_timesteps", 1000)),
                  "zsnr": bool(sched.get("rescale_betas_zero_snr")) or "ztsnr" in names},
        prediction="v" if pred_name == "v_prediction" else "eps",
        text_config=text_config, max_length=max_length, start_token=int(bos), end_token=int(eos), pad_token=int(pad),
        tokenizer=tokenizer, notes=notes)


def write_tokenizer(tokenizer: dict[str, Any], folder: str | os.PathLike) -> Path:
    """Write the tokenizer carried in the metadata as the files ``CLIPTokenizer.from_pretrained``
    reads (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tokenizer["vocab"], ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(tokenizer["merges"], encoding="utf-8")
    cfg = dict(tokenizer.get("tokenizer_config") or {})
    cfg.setdefault("tokenizer_class", "CLIPTokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    special = tokenizer.get("special_tokens_map") or {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token",
                                                                            "pad_token") if k in cfg}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    return folder
