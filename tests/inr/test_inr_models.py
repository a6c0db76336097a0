"""Architectures: forward shapes, SIREN initialisation, native save/load, flattening, interpolation."""

import math

import numpy as np
import pytest
import torch

from plugins.inr.models import (
    INRConfig,
    INRConfigError,
    build_model,
    flatten_weights,
    interpolate_weights,
    load_inr,
    parameter_layout,
    preset,
    save_inr,
    unflatten_weights,
    weights_hash,
)

ARCHS = ["siren", "relu_pe", "relu_ff", "wire", "gauss", "hashgrid"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dims", [(2, 3), (3, 1)])
def test_forward_shapes_and_finite(arch, dims):
    d, k = dims
    over = {"hidden_features": 16, "hidden_layers": 1}
    if arch == "hashgrid":
        over.update(hash_levels=4, hash_log2_size=10, hash_max_resolution=64)
    model = build_model(preset(arch, d, k, **over), seed=0)
    x = torch.rand(37, d) * 2 - 1
    y = model(x)
    assert y.shape == (37, k)
    assert torch.isfinite(y).all()
    # gradients reach every parameter (the network is trainable end to end)
    y.sum().backward()
    # (the last WIRE layer's imaginary bias cannot change the real output, as in WIRE itself)
    last_imag = f"layers.{len(model.layers) - 1}.bias_imag"
    assert all(p.grad is not None for n, p in model.named_parameters() if n != last_imag)


def test_siren_initialisation_bounds():
    cfg = preset("siren", 2, 1, hidden_features=256, hidden_layers=3, w0=30.0)
    m = build_model(cfg, seed=0)
    first = m.layers[0].weight
    assert first.abs().max() <= 1 / 2 + 1e-6  # U(-1/n, 1/n), n = 2 inputs
    hidden = m.layers[1].weight
    bound = math.sqrt(6 / 256) / 30
    assert hidden.abs().max() <= bound + 1e-7
    assert hidden.abs().max() > 0.9 * bound  # uniform over the full range
    # activations of a hidden layer stay O(1) (the point of SIREN's init): arcsine-distributed
    x = torch.rand(4096, 2) * 2 - 1
    h = torch.sin(30 * m.layers[0](x))
    h2 = torch.sin(30 * m.layers[1](h))
    assert 0.5 < h2.std() < 0.9


def test_positional_encoding_width():
    m = build_model(INRConfig(arch="relu", encoding="positional", pe_frequencies=4, in_features=3,
                              out_features=1, hidden_features=8, hidden_layers=1, kind="sdf"))
    assert m.layers[0].in_features == 27  # HyperDiffusion's 3 * (1 + 2 * 4)


def test_bad_configs_have_messages():
    with pytest.raises(INRConfigError, match="Unknown architecture"):
        INRConfig(arch="transformer").validate()
    with pytest.raises(INRConfigError, match="bounds"):
        INRConfig(in_features=3, bounds=[[0, 0, 0], [1, 1]]).validate()
    with pytest.raises(INRConfigError, match="Unknown keys"):
        INRConfig.from_dict({"arch": "siren", "colour": 3})
    with pytest.raises(INRConfigError, match="not valid JSON"):
        INRConfig.from_json("{arch: siren")


def test_save_load_roundtrip(tmp_path):
    m = build_model(preset("wire", 2, 3, hidden_features=8, hidden_layers=1), seed=3)
    js = save_inr(m, tmp_path / "net")
    assert js.exists() and (tmp_path / "net.safetensors").exists()
    m2 = load_inr(js)
    x = torch.rand(20, 2)
    assert torch.allclose(m(x), m2(x))
    assert weights_hash(m) == weights_hash(m2)
    # a lone .safetensors is self-describing (config in its metadata)
    js.unlink()
    m3 = load_inr(tmp_path / "net.safetensors")
    assert torch.allclose(m(x), m3(x))


def test_weights_not_matching_config_name_the_tensor(tmp_path):
    m = build_model(preset("siren", 2, 1, hidden_features=8, hidden_layers=1))
    js = save_inr(m, tmp_path / "net")
    data = INRConfig.from_json(js.read_text()).to_dict()
    data["hidden_features"] = 16
    data["weights"] = "net.safetensors"
    js.write_text(__import__("json").dumps(data))
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*\(8, 2\).*\(16, 2\)"):
        load_inr(js)


def test_nan_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    m = build_model(preset("siren", 2, 1, hidden_features=8, hidden_layers=1))
    js = save_inr(m, tmp_path / "net")
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["layers.1.weight"][0, 0] = float("nan")
    save_file(state, str(tmp_path / "net.safetensors"))
    with pytest.raises(ValueError, match=r"layers\.1\.weight.*NaN"):
        load_inr(js)


def test_flatten_roundtrip_and_wrong_length():
    cfg = preset("relu_pe", 3, 1, hidden_features=8, hidden_layers=2)
    m = build_model(cfg, seed=2)
    vec = flatten_weights(m)
    assert vec.size == sum(int(np.prod(s)) for _, s in parameter_layout(cfg))
    m2 = unflatten_weights(vec, cfg)
    x = torch.rand(10, 3)
    assert torch.allclose(m(x), m2(x))
    with pytest.raises(ValueError, match="has 9 values"):
        unflatten_weights(vec[:9], cfg)


def test_interpolation_endpoints_and_midpoint():
    cfg = preset("siren", 3, 1, hidden_features=8, hidden_layers=1)
    a, b = build_model(cfg, seed=1), build_model(cfg, seed=2)
    x = torch.rand(16, 3)
    assert torch.allclose(interpolate_weights(a, b, 0.0)(x), a(x))
    assert torch.allclose(interpolate_weights(a, b, 1.0)(x), b(x))
    mid = interpolate_weights(a, b, 0.5)
    assert torch.allclose(mid.layers[0].weight, 0.5 * (a.layers[0].weight + b.layers[0].weight))
    other = build_model(preset("siren", 3, 1, hidden_features=16, hidden_layers=1))
    with pytest.raises(ValueError, match="architecture"):
        interpolate_weights(a, other, 0.5)
