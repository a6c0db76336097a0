"""The inpainting tool's panel: the image with the mask painted on it, a before/after view of the
result, and the generated form for every other parameter (prompt, method, steps, guidance,
resize_mask, feather, model, seed and the advanced ones). The painted strokes are recorded with the
run (``mask_history``), so the session keeps how the mask was made.

Built from the widget kit's :class:`~app.widgets.image_panel.ImageEditPanel`; it declares nothing
the ToolSpec does not, so every parameter of ``inpaint`` is reachable in the window.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QWidget

from app.api import ToolSpec
from app.widgets.image_panel import ImageEditPanel


class InpaintPanel(ImageEditPanel):
    def __init__(self, tool: Optional[ToolSpec] = None, parent: Optional[QWidget] = None):
        if tool is None:
            from .plugin import studio_tools

            tool = studio_tools()[0]
        super().__init__(tool, image_param="image", mask_param="mask", mask_label="Mask",
                         history_param="mask_history",
                         image_placeholder="image file (or send a session result here)", parent=parent)
