"""Loading the diffusion model a tool runs on (shared by h-Edit and inpainting; no Qt).

Delegates to ``plugins.diffusion_common.models.load_pipeline`` (offline loading, content hash,
cache shared with text-to-image) and checks that the model is Stable-Diffusion-structured (a UNet
with cross-attention, a VAE and one CLIP text encoder), which h-Edit and the inpainting methods
need.
"""

from __future__ import annotations

from typing import Any


def load_model(model: str = "default", device: str = "cpu", dtype: str = "float32") -> tuple[Any, str]:
    """(pipeline, content hash) for ``model`` ("default" or a local path)."""
    from plugins.diffusion_common.models import load_pipeline

    loaded = load_pipeline(model, device=device, dtype=dtype)
    pipe = loaded.pipe
    family = getattr(loaded.info, "family", "sd")
    if family != "sd" or not all(hasattr(pipe, a) for a in ("unet", "vae", "text_encoder", "tokenizer")):
        from plugins.diffusion_common.errors import ModelError

        raise ModelError(
            f"{loaded.info.arch_name if hasattr(loaded.info, 'arch_name') else family} is not supported here: "
            "h-Edit and inpainting need a Stable-Diffusion-1/2-structured model (UNet, VAE, one CLIP text encoder)"
        )
    return pipe, loaded.hash
