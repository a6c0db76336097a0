"""Fixtures of the installer tests: a resources folder holding a copy of the icons and samples and
the bundled model (the real one when it is installed, else a tiny random pipeline of the same
structure)."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bundled_model_ready() -> bool:
    d = REPO / "resources" / "models" / "default"
    return (d / "model_index.json").is_file() and any((d / "unet").glob("*.safetensors"))


@pytest.fixture(scope="session")
def test_resources(tmp_path_factory) -> Path:
    """A resources folder for the self-test: the repository's one when its model is installed,
    else a copy of its icons and samples with a tiny model in models/default."""
    if bundled_model_ready():
        return REPO / "resources"
    import torch

    torch.set_num_threads(1)
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    res = tmp_path_factory.mktemp("resources")
    shutil.copytree(REPO / "resources" / "icons", res / "icons")
    if (REPO / "resources" / "samples").is_dir():
        shutil.copytree(REPO / "resources" / "samples", res / "samples")
    build_tiny_pipeline(res / "models" / "default", seed=0)
    return res
