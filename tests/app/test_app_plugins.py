"""The plugin manager: discovery through entry points, isolation of every kind of failure,
disabling, env switches, lazy imports, the guarded boundary."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from app import api
from app.plugins import (
    DISABLED,
    FAILED,
    INCOMPATIBLE,
    LOADED,
    PluginCallError,
    PluginManager,
    StrictPluginError,
    UnknownToolError,
)


def test_toy_plugin_loads_through_entry_points_with_dist_metadata(manager):
    rec = manager.records["toy"]
    assert rec.status == LOADED, rec.error
    assert (rec.dist, rec.version, rec.author) == ("studio-toy", "1.2.3", "Toy Author")
    assert rec.source == "entry-point" and not rec.builtin
    assert {"noise-image", "fail-tool", "invert-image", "toy-mesh"} <= set(rec.tools)
    tool = manager.tool("noise-image")
    assert tool.plugin == "toy"
    assert [r.id for r in manager.readers] == ["toy-reader"]


def test_import_error_is_isolated_and_reported_with_traceback(manager):
    rec = manager.records["broken"]
    assert rec.status == FAILED
    assert "import failed" in rec.error and "nonexistent-dependency" in rec.error
    assert "Traceback" in rec.traceback and "studio_broken" in rec.traceback
    assert manager.records["toy"].ok  # the others went on


def test_newer_api_is_refused_with_clear_message(manager):
    rec = manager.records["future"]
    assert rec.status == INCOMPATIBLE
    assert "99.0" in rec.error and api.API_VERSION in rec.error
    assert "future-tool" not in manager.tools
    # what to install is the distribution, not the entry point's name
    assert 'install an older version of the distribution studio-bad-plugins (pip install "studio-bad-plugins<0.0.1")' \
        in rec.error


def test_hook_that_raises_marks_plugin_failed(manager):
    rec = manager.records["hookfail"]
    assert rec.status == FAILED
    assert "studio_tools raised RuntimeError: hook exploded" in rec.error
    assert "hook exploded" in rec.traceback
    assert manager.pm.get_plugin("hookfail") is None  # unregistered: no further hook calls


def test_duplicate_tool_id_rejected_first_one_wins(manager):
    assert manager.tool("noise-image").plugin == "toy"
    dup = manager.records["toy_dup"]
    assert dup.status == LOADED
    assert dup.tools == ["dup-own"]
    assert any("noise-image" in p and "already provided" in p for p in dup.problems)


def test_slow_hook_is_logged_with_plugin_name(toy_env, settings, caplog):
    caplog.set_level(logging.WARNING, logger="implicit_studio.plugins")
    m = PluginManager(settings, env=toy_env).load()
    assert m.records["slow"].hook_ms["studio_tools"] >= 100
    msgs = [r.getMessage() for r in caplog.records]
    assert any("'slow'" in s and "studio_tools" in s and "ms" in s for s in msgs), msgs
    assert not any("'toy'" in s and "took" in s for s in msgs)


def test_disable_is_persisted_and_skips_import(toy_env, settings):
    m = PluginManager(settings, env=toy_env).load()
    m.set_enabled("toy", False)
    assert "noise-image" not in m.tools and m.records["toy"].status == DISABLED
    assert "toy" in settings.disabled_plugins
    # a new process-level manager reading the same settings file does not import the plugin
    from app.settings import Settings

    for name in [n for n in sys.modules if n.startswith("studio_toy")]:
        del sys.modules[name]
    m2 = PluginManager(Settings(settings.path), env=toy_env).load()
    assert m2.records["toy"].status == DISABLED and "disabled" in m2.records["toy"].error
    assert "studio_toy.plugin" not in sys.modules
    # enabling loads it again, at once, and is remembered
    rec = m2.set_enabled("toy", True)
    assert rec.status == LOADED and "noise-image" in m2.tools
    assert "toy" not in Settings(settings.path).disabled_plugins


def test_no_plugins_switch_keeps_builtins_only(toy_site, settings):
    import os

    env = dict(os.environ, IMPLICIT_STUDIO_NO_PLUGINS="1")
    env.pop("IMPLICIT_STUDIO_LOAD_PLUGINS", None)
    m = PluginManager(settings, env=env).load()
    assert m.records["toy"].status == DISABLED
    assert "IMPLICIT_STUDIO_NO_PLUGINS" in m.records["toy"].error
    builtins = [r for r in m.records.values() if r.builtin]
    # the built-in plugins are discovered through the very same entry-point group
    assert {"text_to_image", "h_edit", "inpaint", "inr", "rl"} <= {r.name for r in builtins}
    assert all(r.status != DISABLED for r in builtins)
    m_all = PluginManager(settings, env=dict(env, IMPLICIT_STUDIO_NO_PLUGINS="all")).load()
    assert all(r.status == DISABLED for r in m_all.records.values())


def test_the_test_suite_sees_only_builtin_plugins(tmp_path, settings):
    # tests/conftest.py: a third-party plugin installed in the environment (here the toy
    # distributions, put on the path without the toy fixtures) cannot change what tests see
    from app.testing import install_plugin_dist, plugin_dists_on_path

    site = tmp_path / "site"
    install_plugin_dist(site, "studio-toy", {"toy": "studio_toy.plugin"}, version="1.2.3")
    with plugin_dists_on_path(site, [Path(__file__).resolve().parent.parent / "plugins_fixture"]):
        m = PluginManager(settings).load()  # the process environment, as most tests use it
    assert m.records["toy"].status == DISABLED, m.records["toy"]
    builtins = [r for r in m.records.values() if r.builtin]
    assert {"text_to_image", "h_edit", "inpaint", "inr", "rl"} <= {r.name for r in builtins}
    assert all(r.status == LOADED for r in builtins), [(r.name, r.status, r.error) for r in builtins]


def test_plugins_dir_loads_modules_from_a_folder(tmp_path, settings):
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "folder_plugin_x.py").write_text(
        '"""Folder plugin."""\n__version__ = "3.0"\n'
        "from app.api import ToolSpec, hookimpl\n"
        "@hookimpl\ndef studio_tools():\n    return [ToolSpec(id='folder-tool', title='F', run='folder_plugin_x:run', results=())]\n"
        "def run(ctx):\n    return None\n")
    env = {"IMPLICIT_STUDIO_PLUGINS_DIR": str(folder), "IMPLICIT_STUDIO_LOAD_PLUGINS": "folder_plugin_x"}
    try:
        m = PluginManager(settings, env=env).load()
        rec = m.records["folder_plugin_x"]
        assert rec.status == LOADED and rec.version == "3.0" and rec.summary == "Folder plugin."
        assert m.tool("folder-tool").plugin == "folder_plugin_x"
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("folder_plugin_x", None)


def test_strict_mode_raises_on_first_failure(toy_env, settings):
    env = dict(toy_env, IMPLICIT_STUDIO_STRICT_PLUGINS="1")
    with pytest.raises(StrictPluginError, match="broken"):
        PluginManager(settings, env=env).load()


def test_run_function_is_imported_lazily_and_guarded(manager):
    assert "studio_toy.ops" not in sys.modules  # registering imported only the entry module
    fn = manager.run_function(manager.tool("noise-image"))
    assert "studio_toy.ops" in sys.modules and callable(fn)
    with pytest.raises(PluginCallError) as info:
        manager.run_function(manager.tool("missing-module-tool"))
    assert info.value.plugin == "toy"
    assert "studio_toy.no_such_module" in str(info.value)
    assert manager.records["toy"].runtime_errors  # remembered for the Plugins dialog


def test_guarded_passes_user_errors_through_and_wraps_others(manager):
    seen = []
    manager.add_error_listener(seen.append)
    with pytest.raises(api.ToolError):
        manager.guarded("toy", "x", _raise, api.ToolError("plain message"))
    with pytest.raises(api.Cancelled):
        manager.guarded("toy", "x", _raise, api.Cancelled())
    assert seen == []
    with pytest.raises(PluginCallError) as info:
        manager.guarded("toy", "tool 'y'", _raise, ZeroDivisionError("boom"))
    assert isinstance(info.value.original, ZeroDivisionError)
    assert "ZeroDivisionError" in info.value.traceback_text
    assert seen == [info.value]


def _raise(exc):
    raise exc


def test_unknown_tool_lists_known_ones(manager):
    with pytest.raises(UnknownToolError) as info:
        manager.tool("no-such-tool")
    assert "noise-image" in str(info.value) and "no-such-tool" in str(info.value)


def test_reader_hook_reads_a_file(manager, tmp_path):
    path = tmp_path / "x.toyimg"
    path.write_bytes(b"TOY 3 2\n" + bytes(range(6)))
    [res] = manager.read_file(path)
    assert isinstance(res, api.ImageResult) and res.image.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="no reader"):
        manager.read_file(tmp_path / "x.unknown")


def test_session_events_reach_observers_and_failures_are_contained(manager):
    import studio_toy.plugin as toy

    class Bad:
        @api.hookimpl
        def studio_session_event(self, event):
            raise RuntimeError("observer broke")

    manager.register_plugin(Bad(), "bad-observer")
    toy.EVENTS.clear()
    manager.notify(api.SessionEvent(kind="session-opened", session_path="/tmp/s"))
    assert [e.kind for e in toy.EVENTS] == ["session-opened"]
    assert "observer broke" in manager.records["bad-observer"].runtime_errors[0]


def test_unknown_hook_name_fails_the_plugin(settings):
    class Typo:
        @api.hookimpl
        def studio_tool(self):  # missing 's'
            return []

    m = PluginManager(settings, entry_points=[], env={}).load()
    rec = m.register_plugin(Typo(), "typo")
    assert rec.status == FAILED and "studio_tool" in rec.error and "known hooks" in rec.error


def test_hook_returning_wrong_type_fails_the_plugin(settings):
    class Wrong:
        @api.hookimpl
        def studio_tools(self):
            return ["not a ToolSpec"]

    m = PluginManager(settings, entry_points=[], env={}).load()
    rec = m.register_plugin(Wrong(), "wrong")
    assert rec.status == FAILED and "expected app.api.ToolSpec" in rec.error


def test_fast_entry_point_discovery_matches_importlib_metadata():
    """Start-up reads entry_points.txt itself; it must find what importlib.metadata finds."""
    import importlib.metadata as md

    from app import entrypoints
    from app.plugins import ENTRY_POINT_GROUP

    ours = entrypoints.entry_points(ENTRY_POINT_GROUP)
    theirs = list(md.entry_points(group=ENTRY_POINT_GROUP))
    assert {(e.name, e.value) for e in ours} == {(e.name, e.value) for e in theirs}
    assert {e.name for e in ours} >= {"text_to_image", "h_edit", "inpaint", "inr", "rl"}
    for e in ours:
        ref = next(t for t in theirs if t.name == e.name)
        assert e.metadata["Name"] == ref.dist.metadata["Name"]
        assert e.metadata["Version"] == ref.dist.version
        assert e.metadata.get("Summary", "") == (ref.dist.metadata.get("Summary") or "")
        assert e.load() is ref.load()


def test_fast_entry_point_parser_reads_groups_folds_and_attributes(tmp_path, monkeypatch):
    from app import entrypoints

    dist = tmp_path / "my_plugin-2.3.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        "[console_scripts]\nx = y:z\n\n[implicit_studio.plugins]\n# a comment\nmine = json:decoder.JSONDecoder\n")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 2.3\n"
                                   "Summary: A long\n  folded summary\nAuthor: Ada\n\nBody: not a header\n")
    monkeypatch.setattr("sys.path", [str(tmp_path)])
    (ep,) = entrypoints.entry_points("implicit_studio.plugins")
    import json

    assert (ep.name, ep.value) == ("mine", "json:decoder.JSONDecoder") and ep.load() is json.decoder.JSONDecoder
    assert ep.metadata == {"Name": "my-plugin", "Version": "2.3", "Summary": "A long folded summary", "Author": "Ada"}
