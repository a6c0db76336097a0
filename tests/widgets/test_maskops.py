"""The mask document behind the canvas (no Qt)."""

import numpy as np
import pytest

from app.widgets.maskops import MaskDocument, brush_falloff, load_mask_file, resize_mask


def test_brush_hardness_and_eraser():
    d = MaskDocument(40, 30)
    d.stroke([(10, 10), (30, 10)], radius=4, hardness=1.0)
    m = d.mask
    assert m[10, 20] == 1.0 and m[10, 5] == 0.0 and m[20, 20] == 0.0
    soft = MaskDocument(40, 30)
    soft.stroke([(20, 15)], radius=8, hardness=0.0)
    assert 0 < soft.mask[15, 25] < 1 and soft.mask[15, 20] > soft.mask[15, 25]
    d.stroke([(20, 10)], radius=3, erase=True)
    assert d.mask[10, 20] == 0.0 and d.mask[10, 12] == 1.0
    assert brush_falloff(np.array([0.0, 5.0, 10.0]), 10, 0.5).tolist() == [1.0, 1.0, 0.0]


def test_rect_lasso_invert_grow_shrink_feather():
    d = MaskDocument(32, 32)
    d.rect(4, 4, 12, 12)
    assert d.as_bool().sum() == 64
    n = d.as_bool().sum()
    d.grow(2)
    grown = d.as_bool().sum()
    assert grown > n and d.as_bool()[2, 8] and not d.as_bool()[1, 8]
    d.shrink(2)
    assert d.as_bool().sum() == n  # a box away from the border comes back exactly
    d.shrink(1)
    assert d.as_bool().sum() == 36
    d.lasso([(20, 20), (30, 20), (30, 30), (20, 30)])
    assert d.as_bool()[25, 25] and not d.as_bool()[16, 16]
    d.feather(3)
    assert 0 < d.mask[8, 3] < 1
    d.invert()
    assert d.mask[0, 0] > 0.99 and d.mask[8, 8] < 0.5


def test_undo_redo_and_json_roundtrip():
    d = MaskDocument(16, 16)
    d.rect(0, 0, 8, 8)
    a = d.mask.copy()
    d.stroke([(12, 12)], radius=2)
    b = d.mask.copy()
    assert d.undo() and np.array_equal(d.mask, a)
    assert d.redo() and np.array_equal(d.mask, b)
    assert d.undo() and d.undo() and d.mask.sum() == 0 and not d.undo()
    d.redo()
    d.invert()  # a new operation clears the redo stack
    assert not d.can_redo
    d.set_mask(np.eye(16, dtype=bool))
    e = MaskDocument.from_json(d.to_json())
    assert np.allclose(e.mask, d.mask, atol=1 / 255) and len(e.ops) == len(d.ops)


def test_png_load_save_and_resize(tmp_path):
    from PIL import Image

    d = MaskDocument(20, 10)
    d.rect(2, 2, 8, 8)
    p = tmp_path / "m.png"
    d.save_png(p)
    arr, same = load_mask_file(p, (20, 10))
    assert same and np.array_equal(arr >= 0.5, d.as_bool())
    arr, same = load_mask_file(p, (40, 20))
    assert not same
    assert resize_mask(arr, (40, 20)).shape == (20, 40)
    bad = tmp_path / "x.png"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="not an image"):
        load_mask_file(bad, (20, 10))
    with pytest.raises(ValueError, match="is 40x20 but the image is 20x10"):
        d.set_mask(np.zeros((20, 40)))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "z.png")
