"""The evaluations as batch plans (issue 30 item 5): the h-Edit and inpainting evaluations run their
items through app.batch (the local engine, a real worker process, a real session) and score the
recorded results to the same figures as the in-process loop.

Tolerance: the worker runs the tool's own run path with its own torch thread count, so float
reductions may be summed in another order; the images then differ by at most a grey level or so
(CoPaint's gradient steps amplify a last-bit difference), and the PSNRs by far less than 0.01 dB.
Everything the detector decides (success, object found) must be equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(240)

DB_TOL = 0.01


def _close(a: float, b: float, tol: float = DB_TOL) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def _grid(folder: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(folder / name).convert("RGB")).astype(int)


def test_hedit_eval_batch_matches_in_process(tmp_path):
    from lab import hedit_eval
    from storage import SessionStore, batches

    common = ["--smoke", "--quiet", "--threads", "1", "--methods", "h-edit-explicit"]
    assert hedit_eval.main([*common, "--out", str(tmp_path / "a.json"), "--examples", str(tmp_path / "ax")]) == 0
    session = tmp_path / "session"
    assert hedit_eval.main([*common, "--engine", "local", "--workers", "1", "--session", str(session),
                            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "b.json"),
                            "--examples", str(tmp_path / "bx")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b"))
    assert list(b["methods"]) == ["h-edit-explicit"] == list(a["methods"])
    assert b["engine"] == "local" and _close(a["vae_roundtrip_psnr"], b["vae_roundtrip_psnr"])
    for m, sa in a["methods"].items():
        sb = b["methods"][m]
        assert (sa["edits"], sa["null_edits"]) == (sb["edits"], sb["null_edits"]) == (2, 1)
        for k in ("success", "success_colour", "success_shape"):
            assert sa[k] == sb[k], (m, k)
        for k in ("psnr_outside", "null_psnr_whole", "null_psnr_vs_roundtrip"):
            assert _close(sa[k], sb[k]), (m, k, sa[k], sb[k])
        assert sb["first_edit_s"] > 0 and math.isnan(sb["cached_edit_s"])
    # every edit's picture beside its source
    ga, gb = _grid(tmp_path / "ax", "h_edit_examples.png"), _grid(tmp_path / "bx", "h_edit_examples.png")
    assert ga.shape == gb.shape and np.abs(ga - gb).max() <= 2
    # the batch is in the session: one h-edit run per method x edit, all ok
    store = SessionStore.open(session, readonly=True)
    try:
        (info,) = batches.list_batches(store)
        items = batches.batch_items(store, info.id)
        assert info.tool_id == "h-edit" and info.total == 3 and len(items) == 3
        assert all(it.status == "ok" for it in items)
        runs = [store.get_run(it.run_id) for it in items]
        assert {r.params["variant"] for r in runs} == {"explicit"} and {r.seed for r in runs} == {5000}
    finally:
        store.close()


def test_inpaint_eval_plan_only_cli_then_from_batch(tmp_path, capsys):
    """The cluster path: --plan-only writes a plan, `implicit-studio batch` runs it (here the local
    engine), --from-batch scores it; the figures are the in-process loop's."""
    from app.cli import main as cli
    from lab import inpaint_eval

    common = ["--smoke", "--quiet", "--threads", "1", "--methods", "repaint,blend"]
    assert inpaint_eval.main([*common, "--out", str(tmp_path / "a.json")]) == 0
    plan = tmp_path / "work" / "eval.toml"
    assert inpaint_eval.main([*common, "--plan-only", str(plan)]) == 0
    assert f"implicit-studio batch {plan}" in capsys.readouterr().out
    text = plan.read_text()
    assert 'tool = "inpaint"' in text and 'rows = "items.csv"' in text
    assert len((tmp_path / "work" / "items.csv").read_text().strip().splitlines()) == 1 + 2 * 3  # 2 methods x 3 masks
    session = tmp_path / "session"
    assert cli(["batch", str(plan), "--session", str(session), "--workers", "1", "--quiet"]) == 0
    assert inpaint_eval.main(["--quiet", "--from-batch", "1", "--session", str(session),
                              "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b"))
    assert list(a["methods"]) == list(b["methods"]) == ["repaint", "blend"]
    assert b["batch_id"] == 1 and b["images"] == a["images"] == 1
    for m, entry in a["methods"].items():
        for kind, sa in entry.items():
            sb = b["methods"][m][kind]
            assert sa["n"] == sb["n"] and sa["object"] == sb["object"], (m, kind)
            for k in ("psnr_masked", "seam"):
                assert _close(sa[k], sb[k]), (m, kind, k, sa[k], sb[k])
            assert math.isnan(sb["psnr_known_raw"])  # the tool returns the composited image only
            assert sb["seconds"] > 0


def test_from_batch_refuses_a_batch_that_is_not_an_evaluation(tmp_path, capsys):
    from app.batch.plan import build_plan
    from lab import hedit_eval
    from lab.batch_eval import save_png
    from storage import SessionStore, batches

    image = save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "in" / "a.png")
    plan = build_plan({"tool": "h-edit", "params": {"image": image, "target_prompt": "a cat"}, "sweep": {"seed": [1]}})
    session = tmp_path / "session"
    store = SessionStore.open(session)
    try:
        batch_id = batches.create_batch(store, name="not an evaluation", tool_id="h-edit", plan=plan.to_dict(),
                                        total=1, engine="local", workers=1)
    finally:
        store.close()
    assert hedit_eval.main(["--quiet", "--from-batch", str(batch_id), "--session", str(session)]) == 1
    assert "not written by an evaluation" in capsys.readouterr().err
    assert hedit_eval.main(["--quiet", "--from-batch", "7", "--session", str(session)]) == 1
    assert "7" in capsys.readouterr().err
    # a wrong device is refused before any input is made
    assert hedit_eval.main(["--smoke", "--quiet", "--engine", "local", "--device", "gpu7", "--work",
                            str(tmp_path / "w"), "--session", str(session)]) == 1
    assert "unknown device 'gpu7'" in capsys.readouterr().err and not (tmp_path / "w").exists()
