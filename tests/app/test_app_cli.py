"""The command line, end to end: a real ``implicit-studio`` process discovering the toy plugin
through entry points, recording into a session, then ``history`` and ``export`` reading it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_reproduce_reruns_a_recorded_run_and_checks_it_bit_for_bit(env, tmp_path):
    session = tmp_path / "sess"
    p = cli(["run", "noise-image", "--size", "12", "--steps", "2", "--session", session, "--json"], env)
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout)  # the seed was drawn at run time and recorded
    r = cli(["reproduce", first["run_id"], "--session", session, "--json"], env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["matched"] and "bit for bit" in info["message"] and info["new_run_id"] != first["run_id"]
    assert info["request"]["tool"] == "noise-image" and info["request"]["seed"] == first["seed"]
    bad = cli(["reproduce", "999", "--session", session], env)
    assert bad.returncode == 2 and "Run 999 does not exist" in bad.stderr


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
    assert "tool 'fail-tool' of plugin 'toy' failed: RuntimeError: toy failure on purpose" in p.stderr
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


# ---------------------------------------------------------------------------------------------
# storage errors, no display, the launch path's Qt set-up
# ---------------------------------------------------------------------------------------------


def _session_with_one_png_run(folder: Path) -> tuple[int, Path]:
    import io

    from PIL import Image
    from storage import SessionStore

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    store = SessionStore.open(folder)
    try:
        run_id = store.record_run(tool_id="noise-image", plugin="toy", plugin_version="1", params={}, seed=1,
                                  results=[{"kind": "image", "data": buf.getvalue(), "ext": "png",
                                            "width": 4, "height": 4}])
        path = store.result_path(store.get_run(run_id).results[0].id)
    finally:
        store.close()
    return run_id, path


def test_export_reports_storage_errors_in_one_line_exit_2(tmp_path):
    session = tmp_path / "sess"
    run_id, result_file = _session_with_one_png_run(session)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    e = cli(["export", run_id, "--session", session, "--out", blocker / "out"], dict(os.environ))
    assert e.returncode == 2, e.stderr
    assert e.stderr.count("\n") == 1 and "could not be written" in e.stderr and "Traceback" not in e.stderr
    result_file.unlink()  # deleted behind the studio's back
    e = cli(["export", run_id, "--session", session, "--out", tmp_path / "exp"], dict(os.environ))
    assert e.returncode == 2, e.stderr
    assert e.stderr.count("\n") == 1 and "is missing from" in e.stderr and "details in the log" not in e.stderr


def test_run_marks_runs_left_running_by_a_dead_process_as_failed(env, tmp_path):
    from storage import SessionStore

    session = tmp_path / "sess"
    store = SessionStore.open(session)
    try:
        stale = store.begin_run(tool_id="noise-image", plugin="toy", plugin_version="1.2.3", params={}, seed=1)
    finally:
        store.close()
    p = cli(["run", "noise-image", "--size", "8", "--steps", "1", "--session", session, "--json"], env)
    assert p.returncode == 0, p.stderr
    store = SessionStore.open(session)
    try:
        assert store.get_run(stale).status == "failed"
        assert store.get_run(json.loads(p.stdout)["run_id"]).status == "ok"
    finally:
        store.close()


def _no_display_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(IMPLICIT_STUDIO_CONFIG_DIR=str(tmp_path / "cfg"), IMPLICIT_STUDIO_DATA_DIR=str(tmp_path / "data"),
               IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log"))
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY/WAYLAND_DISPLAY are a Linux matter")
def test_window_without_a_display_says_what_to_do(tmp_path):
    p = cli(["--session", tmp_path / "sess"], _no_display_env(tmp_path), timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stderr.count("\n") == 1, p.stderr
    assert "no display" in p.stderr and "QT_QPA_PLATFORM=offscreen" in p.stderr and "Xvfb" in p.stderr
    assert not (tmp_path / "sess").exists()  # it stopped before opening anything


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY/WAYLAND_DISPLAY are a Linux matter")
def test_exit_after_paint_without_a_display_renders_offscreen(tmp_path):
    p = cli(["--session", tmp_path / "sess", "--exit-after-paint"], _no_display_env(tmp_path))
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert re.search(r"^first-paint-ms: \d+$", p.stdout, re.M), p.stdout


def test_launch_path_shares_opengl_contexts(tmp_path):
    # set before the QApplication exists, so a second OpenGL view in the process works
    code = ("from PySide6.QtCore import QCoreApplication, Qt\n"
            "from app.ui.launch import ensure_app\n"
            "app = ensure_app([])\n"
            "print(QCoreApplication.testAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts))\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "True"


def test_a_parameter_named_like_a_run_option_gets_its_own_option():
    """A tool parameter called ``device`` or ``precision`` must not break ``run TOOL`` (argparse
    refuses a second ``--device``): it is offered as ``--param-device``, beside the run's own."""
    from app import api
    from app.cli_commands import _tool_parser, tool_option

    tool = api.ToolSpec(id="t", title="T", run="x:y", params=(
        api.TextParam(name="device", default="lamp"), api.ChoiceParam(name="precision", choices=("a", "b"), default="a"),
        api.IntParam(name="steps", default=3)))
    parser = _tool_parser(tool)  # raised ArgumentError: conflicting option string: --device
    args = parser.parse_args(["--param-device", "torch", "--device", "cpu", "--param-precision", "b", "--steps", "4"])
    values = {k: v for k, v in vars(args).items() if k.startswith("param:")}
    assert values == {"param:device": "torch", "param:precision": "b", "param:steps": "4"}
    assert args.device == "cpu" and args.precision is None
    assert [tool_option(p) for p in tool.params] == ["--param-device", "--param-precision", "--steps"]
