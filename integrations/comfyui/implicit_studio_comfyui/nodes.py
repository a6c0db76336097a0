"""The ComfyUI nodes: a checkpoint loader for Implicit Studio exports of any size, and an empty
latent that follows the VAE's own downscale factor (ComfyUI's Empty Latent Image assumes 8x)."""

from __future__ import annotations

CATEGORY = "Implicit Studio"


class ImplicitStudioCheckpointLoader:
    """Load a checkpoint written by ``implicit-studio export-checkpoint`` (any UNet/VAE/text-encoder
    size, its own tokenizer, epsilon or v-prediction) as MODEL, CLIP and VAE."""

    DESCRIPTION = __doc__
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("the diffusion model (with the file's noise schedule and prediction type)",
                       "the text encoder with the tokenizer carried in the file",
                       "the VAE (its downscale factor may differ from SD's 8x: use the Implicit Studio empty latent)")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),
                                           {"tooltip": "a .safetensors file exported by Implicit Studio"})}}

    def load(self, ckpt_name):
        import folder_paths

        from .loader import load_studio_checkpoint

        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        model, clip, vae, _ = load_studio_checkpoint(path, embedding_directory=folder_paths.get_folder_paths("embeddings"))
        return (model, clip, vae)


class ImplicitStudioEmptyLatent:
    """An empty latent batch sized by the VAE's downscale factor and latent channels."""

    DESCRIPTION = __doc__
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": ("VAE",),
            "width": ("INT", {"default": 64, "min": 8, "max": 16384, "step": 4}),
            "height": ("INT", {"default": 64, "min": 8, "max": 16384, "step": 4}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    def generate(self, vae, width, height, batch_size=1):
        import torch

        import comfy.model_management

        factor = int(vae.downscale_ratio) if isinstance(vae.downscale_ratio, int) else 8
        if width % factor or height % factor:
            raise ValueError(f"width and height must be multiples of this VAE's downscale factor {factor}")
        latent = torch.zeros([batch_size, vae.latent_channels, height // factor, width // factor],
                             device=comfy.model_management.intermediate_device())
        return ({"samples": latent},)


NODE_CLASS_MAPPINGS = {
    "ImplicitStudioCheckpointLoader": ImplicitStudioCheckpointLoader,
    "ImplicitStudioEmptyLatent": ImplicitStudioEmptyLatent,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ImplicitStudioCheckpointLoader": "Load Implicit Studio Checkpoint",
    "ImplicitStudioEmptyLatent": "Empty Latent (Implicit Studio VAE)",
}
