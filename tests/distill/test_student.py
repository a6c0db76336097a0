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


def _context(resources):
    """A run context whose bundled models are the ones in ``resources`` (as the plugins' hook answers)."""
    from app.api import RunContext
    from plugins.diffusion_common.bundled import bundled_model

    return RunContext(resources_dir=resources, model_lookup=lambda ref: bundled_model(ref, resources))


@pytest.fixture
def bundled(tmp_path, teacher, student):
    """A resources folder whose default model is the tiny teacher and whose student is its student."""
    resources = tmp_path / "resources"
    (resources / "models").mkdir(parents=True)
    (resources / "models" / "default").symlink_to(teacher, target_is_directory=True)
    (resources / "models" / "default-1step").symlink_to(student, target_is_directory=True)
    return resources


def _draw(resources, **params):
    from plugins.text_to_image.run import run_text_to_image

    image = run_text_to_image(_context(resources), prompt="a red circle", seed=1, record_trajectory=False,
                              **params)[0]
    return image


def test_few_steps_of_the_default_model_are_drawn_by_its_student(bundled, teacher, student):
    few = _draw(bundled, steps=4, guidance=5.0)
    assert few.metadata["model"] == str(student)
    params = few.metadata
    assert params["steps"] == 4 and params["guidance"] == 1.0 and params["scheduler"] == "default"
    assert "drawn by its one-step student (default-1step)" in few.metadata["warnings"][0]
    by_name = _draw(bundled, steps=4, guidance=1.0, model="default-1step")
    assert by_name.metadata["model"] == few.metadata["model"]
    assert np.array_equal(by_name.image, few.image)
    one = _draw(bundled, steps=1)
    assert one.metadata["model"] == few.metadata["model"] and one.metadata["steps"] == 1

    many = _draw(bundled, steps=5)
    assert many.metadata["model"] == str(teacher) and not many.metadata["warnings"]
    folder = _draw(bundled, steps=2, model=str(teacher))
    assert folder.metadata["model"] == str(teacher)  # the default model named by its folder: the teacher
    init = _draw(bundled, steps=4, init_image=few.image, strength=0.5)
    assert init.metadata["model"] == str(teacher)  # image-to-image keeps the teacher


def test_without_a_student_the_default_model_draws_few_steps_itself(tmp_path, teacher):
    from app.api import ToolError

    # (the recorded model is the folder itself, links resolved)
    resources = tmp_path / "resources"
    (resources / "models").mkdir(parents=True)
    (resources / "models" / "default").symlink_to(teacher, target_is_directory=True)
    res = _draw(resources, steps=2)
    assert res.metadata["model"] == str(teacher)
    assert res.metadata["steps"] == 2
    with pytest.raises(ToolError, match="model not found: default-1step"):
        _context(resources).resolve_model("default-1step")
