"""The window's centre: a caption bar (run details, the result picker, "Send to", before/after,
fit, 1:1) over a stack of viewers (one per result kind, created on first use), a live-preview
view and a before/after split for edits."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.image_view import ImageView, SplitView

if TYPE_CHECKING:
    from app.ui.viewers import ViewerRegistry

log = logging.getLogger("implicit_studio.ui")


class ResultArea(QWidget):
    """The central area: a caption bar and a stack of viewers (one per viewer kind, created on
    first use), a live-preview view, and a before/after split for edits."""

    def __init__(self, registry: Union[ViewerRegistry, Callable[[], ViewerRegistry]], parent: QWidget | None = None):
        super().__init__(parent)
        self._registry = registry  # the registry or a callable returning it (built lazily)
        self.caption = QLabel("")
        self.caption.setObjectName("title")
        self.sub = QLabel("")
        self.sub.setObjectName("muted")
        # the run details may be cut short in a narrow window rather than widen it (the tooltip keeps them)
        self.sub.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.sub.setMinimumWidth(40)
        self.fit_btn = self._tool("Fit", "Fit the image to the view (F)", lambda: self._view_call("fit"))
        self.one_btn = self._tool("1:1", "Show pixels 1:1 (1)", lambda: self._view_call("actual_size"))
        self.split_btn = self._tool("Before / after", "Compare with the input image", self._toggle_split)
        self.split_btn.setCheckable(True)
        self.split_btn.setEnabled(False)
        for b in (self.split_btn, self.fit_btn, self.one_btn):
            b.setVisible(False)
        self.picker = QComboBox()  # which result of the run is shown, when it made several
        self.picker.setToolTip("This run made several results; choose the one to show")
        # sized to a short label, not the longest result name, so the header never sets the window's width
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(16)
        self.picker.setVisible(False)
        self.picker.activated.connect(self._picked)
        self._pick_callback: Optional[Callable[[int], None]] = None
        self.send_btn = QToolButton()  # "Send to ▸": the window fills the menu when it opens
        self.send_btn.setText("Send to ▸")
        self.send_btn.setToolTip("Open a tool that takes an image with this result as its input")
        self.send_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.send_btn.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.send_menu = QMenu(self.send_btn)
        self.send_btn.setMenu(self.send_menu)
        self.send_btn.setVisible(False)
        bar = QHBoxLayout()
        bar.setContentsMargins(12, 8, 12, 4)
        bar.setSpacing(6)
        bar.addWidget(self.caption)
        bar.addWidget(self.sub, 1)
        bar.addWidget(self.picker)
        bar.addWidget(self.send_btn)
        bar.addWidget(self.split_btn)
        bar.addWidget(self.fit_btn)
        bar.addWidget(self.one_btn)
        self.stack = QStackedWidget()
        self.welcome = ImageView(placeholder="Choose a tool on the left, set its parameters and press Generate (Ctrl+Enter).\n\nDrop an image or a PNG made by Implicit Studio here to open it.")
        self.welcome.setObjectName("welcome")
        self.preview = ImageView(placeholder="Waiting for the first preview…")
        self.split = SplitView()
        for w in (self.welcome, self.preview, self.split):
            self.stack.addWidget(w)
        self.viewers: dict[str, QWidget] = {}
        self.current_result: Optional[api.Result] = None
        self.current_input: Any = None  # the input image of the run shown: a file path or an array
        self.viewer_error = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)

    def _tool(self, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    def _view_call(self, name: str) -> None:
        w = self.stack.currentWidget()
        fn = getattr(w, name, None)
        if callable(fn):
            fn()

    def viewer_for(self, kind: str) -> QWidget:
        w = self.viewers.get(kind)
        if w is None:
            reg = self._registry() if callable(self._registry) else self._registry
            w, _entry, err = reg.create(kind)
            self.viewer_error = err
            self.viewers[kind] = w
            self.stack.addWidget(w)
        return w

    def show_result(self, result: api.Result, caption: str = "", sub: str = "", input_image: Any = None) -> QWidget:
        from app.ui.viewers import GenericResultViewer, result_kind  # noqa: PLC0415

        kind = result_kind(result)
        w = self.viewer_for(kind)
        try:
            w.set_result(result)
        except Exception as exc:  # a plugin viewer failed on this result: fall back
            log.exception("viewer for %s failed", kind)
            gw = GenericResultViewer()
            gw.set_result(result, note=f"The viewer failed: {type(exc).__name__}: {exc}")
            self.stack.addWidget(gw)
            w = gw
        self.current_result = result
        self.current_input = input_image
        for b in (self.split_btn, self.fit_btn, self.one_btn):
            b.setVisible(True)
        self.caption.setText(caption)
        self.sub.setText(sub)
        self.sub.setToolTip(sub)
        self.split_btn.setEnabled(input_image is not None and kind in ("image", "mask"))
        if self.split_btn.isChecked() and self.split_btn.isEnabled():
            self._toggle_split(True)
        else:
            self.split_btn.setChecked(False)
            self.stack.setCurrentWidget(w)
        return w

    def set_choices(self, labels: list[str], callback: Optional[Callable[[int], None]], current: int = 0) -> None:
        """Offer the results of one run; ``callback(index)`` shows the chosen one."""
        self.picker.blockSignals(True)
        self.picker.clear()
        self.picker.addItems(labels)
        self.picker.setCurrentIndex(current)
        self.picker.blockSignals(False)
        self.picker.setVisible(len(labels) > 1)
        self._pick_callback = callback

    def _picked(self, index: int) -> None:
        if self._pick_callback is not None:
            self._pick_callback(index)

    def _toggle_split(self, on: bool | None = None) -> None:
        on = self.split_btn.isChecked() if on is None or not isinstance(on, bool) else on
        if on and self.current_result is not None and self.current_input is not None:
            after = getattr(self.current_result, "image", None)
            if after is None:
                after = getattr(self.current_result, "mask", None)
            self.split.set_images(self.current_input, after)
            self.stack.setCurrentWidget(self.split)
        elif self.current_result is not None:
            from app.ui.viewers import result_kind  # noqa: PLC0415

            self.stack.setCurrentWidget(self.viewer_for(result_kind(self.current_result)))

    def show_preview(self, image: Any, caption: str = "") -> None:
        """Show a live preview (a QImage made on the worker thread, an ImageResult or an array)."""
        data = getattr(image, "image", image)
        first = self.stack.currentWidget() is not self.preview
        self.preview.set_image(data, keep_view=not first)
        self.stack.setCurrentWidget(self.preview)
        if caption:
            self.caption.setText(caption)
            self.sub.setText("live preview")

    def current_viewer(self) -> QWidget:
        return self.stack.currentWidget()


def result_labels(results: list[api.Result]) -> list[str]:
    """"1. image", "2. table — row means": how the picker lists a run's results."""
    return [f"{i + 1}. {r.kind}" + (f" — {r.label}" if r.label else "") for i, r in enumerate(results)]
