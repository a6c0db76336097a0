"""Smoke mode of the training command: every stage runs, losses fall, the export loads offline."""

import json
import os
import subprocess
import sys

import pytest

from app.paths import default_model_dir

MODEL_DIR = default_model_dir()
pytestmark = pytest.mark.timeout(300)


def test_smoke_training_runs_resumes_and_exports(tmp_path):
    out = tmp_path / "train"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lab.default_model.train", "--out", str(out), "--smoke", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "[smoke] ok: losses fall" in r.stdout
    for f in ("vae_ckpt.safetensors", "unet_ckpt.safetensors", "latents.safetensors", "timings.json"):
        assert (out / f).exists(), f
    meta = json.loads((out / "unet_ckpt.json").read_text())
    assert meta["step"] == 40
    assert meta["seconds"] > 0  # the UNet's compute time travels with its checkpoint, across resumes

    # A second run resumes from the checkpoints instead of starting again.
    r2 = subprocess.run(cmd[:-2] + ["--stages", "vae,unet"], capture_output=True, text=True, env=env, timeout=120)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "resuming at step" in r2.stdout

    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(str(out / "pipeline"), local_files_only=True)
    assert pipe.vae.config.scaling_factor != 1.0  # set from the latent statistics
    # the export carries the settings the studio's tools use with this model, as the shipped one does
    from lab.default_model.train import STUDIO_SETTINGS, vocabulary_lines

    assert json.loads((out / "pipeline" / "implicit_studio.json").read_text()) == STUDIO_SETTINGS
    assert json.loads((MODEL_DIR / "implicit_studio.json").read_text()) == STUDIO_SETTINGS
    # and its vocabulary by role, for the prompt box, as the shipped one does
    assert (out / "pipeline" / "vocabulary.jsonl").read_text() == vocabulary_lines()
    assert (MODEL_DIR / "vocabulary.jsonl").read_text() == vocabulary_lines()
    img = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert img.shape == (64, 64, 3)
