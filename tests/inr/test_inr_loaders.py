"""Opening INRs written by other code: state dicts, checkpoints, flat vectors, npz, ONNX, bad files."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from plugins.inr.loaders import INRLoadError, guess_architecture, open_inr, with_config
from plugins.inr.models import build_model, flatten_weights, preset


def _siren_reference_state(widths=(16, 16), d=3, out=1, seed=0):
    """A state dict laid out like vsitzmann/siren's SingleBVPNet (net.net.<i>.0.weight)."""
    cfg = preset("siren", d, out, widths=list(widths), hidden_layers=len(widths) - 1)
    m = build_model(cfg, seed=seed)
    state = {}
    for i, layer in enumerate(m.layers):
        state[f"net.net.{i}.0.weight"] = layer.weight.detach().clone()
        state[f"net.net.{i}.0.bias"] = layer.bias.detach().clone()
    return m, state


def test_plain_siren_state_dict_guessed_and_equal(tmp_path):
    ref, state = _siren_reference_state()
    path = tmp_path / "model_final.pth"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    loaded = open_inr(path)
    assert loaded.config.arch == "siren"
    assert loaded.guess.confidence >= 0.5
    assert any("module" in r for r in loaded.guess.reasons)
    x = torch.rand(50, 3) * 2 - 1
    assert torch.allclose(loaded.model(x), ref(x), atol=1e-6)


def test_relu_network_not_mistaken_for_siren():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    guess = guess_architecture(seq.state_dict())
    assert guess.config.arch == "relu"
    assert guess.config.in_features == 2 and guess.config.out_features == 3
    assert guess.config.kind == "image"


class _DeepSDFLike(nn.Module):
    """A DeepSDF-style decoder: latent ++ xyz, weight norm, skip concatenation at layer 2, tanh."""

    def __init__(self, latent=8, width=16):
        super().__init__()
        d0 = latent + 3
        self.lin0 = nn.utils.weight_norm(nn.Linear(d0, width))
        self.lin1 = nn.utils.weight_norm(nn.Linear(width, width - d0))
        self.lin2 = nn.utils.weight_norm(nn.Linear(width, width))
        self.lin3 = nn.Linear(width, 1)

    def forward(self, z, xyz):
        inp = torch.cat([z.expand(len(xyz), -1), xyz], 1)
        x = torch.relu(self.lin0(inp))
        x = torch.relu(self.lin1(x))
        x = torch.relu(self.lin2(torch.cat([x, inp], 1)))
        return torch.tanh(self.lin3(x))


def test_deepsdf_checkpoint_with_weight_norm_and_latent(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        dec = _DeepSDFLike()
    state = {"module." + k: v for k, v in dec.state_dict().items()}
    assert any(k.endswith("weight_g") for k in state)
    ckpt = tmp_path / "2000.pth"
    torch.save({"epoch": 2000, "model_state_dict": state}, ckpt)
    codes = torch.randn(5, 8)
    lat = tmp_path / "latest.pth"
    torch.save({"epoch": 2000, "latent_codes": {"weight": codes}}, lat)
    loaded = open_inr(ckpt, latent_codes=lat, latent_index=3)
    cfg = loaded.config
    assert cfg.latent_dim == 8 and cfg.skip_in == [2] and cfg.output_activation == "tanh"
    assert loaded.info["epoch"] == 2000
    assert any("weight norm" in r for r in loaded.guess.reasons)
    xyz = torch.rand(40, 3) * 2 - 1
    with torch.no_grad():
        expected = dec(codes[3:4], xyz)
    assert torch.allclose(loaded.model(xyz), expected, atol=1e-5)
    with pytest.raises(INRLoadError, match="out of range"):
        open_inr(ckpt, latent_codes=lat, latent_index=9)


def test_parametrization_weight_norm_is_folded(tmp_path):
    torch.manual_seed(0)
    lin = nn.utils.parametrizations.weight_norm(nn.Linear(3, 8))
    seq = nn.Sequential(lin, nn.ReLU(), nn.Linear(8, 1))
    guess = guess_architecture(seq.state_dict())
    assert "layers.0.weight" in guess.state
    assert torch.allclose(guess.state["layers.0.weight"], lin.weight.detach(), atol=1e-6)


def _hyperdiffusion_like(seed=0):
    cfg = preset("relu_pe", 3, 1, hidden_features=16, hidden_layers=2, pe_frequencies=4, pe_scale=1.0)
    return cfg, build_model(cfg, seed=seed)


def test_hyperdiffusion_state_dict_and_flat_vector(tmp_path):
    cfg, m = _hyperdiffusion_like()
    # per-shape state dict: guessed as ReLU + positional encoding with 4 frequencies
    torch.save({k: v for k, v in m.state_dict().items()}, tmp_path / "occ_shape_model_final.pth")
    loaded = open_inr(tmp_path / "occ_shape_model_final.pth")
    assert loaded.config.arch == "relu" and loaded.config.encoding == "positional"
    assert loaded.config.pe_frequencies == 4
    x = torch.rand(30, 3) * 2 - 1
    assert torch.allclose(loaded.model(x), m(x), atol=1e-6)
    # flattened weight vector + config
    vec = torch.from_numpy(flatten_weights(m))
    torch.save(vec, tmp_path / "vec.pth")
    with pytest.raises(INRLoadError, match="flat weight vector"):
        open_inr(tmp_path / "vec.pth")
    loaded2 = open_inr(tmp_path / "vec.pth", config=cfg.to_dict())
    assert torch.allclose(loaded2.model(x), m(x), atol=1e-6)
    # a sidecar JSON is picked up without being asked
    (tmp_path / "vec.json").write_text(cfg.to_json())
    assert torch.allclose(open_inr(tmp_path / "vec.pth").model(x), m(x), atol=1e-6)


def test_npz_named_arrays_and_flat(tmp_path):
    _, state = _siren_reference_state(widths=(8, 8), d=2, out=3)
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in state.items()})
    loaded = open_inr(tmp_path / "w.npz")
    assert loaded.config.in_features == 2 and loaded.config.out_features == 3
    cfg, m = _hyperdiffusion_like()
    np.savez(tmp_path / "flat.npz", weights=flatten_weights(m))
    loaded2 = open_inr(tmp_path / "flat.npz", config=cfg)
    x = torch.rand(9, 3)
    assert torch.allclose(loaded2.model(x), m(x), atol=1e-6)


def test_wire_state_dict_with_complex_weights():
    """vishwa91/wire layout: net.0.linear real, later layers complex, omega_0/scale_0 parameters."""
    torch.manual_seed(0)
    w0, s0, width = 20.0, 10.0, 8
    lin0 = nn.Linear(2, width)
    lin1 = nn.Linear(width, width, dtype=torch.cfloat)
    lin2 = nn.Linear(width, 1, dtype=torch.cfloat)
    state = {
        "net.0.omega_0": torch.tensor([w0]), "net.0.scale_0": torch.tensor([s0]),
        "net.0.linear.weight": lin0.weight.detach(), "net.0.linear.bias": lin0.bias.detach(),
        "net.1.omega_0": torch.tensor([w0]), "net.1.scale_0": torch.tensor([s0]),
        "net.1.linear.weight": lin1.weight.detach(), "net.1.linear.bias": lin1.bias.detach(),
        "net.2.weight": lin2.weight.detach(), "net.2.bias": lin2.bias.detach(),
    }
    guess = guess_architecture(state)
    assert guess.config.arch == "wire" and guess.confidence >= 0.8
    assert guess.config.w0 == w0 and guess.config.sigma0 == s0
    from plugins.inr.loaders import build_from_guess

    model = build_from_guess(guess)
    x = torch.rand(25, 2) * 2 - 1

    def gabor(u):
        return torch.exp(1j * w0 * u - (s0 * u).abs().square())

    with torch.no_grad():
        h = gabor(lin0(x).to(torch.cfloat))
        h = gabor(lin1(h))
        expected = lin2(h).real
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_user_correction_of_guess():
    _, state = _siren_reference_state()
    guess = guess_architecture(state)
    cfg = with_config(guess, w0=15.0, kind="occupancy", output_activation="sigmoid", iso_level=0.5)
    assert cfg.w0 == 15.0 and cfg.kind == "occupancy"


def test_onnx_roundtrip(tmp_path):
    from plugins.inr.fields import export_onnx

    m = build_model(preset("siren", 3, 1, hidden_features=16, hidden_layers=1), seed=4)
    export_onnx(m, tmp_path / "f.onnx")
    loaded = open_inr(tmp_path / "f.onnx")
    assert loaded.info["format"] == "onnx"
    assert loaded.config.arch == "siren"  # config travels in the ONNX metadata
    x = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model(x), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


# ------------------------------------------------------------------ bad inputs
class PickledThing:
    pass


def test_bad_inputs_have_clear_messages(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(INRLoadError, match="weights-only"):
        open_inr(garbage)

    # a pickled class needs the training code: refused by weights_only
    torch.save({"model": PickledThing()}, tmp_path / "pickled.pth")
    with pytest.raises(INRLoadError, match="refused for safety|weights-only"):
        open_inr(tmp_path / "pickled.pth")

    np.savez(tmp_path / "samples.npz", pos=np.zeros((4, 4)), neg=np.zeros((4, 4)))
    with pytest.raises(INRLoadError, match="SDF samples"):
        open_inr(tmp_path / "samples.npz")

    _, state = _siren_reference_state()
    state["net.net.1.0.weight"][0, 0] = float("inf")
    torch.save(state, tmp_path / "inf.pth")
    with pytest.raises(INRLoadError, match=r"net\.net\.1\.0\.weight.*NaN/Inf"):
        open_inr(tmp_path / "inf.pth")

    torch.save({"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4), "b.weight": torch.zeros(2, 9),
                "b.bias": torch.zeros(2)}, tmp_path / "broken.pth")
    with pytest.raises(INRLoadError, match="do not connect"):
        open_inr(tmp_path / "broken.pth")

    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(INRLoadError, match="unsupported"):
        open_inr(tmp_path / "x.txt")

    with pytest.raises(FileNotFoundError):
        open_inr(tmp_path / "missing.pth")

    # a config that does not match the weights names the tensor and both shapes
    _, good = _siren_reference_state()
    torch.save(good, tmp_path / "good.pth")
    wrong = preset("siren", 3, 1, hidden_features=32, hidden_layers=1)
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*\(16, 3\).*\(32, 3\)"):
        open_inr(tmp_path / "good.pth", config=wrong)
    (tmp_path / "bad.onnx").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a loadable ONNX"):
        open_inr(tmp_path / "bad.onnx", config=wrong)
