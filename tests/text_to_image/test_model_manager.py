"""The model manager (ComfyUI / AUTOMATIC1111 / InvokeAI folders, the HF cache) and LoRAs."""

import shutil

import numpy as np
import pytest

from plugins.diffusion_common.errors import ModelError
from plugins.diffusion_common.model_manager import ModelManager, detect_layout, hf_cache_models, scan_folder

from t2i_fakes import LORA_KEYS, SD1_KEYS, SDXL_KEYS, UNKNOWN_KEYS


def by_name(entries):
    return {e.name: e for e in entries}


def test_comfyui_layout(tmp_path, fake_checkpoint, tiny_model):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "loras").mkdir()
    (root / "models" / "diffusers").mkdir()
    shutil.move(fake_checkpoint("sd15.safetensors", SD1_KEYS), root / "models" / "checkpoints" / "sd15.safetensors")
    shutil.move(fake_checkpoint("xl.safetensors", SDXL_KEYS), root / "models" / "checkpoints" / "xl.safetensors")
    shutil.move(fake_checkpoint("style.safetensors", LORA_KEYS), root / "models" / "loras" / "style.safetensors")
    shutil.copytree(tiny_model, root / "models" / "diffusers" / "tiny")
    assert detect_layout(root) == "comfyui"
    entries = by_name(scan_folder(root))
    assert set(entries) == {"sd15", "xl", "style", "tiny"}
    assert (entries["sd15"].kind, entries["sd15"].architecture()) == ("checkpoint", "sd1")
    assert entries["xl"].architecture() == "sdxl"
    assert (entries["style"].kind, entries["style"].architecture()) == ("lora", "lora")
    assert (entries["tiny"].kind, entries["tiny"].format, entries["tiny"].architecture()) == \
        ("diffusers", "diffusers", "sd-custom")
    assert all(e.source == "comfyui" for e in entries.values())
    assert entries["tiny"].size > 100_000
    # used in place: the entry points into the user's folder
    assert entries["sd15"].path.parent == root / "models" / "checkpoints"


def test_automatic1111_and_invokeai_layouts(tmp_path, fake_checkpoint):
    a1111 = tmp_path / "webui"
    (a1111 / "models" / "Stable-diffusion").mkdir(parents=True)
    (a1111 / "models" / "Lora").mkdir()
    shutil.move(fake_checkpoint("a.safetensors", SD1_KEYS), a1111 / "models" / "Stable-diffusion" / "a.safetensors")
    shutil.move(fake_checkpoint("b.safetensors", LORA_KEYS), a1111 / "models" / "Lora" / "b.safetensors")
    (a1111 / "models" / "Stable-diffusion" / "old.ckpt").write_bytes(b"not opened")
    assert detect_layout(a1111) == "automatic1111"
    manager = ModelManager([a1111], include_hf_cache=False)
    assert [e.name for e in manager.checkpoints()] == ["a", "old"]
    assert [e.name for e in manager.loras()] == ["b"]
    old = by_name(manager.entries())["old"]
    assert old.architecture() == "unknown" and "pickled" in old.problem

    invoke = tmp_path / "invokeai"
    (invoke / "models" / "sd-1" / "main").mkdir(parents=True)
    (invoke / "models" / "sd-1" / "lora").mkdir(parents=True)
    (invoke / "invokeai.yaml").write_text("# config")
    shutil.move(fake_checkpoint("c.safetensors", SD1_KEYS), invoke / "models" / "sd-1" / "main" / "c.safetensors")
    shutil.move(fake_checkpoint("d.safetensors", LORA_KEYS), invoke / "models" / "sd-1" / "lora" / "d.safetensors")
    assert detect_layout(invoke) == "invokeai"
    entries = by_name(scan_folder(invoke))
    assert entries["c"].kind == "checkpoint" and entries["d"].kind == "lora"


def test_unknown_files_are_listed_with_the_reason(tmp_path, fake_checkpoint):
    folder = tmp_path / "misc"
    folder.mkdir()
    shutil.move(fake_checkpoint("weird.safetensors", UNKNOWN_KEYS), folder / "weird.safetensors")
    e = scan_folder(folder)[0]
    assert e.architecture() == "unknown" and "cannot tell" in e.problem
    with pytest.raises(ModelError, match="model folder not found"):
        scan_folder(tmp_path / "absent")


def test_hf_cache_is_read_offline(tmp_path, tiny_model):
    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny-sd"
    snap = repo / "snapshots" / "abc123"
    shutil.copytree(tiny_model, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (hub / "models--someone--not-a-pipeline" / "snapshots" / "x").mkdir(parents=True)
    entries = hf_cache_models(hub)
    assert [e.name for e in entries] == ["someone/tiny-sd"]
    assert entries[0].path == snap and entries[0].source == "hf-cache"
    manager = ModelManager([], hf_cache=hub)
    assert [e.name for e in manager.entries()] == ["someone/tiny-sd"]
    assert len(manager.entries()[0].content_hash()) == 64


def test_default_model_is_listed_when_installed(tmp_path, tiny_model):
    bundled = tmp_path / "res" / "models" / "default"
    shutil.copytree(tiny_model, bundled)
    entries = ModelManager([], include_hf_cache=False, default_model=bundled).entries()
    assert entries[0].name == "default" and entries[0].source == "bundled"
    missing = ModelManager([], include_hf_cache=False, default_model=tmp_path / "none").entries()
    assert all(e.source != "bundled" for e in missing)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory, tiny_model):
    pytest.importorskip("peft", reason="LoRA loading in diffusers needs the peft package")
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(0)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), local_files_only=True)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                     init_lora_weights=False))
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=state, weight_name="style.safetensors")
    return folder / "style.safetensors"


def test_lora_is_applied_with_its_weight_and_removed_after(tiny_model, lora_file):
    from plugins.text_to_image.compute import GenerationParams, generate

    p = GenerationParams(prompt="a red circle", seed=3, steps=3)
    base = generate(p, str(tiny_model)).images[0]
    with_lora = generate(GenerationParams(**{**p.__dict__, "loras": [(str(lora_file), 1.0)]}), str(tiny_model))
    zero = generate(GenerationParams(**{**p.__dict__, "loras": [(str(lora_file), 0.0)]}), str(tiny_model)).images[0]
    after = generate(p, str(tiny_model)).images[0]
    assert np.abs(with_lora.images[0].astype(int) - base.astype(int)).max() > 0
    assert with_lora.params["loras"] == [[str(lora_file), 1.0]]
    assert np.abs(zero.astype(int) - base.astype(int)).max() <= 1
    assert np.array_equal(after, base)


def test_lora_errors(tiny_model, tmp_path, fake_checkpoint):
    from plugins.text_to_image.compute import GenerationParams, generate

    with pytest.raises(ModelError, match="LoRA file not found"):
        generate(GenerationParams(prompt="x", steps=1, loras=[(str(tmp_path / "no.safetensors"), 1.0)]), str(tiny_model))
    not_lora = fake_checkpoint("ckpt.safetensors", SD1_KEYS)
    with pytest.raises(ModelError, match="not a LoRA"):
        generate(GenerationParams(prompt="x", steps=1, loras=[(str(not_lora), 1.0)]), str(tiny_model))
