"""The training recipes per latent geometry, and the model card written from a training folder."""

import json
from dataclasses import asdict

from app.paths import default_model_dir
from lab.default_model.card import render_card
from lab.default_model.train import RECIPES, TrainConfig, train_decoder

MODEL = default_model_dir()


def test_each_geometry_has_its_recipe():
    old = TrainConfig.for_latent("8x8x16")
    assert old.decoder_steps == 3000 and old.unet_lr_lengths == () and old.unet_batch_ramp == ()
    assert old.unet_channels == ()  # its UNet keeps the geometry's widths (96/128/128)
    small = TrainConfig.for_latent("16x16x4")
    assert small.latent == "16x16x4" and small.decoder_steps == 0
    # the shipped recipe: the narrow UNet, 14,000 steps, one cosine (benchmarks/RESULTS.md)
    assert (small.unet_channels, small.unet_steps, small.unet_lr_lengths) == ((48, 96, 96), 14000, ())
    assert set(RECIPES) == {"8x8x16", "16x16x4"}
    assert TrainConfig.for_latent(TrainConfig().latent) == TrainConfig()  # the field defaults are the default recipe


def test_the_shipped_model_has_the_default_recipes_geometry():
    from lab.default_model.build import latent_geometry

    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    vae = json.loads((MODEL / "vae" / "config.json").read_text())
    assert (unet["sample_size"], vae["latent_channels"]) == latent_geometry(TrainConfig().latent)
    assert tuple(unet["block_out_channels"]) == TrainConfig().unet_channels  # the recipe trains what ships


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
    from lab.default_model.card import schedule_text
    from lab.default_model.train import lr_length

    cfg = TrainConfig(unet_steps=12000, unet_lr_lengths=(10000,))
    assert [lr_length(cfg, s) for s in (0, 9999, 10000, 11999)] == [10000, 10000, 12000, 12000]
    assert lr_length(TrainConfig(unet_steps=500, unet_lr_lengths=()), 499) == 500
    text = schedule_text({"unet_steps": 12000, "unet_lr_lengths": [10000]})
    assert text == "a 10,000-step cosine to 10%, lengthened to 12,000 steps at step 10,000"
    assert schedule_text({"unet_steps": 800}) == "cosine to 10% over 800 steps"


def test_the_unet_batch_ramps_up_to_the_full_batch():
    from lab.default_model.train import unet_batch_at

    assert {unet_batch_at(TrainConfig(), s) for s in (0, 11999)} == {64}  # the shipped recipe: no ramp
    cfg = TrainConfig(unet_batch_ramp=((6000, 32),))  # the two-hour attempt (benchmarks/RESULTS.md)
    assert [unet_batch_at(cfg, s) for s in (0, 5999, 6000, cfg.unet_steps - 1)] == [32, 32, 64, 64]
    two = TrainConfig(unet_batch=64, unet_batch_ramp=((4000, 32), (1000, 16)))  # order given does not matter
    assert [unet_batch_at(two, s) for s in (0, 999, 1000, 3999, 4000)] == [16, 16, 32, 32, 64]
    assert unet_batch_at(TrainConfig.for_latent("8x8x16"), 0) == 64


def test_the_progress_eta_counts_the_larger_batches_still_to_come(capsys, monkeypatch):
    from lab.default_model import train
    from lab.default_model.train import Progress, unet_samples

    cfg = TrainConfig(unet_steps=12000, unet_batch=64, unet_batch_ramp=((6000, 32),))
    assert [unet_samples(cfg, s) for s in (0, 100, 6000, 6001, 12000)] == [0, 3200, 192000, 192064, 576000]
    assert unet_samples(TrainConfig(unet_batch=64, unet_batch_ramp=()), 10) == 640
    clock = iter([1000.0, 1100.0])  # 100 s for the first 3,000 steps of batch 32
    monkeypatch.setattr(train.time, "time", lambda: next(clock))
    prog = Progress("unet", cfg.unet_steps, work=lambda s: unet_samples(cfg, s))
    prog.update(3000)
    line = capsys.readouterr().out
    # 96,000 samples took 100 s; 480,000 are left (3,000 x 32 + 6,000 x 64): 500 s, not the 300 s
    # that the step rate alone would give
    assert "30.00 it/s ETA 8.3 min" in line, line


def test_card_shows_what_the_shape_score_is_made_of(tmp_path):
    cfg = TrainConfig()
    meta = {"step": cfg.unet_steps, "losses": [0.5] * 40, "seconds": 60.0, "high_noise_since": 0}
    d = _train_folder(tmp_path, cfg, {"unet": 60.0}, meta)
    assert "What the shape score is made of" not in render_card(d, EVAL, MODEL)  # an older evaluation: no breakdown
    shapes = {"objects": 600, "errors": 90, "by_size": {"small": 0.7, "large": 0.9},
              "by_shape": {"square": 0.5, "star": 0.95}, "asked": {"square": 100, "star": 120},
              "misread": {"square as circle": 40, "star as circle": 6}}
    ev = {**EVAL, "by_steps": {"4": EVAL["by_steps"]["25"], "25": {**EVAL["by_steps"]["25"], "shapes": shapes}}}
    card = render_card(d, ev, MODEL)
    assert "What the shape score is made of (25 steps, all 600 asked objects)" in card
    assert "| small | 70% | |" in card and "| square | 50% | 100 |" in card
    assert "of 90 errors: square as circle (40), star as circle (6)." in card


def test_card_and_command_state_a_batch_ramp(tmp_path):
    from lab.default_model.card import batch_text

    assert batch_text({"unet_batch": 64, "unet_batch_ramp": [[6000, 32]]}) == "batch 32 for steps 0-5,999, 64 after"
    assert batch_text({"unet_batch": 64, "unet_batch_ramp": []}) == "batch 64"
    cfg = TrainConfig(unet_batch_ramp=((3000, 16),))
    meta = {"step": cfg.unet_steps, "losses": [0.5] * 40, "seconds": 60.0, "high_noise_since": 0}
    d = _train_folder(tmp_path, cfg, {"vae": 60.0, "latents": 60.0, "unet": 60.0}, meta)
    card = render_card(d, EVAL, MODEL)
    assert f"--out {d.as_posix()} --unet-batch-ramp 3000:16\n" in card
    assert "batch 16 for steps 0-2,999, 64 after" in card
    assert "batch 64," in render_card(_train_folder(tmp_path / "b", TrainConfig(), {"unet": 60.0}, meta), EVAL, MODEL)


def test_the_command_line_reads_a_batch_ramp_and_refuses_a_malformed_one(tmp_path, capsys, monkeypatch):
    import pytest

    from lab.default_model import train

    seen = []

    def record(out, cfg, stages):  # the recipe the command would train, not the training itself
        seen.append(cfg)
        return {}

    monkeypatch.setattr(train, "run", record)
    assert train.main(["--out", str(tmp_path), "--unet-batch-ramp", "2000:16,5000:32"]) == 0
    assert seen[-1].unet_batch_ramp == ((2000, 16), (5000, 32))
    assert train.main(["--out", str(tmp_path), "--unet-batch-ramp", "none"]) == 0
    assert seen[-1].unet_batch_ramp == ()
    assert train.main(["--out", str(tmp_path)]) == 0
    assert seen[-1] == TrainConfig()
    for bad in ("6000", "6000:x", "0:32", "6000:32:1"):
        with pytest.raises(SystemExit):
            train.main(["--out", str(tmp_path), "--unet-batch-ramp", bad])
        assert "--unet-batch-ramp takes UNTIL:BATCH pairs" in capsys.readouterr().err
    assert len(seen) == 3


def test_training_threads_follow_the_other_processes_load_not_its_own(monkeypatch):
    import os
    import time

    import torch

    from lab.default_model import train

    def reading(load, cpu, wall):
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(time, "process_time", lambda: cpu)
        monkeypatch.setattr(time, "monotonic", lambda: wall)

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    from plugins.diffusion_common import checkpoint

    monkeypatch.setattr(checkpoint, "_OWN_CPU", {})
    try:
        torch.set_num_threads(1)
        reading(1.35, 100.0, 0.0)
        train.adapt_threads(2)
        # one thread that keeps 1.3 cores busy (13 CPU s in 10 s) and a load of 1.35: the machine is
        # this process's alone, so it goes back to two threads
        reading(1.35, 113.0, 10.0)
        train.adapt_threads(2)
        assert torch.get_num_threads() == 2
        # another process takes a core (load 3.3 while this one keeps 2.0 busy): one thread
        reading(3.3, 133.0, 20.0)
        train.adapt_threads(2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
