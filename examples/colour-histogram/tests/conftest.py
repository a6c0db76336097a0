"""Test set-up for the colour-histogram plugin.

The fixtures ``studio_manager``, ``run_tool``, ``studio_cli``, ``studio_session`` come from
Implicit Studio's pytest plugin (``app.testing``), loaded automatically once the app is
installed. ``make_studio_window`` (the real main window) is imported from ``app.testing_kit``.
"""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no screen needed
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if sys.version_info < (3, 12):
    # Work-around for PySide6 6.12 (abi3 wheel) on Python 3.11: each call of a Qt method that
    # returns nothing drops a reference to None (and pyqtgraph painting drops references to
    # True/False), so a process that paints a while aborts with "deallocating None/True".
    # Python 3.12+ makes these objects immortal; here we emulate that for the test process.
    # (Remove once the app applies the same guard itself or requires Python >= 3.12.)
    import ctypes

    for _singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(_singleton)).value += 1 << 40

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app.testing_kit import make_studio_window  # noqa: E402,F401  (makes the fixture available)


def write_ppm(path, pixels: np.ndarray) -> None:
    """A binary P6 file with a comment in the header."""
    h, w = pixels.shape[:2]
    path.write_bytes(b"P6\n# written by the tests\n%d %d\n255\n" % (w, h) + pixels.astype(np.uint8).tobytes())


@pytest.fixture
def quadrants() -> np.ndarray:
    """A 20x20 image: red, green, blue and white quadrants of 100 pixels each."""
    img = np.zeros((20, 20, 3), dtype=np.uint8)
    img[:10, :10] = (255, 0, 0)
    img[:10, 10:] = (0, 255, 0)
    img[10:, :10] = (0, 0, 255)
    img[10:, 10:] = (255, 255, 255)
    return img


@pytest.fixture
def quadrants_ppm(tmp_path, quadrants):
    path = tmp_path / "quadrants.ppm"
    write_ppm(path, quadrants)
    return path
