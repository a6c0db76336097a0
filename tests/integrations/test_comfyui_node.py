"""The ComfyUI node package (``integrations/comfyui``) against a real ComfyUI checkout, on the CPU.

Slow and opt-in: skipped unless ``COMFYUI_DIR`` points at a ComfyUI checkout and
``COMFYUI_PYTHON`` at the Python that runs it (its own venv: ComfyUI needs torchvision, which the
studio's venv does not have). How to set one up is in ``integrations/comfyui/README.md``:

    COMFYUI_DIR=/root/comfyui COMFYUI_PYTHON=/root/comfyui/.venv/bin/python \\
        .venv/bin/python -m pytest -q tests/integrations/test_comfyui_node.py

1. ComfyUI loads the bundled model's export through the node; its text conditioning, UNet
   prediction, VAE decode and noise levels equal diffusers' on the original folder.
2. A ComfyUI server on loopback runs the example graph (node loader, CLIP text encode, the
   node's empty latent, KSampler euler/simple, VAE decode, save) through its HTTP API, and the
   picture it saves equals the studio's own generation with the same seed and settings.
   ``IMPLICIT_STUDIO_COMFYUI_IMAGE=PATH`` also copies that picture to PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_PARENT = ROOT / "integrations" / "comfyui"
PROBE = Path(__file__).with_name("comfyui_probe.py")
PROMPT = "a small red circle in the center"
COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (COMFY_DIR and COMFY_PYTHON), reason="set COMFYUI_DIR and COMFYUI_PYTHON to a ComfyUI "
                                                               "checkout and its python (integrations/comfyui/README.md)"),
]


@pytest.fixture(scope="module")
def export(bundled, tmp_path_factory) -> Path:
    from plugins.diffusion_common.single_file import export_single_file

    return export_single_file(bundled, tmp_path_factory.mktemp("ckpt") / "implicit-studio-default.safetensors").path


def _diffusers(bundled: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(bundled), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_comfyui_computes_what_diffusers_computes(bundled, export, tmp_path):
    import torch

    out = tmp_path / "probe.npz"
    res = subprocess.run([COMFY_PYTHON, str(PROBE), COMFY_DIR, str(NODE_PARENT), str(export), str(out), PROMPT],
                         capture_output=True, text=True, timeout=600, cwd=COMFY_DIR)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    got = np.load(out)
    assert str(got["prediction"]) == "V_PREDICTION" and int(got["downscale"]) == 4
    pipe = _diffusers(bundled)
    assert float(got["scale"]) == pytest.approx(pipe.vae.config.scaling_factor)
    with torch.no_grad():
        ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        cond = pipe.text_encoder(ids)[0]
        np.testing.assert_allclose(got["cond"], cond.numpy(), atol=1e-4)
        x, t = torch.from_numpy(got["x"]), torch.from_numpy(got["t"])
        pred = pipe.unet(x, t, encoder_hidden_states=cond.expand(2, -1, -1)).sample
        np.testing.assert_allclose(got["pred"], pred.numpy(), atol=1e-4)
        image = pipe.vae.decode(torch.from_numpy(got["latent"])).sample
        image = ((image / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got["image"], image, atol=1e-4)
    ac = pipe.scheduler.alphas_cumprod.double()
    # diffusers accumulates alphas in float32, ComfyUI in float64: 3e-4 apart at the smallest noise
    np.testing.assert_allclose(got["sigmas"], (((1 - ac) / ac) ** 0.5).numpy(), rtol=1e-3)
    # and the comparison can fail: another prompt conditions differently
    with torch.no_grad():
        other = pipe.text_encoder(pipe.tokenizer("a big blue star", padding="max_length",
                                                 max_length=pipe.tokenizer.model_max_length,
                                                 return_tensors="pt").input_ids)[0]
    assert np.abs(got["cond"] - other.numpy()).max() > 1e-2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, data: dict | None = None, timeout: float = 10.0) -> dict:
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


def test_comfyui_server_draws_the_studio_model_like_the_studio(bundled, export, tmp_path):
    from PIL import Image

    from plugins.text_to_image.compute import GenerationParams, generate

    base = tmp_path / "comfy"
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    shutil.copy(export, base / "models" / "checkpoints" / export.name)
    shutil.copytree(NODE_PARENT / "implicit_studio_comfyui", base / "custom_nodes" / "implicit_studio_comfyui",
                    ignore=shutil.ignore_patterns("__pycache__"))
    port = _free_port()
    log = open(tmp_path / "comfyui.log", "w")
    server = subprocess.Popen([COMFY_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                               "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
                               "--disable-auto-launch"], cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "comfyui.log").read_text()[-4000:]
            try:
                info = _call(url + "/object_info/ImplicitStudioCheckpointLoader")
                break
            except OSError:
                assert time.monotonic() < deadline, "ComfyUI did not start in 300 s"
                time.sleep(1.0)
        assert export.name in info["ImplicitStudioCheckpointLoader"]["input"]["required"]["ckpt_name"][0]
        graph = json.loads((NODE_PARENT / "examples" / "text_to_image_api.json").read_text())
        graph["1"]["inputs"]["ckpt_name"] = export.name
        prompt_id = _call(url + "/prompt", {"prompt": graph})["prompt_id"]
        deadline = time.monotonic() + 300
        while True:
            history = _call(url + f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                break
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "comfyui.log").read_text()[-4000:]
            time.sleep(0.5)
        entry = history[prompt_id]
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
        saved = entry["outputs"]["7"]["images"][0]
        path = base / "output" / saved.get("subfolder", "") / saved["filename"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    with Image.open(path) as im:
        comfy = np.asarray(im.convert("RGB")).astype(np.float64)
        assert "prompt" in im.text  # ComfyUI's own graph chunk: the picture is ComfyUI's
    assert comfy.shape == (64, 64, 3) and comfy.std() > 5
    ks = graph["5"]["inputs"]
    ours = generate(GenerationParams(prompt=PROMPT, seed=ks["seed"], steps=ks["steps"], guidance=ks["cfg"],
                                     scheduler="euler", width=64, height=64), str(bundled),
                    record_trajectory=False).images[0].astype(np.float64)
    diff = np.abs(comfy - ours)
    # measured: mean 0.5, max 1 (of 255); ComfyUI keeps the text encoder in float16
    assert diff.mean() < 1.5 and diff.max() <= 8, (diff.mean(), diff.max())
    other = generate(GenerationParams(prompt=PROMPT, seed=ks["seed"] + 1, steps=ks["steps"], guidance=ks["cfg"],
                                      scheduler="euler", width=64, height=64), str(bundled),
                     record_trajectory=False).images[0].astype(np.float64)
    assert np.abs(comfy - other).mean() > 4 * diff.mean()  # the comparison tells seeds apart
    keep = os.environ.get("IMPLICIT_STUDIO_COMFYUI_IMAGE")
    if keep:
        shutil.copy(path, keep)
