"""Model loading, classification, hashing and refusal of pickles."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

from app.api import model_fingerprint
from app.fingerprint import file_sha256
from plugins.diffusion_common.errors import ModelError
from plugins.diffusion_common.models import (
    classify_state_dict,
    inspect_model,
    load_failure,
    load_pipeline,
    pickled_to_safetensors,
    read_safetensors_header,
)

from t2i_fakes import (
    FLUX_KEYS, LORA_KEYS, SD1_INPAINT_KEYS, SD1_KEYS, SD2_KEYS, SD3_KEYS, SDXL_KEYS, UNKNOWN_KEYS, VAE_KEYS,
)


# ---------------------------------------------------------------- single-file classification

@pytest.mark.parametrize("keys, arch, family", [
    (SD1_KEYS, "sd1", "sd"),
    (SD2_KEYS, "sd2", "sd"),
    (SD1_INPAINT_KEYS, "sd1-inpaint", "sd"),
    (SDXL_KEYS, "sdxl", "sdxl"),
    (SD3_KEYS, "sd3", "sd3"),
    (FLUX_KEYS, "flux", "flux"),
])
def test_single_file_checkpoints_are_classified(fake_checkpoint, keys, arch, family):
    path = fake_checkpoint(f"{arch}.safetensors", keys)
    info = inspect_model(str(path))
    assert (info.arch, info.family, info.format) == (arch, family, "single-file")
    assert info.inpainting == arch.endswith("inpaint")
    assert info.pipeline_class


@pytest.mark.parametrize("keys, words", [
    (LORA_KEYS, ["LoRA", "lora_"]),
    (VAE_KEYS, ["VAE", "encoder.down"]),
    (UNKNOWN_KEYS, ["cannot tell", "backbone.layer1", "3 tensors"]),
])
def test_unclassifiable_files_say_what_was_found(fake_checkpoint, keys, words):
    path = fake_checkpoint("thing.safetensors", keys)
    with pytest.raises(ModelError) as err:
        inspect_model(str(path))
    for w in words:
        assert w in str(err.value)


def test_unknown_unet_channels_and_context(fake_checkpoint):
    dm = "model.diffusion_model."
    with pytest.raises(ModelError, match="8 input channels"):
        classify_state_dict({dm + "input_blocks.0.0.weight": (320, 8, 3, 3)})
    with pytest.raises(ModelError, match="conditioning size is 512"):
        classify_state_dict({dm + "input_blocks.0.0.weight": (320, 4, 3, 3),
                             dm + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 512)})


def test_corrupt_safetensors_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00abc")
    with pytest.raises(ModelError, match="not a valid safetensors"):
        read_safetensors_header(junk)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"12")
    with pytest.raises(ModelError, match="only 2 bytes"):
        inspect_model(str(short))
    header = json.dumps({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}).encode()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 10)
    with pytest.raises(ModelError, match="truncated"):
        read_safetensors_header(trunc)


# ---------------------------------------------------------------- pickles

def test_pickled_checkpoint_refused_without_permission(tmp_path):
    import torch

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}}, path)
    with pytest.raises(ModelError, match="pickled checkpoint.*refused"):
        load_pipeline(str(path))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_allowed_pickle_reads_tensors_only(tmp_path):
    import torch

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {k: torch.zeros(v) for k, v in SD1_KEYS.items()}}, good)
    out = pickled_to_safetensors(good, allow_pickle=True)
    info = classify_state_dict({k: v["shape"] for k, v in read_safetensors_header(out).items()})
    assert info.arch == "sd1"

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.bin"
    with open(evil, "wb") as f:
        pickle.dump({"w": _Payload(str(marker))}, f)
    with pytest.raises(ModelError, match="weights_only"):
        pickled_to_safetensors(evil, allow_pickle=True)
    assert not marker.exists()


# ---------------------------------------------------------------- folders

def test_missing_and_non_model_folders(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        load_pipeline(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(ModelError, match="no model_index.json.*readme.txt"):
        load_pipeline(str(tmp_path / "empty"))


def test_incomplete_and_corrupt_folders(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelError, match="incomplete.*unet"):
        load_pipeline(str(broken))

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model, corrupt)
    weights = corrupt / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="corrupt or incomplete"):
        load_pipeline(str(corrupt))

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model, odd)
    index = json.loads((odd / "model_index.json").read_text())
    index["_class_name"] = "AudioLDMPipeline"
    (odd / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="AudioLDMPipeline.*not a text-to-image"):
        load_pipeline(str(odd))


def test_a_library_that_does_not_import_is_named_not_blamed_on_the_model(tmp_path):
    # diffusers' lazy modules wrap an ImportError in a RuntimeError whose first line says only
    # "look up to see its traceback"; a frozen bundle missing a module fails exactly this way
    from diffusers.utils.import_utils import _LazyModule

    lazy = _LazyModule("studio_absent_pkg", str(tmp_path / "__init__.py"), {"sub": ["Thing"]}, module_spec=None)
    with pytest.raises(RuntimeError) as info:
        lazy.Thing
    err = load_failure(info.value, tmp_path)
    assert "installation is incomplete, not the model" in str(err)
    assert "ModuleNotFoundError" in str(err) and "studio_absent_pkg" in str(err)
    assert "corrupt" not in str(err)
    # any other failure still points at the folder, with its first line
    plain = load_failure(ValueError("header too short\nmore"), tmp_path)
    assert "corrupt or incomplete (header too short)" in str(plain)


def test_tiny_folder_loads_and_is_cached(tiny_model):
    a = load_pipeline(str(tiny_model))
    b = load_pipeline(str(tiny_model))
    assert a is b
    assert a.info.family == "sd" and a.info.format == "diffusers"
    assert len(a.hash) == 64 and a.vae_scale_factor == 8
    c = load_pipeline(str(tiny_model), dtype="bfloat16")
    assert c is not a and c.pipe.unet.dtype.__repr__() == "torch.bfloat16"


def test_hash_is_content_based_and_cached(tmp_path, tiny_model):
    from app.settings import cache_dir

    f = tmp_path / "w.safetensors"
    f.write_bytes(b"abc")
    h1 = file_sha256(f)
    assert h1 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert str(f.resolve()) in json.loads((cache_dir() / "hashes.json").read_text())
    f.write_bytes(b"abcd")
    assert file_sha256(f) != h1
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert model_fingerprint(copy) == model_fingerprint(tiny_model)
    w = copy / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(tiny_model)


def test_single_file_without_config_gives_a_clear_message(fake_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    path = fake_checkpoint("sd1.safetensors", SD1_KEYS)
    with pytest.raises(ModelError, match="could not load sd1.safetensors as a Stable Diffusion 1.x checkpoint"):
        load_pipeline(str(path))
