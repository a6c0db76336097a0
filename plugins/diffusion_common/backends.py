"""The two compute backends of SD-structured models (SD 1.x/2.x, the bundled model, LCM/Turbo
variants of them): torch and ONNX Runtime, behind one small interface so that one sampling loop
(:mod:`.sampling`, using the diffusers scheduler objects) drives both.

Interface of a backend: ``encode_prompt(prompts, clip_skip) -> embeddings``,
``unet(sample, t, embeddings) -> model output``, ``decode(latents) -> images in [-1, 1]``,
``encode(images) -> latents`` (posterior mean, scaled), and the facts ``vae_scale_factor``,
``latent_channels``, ``scaling_factor``, ``scheduler_config``, ``size_multiple``, ``device``.
Latents and embeddings are torch tensors on the host side of both backends.

The ONNX export (:func:`export_onnx`) writes the diffusers ONNX layout (``text_encoder/``,
``unet/``, ``vae_decoder/``, ``vae_encoder/`` each with ``model.onnx``, plus ``tokenizer/`` and
``scheduler/``) under ``<cache>/onnx/<model hash>/``, once per model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

from app.api import ParamError

from .errors import ModelError

_log = logging.getLogger("implicit_studio.diffusion.backends")

ONNX_OPSET = 17
EXPORT_FORMAT_VERSION = 2


def final_layer_norm(text_encoder):
    """The final layer norm of a CLIP text encoder (``text_model.final_layer_norm`` in
    transformers 4, a direct child in transformers 5)."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


class TokenizerMixin:
    tokenizer: Any

    def tokenize(self, prompts: list[str]):
        """Token ids padded to the tokenizer's max length, and the prompts that were truncated."""
        tok = self.tokenizer
        max_len = int(getattr(tok, "model_max_length", 77) or 77)
        if max_len > 4096:  # tokenizers without a configured length
            max_len = 77
        enc = tok(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="np")
        full = tok(prompts, padding="longest", return_tensors="np")
        truncated = [p for p, row in zip(prompts, full["input_ids"]) if row.shape[-1] > max_len]
        return enc["input_ids"], truncated


def _first_dtype(module):
    for p in module.parameters():
        return p.dtype
    return module.dtype


class TorchSDBackend(TokenizerMixin):
    """Runs a loaded diffusers SD-structured pipeline's modules directly."""

    name = "torch"

    def __init__(self, loaded):
        self.loaded = loaded
        pipe = loaded.pipe
        for part in ("tokenizer", "text_encoder", "unet", "vae", "scheduler"):
            if getattr(pipe, part, None) is None:
                raise ModelError(f"the model at {loaded.info.path} has no {part}; it cannot run text-to-image")
        self.pipe = pipe
        self.tokenizer = pipe.tokenizer
        self.device = loaded.device
        # the first parameter's dtype: diffusers' ``.dtype`` property walks every parameter, which costs
        # a one-step student's draw as much as a tenth of its UNet call
        self.dtype = _first_dtype(pipe.unet)
        self.vae_dtype = _first_dtype(pipe.vae)
        self.vae_scale_factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        self.latent_channels = int(pipe.unet.config.in_channels)
        self.out_channels = int(pipe.unet.config.out_channels)
        self.scaling_factor = float(getattr(pipe.vae.config, "scaling_factor", 0.18215) or 0.18215)
        # the config as loaded: other tools may swap the cached pipeline's scheduler object
        self.scheduler_config = dict(loaded.scheduler_config or pipe.scheduler.config)
        self.size_multiple = self.vae_scale_factor
        self.native_size = int(pipe.unet.config.sample_size) * self.vae_scale_factor
        self.model_hash = loaded.hash
        self.time_cond_dim = getattr(pipe.unet.config, "time_cond_proj_dim", None)
        self.num_text_layers = int(getattr(pipe.text_encoder.config, "num_hidden_layers", 12))

    def encode_prompt(self, prompts: list[str], clip_skip: int = 0):
        import torch

        ids, truncated = self.tokenize(prompts)
        ids_t = torch.from_numpy(ids).to(self.device)
        te = self.pipe.text_encoder
        with torch.inference_mode():
            if clip_skip and clip_skip > 0:
                out = te(ids_t, output_hidden_states=True)
                hidden = out.hidden_states[-(clip_skip + 1)]
                emb = final_layer_norm(te)(hidden)
            else:
                emb = te(ids_t)[0]
        return emb.to(dtype=self.dtype), truncated

    def unet(self, sample, t, embeddings, timestep_cond=None):
        import torch

        with torch.inference_mode():
            return self.pipe.unet(sample.to(self.dtype), t, encoder_hidden_states=embeddings,
                                  timestep_cond=timestep_cond, return_dict=False)[0]

    def decode(self, latents):
        import torch

        with torch.inference_mode():
            vae = self.pipe.vae
            return vae.decode(latents.to(self.vae_dtype) / self.scaling_factor, return_dict=False)[0].float()

    def encode(self, images):
        import torch

        with torch.inference_mode():
            vae = self.pipe.vae
            dist = vae.encode(images.to(device=self.device, dtype=self.vae_dtype)).latent_dist
            return dist.mean * self.scaling_factor

    def guidance_embedding(self, guidance: float, batch: int):
        """``timestep_cond`` for UNets with a guidance embedding (LCM-distilled models)."""
        import torch

        if self.time_cond_dim is None:
            return None
        w = torch.tensor(guidance - 1.0).repeat(batch)
        return self.pipe.get_guidance_scale_embedding(w, embedding_dim=self.time_cond_dim).to(
            device=self.device, dtype=self.dtype)


# ------------------------------------------------------------------------------------------------
# ONNX export
# ------------------------------------------------------------------------------------------------

def _export_wrappers():
    import torch

    class TextEncoderWrap(torch.nn.Module):
        """input_ids -> last_hidden_state, and every hidden state after the final layer norm
        (stacked, for clip skip)."""

        def __init__(self, te):
            super().__init__()
            self.te = te

        def forward(self, input_ids):
            out = self.te(input_ids, output_hidden_states=True)
            norm = final_layer_norm(self.te)
            normed = torch.stack([norm(h) for h in out.hidden_states], 0)
            return out.last_hidden_state, normed

    class UNetWrap(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    class VaeDecoderWrap(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample, return_dict=False)[0]

    class VaeEncoderWrap(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, sample):
            return self.vae.encode(sample).latent_dist.mean

    return TextEncoderWrap, UNetWrap, VaeDecoderWrap, VaeEncoderWrap


_export_lock = threading.Lock()


def onnx_export_dir(model_hash: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the export of the model with this fingerprint lives in ``cache_dir`` (the run's
    ``ctx.cache_dir``; default: :func:`~plugins.diffusion_common.models.default_cache_dir`)."""
    from .models import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "onnx" / model_hash[:24]


def export_onnx(loaded, out_dir: str | os.PathLike | None = None, opset: int = ONNX_OPSET,
                progress=None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Export an SD-structured model (text encoder, UNet, VAE decoder and encoder) to ONNX with
    dynamic batch and spatial sizes. Reuses an existing complete export in ``out_dir`` (default:
    the folder of the model's fingerprint in ``cache_dir``). Returns the folder."""
    import torch

    out = Path(out_dir) if out_dir else onnx_export_dir(loaded.hash, cache_dir)
    meta_file = out / "implicit_studio_export.json"
    with _export_lock:
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
                if meta.get("model_hash") == loaded.hash and meta.get("format") == EXPORT_FORMAT_VERSION:
                    return out
            except (OSError, ValueError):
                pass
        pipe = loaded.pipe
        if loaded.info.family != "sd":
            raise ModelError(f"ONNX export supports SD-structured models; {loaded.info.arch_name} runs with torch")
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        TextEncoderWrap, UNetWrap, VaeDecoderWrap, VaeEncoderWrap = _export_wrappers()
        te, unet, vae = pipe.text_encoder, pipe.unet, pipe.vae
        orig = [(m, m.device, m.dtype) for m in (te, unet, vae)]
        try:
            for m in (te, unet, vae):
                if m.device.type != "cpu" or m.dtype != torch.float32:
                    m.to("cpu", torch.float32)
            max_len = int(getattr(pipe.tokenizer, "model_max_length", 77) or 77)
            vsf = int(getattr(pipe, "vae_scale_factor", 8) or 8)
            n_down = len(unet.config.block_out_channels) - 1
            lat = max(2 ** n_down, 8)
            ch = int(unet.config.in_channels)
            hidden = int(te.config.hidden_size)
            jobs = [
                ("text_encoder", TextEncoderWrap(te), (torch.zeros(1, max_len, dtype=torch.int64),),
                 ["input_ids"], ["last_hidden_state", "normed_hidden_states"],
                 {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "normed_hidden_states": {1: "batch"}}),
                ("unet", UNetWrap(unet), (torch.randn(2, ch, lat, lat), torch.tensor([500.0, 500.0]),
                                          torch.randn(2, max_len, hidden)),
                 ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                 {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                  "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}),
                ("vae_decoder", VaeDecoderWrap(vae), (torch.randn(1, int(vae.config.latent_channels), lat, lat),),
                 ["latent_sample"], ["sample"],
                 {"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}}),
                ("vae_encoder", VaeEncoderWrap(vae), (torch.randn(1, 3, lat * vsf, lat * vsf),),
                 ["sample"], ["latent_mean"],
                 {"sample": {0: "batch", 2: "height", 3: "width"}, "latent_mean": {0: "batch", 2: "height", 3: "width"}}),
            ]
            for i, (name, module, args, inputs, outputs, axes) in enumerate(jobs):
                if progress is not None:
                    progress(i, len(jobs), f"exporting {name} to ONNX")
                (tmp / name).mkdir()
                module.eval()
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, args, str(tmp / name / "model.onnx"), input_names=inputs,
                                      output_names=outputs, dynamic_axes=axes, opset_version=opset,
                                      do_constant_folding=True, dynamo=False)
            pipe.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            pipe.scheduler.save_config(str(tmp / "scheduler"))
            meta = {
                "format": EXPORT_FORMAT_VERSION, "model_hash": loaded.hash, "opset": opset,
                "vae_scale_factor": vsf, "latent_channels": ch, "out_channels": int(unet.config.out_channels),
                "scaling_factor": float(getattr(vae.config, "scaling_factor", 0.18215)),
                "size_multiple": vsf * 2 ** n_down, "hidden_size": hidden,
                "num_text_layers": int(te.config.num_hidden_layers), "source": str(loaded.info.path),
                "native_size": int(unet.config.sample_size) * vsf,
            }
            (tmp / "implicit_studio_export.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelError(f"ONNX export of {loaded.info.path} failed: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
        finally:
            for m, dev, dt in orig:
                if m.device != dev or m.dtype != dt:
                    m.to(dev, dt)
    return out


# ------------------------------------------------------------------------------------------------
# ONNX Runtime backend
# ------------------------------------------------------------------------------------------------

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(double)": "float64"}


class OrtSDBackend(TokenizerMixin):
    """Runs an ONNX export of an SD-structured model with ONNX Runtime. Works on exports made by
    :func:`export_onnx` and on diffusers-layout exports (``OnnxStableDiffusionPipeline`` folders)."""

    name = "onnx"

    def __init__(self, folder: str | os.PathLike, providers=("CPUExecutionProvider",), threads: int = 0):
        import onnxruntime as ort
        from transformers import CLIPTokenizer

        folder = Path(folder)
        self.folder = folder
        for part in ("text_encoder", "unet", "vae_decoder"):
            if not (folder / part / "model.onnx").is_file():
                raise ModelError(f"{folder} is not a complete ONNX export: {part}/model.onnx is missing")
        meta_file = folder / "implicit_studio_export.json"
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = list(providers) or ["CPUExecutionProvider"]
        try:
            self.sessions = {
                name: ort.InferenceSession(str(folder / name / "model.onnx"), sess_options=opts, providers=providers)
                for name in ("text_encoder", "unet", "vae_decoder", "vae_encoder")
                if (folder / name / "model.onnx").is_file()
            }
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"ONNX Runtime could not open the export in {folder}: {str(exc).splitlines()[0]}") from exc
        self.providers = self.sessions["unet"].get_providers()
        self.tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
        if getattr(self.tokenizer, "model_max_length", 0) > 4096:
            self.tokenizer.model_max_length = 77
        sched_file = folder / "scheduler" / "scheduler_config.json"
        self.scheduler_config = json.loads(sched_file.read_text(encoding="utf-8")) if sched_file.is_file() else {}
        unet_inputs = {i.name: i for i in self.sessions["unet"].get_inputs()}
        self._unet_inputs = unet_inputs
        self._timestep_type = _ORT_TYPES.get(unet_inputs["timestep"].type, "float32") if "timestep" in unet_inputs else "float32"
        self._sample_type = _ORT_TYPES.get(unet_inputs["sample"].type, "float32")
        sample_shape = unet_inputs["sample"].shape
        self.latent_channels = int(meta.get("latent_channels") or (sample_shape[1] if isinstance(sample_shape[1], int) else 4))
        self.out_channels = int(meta.get("out_channels", self.latent_channels))
        self.vae_scale_factor = int(meta.get("vae_scale_factor", 8))
        self.scaling_factor = float(meta.get("scaling_factor", 0.18215))
        self.size_multiple = int(meta.get("size_multiple", self.vae_scale_factor * 8))
        self.model_hash = meta.get("model_hash", "")
        self.native_size = int(meta.get("native_size", 512))
        self.num_text_layers = int(meta.get("num_text_layers", 0))
        self.has_clip_skip = any(o.name == "normed_hidden_states" for o in self.sessions["text_encoder"].get_outputs())
        self.device = "cpu"
        self.dtype = None
        self.time_cond_dim = None

    def encode_prompt(self, prompts: list[str], clip_skip: int = 0):
        import numpy as np
        import torch

        ids, truncated = self.tokenize(prompts)
        sess = self.sessions["text_encoder"]
        in_type = _ORT_TYPES.get(sess.get_inputs()[0].type, "int64")
        outputs = sess.run(None, {sess.get_inputs()[0].name: ids.astype(in_type)})
        names = [o.name for o in sess.get_outputs()]
        if clip_skip and clip_skip > 0:
            if not self.has_clip_skip:
                raise ParamError("Clip skip: this ONNX export has no hidden-state output; use clip skip 0 or the "
                                 "torch backend", "clip_skip")
            normed = outputs[names.index("normed_hidden_states")]
            emb = normed[-(clip_skip + 1)]
        else:
            emb = outputs[0]
        return torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)), truncated

    def unet(self, sample, t, embeddings, timestep_cond=None):
        import numpy as np
        import torch

        b = sample.shape[0]
        t_val = float(t.item() if hasattr(t, "item") else t)
        timestep = np.full((b,), t_val, dtype=self._timestep_type)
        if self._unet_inputs["timestep"].shape in ([1], [], ["1"]) and b != 1:
            timestep = timestep[:1] if self._unet_inputs["timestep"].shape == [1] else np.asarray(t_val, self._timestep_type)
        feeds = {
            "sample": sample.detach().cpu().numpy().astype(self._sample_type),
            "timestep": timestep,
            "encoder_hidden_states": embeddings.detach().cpu().numpy().astype(self._sample_type),
        }
        out = self.sessions["unet"].run(None, feeds)[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def decode(self, latents):
        import numpy as np
        import torch

        sess = self.sessions["vae_decoder"]
        arr = (latents.detach().cpu().float() / self.scaling_factor).numpy()
        out = sess.run(None, {sess.get_inputs()[0].name: arr})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def encode(self, images):
        import numpy as np
        import torch

        sess = self.sessions.get("vae_encoder")
        if sess is None:
            raise ModelError(f"the ONNX export in {self.folder} has no vae_encoder; image-to-image needs it")
        out = sess.run(None, {sess.get_inputs()[0].name: images.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)) * self.scaling_factor

    def guidance_embedding(self, guidance: float, batch: int):
        return None


def shipped_export_for(model_hash: str, folders: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The first of ``folders`` (exports shipped with a plugin, such as the bundled model's
    ``"default-onnx"``) that :func:`export_onnx` made from exactly this model (same
    fingerprint), else ``None``."""
    for folder in map(Path, folders):
        try:
            meta = json.loads((folder / "implicit_studio_export.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("model_hash") == model_hash and meta.get("format") == EXPORT_FORMAT_VERSION and \
                (folder / "unet" / "model.onnx").is_file():
            return folder
    return None


_ort_cache: dict[tuple, OrtSDBackend] = {}
_ort_lock = threading.Lock()


def existing_export_for(model_hash: str, cache_dir: str | os.PathLike | None = None,
                        shipped: Sequence[str | os.PathLike] = ()) -> Path | None:
    """A complete export of the model with this fingerprint: a shipped one (see
    :func:`shipped_export_for`) or one in ``cache_dir``."""
    found = shipped_export_for(model_hash, shipped)
    if found is not None:
        return found
    folder = onnx_export_dir(model_hash, cache_dir)
    try:
        meta = json.loads((folder / "implicit_studio_export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("model_hash") == model_hash and meta.get("format") == EXPORT_FORMAT_VERSION:
        return folder
    return None


def ort_backend_for(loaded, providers=("CPUExecutionProvider",), threads: int = 0, onnx_dir=None,
                    progress=None, model_hash: str | None = None, cache_dir: str | os.PathLike | None = None,
                    shipped: Sequence[str | os.PathLike] = ()) -> OrtSDBackend:
    """The ONNX Runtime backend of a model: a shipped export, else exported once into
    ``cache_dir`` (by model fingerprint); sessions kept per (folder, providers, threads).
    ``loaded`` (a :class:`LoadedModel`) is needed only when no export exists yet; otherwise pass
    ``model_hash`` and ``loaded=None``."""
    digest = model_hash or loaded.hash
    if onnx_dir is None:
        onnx_dir = existing_export_for(digest, cache_dir, shipped)
    if onnx_dir is None and loaded is None:
        raise ModelError("no ONNX export of this model exists yet and no loaded model was given to export")
    folder = Path(onnx_dir) if onnx_dir else export_onnx(loaded, progress=progress, cache_dir=cache_dir)
    key = (str(folder), tuple(providers), int(threads))
    with _ort_lock:
        hit = _ort_cache.get(key)
        if hit is None:
            hit = OrtSDBackend(folder, providers=providers, threads=threads)
            _ort_cache.clear()  # keep one set of sessions in memory
            _ort_cache[key] = hit
        return hit
