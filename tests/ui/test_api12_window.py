"""API 1.2 in the window: list editors and required fields in the generated form, a tool that
runs another one shown as a tree in the History, a cancelled run's kept results in the gallery."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app import api

PLUGIN = sys.modules[__name__]


@api.hookimpl
def studio_tools():
    return [
        api.ToolSpec(id="ui-leaf", title="UI leaf", run=f"{__name__}:leaf",
                     params=(api.IntParam(name="level", default=1, min=0, max=255), api.SeedParam(name="seed"))),
        api.ToolSpec(id="ui-sweep", title="UI sweep", run=f"{__name__}:sweep", seeded=False,
                     params=(api.TextParam(name="prompt", required=True),
                             api.SeedListParam(name="seeds", default=(1, 2)),
                             api.FloatListParam(name="gains", default=(0.5,), min=0.0, max=2.0),
                             api.IntParam(name="stop_after", default=0))),
    ]


def leaf(ctx, level, seed):
    ctx.progress(0, 1)
    return api.ImageResult(image=np.full((8, 8, 3), level, np.uint8), label=f"seed {seed}")


def sweep(ctx, prompt, seeds, gains, stop_after):
    done = []
    try:
        for i, seed in enumerate(seeds):
            if stop_after and i == stop_after:
                ctx.cancel()
            ctx.progress(i, len(seeds), prompt)
            done += ctx.run_tool("ui-leaf", level=int(100 * gains[0]), seed=seed)
    except api.Cancelled:
        raise api.Cancelled(results=done) from None
    return done


def test_list_editor_and_required_marker(qtbot):
    from app.widgets.form import ListEditor, ParamForm

    tool = studio_tools()[1]
    form = ParamForm(tool)
    qtbot.addWidget(form)
    seeds = form.editors["seeds"]
    assert isinstance(seeds, ListEditor) and seeds.edit.text() == "1, 2" and seeds.count.text() == "2 values"
    seeds.edit.setText("1-4, 9")
    assert form.values()["seeds"] == (1, 2, 3, 4, 9) and seeds.count.text() == "5 values"
    seeds.edit.setText("1,,2")
    assert form.values()["seeds"] == "1,,2" and seeds.count.text() == "?"  # refused at Run, with the message
    assert form.set_values({"seeds": [7, 8, 9], "gains": (0.25, 1.5)}) == []
    assert seeds.edit.text() == "7-9" and form.editors["gains"].edit.text() == "0.25, 1.5"
    labels = {w.text() for w in form.findChildren(type(seeds.count)) if w.text().startswith("Prompt")}
    assert labels == {"Prompt *"}


def test_required_field_refused_then_tree_and_kept_results(qtbot, make_studio_window):
    from app.testing_kit import run_in_window

    window = make_studio_window(PLUGIN, installed=False)
    # an empty required prompt: refused under its field, nothing queued
    assert window.select_tool("ui-sweep")
    assert window.run_current() is None
    assert window.form.error_text("prompt") == "Prompt: a value is required"

    outcome = run_in_window(qtbot, window, "ui-sweep", prompt="cats", seeds="3, 4", gains="1.5")
    assert outcome.status == "ok", outcome.error
    history = window.history
    history.refresh()
    assert history.wait_idle()
    tops = [history.tree.topLevelItem(i) for i in range(history.tree.topLevelItemCount())]
    (parent,) = [it for it in tops if it.text(1) == "ui-sweep"]
    assert [parent.child(i).text(1) for i in range(parent.childCount())] == ["ui-leaf", "ui-leaf"]

    outcome = run_in_window(qtbot, window, "ui-sweep", prompt="dogs", seeds="1-4", stop_after=2)
    assert outcome.status == "cancelled"
    history.refresh()
    assert history.wait_idle()
    run_id = max(r.id for r in window.session.list_runs() if r.tool_id == "ui-sweep")
    captions = [history.gallery.item(i).text() for i in range(history.gallery.count())]
    kept = [c for c in captions if c.endswith(f"#{run_id} ui-sweep") or f"#{run_id} ·" in c]
    assert len(kept) == 2, captions  # both kept pictures are in the gallery
    assert window.session.run(run_id).status == "cancelled"


def test_plugins_dialog_shows_start_up_costs_and_run_time_errors(qtbot):
    import time

    from app.plugins import PluginRecord
    from app.ui.plugins_dialog import PluginsDialog

    quiet = PluginRecord(name="quiet", version="1.0", status="loaded", tools=["q"], load_ms=3.0)
    noisy = PluginRecord(name="noisy", version="0.2", status="loaded", tools=["n"], load_ms=640.0, import_ms=420.0,
                         hook_ms={"studio_tools": 210.0}, heavy_imports=["torch"],
                         runtime_errors=["tool 'n': KeyError: 'colours'\nTraceback ..."],
                         earlier_errors=[{"what": "tool 'n'", "error": "ValueError: bad size", "time": time.time() - 3600,
                                          "traceback": "Traceback (most recent call last): ..."}])
    dlg = PluginsDialog([quiet, noisy])
    qtbot.addWidget(dlg)
    assert dlg.tree.currentItem().text(1) == "noisy"  # the plugin with errors is shown first
    text = dlg.details_text()
    assert "Start-up: 640 ms" in text and "imports torch at start-up" in text
    assert "hook studio_tools took 210 ms" in text
    assert "Run-time errors in this session:\ntool 'n': KeyError: 'colours'" in text
    assert "Run-time errors in earlier sessions:" in text and "tool 'n': ValueError: bad size" in text
    assert "2 run-time errors" in dlg.item_for("noisy").toolTip(1)
    dlg.select("quiet")
    assert "Run-time errors" not in dlg.details_text() and "slow" not in dlg.details_text()


@pytest.fixture(autouse=True)
def _studio_plugins_visible(monkeypatch):
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
