"""API 1.2, end to end through real ``implicit-studio`` processes: a tool that runs another one
and the history tree; list and required parameters on the command line; partial results kept on
cancel; tools without a run-level seed; parameters carried across plugin versions; absolute input
paths; metadata refused at return; the PNG chunk naming the plugin; start-up costs and run-time
errors of earlier sessions in ``plugins``; the log file's path in CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from app import api

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]

TOY = '''
"""API 1.2 toys."""
from app.api import (FloatListParam, ImageParam, IntListParam, IntParam, PathParam, SeedListParam, SeedParam,
                     TextParam, ToolSpec, hookimpl)

__version__ = "0.2.0"

@hookimpl
def studio_tools():
    return [
        ToolSpec(id="leaf-toy", title="Leaf", run="api12_ops:leaf",
                 params=(IntParam(name="level", default=1, min=0, max=255), SeedParam(name="seed"))),
        ToolSpec(id="sweep-toy", title="Sweep", run="api12_ops:sweep", seeded=False,
                 params=(SeedListParam(name="seeds", default=(1, 2)), IntParam(name="level", default=5),
                         IntParam(name="stop_after", default=0))),
        ToolSpec(id="lists-toy", title="Lists", run="api12_ops:lists", seeded=False, results=("table",),
                 params=(TextParam(name="prompt", required=True), IntListParam(name="sizes", min=1, max=64),
                         FloatListParam(name="scales", default=(0.5, 1.0)))),
        ToolSpec(id="bad-meta", title="Bad metadata", run="api12_ops:bad_meta"),
        ToolSpec(id="bad-progress", title="Bad progress", run="api12_ops:bad_progress"),
        ToolSpec(id="keyerror-toy", title="Key error", run="api12_ops:keyerror"),
        ToolSpec(id="inputs-toy", title="Inputs", run="api12_ops:inputs", seeded=False,
                 params=(ImageParam(name="image"), PathParam(name="notes", mode="open"))),
        ToolSpec(id="renamed", title="Renamed parameter", run="api12_ops:renamed",
                 migrate_params="api12_ops:migrate",
                 params=(IntParam(name="palette", default=4, min=1, max=16), SeedParam(name="seed"))),
    ]
'''

OPS = '''
import numpy as np
from app.api import Cancelled, ImageResult, TableResult

def leaf(ctx, level, seed):
    ctx.progress(0, 1)
    return ImageResult(image=np.full((4, 4, 3), level, np.uint8), metadata={"seed": seed})

def sweep(ctx, seeds, level, stop_after):
    done = []
    try:
        for i, seed in enumerate(seeds):
            if stop_after and i == stop_after:
                ctx.cancel()
            ctx.progress(i, len(seeds))
            done += ctx.run_tool("leaf-toy", level=level, seed=seed)
    except Cancelled:
        raise Cancelled(results=done) from None
    return done

def lists(ctx, prompt, sizes, scales):
    return TableResult(columns=("prompt", "sizes", "scales"), rows=[(prompt, repr(sizes), repr(scales))])

def bad_meta(ctx):
    return ImageResult(image=np.zeros((2, 2, 3), np.uint8), metadata={"fine": 1, "handle": object()})

def bad_progress(ctx):
    ctx.progress("3/10", 10)

def keyerror(ctx):
    raise KeyError("colours")

def inputs(ctx, image, notes):
    return ImageResult(image=image.image)

def renamed(ctx, palette, seed):
    return ImageResult(image=np.full((2, 2, 3), palette, np.uint8))

def migrate(version, params):
    params = dict(params)
    if version.startswith("0.1."):
        params["palette"] = params.pop("colours")
    return params
'''

HEAVY = '''
"""A plugin that imports a heavy library at start-up and has a slow hook."""
import time
import scipy  # noqa: F401  (what the studio should flag)
from app.api import ToolSpec, hookimpl

@hookimpl
def studio_tools():
    time.sleep(0.3)
    return [ToolSpec(id="heavy-toy", title="Heavy", run="api12_ops:leaf")]
'''


@pytest.fixture
def env(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "api12_toy.py").write_text(TOY)
    (plugins / "api12_ops.py").write_text(OPS)
    (plugins / "heavy_toy.py").write_text(HEAVY)
    env = dict(os.environ)
    env.pop("IMPLICIT_STUDIO_NO_PLUGINS", None)
    env.update(IMPLICIT_STUDIO_PLUGINS_DIR=str(plugins), IMPLICIT_STUDIO_LOAD_PLUGINS="api12_toy,heavy_toy",
               IMPLICIT_STUDIO_CONFIG_DIR=str(tmp_path / "cfg"), IMPLICIT_STUDIO_DATA_DIR=str(tmp_path / "data"),
               IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log"),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def cli(env, *args, cwd=None):
    return subprocess.run([PYTHON, "-m", "app", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=180, cwd=cwd)


def _block(listing: str, plugin: str) -> str:
    """The lines of ``implicit-studio plugins`` about one plugin (its line and the indented ones)."""
    out, inside = [], False
    for line in listing.splitlines():
        if not line.startswith(" "):
            inside = line.split()[0] == plugin if line.split() else False
        if inside:
            out.append(line)
    return "\n".join(out)


def test_child_runs_are_listed_under_their_parent(env, tmp_path):
    s = tmp_path / "s"
    p = cli(env, "run", "sweep-toy", "--seeds", "3, 4", "--level", "9", "--session", s, "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert [c["tool"] for c in info["children"]] == ["leaf-toy", "leaf-toy"]
    assert info["seed"] is None  # seeded=False
    h = cli(env, "history", "--session", s)
    assert h.returncode == 0, h.stderr
    lines = h.stdout.splitlines()
    parent = next(i for i, ln in enumerate(lines) if "sweep-toy" in ln)
    children = lines[parent + 1:parent + 3]
    assert all("└ leaf-toy" in ln for ln in children), h.stdout
    assert [ln.split()[1] for ln in children] == [str(info["run_id"])] * 2  # the Parent column
    assert "(seed" not in lines[parent]  # no run-level seed shown for the sweep
    assert "(seed 3)" in children[0] and "(seed 4)" in children[1]


def test_cancel_keeps_partial_results_and_history_shows_them(env, tmp_path):
    s = tmp_path / "s"
    p = cli(env, "run", "sweep-toy", "--seeds", "1-4", "--stop-after", "2", "--session", s)
    assert p.returncode == 130, p.stderr
    assert "cancelled; 2 result(s) it kept are recorded" in p.stderr
    from storage import SessionStore

    with SessionStore.open(s) as store:
        (run,) = [r for r in store.list_runs() if r.tool_id == "sweep-toy"]
        assert run.status == "cancelled" and len(run.results) == 2


def test_list_and_required_parameters_on_the_command_line(env, tmp_path):
    p = cli(env, "run", "lists-toy", "--sizes", "1,2,10-12", "--no-session", "--json", "--prompt", "hello")
    assert p.returncode == 0, p.stderr
    t = cli(env, "tools", "lists-toy")
    assert "--prompt" in t.stdout and "text (required)" in t.stdout
    assert "int-list: 1, 2, 10-13 in [1, 64]" in t.stdout and "float-list" in t.stdout
    missing = cli(env, "run", "lists-toy", "--no-session")
    assert missing.returncode == 2 and "--prompt: Prompt: a value is required" in missing.stderr
    blank = cli(env, "run", "lists-toy", "--prompt", "  ", "--no-session")
    assert blank.returncode == 2 and "--prompt: Prompt: a value is required" in blank.stderr
    bad = cli(env, "run", "lists-toy", "--prompt", "x", "--sizes", "1,70", "--no-session")
    assert bad.returncode == 2 and "--sizes: Sizes: item 2 is 70, outside [1, 64]" in bad.stderr
    bad = cli(env, "run", "lists-toy", "--prompt", "x", "--scales", "1-2", "--no-session")
    assert bad.returncode == 2 and "a range of real numbers needs a step, e.g. 1-2:0.5" in bad.stderr


def test_run_time_errors_are_refused_and_remembered_for_the_next_session(env, tmp_path):
    meta = cli(env, "run", "bad-meta", "--no-session")
    assert meta.returncode == 1
    assert "metadata['handle'] of result 1 (image) is <object object at" in meta.stderr
    assert "(type object), which cannot be stored as JSON" in meta.stderr
    log_file = tmp_path / "log" / "implicit-studio.log"
    assert f"details are in the log file {log_file}" in meta.stderr
    prog = cli(env, "run", "bad-progress", "--no-session")
    assert prog.returncode == 1 and "ctx.progress(step, total, message): step must be a whole number, got str '3/10'" \
        in prog.stderr
    boom = cli(env, "run", "keyerror-toy", "--no-session")
    assert boom.returncode == 1 and "KeyError" in boom.stderr
    # the next session (a new process) still shows them
    listing = cli(env, "plugins")
    toy_lines = _block(listing.stdout, "api12_toy")
    assert "error in an earlier session:" in toy_lines and "KeyError: 'colours'" in toy_lines, listing.stdout
    data = json.loads(cli(env, "plugins", "--json").stdout)
    toy = next(r for r in data if r["name"] == "api12_toy")
    assert [e["what"] for e in toy["earlier_errors"]][-1] == "tool 'keyerror-toy'"


def test_start_up_costs_are_shown(env):
    data = {r["name"]: r for r in json.loads(cli(env, "plugins", "--json").stdout)}
    heavy = data["heavy_toy"]
    assert heavy["status"] == "loaded" and heavy["heavy_imports"] == ["scipy"]
    assert heavy["slow_hooks"] == ["studio_tools"] and heavy["hook_ms"]["studio_tools"] >= 300
    assert heavy["load_ms"] >= heavy["hook_ms"]["studio_tools"] + heavy["import_ms"] - 1  # hooks are in it
    text = cli(env, "plugins").stdout
    assert "slow start-up: its entry module imports scipy at start-up" in text
    assert "slow start-up: hook studio_tools took" in text


def test_inputs_are_recorded_as_absolute_paths_and_reproduce_elsewhere(env, tmp_path):
    from PIL import Image

    work = tmp_path / "work"
    work.mkdir()
    Image.fromarray(np.full((3, 3, 3), 7, np.uint8)).save(work / "in.png")
    (work / "notes.txt").write_text("x")
    s = tmp_path / "s"
    p = cli(env, "run", "inputs-toy", "--image", "in.png", "--notes", "notes.txt", "--session", s, "--json",
            "--out", "out", cwd=work)
    assert p.returncode == 0, p.stderr
    run_id = json.loads(p.stdout)["run_id"]
    from storage import SessionStore

    with SessionStore.open(s) as store:
        params = store.get_run(run_id).params
    assert params == {"image": str(work / "in.png"), "notes": str(work / "notes.txt")}
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = cli(env, "reproduce", run_id, "--session", s, cwd=other)
    assert r.returncode == 0, r.stderr
    # the --out PNG names the plugin (and its version) in its chunk, like the session's copy
    png = next((work / "out").glob("*.png"))
    with Image.open(png) as im:
        chunk = json.loads(im.text["implicit_studio"])
    assert chunk["plugin"] == "api12_toy" and chunk["plugin_version"] == "0.2.0"


def test_parameters_of_an_older_version_are_carried_forward(env, tmp_path):
    s = tmp_path / "s"
    from storage import SessionStore

    with SessionStore.open(s) as store:  # a run recorded by version 0.1.0, before the rename
        old = store.record_run(tool_id="renamed", plugin="api12_toy", plugin_version="0.1.0",
                               params={"colours": 3, "seed": 5, "legacy": True}, seed=5, device="cpu",
                               results=[])
    r = cli(env, "reproduce", old, "--session", s, "--json")
    info = json.loads(r.stdout)
    assert info["request"]["params"] == {"palette": 3} and info["request"]["seed"] == 5
    assert "legacy (recorded by api12_toy 0.1.0) cannot be used: api12_toy 0.2.0 of renamed has no such " \
           "parameter" in r.stderr
    # the window's Use goes through the same controller call
    from app.controller import RunController
    from app.plugins import PluginManager

    manager = PluginManager(env={k: v for k, v in env.items()}).load()
    carried = RunController(manager).restore("renamed", {"colours": 3, "seed": 5, "legacy": True}, seed=5,
                                             version="0.1.0")
    assert carried.values == {"palette": 3, "seed": 5}
    assert len(carried.notes) == 1 and carried.notes[0].startswith("legacy (recorded by api12_toy 0.1.0)")
    same = RunController(manager).restore("renamed", {"palette": 2, "seed": 1}, version="0.2.0")
    assert same.values == {"palette": 2, "seed": 1} and same.notes == []


def test_progress_arguments_are_checked_with_a_sentence():
    ctx = api.RunContext()
    with pytest.raises(TypeError, match=r"step must be a whole number, got str '3/10'"):
        ctx.progress("3/10", 10)
    with pytest.raises(ValueError, match="total must be 0 or more, got -1"):
        ctx.progress(1, -1)
    with pytest.raises(TypeError, match="message must be text"):
        ctx.progress(1, 2, 3)
    seen = []
    ctx = api.RunContext(on_progress=lambda *a: seen.append(a))
    ctx.progress(np.int64(2), 4.0, "ok")
    assert seen == [(2, 4, "ok")]


def test_required_and_list_parameters_validate():
    t = api.ToolSpec(id="t", title="T", run="m:f",
                     params=(api.TextParam(name="prompt", required=True),
                             api.SeedListParam(name="seeds", default="1-3")))
    with pytest.raises(api.ParamError, match="Prompt: a value is required") as err:
        t.validate({})
    assert err.value.param == "prompt"
    assert t.validate({"prompt": "x"})["seeds"] == (1, 2, 3)
    assert t.validate({"prompt": "x", "seeds": [5, "random"]})["seeds"] == (5, -1)
    assert api.IntListParam(name="n").format((1, 2, 3, 4, 7, 9, 10, 11)) == "1-4, 7, 9-11"
    with pytest.raises(ValueError, match="cannot be both optional and required"):
        api.ImageParam(name="image", optional=True, required=True)
    with pytest.raises(ValueError, match="cannot be seeded=False"):
        api.ToolSpec(id="x", title="X", run="m:f", seeded=False, params=(api.SeedParam(name="seed"),))
    with pytest.raises(TypeError, match="takes a Result or a list"):
        api.Cancelled(results="nope")


def test_a_required_text_needs_no_made_up_default(tmp_path):
    from app.testing import assert_plugin_conforms

    (tmp_path / "req_plugin.py").write_text(textwrap.dedent('''
        from app.api import TextParam, ToolSpec, hookimpl

        @hookimpl
        def studio_tools():
            return [ToolSpec(id="req-tool", title="Req", run="req_plugin:run",
                             params=(TextParam(name="prompt", required=True),
                                     TextParam(name="style", allow_empty=False)))]

        def run(ctx, prompt, style):
            return None
    '''))
    out = assert_plugin_conforms("req_plugin", env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
    assert out["tools"] == ["req-tool"]
