"""Inpainting plugin: the ``inpaint`` tool (cheap to import: stdlib, app.api and the
bundled-model table of plugins.diffusion_common)."""

from pathlib import Path
from typing import Optional

from app.api import (BoolParam, ChoiceParam, FloatParam, ImageParam, IntParam, MaskParam, ModelParam,
                     SeedParam, TextParam, ToolSpec, hookimpl)
from plugins.diffusion_common.bundled import bundled_model

REQUIRES_API = "1.1"


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="inpaint",
            title="Inpaint (fill a masked region)",
            description=(
                "Fill the white part of a mask with new content for any diffusion model: CoPaint (coherent, "
                "optimises the whole latent), CoPaint with time travel, RePaint (resampling) or simple blending; "
                "inpainting checkpoints (9-channel UNet) use their own pipeline."
            ),
            group="inpaint",
            run="plugins.inpaint.run:run_inpaint",
            panel="plugins.inpaint.panel:InpaintPanel",
            results=("image", "mask"),
            backends=("torch",),
            params=(
                ImageParam(name="image", help="the image to inpaint"),
                MaskParam(name="mask", image_param="image", help="white = the region to fill"),
                TextParam(name="prompt", multiline=True, help="what to paint in the masked region"),
                TextParam(name="negative_prompt", default="", advanced=True),
                ChoiceParam(name="method", choices=("copaint", "copaint-tt", "repaint", "blend"),
                            labels=("CoPaint", "CoPaint + time travel", "RePaint", "Blend (baseline)"),
                            default="copaint"),
                IntParam(name="steps", default=25, min=1, max=1000),
                FloatParam(name="guidance", default=7.5, min=0.0, max=30.0, step=0.5),
                BoolParam(name="resize_mask", default=False,
                          help="resize a mask of another size to the image (otherwise an error)"),
                IntParam(name="feather", default=2, min=0, max=64,
                         help="pixels of soft edge inside the mask border"),
                FloatParam(name="lr", default=0.02, min=0.0, max=10.0, step=0.005, decimals=4, advanced=True,
                           help="CoPaint learning rate"),
                IntParam(name="grad_steps", default=2, min=0, max=20, advanced=True,
                         help="CoPaint gradient steps per denoising step"),
                FloatParam(name="reg", default=1e-4, min=0.0, max=1.0, decimals=6, advanced=True,
                           help="CoPaint regulariser weight (distance to the pre-optimisation latent)"),
                IntParam(name="tt_length", default=0, min=0, max=1000, advanced=True,
                         help="time travel: steps to go back (0 = 10/250 of the steps)"),
                IntParam(name="tt_interval", default=0, min=0, max=1000, advanced=True,
                         help="time travel: steps between travel points (0 = same as the length)"),
                IntParam(name="tt_repeats", default=2, min=1, max=20, advanced=True),
                IntParam(name="jump_length", default=0, min=0, max=1000, advanced=True,
                         help="RePaint: steps to go back (0 = 10/250 of the steps)"),
                IntParam(name="resamplings", default=10, min=1, max=50, advanced=True,
                         help="RePaint: times each jump point is visited"),
                TextParam(name="mask_history", default="", advanced=True,
                          help="the painted strokes (JSON, written by the mask canvas) so the session keeps "
                               "them with the run; not used for computing"),
                ModelParam(name="model", default="default"),
                SeedParam(name="seed"),
            ),
        )
    ]


@hookimpl
def studio_resolve_model(ref: str, resources_dir: Path) -> Optional[Path]:
    """``"default"``/``"default-onnx"``: the bundled model and its ONNX export."""
    return bundled_model(ref, resources_dir)
