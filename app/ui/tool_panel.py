"""The left panel: the tool list grouped by plugin, the selected tool's form, and the Run button.

A tool whose ``panel`` names a custom widget factory gets that widget instead of the generated
form (it must offer ``values()``; ``set_values()``, ``show_error()``, ``clear_errors()`` and
``editor_widgets()`` are used when present). A custom panel embeds the generated form for the
parameters it does not edit itself (see :class:`app.widgets.image_panel.ImageEditPanel`). A panel
with a canvas gives it to the window's centre area through ``centre_widget()``
(:mod:`app.widgets.centre`; ``canvasChanged`` carries it). A panel that fails to load falls back to
the generated form and the error is reported.

Spin boxes, sliders and combo boxes in the panel take the mouse wheel only when they have the
keyboard focus, so scrolling the panel never changes a value (:mod:`app.widgets.wheel`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QUndoStack
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.flow import ElidedLabel
from app.widgets.icons import std

if TYPE_CHECKING:
    from app.widgets.form import ParamEditor, ParamForm

log = logging.getLogger("implicit_studio.ui.tools")

GROUP_ICONS = {
    "generate": "FileDialogNewFolder",
    "edit": "FileDialogDetailedView",
    "inpaint": "DialogResetButton",
    "view3d": "ComputerIcon",
    "rl": "MediaSeekForward",
    "analysis": "FileDialogInfoView",
}

ResultFile = Callable[[int], Optional[Path]]  # session result id -> its file, or None


class PanelFormAdapter:
    """Gives a plugin's custom panel the ``ParamForm`` interface the window uses.

    Image parameters set to a session result (``"result:<id>"``) reach the panel as the result's
    file; the run gets the reference back (so lineage is recorded) while the panel still shows
    that file."""

    def __init__(self, widget: QWidget, tool: api.ToolSpec, result_file: Optional[ResultFile] = None,
                 result_caption: Optional[Callable[[int], str]] = None):
        self.widget = widget
        self.tool = tool
        self._result_file = result_file
        self._result_caption = result_caption  # result id -> "run #3 text-to-image, image"
        self._refs: dict[str, tuple[str, str]] = {}  # parameter -> (file shown, result reference)
        embedded = getattr(widget, "form", None)
        # the editors of the generated form a panel embeds (``widget.form``), by parameter
        self.editors: dict[str, ParamEditor] = dict(getattr(embedded, "editors", {}) or {})

    def values(self) -> dict[str, Any]:
        vals = dict(self.widget.values())
        for key, (shown, ref) in list(self._refs.items()):
            if isinstance(vals.get(key), str) and vals[key] == shown:
                vals[key] = ref
            else:  # the user chose another image in the panel
                del self._refs[key]
        return vals

    def editor_names(self) -> set[str]:
        """The parameters this panel has an editor for."""
        fn = getattr(self.widget, "editor_widgets", None)
        if fn is not None:
            return set(fn())
        return {p.name for p in self.tool.params if getattr(self.widget, p.name, None) is not None}

    def _resolve(self, ref: str) -> Optional[str]:
        try:
            path = self._result_file(int(ref[len(api.RESULT_REF_PREFIX):])) if self._result_file else None
        except (ValueError, LookupError, OSError):
            path = None
        return str(path) if path is not None else None

    def set_values(self, values: dict[str, Any], record_undo: bool = True) -> list[str]:
        """Set what the panel can take (its own ``set_values`` when it has one, else the image
        through ``open_image`` and text fields named like the parameters); returns the names
        not set."""
        values = dict(values)
        bad: list[str] = []
        refs: dict[str, tuple[str, str]] = {}
        for p in self.tool.params:
            v = values.get(p.name)
            if isinstance(p, api.ImageParam) and isinstance(v, str) and v.startswith(api.RESULT_REF_PREFIX):
                path = self._resolve(v)
                if path is None:
                    del values[p.name]
                    bad.append(p.name)
                    continue
                values[p.name], refs[p.name] = path, (path, v)
        fn = getattr(self.widget, "set_values", None)
        if fn is not None:
            bad += list(fn(values) or [])
        else:
            bad += [k for k, v in values.items() if not self._set_one(k, v)]
        self._refs.update({k: r for k, r in refs.items() if k not in bad})
        show = getattr(self.widget, "show_source", None)
        for k, (_path, ref) in refs.items():
            if k not in bad and callable(show) and self._result_caption is not None:
                try:
                    caption = self._result_caption(int(ref[len(api.RESULT_REF_PREFIX):]))
                except (ValueError, LookupError, OSError):
                    caption = ""
                if caption:
                    show(k, caption)  # the result's name, not its file's content hash
        return bad

    def _set_one(self, key: str, value: Any) -> bool:
        image_keys = {p.name for p in self.tool.params if isinstance(p, api.ImageParam)}
        opener = getattr(self.widget, "open_image", None)
        if key in image_keys and isinstance(value, str) and callable(opener):
            return bool(opener(value))
        w = getattr(self.widget, key, None)
        text = "" if value is None else str(value)
        if isinstance(w, QLineEdit):
            w.setText(text)
            return True
        if isinstance(w, (QPlainTextEdit, QTextEdit)):
            w.setPlainText(text)
            return True
        return False

    def show_error(self, name: str | None, message: str) -> bool:
        fn = getattr(self.widget, "show_error", None)
        if fn is not None:
            return bool(fn(name, message))
        return False

    def clear_errors(self) -> None:
        fn = getattr(self.widget, "clear_errors", None)
        if fn is not None:
            fn()


class ToolPanel(QWidget):
    toolSelected = Signal(object)  # ToolSpec
    toolCleared = Signal()
    runRequested = Signal()
    canvasChanged = Signal(object)  # the selected panel's centre widget, or None
    FORM_MAX_FIT = 360  # widest form (px) the panel widens to show whole; wider ones scroll sideways

    def __init__(self, undo_stack: QUndoStack | None = None, session_images: Callable[[], list] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.undo_stack = undo_stack
        self.session_images = session_images
        self.tools: dict[str, api.ToolSpec] = {}
        self.current_tool: Optional[api.ToolSpec] = None
        self.form: Optional[ParamForm | PanelFormAdapter] = None
        self.panel_errors: dict[str, str] = {}
        self.result_file: Optional[ResultFile] = None  # session result id -> file (set by the window)
        self.result_caption: Optional[Callable[[int], str]] = None  # result id -> its name (set by the window)
        self.vocabulary_of: Optional[Callable[[Any], Any]] = None  # model reference -> its vocabulary (the window's)
        self.canvas: Optional[QWidget] = None  # the centre widget of the selected panel
        self._sent: dict[str, tuple[str, Optional[int]]] = {}  # parameter -> (file sent, its run)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search tools…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIndentation(14)
        self.tree.setIconSize(QSize(16, 16))
        self.tree.currentItemChanged.connect(self._on_current)
        tools_box = QWidget()
        tv = QVBoxLayout(tools_box)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.setSpacing(6)
        tv.addWidget(self.search)
        tv.addWidget(self.tree, 1)

        self.title = ElidedLabel("Choose a tool")  # a long tool title is cut, never widens the panel
        self.title.setObjectName("title")
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("muted")
        self.subtitle.setWordWrap(True)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.run_btn = QPushButton("Generate")
        self.run_btn.setObjectName("primary")  # its icon is set after the first paint (SVG)
        self.run_btn.setToolTip("Run the tool with these parameters (Ctrl+Enter)")
        self.run_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.runRequested.emit)
        self.reset_btn = QPushButton("Defaults")
        self.reset_btn.setIcon(std("DialogResetButton"))
        self.reset_btn.setToolTip("Reset every parameter to its default")
        self.reset_btn.clicked.connect(self.reset_defaults)
        self.reset_btn.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.reset_btn)
        buttons.addWidget(self.run_btn, 1)
        form_box = QWidget()
        fv = QVBoxLayout(form_box)
        fv.setContentsMargins(0, 4, 0, 0)
        fv.setSpacing(6)
        fv.addWidget(self.title)
        fv.addWidget(self.subtitle)
        fv.addWidget(self.scroll, 1)
        fv.addLayout(buttons)

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(tools_box)
        self.split.addWidget(form_box)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([260, 560])
        self.split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.split)

    # --- tool list ------------------------------------------------------------------
    def set_tools(self, tools: list[api.ToolSpec], plugin_titles: dict[str, str] | None = None) -> None:
        current = self.current_tool.id if self.current_tool is not None else None
        self.tree.clear()
        self.tools = {t.id: t for t in tools}
        groups: dict[str, QTreeWidgetItem] = {}
        icons: dict[str, QIcon] = {}
        folder = std("DirIcon")
        for t in sorted(tools, key=lambda t: (t.plugin.lower(), t.title.lower())):
            plugin = t.plugin or "other"
            g = groups.get(plugin)
            if g is None:
                title = (plugin_titles or {}).get(plugin) or plugin.replace("_", " ").replace("-", " ").capitalize()
                g = QTreeWidgetItem([title])
                g.setFlags(Qt.ItemFlag.ItemIsEnabled)
                f = g.font(0)
                f.setBold(True)
                g.setFont(0, f)
                g.setIcon(0, folder)
                self.tree.addTopLevelItem(g)
                groups[plugin] = g
            it = QTreeWidgetItem([t.title])
            it.setData(0, Qt.ItemDataRole.UserRole, t.id)
            it.setToolTip(0, f"{t.id}\n{t.description}".strip())
            name = GROUP_ICONS.get(t.group, "FileIcon")
            if name not in icons:
                icons[name] = std(name)
            it.setIcon(0, icons[name])
            g.addChild(it)
        self.tree.expandAll()
        if current and current in self.tools:
            self.select_tool(current)
        elif current:
            self.clear_tool()  # its plugin was disabled or removed

    def clear_tool(self) -> None:
        """No tool selected: empty form, Run disabled."""
        self.current_tool = None
        self.form = None
        self._set_canvas(None)
        old = self.scroll.takeWidget()
        if old is not None:
            old.deleteLater()
        self.title.set_full_text("Choose a tool")
        self.subtitle.setText("")
        self.run_btn.setEnabled(False)
        self.reset_btn.setEnabled(False)
        self.toolCleared.emit()

    def _filter(self, text: str) -> None:
        text = text.strip().lower()
        for i in range(self.tree.topLevelItemCount()):
            g = self.tree.topLevelItem(i)
            visible = 0
            for j in range(g.childCount()):
                c = g.child(j)
                tid = c.data(0, Qt.ItemDataRole.UserRole)
                tool = self.tools.get(tid)
                hay = f"{c.text(0)} {tid} {tool.description if tool is not None else ''}".lower()
                hide = bool(text) and text not in hay
                c.setHidden(hide)
                visible += not hide
            g.setHidden(visible == 0)

    def select_tool(self, tool_id: str) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            g = self.tree.topLevelItem(i)
            for j in range(g.childCount()):
                c = g.child(j)
                if c.data(0, Qt.ItemDataRole.UserRole) == tool_id:
                    self.tree.setCurrentItem(c)
                    return True
        return False

    def _on_current(self, item: QTreeWidgetItem | None, _prev=None) -> None:
        if item is None:
            return
        tid = item.data(0, Qt.ItemDataRole.UserRole)
        if tid is None or tid not in self.tools:
            return
        tool = self.tools[tid]
        if tool is self.current_tool:
            return
        self._build_form(tool)
        self.toolSelected.emit(tool)

    # --- form -----------------------------------------------------------------------
    def _build_form(self, tool: api.ToolSpec) -> None:
        self.current_tool = tool
        self.title.set_full_text(tool.title)
        desc = tool.description
        self.subtitle.setText(self._short(desc))
        self.subtitle.setToolTip(desc if self._short(desc) != desc else "")
        self.subtitle.setVisible(bool(desc))
        old = self.scroll.takeWidget()
        self._set_canvas(None)  # the old panel's canvas leaves the centre with it
        self._sent.clear()
        if old is not None:
            old.deleteLater()
        from app.widgets.form import ParamForm  # noqa: PLC0415 - built after the first paint
        from app.widgets.wheel import guard_wheel  # noqa: PLC0415

        form: Optional[ParamForm | PanelFormAdapter] = None
        panel_ref = tool.panel
        if panel_ref:
            try:
                from app.api import load_ref  # noqa: PLC0415

                w = load_ref(panel_ref)(tool=tool, parent=None)
                if not hasattr(w, "values"):
                    raise TypeError(f"panel {panel_ref} has no values() method")
                form = PanelFormAdapter(w, tool, self.result_file, self.result_caption)
                embedded = getattr(w, "form", None)
                if isinstance(embedded, ParamForm):  # the panel's generated form joins the window's undo
                    embedded.undo_stack = self.undo_stack
                    embedded.set_vocabulary_source(self.vocabulary_of)
                centre = getattr(w, "centre_widget", None)
                canvas = centre() if callable(centre) else None
                self.scroll.setWidget(w)
                self._set_canvas(canvas)
            except Exception as exc:
                msg = f"The custom panel of {tool.id} could not be opened ({type(exc).__name__}: {exc}); using the standard form."
                log.exception(msg)
                self.panel_errors[tool.id] = msg
                form = None
        if form is None:
            form = ParamForm(tool, undo_stack=self.undo_stack, session_images=self.session_images)
            form.set_vocabulary_source(self.vocabulary_of)
            self.scroll.setWidget(form)
        guard_wheel(self.scroll.widget())
        self._fit_width()
        self.form = form
        self.run_btn.setEnabled(True)
        self.reset_btn.setEnabled(True)
        self.run_btn.setText(self._run_label(tool))

    def _set_canvas(self, canvas: Optional[QWidget]) -> None:
        if canvas is self.canvas:
            return
        self.canvas = canvas
        self.canvasChanged.emit(canvas)

    # --- files sent to the tool (lineage) ------------------------------------------------------
    def remember_source(self, param: str, path: str, run_id: Optional[int], label: str = "") -> None:
        """``param`` was given ``path``, a file of run ``run_id`` ("Send to"): a run made with it
        records that run as its parent, and the field names the run rather than the file's
        content-hash name."""
        self._sent[param] = (path, run_id)
        ed = getattr(self.form, "editors", {}).get(param) if self.form is not None else None
        show = getattr(ed, "show_source", None)
        if callable(show) and label:
            show(label)

    def sent_parents(self, values: dict[str, Any]) -> list[int]:
        """The runs whose files the values still hold (the parents of a run made with them)."""
        out = []
        for param, (path, run_id) in self._sent.items():
            if run_id is not None and values.get(param) == path and run_id not in out:
                out.append(run_id)
        return out

    def _fit_width(self) -> None:
        """Keep the form whole: a viewport narrower than the form's minimum width hid its right edge
        (spin boxes, the end of a wrapped prompt line). The panel widens to fit a form up to
        FORM_MAX_FIT pixels; a wider custom panel gets a horizontal scroll bar instead of taking the
        window's centre."""
        w = self.scroll.widget()
        if w is None:
            return
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        need = w.minimumSizeHint().width() + bar + 2 * self.scroll.frameWidth()
        self.scroll.setMinimumWidth(min(need, self.FORM_MAX_FIT))

    @staticmethod
    def _short(text: str, limit: int = 150) -> str:
        """The description, cut at a sentence or word end so it takes at most ~3 lines."""
        text = " ".join(text.split())
        if len(text) <= limit:
            return text
        cut = text[:limit]
        end = cut.rfind(". ")
        if end > limit // 2:
            return cut[: end + 1]
        return cut[: cut.rfind(" ")].rstrip(",;:") + "…"

    @staticmethod
    def _run_label(tool: api.ToolSpec) -> str:
        group = tool.group
        return {"generate": "Generate", "edit": "Apply edit", "inpaint": "Inpaint"}.get(group, "Run")

    def values(self) -> dict[str, Any]:
        return self.form.values() if self.form is not None else {}

    def set_values(self, values: dict[str, Any], record_undo: bool = True) -> list[str]:
        if self.form is None:
            return list(values)
        return self.form.set_values(values, record_undo=record_undo)

    def reset_defaults(self) -> None:
        if self.current_tool is None:
            return
        self.set_values(self.current_tool.defaults())


_ACRONYMS = {"rl", "inr", "sdf", "ai", "gan", "vae", "onnx", "3d", "2d"}


def plugin_title(name: str) -> str:
    """``"text_to_image"`` -> ``"Text to image"``, ``"rl"`` -> ``"RL"``, ``"h_edit"`` -> ``"h-Edit"``
    (a one-letter first word is a prefix, as in the method's name, not "H edit")."""
    words = [w.upper() if w in _ACRONYMS else w for w in name.replace("_", " ").replace("-", " ").split()]
    if not words:
        return name
    if len(words) > 1 and len(words[0]) == 1 and words[0].isalpha():
        return " ".join([f"{words[0].lower()}-{words[1].capitalize()}"] + words[2:])
    first = words[0] if words[0].isupper() else words[0].capitalize()
    return " ".join([first] + words[1:])
