"""Finding, classifying, hashing and loading diffusion models, offline.

Accepted models:

- a diffusers folder (``model_index.json``): SD 1.x/2.x (and inpainting), SDXL, SD3, FLUX and
  few-step variants (LCM, Turbo...), loaded with the diffusers auto pipelines;
- a single-file ``.safetensors`` checkpoint: its architecture is read from the tensor names and
  shapes in the file header (no weights are read for that);
- a pickled ``.ckpt``/``.bin``/``.pt`` checkpoint only with ``allow_pickle=True``, read with
  ``torch.load(weights_only=True)`` and converted once to safetensors in the cache.

Everything is loaded with ``local_files_only=True``; nothing is downloaded. Loaded pipelines are
cached by (path, fingerprint, device, dtype, options). The fingerprint is the studio's one model
fingerprint, :func:`app.api.model_fingerprint`, so the run's row, its PNG metadata and the ONNX
exports all name a model the same way. Model *names* such as ``"default"`` are resolved by the run
context (:meth:`app.api.RunContext.resolve_model`); the functions here take local paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from app.api import RunContext, ToolError, model_fingerprint

from .errors import ModelError
from .hf_cache import hf_cache_snapshots

_log = logging.getLogger("implicit_studio.diffusion.models")

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")

#: Architecture id -> human name.
ARCH_NAMES = {
    "sd1": "Stable Diffusion 1.x",
    "sd1-inpaint": "Stable Diffusion 1.x inpainting",
    "sd2": "Stable Diffusion 2.x",
    "sd2-inpaint": "Stable Diffusion 2.x inpainting",
    "sd-custom": "Stable-Diffusion-structured model",
    "sd-custom-inpaint": "Stable-Diffusion-structured inpainting model",
    "sdxl": "Stable Diffusion XL",
    "sdxl-inpaint": "Stable Diffusion XL inpainting",
    "sdxl-refiner": "Stable Diffusion XL refiner",
    "sd3": "Stable Diffusion 3",
    "flux": "FLUX",
    "onnx-sd": "ONNX Stable Diffusion export",
}

#: The diffusers pipeline class that loads each architecture from a single file.
_SINGLE_FILE_CLASS = {
    "sd1": "StableDiffusionPipeline",
    "sd2": "StableDiffusionPipeline",
    "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "sd2-inpaint": "StableDiffusionInpaintPipeline",
    "sd-custom": "StableDiffusionPipeline",
    "sd-custom-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}


@dataclass
class ModelInfo:
    """What a model path is: ``format`` (``diffusers``, ``single-file``, ``onnx``), ``arch`` (a
    key of :data:`ARCH_NAMES`), ``family`` (``sd``, ``sdxl``, ``sd3``, ``flux``), the pipeline
    class, whether it is an inpainting model, and notes found on the way."""

    path: Path
    format: str
    arch: str
    family: str
    pipeline_class: str = ""
    inpainting: bool = False
    pickled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def arch_name(self) -> str:
        return ARCH_NAMES.get(self.arch, self.arch)


# ------------------------------------------------------------------------------------------------
# Resolving a model reference
# ------------------------------------------------------------------------------------------------

def local_model_path(ref: str | os.PathLike) -> Path:
    """The local file or folder ``ref`` names, by the studio's one model resolution (a name such
    as ``"default"`` resolves only in a run context wired to the plugins: pass
    ``ctx.resolve_model(name)`` here). Raises :class:`ModelError` with the studio's message."""
    try:
        return RunContext().resolve_model(ref)
    except ToolError as exc:
        raise ModelError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# safetensors headers and classification
# ------------------------------------------------------------------------------------------------

def _raw_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], int, int]:
    """(the header JSON, its length, the file size) of a safetensors file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path.name} is not a safetensors file: it is only {size} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n <= 1 or n > min(size - 8, 100_000_000):
                raise ModelError(f"{path.name} is not a valid safetensors file (corrupt or truncated "
                                 f"header: claims {n} header bytes in a {size}-byte file)")
            raw = f.read(n)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path.name} is not a valid safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path.name} is not a valid safetensors file (header is not a table)")
    return header, n, size


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` text entries of a safetensors file (``{}`` when it has none)."""
    header, _, _ = _raw_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def read_safetensors_header(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Tensor name -> {"dtype", "shape"} from a safetensors file's header, without reading any
    weights. Raises :class:`ModelError` for a file that is not a valid safetensors file."""
    path = Path(path)
    header, n, size = _raw_safetensors_header(path)
    out = {}
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(meta, dict) or "shape" not in meta:
            raise ModelError(f"{path.name} is not a valid safetensors file (bad entry for {name!r})")
        out[name] = {"dtype": meta.get("dtype"), "shape": tuple(meta["shape"])}
        offsets = meta.get("data_offsets") or (0, 0)
        end = max(end, int(offsets[1]))
    if 8 + n + end > size:
        raise ModelError(f"{path.name} is truncated: the header needs {8 + n + end} bytes, the file has {size}")
    return out


def _summarise_keys(keys) -> str:
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
    return ", ".join(f"{p}.* ({c})" for p, c in top) or "no tensors"


def classify_state_dict(shapes: Mapping[str, tuple], name: str = "checkpoint") -> ModelInfo:
    """Classify a checkpoint from its tensor names and shapes (a safetensors header or a loaded
    state dict's ``{name: shape}``). Raises :class:`ModelError` saying what was found when it is
    not a complete diffusion checkpoint of a known architecture."""
    keys = list(shapes)
    if not keys:
        raise ModelError(f"{name} holds no tensors")
    kset = set(keys)

    def has_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    def has_part(part: str) -> bool:
        return any(part in k for k in keys)

    if has_prefix("lora_unet") or has_prefix("lora_te") or has_part(".lora_down.") or has_part(".lora_A.") \
            or has_part("lora_B.weight"):
        raise ModelError(f"{name} is a LoRA (found lora_* tensors), not a full model: apply it to a base "
                         "model as a LoRA instead")
    dm = "model.diffusion_model."
    # FLUX: double/single stream blocks, with or without the diffusion_model prefix
    if any(k.startswith(("double_blocks.", dm + "double_blocks.")) for k in keys) and \
            any(k.startswith(("single_blocks.", dm + "single_blocks.")) for k in keys):
        return ModelInfo(Path(name), "single-file", "flux", "flux", _SINGLE_FILE_CLASS["flux"],
                         notes=["found double_blocks.* and single_blocks.* (FLUX transformer)"])
    if has_prefix(dm + "joint_blocks.") or has_prefix("joint_blocks."):
        return ModelInfo(Path(name), "single-file", "sd3", "sd3", _SINGLE_FILE_CLASS["sd3"],
                         notes=["found joint_blocks.* (SD3 MMDiT)"])
    conv_in = shapes.get(dm + "input_blocks.0.0.weight")
    if conv_in is not None:
        in_ch = int(conv_in[1]) if len(conv_in) > 1 else 4
        # the VAE's latent channels when the file has the VAE (4 in SD; other widths are custom models)
        vae_in = shapes.get("first_stage_model.decoder.conv_in.weight")
        latent = int(vae_in[1]) if vae_in is not None and len(vae_in) > 1 else 4
        inpaint = in_ch == 2 * latent + 1
        if in_ch not in (latent, 2 * latent + 1):
            raise ModelError(f"{name} is a UNet checkpoint with {in_ch} input channels ({latent} = text-to-image, "
                             f"{2 * latent + 1} = inpainting are supported; {2 * latent} is InstructPix2Pix, "
                             "not supported)")
        if has_prefix(dm + "label_emb.") or has_prefix("conditioner.embedders."):
            if has_prefix("conditioner.embedders.1.") or not has_prefix("conditioner.embedders.0.model."):
                arch = "sdxl-inpaint" if inpaint else "sdxl"
            else:
                arch = "sdxl-refiner"
            return ModelInfo(Path(name), "single-file", arch, "sdxl", _SINGLE_FILE_CLASS[arch], inpainting=inpaint,
                             notes=[f"found label_emb/conditioner tensors (SDXL), UNet input channels {in_ch}"])
        ctx = None
        for k in keys:
            if k.startswith(dm) and k.endswith("attn2.to_k.weight"):
                ctx = int(shapes[k][1])
                break
        if ctx is None:
            if has_prefix("cond_stage_model.transformer."):
                ctx = 768
            elif has_prefix("cond_stage_model.model."):
                ctx = 1024
        clip_norm = shapes.get("cond_stage_model.transformer.text_model.final_layer_norm.weight")
        open_clip = shapes.get("cond_stage_model.model.token_embedding.weight")
        if latent == 4 and ctx == 768:
            arch = "sd1"
        elif latent == 4 and ctx == 1024:
            arch = "sd2"
        elif ctx is not None and open_clip is not None and int(open_clip[1]) == ctx:
            arch = "sd2"  # SD 2.x structure (OpenCLIP text encoder) with other widths
        elif ctx is not None and clip_norm is not None and int(clip_norm[0]) == ctx:
            # SD 1.x structure (CLIP text encoder in the file) with other widths, e.g. the bundled model
            arch = "sd-custom"
        else:
            raise ModelError(f"{name} has a Stable Diffusion UNet but its text conditioning size is "
                             f"{ctx if ctx is not None else 'unknown'} (768 = SD1, 1024 = SD2 are known)")
        if inpaint:
            arch += "-inpaint"
        missing = [part for part, prefix in (("VAE", "first_stage_model."), ("text encoder", "cond_stage_model."))
                   if not has_prefix(prefix)]
        info = ModelInfo(Path(name), "single-file", arch, "sd", _SINGLE_FILE_CLASS[arch], inpainting=inpaint,
                         notes=[f"found model.diffusion_model.* with {in_ch} input channels and "
                                f"cross-attention size {ctx}"])
        if missing:
            info.notes.append("missing " + " and ".join(missing) + " tensors; they must come from the config model")
        return info
    if has_prefix("encoder.down.") and has_prefix("decoder.up.") and not has_prefix(dm):
        raise ModelError(f"{name} is a VAE on its own (found encoder.down.* and decoder.up.*), not a full model")
    if has_prefix("down_blocks.") and has_prefix("up_blocks.") and has_prefix("conv_in."):
        raise ModelError(f"{name} is a single diffusers component (found down_blocks.*, up_blocks.*, conv_in.*): "
                         "open the whole diffusers folder (the one with model_index.json) instead")
    if has_prefix("text_model.") and not has_prefix(dm):
        raise ModelError(f"{name} is a text encoder on its own (found text_model.*), not a full model")
    raise ModelError(f"cannot tell what kind of model {name} is: found {len(keys)} tensors "
                     f"({_summarise_keys(keys)}) but none of the tensor names of SD 1.x/2.x, SDXL, SD3 or "
                     "FLUX checkpoints (model.diffusion_model.input_blocks.*, joint_blocks.*, double_blocks.*)")


# ------------------------------------------------------------------------------------------------
# Inspecting a model path
# ------------------------------------------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{what}: {path.name} is missing in {path.parent}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{what}: {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{what}: {path} does not hold a JSON object")
    return data


def inspect_diffusers_folder(path: Path) -> ModelInfo:
    """Classify a diffusers folder from its ``model_index.json`` and UNet config."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        onnx_unet = path / "unet" / "model.onnx"
        if onnx_unet.is_file():
            return ModelInfo(path, "onnx", "onnx-sd", "sd", "OnnxStableDiffusionPipeline")
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise ModelError(f"{path} is not a diffusers model folder: it has no model_index.json (found: {found})")
    index = _read_json(index_file, "model folder")
    cls = str(index.get("_class_name", ""))
    missing = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, (list, tuple)) or spec[0] is None:
            continue
        if not (path / name).is_dir():
            missing.append(name)
    if missing:
        raise ModelError(f"{path} is an incomplete diffusers folder: model_index.json lists "
                         f"{', '.join(missing)} but the folder(s) are missing")
    if cls.startswith("Onnx"):
        return ModelInfo(path, "onnx", "onnx-sd", "sd", cls)
    if "Flux" in cls:
        return ModelInfo(path, "diffusers", "flux", "flux", cls)
    if "StableDiffusion3" in cls:
        return ModelInfo(path, "diffusers", "sd3", "sd3", cls)
    if "XL" in cls:
        unet_cfg = _read_json(path / "unet" / "config.json", "UNet") if (path / "unet").is_dir() else {}
        inpaint = unet_cfg.get("in_channels") == 9
        return ModelInfo(path, "diffusers", "sdxl-inpaint" if inpaint else "sdxl", "sdxl", cls, inpainting=inpaint)
    if "StableDiffusion" in cls or "LatentConsistency" in cls:
        unet_cfg = _read_json(path / "unet" / "config.json", "UNet")
        ctx = unet_cfg.get("cross_attention_dim")
        in_ch = unet_cfg.get("in_channels", 4)
        arch = {768: "sd1", 1024: "sd2"}.get(ctx, "sd-custom")
        inpaint = in_ch == 9
        if inpaint:
            arch += "-inpaint"
        return ModelInfo(path, "diffusers", arch, "sd", cls, inpainting=inpaint,
                         notes=[f"UNet cross-attention size {ctx}, {in_ch} input channels"])
    raise ModelError(f"{path}: pipeline class {cls or '(none)'} in model_index.json is not a text-to-image "
                     "pipeline this studio can run (SD 1.x/2.x, SDXL, SD3, FLUX)")


def inspect_model(ref: str | os.PathLike) -> ModelInfo:
    """Classify a local model (folder or file) without loading weights."""
    path = local_model_path(ref)
    if path.is_dir():
        return inspect_diffusers_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        shapes = {k: v["shape"] for k, v in read_safetensors_header(path).items()}
        info = classify_state_dict(shapes, path.name)
        info.path = path
        return info
    if suffix in PICKLE_SUFFIXES:
        info = ModelInfo(path, "single-file", "unknown", "unknown", pickled=True,
                         notes=["pickled checkpoint: classified after it is read with weights_only=True"])
        return info
    if suffix == ".onnx":
        raise ModelError(f"{path.name} is a single ONNX graph; choose the folder of the ONNX export "
                         "(text_encoder/, unet/, vae_decoder/)")
    raise ModelError(f"{path.name}: unsupported model file type {suffix or '(none)'} "
                     "(use a diffusers folder or a .safetensors checkpoint)")


# ------------------------------------------------------------------------------------------------
# Pickled checkpoints
# ------------------------------------------------------------------------------------------------

def read_pickled_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> dict:
    """The tensors of a pickled checkpoint, read with ``torch.load(weights_only=True)``. Refused
    (``ModelError``) unless ``allow_pickle``."""
    path = Path(path)
    if not allow_pickle:
        raise ModelError(f"{path.name} is a pickled checkpoint ({path.suffix}); pickle files can run code "
                         "when opened, so they are refused. Convert it to .safetensors, or allow pickled "
                         "checkpoints explicitly (they are then read with torch.load(weights_only=True))")
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for non-tensor objects, or corrupt files
        raise ModelError(f"{path.name} could not be read safely with weights_only=True: {exc}".split("\n")[0]) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of tensors (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path.name} holds no tensors")
    return tensors


def pickled_to_safetensors(path: str | os.PathLike, allow_pickle: bool = False,
                           cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert a pickled checkpoint once into ``<cache_dir>/converted/<sha256>.safetensors``
    (``cache_dir``: the run's ``ctx.cache_dir``; default: :func:`default_cache_dir`)."""
    from safetensors.torch import save_file

    path = Path(path)
    digest = model_fingerprint(path) if allow_pickle else None
    tensors = read_pickled_checkpoint(path, allow_pickle)
    out_dir = Path(cache_dir or default_cache_dir()) / "converted"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{digest}.safetensors"
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

@dataclass
class LoadOptions:
    """Memory options applied after loading: attention slicing, VAE tiling, model CPU offload
    (CUDA only), and an optional diffusers config folder for single-file checkpoints."""

    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    config: str | None = None

    def key(self) -> tuple:
        return (self.attention_slicing, self.vae_tiling, self.cpu_offload, self.config)


@dataclass
class LoadedModel:
    """A loaded pipeline with what it is, where it runs and its content hash."""

    pipe: Any
    info: ModelInfo
    hash: str
    device: str
    dtype: str
    scheduler_config: dict = field(default_factory=dict)

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8) or 8)


_load_lock = threading.RLock()
_pipeline_cache: "OrderedDict[tuple, LoadedModel]" = OrderedDict()
PIPELINE_CACHE_SIZE = 2


def clear_pipeline_cache() -> None:
    with _load_lock:
        _pipeline_cache.clear()


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors of torch (CUDA/MPS) or the host."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def oom_error(exc: BaseException, device: str, what: str = "generation") -> ModelError:
    return ModelError(f"out of memory on {device} during {what}: try a smaller size or batch, float16, "
                      "attention slicing, VAE tiling or CPU offload")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (diffusers' lazy modules wrap an ImportError in a
    RuntimeError whose first line only says "look up to see its traceback")."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def load_failure(exc: BaseException, path: Path) -> ModelError:
    """A ModelError for a pipeline that failed to load: a broken installation (a library that
    does not import) is named as such, not blamed on the model folder."""
    root = _root_cause(exc)
    if isinstance(root, ImportError) or "Failed to import" in str(exc):
        if root is not exc:  # the wrapped error itself, on one line
            detail = " ".join(str(root).split()) or type(root).__name__
        else:  # an unchained wrapper: its last line carries the error
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            detail = lines[-1] if lines else type(exc).__name__
        return ModelError(f"could not load the model at {path}: a library it needs does not import, so the "
                          f"installation is incomplete, not the model ({type(root).__name__}: {detail[:300]})")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(f"could not load the model at {path}: it looks corrupt or incomplete ({first})")


def find_local_config(arch: str) -> Path | None:
    """A diffusers folder of architecture ``arch`` in the Hugging Face cache (offline), to serve as
    the config of a single-file checkpoint."""
    base = arch.replace("-inpaint", "")
    if base == "sd-custom":  # its sizes are its own: another custom model's config would not fit
        return None
    for _name, folder in hf_cache_snapshots():
        try:
            info = inspect_diffusers_folder(folder)
        except ModelError:
            continue
        if info.arch == arch or (info.arch.replace("-inpaint", "") == base and not arch.endswith("inpaint")):
            return folder
    return None


def dtype_kwargs(torch_dtype) -> dict:
    """``{"dtype": ...}`` for diffusers versions that renamed ``torch_dtype``, else ``{"torch_dtype": ...}``."""
    try:
        from diffusers.utils import deprecation_utils

        if hasattr(deprecation_utils, "_resolve_dtype"):
            return {"dtype": torch_dtype}
    except ImportError:
        pass
    return {"torch_dtype": torch_dtype}


def single_file_config(path: Path, info: ModelInfo,
                       cache_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """A diffusers config folder for a single-file checkpoint, offline: its own metadata when the
    studio exported it, else the shipped SD 1.x/2.x/SDXL configs with the sizes its tensors show
    (``plugins.diffusion_common.standard``), else a model of its architecture in the Hugging Face
    cache. Returns (folder or None, where its configs came from); configs built from the shipped
    ones are kept in ``cache_dir`` (the run's ``ctx.cache_dir``; default: :func:`default_cache_dir`)."""
    from .standard import config_folder

    shapes = {k: v["shape"] for k, v in read_safetensors_header(path).items()}
    found = config_folder(path, info.arch, shapes, read_safetensors_metadata(path),
                          Path(cache_dir or default_cache_dir()) / "single-file-configs")
    if found is not None:
        return found
    local = find_local_config(info.arch)
    return local, ("a model of the same architecture in the Hugging Face cache" if local else "")


def _load_single_file(path: Path, info: ModelInfo, torch_dtype, options: LoadOptions,
                      cache_dir: str | os.PathLike | None = None):
    import diffusers

    cls = getattr(diffusers, info.pipeline_class)
    config = options.config
    if config is None:
        config, source = single_file_config(path, info, cache_dir)
        if config is not None:
            info.notes.append(f"configs: {source}")
    kwargs: dict[str, Any] = {**dtype_kwargs(torch_dtype), "local_files_only": True}
    if config is not None:
        kwargs["config"] = str(config)
    try:
        return cls.from_single_file(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - turned into a message
        if is_oom(exc):
            raise
        hint = ("" if config is not None else
                f" diffusers needs the configuration of a {info.arch_name} model to build the pipeline; none was "
                "found in the Hugging Face cache. Give a diffusers folder of the same architecture as the model's "
                "config (--model-config on the command line, 'model config' in the tool's advanced options).")
        if config is None and info.arch.startswith("sd-custom"):
            hint = (" Its layer sizes are not those of a standard SD 1.x/2.x model, so diffusers needs the "
                    "diffusers folder it was made from (or one of identical sizes) as its config (--model-config on "
                    "the command line, 'model config' in the tool's advanced options).")
        raise ModelError(f"could not load {path.name} as a {info.arch_name} checkpoint offline.{hint} "
                         f"Cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def load_pipeline(ref: str | os.PathLike, device: str = "cpu", dtype: str = "float32",
                  allow_pickle: bool = False, options: LoadOptions | None = None,
                  cache_dir: str | os.PathLike | None = None) -> LoadedModel:
    """Load (or take from the cache) the text-to-image pipeline of a local model, on ``device``
    in ``dtype``. Raises :class:`ModelError` with a sentence for every failure. ``cache_dir``
    receives converted pickled checkpoints (see :func:`pickled_to_safetensors`) and the configs of
    single files built from the shipped standard ones."""
    options = options or LoadOptions()
    path = local_model_path(ref)
    info = inspect_model(path)
    source = path
    if info.pickled:
        source = pickled_to_safetensors(path, allow_pickle, cache_dir)
        shapes = {k: v["shape"] for k, v in read_safetensors_header(source).items()}
        info = classify_state_dict(shapes, path.name)
        info.path, info.pickled = path, True
    if info.format == "onnx":
        raise ModelError(f"{path} is an ONNX export; use it with the ONNX backend of the base model instead")
    digest = model_fingerprint(path)
    key = (str(path.resolve()), digest, device, dtype, options.key())
    with _load_lock:
        hit = _pipeline_cache.get(key)
        if hit is not None:
            _pipeline_cache.move_to_end(key)
            return hit
        import torch

        torch_dtype = getattr(torch, dtype)
        if info.format == "diffusers":
            refuse_pickled_components(path, allow_pickle)
        try:
            if info.format == "single-file":
                pipe = _load_single_file(source, info, torch_dtype, options, cache_dir)
            else:
                from diffusers import AutoPipelineForText2Image, DiffusionPipeline

                try:
                    pipe = AutoPipelineForText2Image.from_pretrained(str(path), local_files_only=True,
                                                                     **dtype_kwargs(torch_dtype))
                except ValueError:
                    # pipelines the auto table does not know (e.g. custom SD-structured ones)
                    pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True,
                                                             **dtype_kwargs(torch_dtype))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            if is_oom(exc):
                raise oom_error(exc, device, "model loading") from exc
            raise load_failure(exc, path) from exc
        try:
            if getattr(pipe, "safety_checker", None) is not None:
                pipe.safety_checker = None
            if options.cpu_offload and device.startswith("cuda"):
                pipe.enable_model_cpu_offload(device=device)
            else:
                if options.cpu_offload:
                    _log.info("CPU offload applies to CUDA devices only; ignored on %s", device)
                pipe.to(device)
            if options.attention_slicing:
                pipe.enable_attention_slicing()
            if options.vae_tiling and getattr(pipe, "vae", None) is not None:
                pipe.vae.enable_tiling()
            if hasattr(pipe, "set_progress_bar_config"):
                pipe.set_progress_bar_config(disable=True)
        except Exception as exc:  # noqa: BLE001
            if is_oom(exc):
                raise oom_error(exc, device, "model loading") from exc
            raise
        check_finite_weights(pipe, path if info.format == "diffusers" else None, path)
        sched = getattr(pipe, "scheduler", None)
        loaded = LoadedModel(pipe=pipe, info=info, hash=digest, device=device, dtype=dtype,
                             scheduler_config=dict(sched.config) if sched is not None else {})
        _pipeline_cache[key] = loaded
        while len(_pipeline_cache) > PIPELINE_CACHE_SIZE:
            _pipeline_cache.popitem(last=False)
        return loaded


def load_sd_model(ref: str | os.PathLike, device: str = "cpu", dtype: str = "float32") -> tuple[Any, str]:
    """(pipeline, fingerprint) of a Stable-Diffusion-structured local model (a UNet with
    cross-attention, a VAE and one CLIP text encoder), which the editing tools (h-Edit,
    inpainting) need; :class:`ModelError` for any other model."""
    loaded = load_pipeline(ref, device=device, dtype=dtype)
    pipe = loaded.pipe
    if loaded.info.family != "sd" or not all(hasattr(pipe, a) for a in ("unet", "vae", "text_encoder", "tokenizer")):
        raise ModelError(
            f"{loaded.info.arch_name} is not supported here: h-Edit and inpainting need a "
            "Stable-Diffusion-1/2-structured model (UNet, VAE, one CLIP text encoder)"
        )
    return pipe, loaded.hash


def default_cache_dir() -> Path:
    """The cache folder of this shared library for callers outside a run (scripts, tests) that
    give none; a run passes its own ``ctx.cache_dir``."""
    return RunContext(plugin="diffusion_common").cache_dir


def refuse_pickled_components(folder: Path, allow_pickle: bool = False) -> None:
    """Refuse a diffusers folder whose component holds its weights only in a pickle file
    (``diffusion_pytorch_model.bin``...), before anything is loaded: pickle files can run code
    when opened. With ``allow_pickle`` they are read by diffusers with ``torch.load``."""
    if allow_pickle:
        return
    for part in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = [f for f in part.iterdir() if f.is_file()]
        if any(f.suffix == ".safetensors" for f in files):
            continue
        pickled = sorted(f for f in files if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise ModelError(f"{part.name}/{pickled[0].name} in {folder} is a pickled weights file and there is no "
                             ".safetensors beside it; pickle files can run code when opened, so it was refused "
                             "before loading. Convert it to .safetensors, or allow pickled checkpoints explicitly "
                             "(they are then read with torch.load(weights_only=True))")


COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def check_finite_weights(pipe, folder: Path | None, source: Path) -> None:
    """Refuse weights holding NaN or infinity (a damaged or badly converted model draws black
    pictures). One pass over the weights when the model is loaded; names the file."""
    import torch

    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        for pname, param in module.named_parameters():
            if torch.isfinite(param).all():
                continue
            where = source
            if folder is not None:
                files = sorted((folder / name).glob("*.safetensors")) or sorted((folder / name).glob("*"))
                where = Path(name) / files[0].name if files else Path(name)
                where = f"{where} in {folder}"
            raise ModelError(f"the weights of the {name} ({where}) hold NaN or infinite values (tensor {pname}); "
                             "the model cannot make pictures. Download or export it again")


def check_finite_output(values, path: Path, what: str) -> None:
    """Refuse a NaN/inf output (it would be saved as a black picture recorded as a success)."""
    import torch

    finite = torch.isfinite(values).all() if isinstance(values, torch.Tensor) else bool(
        __import__("numpy").isfinite(values).all())
    if not finite:
        raise ModelError(f"the model at {path} produced NaN or infinite values in {what}, so its picture would "
                         "be black; its weights may be damaged or overflow in this precision (try float32)")


# ------------------------------------------------------------------------------------------------
# LoRA
# ------------------------------------------------------------------------------------------------

def apply_loras(pipe, loras: list[tuple[str, float]] | None) -> list[str]:
    """Load LoRA files (``[(path, weight), ...]``) into ``pipe`` and activate them with their
    weights; returns the adapter names (pass them to :func:`remove_loras` after the run)."""
    if not loras:
        return []
    names = []
    weights = []
    for i, (lora_path, weight) in enumerate(loras):
        p = Path(lora_path).expanduser()
        if not p.is_file():
            raise ModelError(f"LoRA file not found: {p}")
        if p.suffix.lower() != ".safetensors":
            raise ModelError(f"LoRA {p.name}: only .safetensors LoRA files are loaded")
        header = read_safetensors_header(p)
        if not any("lora" in k.lower() for k in header):
            raise ModelError(f"{p.name} is not a LoRA file (no lora tensors; found {_summarise_keys(header)})")
        name = f"lora{i}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
        try:
            pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=name, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            remove_loras(pipe, names)
            raise ModelError(f"could not apply LoRA {p.name} to this model: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        names.append(name)
        weights.append(float(weight))
    pipe.set_adapters(names, adapter_weights=weights)
    return names


def remove_loras(pipe, names: list[str]) -> None:
    """Undo :func:`apply_loras` so the cached pipeline is clean for the next run."""
    if not names:
        return
    try:
        pipe.delete_adapters(names)
    except Exception:  # noqa: BLE001
        try:
            pipe.unload_lora_weights()
        except Exception as exc:  # noqa: BLE001
            _log.warning("could not remove LoRA adapters: %s", exc)
