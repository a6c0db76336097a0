"""The Netpbm and NumPy readers, on files written by the tests."""

import numpy as np
import pytest

from app.api import ImageResult, MaskResult
from studio_colour_histogram.reader import parse_netpbm, read_netpbm, read_npy


def test_binary_ppm_round_trip(quadrants_ppm, quadrants):
    res = read_netpbm(str(quadrants_ppm))
    assert isinstance(res, ImageResult)
    assert np.array_equal(res.image, quadrants)
    assert res.metadata["format"] == "netpbm P6" and res.label == "quadrants"


def test_text_pgm_with_comments_and_other_maximum():
    data = b"P2\n# a comment\n3 2 # inline comment\n15\n0 5 10\n15 15 0\n"
    arr = parse_netpbm(data)
    assert arr.shape == (2, 3)
    assert arr.tolist() == [[0, 85, 170], [255, 255, 0]]


def test_text_ppm_and_sixteen_bit_binary_pgm():
    assert parse_netpbm(b"P3 1 1 255 1 2 3").tolist() == [[[1, 2, 3]]]
    body = np.array([[0, 65535], [32768, 257]], dtype=">u2").tobytes()
    arr = parse_netpbm(b"P5\n2 2\n65535\n" + body)
    assert arr.tolist() == [[0, 255], [128, 1]]


@pytest.mark.parametrize("data, message", [
    (b"P7\n1 1\n255\n\0", "not a Netpbm image"),
    (b"P6\n4 4\n255\n" + bytes(10), "truncated"),
    (b"P2\n2 2\n255\n1 2 3", "truncated"),
    (b"P2\n2 x\n255\n1 2 3 4", "non-numeric"),
    (b"P2\n1 1\n10\n11", "exceeds the maximum"),
    (b"P5\n1 1\n", "header ends early"),
])
def test_bad_netpbm_files_give_a_clear_error(data, message):
    with pytest.raises(ValueError, match=message):
        parse_netpbm(data)


def test_npy_arrays(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.save(tmp_path / "rgb.npy", rgb)
    assert np.array_equal(read_npy(str(tmp_path / "rgb.npy")).image, rgb)

    field = np.array([[-1.0, 0.0], [1.0, 3.0]])
    np.save(tmp_path / "field.npy", field)
    res = read_npy(str(tmp_path / "field.npy"))
    assert res.image[..., 0].tolist() == [[0, 64], [128, 255]]
    assert res.metadata["value_range"] == [-1.0, 3.0]

    np.save(tmp_path / "mask.npy", np.eye(3, dtype=bool))
    mask = read_npy(str(tmp_path / "mask.npy"))
    assert isinstance(mask, MaskResult) and mask.bool_mask.tolist() == np.eye(3, dtype=bool).tolist()


def test_npy_refuses_pickles_and_odd_shapes(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain NumPy array"):
        read_npy(str(tmp_path / "objects.npy"))
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="expected an HxW"):
        read_npy(str(tmp_path / "cube.npy"))
