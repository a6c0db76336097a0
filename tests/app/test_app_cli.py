"""The command line, end to end: a real ``implicit-studio`` process discovering the toy plugin
through entry points, recording into a session, then ``history`` and ``export`` reading it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import sys

import pytest

PYTHON = sys.executable


def cli(args, env, timeout=120):
    proc = subprocess.run([PYTHON, "-m", "app", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc


@pytest.fixture
def env(cli_env):
    return cli_env


def test_run_records_in_session_then_history_and_export(env, tmp_path):
    out, session = tmp_path / "out", tmp_path / "sess"
    p = cli(["run", "noise-image", "--size", "16", "--steps", "3", "--seed", "4", "--palette", "gray",
             "--invert", "--out", out, "--session", session, "--json"], env)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["status"] == "finished" and info["seed"] == 4 and info["tool"] == "noise-image"
    image = Path(info["results"][0]["file"])
    assert image.parent == out and image.suffix == ".png"
    from PIL import Image

    with Image.open(image) as im:
        assert im.size == (16, 16)
    h = cli(["history", "--session", session], env)
    assert h.returncode == 0, h.stderr
    line = [ln for ln in h.stdout.splitlines() if "noise-image" in ln]
    assert line and line[0].split()[0] == str(info["run_id"])
    e = cli(["export", info["run_id"], "--session", session, "--out", tmp_path / "exp"], env)
    assert e.returncode == 0, e.stderr
    written = [Path(x) for x in e.stdout.split()]
    assert any(w.suffix == ".png" for w in written) and all(w.exists() for w in written)
    # the log file went to the user log folder
    assert (tmp_path / "log" / "implicit-studio.log").exists()


def test_bad_input_is_one_line_exit_2(env, tmp_path):
    s = tmp_path / "s"
    cases = [
        (["run", "noise-image", "--size", "2", "--session", s], "--size: Size: must be between 4 and 512, got 2"),
        (["run", "noise-image", "--size", "big", "--session", s], "expected a whole number, got 'big'"),
        (["run", "noise-image", "--palette", "pink", "--session", s], "must be one of gray, color"),
        (["run", "noise-image", "--bogus", "1", "--session", s], "unrecognized arguments: --bogus"),
        (["run", "no-such-tool"], "unknown tool 'no-such-tool'"),
        (["run", "invert-image", "--image", tmp_path / "none.png", "--session", s], "file not found"),
        (["run", "noise-image", "--device", "tpu", "--session", s], "unknown device 'tpu'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["history", "--session", tmp_path / "nowhere"], "no session at"),
    ]
    for args, expected in cases:
        p = cli(args, env)
        assert p.returncode == 2, (args, p.stderr)
        assert expected in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
        errors = [ln for ln in p.stderr.splitlines() if "error" in ln]
        assert len(errors) == 1, p.stderr


def test_tool_failure_exit_1_without_traceback(env, tmp_path):
    p = cli(["run", "fail-tool", "--session", tmp_path / "s"], env)
    assert p.returncode == 1
    assert "tool 'fail-tool' failed: RuntimeError: toy failure on purpose" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli(["run", "user-error-tool", "--no-session"], env)
    assert p.returncode == 1 and "the toy model file is missing" in p.stderr


def test_tools_plugins_help_version(env):
    t = cli(["tools"], env)
    assert t.returncode == 0
    assert "noise-image" in t.stdout and "--step-delay" in t.stdout and "int in [4, 512]" in t.stdout
    p = cli(["plugins"], env)
    assert p.returncode == 0
    lines = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln and not ln.startswith(" ")}
    assert "1.2.3" in lines["toy"] and "loaded" in lines["toy"]
    assert "failed" in lines["broken"] and "nonexistent-dependency" in p.stdout
    assert "incompatible" in lines["future"]
    pj = json.loads(cli(["plugins", "--json"], env).stdout)
    broken = [r for r in pj if r["name"] == "broken"][0]
    assert "Traceback" in broken["traceback"]
    h = cli(["run", "noise-image", "--help"], env)
    assert h.returncode == 0 and "--step-delay" in h.stdout and "--no-invert" in h.stdout
    v = cli(["--version"], env)
    assert v.returncode == 0 and v.stdout.startswith("implicit-studio ")
    top = cli(["--help"], env)
    assert top.returncode == 0 and "run " in top.stdout and "history" in top.stdout
    assert "toy-hello" in top.stdout and "print a greeting [toy]" in top.stdout  # plugin commands too


def test_plugin_command_and_disable_enable(env):
    p = cli(["toy-hello", "a", "b"], env)
    assert p.returncode == 0 and p.stdout.strip() == "hello a b"
    assert cli(["toy-hello", "--fail"], env).returncode == 3
    d = cli(["plugins", "disable", "toy"], env)
    assert d.returncode == 0 and "disabled" in d.stdout
    r = cli(["run", "fail-tool"], env)
    assert r.returncode == 2 and "unknown tool 'fail-tool'" in r.stderr
    assert cli(["plugins", "enable", "toy"], env).returncode == 0
    assert "noise-image" in cli(["tools"], env).stdout


def test_console_script_is_installed():
    import shutil
    import sys

    exe = Path(sys.executable).parent / "implicit-studio"
    path = str(exe) if exe.exists() else shutil.which("implicit-studio")
    assert path, "the implicit-studio console script is not installed"
    p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "plugin API" in p.stdout


def test_in_process_cli_fixture(studio_cli, toy_site, monkeypatch, tmp_path):
    monkeypatch.setenv("IMPLICIT_STUDIO_LOAD_PLUGINS", "toy")
    r = studio_cli("run", "noise-image", "--size", "8", "--steps", "1", "--session", tmp_path / "s")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("run 1 finished: noise-image")
    r = studio_cli("run", "noise-image", "--steps", "0", "--no-session")
    assert r.exit_code == 2 and "Steps: must be between 1 and 10000, got 0" in r.stderr
