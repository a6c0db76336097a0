"""Fixtures of the distillation tests: a tiny random SD-structured teacher and a prompts file."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a red circle in the center on a white background", "a small blue square at the top left",
           "a green star at the bottom on a black background", "a big yellow ring on blue"]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Hashes (and any ONNX export) go to a temporary folder; one thread, so runs repeat bit for bit."""
    import torch

    torch.set_num_threads(1)
    old = os.environ.get("IMPLICIT_STUDIO_CACHE_DIR")
    os.environ["IMPLICIT_STUDIO_CACHE_DIR"] = str(tmp_path_factory.mktemp("distill_cache"))
    yield
    if old is None:
        os.environ.pop("IMPLICIT_STUDIO_CACHE_DIR", None)
    else:
        os.environ["IMPLICIT_STUDIO_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    """A tiny random SD-structured diffusers folder (64x64 pictures from 8x8x4 latents)."""
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_teacher") / "tiny", seed=0)


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("# training prompts\n" + "\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def student(teacher, prompts_file, tmp_path_factory) -> Path:
    """A student of the tiny teacher after two iterations (the folder the distill tool writes)."""
    from plugins.distill import compute

    cfg = compute.DistillConfig(iterations=2, batch=2, preview_every=0, threads=1, lr=1e-3, fake_lr=1e-3)
    report = compute.run(str(teacher), tmp_path_factory.mktemp("student_run"), cfg,
                         compute.read_prompts(prompts_file), log=lambda msg: None)
    return report.student
