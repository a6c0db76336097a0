"""Batch plans: TOML in, items with stable keys out; every kind of axis; clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import api
from app.batch.plan import BatchPlan, PlanError, build_plan, grid_axes, load_plan, parse_plan

SMALLEST = '''
tool = "text-to-image"
[params]
prompt = "a red circle in the center on a white background"
steps = 5
[sweep]
seed = [1, 2, 3, 4]
guidance = [3.0, 7.0]
'''

TOY = api.ToolSpec(id="toy", title="Toy", run="x:y", params=(
    api.TextParam(name="prompt", default=""),
    api.IntParam(name="steps", default=5, min=1, max=100),
    api.FloatParam(name="guidance", default=5.0, min=0.0, max=30.0),
    api.SeedParam(name="seed"),
    api.ImageParam(name="image", optional=True),
))


def test_the_issues_smallest_plan_reads_verbatim():
    plan = parse_plan(SMALLEST)
    assert plan.tool == "text-to-image" and plan.count == 8
    items = plan.check(TOY.__class__(**{**TOY.__dict__, "id": "text-to-image"}))
    assert [i.key for i in items[:3]] == ["seed=1,guidance=3", "seed=1,guidance=7", "seed=2,guidance=3"]
    assert items[1].params == {"prompt": "a red circle in the center on a white background", "steps": 5,
                               "seed": 1, "guidance": 7.0}
    assert len({i.key for i in items}) == 8
    # the keys are stable: the same plan gives the same keys, and they survive the stored record
    again = BatchPlan.from_dict(plan.to_dict()).items()
    assert [i.key for i in again] == [i.key for i in items]
    assert [i.params for i in again] == [i.params for i in items]


def test_ranges_seed_lists_and_linspace():
    plan = build_plan({"tool": "toy", "sweep": {
        "steps": {"start": 10, "stop": 30, "step": 10},
        "guidance": {"start": 0.1, "stop": 0.3, "step": 0.1},
        "seed": {"seeds": 3, "start": 100}}})
    assert plan.axis("steps").values == (10, 20, 30)
    assert plan.axis("guidance").values == (0.1, 0.2, 0.3)  # no 0.30000000000000004, stop included
    assert plan.axis("seed").values == (100, 101, 102)
    assert plan.count == 27
    lin = build_plan({"tool": "toy", "sweep": {"guidance": {"start": 0.0, "stop": 1.0, "num": 5}}})
    assert lin.axis("guidance").values == (0.0, 0.25, 0.5, 0.75, 1.0)


def test_files_folder_and_csv_rows(tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("b.png", "a.png", "notes.txt"):
        (inputs / name).write_bytes(b"x")
    (tmp_path / "rows.csv").write_text("prompt,steps\nred,3\nblue,4\n", encoding="utf-8")
    (tmp_path / "plan.toml").write_text(
        'tool = "toy"\nrows = "rows.csv"\n[sweep]\nimage = { folder = "inputs" }\n', encoding="utf-8")
    plan = load_plan(tmp_path / "plan.toml")
    assert plan.axis("image").labels == ("a.png", "b.png")  # images only, sorted
    items = plan.check(TOY)
    assert [i.key for i in items] == ["image=a.png,row=1", "image=a.png,row=2", "image=b.png,row=1", "image=b.png,row=2"]
    assert items[1].params["prompt"] == "blue" and items[1].params["steps"] == 4
    assert items[1].params["image"] == str((inputs / "a.png").resolve())
    globbed = build_plan({"tool": "toy", "sweep": {"image": {"files": "inputs/*.txt"}}}, tmp_path)
    assert globbed.axis("image").labels == ("notes.txt",)


@pytest.mark.parametrize("data, message", [
    ({}, "needs a tool"),
    ({"tool": "toy", "sweeps": {}}, "unknown key 'sweeps'"),
    ({"tool": "toy", "sweep": {"seed": []}}, "empty"),
    ({"tool": "toy", "sweep": {"seed": 3}}, "give a list of values"),
    ({"tool": "toy", "sweep": {"steps": {"start": 1, "stop": 5}}}, "either step or num"),
    ({"tool": "toy", "sweep": {"steps": {"start": 5, "stop": 1, "step": 1}}}, "never goes from 5 to 1"),
    ({"tool": "toy", "sweep": {"seed": {"seeds": 0}}}, "seeds >= 1"),
    ({"tool": "toy", "sweep": {"image": {"files": "nothing/*.png"}}}, "no files matching"),
    ({"tool": "toy", "params": {"seed": 1}, "sweep": {"seed": [1, 2]}}, "both a fixed parameter and a swept one"),
    ({"tool": "toy", "sweep": {"steps": {"start": 0, "stop": 10**9, "step": 1}}}, "at most"),
])
def test_bad_plans_get_a_sentence(data, message, tmp_path):
    with pytest.raises(PlanError, match=message):
        build_plan(data, tmp_path)


def test_check_names_the_unknown_parameter_and_the_bad_item():
    with pytest.raises(PlanError, match="no parameter 'guidnace'.*its parameters: prompt, steps"):
        build_plan({"tool": "toy", "sweep": {"guidnace": [1.0]}}).check(TOY)
    with pytest.raises(PlanError, match="item steps=500: Steps"):
        build_plan({"tool": "toy", "sweep": {"steps": [5, 500]}}).check(TOY)
    with pytest.raises(PlanError, match="Guidance"):
        build_plan({"tool": "toy", "params": {"guidance": "high"}}).check(TOY)


def test_toml_round_trip_and_grid_axes():
    plan = parse_plan(SMALLEST)
    back = parse_plan(plan.to_toml())
    assert back.to_dict() == plan.to_dict()
    down, across = grid_axes(plan)
    assert across.name == "seed" and down.name == "guidance"  # seeds across, the other axis down


def test_cli_refuses_a_bad_plan_with_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('tool = "text-to-image"\n[sweep]\nguidnace = [1.0]\n', encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text('tool = "text-to-image"\n[sweep\n', encoding="utf-8")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('tool = "no-such-tool"\n', encoding="utf-8")
    for path, message in ((bad, "no parameter 'guidnace'"), (broken, "not valid TOML"),
                          (unknown, "no-such-tool")):
        r = subprocess.run([sys.executable, "-m", "app", "batch", str(path), "--dry-run"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
