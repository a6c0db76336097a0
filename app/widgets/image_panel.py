"""A tool panel for editing an image with a painted mask, built around the tool's generated form.

:class:`ImageEditPanel` is what h-Edit's and inpainting's panels are made of, and what any plugin
with an image-editing tool can use as its ``ToolSpec.panel``: where the image comes from
(:class:`ImageSourceRow`), a mask painted on it (:class:`~app.widgets.mask_canvas.MaskEditor`), a
before/after view of the result (:class:`~app.widgets.image_view.SplitView`), and — for every
other declared parameter — the form generated from the ToolSpec
(:class:`~app.widgets.form.ParamForm`). The panel never re-declares a parameter, so each one the
tool declares has an editor in the window (:meth:`ImageEditPanel.editor_widgets` says which).

In the window the mask is painted on the big canvas: the panel gives its canvas to the window's
centre area (:meth:`ImageEditPanel.centre_widget`, see :mod:`app.widgets.centre`) and keeps the
mask tools, the image's source and the form; the window's own before/after view shows results.
Opened elsewhere (a dialog, a test) the panel keeps the canvas and a before/after tab itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTabWidget, QVBoxLayout, QWidget

from app import api
from app.widgets.centre import CentrePage
from app.widgets.form import ParamForm
from app.widgets.image_view import SplitView
from app.widgets.imaging import as_rgb, load_rgb
from app.widgets.mask_canvas import MaskEditor
from app.widgets.maskops import MaskDocument

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff)"


class ImageSourceRow(QWidget):
    """A path field and an "Open…" button; ``chosen(path)`` when a path is typed or browsed."""

    chosen = Signal(str)

    def __init__(self, placeholder: str = "image file", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(self._typed)
        self._path = ""  # the file shown under a label (a session result's file)
        self._label = ""
        self.browse = QPushButton("Open\u2026", self)
        self.browse.setToolTip("Open an image file")
        self.browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)

    def _browse(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415 - its type is slow to create

        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.chosen.emit(path)

    def _typed(self) -> None:
        if self._label and self.edit.text().strip() == self._label:
            return  # unchanged: still the labelled file
        self._label = self._path = ""
        self.chosen.emit(self.edit.text())

    def text(self) -> str:
        """The path (the labelled file's while its label is shown unchanged)."""
        t = self.edit.text().strip()
        return self._path if self._label and t == self._label else t

    def set_text(self, path: str, label: str = "") -> None:
        """Show ``path``, or ``label`` for it (a session result's name instead of its file's
        content-hash name; the path is the tooltip)."""
        self._path, self._label = (str(path), label) if label else ("", "")
        self.edit.setText(label or str(path))
        self.edit.setCursorPosition(0)  # a narrow field shows the name's start ("run #1 …"), not its end
        self.edit.setToolTip(str(path) if label else "")


class ImageEditPanel(QWidget):
    """The image of ``image_param`` shown for painting the mask of ``mask_param`` (an optional
    mask gets a "use it" check box), a before/after tab for the result, and the generated form for
    every other parameter of ``tool``. ``history_param``, when given, names a text parameter that
    records the painted strokes as JSON with the run (the mask editor is its editor).

    Offers what the window asks of a panel: ``values()``, ``set_values()``, ``show_error()``,
    ``clear_errors()``, ``open_image()``, ``set_result()`` and ``editor_widgets()``."""

    def __init__(self, tool: api.ToolSpec, *, image_param: str = "image", mask_param: Optional[str] = None,
                 mask_label: str = "Mask", use_mask_text: str = "", history_param: Optional[str] = None,
                 image_placeholder: str = "image file", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.tool = tool
        self.image_param = image_param
        self.mask_param = mask_param
        self.history_param = history_param
        self.mask_label = mask_label
        self._image: Optional[np.ndarray] = None
        self.page: Optional[CentrePage] = None  # the canvas, once given to the window's centre
        self.source = ImageSourceRow(image_placeholder, self)
        self.source.chosen.connect(self.open_image)
        self.image_path = self.source.edit
        self.editor = MaskEditor(parent=self)
        self.split = SplitView(parent=self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.editor, mask_label)
        self.tabs.addTab(self.split, "Before / after")
        self.tabs.setTabEnabled(1, False)
        self.tabs.setMinimumHeight(420)  # the tool bar rows and a canvas big enough to paint on
        self.use_mask: Optional[QCheckBox] = None
        mask = tool.param(mask_param) if mask_param else None
        if isinstance(mask, api.MaskParam) and mask.optional:
            self.use_mask = QCheckBox(use_mask_text or f"use the painted {mask.label.lower()}", self)
            self.use_mask.setToolTip(mask.help)
            self.editor.maskChanged.connect(self._painted)
        self.error = QLabel(self)
        self.error.setObjectName("error")
        self.error.setStyleSheet("color: #e5484d;")
        self.error.setWordWrap(True)
        self.error.hide()
        owned = [n for n in (image_param, mask_param, history_param) if n]
        self.form = ParamForm(tool, exclude=owned)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.source)
        lay.addWidget(self.tabs, 1)
        self._layout = lay
        if self.use_mask is not None:
            lay.addWidget(self.use_mask)
        lay.addWidget(self.error)
        lay.addWidget(self.form)

    # --- the canvas in the window's centre ---------------------------------------------------
    def centre_widget(self) -> CentrePage:
        """Give the mask canvas to the host's centre area (:mod:`app.widgets.centre`): the panel
        keeps the mask tools, the source and the form; the before/after tab goes (the window's
        centre has its own)."""
        if self.page is None:
            canvas = self.editor.detach_canvas()
            mask = self.tool.param(self.mask_param) if self.mask_param else None
            what = ("Paint the region to edit (optional: without one the whole image is edited)."
                    if getattr(mask, "optional", False) else "Paint the region to fill.")
            self.page = CentrePage(canvas, title=self.mask_label if len(self.mask_label) <= 18 else "Mask", hint=(
                f"{what}   Wheel: zoom · right-drag or Space+drag: pan · [ ]: brush size · "
                "Ctrl+Z: undo"))
            self.tabs.removeTab(self.tabs.indexOf(self.editor))
            self._layout.replaceWidget(self.tabs, self.editor)
            self.tabs.hide()
            self.editor.show()
            if self._image is not None:
                self.page.request_front()
        return self.page

    # --- the image and the result ------------------------------------------------------------
    def open_image(self, source: Any, label: str = "") -> bool:
        """Show an image (a file path or an array) for painting; False (and the reason shown)
        when it cannot be read."""
        try:
            if isinstance(source, (str, Path)):
                if not str(source).strip():
                    return False
                arr = load_rgb(source)
                self.source.set_text(str(source), label)
            else:
                arr = as_rgb(source)
        except ValueError as exc:
            self.editor.message = str(exc)
            self.editor.status.setText(str(exc))
            return False
        self._image = arr
        self.editor.set_image(arr)
        self.tabs.setCurrentIndex(0)
        self.tabs.setTabEnabled(1, False)
        if self.page is not None:
            self.page.request_front()
        return True

    def _painted(self) -> None:
        """Painting an optional mask means using it (clearing it does not untick the box)."""
        doc = self.editor.canvas.doc
        if self.use_mask is not None and doc is not None and doc.as_bool().any():
            self.use_mask.setChecked(True)

    def show_source(self, param: str, label: str) -> None:
        """Name the image (a session result sent here) by ``label`` instead of its file name."""
        if param == self.image_param and self.source.text():
            self.source.set_text(self.source.text(), label)

    def set_result(self, image: np.ndarray) -> None:
        """Show ``image`` against the source in the before/after tab (standalone; in the window the
        centre's before/after view shows results)."""
        if self._image is None:
            return
        self.split.set_images(self._image, np.asarray(image))
        self.tabs.setTabEnabled(1, True)
        self.tabs.setCurrentIndex(1)

    def restore_history(self, history: str) -> bool:
        """Replay recorded strokes (the ``history_param`` value of an earlier run) on the open image."""
        doc = self.editor.canvas.doc
        if doc is None or not history:
            return False
        try:
            new = MaskDocument.from_json(history)
        except (ValueError, KeyError, TypeError):
            return False
        if (new.width, new.height) != (doc.width, doc.height):
            return False
        self.editor.canvas.doc = new
        self.editor.canvas._changed()
        return True

    # --- values ------------------------------------------------------------------------------
    def _mask_value(self) -> Any:
        if self.use_mask is not None and not self.use_mask.isChecked():
            return None
        if self.editor.canvas.doc is None:
            return None
        return self.editor.loaded_from or self.editor.mask()

    def values(self) -> dict[str, Any]:
        vals = self.form.values()
        path = self.source.text()
        vals[self.image_param] = path if path else self._image
        if self.mask_param:
            vals[self.mask_param] = self._mask_value()
        if self.history_param:
            doc = self.editor.canvas.doc
            vals[self.history_param] = doc.to_json(include_arrays=False) if doc is not None else ""
        return vals

    def set_values(self, values: dict[str, Any], record_undo: bool = True) -> list[str]:
        """Set what can be set (the image first, then its mask); returns the names not set."""
        rest = dict(values)
        bad: list[str] = []
        if self.image_param in rest:
            v = rest.pop(self.image_param)
            if v is not None and not (isinstance(v, str) and not v.strip()) and not self.open_image(v):
                bad.append(self.image_param)
        mask_set = False
        if self.mask_param and self.mask_param in rest:
            mask = rest.pop(self.mask_param)
            if self._set_mask(mask):
                mask_set = mask is not None
            else:
                bad.append(self.mask_param)
        if self.history_param and self.history_param in rest:
            history = rest.pop(self.history_param)
            # the strokes rebuild the mask only where the mask itself was not given: a mask from
            # the session is the exact one the run used
            if history and not mask_set and not self.restore_history(str(history)):
                bad.append(self.history_param)
        return bad + self.form.set_values(rest, record_undo=record_undo)

    def _set_mask(self, value: Any) -> bool:
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.use_mask is not None:
                self.use_mask.setChecked(False)
            if self.editor.canvas.doc is not None:
                self.editor.canvas.apply_op("clear")
            return True
        if self.editor.canvas.doc is None:
            return False
        if isinstance(value, (str, Path)):
            ok = self.editor.load_mask(str(value))
        else:
            try:
                self.editor.canvas.set_mask(np.asarray(value))
                ok = True
            except ValueError:
                ok = False
        if ok and self.use_mask is not None:
            self.use_mask.setChecked(True)
        return ok

    # --- errors and editors -------------------------------------------------------------------
    def show_error(self, name: Optional[str], message: str) -> bool:
        if name in self.form.editors:
            return self.form.show_error(name, message)
        self.error.setText(message)
        self.error.show()
        return True

    def clear_errors(self) -> None:
        self.error.hide()
        self.error.clear()
        self.form.clear_errors()

    def editor_widgets(self) -> dict[str, QWidget]:
        """Every parameter of the tool -> the widget in this panel that edits it."""
        out: dict[str, QWidget] = {self.image_param: self.source}
        for name in (self.mask_param, self.history_param):
            if name:
                out[name] = self.editor
        out.update(self.form.editors)
        return out
