"""Fixtures of the distillation tests: a tiny random SD-structured teacher, a prompts file and a student.

Hashes and ONNX exports go to the studio's cache folder, which the suite's root conftest puts in a
temporary data folder; the runs fix their thread count (one), so that they repeat bit for bit."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a red circle in the center on a white background", "a small blue square at the top left",
           "a green star at the bottom on a black background", "a big yellow ring on blue"]


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
