"""The composing example (examples/seed-sweep) as a user meets it: pip-installed from its folder, its
tool run by the real console script, where it calls ``ctx.run_tool("text-to-image", prompt=...,
seed=..., steps=...)`` and gets the pictures back, and ``implicit-studio history`` lists those
text-to-image runs under the sweep (issue 26, "Done when"). Its own test suite passes too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

DIST = "implicit-studio-seed-sweep"
PACKAGE = "studio_seed_sweep"

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def installed_sweep(kit):
    project = kit.repo / "examples" / "seed-sweep"
    with kit.pip_installed(project, DIST, import_paths=(PACKAGE,)):
        yield project


def _cli(kit) -> list[str]:
    exe = Path(kit.python).with_name("implicit-studio")
    return [str(exe)] if exe.exists() else [kit.python, "-m", "app"]


def test_a_third_party_tool_runs_text_to_image_and_history_shows_the_children(installed_sweep, kit, tmp_path):
    session, out = tmp_path / "session", tmp_path / "out"
    env = kit.env(IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log"), IMPLICIT_STUDIO_DATA_DIR=str(tmp_path / "data"),
                  IMPLICIT_STUDIO_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.run(_cli(kit) + ["run", "seed-guidance-sweep", "--prompt", "a red circle", "--seeds", "3,4",
                                       "--guidance", "5", "--steps", "2", "--cell-size", "64", "--session",
                                       str(session), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "finished" and outcome["seed"] is None
    assert [r["kind"] for r in outcome["results"]] == ["image", "table"]
    assert [(c["tool"], c["status"]) for c in outcome["children"]] == [("text-to-image", "finished")] * 2
    child_ids = [c["run_id"] for c in outcome["children"]]

    history = subprocess.run(_cli(kit) + ["history", "--session", str(session)], capture_output=True, text=True,
                             timeout=120, env=env)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    top = next(i for i, ln in enumerate(lines) if "seed-guidance-sweep" in ln)
    assert lines[top].split()[0] == str(outcome["run_id"])
    below = [ln.split() for ln in lines[top + 1:top + 3]]
    # ID, Parent, Status, "└", tool: each picture is a run of its own under the sweep
    assert [row[:5] for row in below] == [[str(cid), str(outcome["run_id"]), "ok", "└", "text-to-image"]
                                          for cid in child_ids], history.stdout
    assert "(seed 3)" in lines[top + 1] and "(seed 4)" in lines[top + 2]
    assert "(seed" not in lines[top]

    # each text-to-image run got its picture back to the sweep: the sheet holds two of them
    from PIL import Image

    (sheet_file,) = out.glob("*.png")
    with Image.open(sheet_file) as im:
        chunk = json.loads(im.text["implicit_studio"])
        assert im.width > 2 * 32
    assert chunk["plugin"] == "seed_sweep" and chunk["tool_id"] == "seed-guidance-sweep"
    assert chunk["params"]["seeds"] == [3, 4] and chunk["params"]["guidance"] == [5.0]


def test_the_sweeps_own_test_suite_passes(installed_sweep, kit):
    kit.run_own_tests(installed_sweep, min_passed=10)
