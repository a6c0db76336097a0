"""The public Qt widget kit for plugin views (documented in docs/plugins.md, "The widget kit").

A plugin's panels and viewers may import ``app.api`` and this package, nothing else of the app.
The kit itself imports only Qt, numpy/PIL (when used) and ``app.api``; never a plugin, never the
window (``app.ui``) and never ``storage``.

- :mod:`app.widgets.form`: :class:`ParamForm`, the form generated from a ToolSpec's parameters
  (one editor per parameter type), and :func:`make_editor`.
- :mod:`app.widgets.image_panel`: :class:`ImageEditPanel` (an image, a mask painted on it, a
  before/after tab and the generated form for the other parameters) and :class:`ImageSourceRow`.
- :mod:`app.widgets.mask_canvas`: :class:`MaskCanvas` and :class:`MaskEditor` (brush, eraser,
  rectangle, lasso, grow/shrink/feather, undo, load/save).
- :mod:`app.widgets.maskops`: :class:`MaskDocument`, the mask as a replayable list of operations
  (numpy only, no Qt).
- :mod:`app.widgets.image_view`: :class:`ImageView` (zoom and pan), :class:`SplitView`
  (before/after with a draggable divider) and :class:`SideBySideView`.
- :mod:`app.widgets.imaging`: ``to_qimage``, ``qimage_to_array``, ``as_rgb``, ``load_rgb``.
- :mod:`app.widgets.icons`: ``icon``, ``std``.

The names below can be imported from ``app.widgets`` directly; each submodule is imported on first
use, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ParamForm": "form", "make_editor": "form",
    "ImageEditPanel": "image_panel", "ImageSourceRow": "image_panel",
    "MaskCanvas": "mask_canvas", "MaskEditor": "mask_canvas",
    "MaskDocument": "maskops",
    "ImageView": "image_view", "SplitView": "image_view", "SideBySideView": "image_view",
    "to_qimage": "imaging", "qimage_to_array": "imaging", "as_rgb": "imaging", "load_rgb": "imaging",
    "icon": "icons", "std": "icons",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'app.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(f"app.widgets.{module}"), name)
