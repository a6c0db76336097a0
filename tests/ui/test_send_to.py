""""Send to": a result becomes the image input of any tool that takes one, in one click, and the
new run is recorded as the child of the first."""

from __future__ import annotations

from .conftest import needs_storage
from .test_main_window import TIMEOUT, choose, click_run, settle


def menu_action(menu, title):
    menu.aboutToShow.emit()  # the menu is filled when it opens
    acts = {a.text(): a for a in menu.actions()}
    assert title in acts, f"{title!r} not in {sorted(acts)}"
    return acts[title]


def test_targets_are_discovered_from_tool_specs():
    """Every built-in tool with an image input is a target, with the right parameter; masks and
    tools without an image input are not."""
    from app.controller import send_targets
    from plugins.h_edit import plugin as h_edit
    from plugins.inpaint import plugin as inpaint
    from plugins.text_to_image import plugin as t2i

    from . import toy_plugin

    tools = [*toy_plugin.studio_tools(), *t2i.studio_tools(), *h_edit.studio_tools(), *inpaint.studio_tools()]
    found = {t.tool_id: t.param for t in send_targets(tools)}
    assert found["toy-invert"] == "image"
    assert found["h-edit"] == "image"
    assert found["inpaint"] == "image"
    assert found["text-to-image"] == "init_image"
    assert "toy-gradient" not in found and "toy-fail" not in found


def test_h_edit_gets_the_source_prompt_from_the_run():
    from app.controller import sent_values
    from plugins.h_edit import plugin as h_edit

    tool = next(t for t in h_edit.studio_tools() if t.id == "h-edit")
    vals = sent_values(tool, "image", 12, {"prompt": "a red circle", "seed": 3})
    assert vals == {"image": "result:12", "source_prompt": "a red circle"}
    # a run without a prompt sends the image alone; a tool without a source prompt takes no prompt
    assert sent_values(tool, "image", 12, {"seed": 3}) == {"image": "result:12"}
    from . import toy_plugin

    invert = next(t for t in toy_plugin.studio_tools() if t.id == "toy-invert")
    assert sent_values(invert, "image", 5, {"prompt": "x"}) == {"image": "result:5"}


@needs_storage
def test_send_result_to_image_tool_and_run_a_child(qtbot, window):
    choose(window, "toy-gradient")
    assert not window.result_area.send_btn.isVisible()
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        click_run(qtbot, window)
    assert blocker.args[1] == "ok"
    first = window.session.list_runs(limit=1)[0]
    rid = first.results[0].id
    assert window.current_source == (first.id, rid)
    assert window.result_area.send_btn.isVisible()

    # the result header's "Send to" menu lists the toy image tool, not the generator
    menu = window.result_area.send_menu
    act = menu_action(menu, "Toy invert")
    assert "Toy gradient" not in [a.text() for a in menu.actions()]
    act.trigger()
    assert window.tool_panel.current_tool.id == "toy-invert"
    assert window.form.values()["image"] == f"result:{rid}"
    # the picker shows the result as its menu would: run number and tool, with a thumbnail
    picker = window.form.editors["image"]
    assert picker.caption.text() == f"#{first.id} toy-gradient (image)"
    assert not picker.thumb.pixmap().isNull()

    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT) as blocker:
        click_run(qtbot, window)
    assert blocker.args[1] == "ok"
    child = window.session.list_runs(limit=1)[0]
    assert child.id != first.id and child.tool_id == "toy-invert"
    assert child.params["image"] == f"result:{rid}"
    assert window.session.run(child.id).parent_run_id == first.id  # stored lineage


@needs_storage
def test_send_from_history_menu(qtbot, window):
    choose(window, "toy-gradient")
    with qtbot.waitSignal(window.jobFinished, timeout=TIMEOUT):
        click_run(qtbot, window)
    first = window.session.list_runs(limit=1)[0]
    hist = window.history
    settle(qtbot, hist)
    choose(window, "toy-gradient")  # move away from the target tool first
    assert hist.select(first.id, first.results[0].id)
    assert hist.sendable() == (first.id, first.results[0].id)
    assert hist.send_btn.isEnabled()
    with qtbot.waitSignal(hist.sendToRequested, timeout=5000) as blocker:
        menu_action(hist.send_menu, "Toy invert").trigger()
    assert blocker.args == [first.id, first.results[0].id, "toy-invert"]
    assert window.tool_panel.current_tool.id == "toy-invert"
    assert window.form.values()["image"] == f"result:{first.results[0].id}"
    # nothing selected: nothing to send
    hist.gallery.clearSelection()
    assert hist.sendable() is None and not hist.send_btn.isEnabled()


def test_send_to_unknown_or_imageless_tool_is_refused(qtbot, window):
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        assert window.send_to(None, 1, "no-such-tool") is False
    assert "not available" in blocker.args[0]
    with qtbot.waitSignal(window.errorShown, timeout=5000) as blocker:
        assert window.send_to(None, 1, "toy-gradient") is False
    assert "does not take an image" in blocker.args[0]


def test_custom_panels_take_a_sent_result(qtbot, tmp_path):
    """h-Edit's and inpainting's own panels take a sent result: the adapter hands the result's
    file to the panel, passes the ``result:<id>`` reference to the run (lineage), sets the other
    parameters in the panel's embedded form, and forgets the reference once the user opens
    another image."""
    import torch
    from PySide6.QtGui import QImage

    from app.api import load_ref
    from app.ui.tool_panel import PanelFormAdapter
    from plugins.h_edit import plugin as h_edit
    from plugins.inpaint import plugin as inpaint

    torch.set_num_threads(1)
    files = {}
    for name, color in (("sent", 0x3366FF), ("other", 0xFF3300)):
        img = QImage(24, 24, QImage.Format.Format_RGB888)
        img.fill(color)
        files[name] = str(tmp_path / f"{name}.png")
        assert img.save(files[name])
    for mod, tid, text_key in ((h_edit, "h-edit", "source_prompt"), (inpaint, "inpaint", "prompt")):
        tool = next(t for t in mod.studio_tools() if t.id == tid)
        panel = load_ref(tool.panel)(tool=tool, parent=None)
        qtbot.addWidget(panel)
        form = PanelFormAdapter(panel, tool, lambda rid: files["sent"] if rid == 4 else None)
        assert form.set_values({"image": "result:4", text_key: "a red circle"}) == []
        vals = form.values()
        assert vals["image"] == "result:4" and vals[text_key] == "a red circle"
        assert panel._image is not None and panel._image.shape[:2] == (24, 24)  # the panel shows it
        assert form.set_values({"image": "result:99"}) == ["image"]  # an unknown result is refused
        panel.open_image(files["other"])
        assert form.values()["image"] == files["other"]
