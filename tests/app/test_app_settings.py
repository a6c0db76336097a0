"""Settings persist atomically and survive a damaged file; logging goes to the log folder."""

from __future__ import annotations

import json
import logging

from app.settings import Settings, log_file_path, setup_logging


def test_settings_round_trip_and_typed_accessors(tmp_path):
    path = tmp_path / "cfg" / "settings.json"
    s = Settings(path)
    assert s.device == "auto" and s.disabled_plugins == set()
    s.set_plugin_enabled("rl", False)
    s.set("device", "cpu")
    s.set_plugin_setting("h-edit", "reward", "clip")
    s.set_last_params("noise-image", {"size": 8})
    again = Settings(path)
    assert again.disabled_plugins == {"rl"} and again.device == "cpu"
    assert again.plugin_settings() == {"h-edit": {"reward": "clip"}}
    assert again.last_params("noise-image") == {"size": 8} and again.last_params("other") == {}
    again.set_plugin_enabled("rl", True)
    assert json.loads(path.read_text())["plugins.disabled"] == []
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp files left


def test_damaged_settings_file_falls_back_to_defaults(tmp_path, caplog):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="implicit_studio.settings"):
        s = Settings(path)
    assert s.device == "auto" and "not valid JSON" in caplog.text
    s.set("device", "cpu")
    assert Settings(path).device == "cpu"


def test_log_file_in_log_dir(monkeypatch, tmp_path):
    import subprocess
    import sys

    env = {"IMPLICIT_STUDIO_LOG_DIR": str(tmp_path / "logs")}
    code = ("import logging; from app.settings import setup_logging, log_file_path\n"
            "p = setup_logging(); logging.getLogger('implicit_studio.x').warning('hello log')\n"
            "print(p == log_file_path())")
    import os

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr
    assert "hello log" in (tmp_path / "logs" / "implicit-studio.log").read_text()
    assert setup_logging and log_file_path  # imported names exist in-process too
