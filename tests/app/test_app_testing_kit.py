"""The pytest fixtures shipped for plugin authors (app.testing), used the way an author would,
and the conformance check applied to the built-in plugins."""

from __future__ import annotations

import numpy as np
import pytest

from app import api
from app.testing import ToolRunError, assert_plugin_conforms

BUILTIN_ENTRY_MODULES = ["plugins.text_to_image.plugin", "plugins.h_edit.plugin", "plugins.inpaint.plugin",
                         "plugins.inr.plugin", "plugins.rl.plugin"]


@pytest.fixture
def only_toy(toy_site, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_LOAD_PLUGINS", "toy")


def test_run_tool_runs_and_records(only_toy, run_tool, studio_session):
    [image, metrics] = run_tool("noise-image", size=8, steps=2, seed=3)
    assert isinstance(image, api.ImageResult) and image.image.shape == (8, 8, 3)
    job = run_tool.last_job
    assert studio_session.get_run(job.run_id).seed == 3
    again = run_tool("noise-image", size=8, steps=2, seed=3)[0]
    assert np.array_equal(again.image, image.image)
    with pytest.raises(ToolRunError, match="toy failure on purpose"):
        run_tool("fail-tool")
    with pytest.raises(api.ParamError):
        run_tool("noise-image", size=1)


def test_studio_manager_sees_installed_plugins(only_toy, studio_manager):
    assert studio_manager.records["toy"].ok
    assert studio_manager.records["broken"].status == "disabled"  # not in IMPLICIT_STUDIO_LOAD_PLUGINS


def test_plugin_dist_fixture_makes_discovery_find_a_module(plugin_dist, tmp_path, monkeypatch):
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "kit_probe_plugin.py").write_text(
        "from app.api import ToolSpec, hookimpl\n"
        "@hookimpl\ndef studio_tools():\n    return [ToolSpec(id='kit-probe', title='K', run='kit_probe_plugin:run', results=())]\n"
        "def run(ctx):\n    return None\n")
    plugin_dist("kit-probe", {"kit_probe": "kit_probe_plugin"}, paths=[pkg], version="9.9")
    monkeypatch.setenv("IMPLICIT_STUDIO_LOAD_PLUGINS", "kit_probe")
    from app.plugins import PluginManager

    m = PluginManager().load()
    assert m.records["kit_probe"].version == "9.9" and "kit-probe" in m.tools


def test_conformance_check_catches_problems(tmp_path):
    import os
    from pathlib import Path

    fixture = Path(__file__).resolve().parent.parent / "plugins_fixture"
    env = {"PYTHONPATH": os.pathsep.join([str(fixture), str(Path(__file__).resolve().parents[2])])}
    with pytest.raises(AssertionError) as info:
        assert_plugin_conforms("studio_toy.plugin", env=env)
    assert "studio_toy.no_such_module:run does not resolve" in str(info.value)
    (tmp_path / "heavy_entry.py").write_text(
        "import onnxruntime\nfrom app.api import hookimpl\n")
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    with pytest.raises(AssertionError, match="imported heavy modules: onnxruntime"):
        assert_plugin_conforms("heavy_entry", env=env)


def test_builtin_plugins_conform():
    """Cheap entry modules, every run/read/write reference resolves, every default is valid."""
    out = assert_plugin_conforms(BUILTIN_ENTRY_MODULES)
    assert len(out["tools"]) >= 5


def test_studio_window_fixture_shows_the_window_with_plugins(only_toy, studio_window):
    assert studio_window.isVisible()
    assert "noise-image" in studio_window.manager.tools
