"""The sweep's logic with a stand-in for text-to-image: ``RunContext(tool_runner=...)`` lets a
unit test run a composing tool without the studio (the studio tests run the real tool)."""

import numpy as np
import pytest

from app.api import Cancelled, ImageResult, RunContext, TableResult
from studio_seed_sweep.compute import sweep


class StandIn:
    """Answers ctx.run_tool like text-to-image: a picture whose value encodes seed and guidance."""

    def __init__(self, cancel_at=None):
        self.calls = []
        self.cancel_at = cancel_at

    def __call__(self, ctx, tool_id, params):
        self.calls.append((tool_id, params))
        if len(self.calls) == self.cancel_at:
            ctx.cancel()  # as if the user pressed Cancel during this picture
            ctx.check_cancelled()
        value = int(params["seed"] * 10 + params["guidance"])
        return [ImageResult(image=np.full((16, 16, 3), value, np.uint8)),
                TableResult(columns=("step",), rows=[(0,)])]


def run(ctx, **kw):
    args = dict(prompt="a fox", negative_prompt="", seeds=(1, 2), guidance=(3.0, 5.0), steps=4, model="default",
                cell_size=16)
    args.update(kw)
    return sweep(ctx, **args)


def test_one_text_to_image_call_per_cell_in_order():
    stand_in = StandIn()
    progress = []
    sheet, table = run(RunContext(tool_runner=stand_in, on_progress=lambda s, t, m: progress.append((s, t, m))))
    assert [(tool, p["seed"], p["guidance"]) for tool, p in stand_in.calls] == [
        ("text-to-image", 1, 3.0), ("text-to-image", 2, 3.0), ("text-to-image", 1, 5.0), ("text-to-image", 2, 5.0)]
    assert all(p["prompt"] == "a fox" and p["steps"] == 4 and p["model"] == "default" and
               p["record_trajectory"] is False for _, p in stand_in.calls)
    assert progress[0] == (0, 4, "guidance 3, seed 1") and progress[-1] == (4, 4, "contact sheet")
    assert sheet.label == "contact sheet" and sheet.metadata["cells_done"] == 4
    assert [(g, s, m) for g, s, m, _ in table.rows] == [(3.0, 1, 13.0), (3.0, 2, 23.0), (5.0, 1, 15.0),
                                                       (5.0, 2, 25.0)]


def test_cancel_keeps_the_finished_cells():
    stand_in = StandIn(cancel_at=3)
    with pytest.raises(Cancelled) as info:
        run(RunContext(tool_runner=stand_in))
    sheet, table = info.value.results
    assert sheet.label == "contact sheet (2 of 4)" and len(table.rows) == 2
    assert sheet.metadata["cells_done"] == 2 and sheet.metadata["cells"] == 4


def test_cancel_before_any_cell_keeps_nothing():
    with pytest.raises(Cancelled) as info:
        run(RunContext(tool_runner=StandIn(cancel_at=1)))
    assert info.value.results == []


def test_captions_follow_the_plugin_setting():
    with_captions, _ = run(RunContext(tool_runner=StandIn()))
    without, _ = run(RunContext(tool_runner=StandIn(), settings={"seed-sweep": {"captions": False}}))
    assert without.image.shape[0] < with_captions.image.shape[0]
