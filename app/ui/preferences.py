"""Preferences: the compute device and precision, and one page per plugin settings page (``studio_settings``
hook), each built from its typed parameters like a tool form. Values are checked with the
parameters' own validation and stored in the user's settings; runs read them through
``RunContext.setting``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from app.api import SettingsSpec
    from app.settings import Settings
    from app.widgets.form import ParamForm

DEVICES = (("auto", "Automatic (CUDA, then Apple MPS, then CPU)"), ("cpu", "CPU"), ("cuda", "NVIDIA CUDA"),
           ("mps", "Apple MPS"))
PRECISIONS = (("auto", "Automatic (float16 on CUDA, float32 elsewhere)"), ("fp32", "float32"),
              ("fp16", "float16 (on the CPU: float32)"), ("bf16", "bfloat16 (CPUs; GPUs from NVIDIA Ampere on)"))


class PreferencesDialog(QDialog):
    def __init__(self, settings: Settings, pages: list[SettingsSpec], parent: QWidget | None = None):
        """``pages``: :class:`app.api.SettingsSpec` records from the plugins."""
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.resize(760, 480)
        self.settings = settings
        self.pages = list(pages)
        self.forms: dict[str, ParamForm] = {}
        self.nav = QListWidget()
        self.nav.setMaximumWidth(220)
        self.stack = QStackedWidget()
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)

        general = QWidget()
        gl = QFormLayout(general)
        self.device = QComboBox()
        for value, label in DEVICES:
            self.device.addItem(label, value)
        current = settings.device or "auto"
        i = self.device.findData(current)
        if i < 0:
            self.device.addItem(current, current)
            i = self.device.count() - 1
        self.device.setCurrentIndex(i)
        gl.addRow("Compute device", self.device)
        self.precision = QComboBox()
        for value, label in PRECISIONS:
            self.precision.addItem(label, value)
        j = self.precision.findData(settings.precision or "auto")
        self.precision.setCurrentIndex(max(j, 0))
        self.precision.setToolTip("The arithmetic of the models' passes. float16 on the CPU computes in float32 (torch "
                                  "emulates float16 there, many times slower); bfloat16 on a GPU without it refuses "
                                  "the run with a message.")
        gl.addRow("Precision", self.precision)
        note = QLabel("Used by new runs. The command line's --device and --precision override them for one run.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        gl.addRow("", note)
        self._add_page("General", general)

        from app.widgets.form import ParamForm  # noqa: PLC0415

        stored = settings.plugin_settings()
        for spec in self.pages:
            form = ParamForm(spec)
            values = {k: v for k, v in (stored.get(spec.section) or {}).items()}
            if values:
                form.set_values(values, record_undo=False)
            self.forms[spec.section] = form
            box = QScrollArea()
            box.setWidgetResizable(True)
            box.setWidget(form)
            title = f"{spec.title}" + (f"  ({spec.plugin})" if getattr(spec, "plugin", "") else "")
            self._add_page(title, box)

        self.error = QLabel()
        self.error.setStyleSheet("color: #e5484d;")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        split = QSplitter()
        split.addWidget(self.nav)
        split.addWidget(self.stack)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.nav.setCurrentRow(0)

    def _add_page(self, title: str, widget: QWidget) -> None:
        self.nav.addItem(title)
        self.stack.addWidget(widget)

    def save(self) -> bool:
        """Validate every page; store the values and close, or show the first problem."""
        from app.api import ParamError  # noqa: PLC0415

        checked: dict[str, dict] = {}
        for row, spec in enumerate(self.pages, start=1):
            form = self.forms[spec.section]
            form.clear_errors()
            out = {}
            for p in spec.params:
                name = p.name
                try:
                    out[name] = p.to_json(p.validate(form.values()[name]))
                except ParamError as exc:
                    self.nav.setCurrentRow(row)
                    form.show_error(name, exc.message)
                    self.error.setText(f"{spec.title}: {exc.message}")
                    self.error.show()
                    return False
            checked[spec.section] = out
        self.settings.set("device", self.device.currentData())
        self.settings.set("precision", self.precision.currentData())
        for section, values in checked.items():
            for name, value in values.items():
                self.settings.set_plugin_setting(section, name, value)
        self.error.hide()
        self.accept()
        return True
