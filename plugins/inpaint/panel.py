"""The inpaint tool's panel: pick an image, paint the mask on it, set the prompt and method.

Replaces the generated form (``ToolSpec.panel``); ``values()`` returns the tool's parameters with
the painted mask as an array. ``set_result(image)`` shows a before/after split view.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout,
                               QPlainTextEdit, QSpinBox, QVBoxLayout, QWidget)

from .canvas import editor_tabs, image_source_row, read_image_source


class InpaintPanel(QWidget):
    def __init__(self, tool: Any = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.tool = tool
        self._defaults = tool.defaults() if tool is not None else {}
        self.image_path, top = image_source_row(self, "image file (or drop a session result here)",
                                                lambda p: self.open_image(p))
        self.editor, self.split, self.tabs = editor_tabs(self, "Mask")

        self.prompt = QPlainTextEdit(self)
        self.prompt.setPlaceholderText("what to paint in the masked region")
        self.prompt.setMaximumHeight(60)
        self.method = QComboBox(self)
        for value, label in (("copaint", "CoPaint"), ("copaint-tt", "CoPaint + time travel"),
                             ("repaint", "RePaint"), ("blend", "Blend (baseline)")):
            self.method.addItem(label, value)
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 1000)
        self.steps.setValue(int(self._defaults.get("steps", 25)))
        self.guidance = QDoubleSpinBox(self)
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(float(self._defaults.get("guidance", 7.5)))
        self.feather = QSpinBox(self)
        self.feather.setRange(0, 64)
        self.feather.setValue(int(self._defaults.get("feather", 2)))
        form = QFormLayout()
        form.addRow("Prompt", self.prompt)
        form.addRow("Method", self.method)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Feather", self.feather)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)
        lay.addLayout(form)
        self._image: Optional[np.ndarray] = None

    def open_image(self, source: Any) -> bool:
        """Show an image (a file path or an HxWx3 array) for painting."""
        try:
            arr = read_image_source(source, self.image_path)
            if arr is None:
                return False
        except ValueError as exc:
            self.editor.message = str(exc)
            self.editor._sync()
            self.editor.status.setText(str(exc))
            return False
        self._image = arr
        self.editor.set_image(arr)
        self.tabs.setCurrentIndex(0)
        self.tabs.setTabEnabled(1, False)
        return True

    def restore_history(self, history: str) -> bool:
        """Replay recorded strokes (``values()["mask_history"]`` of an earlier run) on the open image."""
        from .maskops import MaskDocument

        doc = self.editor.canvas.doc
        if doc is None or not history:
            return False
        new = MaskDocument.from_json(history)
        if (new.width, new.height) != (doc.width, doc.height):
            return False
        self.editor.canvas.doc = new
        self.editor.canvas._changed()
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
        vals.update({
            "image": path if path else self._image,
            "mask": self.editor.mask() if self.editor.canvas.doc is not None else None,
            "prompt": self.prompt.toPlainText(),
            "method": self.method.currentData(),
            "steps": self.steps.value(),
            "guidance": self.guidance.value(),
            "feather": self.feather.value(),
            "mask_history": (self.editor.canvas.doc.to_json(include_arrays=False)
                             if self.editor.canvas.doc is not None else ""),
        })
        return vals
