"""The computation on its own: no studio, no Qt, a plain RunContext."""

import numpy as np
import pytest

from app.api import Cancelled, ImageResult, RunContext, TableResult, ToolError
from studio_colour_histogram import compute


def test_counts_per_channel_are_exact(quadrants):
    edges, counts = compute.channel_histograms(quadrants, 4, ["red", "green", "blue"])
    assert edges.tolist() == [0, 64, 128, 192, 256]
    # red is 255 in the red and white quadrants (200 px) and 0 elsewhere (200 px)
    for ch in ("red", "green", "blue"):
        assert counts[ch].tolist() == [200, 0, 0, 200]


def test_luma_uses_bt601_weights(quadrants):
    values = compute.channel_values(quadrants, "luma")
    assert sorted(set(values.tolist())) == [29, 76, 150, 255]  # blue, red, green, white


def test_transparent_pixels_are_not_counted():
    img = np.zeros((2, 2, 4), dtype=np.uint8)
    img[..., 3] = 255
    img[0, 0] = (10, 20, 30, 255)
    img[1, 1] = (200, 200, 200, 0)  # invisible
    _, counts = compute.channel_histograms(img, 256, ["red"])
    assert counts["red"].sum() == 3 and counts["red"][10] == 1 and counts["red"][200] == 0


def test_bad_bins_and_channels_are_refused(quadrants):
    with pytest.raises(ValueError, match="bins must be between"):
        compute.channel_histograms(quadrants, 0, ["red"])
    with pytest.raises(ValueError, match="unknown channel"):
        compute.channel_values(quadrants, "purple")


def test_plot_draws_each_channel_in_its_colour(quadrants):
    def colour_pixels(plot):
        flat = plot.reshape(-1, 3).astype(int)
        reddish = ((flat[:, 0] > 180) & (flat[:, 1] < 120) & (flat[:, 2] < 120)).sum()
        bluish = ((flat[:, 2] > 180) & (flat[:, 0] < 120)).sum()
        return reddish, bluish

    edges, counts = compute.channel_histograms(quadrants, 8, ["red", "blue"])
    red_plot = compute.render_plot(edges, {"red": counts["red"]}, width=200, height=100)
    blue_plot = compute.render_plot(edges, {"blue": counts["blue"]}, width=200, height=100)
    assert red_plot.shape == (100, 200, 3) and red_plot.dtype == np.uint8
    reddish, bluish = colour_pixels(red_plot)
    assert reddish > 20 and bluish == 0
    reddish, bluish = colour_pixels(blue_plot)
    assert bluish > 20 and reddish == 0
    # an empty histogram still gives a plot (just the grid)
    empty = compute.render_plot(edges, {"red": np.zeros(8, dtype=int)}, width=64, height=64)
    assert empty.shape == (64, 64, 3)


def test_run_returns_table_and_plot_and_reports_progress(quadrants):
    seen = []
    ctx = RunContext(on_progress=lambda step, total, msg: seen.append((step, total)))
    table, plot = compute.run(ctx, ImageResult(image=quadrants), bins=16, channels="rgb+luma")
    assert isinstance(table, TableResult) and isinstance(plot, ImageResult)
    assert table.columns == ("bin_start", "bin_end", "red", "green", "blue", "luma")
    assert len(table.rows) == 16 and sum(r[2] for r in table.rows) == 400
    assert table.metadata["role"] == "colour-histogram" and table.metadata["pixels"] == 400
    # red: 200 pixels in the first bin (centre 8), 200 in the last (centre 248)
    assert table.metadata["stats"]["red"] == {"mean": 128.0, "std": 120.0}
    assert seen[-1] == (5, 5) and seen[0] == (0, 5)


def test_run_stops_when_cancelled(quadrants):
    ctx = RunContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        compute.run(ctx, ImageResult(image=quadrants))


def test_fully_transparent_image_is_a_user_error():
    img = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ToolError, match="no visible pixels"):
        compute.run(RunContext(), ImageResult(image=img))
