"""The one-step route of the editing tools (what live mode draws, and what Keep records): 1-4 steps
of the default model, or a student named as the model, redraw the masked region with the bundled
one-step student; the rest of the picture is the input's, bit for bit."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def picture(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 2] = 200  # blue
    img[20:44, 20:44] = (230, 30, 30)  # a red square
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 8:40] = 255
    ip, mp = tmp_path / "img.png", tmp_path / "mask.png"
    Image.fromarray(img).save(ip)
    Image.fromarray(mask).save(mp)
    return img, mask, ip, mp


def test_inpaint_at_one_step_of_the_default_model_is_the_students_redraw(run_tool, picture):
    from app.paths import default_student_dir
    from plugins.diffusion_common.onestep import OneStepGenerator

    img, mask, ip, mp = picture
    results = run_tool("inpaint", image=str(ip), mask=str(mp), prompt="a yellow circle", steps=1, seed=3)
    out = results[0].image
    assert results[0].metadata["method"] == "one-step"
    assert np.array_equal(out[mask == 0], img[mask == 0])  # only the masked region is redrawn
    assert np.abs(out[mask > 0].astype(int) - img[mask > 0]).mean() > 10
    direct = OneStepGenerator(str(default_student_dir()))("a yellow circle", 3, init_image=img, mask=mask)
    assert np.array_equal(out, direct)
    assert np.array_equal(results[1].mask, mask)


def test_hedit_at_one_step_previews_the_edit_in_the_region(run_tool, picture):
    img, mask, ip, mp = picture
    results = run_tool("h-edit", image=str(ip), source_prompt="a red square", target_prompt="a green star",
                       region=str(mp), steps=1, seed=5)
    out = results[0].image
    assert results[0].metadata["variant"] == "one-step"
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert not np.array_equal(out[mask > 0], img[mask > 0])
    whole = run_tool("h-edit", image=str(ip), source_prompt="a red square", target_prompt="a green star",
                     steps=1, seed=5)
    assert len(whole) == 1 and not np.array_equal(whole[0].image[mask == 0], img[mask == 0])


def test_a_mask_of_another_size_is_refused_plainly(run_tool, picture, tmp_path):
    from app.testing import ToolRunError

    img, mask, ip, mp = picture
    small = tmp_path / "small.png"
    Image.fromarray(mask[:32, :32]).save(small)
    with pytest.raises(ToolRunError, match="the mask is 32x32 and the image 64x64"):
        run_tool("inpaint", image=str(ip), mask=str(small), prompt="a star", steps=2)
