"""The Plugins dialog: every plugin with its version, author, state (loaded / failed / disabled /
incompatible) and, for a failed one, the error with its traceback. Ticking a plugin on or off
is remembered in the settings and takes effect at the next start (or at once when the plugin
manager supports reloading)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.plugin_history import describe_error
from app.plugins import PluginRecord

STATE_COLORS = {"loaded": "#30a46c", "ok": "#30a46c", "failed": "#e5484d", "incompatible": "#d9a000", "disabled": "#8b8d98"}


def plugin_info(rec: PluginRecord) -> dict[str, Any]:
    return {
        "name": rec.name,
        "version": rec.version or "",
        "author": rec.author or "",
        "state": rec.status,
        "error": rec.error or "",
        "traceback": rec.traceback or "",
        "source": rec.source,
        "description": rec.summary,
        "builtin": rec.builtin,
        "tools": list(rec.tools),
        "load_ms": rec.load_ms,
        "warnings": list(rec.warnings),
        "runtime_errors": list(rec.runtime_errors),
        "earlier_errors": [describe_error(e) + ("\n" + e["traceback"].rstrip() if e.get("traceback") else "")
                           for e in rec.earlier_errors],
    }


class PluginsDialog(QDialog):
    COLS = ("On", "Plugin", "State", "Version", "Author")

    def __init__(self, records: Iterable[PluginRecord], set_enabled: Callable[[str, bool], Any] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(900, 540)
        self._set_enabled = set_enabled
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(self.COLS))
        self.tree.setHeaderLabels(self.COLS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.details_title = QLabel()
        self.details_title.setObjectName("title")
        self.details_sub = QLabel()
        self.details_sub.setObjectName("muted")
        self.details_sub.setWordWrap(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        f = self.details.font()
        f.setFamily("monospace")
        self.details.setFont(f)
        self.note = QLabel("Untick a plugin to switch it off; the choice applies at once and is remembered.")
        self.note.setObjectName("muted")
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(8, 0, 0, 0)
        rv.addWidget(self.details_title)
        rv.addWidget(self.details_sub)
        rv.addWidget(self.details, 1)
        split = QSplitter()
        split.addWidget(self.tree)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([420, 420])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addWidget(self.note)
        lay.addWidget(buttons)
        self.infos: dict[str, dict] = {}
        self.changed: dict[str, bool] = {}
        self._filling = False
        self.set_records(records)
        self.tree.currentItemChanged.connect(lambda cur, _prev: self._show(cur))
        self.tree.itemChanged.connect(self._on_item_changed)
        if self.tree.topLevelItemCount():
            def _notable(i: int) -> bool:
                info = self.infos[self.tree.topLevelItem(i).data(1, Qt.ItemDataRole.UserRole)]
                return info["state"] == "failed" or bool(info["runtime_errors"] or info["earlier_errors"])

            failed = [i for i in range(self.tree.topLevelItemCount()) if _notable(i)]
            self.tree.setCurrentItem(self.tree.topLevelItem(failed[0] if failed else 0))

    def set_records(self, records: Iterable[PluginRecord]) -> None:
        self._filling = True
        self.tree.clear()
        self.infos.clear()
        for rec in records:
            info = plugin_info(rec)
            self.infos[info["name"]] = info
            item = QTreeWidgetItem(["", info["name"], info["state"], info["version"], info["author"]])
            item.setData(1, Qt.ItemDataRole.UserRole, info["name"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Unchecked if info["state"] == "disabled" else Qt.CheckState.Checked)
            color = STATE_COLORS.get(info["state"])
            if color:
                item.setForeground(2, QBrush(QColor(color)))
            notes = [info["error"]] if info["error"] else []
            n_errors = len(info["runtime_errors"]) + len(info["earlier_errors"])
            if n_errors:
                notes.append(f"{n_errors} run-time error{'s' if n_errors != 1 else ''} (this or earlier sessions)")
                item.setForeground(1, QBrush(QColor(STATE_COLORS["incompatible"])))
            notes += info["warnings"]
            if notes:
                item.setToolTip(2, "\n".join(notes))
                item.setToolTip(1, "\n".join(notes))
            self.tree.addTopLevelItem(item)
        self._filling = False

    def item_for(self, name: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            if it.data(1, Qt.ItemDataRole.UserRole) == name:
                return it
        return None

    def select(self, name: str) -> None:
        it = self.item_for(name)
        if it is not None:
            self.tree.setCurrentItem(it)

    def _show(self, item: QTreeWidgetItem | None) -> None:
        if item is None:
            return
        info = self.infos[item.data(1, Qt.ItemDataRole.UserRole)]
        self.details_title.setText(f"{info['name']} {info['version']}".strip())
        sub = [f"State: {info['state']}"]
        if info["author"]:
            sub.append(f"Author: {info['author']}")
        if info["source"]:
            sub.append(f"From: {info['source']}")
        self.details_sub.setText(" · ".join(sub))
        parts = []
        if info["description"]:
            parts.append(info["description"])
        if info["error"]:
            parts.append("Error: " + info["error"])
        if info["traceback"] and info["traceback"] not in info["error"]:
            parts.append(info["traceback"])
        if info["tools"]:
            parts.append("Tools: " + ", ".join(info["tools"]))
        if info["state"] == "loaded":
            parts.append(f"Start-up: {info['load_ms']:.0f} ms (import, registration and hooks)"
                         + "".join(f"\n  slow: {w}" for w in info["warnings"]))
        if info["runtime_errors"]:
            parts.append("Run-time errors in this session:\n" + "\n".join(info["runtime_errors"]))
        if info["earlier_errors"]:
            parts.append("Run-time errors in earlier sessions:\n" + "\n".join(info["earlier_errors"]))
        self.details.setPlainText("\n\n".join(parts) or "No details.")

    def details_text(self) -> str:
        return self.details.toPlainText()

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._filling or column != 0:
            return
        name = item.data(1, Qt.ItemDataRole.UserRole)
        enabled = item.checkState(0) == Qt.CheckState.Checked
        self.changed[name] = enabled
        if self._set_enabled is not None:
            self._set_enabled(name, enabled)
        self.note.setText(f"{name} {'enabled' if enabled else 'disabled'}; the choice is remembered.")

    def set_enabled(self, name: str, enabled: bool) -> None:
        it = self.item_for(name)
        if it is not None:
            it.setCheckState(0, Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked)
