"""The inpainting evaluation of the lab (python -m lab.inpaint_eval)."""

import json

import numpy as np


def test_evaluate_smoke(tmp_path, capsys):
    from lab import inpaint_eval as evaluate

    out = tmp_path / "r.json"
    assert evaluate.main(["--smoke", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"copaint", "copaint-tt", "repaint", "blend"}
    for entry in res["methods"].values():
        assert entry["all"]["n"] == 3
        assert entry["all"]["seconds"] > 0
    assert "| copaint |" in capsys.readouterr().out


def test_masks_and_seam_error():
    from lab.inpaint_eval import make_mask, seam_error

    rng = np.random.default_rng(0)
    obj = np.zeros((64, 64), bool)
    obj[10:20, 40:50] = True
    box = make_mask("box", obj, (0, 2), rng)
    assert box[obj].all() and box.sum() < 64 * 64 / 4
    half = make_mask("half", obj, (0, 2), rng)
    assert half[:, 32:].all() and not half[:, :32].any()
    strokes = make_mask("strokes", obj, (0, 2), rng)
    assert 0 < strokes.sum() < 64 * 64 / 2
    truth = np.full((16, 16, 3), 100, np.uint8)
    m = np.zeros((16, 16), bool)
    m[4:12, 4:12] = True
    assert seam_error(truth, truth, m) == 0
    bad = truth.copy()
    bad[m] = 160
    assert seam_error(bad, truth, m) == 60
