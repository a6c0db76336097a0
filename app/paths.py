"""Where the studio finds its bundled resources (no Qt, no heavy imports).

The repository (or an installed bundle) keeps ``resources/`` beside the ``app`` package.
``IMPLICIT_STUDIO_RESOURCES`` overrides the location, which is how a desktop bundle or a test
points the app at another folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """The folder holding bundled models, samples and icons."""
    env = os.environ.get("IMPLICIT_STUDIO_RESOURCES")
    if env:
        return Path(env)
    frozen_root = getattr(sys, "_MEIPASS", None)  # PyInstaller one-folder bundle
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def default_model_dir() -> Path:
    """The bundled text-to-image model, a diffusers ``StableDiffusionPipeline`` folder."""
    return resources_dir() / "models" / "default"


def default_student_dir() -> Path:
    """The bundled model's one-step student (``default-1step``), a diffusers folder made by the distill tool."""
    return resources_dir() / "models" / "default-1step"


def default_model_onnx_dir() -> Path:
    """The ONNX export of the bundled model (text encoder, UNet, VAE encoder and decoder)."""
    return resources_dir() / "models" / "default-onnx"
