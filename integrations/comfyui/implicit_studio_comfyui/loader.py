"""Build ComfyUI's MODEL, CLIP and VAE from an Implicit Studio export of any size.

Stock ComfyUI picks a model class by UNet width and text size and then assumes SD's other sizes.
Here the sizes come from the file (``studio_format.describe``): the UNet is ComfyUI's own
``UNetModel`` with the file's block layout (read by ComfyUI's ``detect_unet_config``), attention
heads and GroupNorm group count; the VAE is ComfyUI's ``AutoencoderKL`` with the file's widths,
groups and downscale factor; the text encoder is ComfyUI's CLIP text model with the file's config
and the tokenizer carried in the file; the noise schedule, latent scale and prediction type
(epsilon or v) are the file's. ComfyUI is imported when a function runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path

from .studio_format import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, StudioModel, describe, write_tokenizer


def with_groups(ops, groups: int):
    """ComfyUI operations whose GroupNorm uses ``groups`` groups whatever the caller asks for
    (ComfyUI's UNet and VAE code hard-code 32)."""

    class Ops(ops):
        class GroupNorm(ops.GroupNorm):
            def __init__(self, num_groups, num_channels, *args, **kwargs):
                super().__init__(groups, num_channels, *args, **kwargs)

    Ops.__name__ = f"{getattr(ops, '__name__', 'ops')}_groups{groups}"
    return Ops


def _unet_factory(groups: int):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    def build(**kwargs):
        kwargs["operations"] = with_groups(kwargs["operations"], groups)
        return UNetModel(**kwargs)

    return build


@contextlib.contextmanager
def _vae_groups(groups: int):
    """ComfyUI's VAE blocks take their GroupNorm from the module's ``ops``: swap it while the VAE
    is built."""
    import comfy.ldm.modules.diffusionmodules.model as vae_module

    old = vae_module.ops
    vae_module.ops = with_groups(old, groups)
    try:
        yield
    finally:
        vae_module.ops = old


def _text_model_class():
    """ComfyUI's CLIP text model with the vocabulary size of the config (ComfyUI's is fixed at
    CLIP's 49,408 tokens)."""
    import comfy.clip_model

    class StudioCLIPTextModel(comfy.clip_model.CLIPTextModel):
        def __init__(self, config_dict, dtype, device, operations):
            super().__init__(config_dict, dtype, device, operations)
            vocab = int(config_dict.get("vocab_size", 49408))
            embeddings = self.text_model.embeddings
            if embeddings.token_embedding.num_embeddings != vocab:
                embeddings.token_embedding = operations.Embedding(vocab, int(config_dict["hidden_size"]),
                                                                  dtype=dtype, device=device)

    return StudioCLIPTextModel


def _model_config(desc: StudioModel, unet_config: dict):
    import comfy.latent_formats
    import comfy.model_base
    import comfy.supported_models_base

    class StudioLatent(comfy.latent_formats.LatentFormat):
        scale_factor = desc.latent_scale
        latent_channels = desc.latent_channels

    model_type = comfy.model_base.ModelType.V_PREDICTION if desc.prediction == "v" else comfy.model_base.ModelType.EPS

    class StudioConfig(comfy.supported_models_base.BASE):
        unet_extra_config = {"num_heads": desc.num_heads, "num_head_channels": desc.num_head_channels}
        latent_format = StudioLatent
        sampling_settings = dict(desc.sampling)
        memory_usage_factor = 1.0

        def model_type(self, state_dict, prefix=""):
            return model_type

        def get_model(self, state_dict, prefix="", device=None):
            out = comfy.model_base.BaseModel(self, model_type=self.model_type(state_dict, prefix), device=device,
                                             unet_model=_unet_factory(desc.unet_groups))
            if self.inpaint_model():
                out.set_inpaint()
            return out

    return StudioConfig(unet_config)


def _check_loaded(module, state: dict, what: str) -> None:
    """Every parameter of ``module`` must have come from the file (ComfyUI only logs missing keys)."""
    missing = sorted(set(module.state_dict()) - set(state))
    if missing:
        raise ValueError(f"the file has no weights for {len(missing)} {what} tensors (e.g. {missing[0]}): "
                         "it does not fit the sizes in its own metadata")


def _tokenizer_dir(desc: StudioModel) -> str | None:
    if desc.tokenizer is None:
        return None
    key = hashlib.sha256(repr(sorted(desc.tokenizer["vocab"].items())).encode() + desc.tokenizer["merges"].encode())
    folder = Path(tempfile.gettempdir()) / "implicit_studio_comfyui" / f"tokenizer-{key.hexdigest()[:16]}"
    if not (folder / "special_tokens_map.json").is_file():
        tmp = folder.with_name(folder.name + f".{os.getpid()}")
        write_tokenizer(desc.tokenizer, tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote it first
            pass
    return str(folder)


def load_studio_checkpoint(path: str, embedding_directory=None):
    """(MODEL, CLIP, VAE, StudioModel) of a studio export, built the way ComfyUI builds its own."""
    import torch

    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.utils

    sd, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
    desc = describe(metadata or {}, sd.keys())

    # MODEL: ComfyUI reads the block layout from the tensors; heads, groups, schedule from the file
    unet_config = comfy.model_detection.detect_unet_config(sd, UNET_PREFIX)
    model_config = _model_config(desc, unet_config)
    parameters = comfy.utils.calculate_parameters(sd, UNET_PREFIX)
    weight_dtype = comfy.utils.weight_dtype(sd, UNET_PREFIX)
    load_device = mm.get_torch_device()
    unet_dtype = mm.unet_dtype(model_params=parameters, supported_dtypes=list(model_config.supported_inference_dtypes),
                               weight_dtype=weight_dtype)
    manual_cast = mm.unet_manual_cast(unet_dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(unet_dtype, manual_cast)
    initial_device = mm.unet_inital_load_device(parameters, unet_dtype)
    model = model_config.get_model(sd, UNET_PREFIX, device=initial_device)
    unet_sd = {k[len(UNET_PREFIX):]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    _check_loaded(model.diffusion_model, unet_sd, "UNet")
    model.load_model_weights(sd, UNET_PREFIX)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=mm.unet_offload_device())

    # VAE: ComfyUI's AutoencoderKL with the file's widths and groups
    vae_sd = {k[len(VAE_PREFIX):]: v for k, v in sd.items() if k.startswith(VAE_PREFIX)}
    with _vae_groups(desc.vae_groups):
        vae = comfy.sd.VAE(sd=vae_sd, config={"params": {"ddconfig": desc.vae_ddconfig, "embed_dim": desc.vae_embed_dim}})
    _check_loaded(vae.first_stage_model, vae_sd, "VAE")
    vae.downscale_ratio = vae.upscale_ratio = desc.downscale
    vae.latent_channels = desc.latent_channels

    # CLIP: ComfyUI's CLIP text model with the file's config, and the file's tokenizer
    tokenizer = functools.partial(comfy.sd1_clip.SDTokenizer, tokenizer_path=_tokenizer_dir(desc),
                                  max_length=desc.max_length, embedding_size=int(desc.text_config["hidden_size"]),
                                  pad_with_end=desc.pad_with_end,
                                  pad_token=None if desc.pad_with_end else desc.pad_token)
    clip_model = functools.partial(comfy.sd1_clip.SDClipModel, max_length=desc.max_length,
                                   textmodel_json_config=dict(desc.text_config), return_projected_pooled=False,
                                   model_class=_text_model_class(),
                                   special_tokens={"start": desc.start_token, "end": desc.end_token,
                                                   "pad": desc.pad_token})
    target = comfy.supported_models_base.ClipTarget(
        functools.partial(comfy.sd1_clip.SD1Tokenizer, tokenizer=tokenizer),
        functools.partial(comfy.sd1_clip.SD1ClipModel, clip_model=clip_model))
    clip_sd = {"clip_l.transformer.text_model." + k[len(TEXT_PREFIX):]: v for k, v in sd.items()
               if k.startswith(TEXT_PREFIX)}
    if "clip_l.transformer.text_model.embeddings.position_ids" not in clip_sd:
        n = int(desc.text_config.get("max_position_embeddings", 77))
        clip_sd["clip_l.transformer.text_model.embeddings.position_ids"] = torch.arange(n).unsqueeze(0)
    clip = comfy.sd.CLIP(target, embedding_directory=embedding_directory,
                         parameters=comfy.utils.calculate_parameters(clip_sd), state_dict=clip_sd)
    text_sd = {k[len("clip_l."):]: v for k, v in clip_sd.items()}
    text_module = clip.cond_stage_model.clip_l
    needed = {k for k in text_module.state_dict() if not k.endswith(("text_projection.weight", "logit_scale"))}
    lost = sorted(needed - set(text_sd))
    if lost:
        raise ValueError(f"the file has no weights for {len(lost)} text-encoder tensors (e.g. {lost[0]})")
    return patcher, clip, vae, desc
