"""Fixtures of the text-to-image tests: the bundled model when it is installed, else a tiny random
pipeline of the same structure; a private cache folder for ONNX exports and hashes."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bundled_model_ready() -> bool:
    from app.paths import default_model_dir

    d = default_model_dir()
    return (d / "model_index.json").is_file() and any((d / "unet").glob("*.safetensors"))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """ONNX exports, converted checkpoints and the hash cache go to a temporary folder."""
    import torch

    torch.set_num_threads(1)
    old = os.environ.get("IMPLICIT_STUDIO_CACHE_DIR")
    os.environ["IMPLICIT_STUDIO_CACHE_DIR"] = str(tmp_path_factory.mktemp("t2i_cache"))
    yield
    if old is None:
        os.environ.pop("IMPLICIT_STUDIO_CACHE_DIR", None)
    else:
        os.environ["IMPLICIT_STUDIO_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random SD-structured diffusers folder (always the tiny one)."""
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd") / "tiny", seed=0)


@pytest.fixture(scope="session")
def sd_model(tiny_model) -> str:
    """The model the generation tests run: the bundled one when installed, else the tiny one. The bundled
    one by its folder: "default" asked for 1-4 steps is drawn by its one-step student (tests/distill)."""
    if bundled_model_ready():
        from app.paths import default_model_dir

        return str(default_model_dir())
    return str(tiny_model)


@pytest.fixture
def fake_checkpoint(tmp_path):
    """Write a small safetensors file with the given ``{name: shape}`` tensors."""

    def make(name: str, shapes: dict) -> Path:
        import torch
        from safetensors.torch import save_file

        path = tmp_path / name
        save_file({k: torch.zeros(v, dtype=torch.float16) for k, v in shapes.items()}, str(path))
        return path

    return make
