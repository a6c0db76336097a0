"""The training recipe's latent geometries: the shipped 8x8x16 and 16x16x4."""

import json
import subprocess
import sys

import pytest
import torch

from lab.default_model.build import LATENTS, latent_geometry, make_unet, make_vae


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
    r = subprocess.run([sys.executable, "-m", "lab.default_model.train", "--out", "unused", "--latent", "4x4x64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown latent geometry '4x4x64'" in r.stderr


def test_a_folder_keeps_its_geometry(tmp_path):
    from lab.default_model.train import TrainConfig, run

    (tmp_path / "train_config.json").write_text(json.dumps({"latent": "8x8x16"}))
    (tmp_path / "vae_ckpt.safetensors").write_bytes(b"")
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit, match="holds a model with 8x8x16 latents, not 16x16x4"):
        run(tmp_path, TrainConfig(latent="16x16x4", threads=threads + 1), stages=())
    assert torch.get_num_threads() == threads  # refused before touching this process's settings
    assert json.loads((tmp_path / "train_config.json").read_text()) == {"latent": "8x8x16"}  # untouched


def test_the_unet_widths_are_a_setting_with_group_norms_that_fit():
    from lab.default_model.build import UNET_CHANNELS

    size, channels = latent_geometry("16x16x4")
    narrow = make_unet("16x16x4", (48, 96, 96))
    assert tuple(narrow.config.block_out_channels) == (48, 96, 96)
    assert narrow.config.norm_num_groups == 16  # 32 does not divide 48
    assert tuple(make_unet("16x16x4").config.block_out_channels) == UNET_CHANNELS[16]
    assert make_unet("16x16x4").config.norm_num_groups == 32
    assert sum(p.numel() for p in narrow.parameters()) < 0.7 * sum(p.numel() for p in make_unet("16x16x4").parameters())
    with torch.no_grad():
        out = narrow(torch.zeros(2, channels, size, size), torch.tensor([10, 900]), torch.zeros(2, 4, 128)).sample
    assert out.shape == (2, channels, size, size)
    for bad in ((48, 96), (50, 96, 96), (0, 96, 96)):
        with pytest.raises(ValueError, match="three block widths"):
            make_unet("16x16x4", bad)


def test_bad_unet_widths_on_the_command_line_are_refused_before_training(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.default_model.train", "--out", str(tmp_path / "x"),
                        "--unet-channels", "48,abc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--unet-channels takes three block widths" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lab.default_model.train", "--out", str(tmp_path / "x"),
                        "--unet-channels", "48,96"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not (48, 96)" in r.stderr
    assert not (tmp_path / "x").exists()  # nothing written


def test_a_folder_keeps_its_unet_widths(tmp_path):
    from lab.default_model.train import TrainConfig, _unet_channels_of, run

    (tmp_path / "train_config.json").write_text(json.dumps({"latent": "16x16x4", "unet_channels": [48, 96, 96]}))
    (tmp_path / "vae_ckpt.safetensors").write_bytes(b"")
    (tmp_path / "unet_ckpt.safetensors").write_bytes(b"")
    assert _unet_channels_of(tmp_path) == (48, 96, 96)
    with pytest.raises(SystemExit, match="block widths 48/96/96, not 64/128/128; .* --unet-channels 48,96,96"):
        run(tmp_path, TrainConfig(unet_channels=(64, 128, 128)), stages=())
    with pytest.raises(SystemExit, match="block widths 48/96/96, not 64/128/128"):
        run(tmp_path, TrainConfig(unet_channels=()), stages=())  # empty: the geometry's widths
    assert json.loads((tmp_path / "train_config.json").read_text())["unet_channels"] == [48, 96, 96]  # untouched
    run(tmp_path, TrainConfig(threads=torch.get_num_threads()), stages=())  # the recipe's own widths: it resumes


def test_a_folder_from_before_the_widths_were_a_setting_resumes_with_its_widths(tmp_path):
    from lab.default_model.train import TrainConfig, run

    (tmp_path / "train_config.json").write_text(json.dumps({"latent": "16x16x4", "unet_channels": []}))
    (tmp_path / "vae_ckpt.safetensors").write_bytes(b"")
    (tmp_path / "unet_ckpt.safetensors").write_bytes(b"")
    run(tmp_path, TrainConfig(unet_channels=(64, 128, 128), threads=torch.get_num_threads()), stages=())  # empty meant 64/128/128
    with pytest.raises(SystemExit, match="block widths 64/128/128, not 48/96/96; .* --unet-channels 64,128,128"):
        run(tmp_path, TrainConfig(), stages=())


def test_the_export_builds_the_unet_the_folder_was_trained_with(tmp_path):
    """A narrow UNet's checkpoint exports into a pipeline whose UNet has those widths (not the default's)."""
    from lab.default_model.train import TrainConfig, export_pipeline, run

    cfg = TrainConfig.smoke()
    cfg.unet_channels, cfg.unet_steps, cfg.vae_crop_steps, cfg.vae_full_steps = (32, 64, 64), 2, 2, 2
    cfg.num_images, cfg.unet_batch, cfg.unet_batch_ramp, cfg.checkpoint_every = 16, 4, (), 1
    threads = torch.get_num_threads()
    try:
        run(tmp_path, cfg, stages=("vae", "latents", "unet"), log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
    pipe = export_pipeline(tmp_path, log=lambda *_: None)
    unet = json.loads((pipe / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [32, 64, 64] and unet["norm_num_groups"] == 32
