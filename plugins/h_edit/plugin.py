"""h-Edit plugin: the ``h-edit`` tool (cheap to import: stdlib, app.api and the
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
            id="h-edit",
            title="h-Edit (edit an image)",
            description=(
                "Training-free editing by Doob's h-transform: an exact inversion of the image plus an "
                "editing term toward a target prompt and/or a reward (colour, palette, style)."
            ),
            group="edit",
            run="plugins.h_edit.run:run_h_edit",
            panel="plugins.h_edit.panel:HEditPanel",
            results=("image", "mask"),
            backends=("torch",),
            params=(
                ImageParam(name="image", help="the image to edit (a file or a session result)"),
                TextParam(name="source_prompt", multiline=True,
                          help="what the image shows; empty: taken from the image's metadata if it was generated here"),
                TextParam(name="target_prompt", multiline=True,
                          help="what the edited image should show (may be empty for a reward-only edit)"),
                TextParam(name="reward", default="",
                          help="optional reward: colour:blue, colour:#3366ff, palette:red,yellow, style:ref.png, "
                               "or a plugin's reward id"),
                FloatParam(name="reward_weight", default=0.1, min=0.0, max=10.0, step=0.05,
                           help="strength of the reward term (normalised step per denoising step)"),
                FloatParam(name="edit_strength", default=1.0, min=0.0, max=5.0, step=0.1,
                           help="multiplies the text editing term (1 = the paper)"),
                ChoiceParam(name="variant", choices=("implicit", "explicit", "baseline-ef", "baseline-ddim"),
                            labels=("h-Edit implicit", "h-Edit explicit", "Baseline: edit-friendly DDPM",
                                    "Baseline: DDIM inversion"), default="implicit"),
                ChoiceParam(name="inversion", choices=("random", "deterministic"),
                            labels=("random (h-Edit-R)", "deterministic (h-Edit-D)"), default="random"),
                MaskParam(name="region", optional=True, image_param="image",
                          help="optional mask: the edit changes only the white part"),
                BoolParam(name="resize_mask", default=False,
                          help="resize a region mask of another size to the image (otherwise an error)"),
                IntParam(name="steps", default=25, min=1, max=1000),
                FloatParam(name="w_edit", default=0.0, min=0.0, max=50.0, advanced=True,
                           help="target prompt guidance in the editing term; 0 = default (the model's "
                                "recommendation, else the paper's 7.5 R, 10 D)"),
                FloatParam(name="w_src_edit", default=0.0, min=0.0, max=50.0, advanced=True,
                           help="source prompt guidance in the editing term; 0 = default (the model's "
                                "recommendation, else the paper's 5 R, 9 D)"),
                FloatParam(name="w_orig", default=-1.0, min=-1.0, max=50.0, advanced=True,
                           help="source guidance of the reconstruction/inversion; -1 = default (the model's "
                                "recommendation, else the paper's 1)"),
                IntParam(name="inner_steps", default=1, min=1, max=10, advanced=True,
                         help="implicit form: number of editing updates per step"),
                FloatParam(name="lambda_rec", default=0.1, min=0.0, max=1.0, advanced=True,
                           help="implicit form: pull toward the reconstruction between inner updates"),
                ChoiceParam(name="attention", choices=("auto", "p2p", "none"), default="auto", advanced=True,
                            help="Prompt-to-Prompt attention control (auto: on when the prompts differ by alignable words)"),
                FloatParam(name="cross_replace", default=0.4, min=0.0, max=1.0, advanced=True),
                FloatParam(name="self_replace", default=-1.0, min=-1.0, max=1.0, advanced=True,
                           help="fraction of steps with self-attention replaced; -1 = default (0.35 R, 0.6 D)"),
                IntParam(name="skip", default=-1, min=-1, max=999, advanced=True,
                         help="steps skipped at the start; -1 = default (0 with P2P, 30% without)"),
                IntParam(name="edit_stop", default=-1, min=-1, max=1000, advanced=True,
                         help="no editing term from this step on; -1 = edit until the end"),
                IntParam(name="feather", default=2, min=0, max=64, advanced=True,
                         help="pixels of soft edge at the border of the region mask"),
                ModelParam(name="model", default="default"),
                SeedParam(name="seed"),
            ),
        )
    ]


@hookimpl
def studio_resolve_model(ref: str, resources_dir: Path) -> Optional[Path]:
    """``"default"``/``"default-onnx"``: the bundled model and its ONNX export."""
    return bundled_model(ref, resources_dir)
