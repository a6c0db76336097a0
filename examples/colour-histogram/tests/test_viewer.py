"""The pyqtgraph viewer, alone and inside the real main window (offscreen)."""

import numpy as np

from app.api import ImageResult, RunContext, TableResult
from app.testing_kit import run_in_window
from studio_colour_histogram import compute
from studio_colour_histogram.viewer import HistogramViewer


def _histogram(quadrants) -> TableResult:
    table, _plot = compute.run(RunContext(), ImageResult(image=quadrants), bins=8, channels="rgb+luma")
    return table


def test_viewer_plots_one_step_curve_per_channel(qtbot, quadrants):
    viewer = HistogramViewer()
    qtbot.addWidget(viewer)
    viewer.set_result(_histogram(quadrants))
    assert viewer.mode == "plot"
    assert list(viewer.curves) == ["red", "green", "blue", "luma"]
    x, y = viewer.curves["red"].getData()
    assert len(x) == 9 and len(y) == 8  # bin edges and counts (step mode)
    assert y[0] == 200 and y[-1] == 200
    viewer.log_box.setChecked(True)
    _x, y = viewer.curves["red"].getData()
    assert np.isclose(y[0], np.log1p(200))
    assert "red: mean" in viewer.summary.text()


def test_other_tables_are_shown_as_tables(qtbot):
    viewer = HistogramViewer()
    qtbot.addWidget(viewer)
    viewer.set_result(TableResult(columns=("metric", "value"), rows=[("psnr", 31.5)]))
    assert viewer.mode == "table"
    assert viewer.table.rowCount() == 1 and viewer.table.item(0, 1).text() == "31.5"


def test_in_the_window_a_run_shows_the_histogram_viewer(make_studio_window, qtbot, quadrants_ppm):
    window = make_studio_window()
    outcome = run_in_window(qtbot, window, "colour-histogram", image=str(quadrants_ppm), bins=16)
    assert outcome.status == "ok", outcome.error
    assert outcome.result.kind == "table"
    shown = window.result_area.current_viewer()
    assert isinstance(shown, HistogramViewer) and shown.mode == "plot"
    assert set(shown.curves) == {"red", "green", "blue"}


def test_in_the_window_a_dropped_ppm_opens_through_the_reader(make_studio_window, quadrants_ppm, quadrants):
    window = make_studio_window()
    assert window.open_path(quadrants_ppm)
    assert np.array_equal(window.result_area.current_result.image, quadrants)
