"""The ComfyUI node package's metadata reader (``integrations/comfyui/implicit_studio_comfyui/
studio_format.py``: plain Python, no ComfyUI) on real exports of the studio: it finds the sizes,
tokenizer, schedule and prediction type the loader node builds the model from."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integrations" / "comfyui"))

from implicit_studio_comfyui import studio_format as sf  # noqa: E402

from plugins.diffusion_common.single_file import export_single_file  # noqa: E402


@pytest.fixture(scope="module")
def exported(bundled, tmp_path_factory):
    return export_single_file(bundled, tmp_path_factory.mktemp("x") / "m.safetensors")


def _cfg(folder: Path, part: str, name: str = "config.json") -> dict:
    return json.loads((folder / part / name).read_text())


def test_describe_reads_the_bundled_models_sizes_and_schedule(exported, bundled):
    header, meta = sf.read_header(exported.path)
    d = sf.describe(meta, header)
    unet, vae, text = _cfg(bundled, "unet"), _cfg(bundled, "vae"), _cfg(bundled, "text_encoder")
    sched = _cfg(bundled, "scheduler", "scheduler_config.json")
    assert (d.num_heads, d.num_head_channels) == (unet["attention_head_dim"], -1)
    assert d.unet_groups == unet["norm_num_groups"] == 16 and d.vae_groups == vae["norm_num_groups"]
    assert d.vae_ddconfig["ch"] == vae["block_out_channels"][0]
    assert d.vae_ddconfig["ch_mult"] == [c // vae["block_out_channels"][0] for c in vae["block_out_channels"]]
    assert d.vae_ddconfig["num_res_blocks"] == vae["layers_per_block"]
    assert d.downscale == 4 and d.latent_channels == 4
    assert d.latent_scale == pytest.approx(vae["scaling_factor"])
    assert sched["prediction_type"] == "v_prediction" and d.prediction == "v"
    assert d.sampling == {"beta_schedule": "cosine", "linear_start": sched["beta_start"], "linear_end": sched["beta_end"],
                          "timesteps": 1000, "zsnr": False}
    assert d.text_config["vocab_size"] == text["vocab_size"] == len(d.tokenizer["vocab"])
    assert d.max_length == 32 and (d.start_token, d.end_token) == (text["bos_token_id"], text["eos_token_id"])
    assert d.pad_with_end


def test_the_tokenizer_in_the_file_tokenizes_like_the_models_own(exported, bundled, tmp_path):
    from transformers import CLIPTokenizer

    header, meta = sf.read_header(exported.path)
    folder = sf.write_tokenizer(sf.describe(meta, header).tokenizer, tmp_path / "tok")
    ours = CLIPTokenizer.from_pretrained(str(folder))
    ref = CLIPTokenizer.from_pretrained(str(bundled / "tokenizer"))
    for text in ("a small red circle in the center", "Two BLUE squares, top-left!", ""):
        assert ours(text).input_ids == ref(text).input_ids
    assert len(ours) == 662


def test_epsilon_models_and_the_v_pred_key(bundled, tmp_path):
    eps = tmp_path / "eps"
    shutil.copytree(bundled, eps)
    cfg = _cfg(eps, "scheduler", "scheduler_config.json")
    cfg["prediction_type"] = "epsilon"
    (eps / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    res = export_single_file(eps, tmp_path / "eps.safetensors")
    header, meta = sf.read_header(res.path)
    assert "v_pred" not in header and meta["modelspec.prediction_type"] == "epsilon"
    assert sf.describe(meta, header).prediction == "eps"
    # the marker tensor alone is enough (files other tools re-saved keep it, not our metadata)
    assert sf.describe(meta, list(header) + ["v_pred"]).prediction == "v"


def test_files_it_cannot_use_are_refused_with_the_reason(exported, tmp_path):
    header, meta = sf.read_header(exported.path)
    with pytest.raises(sf.NotAStudioExport, match="not written by 'implicit-studio export-checkpoint'"):
        sf.describe({}, header)
    configs = json.loads(meta[sf.CONFIGS_KEY])
    configs["scheduler"]["beta_schedule"] = "exotic"
    with pytest.raises(sf.NotAStudioExport, match="noise schedule 'exotic'"):
        sf.describe({**meta, sf.CONFIGS_KEY: json.dumps(configs)}, header)
    no_tok = {k: v for k, v in meta.items() if k != sf.TOKENIZER_KEY}
    with pytest.raises(sf.NotAStudioExport, match="662-token vocabulary is not CLIP's"):
        sf.describe(no_tok, header)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(sf.NotAStudioExport, match="not a safetensors file"):
        sf.read_header(bad)
