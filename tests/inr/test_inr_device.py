"""The INR tools compute where the run says: fits on ctx.device in ctx.dtype (mixed precision below
float32), renders and bakes on ctx.device, ONNX files on ctx.ort_providers, the viewers on the
device setting; CPU float32 fits are bit for bit what they were before runs had a device."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from app.api import RunContext
from plugins.inr.fields import OnnxField, TorchEvaluator, export_onnx, make_evaluator
from plugins.inr.fit import SDFTarget, fit_image_steps, fit_sdf_steps, run_fit
from plugins.inr.image2d import procedural_image
from plugins.inr.models import build_model, preset

MATMULS = ("mm", "addmm", "bmm", "matmul", "linear")


def digest(model) -> str:
    h = hashlib.sha256()
    sd = model.state_dict()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def history_digest(history: dict) -> str:
    return hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest()[:16]


#: Digests of the weights and curves of three CPU float32 fits, made by the code before the fits
#: had a device (commit a0fd3b0), with torch 2.13.0+cpu on an AVX-512 CPU: other builds and
#: instruction sets round differently, so the comparison runs where these were recorded.
BEFORE_ENV = ("2.13.0+cpu", "AVX512")
BEFORE = {
    "image_full": ("4a8fb893e6ff7c3f", "41be37ac94efa683", 25),
    "image_batch": ("a14d1ec3bd55cded", "4dfcfe1961c4a544", 25),
    "sdf": ("9f0c8fea71a06aa6", "d9da8b46ebc7ba47", 15),
}


def test_cpu_float32_fits_are_bit_identical_to_before():
    if (torch.__version__, torch.backends.cpu.get_cpu_capability()) != BEFORE_ENV:
        pytest.skip(f"the digests were recorded with torch {BEFORE_ENV[0]} on an {BEFORE_ENV[1]} CPU")
    small = {"hidden_features": 16, "hidden_layers": 2}
    img = procedural_image(16)
    got = {}
    r = run_fit(fit_image_steps(img, "siren", steps=25, seed=3, config_overrides=small, device="cpu", dtype="float32"))
    got["image_full"] = (digest(r.model), history_digest(r.history), r.best_step)
    r = run_fit(fit_image_steps(img, "relu", steps=25, seed=4, batch_size=64, config_overrides=small))
    got["image_batch"] = (digest(r.model), history_digest(r.history), r.best_step)
    r = run_fit(fit_sdf_steps(SDFTarget(shape="torus", seed=1), "siren", steps=15, points_per_step=256,
                              eikonal_weight=0.1, seed=2, eval_every=5, config_overrides=small, device="cpu"))
    got["sdf"] = (digest(r.model), history_digest(r.history), r.best_step)
    assert got == BEFORE


def test_the_image_fit_trains_in_the_runs_dtype_with_float32_weights(torch_ops):
    img = procedural_image(12)
    small = {"hidden_features": 16, "hidden_layers": 2}
    with torch_ops() as ops:
        bf = run_fit(fit_image_steps(img, "siren", steps=40, seed=0, config_overrides=small, device="cpu",
                                     dtype="bfloat16"))
    # the network's products were computed in bfloat16, on the run's device
    assert ops.dtypes(*MATMULS) == {torch.bfloat16} and ops.devices() == {"cpu"}
    assert {p.dtype for p in bf.model.parameters()} == {torch.float32}  # master weights
    assert next(bf.model.parameters()).device == torch.device("cpu")
    with torch_ops() as ops:
        fp = run_fit(fit_image_steps(img, "siren", steps=40, seed=0, config_overrides=small))
    assert ops.dtypes(*MATMULS) == {torch.float32}
    assert digest(bf.model) != digest(fp.model)  # a different arithmetic, a different result
    # it still learns (about +5 dB in 40 steps, as float32; bfloat16 rounds away a few tenths here)
    assert bf.best_metric > bf.history["psnr"][0] + 3 and abs(bf.best_metric - fp.best_metric) < 1
    # float16 trains with a gradient scaler (no underflowing gradients), weights still float32
    with torch_ops() as ops:
        h = run_fit(fit_image_steps(img, "relu", steps=12, seed=0, config_overrides=small, dtype="float16",
                                    batch_size=64))
    assert ops.dtypes(*MATMULS) == {torch.float16}
    assert {p.dtype for p in h.model.parameters()} == {torch.float32} and np.isfinite(h.history["loss"]).all()
    with pytest.raises(ValueError, match="dtype must be float32, float16 or bfloat16"):
        run_fit(fit_image_steps(img, "siren", steps=1, dtype="float64"))


def test_the_sdf_fit_trains_in_the_runs_dtype(torch_ops):
    small = {"hidden_features": 16, "hidden_layers": 2}
    with torch_ops() as ops:
        r = run_fit(fit_sdf_steps(SDFTarget(shape="sphere", seed=0), "siren", steps=6, points_per_step=128,
                                  eikonal_weight=0.1, seed=0, eval_every=3, config_overrides=small,
                                  device=torch.device("cpu"), dtype=torch.bfloat16))
    assert torch.bfloat16 in ops.dtypes(*MATMULS) and ops.devices() == {"cpu"}
    assert {p.dtype for p in r.model.parameters()} == {torch.float32}
    assert np.isfinite(r.history["loss"]).all()


def test_the_fit_tools_take_device_and_dtype_from_the_run(tmp_path, torch_ops, cache_env):
    """inr-fit-image and inr-fit-sdf as the studio runs them: ctx.device and ctx.dtype reach the fit
    (bfloat16 products), the render and bake run on ctx.device in float32, weights save float32."""
    from plugins.inr.tools import fit_image, fit_sdf

    ctx = RunContext(device="cpu", dtype="bfloat16", plugin="inr", data_dir=tmp_path / "data")
    pic = (procedural_image(12) * 255).astype(np.uint8)
    with torch_ops() as ops:
        out = fit_image(ctx, pic, steps=8, hidden=16, layers=2, max_side=12, render_scale=1,
                        save_to=str(tmp_path / "img"))
    assert torch.bfloat16 in ops.dtypes(*MATMULS) and torch.float32 in ops.dtypes(*MATMULS)  # fit, render
    assert ops.devices() == {"cpu"}
    from safetensors import safe_open

    with safe_open(out[1].path, framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    with torch_ops() as ops:
        res = fit_sdf(ctx, shape="sphere", steps=6, hidden=16, layers=2, points=256, resolution=32,
                      save_to=str(tmp_path / "sdf"))
    assert torch.bfloat16 in ops.dtypes(*MATMULS) and ops.devices() == {"cpu"}
    assert len(res[0].faces) > 0
    # the bake of a CPU run: ONNX Runtime on the CPU, not CUDA because it is there (unrecorded: the
    # recorder above stops the ONNX export, and the bake then takes torch, on the run's device too)
    res = fit_sdf(RunContext(device="cpu", plugin="inr"), shape="sphere", steps=2, hidden=16, layers=2, points=256,
                  resolution=32, save_to=str(tmp_path / "sdf2"))
    assert dict(next(r for r in res if r.label == "metrics").rows)["evaluator"] == "onnx"


def test_evaluators_compute_where_they_are_told(tmp_path):
    model = build_model(preset("siren", 3, 1, hidden_features=8, hidden_layers=1), seed=0)
    assert TorchEvaluator(model).device == "cpu"  # the default is the CPU, not "CUDA when there is one"
    ev = make_evaluator(model, backend="auto", device="cpu", cache_dir=tmp_path)
    assert ev.backend == "onnx" and ev.session.get_providers() == ["CPUExecutionProvider"]
    ev = make_evaluator(model, backend="torch", device="cpu")
    assert ev.backend == "torch" and ev.device == "cpu"
    onnx = export_onnx(model, tmp_path / "f.onnx")
    # an ONNX file on the providers it is given, those ONNX Runtime has; CPU when none are given
    assert OnnxField(onnx).session.get_providers() == ["CPUExecutionProvider"]
    assert OnnxField(onnx, providers=("NoSuchExecutionProvider",)).session.get_providers() == ["CPUExecutionProvider"]


def test_inr_render_follows_the_runs_device(samples, tmp_path, torch_ops, cache_env):
    from plugins.inr.tools import render_inr

    ctx = RunContext(device="cpu", plugin="inr")
    with torch_ops() as ops:
        out = render_inr(ctx, str(samples / "image-siren.json"), width=16, height=16)
    assert out[0].image.shape == (16, 16, 3) and ops.devices() == {"cpu"}
    mesh = render_inr(ctx, str(samples / "sdf-torus.json"), resolution=32, width=16, height=16)
    assert len(mesh[0].faces) > 0


@pytest.mark.parametrize("setting", ["cpu", "cuda"])
def test_the_viewers_follow_the_device_setting(qtbot, samples, setting, monkeypatch, caplog, cache_env):
    from app.settings import Settings
    from app.widgets.compute import view_device
    from plugins.inr.view2d import INRImageViewer
    from plugins.inr.view3d import SDFViewer

    from app import devices

    if setting == "cuda" and devices.cuda_device_count_driver() > 0:
        pytest.skip("this machine has a CUDA device: the fallback is for machines without one")
    monkeypatch.delenv("IMPLICIT_STUDIO_DEVICE", raising=False)
    Settings().set("device", setting)
    with caplog.at_level(logging.WARNING, logger="implicit_studio.widgets.compute"):
        assert view_device() == ("cpu", ("CPUExecutionProvider",))
    if setting == "cuda":  # chosen but absent: the viewer shows the field on the CPU and says why
        assert any("cannot be used by the viewer" in r.getMessage() for r in caplog.records)
    v3 = SDFViewer(use_gl=False)
    qtbot.addWidget(v3)
    v3.open_inr(str(samples / "sdf-torus.json"))
    assert v3.device == "cpu" and v3.evaluator.backend == "onnx"
    v2 = INRImageViewer()
    qtbot.addWidget(v2)
    entry = v2.add_inr(str(samples / "image-siren.json"))
    assert entry["evaluator"].device == "cpu"
    Settings().set("device", "auto")
