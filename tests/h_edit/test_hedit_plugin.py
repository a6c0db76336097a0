"""The h-edit tool through the studio's plugin API, runner and command line (tiny model)."""

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
    out = assert_plugin_conforms("plugins.h_edit.plugin")
    assert "h-edit" in out["tools"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_model"), seed=0)


def test_run_tool_edits_and_records_the_region(run_tool, tiny_folder, test_image, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(test_image).save(path)
    region = np.zeros((64, 64), np.uint8)
    region[8:40, 8:48] = 255
    mpath = tmp_path / "region.png"
    Image.fromarray(region).save(mpath)
    results = run_tool("h-edit", image=str(path), source_prompt="a red circle", target_prompt="a blue circle",
                       region=str(mpath), steps=3, model=str(tiny_folder), seed=1)
    kinds = [r.kind for r in results]
    assert kinds[:2] == ["image", "mask"]
    img = results[0].image
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img[region == 0], test_image[region == 0])
    assert results[0].metadata["target_prompt"] == "a blue circle"
    assert results[0].metadata["attention"] == "p2p"


def test_run_tool_reports_bad_input_plainly(run_tool, tiny_folder, test_image, tmp_path):
    from app.testing import ToolRunError

    path = tmp_path / "in.png"
    Image.fromarray(test_image).save(path)
    with pytest.raises(ToolRunError, match="target prompt is empty"):
        run_tool("h-edit", image=str(path), source_prompt="a red circle", target_prompt="", steps=2,
                 model=str(tiny_folder))
    with pytest.raises(ToolRunError, match="unknown reward 'sparkle'"):
        run_tool("h-edit", image=str(path), source_prompt="a red circle", target_prompt="", reward="sparkle",
                 steps=2, model=str(tiny_folder))


def test_source_prompt_prefilled_from_metadata():
    from plugins.h_edit.run import source_prompt_from_metadata

    assert source_prompt_from_metadata({"params": {"prompt": "a green star"}}) == "a green star"
    assert source_prompt_from_metadata({"prompt": "a red ring"}) == "a red ring"
    assert source_prompt_from_metadata({}) == ""


@pytest.mark.skipif(not _storage_ready(), reason="the session storage layer is not available yet")
def test_cli_run(studio_cli, tiny_folder, test_image, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(test_image).save(path)
    out = tmp_path / "out"
    res = studio_cli("run", "h-edit", "--image", str(path), "--source-prompt", "a red circle",
                     "--target-prompt", "", "--reward", "colour:blue", "--variant", "explicit",
                     "--steps", "2", "--model", str(tiny_folder), "--out", str(out))
    assert res.exit_code == 0, res.stderr + res.stdout
    assert any(p.suffix == ".png" for p in out.rglob("*"))


def test_a_reward_of_another_plugin_guides_the_edit_through_the_context(run_tool, studio_manager, tiny_folder,
                                                                         test_image, tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "plugins_fixture"))
    assert studio_manager.register_plugin(importlib.import_module("studio_models.plugin"), "models").ok
    from studio_models import ops

    ops.REWARD_CALLS.clear()
    path = tmp_path / "in.png"
    Image.fromarray(test_image).save(path)
    results = run_tool("h-edit", image=str(path), source_prompt="a red circle", target_prompt="",
                       reward="toy-brightness", reward_weight=0.5, steps=2, model=str(tiny_folder), seed=1)
    assert results[0].kind == "image"
    assert ops.REWARD_CALLS[0] == ("built", "h_edit")  # built with the h-edit run's own context
    assert ("scored", "a red circle") in ops.REWARD_CALLS
