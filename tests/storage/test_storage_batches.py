"""Batch records: an item is written once (its run, results and row in one transaction)."""

from __future__ import annotations

import os

import pytest

from storage import NewResult, SessionStore, batches


def _run(seed: int) -> dict:
    return {"tool_id": "noise-image", "plugin": "toy", "plugin_version": "1", "params": {"seed": seed},
            "seed": seed, "device": "cpu", "started_at": 1.0, "finished_at": 2.0}


def test_an_item_is_recorded_once_and_a_failed_one_can_be_redone(tmp_path):
    with SessionStore.open(tmp_path / "s") as s:
        bid = batches.create_batch(s, name="b", tool_id="noise-image", plan={"tool": "noise-image"}, total=2,
                                   engine="local", workers=1)
        png = NewResult("image", b"\x89PNG fake", ".png", 1, 1)
        rid, written = batches.record_item(s, bid, "seed=1", 0, status="ok", attempts=1, run=_run(1), results=[png])
        assert written and s.get_run(rid).status == "ok" and len(s.get_run(rid).results) == 1
        again, written2 = batches.record_item(s, bid, "seed=1", 0, status="ok", attempts=2, run=_run(1), results=[png])
        assert (again, written2) == (rid, False) and s.count_runs() == 1  # never written twice
        fid, _ = batches.record_item(s, bid, "seed=2", 1, status="failed", attempts=1, run=_run(2), error="boom")
        info = batches.get_batch(s, bid)
        assert (info.ok, info.failed, info.left, info.state) == (1, 1, 0, "running")
        redo, written3 = batches.record_item(s, bid, "seed=2", 1, status="ok", attempts=1, run=_run(2))
        assert written3 and redo != fid
        items = batches.batch_items(s, bid)
        assert [(i.key, i.status, i.run_id) for i in items] == [("seed=1", "ok", rid), ("seed=2", "ok", redo)]
        assert s.get_run(fid).status == "failed"  # the earlier failed run stays in the history
        assert batches.batch_of_run(s, redo) == (bid, "seed=2")
        s.delete_run(rid)  # deleting an item's run leaves the item to do again
        assert [i.key for i in batches.batch_items(s, bid)] == ["seed=2"]


def test_cancel_and_claim(tmp_path):
    with SessionStore.open(tmp_path / "s") as s:
        bid = batches.create_batch(s, name="b", tool_id="t", plan={}, total=1, engine="local", workers=1)
        assert batches.request_cancel(s, bid) == "cancelling"  # this process drives it and is alive
        batches.set_status(s, bid, "stopped")
        assert batches.request_cancel(s, bid) == "cancelled"
        info = batches.claim_batch(s, bid, engine="ray", workers=3)
        assert (info.status, info.engine, info.workers, info.driver_pid) == ("running", "ray", 3, os.getpid())
        with pytest.raises(batches.BatchNotFoundError):
            batches.get_batch(s, 99)
