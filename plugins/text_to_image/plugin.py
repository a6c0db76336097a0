"""Text-to-image plugin: the ``text-to-image`` tool, the diffusion model settings, the
``models`` command, the trajectory viewer and the bundled model's name. Cheap to import: stdlib,
app.api and the bundled-model table of plugins.diffusion_common; the run function
(``plugins.text_to_image.run``) imports torch/diffusers/onnxruntime when it runs."""

from pathlib import Path
from typing import Optional

from app.api import (BoolParam, ChoiceParam, CommandSpec, FloatParam, ImageParam, IntParam, ModelParam, PathParam,
                     SeedParam, SettingsSpec, TextParam, ToolSpec, ViewerSpec, hookimpl)
from plugins.diffusion_common.bundled import bundled_model

REQUIRES_API = "1.1"

# Kept equal to plugins.diffusion_common.schedulers.SCHEDULERS (a test checks it).
SCHEDULER_CHOICES = ("default", "ddim", "ddpm", "euler", "euler-a", "heun", "lms", "dpm2", "dpmpp-2m",
                     "dpmpp-2m-karras", "dpmpp-2m-sde", "dpmpp-3m-sde", "dpmpp-2s", "deis", "pndm", "lcm", "unipc")
SCHEDULER_LABELS = ("Model default", "DDIM", "DDPM", "Euler", "Euler ancestral", "Heun", "LMS", "DPM2", "DPM++ 2M",
                    "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 3M SDE", "DPM++ 2S", "DEIS", "PLMS", "LCM", "UniPC")
# Kept equal to plugins.diffusion_common.schedulers.SCHEDULES (a test checks it).
SCHEDULE_CHOICES = ("default", "karras", "exponential", "beta", "trailing", "leading")
SCHEDULE_LABELS = ("Model default", "Karras", "Exponential", "Beta", "Uniform from the end (SGM uniform, simple)",
                   "Uniform from the start (DDIM uniform)")
# Kept equal to plugins.text_to_image.compute.PRESETS.
PRESET_CHOICES = ("none", "lcm", "turbo", "dmd")
PRESET_LABELS = ("None", "LCM (4 steps, guidance 1)", "Turbo (1 step, no guidance)", "DMD2 (4 steps, no guidance)")

SETTINGS_SECTION = "diffusion-models"


def tool_params():
    return (
        TextParam(name="prompt", multiline=True, placeholder="a small red star in the top left on a blue background",
                  help="what to draw; an empty prompt is allowed (an unconditional sample) and gives a warning"),
        TextParam(name="negative_prompt", multiline=True, help="what to steer away from (used when guidance > 1)"),
        SeedParam(name="seed", help="-1 draws a random seed; the seed used is always recorded"),
        IntParam(name="steps", default=25, min=1, max=1000, help="denoising steps"),
        FloatParam(name="guidance", default=5.0, min=0.0, max=50.0, step=0.5,
                   help="classifier-free guidance scale (1 or less: no guidance)"),
        ChoiceParam(name="scheduler", choices=SCHEDULER_CHOICES, labels=SCHEDULER_LABELS, default="default"),
        ChoiceParam(name="schedule", choices=SCHEDULE_CHOICES, labels=SCHEDULE_LABELS, default="default",
                    help="how the noise levels are spaced (A1111's schedule type, ComfyUI's scheduler)"),
        ChoiceParam(name="preset", choices=PRESET_CHOICES, labels=PRESET_LABELS, default="none",
                    help="speed preset for few-step models: sets scheduler, steps and guidance together"),
        IntParam(name="width", default=0, min=0, max=8192, step=8,
                 help="image width in pixels, a multiple of the model's factor (8 for SD); 0 = the model's native size"),
        IntParam(name="height", default=0, min=0, max=8192, step=8, help="image height; 0 = the model's native size"),
        IntParam(name="batch_size", default=1, min=1, max=64, help="images made together (seeds seed, seed+1, ...)"),
        IntParam(name="batch_count", default=1, min=1, max=1000, help="batches made one after another"),
        ImageParam(name="init_image", optional=True, help="image-to-image: start from this image (a file or result)"),
        FloatParam(name="strength", default=0.75, min=0.01, max=1.0, step=0.05,
                   help="image-to-image: how much of the image is redrawn (1 = all)"),
        ModelParam(name="model", default="default", aliases=("default", "default-1step"),
                   help="'default' (the bundled model; 1-4 steps are drawn by its one-step student), "
                        "'default-1step' (that student), a diffusers folder or a .safetensors checkpoint"),
        PathParam(name="model_config", mode="dir", optional=True, advanced=True,
                  help="single-file checkpoints: a diffusers folder of the same architecture to take the "
                       "configuration and tokenizer from (found in the Hugging Face cache when empty)"),
        ChoiceParam(name="backend", choices=("torch", "onnx"), labels=("PyTorch", "ONNX Runtime"), default="torch",
                    help="ONNX Runtime exports the model once (cached by its hash)"),
        ChoiceParam(name="sweep", choices=("none", "seed", "guidance", "steps", "scheduler"), default="none",
                    help="seed grid: make one image per value of this parameter and a grid of them"),
        TextParam(name="sweep_values", default="", placeholder="1, 2, 3, 4",
                  help="comma-separated values of the swept parameter"),
        IntParam(name="clip_skip", default=0, min=0, max=24, advanced=True,
                 help="use the text encoder's n-th last layer (0 = the last; 1 or 2 for some SD 1.x models)"),
        TextParam(name="loras", default="", multiline=True, advanced=True,
                  help="LoRA files with weights, one per line: /path/to/lora.safetensors:0.8"),
        BoolParam(name="record_trajectory", default=True, advanced=True,
                  help="record the denoising trajectory (x0 thumbnails, latent norm, noise level)"),
        ChoiceParam(name="thumbnails", choices=("fast", "vae"), labels=("fast (latent colours)", "VAE decode"),
                    default="fast", advanced=True,
                    help="trajectory thumbnails: nearly free latent colours, or real VAE decodes (slower)"),
        BoolParam(name="attention_slicing", default=False, advanced=True, help="lower memory, a little slower"),
        BoolParam(name="vae_tiling", default=False, advanced=True, help="decode large images tile by tile"),
        BoolParam(name="cpu_offload", default=False, advanced=True,
                  help="CUDA only: keep model parts on the CPU until needed"),
    )


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="text-to-image",
            title="Text to image",
            description=("Generate images from a prompt with the bundled model or any local diffusion model "
                         "(diffusers folder or .safetensors checkpoint), on PyTorch or ONNX Runtime, with a live "
                         "preview and the recorded denoising trajectory."),
            group="generate",
            run="plugins.text_to_image.run:run_text_to_image",
            results=("image", "table", "file"),
            backends=("torch", "onnx"),
            params=tool_params(),
        )
    ]


@hookimpl
def studio_settings():
    return [
        SettingsSpec(
            section=SETTINGS_SECTION,
            title="Diffusion models",
            params=(
                TextParam(name="folders", multiline=True, default="",
                          help="model folders, one per line: any folder, or a ComfyUI, AUTOMATIC1111 or InvokeAI "
                               "install (its models are used in place, never copied)"),
                BoolParam(name="scan_hf_cache", default=True, help="also list diffusers models in the Hugging Face cache"),
                BoolParam(name="allow_pickle", default=False,
                          help="allow pickled .ckpt/.bin/.pt checkpoints (read with torch.load(weights_only=True))"),
                IntParam(name="ort_threads", default=0, min=0, max=256,
                         help="ONNX Runtime threads (0 = all cores)"),
            ),
        )
    ]


@hookimpl
def studio_commands():
    return [
        CommandSpec(name="models", help="list the diffusion models and LoRAs found (kind, format, size, hash)",
                    main="plugins.text_to_image.commands:models_main"),
        CommandSpec(name="export-checkpoint",
                    help="write a diffusers SD 1.x-structured model as one .safetensors file in the original "
                         "(AUTOMATIC1111/ComfyUI) layout",
                    main="plugins.text_to_image.commands:export_checkpoint_main"),
    ]


@hookimpl
def studio_viewers():
    return [
        ViewerSpec(id="denoising-trajectory", title="Denoising trajectory", kind="file",
                   widget="plugins.text_to_image.trajectory_view:TrajectoryViewer", priority=0),
    ]


@hookimpl
def studio_resolve_model(ref: str, resources_dir: Path) -> Optional[Path]:
    """``"default"``/``"default-onnx"``: the bundled model and its ONNX export."""
    return bundled_model(ref, resources_dir)
