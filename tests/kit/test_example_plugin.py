"""The example third-party plugin (examples/colour-histogram) as a user meets it: pip-installed
from its folder, found by the real plugin manager through its entry point, its tool run headless
by the console script, its reader opening a file, its viewer built by the window's registry."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DIST = "implicit-studio-colour-histogram"
PACKAGE = "studio_colour_histogram"

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def installed_example(kit):
    """The example installed (editable, no deps, no build isolation) for this module's tests and
    uninstalled afterwards, even when a test fails."""
    with kit.pip_installed(kit.example, DIST, import_paths=(PACKAGE,)):
        yield kit.example


@pytest.fixture
def picture(tmp_path) -> tuple[Path, np.ndarray]:
    """A 24x16 binary PPM: left half pure red, right half mid grey."""
    pixels = np.zeros((16, 24, 3), dtype=np.uint8)
    pixels[:, :12] = (255, 0, 0)
    pixels[:, 12:] = (128, 128, 128)
    path = tmp_path / "picture.ppm"
    path.write_bytes(b"P6\n24 16\n255\n" + pixels.tobytes())
    return path, pixels


def test_real_plugin_manager_discovers_it(installed_example, studio_env, monkeypatch):
    for key in ("IMPLICIT_STUDIO_NO_PLUGINS", "IMPLICIT_STUDIO_LOAD_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    from app.plugins import PluginManager
    from app.settings import Settings

    manager = PluginManager(Settings()).load()
    rec = manager.records["colour_histogram"]
    assert rec.ok, f"{rec.status}: {rec.error}\n{rec.traceback}"
    assert (rec.dist, rec.version, rec.builtin) == (DIST, "0.2.0", False)
    assert manager.tool("colour-histogram").plugin == "colour_histogram"
    assert {r.id for r in manager.readers if r.plugin == "colour_histogram"} == {"netpbm-image", "numpy-array-image"}
    assert [v.id for v in manager.viewers_for("table") if v.plugin == "colour_histogram"] == ["histogram-plot"]
    # registering it imported nothing heavy and none of the plugin's own compute/Qt modules
    assert not any(m in sys.modules for m in (f"{PACKAGE}.compute", f"{PACKAGE}.viewer", f"{PACKAGE}.reader"))


def test_headless_run_through_the_console_script(installed_example, kit, picture, tmp_path):
    path, _pixels = picture
    out, session = tmp_path / "out", tmp_path / "session"
    exe = Path(kit.python).with_name("implicit-studio")
    cmd = [str(exe)] if exe.exists() else [kit.python, "-m", "app"]
    proc = subprocess.run(cmd + ["run", "colour-histogram", "--image", str(path), "--bins", "4",
                                 "--out", str(out), "--session", str(session), "--json"],
                          capture_output=True, text=True, timeout=120,
                          env=kit.env(IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log")))
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "finished" and outcome["run_id"] is not None
    assert [r["kind"] for r in outcome["results"]] == ["table", "image"]
    (table_file,) = out.glob("*.csv")
    with table_file.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["bin_start", "bin_end", "red", "green", "blue"]
    # red: 192 pixels at 255 (last bin) and 192 grey pixels at 128 (third bin)
    assert [int(r[2]) for r in rows[1:]] == [0, 0, 192, 192]
    assert [int(r[3]) for r in rows[1:]] == [192, 0, 192, 0]
    assert len(list(out.glob("*.png"))) == 1
    assert session.exists()


def test_reader_opens_a_file_through_the_manager(installed_example, studio_manager, picture):
    path, pixels = picture
    (result,) = studio_manager.read_file(path)
    assert result.kind == "image" and np.array_equal(result.image, pixels)
    assert result.metadata["format"] == "netpbm P6"


def test_viewer_widget_builds_offscreen_from_the_window_registry(installed_example, studio_manager, qtbot):
    from app.api import ImageResult, RunContext, load_ref
    from app.ui.viewers import ViewerRegistry

    registry = ViewerRegistry()
    for spec in studio_manager.viewers:
        registry.add_spec(spec)
    widget, entry, error = registry.create("table")
    qtbot.addWidget(widget)
    assert error == "" and entry is not None and entry.id == "histogram-plot"
    compute = load_ref(f"{PACKAGE}.compute:run")
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    table, _plot = compute(RunContext(), ImageResult(image=pixels), bins=8)
    widget.set_result(table)
    widget.resize(400, 300)
    widget.show()
    qtbot.waitExposed(widget)
    assert widget.mode == "plot" and set(widget.curves) == {"red", "green", "blue"}
    assert not widget.grab().isNull()


def test_the_examples_own_test_suite_passes(installed_example, kit):
    """The example's own tests (examples/colour-histogram/tests) run in the project's test
    command, the way its author runs them: ``python -m pytest`` in its folder, with the plugin
    installed and the studio's pytest fixtures (app.testing) available."""
    kit.run_own_tests(installed_example, min_passed=10)


def test_viewer_replaces_only_the_plain_table_viewer(installed_example, studio_manager):
    """It may stand in for the studio's plain table viewer (it shows other tables as tables),
    but another plugin's table viewer of default priority is preferred to it."""
    from app.api import ViewerSpec
    from app.ui.viewers import ViewerRegistry

    registry = ViewerRegistry()
    for spec in studio_manager.viewers:
        registry.add_spec(spec)
    ids = [e.id for e in registry.entries("table")]
    assert ids.index("histogram-plot") < ids.index("builtin-table"), ids
    registry.add_spec(ViewerSpec(id="other-table", title="Another plugin's table", kind="table",
                                 widget="app.ui.viewers:TableResultViewer", plugin="other"))
    assert registry.entries("table")[0].id == "other-table"
