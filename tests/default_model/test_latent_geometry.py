"""The training recipe's latent geometries: the shipped 8x8x16 and 16x16x4."""

import json
import subprocess
import sys

import pytest
import torch

from plugins.default_model.build import LATENTS, latent_geometry, make_unet, make_vae


@pytest.mark.parametrize("name", sorted(LATENTS))
def test_vae_and_unet_agree_on_the_latent(name):
    size, channels = latent_geometry(name)
    torch.manual_seed(0)
    vae, unet = make_vae(name).eval(), make_unet(name).eval()
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
        assert tuple(z.shape) == (1, channels, size, size)
        assert vae.decode(z).sample.shape == (1, 3, 64, 64)
        out = unet(z, torch.tensor([500]), torch.zeros(1, 4, 128)).sample
    assert out.shape == z.shape
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 64 // size  # what diffusers reads as the VAE's scale


def test_unknown_geometry_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="8x8x16, 16x16x4"):
        latent_geometry("32x32x1")
    r = subprocess.run([sys.executable, "-m", "plugins.default_model.train", "--out", "unused", "--latent", "4x4x64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown latent geometry '4x4x64'" in r.stderr


def test_a_folder_keeps_its_geometry(tmp_path):
    from plugins.default_model.train import TrainConfig, run

    (tmp_path / "train_config.json").write_text(json.dumps({"latent": "8x8x16"}))
    (tmp_path / "vae_ckpt.safetensors").write_bytes(b"")
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit, match="holds a model with 8x8x16 latents, not 16x16x4"):
        run(tmp_path, TrainConfig(latent="16x16x4", threads=threads + 1), stages=())
    assert torch.get_num_threads() == threads  # refused before touching this process's settings
    assert json.loads((tmp_path / "train_config.json").read_text()) == {"latent": "8x8x16"}  # untouched
