"""Hook module of the bundled default model: the commands that make, measure and export it.

Cheap to import (stdlib + app.api only); the commands live in ``lab.default_model`` and import torch
and diffusers when they run.
"""

from app.api import CommandSpec, hookimpl


@hookimpl
def studio_commands():
    return [
        CommandSpec(
            name="train-default-model",
            help="train the bundled text-to-image model from nothing (resumable; --smoke for a quick check)",
            main="lab.default_model.train:main",
        ),
        CommandSpec(
            name="evaluate-default-model",
            help="score a model on held-out shape prompts with the non-learned detector",
            main="lab.default_model.evaluate:main",
        ),
        CommandSpec(
            name="export-default-model-onnx",
            help="export a diffusers pipeline folder to ONNX (text encoder, UNet, VAE encoder/decoder)",
            main="lab.default_model.export_onnx:main",
        ),
    ]
