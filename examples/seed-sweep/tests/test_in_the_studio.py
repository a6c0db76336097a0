"""The sweep in the studio: the real text-to-image tool with the bundled model, each picture a
child run of the sweep; the entry module conforms; the command line shows the runs as a tree."""

import numpy as np

from app.testing import assert_plugin_conforms


def test_entry_module_is_cheap_and_references_resolve():
    out = assert_plugin_conforms("studio_seed_sweep.plugin")
    assert out["tools"] == ["seed-guidance-sweep"]


def test_each_picture_is_a_child_run_of_the_sweep(run_tool):
    sheet, table = run_tool("seed-guidance-sweep", prompt="a red circle", seeds="7, 8", guidance="4", steps=2,
                            cell_size=64)
    assert sheet.kind == "image" and sheet.label == "contact sheet"
    assert [(g, s) for g, s, _m, _sd in table.rows] == [(4.0, 7), (4.0, 8)]
    session, job = run_tool.session, run_tool.last_job
    children = session.children(job.run_id)
    assert [(c.tool_id, c.seed, c.params["guidance"], c.params["steps"]) for c in children] == [
        ("text-to-image", 7, 4.0, 2), ("text-to-image", 8, 4.0, 2)]
    assert all(c.status == "ok" and c.results[0].kind == "image" for c in children)
    assert session.get_run(job.run_id).seed is None  # the sweep has no seed of its own
    # two different seeds made two different pictures
    assert not np.array_equal(*(job.children[i].results[0].image for i in range(2)))


def test_command_line_history_shows_the_tree(studio_cli, tmp_path):
    session = tmp_path / "session"
    ran = studio_cli("run", "seed-guidance-sweep", "--prompt", "a blue square", "--seeds", "1", "--guidance", "3",
                     "--steps", "1", "--session", session)
    assert ran.exit_code == 0, ran.stderr
    history = studio_cli("history", "--session", session)
    lines = [ln for ln in history.stdout.splitlines() if "seed-guidance-sweep" in ln or "text-to-image" in ln]
    assert "seed-guidance-sweep" in lines[0] and "└ text-to-image" in lines[1], history.stdout
    missing = studio_cli("run", "seed-guidance-sweep", "--no-session")
    assert missing.exit_code == 2 and "--prompt: Prompt: a value is required" in missing.stderr
