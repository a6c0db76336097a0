"""The window's centre: a header (the Canvas/Result switch, the run's caption and details, its
seed, the result picker, "Send to", before/after, fit, 1:1) over a stack of pages: the viewers
(one per viewer, created on first use, each in a scroll area), a live-preview view, a
before/after split for edits, and the canvas of the selected tool's panel when it has one
(:mod:`app.widgets.centre`).

Nothing here may widen the window: the header wraps onto a second line when the centre is narrow
(:class:`app.widgets.flow.FlowLayout`), captions are elided, the seed is always shown whole, and a
viewer that needs more room than the centre has scrolls inside it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.flow import ElidedLabel, FlowLayout
from app.widgets.image_view import ImageView, SplitView

if TYPE_CHECKING:
    from app.ui.viewers import ViewerRegistry

log = logging.getLogger("implicit_studio.ui")

PICKER_MAX = 200  # px: the widest the result picker grows to show its longest label


class ViewerFrame(QScrollArea):
    """A viewer in a scroll area: it fills the centre, and scrolls when it needs more room than
    the centre has instead of widening the window."""

    def __init__(self, viewer: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidget(viewer)
        self.setMinimumSize(80, 80)


class SeedButton(QToolButton):
    """The run's seed, always whole (never elided), copied to the clipboard on a click."""

    copied = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.seed: Optional[int] = None
        self.setObjectName("seed")
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.clicked.connect(self.copy)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.set_seed(None)

    def set_seed(self, seed: Optional[int]) -> None:
        self.seed = None if seed is None else int(seed)
        self.setVisible(self.seed is not None)
        if self.seed is not None:
            self.setText(f"seed {self.seed}")
            self.setToolTip(f"Seed {self.seed}: click to copy it")
        self.updateGeometry()

    def minimumSizeHint(self):  # noqa: N802 - Qt API: the whole number, never less
        return self.sizeHint()

    def copy(self) -> None:
        if self.seed is not None:
            QGuiApplication.clipboard().setText(str(self.seed))
            self.copied.emit(str(self.seed))

    def _menu(self, pos) -> None:
        m = QMenu(self)
        m.addAction("Copy seed", self.copy)
        m.exec(self.mapToGlobal(pos))


class ResultArea(QWidget):
    """The central area (see the module docstring)."""

    pageChanged = Signal(str)  # "canvas" or "result"

    def __init__(self, registry: Union[ViewerRegistry, Callable[[], ViewerRegistry]], parent: QWidget | None = None):
        super().__init__(parent)
        self._registry = registry  # the registry or a callable returning it (built lazily)
        # the Canvas / Result switch (shown while the selected tool's panel has a canvas here)
        self.canvas_btn = self._mode_button("Canvas", "Paint on the selected tool's canvas")
        self.result_btn = self._mode_button("Result", "Show the result")
        self._modes = QButtonGroup(self)
        self._modes.setExclusive(True)
        self._modes.addButton(self.canvas_btn)
        self._modes.addButton(self.result_btn)
        self.canvas_btn.clicked.connect(self.show_canvas)
        self.result_btn.clicked.connect(self.show_result_page)
        self.caption = ElidedLabel("", min_width=60)
        self.caption.setObjectName("title")
        self.sub = ElidedLabel("", min_width=40)  # run number, time, duration; the whole text in its tooltip
        self.sub.setObjectName("muted")
        self.seed_btn = SeedButton()
        self.fit_btn = self._tool("Fit", "Fit the image to the view (F)", lambda: self._view_call("fit"))
        self.one_btn = self._tool("1:1", "Show pixels 1:1 (1)", lambda: self._view_call("actual_size"))
        self.split_btn = self._tool("Before / after", "Compare with the input image", self._toggle_split)
        self.split_btn.setCheckable(True)
        self.split_btn.setEnabled(False)
        for b in (self.split_btn, self.fit_btn, self.one_btn):
            b.setVisible(False)
        self.picker = QComboBox()  # which result of the run is shown, when it made several
        self.picker.setToolTip("This run made several results; choose the one to show")
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(8)
        self.picker.setVisible(False)
        self.picker.activated.connect(self._picked)
        self._pick_callback: Optional[Callable[[int], None]] = None
        self.send_btn = QToolButton()  # "Send to ▸": the window fills the menu when it opens
        self.send_btn.setText("Send to ▸")
        self.send_btn.setToolTip("Open a tool that takes this result as its input")
        self.send_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.send_btn.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.send_menu = QMenu(self.send_btn)
        self.send_btn.setMenu(self.send_menu)
        self.send_btn.setVisible(False)
        self.header = QWidget()
        bar = FlowLayout(self.header, spacing=6)
        bar.setContentsMargins(12, 8, 12, 4)
        for w in (self.canvas_btn, self.result_btn, self.caption, self.sub, self.seed_btn):
            bar.addWidget(w)
        bar.addStretch()
        for w in (self.picker, self.send_btn, self.split_btn, self.fit_btn, self.one_btn):
            bar.addWidget(w)
        self.header.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.stack = QStackedWidget()
        self.stack.setMinimumWidth(80)
        self.welcome = ImageView(placeholder="Choose a tool on the left, set its parameters and press Generate (Ctrl+Enter).\n\nDrop an image or a PNG made by Implicit Studio here to open it.")
        self.welcome.setObjectName("welcome")
        self.preview = ImageView(placeholder="Waiting for the first preview…")
        self.split = SplitView()
        for w in (self.welcome, self.preview, self.split):
            w.setMinimumSize(80, 80)
            self.stack.addWidget(w)
        self.viewers: dict[str, QWidget] = {}  # viewer key (the kind, or the viewer's id) -> viewer
        self._frames: dict[str, ViewerFrame] = {}
        self.canvas: Optional[QWidget] = None  # the selected tool's canvas page, when it has one
        self._result_page: QWidget = self.welcome  # what the Result side shows
        self._send_wanted = False
        self.current_result: Optional[api.Result] = None
        self.current_input: Any = None  # the input image of the run shown: a file path or an array
        self.viewer_error = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.stack, 1)
        self._update_modes()

    def _relayout(self) -> None:
        """Lay the header out now (not at the next event loop turn), so what it shows is right at
        once: the caption elided to its new room, the row wrapped or not."""
        self.header.layout().activate()
        self.header.updateGeometry()

    def _tool(self, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    def _mode_button(self, text: str, tip: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setCheckable(True)
        b.setObjectName("mode")
        return b

    def _view_call(self, name: str) -> None:
        fn = getattr(self.current_viewer(), name, None)
        if callable(fn):
            fn()

    # --- viewers -------------------------------------------------------------------------------
    def viewer_for(self, kind: str, result: Optional[api.Result] = None) -> QWidget:
        """The viewer for ``result`` (of ``kind``): the one the registry chooses for it, made on
        first use and kept (one per viewer)."""
        reg = self._registry() if callable(self._registry) else self._registry
        entry = reg.choose(kind, result)
        key = entry.id if entry is not None else f"generic:{kind}"
        w = self.viewers.get(key)
        if w is None:
            w, made, err = reg.create(kind, entry.id if entry is not None else None, result=result)
            self.viewer_error = err
            key = made.id if made is not None else f"generic:{kind}"
            if key in self.viewers:  # the chosen one failed and the fallback was already made
                w.deleteLater()
                return self.viewers[key]
            self.viewers[key] = w
            self._frames[key] = ViewerFrame(w)
            self.stack.addWidget(self._frames[key])
        return w

    def _page_of(self, viewer: QWidget) -> QWidget:
        for key, w in self.viewers.items():
            if w is viewer:
                return self._frames[key]
        return viewer

    def show_result(self, result: api.Result, caption: str = "", sub: str = "", input_image: Any = None,
                    seed: Optional[int] = None) -> QWidget:
        from app.ui.viewers import GenericResultViewer, result_kind  # noqa: PLC0415

        kind = result_kind(result)
        w = self.viewer_for(kind, result)
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
        self.caption.set_full_text(caption)
        self.sub.set_full_text(sub)
        self.seed_btn.set_seed(seed)
        self._relayout()
        self.split_btn.setEnabled(input_image is not None and kind in ("image", "mask"))
        if self.split_btn.isChecked() and self.split_btn.isEnabled():
            self._toggle_split(True)
        else:
            self.split_btn.setChecked(False)
            self._set_result_page(self._page_of(w))
        return w

    def set_choices(self, labels: list[str], callback: Optional[Callable[[int], None]], current: int = 0) -> None:
        """Offer the results of one run; ``callback(index)`` shows the chosen one. The picker is as
        wide as its longest label (up to PICKER_MAX px), so a label is never cut in its number."""
        self.picker.blockSignals(True)
        self.picker.clear()
        self.picker.addItems(labels)
        self.picker.setCurrentIndex(current)
        self.picker.blockSignals(False)
        fm = self.picker.fontMetrics()
        longest = max((fm.horizontalAdvance(t) for t in labels), default=0)
        self.picker.setMinimumContentsLength(8)
        self.picker.setMinimumWidth(min(PICKER_MAX, longest + 48) if labels else 0)
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
            self._set_result_page(self.split)
        elif self.current_result is not None:
            from app.ui.viewers import result_kind  # noqa: PLC0415

            self._set_result_page(self._page_of(self.viewer_for(result_kind(self.current_result), self.current_result)))

    def show_preview(self, image: Any, caption: str = "") -> None:
        """Show a live preview (a QImage made on the worker thread, an ImageResult or an array)."""
        data = getattr(image, "image", image)
        first = self.stack.currentWidget() is not self.preview
        if first:  # the results of the run shown before are not this run's
            self.set_choices([], None)
        self.preview.set_image(data, keep_view=not first)
        self._set_result_page(self.preview)
        if caption:
            self.caption.set_full_text(caption)
            self.sub.set_full_text("live preview")
            self.seed_btn.set_seed(None)

    def current_viewer(self) -> QWidget:
        """The widget shown: a viewer (not its scroll frame), the preview, the split or the canvas."""
        w = self.stack.currentWidget()
        return w.viewer if isinstance(w, ViewerFrame) else w

    # --- the Result page and the canvas page ----------------------------------------------------
    def _set_result_page(self, page: QWidget) -> None:
        self._result_page = page
        self.stack.setCurrentWidget(page)
        self._update_modes()
        self.pageChanged.emit("result")

    def show_result_page(self) -> None:
        """Leave the canvas for the result shown last (the welcome page before any)."""
        self.stack.setCurrentWidget(self._result_page)
        self._update_modes()
        self.pageChanged.emit("result")

    def set_canvas(self, page: Optional[QWidget]) -> None:
        """Host ``page`` (a panel's :meth:`centre_widget`) as the Canvas page, replacing (and
        deleting) the previous one; ``None`` removes it. A new canvas is shown at once."""
        old = self.canvas
        if old is page:
            return
        self.canvas = page
        if old is not None:
            self.stack.removeWidget(old)
            old.deleteLater()
        if page is not None:
            page.setMinimumSize(80, 80)
            self.stack.addWidget(page)
            title = getattr(page, "title", "") or "Canvas"
            self.canvas_btn.setText(title if len(title) <= 24 else "Canvas")
            sig = getattr(page, "frontRequested", None)
            if sig is not None:
                sig.connect(self.show_canvas)
            self.show_canvas()
        else:
            self.show_result_page()

    def show_canvas(self) -> None:
        if self.canvas is None:
            return
        self.stack.setCurrentWidget(self.canvas)
        self._update_modes()
        self.pageChanged.emit("canvas")

    def canvas_shown(self) -> bool:
        return self.canvas is not None and self.stack.currentWidget() is self.canvas

    def _update_modes(self) -> None:
        has = self.canvas is not None
        self.canvas_btn.setVisible(has)
        self.result_btn.setVisible(has)
        on_canvas = self.canvas_shown()
        self.canvas_btn.setChecked(on_canvas)
        self.result_btn.setChecked(has and not on_canvas)
        result_side = not on_canvas and self.current_result is not None
        for b in (self.caption, self.sub):
            b.setVisible(not on_canvas)
        if on_canvas:
            self.seed_btn.setVisible(False)
        else:
            self.seed_btn.setVisible(self.seed_btn.seed is not None)
        for b in (self.picker,):
            b.setVisible(result_side and self.picker.count() > 1)
        self.send_btn.setVisible(result_side and self.send_btn.isEnabled() and self._send_wanted)
        self.split_btn.setVisible(result_side and self.split_btn.isEnabled())
        zoomable = callable(getattr(self.current_viewer(), "fit", None))
        self.fit_btn.setVisible(zoomable and (on_canvas or result_side))
        self.one_btn.setVisible(zoomable and (on_canvas or result_side))

    def set_sendable(self, on: bool) -> None:
        """Show "Send to" for the result shown (the window knows whether it can be sent)."""
        self._send_wanted = bool(on)
        self.send_btn.setEnabled(bool(on))
        self._update_modes()


def result_labels(results: list[api.Result]) -> list[str]:
    """"1. seed 12 (image)", "2. table — row means": how the picker lists a run's results (a
    result's own label first, so its number is never cut)."""
    return [f"{i + 1}. {r.label} ({r.kind})" if r.label else f"{i + 1}. {r.kind}" for i, r in enumerate(results)]
