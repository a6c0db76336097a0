"""The contact sheet on its own: plain numpy, no studio."""

import numpy as np
import pytest

from studio_seed_sweep.compute import BACKGROUND, EMPTY, GAP, MARGIN_LEFT, MARGIN_TOP, contact_sheet


def solid(value, h=40, w=60):
    return np.full((h, w, 3), value, np.uint8)


def test_cells_are_placed_by_guidance_row_and_seed_column():
    pictures = {(1.0, 5): solid(10), (1.0, 6): solid(20), (7.5, 5): solid(30), (7.5, 6): solid(40)}
    sheet = contact_sheet(pictures, [1.0, 7.5], [5, 6], cell_size=30, captions=False)
    # cells keep the pictures' aspect (60x40 -> 30x20) with a gap around each
    assert sheet.shape == (GAP + 2 * (20 + GAP), GAP + 2 * (30 + GAP), 3)
    centre = lambda row, col: tuple(sheet[GAP + row * (20 + GAP) + 10, GAP + col * (30 + GAP) + 15])  # noqa: E731
    assert [centre(0, 0), centre(0, 1), centre(1, 0), centre(1, 1)] == [(10,) * 3, (20,) * 3, (30,) * 3, (40,) * 3]
    assert tuple(sheet[0, 0]) == BACKGROUND


def test_a_missing_cell_is_grey_and_captions_make_room():
    sheet = contact_sheet({(3.0, 1): solid(200)}, [3.0], [1, 2], cell_size=60, captions=True)
    assert sheet.shape == (MARGIN_TOP + GAP + 40 + GAP, MARGIN_LEFT + GAP + 2 * (60 + GAP), 3)
    y = MARGIN_TOP + GAP + 20
    assert tuple(sheet[y, MARGIN_LEFT + GAP + 30]) == (200,) * 3
    assert tuple(sheet[y, MARGIN_LEFT + GAP + 60 + GAP + 30]) == EMPTY
    assert (sheet[:MARGIN_TOP] != BACKGROUND).any()  # the seeds are written above the columns


def test_small_pictures_are_not_enlarged_and_empty_axes_are_refused():
    sheet = contact_sheet({(1.0, 1): solid(9, 8, 8)}, [1.0], [1], cell_size=256, captions=False)
    assert sheet.shape == (8 + 2 * GAP, 8 + 2 * GAP, 3)
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet({}, [], [1])
