"""Viewers for results, keyed by result kind.

Built-in viewers cover images, masks, tables (a table whose first column is a step is also drawn
as curves) and plain files. Plugins add viewers through the ``studio_viewers`` hook
(:class:`app.api.ViewerSpec`): ``widget`` names a factory called as ``Factory(parent=None)`` whose
widget has ``set_result(result)``. The viewer with the highest priority for a kind wins; plugin
viewers beat built-ins of equal kind.

A viewer class may say which results of its kind it shows with a class method
``accepts(result) -> bool`` (a denoising-trajectory viewer takes the ``file`` results that hold a
denoising trajectory, not a network's weights): the registry then gives each result the first
viewer, by priority, that accepts it, and the generic viewer when none does. A viewer whose factory
fails is reported and the next one is used, so one broken plugin cannot blank the window.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import api
from app.widgets.image_view import ImageView
from app.widgets.plot import LinePlot

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


#: First-column names that make a table a series of steps, drawn as curves above the table.
STEP_COLUMNS = ("step", "steps", "episode", "epoch", "iteration", "env step", "env steps")


def curves_of(result: api.Result) -> Optional[tuple[str, list[float], dict[str, list[float]]]]:
    """(x name, x, {column: values}) when ``result`` is a table of numbers against a step (its
    first column), else None."""
    cols = [str(c) for c in getattr(result, "columns", ())]
    rows = list(getattr(result, "rows", ()))
    if len(cols) < 2 or len(rows) < 2 or cols[0].strip().lower() not in STEP_COLUMNS:
        return None

    def number(v: Any) -> Optional[float]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        return float(v)

    x = [number(r[0]) if len(r) > 0 else None for r in rows]
    if any(v is None for v in x):
        return None
    series = {}
    for j in range(1, len(cols)):
        ys = [number(r[j]) if len(r) > j else None for r in rows]
        if all(v is not None for v in ys):
            series[cols[j]] = ys
    return (cols[0], x, series) if series else None


class TableResultViewer(QWidget):
    """A table; one whose first column is a step (a fit's loss and PSNR, a training's returns) is
    also drawn as curves above it (:func:`curves_of`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = LinePlot()
        self.table = QTableWidget()
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self.plot)
        self.split.addWidget(self.table)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)
        self.plot.hide()

    def rowCount(self) -> int:  # noqa: N802 - the table's
        return self.table.rowCount()

    def horizontalHeaderItem(self, column: int) -> QTableWidgetItem:  # noqa: N802 - the table's
        return self.table.horizontalHeaderItem(column)

    def set_result(self, result: api.TableResult) -> None:
        cols = list(getattr(result, "columns", ()))
        rows = list(getattr(result, "rows", ()))
        t = self.table
        t.clear()
        t.setColumnCount(len(cols))
        t.setRowCount(len(rows))
        t.setHorizontalHeaderLabels([str(c) for c in cols])
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                t.setItem(r, c, QTableWidgetItem(f"{v:.6g}" if isinstance(v, float) else str(v)))
        t.resizeColumnsToContents()
        curves = curves_of(result)
        self.plot.setVisible(curves is not None)
        if curves is not None:
            x_name, x, series = curves
            self.plot.set_data(x, series, x_label=x_name)


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
    accepts: Optional[Callable[[api.Result], bool]] = None  # None: every result of the kind


class ViewerRegistry:
    """Which widget shows which result (see the module docstring)."""

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

        def accepts(result: api.Result, ref: str = ref) -> bool:
            from app.api import load_ref  # noqa: PLC0415

            fn = getattr(load_ref(ref), "accepts", None)
            return True if fn is None else bool(fn(result))

        self.add(ViewerEntry(spec.id, spec.title, spec.kind, factory, int(getattr(spec, "priority", 0)),
                             getattr(spec, "plugin", ""), accepts))

    def entries(self, kind: str) -> list[ViewerEntry]:
        return list(self._entries.get(kind, []))

    def kinds(self) -> list[str]:
        return sorted(self._entries)

    def choose(self, kind: str, result: Optional[api.Result] = None) -> Optional[ViewerEntry]:
        """The viewer for ``result``: the first of its kind, by priority, that accepts it and has
        not failed; None when none does (the generic viewer then shows it)."""
        failed = {i for i, _ in self.errors}
        for e in self.entries(kind):
            if e.id in failed:
                continue
            if result is None or e.accepts is None:
                return e
            try:
                if e.accepts(result):
                    return e
            except Exception as exc:  # a plugin's check failed: report it, try the next viewer
                msg = f"viewer {e.id!r} ({e.plugin or 'built-in'}) failed: {type(exc).__name__}: {exc}"
                log.exception(msg)
                self.errors.append((e.id, msg))
        return None

    def create(self, kind: str, viewer_id: str | None = None,
               result: Optional[api.Result] = None) -> tuple[QWidget, ViewerEntry | None, str]:
        """A viewer widget for ``kind`` (``viewer_id`` first; with ``result``, only viewers that
        accept it): (widget, entry or None for the fallback, error text)."""
        errors: list[str] = []
        while True:
            e = self._first_unfailed(kind, viewer_id, result)
            if e is None:
                return GenericResultViewer(), None, "\n".join(errors)
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

    def _first_unfailed(self, kind: str, viewer_id: str | None, result: Optional[api.Result]) -> Optional[ViewerEntry]:
        failed = {i for i, _ in self.errors}
        wanted = next((e for e in self.entries(kind) if e.id == viewer_id and e.id not in failed), None)
        if wanted is not None and (result is None or wanted.accepts is None or self.choose(kind, result) is wanted):
            return wanted
        return self.choose(kind, result)
