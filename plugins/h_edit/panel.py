"""The h-edit tool's panel: source image, prompts, reward, strength, an optional painted region,
and a before/after split view of the result.

Replaces the generated form (``ToolSpec.panel``); ``values()`` returns the tool's parameters (the
advanced ones keep their defaults). The region is painted with the inpainting plugin's mask editor.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QSlider, QSpinBox, QVBoxLayout, QWidget)

from plugins.inpaint.canvas import editor_tabs, image_source_row, read_image_source


class HEditPanel(QWidget):
    def __init__(self, tool: Any = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._defaults = tool.defaults() if tool is not None else {}
        self._image: Optional[np.ndarray] = None
        self.image_path, top = image_source_row(self, "image file to edit", lambda p: self.open_image(p))
        self.region, self.split, self.tabs = editor_tabs(self, "Region (optional)")
        self.use_region = QCheckBox("confine the edit to the painted region", self)

        self.source_prompt = QLineEdit(self)
        self.source_prompt.setPlaceholderText("what the image shows (taken from its metadata when empty)")
        self.target_prompt = QLineEdit(self)
        self.target_prompt.setPlaceholderText("what the edited image should show")
        self.reward = QLineEdit(self)
        self.reward.setPlaceholderText("optional: colour:blue, palette:red,yellow, style:ref.png")
        self.strength = QSlider(Qt.Orientation.Horizontal, self)
        self.strength.setRange(0, 300)
        self.strength.setValue(int(round(100 * float(self._defaults.get("edit_strength", 1.0)))))
        self.strength_label = QLabel(self)
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v / 100:.2f}"))
        self.strength_label.setText(f"{self.strength.value() / 100:.2f}")
        srow = QHBoxLayout()
        srow.addWidget(self.strength, 1)
        srow.addWidget(self.strength_label)
        self.variant = QComboBox(self)
        for value, label in (("implicit", "h-Edit implicit"), ("explicit", "h-Edit explicit"),
                             ("baseline-ef", "Baseline: edit-friendly DDPM"), ("baseline-ddim", "Baseline: DDIM")):
            self.variant.addItem(label, value)
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 1000)
        self.steps.setValue(int(self._defaults.get("steps", 25)))
        form = QFormLayout()
        form.addRow("Source prompt", self.source_prompt)
        form.addRow("Target prompt", self.target_prompt)
        form.addRow("Reward", self.reward)
        form.addRow("Edit strength", srow)
        form.addRow("Variant", self.variant)
        form.addRow("Steps", self.steps)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.use_region)
        lay.addLayout(form)

    def open_image(self, source: Any) -> bool:
        try:
            arr = read_image_source(source, self.image_path)
            if arr is None:
                return False
        except ValueError as exc:
            self.region.status.setText(str(exc))
            return False
        self._image = arr
        self.region.set_image(arr)
        self.tabs.setTabEnabled(1, False)
        self.tabs.setCurrentIndex(0)
        return True

    def set_result(self, image: np.ndarray) -> None:
        if self._image is None:
            return
        self.split.set_images(self._image, np.asarray(image))
        self.tabs.setTabEnabled(1, True)
        self.tabs.setCurrentIndex(1)

    def values(self) -> dict[str, Any]:
        vals = dict(self._defaults)
        path = self.image_path.text().strip()
        region = None
        if self.use_region.isChecked() and self.region.canvas.doc is not None:
            region = self.region.mask()
        vals.update({
            "image": path if path else self._image,
            "source_prompt": self.source_prompt.text(),
            "target_prompt": self.target_prompt.text(),
            "reward": self.reward.text().strip(),
            "edit_strength": self.strength.value() / 100.0,
            "variant": self.variant.currentData(),
            "steps": self.steps.value(),
            "region": region,
        })
        return vals
