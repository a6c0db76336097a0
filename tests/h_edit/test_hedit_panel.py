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
    panel.target_prompt.setText("a blue circle")
    panel.strength.setValue(150)
    vals = panel.values()
    assert vals["image"] == str(path) and vals["target_prompt"] == "a blue circle"
    assert vals["edit_strength"] == 1.5 and vals["region"] is None
    assert vals["inner_steps"] == 1 and vals["lambda_rec"] == 0.1  # advanced ones keep their defaults
    for p in tool.params:  # every value the panel gives is valid for the tool
        if p.name not in ("image", "region"):
            p.validate(vals[p.name])
    panel.region.canvas.apply_op("rect", 10, 10, 40, 40)
    panel.use_region.setChecked(True)
    region = panel.values()["region"]
    assert region.shape == (64, 64) and region[20, 20] == 255 and region[50, 50] == 0
    panel.set_result(np.zeros_like(test_image))
    assert panel.tabs.currentIndex() == 1
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    assert not panel.open_image(str(bad))
