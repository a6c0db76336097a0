"""The h-Edit tool's panel: the image to edit with an optional region painted on it, a
before/after view of the result, and the generated form for every other parameter (prompts, reward
and its weight, strength, variant, inversion, steps, model, seed and the advanced ones).

Built from the widget kit's :class:`~app.widgets.image_panel.ImageEditPanel`; it declares nothing
the ToolSpec does not, so every parameter of ``h-edit`` is reachable in the window.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QWidget

from app.api import ToolSpec
from app.widgets.image_panel import ImageEditPanel


class HEditPanel(ImageEditPanel):
    def __init__(self, tool: Optional[ToolSpec] = None, parent: Optional[QWidget] = None):
        if tool is None:
            from .plugin import studio_tools

            tool = studio_tools()[0]
        super().__init__(tool, image_param="image", mask_param="region", mask_label="Region (optional)",
                         use_mask_text="confine the edit to the painted region",
                         image_placeholder="image file to edit", parent=parent)
