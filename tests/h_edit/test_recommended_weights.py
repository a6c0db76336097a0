"""A model folder's implicit_studio.json: h-Edit takes its recommended guidance weights."""

import json

import pytest
import torch

from plugins.diffusion_common.recommended import FILENAME, model_folder, recommended_settings

SRC = "a red circle on a gray background"
TAR = "a blue circle on a gray background"


def test_reads_the_tool_section(tmp_path):
    (tmp_path / FILENAME).write_text(json.dumps({"about": "text is allowed here",
                                                 "h-edit": {"random": {"w_orig": 3, "w_edit": 7.5}}}))
    assert recommended_settings(tmp_path, "h-edit", "random") == {"w_orig": 3.0, "w_edit": 7.5}
    assert recommended_settings(tmp_path, "h-edit", "deterministic") == {}
    assert recommended_settings(tmp_path, "inpaint") == {}
    assert recommended_settings(None, "h-edit", "random") == {}
    assert recommended_settings(tmp_path / "nowhere", "h-edit", "random") == {}


@pytest.mark.parametrize("text, why", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "does not hold a JSON object"),
    ('{"h-edit": {"random": {"w_orig": "three"}}}', "h-edit.w_orig is not a finite number"),
    ('{"h-edit": {"random": {"w_orig": NaN}}}', "not a finite number"),
    ('{"h-edit": {"random": {"w_orig": true}}}', "not a finite number"),
    ('{"h-edit": {"random": [3]}}', "entry is not an object"),
])
def test_a_malformed_file_is_ignored_with_a_sentence(tmp_path, text, why):
    (tmp_path / FILENAME).write_text(text)
    notes: list[str] = []
    assert recommended_settings(tmp_path, "h-edit", "random", notes) == {}
    assert len(notes) == 1 and why in notes[0] and "using the tool's defaults" in notes[0]


@pytest.fixture
def tiny_folder(tmp_path):
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path / "tiny", seed=0)


def _load(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_h_edit_uses_the_models_weights_where_left_at_default(tiny_folder, test_image):
    from plugins.h_edit import compute as C

    torch.set_num_threads(1)
    (tiny_folder / FILENAME).write_text(json.dumps({"h-edit": {"random": {"w_orig": 2.0, "w_src_edit": 3.0,
                                                                          "w_edit": 4.0}}}))
    pipe = _load(tiny_folder)
    assert model_folder(pipe) == tiny_folder
    s = C.HEditSettings(variant="explicit", num_steps=3, attention="none")
    res = C.h_edit(pipe, test_image, SRC, TAR, s, cache=None)
    assert (res.settings.w_orig, res.settings.w_src_edit, res.settings.w_edit) == (2.0, 3.0, 4.0)
    assert any("recommended by the model" in n for n in res.notes)
    # the weights are used, not only recorded: the same edit with them given explicitly is identical,
    # and with the paper's weights it is not
    same = C.h_edit(pipe, test_image, SRC, TAR, C.HEditSettings(variant="explicit", num_steps=3, attention="none",
                                                                  w_orig=2.0, w_src_edit=3.0, w_edit=4.0), cache=None)
    paper = C.h_edit(pipe, test_image, SRC, TAR, C.HEditSettings(variant="explicit", num_steps=3, attention="none",
                                                                   w_orig=1.0, w_src_edit=5.0, w_edit=7.5), cache=None)
    assert torch.equal(res.latent, same.latent)
    assert not torch.allclose(res.latent, paper.latent)
    assert not any("recommended by the model" in n for n in same.notes)
    # a weight the user sets wins; the others still come from the model
    mine = C.h_edit(pipe, test_image, SRC, TAR, C.HEditSettings(variant="explicit", num_steps=3, attention="none",
                                                                  w_edit=6.0), cache=None)
    assert (mine.settings.w_orig, mine.settings.w_src_edit, mine.settings.w_edit) == (2.0, 3.0, 6.0)
    # the file names weights for the random inversion only: the deterministic one keeps the paper's
    det = C.h_edit(pipe, test_image, SRC, TAR, C.HEditSettings(variant="explicit", inversion="deterministic",
                                                                 num_steps=3, attention="none"), cache=None)
    assert (det.settings.w_orig, det.settings.w_src_edit, det.settings.w_edit) == (1.0, 9.0, 10.0)


def test_a_malformed_recommendation_does_not_stop_the_edit(tiny_folder, test_image):
    from plugins.h_edit import compute as C

    torch.set_num_threads(1)
    (tiny_folder / FILENAME).write_text('{"h-edit": {"random": {"w_orig": "lots"}}}')
    res = C.h_edit(_load(tiny_folder), test_image, SRC, TAR, C.HEditSettings(num_steps=2, attention="none"),
                   cache=None)
    assert (res.settings.w_orig, res.settings.w_src_edit, res.settings.w_edit) == (1.0, 5.0, 7.5)
    assert any("ignored the model's recommended settings" in n for n in res.notes)
    assert res.image.shape == test_image.shape
