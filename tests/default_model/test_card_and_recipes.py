"""The training recipes per latent geometry, and the model card written from a training folder."""

import json
from dataclasses import asdict

from app.paths import default_model_dir
from plugins.default_model.card import render_card
from plugins.default_model.train import RECIPES, TrainConfig, train_decoder

MODEL = default_model_dir()


def test_each_geometry_has_its_recipe():
    old = TrainConfig.for_latent("8x8x16")
    assert old.decoder_steps == 3000 and old.unet_lr_lengths == ()
    small = TrainConfig.for_latent("16x16x4")
    assert small.latent == "16x16x4" and small.decoder_steps == 0
    assert set(RECIPES) == {"8x8x16", "16x16x4"}
    assert TrainConfig.for_latent(TrainConfig().latent) == TrainConfig()  # the field defaults are the default recipe


def test_the_shipped_model_has_the_default_recipes_geometry():
    from plugins.default_model.build import latent_geometry

    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    vae = json.loads((MODEL / "vae" / "config.json").read_text())
    assert (unet["sample_size"], vae["latent_channels"]) == latent_geometry(TrainConfig().latent)


def test_a_recipe_without_a_decoder_stage_skips_it_and_writes_nothing(tmp_path):
    said = []
    assert train_decoder(tmp_path, TrainConfig.for_latent("16x16x4"), log=said.append) == []
    assert "no decoder stage" in said[0]
    assert list(tmp_path.iterdir()) == []


def _train_folder(tmp_path, cfg, timings, meta):
    d = tmp_path / "train_out" / "run"
    d.mkdir(parents=True)
    (d / "train_config.json").write_text(json.dumps(asdict(cfg)))
    (d / "timings.json").write_text(json.dumps(timings))
    (d / "unet_ckpt.json").write_text(json.dumps(meta))
    return d


EVAL = {"prompts": 200, "seeds": [0, 1], "guidance": 5.0,
        "by_steps": {"25": {"colour": 0.95, "shape": 0.85, "position": 0.9, "count": 0.9, "size": 0.9,
                            "background": 1.0, "sharpness_ratio": 1.1}}}


def test_card_states_the_recipe_the_folder_was_trained_with(tmp_path):
    cfg = TrainConfig.for_latent("16x16x4")
    # the UNet ran in two processes: the first was stopped, so timings.json holds only the second's time
    meta = {"step": cfg.unet_steps, "losses": [1.0] * 20 + [0.1] * 20, "seconds": 6000.0, "high_noise_since": 0}
    d = _train_folder(tmp_path, cfg, {"vae": 390.0, "latents": 510.0, "decoder": 2.0, "unet": 2500.0}, meta)
    card = render_card(d, EVAL, MODEL)
    assert "latents 16x16x4" in card
    assert "**total 115 min**" in card  # 390 + 510 + 6000 s: the checkpoint's compute time, no decoder stage
    assert "decoder 0.0 min" not in card and "No separate decoder stage" in card
    assert "The mix is there from the first step" in card
    assert f"implicit-studio train-default-model --out {d.as_posix()}\n" in card  # the default recipe: no flags
    assert "shape 85.0% (met)" in card
    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    assert "block channels " + "/".join(map(str, unet["block_out_channels"])) in card  # read from the model folder


def test_card_of_an_extended_run_with_a_decoder_stage(tmp_path):
    cfg = TrainConfig.for_latent("8x8x16")
    meta = {"step": 12000, "losses": [0.5] * 40, "high_noise_since": 5800}
    d = _train_folder(tmp_path, cfg, {"vae": 60.0, "latents": 60.0, "decoder": 120.0, "unet": 600.0}, meta)
    card = render_card(d, {**EVAL, "by_steps": {"25": {**EVAL["by_steps"]["25"], "shape": 0.6}}}, MODEL)
    assert "Then the decoder alone: 3000 steps" in card and "decoder 2.0 min" in card
    assert "switched to the mix at step 5,800" in card
    assert f"train-default-model --out {d.as_posix()} --latent 8x8x16\n" in card
    assert "cosine to 10% over 12000 steps" in card
    assert "**total 14 min**" in card and "shape 60.0% (missed)" in card


def test_an_extended_schedule_keeps_its_earlier_length_until_the_extension():
    from plugins.default_model.card import schedule_text
    from plugins.default_model.train import lr_length

    cfg = TrainConfig(unet_steps=12000, unet_lr_lengths=(10000,))
    assert [lr_length(cfg, s) for s in (0, 9999, 10000, 11999)] == [10000, 10000, 12000, 12000]
    assert lr_length(TrainConfig(unet_steps=500, unet_lr_lengths=()), 499) == 500
    text = schedule_text({"unet_steps": 12000, "unet_lr_lengths": [10000]})
    assert text == "a 10,000-step cosine to 10%, lengthened to 12,000 steps at step 10,000"
    assert schedule_text({"unet_steps": 800}) == "cosine to 10% over 800 steps"
