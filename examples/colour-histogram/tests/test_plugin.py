"""The plugin inside the studio: discovery, conformance, runs recorded in a session, the CLI,
the readers through the plugin manager. Uses the fixtures of Implicit Studio's pytest plugin."""

import csv

import numpy as np

from app.api import ImageResult, TableResult
from app.testing import assert_plugin_conforms, heavy_modules_loaded


def test_entry_module_is_cheap_and_every_reference_resolves():
    out = assert_plugin_conforms("studio_colour_histogram.plugin")
    assert out["tools"] == ["colour-histogram"]
    assert out["qt_refs"] == ["studio_colour_histogram.viewer:HistogramViewer"]


def test_discovered_through_its_entry_point(studio_manager):
    rec = studio_manager.records["colour_histogram"]
    assert rec.ok, rec.error
    assert rec.dist == "implicit-studio-colour-histogram" and rec.version == "0.2.0"
    assert rec.tools == ["colour-histogram"]
    assert [r.id for r in studio_manager.readers_for("x.PPM")] == ["netpbm-image"]
    assert [v.id for v in studio_manager.viewers_for("table") if v.plugin == "colour_histogram"] == ["histogram-plot"]
    assert not heavy_modules_loaded()


def test_run_is_recorded_in_the_session(run_tool, studio_session, quadrants_ppm):
    table, plot = run_tool("colour-histogram", image=str(quadrants_ppm), bins=4)
    assert isinstance(table, TableResult) and isinstance(plot, ImageResult)
    assert [r[2] for r in table.rows] == [200, 0, 0, 200]
    job = run_tool.last_job
    assert job.run_id is not None and len(job.result_ids) == 2
    assert job.recorded_params["bins"] == 4 and job.recorded_params["image"] == str(quadrants_ppm)


def test_bad_parameter_is_refused_before_running(studio_cli, tmp_path, quadrants_ppm):
    res = studio_cli("run", "colour-histogram", "--image", quadrants_ppm, "--bins", "1", "--no-session")
    assert res.exit_code == 2
    assert "--bins" in res.stderr and "between 2 and 256" in res.stderr


def test_headless_cli_run_writes_files(studio_cli, tmp_path, quadrants_ppm):
    out, session = tmp_path / "out", tmp_path / "session"
    res = studio_cli("run", "colour-histogram", "--image", quadrants_ppm, "--bins", "8",
                     "--channels", "luma", "--out", out, "--session", session)
    assert res.exit_code == 0, res.stderr
    csv_files, png_files = sorted(out.glob("*.csv")), sorted(out.glob("*.png"))
    assert len(csv_files) == 1 and len(png_files) == 1
    with csv_files[0].open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["bin_start", "bin_end", "luma"] and len(rows) == 9
    assert sum(int(r[2]) for r in rows[1:]) == 400
    history = studio_cli("history", "--session", session)
    assert history.exit_code == 0 and "colour-histogram" in history.stdout


def test_manager_opens_netpbm_and_npy_files(studio_manager, quadrants_ppm, quadrants, tmp_path):
    (res,) = studio_manager.read_file(quadrants_ppm)
    assert np.array_equal(res.image, quadrants)
    np.save(tmp_path / "a.npy", quadrants)
    (res,) = studio_manager.read_file(tmp_path / "a.npy")
    assert np.array_equal(res.image, quadrants)
