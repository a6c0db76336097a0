"""Test set-up for the colour-histogram plugin.

The fixtures ``studio_manager``, ``run_tool``, ``studio_cli``, ``studio_session`` (from
``app.testing``) and ``make_studio_window`` (the real main window, from ``app.testing_kit``) come
from Implicit Studio's pytest plugins, loaded automatically once the app is installed: nothing
to import. No Qt work-around is needed either: Implicit Studio's own requirements leave out the
PySide6 release that crashed on Python 3.11 (6.12.0), so a plugin inherits a working Qt.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no screen needed
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
