"""Training checkpoints: tensors and their meta always describe the same step."""

import json

import torch
from safetensors.torch import save_file

from lab.default_model.train import _load_state, _save_state


def test_a_stale_json_beside_newer_tensors_does_not_mix_steps(tmp_path):
    ck = tmp_path / "unet_ckpt"
    _save_state(ck, {"w": torch.full((3,), 2.0)}, {"step": 2, "losses": [1.0, 0.9]})
    old_json = (tmp_path / "unet_ckpt.json").read_text()
    _save_state(ck, {"w": torch.full((3,), 4.0)}, {"step": 4, "losses": [1.0, 0.9, 0.8, 0.7]})
    # a process ended between the two writes: the tensor file is step 4's, the JSON still step 2's
    (tmp_path / "unet_ckpt.json").write_text(old_json)

    tensors, meta = _load_state(ck)
    assert meta["step"] == 4 and len(meta["losses"]) == 4
    assert torch.equal(tensors["w"], torch.full((3,), 4.0))


def test_a_checkpoint_without_meta_in_its_header_reads_the_json(tmp_path):
    ck = tmp_path / "vae_ckpt"
    save_file({"w": torch.ones(2)}, str(tmp_path / "vae_ckpt.safetensors"))  # the earlier format
    (tmp_path / "vae_ckpt.json").write_text(json.dumps({"step": 7, "losses": []}))
    tensors, meta = _load_state(ck)
    assert meta["step"] == 7 and torch.equal(tensors["w"], torch.ones(2))


def test_no_checkpoint_reads_as_none(tmp_path):
    assert _load_state(tmp_path / "unet_ckpt") == (None, None)
