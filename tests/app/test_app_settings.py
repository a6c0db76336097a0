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
    code = ("import logging, sys; from app.settings import setup_logging, log_file_path\n"
            "p = setup_logging(); logging.getLogger('implicit_studio.x').warning('hello log')\n"
            "print(p == log_file_path(), 'logging.handlers' in sys.modules)")
    import os

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=60)
    assert proc.stdout.strip() == "True False", proc.stderr  # start-up: no logging.handlers
    assert "hello log" in (tmp_path / "logs" / "implicit-studio.log").read_text()
    assert setup_logging and log_file_path  # imported names exist in-process too


def test_log_file_rotates_at_its_size_limit(tmp_path):
    from app.settings import SizeRotatingFileHandler

    path = tmp_path / "x.log"
    handler = SizeRotatingFileHandler(path, max_bytes=200, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("implicit_studio.test_rotation")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(40):
            log.warning("line %02d %s", i, "x" * 30)
    finally:
        log.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.log", "x.log.1", "x.log.2"]  # the oldest beyond two backups are gone
    assert all(p.stat().st_size <= 200 + 40 for p in tmp_path.iterdir())
    assert "line 39" in path.read_text() and "line 00" not in "".join(p.read_text() for p in tmp_path.iterdir())
    newest_backup = (tmp_path / "x.log.1").read_text().splitlines()
    assert int(newest_backup[-1].split()[1]) + 1 == int(path.read_text().splitlines()[0].split()[1])
