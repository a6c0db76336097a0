"""Standard model configs and the CLIP tokenizer, shipped with the studio so that single-file
checkpoints load offline without a Hugging Face cache or ``--model-config`` (see ``README.md``
here for where each file comes from).

:func:`config_folder` gives ``from_single_file`` a diffusers config folder for a checkpoint:

1. the file's own metadata, when Implicit Studio exported it (``implicit_studio.diffusers_configs``
   and ``implicit_studio.tokenizer``): the exact model, any size;
2. otherwise the shipped configs of its family (SD 1.x, SD 2.x, SDXL), with every size that the
   tensors show (widths, depths, attention layout, text-encoder sizes, in/out channels) read from
   the file's header, and the prediction type from what peers write: an A1111 sidecar ``.yaml``
   (``parameterization: "v"``), ComfyUI's ``v_pred`` key, ``modelspec.prediction_type``, and for
   SD 2.x the weight statistics ComfyUI also uses.

The folder is written once into the cache, named by the hash of what it holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

HERE = Path(__file__).resolve().parent
CLIP_VOCAB = HERE / "clip_vocab.json"
CLIP_MERGES = HERE / "clip_merges.txt"
FAMILIES = ("sd1", "sd2", "sdxl")
CONFIGS_KEY = "implicit_studio.diffusers_configs"
TOKENIZER_KEY = "implicit_studio.tokenizer"

DM = "model.diffusion_model."
VAE = "first_stage_model."


@functools.lru_cache(maxsize=1)
def clip_vocab() -> dict[str, int]:
    """CLIP's 49,408-token BPE vocabulary (token -> id)."""
    return json.loads(CLIP_VOCAB.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _template_text(family: str) -> str:
    return (HERE / f"{family}.json").read_text(encoding="utf-8")


def template(family: str) -> dict[str, Any]:
    """The shipped diffusers configs of a family (a fresh copy)."""
    if family not in FAMILIES:
        raise ValueError(f"no shipped configs for {family!r} (there are {', '.join(FAMILIES)})")
    return json.loads(_template_text(family))


# ------------------------------------------------------------------------------------------------
# Sizes from the tensor names and shapes
# ------------------------------------------------------------------------------------------------

def _count(shapes: Mapping[str, tuple], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in shapes for m in [rx.match(k)] if m}
    return max(found) + 1 if found else 0


def derive_unet(base: dict, shapes: Mapping[str, tuple], head_dim: int | None) -> dict:
    """The UNet config: ``base`` with the block layout, widths, depths and channels of the file.
    ``head_dim`` None keeps a fixed head count (SD 1.x), else heads = width / head_dim."""
    cfg = dict(base)
    conv_in = shapes[DM + "input_blocks.0.0.weight"]
    cfg["in_channels"] = int(conv_in[1])
    if DM + "out.2.weight" in shapes:
        cfg["out_channels"] = int(shapes[DM + "out.2.weight"][0])
    levels: list[dict] = [{"widths": [], "depths": []}]
    n_in = _count(shapes, re.escape(DM) + r"input_blocks\.(\d+)\.")
    for i in range(1, n_in):
        p = f"{DM}input_blocks.{i}."
        if p + "0.op.weight" in shapes:
            levels.append({"widths": [], "depths": []})
            continue
        levels[-1]["widths"].append(int(shapes[p + "0.out_layers.3.weight"][0]))
        levels[-1]["depths"].append(_count(shapes, re.escape(p) + r"1\.transformer_blocks\.(\d+)\."))
    widths = [lv["widths"][-1] for lv in levels]
    per_level = [len(lv["widths"]) for lv in levels]
    depths = [max(lv["depths"]) for lv in levels]
    cfg["block_out_channels"] = widths
    cfg["layers_per_block"] = per_level[0] if len(set(per_level)) == 1 else per_level
    cfg["down_block_types"] = ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths]
    n_out = _count(shapes, re.escape(DM) + r"output_blocks\.(\d+)\.")
    up_types, step = [], n_out // len(widths) if widths else 1
    for lv in range(len(widths)):
        has = any(f"{DM}output_blocks.{lv * step + j}.1.proj_in.weight" in shapes for j in range(step))
        up_types.append("CrossAttnUpBlock2D" if has else "UpBlock2D")
    cfg["up_block_types"] = up_types
    if any(depths):
        tl = [d or 1 for d in depths]
        cfg["transformer_layers_per_block"] = tl[0] if len(set(tl)) == 1 else tl
        key = next(k for k in shapes if k.startswith(DM) and k.endswith("attn2.to_k.weight"))
        cfg["cross_attention_dim"] = int(shapes[key][1])
        proj = next(k for k in shapes if k.startswith(DM) and k.endswith(".proj_in.weight"))
        cfg["use_linear_projection"] = len(shapes[proj]) == 2
    if head_dim is not None:
        heads = [max(1, w // head_dim) for w in widths]
        cfg["attention_head_dim"] = heads
    if DM + "label_emb.0.0.weight" in shapes:
        cfg["projection_class_embeddings_input_dim"] = int(shapes[DM + "label_emb.0.0.weight"][1])
    return cfg


def derive_vae(base: dict, shapes: Mapping[str, tuple]) -> dict:
    cfg = dict(base)
    n = _count(shapes, re.escape(VAE) + r"encoder\.down\.(\d+)\.")
    cfg["block_out_channels"] = [int(shapes[f"{VAE}encoder.down.{i}.block.0.conv1.weight"][0]) for i in range(n)]
    cfg["layers_per_block"] = _count(shapes, re.escape(VAE) + r"encoder\.down\.0\.block\.(\d+)\.")
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * n
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * n
    cfg["latent_channels"] = int(shapes[VAE + "decoder.conv_in.weight"][1])
    cfg["in_channels"] = int(shapes[VAE + "encoder.conv_in.weight"][1])
    cfg["out_channels"] = int(shapes[VAE + "decoder.conv_out.weight"][0])
    return cfg


def derive_clip(base: dict, shapes: Mapping[str, tuple], prefix: str) -> dict:
    """A CLIP text config from HF-named tensors (``<prefix>embeddings.token_embedding.weight``...)."""
    cfg = dict(base)
    vocab, hidden = shapes[prefix + "embeddings.token_embedding.weight"]
    cfg.update(vocab_size=int(vocab), hidden_size=int(hidden),
               max_position_embeddings=int(shapes[prefix + "embeddings.position_embedding.weight"][0]),
               num_hidden_layers=_count(shapes, re.escape(prefix) + r"encoder\.layers\.(\d+)\."),
               intermediate_size=int(shapes[prefix + "encoder.layers.0.mlp.fc1.weight"][0]),
               num_attention_heads=max(1, int(hidden) // 64))
    return cfg


def derive_open_clip(base: dict, shapes: Mapping[str, tuple], prefix: str, drop_last: bool) -> dict:
    """A CLIP text config from OpenCLIP-named tensors (``<prefix>token_embedding.weight``...);
    ``drop_last`` leaves out the last layer (SD 2.x conditions on the penultimate one)."""
    cfg = dict(base)
    vocab, hidden = shapes[prefix + "token_embedding.weight"]
    layers = _count(shapes, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    cfg.update(vocab_size=int(vocab), hidden_size=int(hidden),
               max_position_embeddings=int(shapes[prefix + "positional_embedding"][0]),
               num_hidden_layers=layers - 1 if drop_last else layers,
               intermediate_size=int(shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]),
               num_attention_heads=max(1, int(hidden) // 64))
    if prefix + "text_projection" in shapes:
        cfg["projection_dim"] = int(shapes[prefix + "text_projection"][1])
    return cfg


def family_of(arch: str) -> str | None:
    """The shipped configs that fit an architecture: SD 1.x-structured files of other widths
    ("sd-custom") take SD 1.x's, with their own sizes read from the file."""
    base = arch.replace("-inpaint", "")
    if base == "sd-custom":
        return "sd1"
    return base if base in FAMILIES else None


def derive_configs(family: str, shapes: Mapping[str, tuple]) -> dict[str, Any]:
    """The family's shipped configs with the sizes of the checkpoint whose tensor shapes these are."""
    cfg = template(family)
    if family == "sd1":
        cfg["unet"] = derive_unet(cfg["unet"], shapes, None)
        prefix = "cond_stage_model.transformer.text_model."
        if prefix + "embeddings.token_embedding.weight" not in shapes:
            prefix = "cond_stage_model.transformer."
        cfg["text_encoder"] = derive_clip(cfg["text_encoder"], shapes, prefix)
    elif family == "sd2":
        cfg["unet"] = derive_unet(cfg["unet"], shapes, 64)
        cfg["text_encoder"] = derive_open_clip(cfg["text_encoder"], shapes, "cond_stage_model.model.", True)
    else:
        cfg["unet"] = derive_unet(cfg["unet"], shapes, 64)
        cfg["text_encoder"] = derive_clip(cfg["text_encoder"], shapes, "conditioner.embedders.0.transformer.text_model.")
        cfg["text_encoder_2"] = derive_open_clip(cfg["text_encoder_2"], shapes, "conditioner.embedders.1.model.", False)
    if VAE + "decoder.conv_in.weight" in shapes:
        cfg["vae"] = derive_vae(cfg["vae"], shapes)
    if cfg["unet"]["in_channels"] == 2 * cfg["vae"]["latent_channels"] + 1:
        cls = cfg["model_index"]["_class_name"]
        cfg["model_index"]["_class_name"] = cls.replace("Pipeline", "InpaintPipeline")
    return cfg


# ------------------------------------------------------------------------------------------------
# Prediction type: what peers write beside or inside the file
# ------------------------------------------------------------------------------------------------

def sidecar_parameterization(path: Path) -> str | None:
    """``"v"`` or ``"eps"`` from an A1111 sidecar yaml (``model.yaml`` beside ``model.safetensors``)
    when it says, else None."""
    yaml_file = path.with_suffix(".yaml")
    if not yaml_file.is_file():
        return None
    try:
        text = yaml_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"^\s*parameterization:\s*[\"']?(\w+)", text, re.MULTILINE)
    if m:
        return "v" if m.group(1).lower() == "v" else "eps"
    return "eps" if re.search(r"^\s*target:\s*ldm\.models\.diffusion\.ddpm\.LatentDiffusion", text, re.MULTILINE) else None


def _sd2_looks_v(path: Path) -> bool:
    """ComfyUI's test for SD 2.x v-prediction models: the spread of one norm's bias."""
    key = DM + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            if key not in f.keys():
                return False
            return float(f.get_tensor(key).float().std(unbiased=False)) > 0.09
    except Exception:  # noqa: BLE001 - a heuristic only
        return False


def prediction_type(path: Path, shapes: Mapping[str, tuple], metadata: Mapping[str, str], family: str,
                    default: str) -> tuple[str, str]:
    """(prediction type, where it was read) for a standard checkpoint."""
    side = sidecar_parameterization(path)
    if side is not None:
        return ("v_prediction" if side == "v" else "epsilon"), f"{path.with_suffix('.yaml').name} parameterization"
    if "v_pred" in shapes:
        return "v_prediction", "the v_pred key"
    spec = str(metadata.get("modelspec.prediction_type", "")).lower()
    if spec in ("v", "v_prediction", "epsilon", "eps"):
        return ("v_prediction" if spec.startswith("v") else "epsilon"), "modelspec.prediction_type"
    if family == "sd2":
        inpaint = int(shapes[DM + "input_blocks.0.0.weight"][1]) != 4
        if not inpaint and _sd2_looks_v(path):
            return "v_prediction", "its weights (SD 2.x 768-v)"
        return "epsilon", "its weights (SD 2.x base)"
    return default, "the family default"


# ------------------------------------------------------------------------------------------------
# The folder from_single_file reads
# ------------------------------------------------------------------------------------------------

def _tokenizer_files(tok_cfg: dict, tokenizer: dict | None) -> dict[str, str]:
    if tokenizer is not None:
        cfg = dict(tokenizer.get("tokenizer_config") or tok_cfg)
        special = tokenizer.get("special_tokens_map") or {k: cfg[k] for k in
                                                           ("bos_token", "eos_token", "unk_token", "pad_token")
                                                           if k in cfg}
        vocab, merges = json.dumps(tokenizer["vocab"], ensure_ascii=False), tokenizer["merges"]
    else:
        cfg = dict(tok_cfg)
        special = {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in cfg}
        vocab, merges = CLIP_VOCAB.read_text(encoding="utf-8"), CLIP_MERGES.read_text(encoding="utf-8")
    cfg.setdefault("tokenizer_class", "CLIPTokenizer")
    return {"vocab.json": vocab, "merges.txt": merges, "tokenizer_config.json": json.dumps(cfg, indent=1),
            "special_tokens_map.json": json.dumps(special, indent=1)}


def _files_of(configs: dict[str, Any], tokenizer: dict | None) -> dict[str, str]:
    files: dict[str, str] = {"model_index.json": json.dumps(configs["model_index"], indent=1)}
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if part in configs:
            files[f"{part}/config.json"] = json.dumps(configs[part], indent=1, sort_keys=True)
    files["scheduler/scheduler_config.json"] = json.dumps(configs["scheduler"], indent=1, sort_keys=True)
    for part in ("tokenizer", "tokenizer_2"):
        if part in configs:
            for name, text in _tokenizer_files(configs[part], tokenizer if part == "tokenizer" else None).items():
                files[f"{part}/{name}"] = text
    return files


def write_folder(files: dict[str, str], root: Path) -> Path:
    """Write ``files`` into ``root/<hash of the files>`` once; return that folder."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode("utf-8") + b"\0")
    folder = root / digest.hexdigest()[:24]
    if (folder / "model_index.json").is_file():
        return folder
    tmp = root / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, text in files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # written meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def studio_configs(metadata: Mapping[str, str]) -> tuple[dict[str, Any], dict | None] | None:
    """(configs incl. model_index, tokenizer) from an Implicit Studio export's metadata, or None."""
    raw = metadata.get(CONFIGS_KEY)
    if not raw:
        return None
    try:
        configs = json.loads(raw)
        tokenizer = json.loads(metadata[TOKENIZER_KEY]) if metadata.get(TOKENIZER_KEY) else None
        for part in ("unet", "vae", "text_encoder", "scheduler"):
            if not isinstance(configs.get(part), dict):
                raise KeyError(part)
    except (ValueError, KeyError, TypeError):
        return None
    if tokenizer is None and int(configs["text_encoder"].get("vocab_size", 49408)) != len(clip_vocab()):
        return None  # an export from before the tokenizer travelled with the file: not rebuildable
    base = template("sd1")
    index = dict(base["model_index"])
    sched = configs["scheduler"] or base["scheduler"]
    index["scheduler"] = ["diffusers", sched.get("_class_name") or "DDIMScheduler"]
    if configs["unet"].get("in_channels") == 2 * configs["vae"].get("latent_channels", 4) + 1:
        index["_class_name"] = "StableDiffusionInpaintPipeline"
    tok = dict(base["tokenizer"])
    text = configs["text_encoder"]
    tok["model_max_length"] = int(text.get("max_position_embeddings", 77))
    return {"model_index": index, "unet": configs["unet"], "vae": configs["vae"], "text_encoder": text,
            "scheduler": sched, "tokenizer": tok}, tokenizer


def config_folder(path: str | os.PathLike, arch: str, shapes: Mapping[str, tuple], metadata: Mapping[str, str],
                  cache: Path) -> tuple[Path, str] | None:
    """(a diffusers config folder for the checkpoint at ``path``, a sentence saying where its
    configs came from), or None when neither its metadata nor a shipped family describes it."""
    path = Path(path)
    own = studio_configs(metadata)
    if own is not None:
        configs, tokenizer = own
        return write_folder(_files_of(configs, tokenizer), cache), "the configs in the file's own metadata"
    family = family_of(arch)
    if family is None or CONFIGS_KEY in metadata:
        return None
    try:
        configs = derive_configs(family, shapes)
    except (KeyError, StopIteration, IndexError, ValueError):
        return None
    vocabs = [configs[t]["vocab_size"] for t in ("text_encoder", "text_encoder_2") if t in configs]
    if any(v != len(clip_vocab()) for v in vocabs):
        return None  # its own tokenizer is not in the file
    pred, source = prediction_type(path, shapes, metadata, family, configs["scheduler"]["prediction_type"])
    configs["scheduler"]["prediction_type"] = pred
    note = (f"the shipped {family.upper()} configs with the file's sizes (GroupNorm groups, attention heads and "
            f"latent scale as {family.upper()}'s); prediction type {pred} from {source}")
    return write_folder(_files_of(configs, None), cache), note
