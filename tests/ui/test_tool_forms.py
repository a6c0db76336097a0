"""Every parameter a built-in tool declares has an editor in the window, whether the tool uses the
generated form or a custom panel (which embeds the generated form for the parameters it does not
edit itself), and the editors offer the declared ranges and choices."""

from __future__ import annotations

import pytest

from app import api


def _editor_widgets(panel):
    """Parameter name -> the widget that edits it, for the form the Tools dock built."""
    from app.ui.tool_panel import PanelFormAdapter

    form = panel.form
    if isinstance(form, PanelFormAdapter):
        return form.widget.editor_widgets(), form.editors
    return dict(form.editors), form.editors


def test_every_declared_parameter_of_every_built_in_tool_has_an_editor(qtbot, studio_manager):
    from PySide6.QtGui import QUndoStack

    from app.ui.tool_panel import ToolPanel

    tools = sorted(studio_manager.tools.values(), key=lambda t: t.id)
    assert {"h-edit", "inpaint", "text-to-image"} <= {t.id for t in tools}
    panel = ToolPanel(QUndoStack())
    qtbot.addWidget(panel)
    panel.set_tools(tools)
    custom = 0
    for tool in tools:
        assert panel.select_tool(tool.id), tool.id
        assert panel.current_tool is tool and tool.id not in panel.panel_errors, panel.panel_errors
        custom += tool.panel is not None
        widgets, generated = _editor_widgets(panel)
        shown = panel.scroll.widget()
        for p in tool.params:
            if getattr(p, "hidden", False):
                continue
            w = widgets.get(p.name)
            assert w is not None, f"{tool.id}: no editor for {p.name!r} ({type(p).__name__})"
            assert w is shown or shown.isAncestorOf(w), f"{tool.id}: the editor of {p.name!r} is not in the panel"
            ed = generated.get(p.name)
            if ed is None:
                continue
            # the editor offers what the spec declares (a hand-made slider once stopped at 3.0 of 5.0)
            if isinstance(p, (api.IntParam, api.FloatParam)) and not isinstance(p, api.SeedParam):
                if p.max is not None:
                    assert ed.spin.maximum() == pytest.approx(p.max), (tool.id, p.name)
                if p.min is not None:
                    assert ed.spin.minimum() == pytest.approx(p.min), (tool.id, p.name)
            if isinstance(p, api.ChoiceParam):
                assert [ed.combo.itemData(i) for i in range(ed.combo.count())] == list(p.choices), (tool.id, p.name)
        # the values the window would run with are the tool's parameters, and pass its validation
        values = panel.values()
        assert set(values) >= {p.name for p in tool.params if not isinstance(p, api.ImageParam)}, tool.id
    assert custom >= 2  # h-Edit's and inpainting's own panels were among them


@pytest.mark.parametrize("tool_id, owned", [("h-edit", {"image", "region"}),
                                            ("inpaint", {"image", "mask", "mask_history"})])
def test_custom_panels_embed_the_generated_form_for_all_other_parameters(qtbot, studio_manager, tool_id, owned):
    from app.api import load_ref
    from app.widgets.form import ModelEditor, SeedEditor

    tool = studio_manager.tools[tool_id]
    panel = load_ref(tool.panel)(tool=tool)
    qtbot.addWidget(panel)
    assert set(panel.form.editors) == {p.name for p in tool.params} - owned
    assert isinstance(panel.form.editors["seed"], SeedEditor) and isinstance(panel.form.editors["model"], ModelEditor)
    assert panel.form.advanced_box is not None and not panel.form.advanced_box.isVisibleTo(panel)
