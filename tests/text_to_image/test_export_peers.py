"""What ``export-checkpoint`` tells and writes for peers: which tools read the file and why not
(before writing), the v-prediction conventions peers read (the ``v_pred`` key, an A1111 sidecar
yaml with ``parameterization: "v"``), and files readable by other users (0644)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from plugins.diffusion_common.models import read_safetensors_header
from plugins.diffusion_common.single_file import export_single_file, peer_support


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Path:
    from app.paths import default_model_dir

    copy = tmp_path_factory.mktemp("bundled") / "default"
    shutil.copytree(default_model_dir(), copy)
    return copy


def _sd15_configs(prediction: str = "epsilon") -> dict:
    unet = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "norm_num_groups": 32,
            "attention_head_dim": 8, "layers_per_block": 2, "in_channels": 4, "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
    vae = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
           "latent_channels": 4, "scaling_factor": 0.18215}
    text = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "vocab_size": 49408, "max_position_embeddings": 77}
    sched = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": prediction}
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": sched}


def test_peer_support_tells_standard_from_custom_models():
    rows = {r.tool: r for r in peer_support(_sd15_configs(), None)}
    assert rows["ComfyUI (stock Load Checkpoint)"].reads == "yes"
    assert rows["AUTOMATIC1111 / Forge"].reads == "yes"
    v = {r.tool: r for r in peer_support(_sd15_configs("v_prediction"), None)}
    comfy = v["ComfyUI (stock Load Checkpoint)"]
    assert comfy.reads == "partly" and "ModelSamplingDiscrete" in comfy.line()
    assert "parameterization v" in v["AUTOMATIC1111 / Forge"].line()
    narrow = _sd15_configs()
    narrow["unet"]["norm_num_groups"] = 16
    rows = {r.tool: r for r in peer_support(narrow, None)}
    assert rows["ComfyUI (stock Load Checkpoint)"].reads == "no" and "GroupNorm(16)" in rows["AUTOMATIC1111 / Forge"].line()
    assert rows["ComfyUI with the Implicit Studio loader node"].reads == "yes"


def test_export_command_says_who_reads_the_bundled_model_before_writing(studio_cli, tmp_path):
    out = tmp_path / "m.safetensors"
    res = studio_cli("export-checkpoint", "default", "--out", str(out))
    assert res.exit_code == 0, res.stderr + res.stdout
    text = res.stdout
    assert text.index("Which tools will read this file") < text.index("wrote")
    stock = next(line for line in text.splitlines() if "ComfyUI (stock Load Checkpoint)" in line)
    for reason in ("cannot read it", "48 wide", "GroupNorm(16)", "(4x)", "662-token vocabulary", "v_pred"):
        assert reason in stock, reason
    a1111 = next(line for line in text.splitlines() if "AUTOMATIC1111" in line)
    assert "cannot read it" in a1111 and "GroupNorm(16)" in a1111
    assert "Implicit Studio loader node: reads it" in text
    assert out.is_file() and out.with_suffix(".yaml").is_file()


def test_exported_files_are_readable_by_other_users(bundled, tmp_path):
    old = os.umask(0o022)
    try:
        res = export_single_file(bundled, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o644
    assert stat.S_IMODE(res.sidecar.stat().st_mode) == 0o644
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_v_prediction_is_written_the_way_peers_read_it(bundled, tmp_path):
    import yaml

    res = export_single_file(bundled, tmp_path / "m.safetensors")
    header = read_safetensors_header(res.path)
    assert header["v_pred"]["shape"] == (0,) and res.markers == ["v_pred"]
    assert res.metadata["modelspec.prediction_type"] == "v"
    cfg = yaml.safe_load(res.sidecar.read_text())["model"]["params"]
    unet = json.loads((bundled / "unet" / "config.json").read_text())
    assert cfg["parameterization"] == "v" and cfg["beta_schedule"] == "cosine"
    assert cfg["scale_factor"] == pytest.approx(0.50715571641922)
    u = cfg["unet_config"]["params"]
    assert (u["model_channels"], u["channel_mult"], u["num_res_blocks"], u["context_dim"], u["num_heads"]) == \
        (48, [1, 2, 2], unet["layers_per_block"], 128, 8)
    assert u["attention_resolutions"] == [2, 4]  # attention on the 2nd and 3rd levels, as in the config
    assert cfg["first_stage_config"]["params"]["ddconfig"]["ch_mult"] == [1, 2, 2]
    # an epsilon model gets neither the key nor the parameterization
    eps = tmp_path / "eps"
    shutil.copytree(bundled, eps)
    sched = json.loads((eps / "scheduler" / "scheduler_config.json").read_text())
    sched["prediction_type"] = "epsilon"
    (eps / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    plain = export_single_file(eps, tmp_path / "eps.safetensors")
    assert "v_pred" not in read_safetensors_header(plain.path) and plain.markers == []
    assert "parameterization" not in yaml.safe_load(plain.sidecar.read_text())["model"]["params"]
    assert export_single_file(eps, tmp_path / "bare.safetensors", sidecar=False).sidecar is None
    assert not (tmp_path / "bare.yaml").exists()


def test_diffusers_reads_the_sidecar_yaml(bundled, tmp_path):
    """diffusers' converter for original checkpoints builds the UNet from the yaml's sizes and
    takes v-prediction from ``parameterization``. (Its LDM code, like A1111's, hard-codes
    GroupNorm(32), so the model here has a 32-group UNet.)"""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.convert_from_ckpt import download_from_original_stable_diffusion_ckpt

    folder = tmp_path / "g32"
    shutil.copytree(bundled, folder, ignore=shutil.ignore_patterns("unet"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=128,
                                attention_head_dim=8, norm_num_groups=32)
    unet.save_pretrained(folder / "unet")
    res = export_single_file(folder, tmp_path / "g32.safetensors")
    ref = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    # that converter still addresses the text model as `.text_model` (transformers 4's layout):
    # hand it a holder of the real text encoder so it can write the weights into it
    holder = torch.nn.Module()
    holder.text_model = ref.text_encoder
    pipe = download_from_original_stable_diffusion_ckpt(
        str(res.path), original_config_file=str(res.sidecar), from_safetensors=True, vae=ref.vae,
        text_encoder=holder, tokenizer=ref.tokenizer, load_safety_checker=False, scheduler_type="ddim",
        local_files_only=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    got, want = pipe.unet.state_dict(), unet.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    res.sidecar.write_text(re.sub(r'\n *parameterization: "v"', "", res.sidecar.read_text()))
    again = download_from_original_stable_diffusion_ckpt(
        str(res.path), original_config_file=str(res.sidecar), from_safetensors=True, vae=ref.vae,
        text_encoder=holder, tokenizer=ref.tokenizer, load_safety_checker=False, scheduler_type="ddim",
        local_files_only=True)
    assert again.scheduler.config.prediction_type == "epsilon"
