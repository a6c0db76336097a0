"""The inpaint tool through the studio's plugin API, runner and command line (tiny model)."""

import numpy as np
import pytest
from PIL import Image

from app.testing import assert_plugin_conforms


def _storage_ready():
    try:
        from storage import SessionStore  # noqa: F401
    except ImportError:
        return False
    return True


def test_plugin_module_conforms():
    out = assert_plugin_conforms("plugins.inpaint.plugin")
    assert "inpaint" in out["tools"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_model_inp"), seed=0)


def _files(tmp_path, scene):
    img, mask = scene
    ip, mp = tmp_path / "img.png", tmp_path / "mask.png"
    Image.fromarray(img).save(ip)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mp)
    return ip, mp


def test_run_tool_inpaints_and_returns_the_mask(run_tool, tiny_folder, scene, tmp_path):
    img, mask = scene
    ip, mp = _files(tmp_path, scene)
    results = run_tool("inpaint", image=str(ip), mask=str(mp), prompt="a blue circle", method="blend", steps=2,
                       model=str(tiny_folder), seed=3)
    assert [r.kind for r in results][:2] == ["image", "mask"]
    assert np.array_equal(results[0].image[~mask], img[~mask])
    assert np.array_equal(results[1].mask > 127, mask)


def test_wrong_size_mask_is_refused_with_an_offer(run_tool, tiny_folder, scene, tmp_path):
    from app.testing import ToolRunError

    ip, _ = _files(tmp_path, scene)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(small)
    with pytest.raises(ToolRunError, match="resize"):
        run_tool("inpaint", image=str(ip), mask=str(small), method="blend", steps=2, model=str(tiny_folder))


@pytest.mark.skipif(not _storage_ready(), reason="the session storage layer is not available yet")
def test_cli_run(studio_cli, tiny_folder, scene, tmp_path):
    ip, mp = _files(tmp_path, scene)
    out = tmp_path / "out"
    res = studio_cli("run", "inpaint", "--image", str(ip), "--mask", str(mp), "--prompt", "a red square",
                     "--method", "copaint", "--steps", "2", "--model", str(tiny_folder), "--out", str(out))
    assert res.exit_code == 0, res.stderr + res.stdout
    assert any(p.suffix == ".png" for p in out.rglob("*"))
