"""Compare two results: side by side (zoom and pan move together) or as a before/after split,
with a table of the parameters that differ between the two runs."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import CompareSide, param_diff
from app.widgets.image_view import SideBySideView, SplitView


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return "—" if v is None else str(v)


class CompareDialog(QDialog):
    def __init__(self, left: CompareSide, right: CompareSide, parent: QWidget | None = None):
        """The two sides as :meth:`app.controller.RunController.compare` gives them."""
        super().__init__(parent)
        self.setWindowTitle(f"Compare {left.title} and {right.title}")
        self.resize(1100, 720)
        self.mode = QTabBar()
        self.mode.addTab("Side by side")
        self.mode.addTab("Split")
        self.mode.setExpanding(False)
        self.side = SideBySideView()
        self.side.set_images(left.image, right.image)
        self.split = SplitView()
        self.split.labels = (left.title, right.title)
        self.split.set_images(left.image, right.image)
        self.views = QStackedWidget()
        self.views.addWidget(self.side)
        self.views.addWidget(self.split)
        self.mode.currentChanged.connect(self.views.setCurrentIndex)
        caption = QWidget()
        from PySide6.QtWidgets import QHBoxLayout  # noqa: PLC0415

        cl = QHBoxLayout(caption)
        cl.setContentsMargins(0, 0, 0, 0)
        for side in (left, right):
            lab = QLabel(side.title)
            lab.setObjectName("title")
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cl.addWidget(lab, 1)
        self.rows = param_diff(left.params, right.params)
        self.table = QTableWidget(len(self.rows), 3)
        self.table.setHorizontalHeaderLabels(["Parameter", left.title, right.title])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        hi = QBrush(QColor(79, 140, 255, 60))
        for r, (k, va, vb, differs) in enumerate(self.rows):
            for c, text in enumerate((k, _fmt(va), _fmt(vb))):
                it = QTableWidgetItem(text)
                it.setToolTip(text)
                if differs:
                    it.setBackground(hi)
                    if c == 0:
                        f = it.font()
                        f.setBold(True)
                        it.setFont(f)
                self.table.setItem(r, c, it)
        n = sum(1 for r in self.rows if r[3])
        self.summary = QLabel(f"{n} parameter{'s' if n != 1 else ''} differ" if n else "The parameters are identical")
        self.summary.setObjectName("muted")
        top = QWidget()
        tv = QVBoxLayout(top)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.addWidget(self.mode)
        tv.addWidget(caption)
        tv.addWidget(self.views, 1)
        bottom = QWidget()
        bv = QVBoxLayout(bottom)
        bv.setContentsMargins(0, 0, 0, 0)
        bv.addWidget(self.summary)
        bv.addWidget(self.table, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(splitter, 1)
        lay.addWidget(buttons)

    def differing(self) -> list[str]:
        return [k for k, _a, _b, d in self.rows if d]
