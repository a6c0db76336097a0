"""A real single-file (LDM/CompVis layout) checkpoint: the bundled model exported with
``plugins.diffusion_common.single_file`` is recognised, loads through the studio's loader and
diffusers' ``from_single_file`` with weights identical to the folder's, and makes the same image."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from plugins.diffusion_common.errors import ModelError
from plugins.diffusion_common.models import LoadOptions, inspect_model, load_pipeline, read_safetensors_header
from plugins.diffusion_common.single_file import export_single_file

PROMPT = "a small red circle in the center"
DM = "model.diffusion_model."
VAE = "first_stage_model."
TE = "cond_stage_model.transformer.text_model."


def _bundled_ready() -> bool:
    from app.paths import default_model_dir

    d = default_model_dir()
    return (d / "model_index.json").is_file() and any((d / "unet").glob("*.safetensors"))


@pytest.fixture(scope="module")
def source_model(tmp_path_factory) -> Path:
    """The bundled model (a copy, so a retrain replacing its files mid-run cannot mix versions);
    the tiny random model of the same structure when the bundled one is not installed."""
    from app.paths import default_model_dir

    if _bundled_ready():
        copy = tmp_path_factory.mktemp("bundled") / "default"
        shutil.copytree(default_model_dir(), copy)
        return copy
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sf") / "tiny", seed=0)


@pytest.fixture(scope="module")
def exported(source_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "model.safetensors"
    return export_single_file(source_model, out)


def _cfg(folder: Path, part: str) -> dict:
    return json.loads((folder / part / "config.json").read_text())


def _images(pipe, seed=3):
    """A 64x64 image in float (0..1) with 4 DDIM steps, on a new pipeline object sharing the
    loaded modules (the cached pipeline's own scheduler is left alone)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    comps = {k: v for k, v in pipe.components.items()
             if k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "safety_checker", "feature_extractor")}
    comps["scheduler"] = DDIMScheduler.from_config(pipe.scheduler.config)
    p = StableDiffusionPipeline(**comps, requires_safety_checker=False)
    p.set_progress_bar_config(disable=True)
    return p(PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=5.0, output_type="np",
             generator=torch.Generator().manual_seed(seed)).images[0]


# ---------------------------------------------------------------- the file itself

def test_export_writes_the_ldm_key_layout(exported, source_model):
    header = read_safetensors_header(exported.path)
    unet, vae = _cfg(source_model, "unet"), _cfg(source_model, "vae")
    levels, lpb = len(unet["block_out_channels"]), unet["layers_per_block"]
    assert header[DM + "input_blocks.0.0.weight"]["shape"] == (unet["block_out_channels"][0], unet["in_channels"], 3, 3)
    for key in (DM + "time_embed.0.weight", DM + "time_embed.2.weight", DM + "out.0.weight", DM + "out.2.weight",
                DM + "input_blocks.1.0.in_layers.2.weight", DM + "input_blocks.1.0.emb_layers.1.weight",
                DM + "middle_block.0.out_layers.3.weight", DM + "middle_block.1.proj_in.weight",
                DM + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", DM + "middle_block.2.in_layers.0.bias",
                VAE + "encoder.conv_in.weight", VAE + "encoder.norm_out.weight", VAE + "decoder.norm_out.weight",
                VAE + "encoder.down.0.block.0.conv1.weight", VAE + "encoder.mid.block_1.conv1.weight",
                VAE + "decoder.mid.block_2.conv2.weight", VAE + "quant_conv.weight", VAE + "post_quant_conv.weight",
                TE + "embeddings.token_embedding.weight", TE + "encoder.layers.0.self_attn.q_proj.weight",
                TE + "final_layer_norm.weight"):
        assert key in header, key
    # LDM numbering: conv_in, then per level lpb blocks and (but the last) a downsampler block
    n_in = 1 + levels * lpb + (levels - 1)
    n_out = levels * (lpb + 1)
    ins = {int(k.split(".")[3]) for k in header if k.startswith(DM + "input_blocks.")}
    outs = {int(k.split(".")[3]) for k in header if k.startswith(DM + "output_blocks.")}
    assert ins == set(range(n_in)) and outs == set(range(n_out))
    assert DM + f"input_blocks.{1 + lpb}.0.op.weight" in header  # first downsampler
    assert not any(k.startswith(DM + f"input_blocks.{n_in - 1}.0.op") for k in header)  # none at the last level
    ups = sorted(k for k in header if k.startswith(DM + "output_blocks.") and ".conv.weight" in k
                 and ".0." not in k.split("output_blocks.")[1][:4])
    assert len(ups) == levels - 1  # one upsampler per level but the last
    for i, kind in enumerate(unet["up_block_types"][:-1]):
        # in the level's last block: [resnet, attention, upsample] or [resnet, upsample] (as in
        # SD 1.5's output_blocks.2.1.conv and output_blocks.5.2.conv)
        slot = 2 if kind.startswith("CrossAttn") else 1
        assert DM + f"output_blocks.{(i + 1) * (lpb + 1) - 1}.{slot}.conv.weight" in header, kind
    # VAE: mid-block attention as 1x1 convolutions, decoder levels in LDM (reversed) order
    ch = vae["block_out_channels"][-1]
    for part in ("q", "k", "v", "proj_out"):
        assert header[VAE + f"decoder.mid.attn_1.{part}.weight"]["shape"] == (ch, ch, 1, 1)
        assert header[VAE + f"encoder.mid.attn_1.{part}.weight"]["shape"] == (ch, ch, 1, 1)
    assert header[VAE + "decoder.conv_out.weight"]["shape"][1] == vae["block_out_channels"][0]
    assert header[VAE + "decoder.up.0.block.0.conv1.weight"]["shape"][0] == vae["block_out_channels"][0]
    assert VAE + f"decoder.up.{len(vae['up_block_types']) - 1}.upsample.conv.weight" in header
    assert not any(k.startswith(VAE + "decoder.up.0.upsample") for k in header)
    # nothing else (but peers' marker tensors such as v_pred), and no diffusers names left
    assert all(k.startswith((DM, VAE, TE)) or k in exported.markers for k in header)
    diffusers_words = ("down_blocks", "up_blocks", "resnets", "mid_block", "group_norm", "time_embedding",
                       "conv_norm_out", "conv_shortcut")
    assert not [k for k in header if any(w in k for w in diffusers_words)]
    assert not [k for k in header if k.startswith(VAE) and "to_out" in k]
    # every tensor of the folder is there (the text encoder's position_ids buffer is not a weight)
    from safetensors import safe_open

    n_src = 0
    for part in ("unet", "vae", "text_encoder"):
        for f in (source_model / part).glob("*.safetensors"):
            with safe_open(str(f), "pt") as sf:
                n_src += sum(1 for k in sf.keys() if not k.endswith("position_ids"))
    assert exported.tensors == len(header) - len(exported.markers) == n_src
    assert sum(exported.components.values()) == exported.tensors


def test_export_metadata(exported, source_model):
    from safetensors import safe_open

    with safe_open(str(exported.path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["source"] == "diffusers" and meta["layout"] == "ldm-sd1"
    assert meta["source_model"] == source_model.name and meta["dtype"] == "float32"
    configs = json.loads(meta["implicit_studio.diffusers_configs"])
    assert configs["unet"]["block_out_channels"] == _cfg(source_model, "unet")["block_out_channels"]
    assert float(meta["vae_scaling_factor"]) == pytest.approx(_cfg(source_model, "vae")["scaling_factor"])


def test_export_half_precision(source_model, tmp_path):
    res = export_single_file(source_model, tmp_path / "half.safetensors", dtype="float16")
    header = read_safetensors_header(res.path)
    assert {v["dtype"] for k, v in header.items() if k not in res.markers} <= {"F16", "I64"}
    assert res.metadata["dtype"] == "float16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_single_file(source_model, tmp_path / "x.safetensors", dtype="int8")


def test_export_refuses_folders_that_are_not_sd1_structured(source_model, tmp_path):
    with pytest.raises(ValueError, match="no model_index.json"):
        export_single_file(tmp_path, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        export_single_file(source_model, tmp_path / "a.ckpt")

    def variant(name, edit):
        d = tmp_path / name
        shutil.copytree(source_model, d, ignore=shutil.ignore_patterns("*.safetensors"))
        edit(d)
        return d

    def set_json(d, rel, **kw):
        p = d / rel
        data = json.loads(p.read_text())
        data.update(kw)
        p.write_text(json.dumps(data))

    xl = variant("xl", lambda d: set_json(d, "model_index.json", _class_name="StableDiffusionXLPipeline"))
    with pytest.raises(ValueError, match="not a Stable Diffusion 1.x-structured.*StableDiffusionXLPipeline"):
        export_single_file(xl, tmp_path / "a.safetensors")
    added = variant("added", lambda d: set_json(d, "unet/config.json", addition_embed_type="text_time"))
    with pytest.raises(ValueError, match="addition_embed_type"):
        export_single_file(added, tmp_path / "a.safetensors")
    blocks = variant("blocks", lambda d: set_json(d, "unet/config.json", mid_block_type="UNetMidBlock2D"))
    with pytest.raises(ValueError, match="mid block is UNetMidBlock2D"):
        export_single_file(blocks, tmp_path / "a.safetensors")
    proj = variant("proj", lambda d: set_json(d, "model_index.json",
                                              text_encoder=["transformers", "CLIPTextModelWithProjection"]))
    with pytest.raises(ValueError, match="text_encoder is CLIPTextModelWithProjection"):
        export_single_file(proj, tmp_path / "a.safetensors")
    noweights = variant("noweights", lambda d: None)
    with pytest.raises(ValueError, match="no .safetensors weights"):
        export_single_file(noweights, tmp_path / "a.safetensors")
    assert not (tmp_path / "a.safetensors").exists()


# ---------------------------------------------------------------- recognised and loaded

def test_single_file_is_classified_like_its_folder(exported, source_model):
    info = inspect_model(str(exported.path))
    folder = inspect_model(str(source_model))
    assert (info.format, info.family, info.pipeline_class, info.inpainting) == \
           ("single-file", "sd", "StableDiffusionPipeline", False)
    assert info.arch == folder.arch
    unet = _cfg(source_model, "unet")
    standard = unet["cross_attention_dim"] == 768 and unet["in_channels"] == 4
    assert info.arch == ("sd1" if standard else "sd-custom")


def test_loads_back_with_the_folders_weights(exported, source_model):
    import torch
    from diffusers import StableDiffusionPipeline

    ours = load_pipeline(str(exported.path), options=LoadOptions(config=str(source_model)))
    ref = load_pipeline(str(source_model))
    direct = StableDiffusionPipeline.from_single_file(str(exported.path), config=str(source_model),
                                                      local_files_only=True)
    assert ours.pipe is not ref.pipe and ours.info.format == "single-file"
    for loaded in (ours.pipe, direct):
        for part in ("unet", "vae", "text_encoder"):
            a, b = getattr(loaded, part).state_dict(), getattr(ref.pipe, part).state_dict()
            assert set(a) == set(b), part
            for k in b:
                assert not a[k].is_meta and torch.equal(a[k], b[k]), f"{part}.{k}"


def test_same_image_from_folder_and_single_file(exported, source_model):
    from diffusers import StableDiffusionPipeline

    from plugins.text_to_image.compute import GenerationParams, generate

    folder = load_pipeline(str(source_model))
    single = load_pipeline(str(exported.path), options=LoadOptions(config=str(source_model)))
    direct = StableDiffusionPipeline.from_single_file(str(exported.path), config=str(source_model),
                                                      local_files_only=True)
    a = _images(folder.pipe)
    b = _images(single.pipe)
    c = _images(direct)
    assert a.shape == (64, 64, 3) and a.std() > 0.01  # a real picture, not a constant
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - c).max() < 1e-4
    assert np.abs(a - _images(folder.pipe, seed=4)).max() > 1e-2  # the comparison can tell images apart
    # and through the studio's own generation code
    gp = GenerationParams(prompt=PROMPT, seed=5, steps=4, guidance=5.0, scheduler="ddim", width=64, height=64)
    g1 = generate(gp, str(source_model), record_trajectory=False)
    g2 = generate(gp, str(exported.path), record_trajectory=False, load_options=LoadOptions(config=str(source_model)))
    assert np.array_equal(g1.images[0], g2.images[0])
    assert g2.model["arch"] == inspect_model(str(exported.path)).arch


# ---------------------------------------------------------------- broken files

def test_truncated_and_corrupt_single_files_give_model_errors(exported, source_model, tmp_path):
    data = exported.path.read_bytes()
    opts = LoadOptions(config=str(source_model))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut.safetensors is truncated: the header needs \d+ bytes"):
        load_pipeline(str(cut), options=opts)
    garbled = tmp_path / "garbled.safetensors"
    garbled.write_bytes(data[:8] + b"\xff" * 64 + data[72:])
    with pytest.raises(ModelError, match="garbled.safetensors is not a valid safetensors file"):
        load_pipeline(str(garbled), options=opts)
    # a well-formed file whose tensors do not fit the config
    import torch
    from safetensors.torch import load_file, save_file

    sd = load_file(str(exported.path))
    sd[DM + "input_blocks.1.0.in_layers.2.weight"] = torch.zeros(3, 3, 3, 3)
    odd = tmp_path / "odd.safetensors"
    save_file(sd, str(odd))
    with pytest.raises(ModelError, match="could not load odd.safetensors as a .* checkpoint offline.*shape") as err:
        load_pipeline(str(odd), options=opts)
    assert "Traceback" not in str(err.value)


def _without_metadata(exported, tmp_path) -> Path:
    """The export as another tool would re-save it: the same tensors, none of the studio's metadata."""
    from safetensors.torch import load_file, save_file

    bare = tmp_path / "model.safetensors"
    save_file(load_file(str(exported.path)), str(bare))
    return bare


def test_custom_single_file_without_config_says_what_it_needs(exported, monkeypatch, tmp_path):
    if inspect_model(str(exported.path)).arch != "sd-custom":
        pytest.skip("the model has standard SD 1.x sizes")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    assert load_pipeline(str(exported.path)).info.format == "single-file"  # its metadata suffices
    with pytest.raises(ModelError, match="diffusers folder it was made from"):
        load_pipeline(str(_without_metadata(exported, tmp_path)))


def test_cli_runs_a_single_file_without_model_config_and_says_when_one_is_missing(studio_cli, exported, source_model,
                                                                                 tmp_path, monkeypatch):
    """The studio's own export runs with no --model-config and no Hugging Face cache; a custom-sized
    file that lost its metadata says plainly that it needs one (no traceback), and runs with it."""
    if inspect_model(str(exported.path)).arch != "sd-custom":
        pytest.skip("the model has standard SD 1.x sizes")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    ok = studio_cli("run", "text-to-image", "--prompt", PROMPT, "--seed", "1", "--steps", "2",
                    "--model", str(exported.path), "--out", str(tmp_path / "out0"), "--session", str(tmp_path / "S"))
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    bare = _without_metadata(exported, tmp_path)
    res = studio_cli("run", "text-to-image", "--prompt", PROMPT, "--seed", "1", "--steps", "2",
                     "--model", str(bare), "--out", str(tmp_path / "out"), "--session", str(tmp_path / "S"))
    text = res.stderr + res.stdout
    assert res.exit_code != 0
    assert "could not load model.safetensors" in text and "as its config" in text and "--model-config" in text
    assert "Traceback" not in text

    ok = studio_cli("run", "text-to-image", "--prompt", PROMPT, "--seed", "1", "--steps", "2",
                    "--model", str(bare), "--model-config", str(source_model),
                    "--out", str(tmp_path / "out2"), "--session", str(tmp_path / "S"))
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    assert list((tmp_path / "out2").glob("*.png"))


# ---------------------------------------------------------------- other UNet layouts

#: SD 1.5's UNet topology (2 layers per level, attention on the first three levels) at tiny width,
#: and a deeper odd one (3 layers, linear projections, 2 transformer layers, attention last).
LAYOUTS = {
    "sd15-topology": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=2,
                          down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                          up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=8),
    "odd": dict(block_out_channels=(32, 64), layers_per_block=3, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), use_linear_projection=True,
                transformer_layers_per_block=2, attention_head_dim=(4, 8)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_other_unet_layouts_round_trip(source_model, tmp_path, layout):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    folder = tmp_path / layout
    shutil.copytree(source_model, folder, ignore=shutil.ignore_patterns("unet"))
    old = _cfg(source_model, "unet")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=old["in_channels"], out_channels=old["out_channels"],
                                cross_attention_dim=old["cross_attention_dim"], norm_num_groups=8, **LAYOUTS[layout])
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    res = export_single_file(folder, tmp_path / f"{layout}.safetensors")
    header = read_safetensors_header(res.path)
    if layout == "sd15-topology":  # tensor names as in the released SD 1.5 checkpoints
        for name in ("input_blocks.11.0.out_layers.3.weight", "input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight",
                     "input_blocks.9.0.op.weight", "input_blocks.8.1.proj_in.weight", "output_blocks.2.1.conv.weight",
                     "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight", "output_blocks.11.1.proj_out.weight",
                     "output_blocks.3.0.skip_connection.weight", "middle_block.1.transformer_blocks.0.ff.net.2.weight"):
            assert DM + name in header, name
        assert not any(k.startswith(DM + "input_blocks.12") or k.startswith(DM + "output_blocks.12") for k in header)
    else:
        assert DM + "input_blocks.6.1.transformer_blocks.1.attn1.to_q.weight" in header
        assert len(header[DM + "input_blocks.6.1.proj_in.weight"]["shape"]) == 2  # linear projection kept
        assert DM + "output_blocks.3.2.conv.weight" in header
    pipe = StableDiffusionPipeline.from_single_file(str(res.path), config=str(folder), local_files_only=True)
    back = pipe.unet.state_dict()
    ref = unet.state_dict()
    assert set(back) == set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)


def test_export_checkpoint_command_writes_a_file_that_loads(studio_cli, source_model, tmp_path):
    out = tmp_path / "ckpt" / "model.safetensors"
    res = studio_cli("export-checkpoint", str(source_model), "--out", str(out))
    assert res.exit_code == 0, res.stderr + res.stdout
    assert "wrote" in res.stdout and out.is_file()
    info = inspect_model(str(out))
    assert info.format == "single-file"
    bad = studio_cli("export-checkpoint", str(tmp_path), "--out", str(tmp_path / "x.safetensors"))
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr and bad.stderr.strip()
