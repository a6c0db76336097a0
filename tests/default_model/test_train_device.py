"""The default-model trainer's device: --device auto|cpu|cuda|cuda:N (auto: app.devices' choice),
bfloat16 autocast on a GPU where --precision auto finds it, the devices recorded per checkpoint (a
resume elsewhere adds to the record), and CPU training bit for bit what it was before."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json

import pytest
import torch
from safetensors import safe_open

from app import devices
from lab.default_model import train
from lab.default_model.card import precision_text
from lab.default_model.train import TrainConfig, resolve_device, resolve_precision


def tiny(**kw) -> TrainConfig:
    base = dict(num_images=16, vae_crop_steps=2, vae_full_steps=1, vae_batch=4, vae_full_batch=2, decoder_steps=2,
                decoder_batch=2, unet_steps=2, unet_batch=4, warmup=2, checkpoint_every=2, threads=1)
    return TrainConfig(**{**base, **kw})


def run_quiet(out, cfg, stages=("vae", "latents", "decoder", "unet")):
    with contextlib.redirect_stdout(io.StringIO()):
        return train.run(out, cfg, stages=stages, log=lambda *a: None)


def tensor_digest(path) -> str:
    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for k in sorted(f.keys()):
            h.update(k.encode())
            h.update(f.get_tensor(k).reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


#: Tensors of a tiny run of every stage made by the trainer before it had a device (commit a0fd3b0),
#: torch 2.13.0+cpu on an AVX-512 CPU without AMX (other builds and instruction sets round otherwise).
BEFORE_ENV = ("2.13.0+cpu", "AVX512")
BEFORE = {"fp32": {"vae_ckpt": "55d9217b6735294b", "latents": "395a4141ab30980e",
                   "decoder_ckpt": "d3dfeef5ad05e5c4", "unet_ckpt": "191aa04fc885df53"},
          "bf16": {"vae_ckpt": "018bea2a5b06022e", "latents": "c49ec6b6a69135f3",
                   "decoder_ckpt": "5d63c4aad1b6c288", "unet_ckpt": "fdd67f8350c4a85d"}}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_training_is_bit_identical_to_before_and_records_its_device(tmp_path, precision):
    run_quiet(tmp_path, tiny(precision=precision, device="cpu"))
    meta = json.loads((tmp_path / "unet_ckpt.json").read_text())
    assert meta["devices"] == ["cpu"] and meta["precisions"] == [precision]
    assert json.loads((tmp_path / "vae_ckpt.json").read_text())["devices"] == ["cpu"]
    assert json.loads((tmp_path / "train_config.json").read_text())["device"] == "cpu"
    with safe_open(str(tmp_path / "latents.safetensors"), framework="pt") as f:
        assert f.metadata() == {"precision": precision, "device": "cpu"}
    if (torch.__version__, torch.backends.cpu.get_cpu_capability()) != BEFORE_ENV:
        pytest.skip(f"the digests were recorded with torch {BEFORE_ENV[0]} on an {BEFORE_ENV[1]} CPU")
    assert {name: tensor_digest(tmp_path / f"{name}.safetensors") for name in BEFORE[precision]} == BEFORE[precision]


def test_the_stages_compute_on_the_configured_device(tmp_path, torch_ops):
    with torch_ops() as ops:
        run_quiet(tmp_path, tiny(precision="bf16", device="cpu", decoder_steps=0), stages=("vae", "latents", "unet"))
    assert ops.devices() == {"cpu"}
    assert torch.bfloat16 in ops.dtypes("convolution", "mm", "addmm", "bmm")


def test_a_resume_on_another_device_adds_to_the_record(tmp_path):
    """A UNet checkpoint made on a GPU (its record says so), resumed on the CPU for two more steps."""
    cfg = tiny(precision="fp32", device="cpu", decoder_steps=0)
    run_quiet(tmp_path, cfg, stages=("vae", "latents", "unet"))
    tensors, meta = train._load_state(tmp_path / "unet_ckpt")
    train._save_state(tmp_path / "unet_ckpt", tensors, {**meta, "devices": ["cuda:0"], "precisions": ["bf16"]})
    run_quiet(tmp_path, dataclasses.replace(cfg, unet_steps=4), stages=("unet",))
    meta = json.loads((tmp_path / "unet_ckpt.json").read_text())
    assert meta["step"] == 4 and meta["devices"] == ["cpu", "cuda:0"] and meta["precisions"] == ["bf16", "fp32"]
    text = precision_text(meta["precisions"], meta["devices"])
    assert "on the CPU and on cuda:0" in text and "some steps" in text
    # checkpoints from before the record were made on the CPU
    assert train._devices({"step": 3}, "cuda") == ["cpu", "cuda"] and train._devices(None, "cuda") == ["cuda"]
    assert precision_text(["bf16"], ["cuda"]).endswith(" on cuda")
    assert precision_text(["fp32"], None) == "float32 throughout"


def test_device_resolution_and_bf16_on_a_gpu(monkeypatch):
    assert TrainConfig().device == "auto" and "device" in {f.name for f in dataclasses.fields(TrainConfig)}
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == devices.choose("auto", ("torch",)).device
    if devices.cuda_device_count_driver() == 0:
        with pytest.raises(ValueError, match="CUDA was requested"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    # --precision auto on a CUDA device: bf16 where the GPU computes it (what torch reports, no GPU here)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 6))
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("fp32", "cuda:0") == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    assert resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(ValueError, match="Tesla T4.*compute capability 7.5"):
        resolve_precision("bf16", "cuda")
    assert resolve_precision("auto", "mps") == "fp32"


def test_the_command_line_takes_a_device_and_refuses_one_that_is_not_there(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(train, "run", lambda out, cfg, stages: seen.append(cfg) or {})
    assert train.main(["--out", str(tmp_path), "--device", "cpu"]) == 0
    assert seen[-1].device == "cpu"
    assert train.main(["--out", str(tmp_path)]) == 0
    assert seen[-1].device == "auto"
    if devices.cuda_device_count_driver() == 0:
        with pytest.raises(SystemExit):
            train.main(["--out", str(tmp_path), "--device", "cuda"])
        assert "CUDA was requested" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path), "--device", "gpu9"])
    assert "unknown device 'gpu9'" in capsys.readouterr().err
