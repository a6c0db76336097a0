"""The h-edit panel (offscreen Qt)."""

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")


def test_panel_values_region_and_split(qtbot, test_image, tmp_path):
    from PIL import Image

    from app.api import load_ref
    from plugins.h_edit.panel import HEditPanel
    from plugins.h_edit.plugin import studio_tools

    tool = studio_tools()[0]
    assert load_ref(tool.panel) is HEditPanel
    path = tmp_path / "src.png"
    Image.fromarray(test_image).save(path)
    panel = HEditPanel(tool=tool)
    qtbot.addWidget(panel)
    assert panel.open_image(str(path))
    panel.form.editors["target_prompt"].set_value("a blue circle")
    panel.form.editors["edit_strength"].set_value(4.5)  # the spec allows up to 5 (the old slider stopped at 3)
    panel.form.editors["seed"].set_value(1234)
    vals = panel.values()
    assert vals["image"] == str(path) and vals["target_prompt"] == "a blue circle"
    assert vals["edit_strength"] == 4.5 and vals["region"] is None and vals["seed"] == 1234
    assert vals["model"] == "default" and vals["inversion"] == "random" and vals["reward_weight"] == 0.1
    assert vals["inner_steps"] == 1 and vals["lambda_rec"] == 0.1  # advanced ones keep their defaults
    assert set(vals) == {p.name for p in tool.params}
    tool.validate(vals)  # every value the panel gives is valid for the tool
    panel.editor.canvas.apply_op("rect", 10, 10, 40, 40)
    panel.use_mask.setChecked(True)
    region = panel.values()["region"]
    assert region.shape == (64, 64) and region[20, 20] == 255 and region[50, 50] == 0
    panel.set_result(np.zeros_like(test_image))
    assert panel.tabs.currentIndex() == 1
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    assert not panel.open_image(str(bad))
