"""The one-step student in the studio: the live one-step call, and text-to-image drawing the bundled
model's student where the default model is asked for 1-4 steps."""

import numpy as np
import pytest


def test_the_one_step_call_draws_what_text_to_image_draws_in_one_step(student):
    from plugins.diffusion_common.onestep import OneStepGenerator
    from plugins.text_to_image.compute import GenerationParams, generate

    live = OneStepGenerator(str(student))
    img = live("a red circle in the center", 11)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    tool = generate(GenerationParams(prompt="a red circle in the center", seed=11, steps=1, guidance=1.0),
                    model=str(student), record_trajectory=False).images[0]
    assert np.abs(img.astype(int) - tool.astype(int)).max() <= 1
    assert np.array_equal(live("a red circle in the center", 11), img)  # the remembered prompt draws the same
    assert not np.array_equal(live("a red circle in the center", 12), img)  # another seed, another picture


def test_the_one_step_call_inpaints_only_the_masked_region(student):
    from plugins.diffusion_common.errors import ModelError
    from plugins.diffusion_common.onestep import OneStepGenerator

    live = OneStepGenerator(str(student))
    init = np.zeros((64, 64, 3), np.uint8)
    init[:, :, 2] = 200
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 8:32] = 255
    out = live("a green star", 3, init_image=init, mask=mask)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], init[mask == 0])  # untouched outside the mask
    assert not np.array_equal(out[mask > 0], init[mask > 0])  # redrawn inside it
    with pytest.raises(ModelError, match="needs both"):
        live("a green star", 3, init_image=init)
    with pytest.raises(ModelError, match="the mask is 32x32"):
        live("a green star", 3, init_image=init, mask=np.zeros((32, 32), np.uint8))


@pytest.fixture
def bundled(monkeypatch, teacher, student):
    """The tiny teacher and its student standing in for the bundled model and its student."""
    from app import paths

    monkeypatch.setattr(paths, "default_model_dir", lambda: teacher)
    monkeypatch.setattr(paths, "default_student_dir", lambda: student)


def test_few_steps_of_the_default_model_are_drawn_by_its_student(bundled, teacher, student, tmp_path):
    from plugins.text_to_image.compute import GenerationParams, generate

    few = generate(GenerationParams(prompt="a red circle", seed=1, steps=4, guidance=5.0), model="default",
                   record_trajectory=False)
    assert few.model["path"] == str(student)
    assert few.params["steps"] == 4 and few.params["guidance"] == 1.0 and few.params["scheduler"] == "default"
    assert "drawn by its one-step student (default-1step)" in few.warnings[0]
    by_name = generate(GenerationParams(prompt="a red circle", seed=1, steps=4, guidance=1.0), model="default-1step",
                       record_trajectory=False)
    assert by_name.model["path"] == str(student) and np.array_equal(by_name.images[0], few.images[0])
    one = generate(GenerationParams(prompt="a red circle", seed=1, steps=1), model="default", record_trajectory=False)
    assert one.model["path"] == str(student) and one.params["steps"] == 1

    many = generate(GenerationParams(prompt="a red circle", seed=1, steps=5), model="default", record_trajectory=False)
    assert many.model["path"] == str(teacher) and not many.warnings
    folder = generate(GenerationParams(prompt="a red circle", seed=1, steps=2), model=str(teacher),
                      record_trajectory=False)
    assert folder.model["path"] == str(teacher)  # the default model named by its folder: the teacher itself
    init = generate(GenerationParams(prompt="a red circle", seed=1, steps=4, init_image=few.images[0], strength=0.5),
                    model="default", record_trajectory=False)
    assert init.model["path"] == str(teacher)  # image-to-image keeps the teacher


def test_without_a_student_the_default_model_draws_few_steps_itself(monkeypatch, teacher, tmp_path):
    from app import paths
    from plugins.diffusion_common.errors import ModelError
    from plugins.diffusion_common.models import resolve_model_path
    from plugins.text_to_image.compute import GenerationParams, generate

    monkeypatch.setattr(paths, "default_model_dir", lambda: teacher)
    monkeypatch.setattr(paths, "default_student_dir", lambda: tmp_path / "absent")
    res = generate(GenerationParams(prompt="a red circle", seed=1, steps=2), model="default", record_trajectory=False)
    assert res.model["path"] == str(teacher) and res.params["steps"] == 2
    with pytest.raises(ModelError, match="one-step student is missing"):
        resolve_model_path("default-1step")
