"""Viewers for results, keyed by result kind.

Built-in viewers cover images, masks, tables and plain files. Plugins add viewers through the
``studio_viewers`` hook (:class:`app.api.ViewerSpec`): ``widget`` names a factory called as
``Factory(parent=None)`` whose widget has ``set_result(result)``. The viewer with the highest
priority for a kind wins; plugin viewers beat built-ins of equal kind. A viewer whose factory
fails is reported and the generic viewer is used, so one broken plugin cannot blank the window.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.image_view import ImageView

log = logging.getLogger("implicit_studio.ui.viewers")


def result_kind(result: api.Result) -> str:
    return result.kind or "file"


class ImageResultViewer(ImageView):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, placeholder="No image")

    def set_result(self, result: api.Result, keep_view: bool = False) -> None:
        data = getattr(result, "image", None)
        if data is None:
            data = getattr(result, "mask", None)
        self.set_image(data if data is not None else result, keep_view=keep_view)


class TableResultViewer(QTableWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlternatingRowColors(True)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)

    def set_result(self, result: api.TableResult) -> None:
        cols = list(getattr(result, "columns", ()))
        rows = list(getattr(result, "rows", ()))
        self.clear()
        self.setColumnCount(len(cols))
        self.setRowCount(len(rows))
        self.setHorizontalHeaderLabels([str(c) for c in cols])
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                self.setItem(r, c, QTableWidgetItem(f"{v:.6g}" if isinstance(v, float) else str(v)))
        self.resizeColumnsToContents()


class GenericResultViewer(QWidget):
    """Fallback: what the result is (kind, label, metadata) and, for files, the path."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel()
        self.title.setObjectName("title")
        self.note = QLabel()
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.addWidget(self.title)
        lay.addWidget(self.note)
        lay.addWidget(self.details, 1)

    def set_result(self, result: api.Result, note: str = "") -> None:
        kind = result_kind(result)
        self.title.setText(f"{kind.capitalize()} result" + (f" — {result.label}" if getattr(result, "label", "") else ""))
        self.note.setText(note or "No viewer is installed for this kind of result; its details are shown instead.")
        info: dict[str, Any] = {}
        for attr in ("path", "ext", "metadata", "shape", "representation", "bounds"):
            v = getattr(result, attr, None)
            if v is not None and v != {} and v != "":
                info[attr] = v
        for attr in ("values", "weights", "vertices", "faces"):
            v = getattr(result, attr, None)
            if v is not None and hasattr(v, "shape"):
                info[f"{attr}.shape"] = list(v.shape)
        self.details.setPlainText(json.dumps(info, indent=2, default=str) if info else repr(result))


@dataclass
class ViewerEntry:
    id: str
    title: str
    kind: str
    factory: Callable[[], QWidget]
    priority: int = 0
    plugin: str = ""


class ViewerRegistry:
    """Which widget shows which result kind."""

    def __init__(self) -> None:
        self._entries: dict[str, list[ViewerEntry]] = {}
        self.add(ViewerEntry("builtin-image", "Image", "image", ImageResultViewer, -10))
        self.add(ViewerEntry("builtin-mask", "Mask", "mask", ImageResultViewer, -10))
        self.add(ViewerEntry("builtin-table", "Table", "table", TableResultViewer, -10))
        self.errors: list[tuple[str, str]] = []

    def add(self, entry: ViewerEntry) -> None:
        lst = self._entries.setdefault(entry.kind, [])
        lst[:] = [e for e in lst if e.id != entry.id] + [entry]
        lst.sort(key=lambda e: -e.priority)

    def add_spec(self, spec: api.ViewerSpec) -> None:
        """Register an :class:`app.api.ViewerSpec` from a plugin (its factory is loaded lazily)."""
        ref = spec.widget

        def factory(ref: str = ref) -> QWidget:
            from app.api import load_ref  # noqa: PLC0415

            return load_ref(ref)(parent=None)

        self.add(ViewerEntry(spec.id, spec.title, spec.kind, factory, int(getattr(spec, "priority", 0)), getattr(spec, "plugin", "")))

    def entries(self, kind: str) -> list[ViewerEntry]:
        return list(self._entries.get(kind, []))

    def kinds(self) -> list[str]:
        return sorted(self._entries)

    def create(self, kind: str, viewer_id: str | None = None) -> tuple[QWidget, ViewerEntry | None, str]:
        """A viewer widget for ``kind``: (widget, entry or None for the fallback, error text)."""
        errors = []
        candidates = self.entries(kind)
        if viewer_id:
            candidates.sort(key=lambda e: e.id != viewer_id)
        for e in candidates:
            try:
                w = e.factory()
                if not hasattr(w, "set_result"):
                    raise TypeError(f"viewer {e.id!r} made a {type(w).__name__} without set_result()")
                return w, e, ""
            except Exception as exc:  # a plugin's viewer failed: report it and try the next one
                msg = f"viewer {e.id!r} ({e.plugin or 'built-in'}) failed: {type(exc).__name__}: {exc}"
                log.exception(msg)
                self.errors.append((e.id, msg))
                errors.append(msg)
        return GenericResultViewer(), None, "\n".join(errors)
