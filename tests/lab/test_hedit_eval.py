"""The h-Edit evaluation of the lab (python -m lab.hedit_eval)."""

import json


def test_evaluate_smoke(tmp_path, capsys):
    from lab import hedit_eval as evaluate

    out = tmp_path / "r.json"
    assert evaluate.main(["--smoke", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"h-edit-explicit", "h-edit-implicit", "baseline-ef", "baseline-ddim"}
    for s in res["methods"].values():
        assert s["edits"] == 2 and s["null_edits"] == 1
        assert 0.0 <= s["success"] <= 1.0
        assert s["first_edit_s"] > 0 and s["cached_edit_s"] > 0
    assert "| h-edit-implicit |" in capsys.readouterr().out


def test_psnr_and_object_mask():
    import numpy as np

    from lab.hedit_eval import object_mask, psnr

    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == 99.0
    b = a.copy()
    b[0, 0] = 255
    assert abs(psnr(a, b) - 10 * np.log10(64)) < 1e-6  # one of 64 pixels fully wrong
    img = np.full((8, 8, 3), 245, np.uint8)
    img[2:4, 2:4] = (220, 30, 30)
    m = object_mask(img, "red", "white")
    assert m.sum() == 4 and m[2, 2]


def test_rendered_sources_and_edits():
    import numpy as np

    from lab.default_model.shapes import make_sample
    from lab.hedit_eval import generate_sources, make_edits

    src = generate_sources(None, 3, 0, 100, False, lambda *a: None, source="rendered")
    assert len(src) == 3 and np.array_equal(src[0]["image"], make_sample(100, two_prob=0.0, eval_wording=True).image)
    edits = make_edits(src, n_null=1)
    assert [e["kind"] for e in edits] == ["colour", "shape", "null", "colour", "shape", "colour", "shape"]
    for e in edits:
        s = src[e["src"]]
        if e["kind"] == "colour":
            assert e["colour"] != s["obj"].colour and e["colour"] in e["target"] and e["colour"] != s["background"]
        elif e["kind"] == "shape":
            assert e["shape"] != s["obj"].shape and e["shape"] in e["target"]
        else:
            assert e["target"] == s["caption"]
