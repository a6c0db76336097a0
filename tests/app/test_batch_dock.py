"""The Batch dock with real widgets, real worker processes and a real session: a plan built from
axis rows (item count and estimate shown before start), a batch run with its progress, the grid
laid out by two axes with each cell opening its run, cancel and resume, grid PNG and items CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from app.ui.batch_dock import BatchDock  # noqa: E402
from storage import SessionStore, batches  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def store(tmp_path: Path):
    s = SessionStore.open(tmp_path / "session")
    yield s
    s.close()


def _dock(qtbot, manager, store, values) -> BatchDock:
    dock = BatchDock(manager, lambda: store, lambda tool_id: dict(values))
    qtbot.addWidget(dock)
    dock.resize(700, 900)
    dock.show()
    return dock


def test_plan_rows_run_grid_open_and_export(qtbot, tmp_path: Path, toy_process_env, manager, store):
    dock = _dock(qtbot, manager, store, {"size": 24, "steps": 2, "step_delay": 0.0, "seed": -1})
    dock.set_tool("noise-image")
    dock.add_axis("seed", "seeds 3 from 5")
    dock.add_axis("palette", "gray, color")
    dock.workers.setValue(2)
    assert dock.check_plan() and dock.item_count == 6
    assert "6 item(s) on 2 worker(s)" in dock.summary.text() and "no estimate yet" in dock.summary.text()
    bad = dock.add_axis("size", "16, 99999")
    assert not dock.check_plan() and "item" in dock.plan_error and "size=99999" in dock.plan_error
    assert not dock.start_btn.isEnabled()
    dock.axes.selectRow(bad)
    dock.remove_axis()
    assert dock.check_plan()

    with qtbot.waitSignal(dock.batchFinished, timeout=120_000) as done:
        bid = dock.start()
    assert done.args == [bid, "done"]
    info = batches.get_batch(store, bid)
    assert (info.ok, info.failed, info.left) == (6, 0, 0)
    item, bar = dock._rows[bid]
    assert bar.value() == 6 and bar.maximum() == 6
    assert item.text(2).startswith("6 done · 0 failed · 0 left")

    # the grid: seeds across, palette down, every cell an image that opens its run
    assert (dock.grid.rowCount(), dock.grid.columnCount()) == (2, 3)
    assert [dock.grid.horizontalHeaderItem(c).text() for c in range(3)] == ["seed=5", "seed=6", "seed=7"]
    assert [dock.grid.verticalHeaderItem(r).text() for r in range(2)] == ["palette=gray", "palette=color"]
    for r in range(2):
        for c in range(3):
            assert not dock.grid.item(r, c).icon().isNull()
    with qtbot.waitSignal(dock.openRunRequested) as opened:
        dock.open_cell(1, 2)
    run = store.get_run(opened.args[0])
    assert run.seed == 7 and run.params["palette"] == "color" and opened.args[1] == run.results[0].id

    png, csv_path = dock.export_grid(tmp_path / "grid.png"), dock.export_csv(tmp_path / "items.csv")
    from PIL import Image

    assert Image.open(png).size[0] >= 3 * 128
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 7 and "metric:mean" in lines[0]

    assert dock.check_plan() and "about" in dock.summary.text()  # an estimate from the runs just made

    # save and load the plan as TOML
    saved = dock.save_plan_file(tmp_path / "plan.toml")
    dock.axes.setRowCount(0)
    dock.load_plan_file(saved)
    assert dock.axes.rowCount() == 2 and dock.item_count == 6


def test_cancel_then_resume_from_the_dock(qtbot, toy_process_env, manager, store):
    dock = _dock(qtbot, manager, store, {"size": 8, "steps": 3, "step_delay": 0.15})
    dock.set_tool("noise-image")
    dock.add_axis("seed", "seeds 12")
    assert dock.check_plan()
    bid = dock.start()
    qtbot.waitUntil(lambda: batches.get_batch(store, bid).ok >= 2, timeout=120_000)
    with qtbot.waitSignal(dock.batchFinished, timeout=60_000) as done:
        dock.cancel(bid)
    assert done.args == [bid, "cancelled"]
    first = batches.get_batch(store, bid)
    assert first.state == "cancelled" and 2 <= first.ok < 12
    assert "cancelled" in dock._rows[bid][0].text(2)
    dock.select_batch(bid)
    assert dock.resume_btn.isEnabled()
    with qtbot.waitSignal(dock.batchFinished, timeout=120_000) as done:
        dock.resume_btn.click()
    assert done.args == [bid, "done"]
    final = batches.get_batch(store, bid)
    assert (final.ok, final.failed, final.state) == (12, 0, "done")
    assert len(store.list_runs(limit=100, tool="noise-image")) == 12  # none run twice
