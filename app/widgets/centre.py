"""A panel's canvas in the window's centre area (the widget kit's *centre canvas*).

A tool panel that works on a picture (painting a mask, placing points, drawing a region) should
not squeeze it into the side panel: the window's centre area is where pictures are seen at full
size. A panel offers its canvas to the window with one method::

    def centre_widget(self) -> QWidget | None: ...

The window calls it once, right after it builds the panel for the selected tool, and shows the
widget returned as the **Canvas** page of its centre area (a "Canvas | Result" switch appears in
the centre's header; a finished run shows its result, the switch goes back to the canvas). When
another tool is chosen, the window removes the page and deletes it with the panel. From the call on
the widget belongs to the window and the panel keeps only its tools; a host that never calls it (a
dialog, a test, another application embedding the panel) leaves the canvas where the panel put it.

The page may have a ``frontRequested`` signal: the window then shows the canvas page whenever it is
emitted (a panel emits it when an image is opened in it, so sending a result to the tool brings
the canvas up). ``fit()`` and ``actual_size()``, when the page has them, are what the header's
Fit and 1:1 buttons call. :class:`CentrePage` is a ready-made page around any canvas widget, with
a one-line hint above it; :class:`app.widgets.image_panel.ImageEditPanel` uses it for its mask.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.widgets.flow import ElidedLabel


class CentrePage(QWidget):
    """A canvas with a hint line above it, as a page for the window's centre area.

    ``title`` names the page in the centre's Canvas/Result switch. :meth:`request_front` asks the
    host to show the page (``frontRequested``)."""

    frontRequested = Signal()

    def __init__(self, canvas: QWidget, title: str = "Canvas", hint: str = "", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.canvas = canvas
        self.title = title
        self.hint = ElidedLabel(hint, self)
        self.hint.setObjectName("muted")
        self.hint.setVisible(bool(hint))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.hint)
        lay.addWidget(canvas, 1)
        self.hint.setContentsMargins(12, 0, 12, 0)

    def set_hint(self, text: str) -> None:
        self.hint.set_full_text(text)
        self.hint.setVisible(bool(text))

    def request_front(self) -> None:
        """Ask the host to show this page (no effect while the page is in the panel)."""
        self.frontRequested.emit()

    def fit(self) -> None:
        fn = getattr(self.canvas, "fit", None)
        if callable(fn):
            fn()

    def actual_size(self) -> None:
        fn = getattr(self.canvas, "actual_size", None)
        if callable(fn):
            fn()

