"""The training recipe's arithmetic: bfloat16 autocast on CPUs with AMX, float32 elsewhere, recorded."""

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest

from app.paths import default_model_dir
from lab.default_model.card import precision_text, render_card, training_command
from lab.default_model.train import TrainConfig, mixed_precision, resolve_precision

MODEL = default_model_dir()


def test_auto_takes_bf16_only_where_the_cpu_has_amx(monkeypatch):
    import torch

    assert TrainConfig().precision == "auto"  # the recipe's own setting
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probe
    assert resolve_precision("auto") == "fp32"
    assert (resolve_precision("bf16"), resolve_precision("fp32")) == ("bf16", "fp32")
    with pytest.raises(ValueError, match="choose one of auto, bf16, fp32"):
        resolve_precision("fp16")


def test_bf16_runs_the_forward_pass_in_bfloat16_with_float32_attention_weights_and_gradients():
    import torch
    import torch.nn.functional as F

    sdpa = F.scaled_dot_product_attention
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 3, 5, 8)
    with mixed_precision("bf16"):
        q = lin(x)  # a projection, as in the models: bfloat16 under autocast
        att = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert q.dtype == torch.bfloat16 and att.dtype == torch.bfloat16
    # attention itself ran in float32 on the bfloat16 projections, then came back in their dtype
    assert torch.equal(att, sdpa(q.float(), q.float(), q.float(), is_causal=True).to(torch.bfloat16))
    assert not torch.equal(att, sdpa(q, q, q, is_causal=True))  # not what bfloat16 attention gives
    att.float().pow(2).mean().backward()
    assert lin.weight.dtype == torch.float32 and lin.weight.grad.dtype == torch.float32
    with mixed_precision("fp32"):
        assert lin(x).dtype == torch.float32
    # the context leaves torch as it found it, also when the pass inside it fails
    assert not torch.is_autocast_enabled("cpu") and F.scaled_dot_product_attention is sdpa
    with pytest.raises(RuntimeError, match="a failing pass"):
        with mixed_precision("bf16"):
            raise RuntimeError("a failing pass")
    assert not torch.is_autocast_enabled("cpu") and F.scaled_dot_product_attention is sdpa


@pytest.mark.timeout(300)
def test_each_run_records_its_arithmetic_and_a_bf16_resume_adds_to_the_record(tmp_path):
    """A float32 smoke run, then two more UNet steps in bfloat16 on the same folder.

    (Only two bfloat16 steps: a CPU without bfloat16 instructions emulates them, 10x slower. Where the
    CPU has AMX the plain smoke test runs every stage in bfloat16, its "auto".)
    """
    from safetensors import safe_open

    out = tmp_path / "train"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lab.default_model.train", "--out", str(out), "--smoke", "--threads", "1"]
    r = subprocess.run(cmd + ["--stages", "vae,latents,unet", "--precision", "fp32"],
                       capture_output=True, text=True, env=env, timeout=200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "[smoke] ok: losses fall" in r.stdout and "[unet] arithmetic: float32" in r.stdout
    assert json.loads((out / "vae_ckpt.json").read_text())["precisions"] == ["fp32"]
    assert json.loads((out / "unet_ckpt.json").read_text())["precisions"] == ["fp32"]
    with safe_open(str(out / "latents.safetensors"), framework="pt") as f:
        assert f.metadata()["precision"] == "fp32"

    r2 = subprocess.run(cmd + ["--stages", "unet", "--precision", "bf16", "--unet-steps", "42"],
                        capture_output=True, text=True, env=env, timeout=200)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-2000:]
    assert "resuming at step 40" in r2.stdout and "[unet] arithmetic: bfloat16 autocast" in r2.stdout
    meta = json.loads((out / "unet_ckpt.json").read_text())
    assert meta["step"] == 42 and meta["precisions"] == ["bf16", "fp32"]
    assert "for some steps and float32 for others" in precision_text(meta["precisions"])
    with safe_open(str(out / "unet_ckpt.safetensors"), framework="pt") as f:  # bfloat16 never reaches the weights
        assert {str(f.get_tensor(k).dtype) for k in f.keys() if k.startswith(("unet.", "ema_unet."))} == {"torch.float32"}


def test_the_card_states_the_arithmetic_and_the_command_names_a_fixed_one(tmp_path):
    def folder(name, cfg, meta):
        d = tmp_path / name
        d.mkdir()
        (d / "train_config.json").write_text(json.dumps(cfg))
        (d / "timings.json").write_text(json.dumps({"vae": 60.0, "latents": 60.0, "unet": 600.0}))
        (d / "unet_ckpt.json").write_text(json.dumps(meta))
        return d

    ev = {"prompts": 200, "seeds": [0, 1], "guidance": 5.0,
          "by_steps": {"25": {"colour": 0.95, "shape": 0.85, "position": 0.9, "count": 0.9, "size": 0.9,
                              "background": 1.0, "sharpness_ratio": 1.1}}}
    meta = {"step": 14000, "losses": [0.5] * 40, "seconds": 600.0, "high_noise_since": 0, "precisions": ["bf16"]}
    d = folder("amx", asdict(TrainConfig()), meta)
    card = render_card(d, ev, MODEL)
    assert "- Arithmetic: bfloat16 autocast for the forward passes" in card
    assert f"train-default-model --out {d.as_posix()}\n" in card  # auto is the recipe's: no flag

    fixed = folder("fixed", asdict(TrainConfig(precision="fp32")), {**meta, "precisions": ["fp32"]})
    card = render_card(fixed, ev, MODEL)
    assert "- Arithmetic: float32 throughout" in card
    assert f"--out {fixed.as_posix()} --precision fp32\n" in card
    # a folder from before the setting trained in float32, and its command says so
    old = {k: v for k, v in asdict(TrainConfig()).items() if k != "precision"}
    assert training_command(old, "16x16x4", d, False).endswith("--precision fp32")
    assert precision_text(None) == "float32 throughout"


def test_the_command_line_takes_a_precision_and_refuses_another(tmp_path, capsys, monkeypatch):
    from lab.default_model import train

    seen = []
    monkeypatch.setattr(train, "run", lambda out, cfg, stages: seen.append(cfg) or {})
    assert train.main(["--out", str(tmp_path), "--precision", "fp32"]) == 0
    assert seen[-1].precision == "fp32"
    assert train.main(["--out", str(tmp_path)]) == 0
    assert seen[-1].precision == "auto"
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path), "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
