"""The models the diffusion plugins ship in the studio's resources, by name (standard library only:
the plugins' entry modules answer ``studio_resolve_model`` with it at no cost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

#: Model name -> folder inside the resources folder.
BUNDLED_MODELS = {
    "default": "models/default",            # the bundled text-to-image model (diffusers folder)
    "default-onnx": "models/default-onnx",  # its ONNX export
    "default-1step": "models/default-1step",  # its one-step student (lab.distill)
}


def bundled_model(ref: str, resources_dir: Path) -> Optional[Path]:
    """The folder a bundled model's name stands for, ``None`` for any other reference."""
    sub = BUNDLED_MODELS.get(str(ref).strip())
    return Path(resources_dir) / sub if sub else None
