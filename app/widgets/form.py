"""A tool's form, built from its typed parameter declarations (``app.api`` ``Param`` records).

One editor per parameter kind: int/float (slider + spin box within the declared range), choice
(combo box), bool (check box), text (line edit), multiline text, seed (spin box + dice button + a
"random" toggle), image/mask (picker from the session or from a file, with a thumbnail), path,
model reference, and lists of numbers or seeds (a line such as ``1, 2, 10-13`` with a count).
A required parameter's label is marked with ``*``; a plugin's own parameter type gets a line
edit that shows ``param.format(value)``. Every editor has ``value()``, ``set_value(v)`` and a
``changed`` signal; the form collects ``values()`` as a plain dict and shows per-field
validation messages.

Edits are recorded on an optional ``QUndoStack`` (consecutive edits of one field merge), so
Ctrl+Z / Ctrl+Shift+Z walk through form changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.icons import icon


def _file_dialog():
    """QFileDialog, imported when a dialog is opened (its type costs ~6 ms to create)."""
    from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415

    return QFileDialog


SEED_MAX = api.SEED_MAX
SLIDER_STEPS = 1000


class ParamEditor(QWidget):
    changed = Signal()

    def __init__(self, param: api.Param, parent: QWidget | None = None):
        super().__init__(parent)
        self.param = param
        self.name = param.name

    def value(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def set_value(self, v: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def focus_widget(self) -> QWidget:
        return self


def _row(*widgets: QWidget, stretch_first: bool = True) -> QHBoxLayout:
    lay = QHBoxLayout()
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(6)
    for i, w in enumerate(widgets):
        lay.addWidget(w, 1 if (i == 0 and stretch_first) else 0)
    return lay


def special_value_text(param: api.Param) -> str:
    """What a number editor shows at its minimum when the parameter's help gives that value a
    meaning ("0 = the model's native size" -> "native size"; "-1 = default (...)" -> "default"), so
    a 0 says what it does; "" when the help gives none."""
    import re  # noqa: PLC0415

    lo = getattr(param, "min", None)
    if lo is None or not param.help:
        return ""
    forms = {f"{lo:g}", str(lo)} | ({str(int(lo))} if float(lo).is_integer() else set())
    for m in re.finditer(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(?:=|:)\s*([^;,)]+)", param.help):
        if m.group(1) not in forms:
            continue
        phrase = m.group(2).split("(")[0].strip()
        phrase = re.sub(r"^(the|a|an)\s+", "", phrase)
        phrase = re.sub(r"^model's\s+", "", phrase).strip()
        if "default" in phrase:
            return "default"
        return phrase if 0 < len(phrase) <= 12 else "auto"
    return ""


class IntEditor(ParamEditor):
    param: api.IntParam

    def __init__(self, param: api.IntParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        lo, hi = param.min, param.max
        step = param.step or 1
        self.spin = QSpinBox()
        self.spin.setRange(int(lo) if lo is not None else -(2**31), int(hi) if hi is not None else 2**31 - 1)
        self.spin.setSingleStep(int(step))
        self.spin.setFixedWidth(92)
        self.spin.setSpecialValueText(special_value_text(param))
        self.slider: QSlider | None = None
        if lo is not None and hi is not None and hi - lo <= 100000:
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setMinimumWidth(40)  # it may narrow in a narrow panel; the spin box keeps the number
            self.slider.setRange(int(lo), int(hi))
            self.slider.setSingleStep(int(step))
            self.slider.setPageStep(max(int(step), int((hi - lo) / 10) or 1))
            self.slider.valueChanged.connect(self.spin.setValue)
            self.spin.valueChanged.connect(self._sync_slider)
            self.setLayout(_row(self.slider, self.spin))
        else:
            self.setLayout(_row(self.spin))
        self.spin.valueChanged.connect(lambda *_: self.changed.emit())

    def _sync_slider(self, v: int) -> None:
        if self.slider is not None and self.slider.value() != v:
            self.slider.blockSignals(True)
            self.slider.setValue(v)
            self.slider.blockSignals(False)

    def value(self) -> int:
        return int(self.spin.value())

    def set_value(self, v: Any) -> None:
        self.spin.setValue(int(v))

    def focus_widget(self) -> QWidget:
        return self.spin


class FloatEditor(ParamEditor):
    param: api.FloatParam

    def __init__(self, param: api.FloatParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        lo, hi = param.min, param.max
        step = param.step
        self.spin = QDoubleSpinBox()
        lo_f = float(lo) if lo is not None else -1e9
        hi_f = float(hi) if hi is not None else 1e9
        span = hi_f - lo_f
        if not step:
            step = span / 100 if (lo is not None and hi is not None and span > 0) else 0.1
        decimals = param.decimals or (
            max(2, min(6, int(math.ceil(-math.log10(step))) + 1)) if step < 1 else 2)
        self.spin.setDecimals(decimals)
        self.spin.setRange(lo_f, hi_f)
        self.spin.setSingleStep(step)
        self.spin.setFixedWidth(92)
        self.spin.setSpecialValueText(special_value_text(param))
        self._lo, self._hi = lo_f, hi_f
        self.slider: QSlider | None = None
        if lo is not None and hi is not None and span > 0:
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setMinimumWidth(40)
            self.slider.setRange(0, SLIDER_STEPS)
            self.slider.valueChanged.connect(self._from_slider)
            self.spin.valueChanged.connect(self._sync_slider)
            self.setLayout(_row(self.slider, self.spin))
        else:
            self.setLayout(_row(self.spin))
        self.spin.valueChanged.connect(lambda *_: self.changed.emit())

    def _from_slider(self, pos: int) -> None:
        v = self._lo + (self._hi - self._lo) * pos / SLIDER_STEPS
        step = self.spin.singleStep()
        if step > 0:
            v = self._lo + round((v - self._lo) / step) * step
        self.spin.setValue(v)

    def _sync_slider(self, v: float) -> None:
        if self.slider is None:
            return
        pos = int(round((v - self._lo) / (self._hi - self._lo) * SLIDER_STEPS))
        if self.slider.value() != pos:
            self.slider.blockSignals(True)
            self.slider.setValue(pos)
            self.slider.blockSignals(False)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, v: Any) -> None:
        self.spin.setValue(float(v))

    def focus_widget(self) -> QWidget:
        return self.spin


class ChoiceEditor(ParamEditor):
    param: api.ChoiceParam

    def __init__(self, param: api.ChoiceParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.combo = QComboBox()
        for c, label in zip(param.choices, param.labels or param.choices):
            self.combo.addItem(str(label), c)
            self.combo.setItemData(self.combo.count() - 1, str(label), Qt.ItemDataRole.ToolTipRole)
        # a long choice ("Karras (sigmas spaced for ...)") must not widen the panel past the window:
        # the box shrinks to a dozen characters (the current text elided), the open list is as wide as its longest item
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(12)
        self.combo.view().setTextElideMode(Qt.TextElideMode.ElideNone)
        fm = self.combo.fontMetrics()
        self.combo.view().setMinimumWidth(max((fm.horizontalAdvance(self.combo.itemText(i)) for i in
                                               range(self.combo.count())), default=0) + 32)
        self.combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.combo))

    def value(self) -> str:
        return self.combo.currentData()

    def set_value(self, v: Any) -> None:
        for i in range(self.combo.count()):
            if self.combo.itemData(i) == v or self.combo.itemText(i) == str(v):
                self.combo.setCurrentIndex(i)
                return
        raise ValueError(f"{v!r} is not one of the choices for {self.name}")

    def focus_widget(self) -> QWidget:
        return self.combo


class BoolEditor(ParamEditor):
    def __init__(self, param: api.BoolParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.check = QCheckBox()
        self.check.toggled.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.check))

    def value(self) -> bool:
        return self.check.isChecked()

    def set_value(self, v: Any) -> None:
        if isinstance(v, str):
            v = v.strip().lower() in ("1", "true", "yes", "on")
        self.check.setChecked(bool(v))

    def focus_widget(self) -> QWidget:
        return self.check


class TextEditor(ParamEditor):
    """One line of text; also the editor of a parameter type this form does not know."""

    def __init__(self, param: api.Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.edit = QLineEdit()
        ph = getattr(param, "placeholder", "")  # TextParam's; a plugin's own Param type may have none
        if ph:
            self.edit.setPlaceholderText(ph)
        self.edit.textChanged.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.edit))

    def value(self) -> str:
        return self.edit.text()

    def set_value(self, v: Any) -> None:
        if v is None or isinstance(v, str):
            self.edit.setText(v or "")
        else:  # a plugin's own Param type writes its values as it parses them back
            self.edit.setText(self.param.format(v))

    def focus_widget(self) -> QWidget:
        return self.edit


class ListEditor(ParamEditor):
    """A list of numbers or seeds typed as ``1, 2, 10-13``; beside it, how many values that is
    or what is wrong with it. ``value()`` is the tuple when the text reads, else the text itself
    (the run then refuses it with the parameter's message under the field)."""

    def __init__(self, param: api.Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(getattr(param, "_example", ""))
        self.count = QLabel()
        self.count.setObjectName("muted")
        self.count.setMinimumWidth(self.count.fontMetrics().horizontalAdvance("000 values") + 4)
        self.edit.textChanged.connect(self._update)
        self.edit.textChanged.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.edit, self.count))
        self._update()

    def _parsed(self) -> tuple[Any, str]:
        try:
            return self.param.parse(self.edit.text()), ""
        except api.ParamError as exc:
            return None, exc.message.split(": ", 1)[-1]

    def _update(self, *_: Any) -> None:
        values, problem = self._parsed()
        if values is None:
            self.count.setText("?")
            self.count.setToolTip(problem)
        else:
            n = len(values)
            self.count.setText(f"{n} value{'s' if n != 1 else ''}")
            self.count.setToolTip(self.param.format(values))

    def value(self) -> Any:
        values, _problem = self._parsed()
        return values if values is not None else self.edit.text()

    def set_value(self, v: Any) -> None:
        text = v if isinstance(v, str) else self.param.format(self.param.validate(v))
        if text != self.edit.text():
            self.edit.setText(text)

    def focus_widget(self) -> QWidget:
        return self.edit


class MultilineEditor(ParamEditor):
    """Several lines of text. A prompt box given the model's vocabulary
    (:meth:`set_vocabulary`, :mod:`app.widgets.vocabulary`) marks the words the model does not know,
    says why under the box, and completes the words it knows."""

    def __init__(self, param: api.TextParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.edit = QPlainTextEdit()
        self.edit.setTabChangesFocus(True)
        ph = param.placeholder
        if ph:
            self.edit.setPlaceholderText(ph)
        fm = self.edit.fontMetrics()
        self.edit.setFixedHeight(fm.lineSpacing() * 4 + 14)
        self.edit.textChanged.connect(self.changed.emit)
        self.note = QLabel()  # what the model's vocabulary says of the text
        self.note.setObjectName("warning")
        self.note.setStyleSheet("color: #f5a524;")
        self.note.setWordWrap(True)
        # the note wraps to the width the form has; it never asks the panel for more
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.note.setMinimumWidth(40)
        self.note.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.edit)
        lay.addWidget(self.note)

    def set_vocabulary(self, vocabulary: Any) -> None:
        """Mark and complete the words of ``vocabulary`` (a
        :class:`app.widgets.vocabulary.Vocabulary`, or None for no marks)."""
        from app.widgets.vocabulary import attach  # noqa: PLC0415

        attach(self.edit, self.note, vocabulary)

    def value(self) -> str:
        return self.edit.toPlainText()

    def set_value(self, v: Any) -> None:
        text = "" if v is None else str(v)
        if text != self.edit.toPlainText():
            self.edit.setPlainText(text)

    def focus_widget(self) -> QWidget:
        return self.edit


class SeedEditor(ParamEditor):
    """Seed: a number, a dice button for a new random one, and "random each run".

    ``value()`` is ``-1`` while "random" is ticked (the runner then draws a seed and records it),
    else the number shown.
    """

    def __init__(self, param: api.SeedParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        # a double spin box with no decimals holds every 32-bit seed exactly (QSpinBox stops at 2**31-1)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(0)
        self.spin.setRange(0, SEED_MAX)
        self.spin.setSingleStep(1)
        self.spin.setMinimumWidth(110)
        self.dice = QToolButton()
        self.dice.setIcon(icon("dice", themed=True))
        self.dice.setIconSize(QSize(18, 18))
        self.dice.setToolTip("New random seed")
        self.dice.setObjectName("dice")
        self.dice.clicked.connect(self.roll)
        self.random_each = QCheckBox("random")
        self.random_each.setToolTip("Pick a new seed for every run (the seed used is recorded with the run)")
        self.random_each.toggled.connect(self.spin.setDisabled)
        self.spin.valueChanged.connect(lambda *_: self.changed.emit())
        self.random_each.toggled.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.spin, self.dice, self.random_each))

    def roll(self) -> int:
        v = api.SeedParam.resolve(-1)
        self.random_each.setChecked(False)
        self.spin.setValue(v)
        return v

    def value(self) -> int:
        return -1 if self.random_each.isChecked() else int(self.spin.value())

    def set_value(self, v: Any) -> None:
        if v is None or int(v) < 0:
            self.random_each.setChecked(True)
            return
        if int(v) > SEED_MAX:
            raise ValueError(f"seed {v} is larger than {SEED_MAX}")
        self.random_each.setChecked(False)
        self.spin.setValue(int(v))

    def show_used(self, seed: int) -> None:
        """Show the concrete seed a run used without leaving "random" mode."""
        self.spin.blockSignals(True)
        self.spin.setValue(int(seed))
        self.spin.blockSignals(False)

    def focus_widget(self) -> QWidget:
        return self.spin


class PathEditor(ParamEditor):
    """A file or folder path, typed or browsed. A file sent from a session result is shown by the
    result's name (:meth:`show_source`), not by its content-hash file name."""

    param: api.PathParam

    def __init__(self, param: api.PathParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        directory = param.mode == "dir"
        self._save = param.mode == "save"
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Choose a folder…" if directory else "Choose a file…")
        self.browse = QToolButton()
        self.browse.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon))
        self.browse.setToolTip("Browse…")
        self._directory = directory
        self._filters = ";;".join(param.filters)
        self._shown: tuple[str, str] | None = None  # (label shown, the path it stands for)
        self.browse.clicked.connect(self._pick)
        self.edit.textChanged.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.edit, self.browse))

    def _pick(self) -> None:
        start = self.value() or ""
        if self._directory:
            p = _file_dialog().getExistingDirectory(self, f"Choose {self.param.label}", start)
        elif self._save:
            p, _ = _file_dialog().getSaveFileName(self, f"Choose {self.param.label}", start, self._filters)
        else:
            p, _ = _file_dialog().getOpenFileName(self, f"Choose {self.param.label}", start, self._filters)
        if p:
            self.set_value(p)

    def value(self) -> str | None:
        t = self.edit.text().strip()
        if self._shown is not None and t == self._shown[0]:
            return self._shown[1]
        return t or None

    def set_value(self, v: Any) -> None:
        self._shown = None
        self.edit.setToolTip("")
        self.edit.setText("" if v is None else str(v))

    def show_source(self, label: str) -> None:
        """Show ``label`` ("run #9 rl-record, trajectory") for the path set; the value stays the
        path (its tooltip) until the field is edited."""
        path = self.value()
        if path:
            self._shown = (label, path)
            self.edit.blockSignals(True)
            self.edit.setText(label)
            self.edit.setCursorPosition(0)  # a narrow field shows the name's start, not its end
            self.edit.blockSignals(False)
            self.edit.setToolTip(path)

    def focus_widget(self) -> QWidget:
        return self.edit


class ModelEditor(ParamEditor):
    """Model reference: a combo of the declared names (``aliases``; ``"default"`` is the bundled
    model) that also takes a local model folder or file, typed or browsed."""

    MODEL_FILES = "Model files (*.safetensors *.onnx *.ckpt);;All files (*)"

    def __init__(self, param: api.ModelParam, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        for c in param.aliases:
            self.combo.addItem(str(c), c)
        self.browse = QToolButton()
        self.browse.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon))
        self.browse.setToolTip("Use a local model: a folder (diffusers layout) or a single file")
        self.browse.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.browse)
        menu.addAction("Model folder…").triggered.connect(self._pick_folder)
        menu.addAction("Model file…").triggered.connect(self._pick_file)
        self.browse.setMenu(menu)
        self.combo.currentTextChanged.connect(lambda *_: self.changed.emit())
        self.setLayout(_row(self.combo, self.browse))

    def _pick_folder(self) -> None:
        p = _file_dialog().getExistingDirectory(self, "Choose a model folder")
        if p:
            self.set_value(p)

    def _pick_file(self) -> None:
        p, _ = _file_dialog().getOpenFileName(self, "Choose a model file", "", self.MODEL_FILES)
        if p:
            self.set_value(p)

    def value(self) -> str | None:
        t = self.combo.currentText().strip()
        return t or None

    def set_value(self, v: Any) -> None:
        text = "" if v is None else str(v)
        i = self.combo.findText(text)
        if i < 0 and text:
            self.combo.addItem(text, text)
            i = self.combo.count() - 1
        if i >= 0:
            self.combo.setCurrentIndex(i)
        else:
            self.combo.setEditText(text)

    def focus_widget(self) -> QWidget:
        return self.combo


class ImageEditor(ParamEditor):
    """Image or mask input: from a session result (menu of recent results) or from a file.

    The value is a session result reference (``"result:12"``) or a file path string; ``None`` when
    nothing is chosen.
    """

    THUMB = 56

    def __init__(self, param: api.ImageParam, parent: QWidget | None = None,
                 session_images: Callable[[], list] | None = None):
        super().__init__(param, parent)
        self._value: Any = None
        self._session_images = session_images
        self.thumb = QLabel()
        self.thumb.setFixedSize(self.THUMB, self.THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setObjectName("muted")
        self.thumb.setStyleSheet("border: 1px dashed palette(mid); border-radius: 4px;")
        self.caption = QLabel("none")
        self.caption.setObjectName("muted")
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.pick = QToolButton()
        self.pick.setText("Choose…")
        self.pick.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.pick.setStyleSheet("QToolButton { border: 1px solid palette(mid); padding: 3px 8px; }"
                                "QToolButton::menu-indicator { image: none; }")
        self.pick.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.pick)
        self.menu.aboutToShow.connect(self._fill_menu)
        self.pick.setMenu(self.menu)
        self.clear_btn = QToolButton()
        self.clear_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogDiscardButton))
        self.clear_btn.setToolTip("Clear")
        self.clear_btn.clicked.connect(lambda: self.set_value(None, emit=True))
        self.caption.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(4)
        right.addWidget(self.caption)
        buttons = _row(self.pick, self.clear_btn, stretch_first=False)
        buttons.addStretch(1)
        right.addLayout(buttons)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(10)
        lay.addWidget(self.thumb)
        lay.addLayout(right, 1)

    def _fill_menu(self) -> None:
        self.menu.clear()
        act = self.menu.addAction(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), "From file…")
        act.triggered.connect(self._from_file)
        items = []
        if self._session_images is not None:
            try:
                items = list(self._session_images())
            except Exception as exc:  # a storage hiccup must not break the form
                self.menu.addAction(f"(session unavailable: {exc})").setEnabled(False)
        if items:
            self.menu.addSection("From this session")
            for ref, label, thumb_path in items[:30]:
                thumb = QIcon(str(thumb_path)) if thumb_path else QIcon()
                a = self.menu.addAction(thumb, label)
                a.triggered.connect(lambda _=False, r=ref, l=label, t=thumb_path: self._choose(r, l, t))

    def _from_file(self) -> None:
        p, _ = _file_dialog().getOpenFileName(self, f"Choose {self.param.label}", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
        if p:
            self._choose(p, Path(p).name, p)

    def _choose(self, ref: Any, label: str, thumb_path: Any) -> None:
        self._set(ref, label, thumb_path)
        self.changed.emit()

    def _set(self, ref: Any, label: str, thumb_path: Any) -> None:
        self._value = ref
        self.caption.setText(label if ref is not None else "none")
        self.caption.setToolTip(str(ref) if ref is not None else "")
        pm = QPixmap(str(thumb_path)) if thumb_path else QPixmap()
        if not pm.isNull():
            self.thumb.setPixmap(pm.scaled(QSize(self.THUMB - 4, self.THUMB - 4), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        else:
            self.thumb.setPixmap(QPixmap())
            self.thumb.setText("—" if ref is None else "img")

    def value(self) -> Any:
        return self._value

    def set_value(self, v: Any, emit: bool = False) -> None:
        known = self._session_entry(v) if isinstance(v, str) and v.startswith("result:") else None
        if v is None or v == "":
            self._set(None, "none", None)
        elif known is not None:  # a session result: show its label and thumbnail, as the menu does
            self._set(v, known[1], known[2])
        else:
            thumb = v if isinstance(v, (str, Path)) and Path(str(v)).is_file() else None
            self._set(v, Path(str(v)).name if thumb else str(v), thumb)
        if emit:
            self.changed.emit()

    def _session_entry(self, ref: str) -> tuple | None:
        if self._session_images is None:
            return None
        try:
            return next((e for e in self._session_images() if e[0] == ref), None)
        except Exception:  # session not open or unreadable: fall back to the bare reference
            return None

    def focus_widget(self) -> QWidget:
        return self.pick


def make_editor(param: api.Param, session_images: Callable[[], list] | None = None) -> ParamEditor:
    """The editor for one parameter declaration (a line edit for a type this form does not know)."""
    if isinstance(param, api.ImageParam):  # masks too
        return ImageEditor(param, session_images=session_images)
    if isinstance(param, api.TextParam) and param.multiline:
        return MultilineEditor(param)
    for kind, editor in _EDITORS:
        if isinstance(param, kind):
            return editor(param)
    return TextEditor(param)


_EDITORS: tuple[tuple[type[api.Param], type[ParamEditor]], ...] = (
    (api.SeedParam, SeedEditor), (api.IntParam, IntEditor), (api.FloatParam, FloatEditor),
    (api.ChoiceParam, ChoiceEditor), (api.BoolParam, BoolEditor), (api.PathParam, PathEditor),
    (api.ModelParam, ModelEditor), (api.IntListParam, ListEditor), (api.FloatListParam, ListEditor),
    (api.SeedListParam, ListEditor),
)


class _EditCommand(QUndoCommand):
    """Undo record for one field; consecutive edits of the same field merge."""

    ID = 0x5157

    def __init__(self, form: "ParamForm", name: str, old: Any, new: Any):
        super().__init__(f"Change {name}")
        self.form, self.name, self.old, self.new = form, name, old, new
        self._first = True

    def id(self) -> int:
        return self.ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if isinstance(other, _EditCommand) and other.form is self.form and other.name == self.name:
            self.new = other.new
            return True
        return False

    def redo(self) -> None:
        if self._first:  # the widget already shows the new value
            self._first = False
            return
        self.form._apply_silently(self.name, self.new)

    def undo(self) -> None:
        self.form._apply_silently(self.name, self.old)


class ParamForm(QWidget):
    """The form of a tool (or of a settings page): one editor per declared parameter, the
    ``advanced`` ones folded away. ``values()`` -> dict name -> value; ``set_values(d)`` restores.

    ``exclude`` names parameters a custom panel edits with its own widgets (an image and the mask
    painted on it): the panel embeds this form for all the others, so nothing declared is left
    without an editor. ``undo_stack`` may be set after construction (the window gives its own).
    """

    changed = Signal()

    def __init__(self, tool: api.ToolSpec | api.SettingsSpec, parent: QWidget | None = None,
                 undo_stack: QUndoStack | None = None, session_images: Callable[[], list] | None = None,
                 exclude: Iterable[str] = ()):
        super().__init__(parent)
        self.tool = tool
        self.undo_stack = undo_stack
        self.editors: dict[str, ParamEditor] = {}
        self._errors: dict[str, QLabel] = {}
        self._last: dict[str, Any] = {}
        self._silent = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.setSpacing(6)
        form = self._new_form()
        outer.addLayout(form)
        self.layout_ = form
        self.advanced_box: QWidget | None = None
        adv_form: QFormLayout | None = None
        skip = set(exclude)
        for p in tool.params:
            if p.name in skip:
                continue
            target = form
            if p.advanced:
                if adv_form is None:
                    self.advanced_toggle = QToolButton()
                    self.advanced_toggle.setText("Advanced")
                    self.advanced_toggle.setCheckable(True)
                    self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
                    self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
                    self.advanced_box = QWidget()
                    adv_form = self._new_form()
                    adv_form.setContentsMargins(0, 0, 0, 0)
                    self.advanced_box.setLayout(adv_form)
                    self.advanced_box.hide()
                    self.advanced_toggle.toggled.connect(self._toggle_advanced)
                    outer.addWidget(self.advanced_toggle)
                    outer.addWidget(self.advanced_box)
                target = adv_form
            self._add_param(target, p, session_images)
        outer.addStretch(1)

    @staticmethod
    def _new_form() -> QFormLayout:
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(10)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        return form

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        if self.advanced_box is not None:
            self.advanced_box.setVisible(on)

    def _add_param(self, form: QFormLayout, p: api.Param, session_images: Callable[[], list] | None) -> None:
        ed = make_editor(p, session_images)
        default = p.default
        if default is not None:
            try:
                ed.set_value(default)
            except (ValueError, TypeError):
                pass
        ed.setObjectName(f"param_{ed.name}")
        tip = p.help
        label = QLabel(p.label + (" *" if p.required else ""))
        if p.required:  # an empty value is refused when the tool runs, with this field's name
            tip = (tip + "\n" if tip else "") + "Required: it must not be left empty."
        if tip:
            label.setToolTip(tip)
            ed.setToolTip(tip)
        err = QLabel()
        err.setObjectName("error")
        err.setStyleSheet("color: #e5484d;")
        err.setWordWrap(True)
        err.hide()
        box = QWidget()
        v = QVBoxLayout(box)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(2)
        v.addWidget(ed)
        v.addWidget(err)
        if isinstance(ed, MultilineEditor):
            form.addRow(label)
            form.addRow(box)
        else:
            form.addRow(label, box)
        self.editors[ed.name] = ed
        self._errors[ed.name] = err
        self._last[ed.name] = ed.value()
        ed.changed.connect(lambda n=ed.name: self._on_changed(n))

    # --- the model's vocabulary in the prompt boxes ----------------------------------------
    def set_vocabulary_source(self, vocabulary_of: Callable[[Any], Any] | None) -> None:
        """``vocabulary_of(model reference)`` gives the model's vocabulary
        (:class:`app.widgets.vocabulary.Vocabulary`) or None; the prompt boxes follow the model
        chosen in this form (or the tool's default model)."""
        self._vocabulary_of = vocabulary_of
        for ed in self.editors.values():
            if isinstance(ed, ModelEditor) and not getattr(ed, "_vocabulary_wired", False):
                ed.changed.connect(self._update_vocabulary)
                ed._vocabulary_wired = True
        self._update_vocabulary()

    def _update_vocabulary(self) -> None:
        fn = getattr(self, "_vocabulary_of", None)
        prompts = [ed for n, ed in self.editors.items() if isinstance(ed, MultilineEditor) and "prompt" in n]
        if not prompts:
            return
        model = next((ed.value() for ed in self.editors.values() if isinstance(ed, ModelEditor)), None)
        if model is None:
            model = next((p.default for p in self.tool.params if isinstance(p, api.ModelParam)), None)
        vocab = fn(model) if fn is not None and model else None
        for ed in prompts:
            ed.set_vocabulary(vocab)

    # --- values -------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        return {n: e.value() for n, e in self.editors.items()}

    def set_values(self, values: dict[str, Any], record_undo: bool = True) -> list[str]:
        """Set known fields; returns names that could not be set (unknown or invalid)."""
        bad = []
        old = self.values()
        self._silent = True
        try:
            for k, v in values.items():
                ed = self.editors.get(k)
                if ed is None:
                    bad.append(k)
                    continue
                try:
                    ed.set_value(v)
                except (ValueError, TypeError):
                    bad.append(k)
        finally:
            self._silent = False
        new = self.values()
        if self.undo_stack is not None and record_undo and new != old:
            self.undo_stack.push(_BulkCommand(self, old, new))
        self._last = dict(new)
        self.changed.emit()
        return bad

    def _apply_silently(self, name: str, value: Any) -> None:
        ed = self.editors.get(name)
        if ed is None:
            return
        self._silent = True
        try:
            ed.set_value(value)
        finally:
            self._silent = False
        self._last[name] = ed.value()
        self.changed.emit()

    def _on_changed(self, name: str) -> None:
        self.clear_error(name)
        if self._silent:
            return
        new = self.editors[name].value()
        old = self._last.get(name)
        self._last[name] = new
        if self.undo_stack is not None and new != old:
            self.undo_stack.push(_EditCommand(self, name, old, new))
        self.changed.emit()

    # --- errors --------------------------------------------------------------------
    def show_error(self, name: str | None, message: str) -> bool:
        """Show ``message`` under the field ``name``; False if there is no such field."""
        lab = self._errors.get(name or "")
        if lab is None:
            return False
        if self.advanced_box is not None and self.advanced_box.isAncestorOf(lab):
            self.advanced_toggle.setChecked(True)
        lab.setText(message)
        lab.show()
        self.editors[name].focus_widget().setFocus()
        return True

    def clear_error(self, name: str) -> None:
        lab = self._errors.get(name)
        if lab is not None:
            lab.hide()
            lab.clear()

    def clear_errors(self) -> None:
        for n in self._errors:
            self.clear_error(n)

    def error_text(self, name: str) -> str:
        lab = self._errors.get(name)
        return lab.text() if lab is not None and not lab.isHidden() else ""


class _BulkCommand(QUndoCommand):
    def __init__(self, form: ParamForm, old: dict, new: dict):
        super().__init__("Restore parameters")
        self.form, self.old, self.new = form, old, new
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        for k, v in self.new.items():
            self.form._apply_silently(k, v)

    def undo(self) -> None:
        for k, v in self.old.items():
            self.form._apply_silently(k, v)
