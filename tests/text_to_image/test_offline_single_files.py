"""Single-file checkpoints load offline with no ``--model-config`` and no Hugging Face cache: the
studio's exports from their own metadata, standard SD 1.x / 2.x / SDXL files from the configs and
CLIP tokenizer shipped with the studio, with the sizes read from the file and the prediction type
from what peers write (A1111's sidecar yaml, ComfyUI's ``v_pred`` key). The standard files here are
tiny random checkpoints with each family's own tensor layout (CLIP-L in ``cond_stage_model.
transformer``, OpenCLIP in ``cond_stage_model.model``, SDXL's two ``conditioner.embedders``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from plugins.diffusion_common.models import clear_pipeline_cache, inspect_model, load_pipeline
from plugins.diffusion_common.single_file import LDM_TEXT_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX, _UNetLayout, _vae_key

VOCAB = 49408


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    clear_pipeline_cache()
    yield
    clear_pipeline_cache()


def _unet_vae(unet_kw: dict, seed: int):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, norm_num_groups=32, **unet_kw).eval()
    vae = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                        norm_num_groups=32, sample_size=32).eval()
    return unet, vae


def _ldm_unet_vae(unet, vae) -> dict:
    layout = _UNetLayout(dict(unet.config))
    out = {LDM_UNET_PREFIX + layout.map(k): v for k, v in unet.state_dict().items()}
    n_up = len(vae.config.up_block_types)
    for k, v in vae.state_dict().items():
        name = _vae_key(k, n_up)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)
        out[LDM_VAE_PREFIX + name] = v
    return out


def _clip(hidden: int, layers: int, seed: int, projection: int | None = None):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), max_position_embeddings=77,
                         projection_dim=projection or hidden, hidden_act="gelu")
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(cfg).eval()


def _hf_names(model) -> dict:
    """A CLIP text model's tensors named as in a CLIPTextModel (``embeddings.``, ``encoder.``...)."""
    return {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in model.state_dict().items()
            if not k.endswith("position_ids")}


def _open_clip(model, prefix: str) -> dict:
    """A CLIP text model's tensors in OpenCLIP's names (as SD 2.x and SDXL files hold them)."""
    import torch

    sd = _hf_names(model)
    out = {prefix + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": sd["final_layer_norm.weight"], prefix + "ln_final.bias": sd["final_layer_norm.bias"]}
    n = model.config.num_hidden_layers
    for i in range(n):
        a, b = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[b + f"attn.in_proj_{kind}"] = torch.cat([sd[a + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
            out[b + f"attn.out_proj.{kind}"] = sd[a + f"self_attn.out_proj.{kind}"]
            out[b + f"ln_1.{kind}"] = sd[a + f"layer_norm1.{kind}"]
            out[b + f"ln_2.{kind}"] = sd[a + f"layer_norm2.{kind}"]
            out[b + f"mlp.c_fc.{kind}"] = sd[a + f"mlp.fc1.{kind}"]
            out[b + f"mlp.c_proj.{kind}"] = sd[a + f"mlp.fc2.{kind}"]
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    return out


def _save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _same(a: dict, b: dict, what: str) -> None:
    import torch

    missing = sorted(set(b) - set(a))
    assert not missing, f"{what}: {missing[:3]}"
    for k in b:
        assert torch.equal(a[k], b[k]), f"{what}.{k}"


def _generates(loaded, steps: int = 2) -> np.ndarray:
    import torch

    pipe = loaded.pipe
    out = pipe("a red circle", num_inference_steps=steps, guidance_scale=3.0, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0)).images[0]
    assert np.isfinite(out).all() and out.shape == (32, 32, 3)
    return out


SD1_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64, attention_head_dim=8,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def test_a_standard_sd1_file_loads_offline_with_the_shipped_tokenizer(tmp_path):
    unet, vae = _unet_vae(SD1_UNET, 0)
    text = _clip(64, 2, 1)
    state = _ldm_unet_vae(unet, vae)
    state.update({LDM_TEXT_PREFIX + k: v for k, v in _hf_names(text).items()})
    path = _save(state, tmp_path / "tiny-sd1.safetensors")
    info = inspect_model(str(path))
    assert info.arch == "sd-custom"  # SD 1.x structure, not SD 1.5 sizes
    loaded = load_pipeline(str(path))
    assert any("shipped SD1 configs" in n for n in loaded.info.notes), loaded.info.notes
    pipe = loaded.pipe
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64) and pipe.unet.config.cross_attention_dim == 64
    assert pipe.scheduler.config.prediction_type == "epsilon"
    _same(pipe.unet.state_dict(), unet.state_dict(), "unet")
    _same(pipe.vae.state_dict(), vae.state_dict(), "vae")
    _same(_hf_names(pipe.text_encoder), _hf_names(text), "text_encoder")
    assert len(pipe.tokenizer) == VOCAB and pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    _generates(loaded)


def test_v_prediction_is_read_from_the_v_pred_key_and_from_a_sidecar_yaml(tmp_path):
    import torch

    unet, vae = _unet_vae(SD1_UNET, 0)
    state = _ldm_unet_vae(unet, vae)
    state.update({LDM_TEXT_PREFIX + k: v for k, v in _hf_names(_clip(64, 2, 1)).items()})
    keyed = _save(dict(state, v_pred=torch.tensor([])), tmp_path / "keyed.safetensors")
    assert load_pipeline(str(keyed)).pipe.scheduler.config.prediction_type == "v_prediction"
    plain = _save(state, tmp_path / "plain.safetensors")
    assert load_pipeline(str(plain)).pipe.scheduler.config.prediction_type == "epsilon"
    clear_pipeline_cache()
    (tmp_path / "plain.yaml").write_text('model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n'
                                         '  params:\n    parameterization: "v"\n')
    assert load_pipeline(str(plain)).pipe.scheduler.config.prediction_type == "v_prediction"


def test_a_standard_sd2_file_loads_offline(tmp_path):
    unet_kw = dict(block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=64,
                   attention_head_dim=(1, 2), use_linear_projection=True,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    unet, vae = _unet_vae(unet_kw, 2)
    text = _clip(64, 3, 3)
    state = _ldm_unet_vae(unet, vae)
    state.update(_open_clip(text, "cond_stage_model.model."))
    path = _save(state, tmp_path / "tiny-sd2.safetensors")
    assert inspect_model(str(path)).family == "sd"
    loaded = load_pipeline(str(path))
    assert any("shipped SD2 configs" in n for n in loaded.info.notes), loaded.info.notes
    pipe = loaded.pipe
    assert pipe.unet.config.use_linear_projection and pipe.text_encoder.config.num_hidden_layers == 2
    _same(pipe.unet.state_dict(), unet.state_dict(), "unet")
    # SD 2.x conditions on the penultimate layer: the last layer of the file is left out
    ours = _hf_names(pipe.text_encoder)
    src = {k: v for k, v in _hf_names(text).items() if not k.startswith("encoder.layers.2.")
           and not k.startswith("final_layer_norm")}
    _same(ours, src, "text_encoder")
    assert pipe.tokenizer.pad_token == "!"  # OpenCLIP pads with "!" (id 0)
    _generates(loaded)


def test_a_standard_sdxl_file_loads_offline(tmp_path):
    unet_kw = dict(block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=192,
                   attention_head_dim=(1, 2), use_linear_projection=True, transformer_layers_per_block=(1, 2),
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), addition_embed_type="text_time",
                   addition_time_embed_dim=256, projection_class_embeddings_input_dim=128 + 6 * 256)
    unet, vae = _unet_vae(unet_kw, 4)
    clip_l, clip_g = _clip(64, 2, 5), _clip(128, 2, 6, projection=128)
    state = _ldm_unet_vae(unet, vae)
    state.update({"conditioner.embedders.0.transformer.text_model." + k: v for k, v in _hf_names(clip_l).items()})
    state.update(_open_clip(clip_g, "conditioner.embedders.1.model."))
    path = _save(state, tmp_path / "tiny-sdxl.safetensors")
    assert inspect_model(str(path)).arch == "sdxl"
    loaded = load_pipeline(str(path))
    assert any("shipped SDXL configs" in n for n in loaded.info.notes), loaded.info.notes
    pipe = loaded.pipe
    assert list(pipe.unet.config.transformer_layers_per_block) == [1, 2]
    _same(pipe.unet.state_dict(), unet.state_dict(), "unet")
    _same(_hf_names(pipe.text_encoder), _hf_names(clip_l), "text_encoder")
    _same(_hf_names(pipe.text_encoder_2), _hf_names(clip_g), "text_encoder_2")
    assert len(pipe.tokenizer_2) == VOCAB
    _generates(loaded)


def test_the_shipped_configs_describe_the_real_models_exactly():
    """Deriving the sizes from real SD 1.5 / 2.1 / SDXL tensor shapes (taken from models built on
    the meta device from the shipped configs) gives back the shipped configs."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from plugins.diffusion_common.standard import derive_unet, derive_vae, template

    for family, head_dim in (("sd1", None), ("sd2", 64), ("sdxl", 64)):
        cfg = template(family)
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(cfg["unet"])
            vae = AutoencoderKL.from_config(cfg["vae"])
        shapes = {k: tuple(v.shape) for k, v in _ldm_unet_vae(unet, vae).items()}
        got = derive_unet(cfg["unet"], shapes, head_dim)
        for key in ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
                    "cross_attention_dim", "in_channels", "out_channels", "attention_head_dim"):
            want = cfg["unet"][key]
            assert (list(got[key]) if isinstance(got[key], (list, tuple)) else got[key]) == \
                (list(want) if isinstance(want, (list, tuple)) else want), (family, key)
        assert got.get("use_linear_projection", False) == cfg["unet"].get("use_linear_projection", False)
        tl = cfg["unet"].get("transformer_layers_per_block", 1)
        assert got.get("transformer_layers_per_block", 1) == tl, family
        assert derive_vae(cfg["vae"], shapes) == {**cfg["vae"], "in_channels": 3, "out_channels": 3}


def test_the_studios_export_reloads_without_model_config(tmp_path):
    from app.paths import default_model_dir

    from plugins.diffusion_common.single_file import export_single_file
    from plugins.text_to_image.compute import GenerationParams, generate

    folder = tmp_path / "default"
    shutil.copytree(default_model_dir(), folder)
    res = export_single_file(folder, tmp_path / "m.safetensors")
    loaded = load_pipeline(str(res.path))
    assert any("the file's own metadata" in n for n in loaded.info.notes)
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    assert len(loaded.pipe.tokenizer) == json.loads((folder / "text_encoder" / "config.json").read_text())["vocab_size"]
    gp = GenerationParams(prompt="a small red circle in the center", seed=5, steps=4, scheduler="ddim",
                          width=64, height=64)
    a = generate(gp, str(folder), record_trajectory=False).images[0]
    b = generate(gp, str(res.path), record_trajectory=False).images[0]
    assert np.array_equal(a, b)
