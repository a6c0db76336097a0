"""A pyqtgraph viewer for table results: histograms as interactive step curves.

The studio imports this module only when a table result is first shown (the plugin module names
it as ``"studio_colour_histogram.viewer:HistogramViewer"``), so Qt and pyqtgraph never load at
start-up because of this plugin. A viewer is any ``QWidget`` built as ``Factory(parent=None)``
with a ``set_result(result)`` method.

Tables that are not histograms (no ``bin_start``/``bin_end`` columns) are shown as a plain
table, so installing this plugin does not take anything away from other tools' tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import pyqtgraph as pg  # noqa: E402  (after PySide6, so pyqtgraph picks that binding)

#: Curve colours; other numeric columns get grey.
COLOURS = {"red": (220, 50, 47), "green": (60, 170, 60), "blue": (38, 110, 220), "luma": (90, 90, 90)}


def histogram_columns(result: Any) -> list[str] | None:
    """The count columns of a histogram table, or ``None`` if ``result`` is not one."""
    columns = list(getattr(result, "columns", ()) or ())
    if len(columns) < 3 or columns[0] != "bin_start" or columns[1] != "bin_end":
        return None
    return columns[2:]


class HistogramViewer(QWidget):
    """Shows a histogram table as filled step curves (one per channel) with a legend, a
    ``log(1 + count)`` switch and the per-channel mean and spread; other tables as a table."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.result: Any = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._edges = np.zeros(0)
        self._counts: dict[str, np.ndarray] = {}

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "grey level")
        self.plot.setLabel("left", "pixels")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setMouseEnabled(x=True, y=False)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.log_box = QCheckBox("log(1 + count)")
        self.log_box.setToolTip("Compress tall peaks so that small counts stay visible")
        self.log_box.toggled.connect(self._redraw)
        self.summary = QLabel("")
        self.summary.setObjectName("muted")
        bar = QHBoxLayout()
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.log_box)
        plot_page = QWidget()
        plot_lay = QVBoxLayout(plot_page)
        plot_lay.setContentsMargins(8, 4, 8, 8)
        plot_lay.addLayout(bar)
        plot_lay.addWidget(self.plot, 1)

        self.table = QTableWidget()
        self.table.setAlternatingRowColors(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(plot_page)
        self.stack.addWidget(self.table)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)

    @property
    def mode(self) -> str:
        """``"plot"`` when showing a histogram, ``"table"`` otherwise."""
        return "plot" if self.stack.currentIndex() == 0 else "table"

    def set_result(self, result: Any) -> None:
        self.result = result
        names = histogram_columns(result)
        rows = [tuple(r) for r in getattr(result, "rows", ())]
        if names is None or not rows:
            self._show_table(result)
            return
        data = np.asarray(rows, dtype=np.float64)
        self._edges = np.concatenate([data[:, 0], data[-1:, 1]])
        self._counts = {name: data[:, 2 + i] for i, name in enumerate(names)}
        stats = (getattr(result, "metadata", None) or {}).get("stats", {})
        parts = [f"{n}: mean {s['mean']:.1f}, sd {s['std']:.1f}" for n, s in stats.items()
                 if isinstance(s, dict) and "mean" in s and "std" in s]
        self.summary.setText("   ".join(parts))
        self._redraw()
        self.stack.setCurrentIndex(0)

    def _redraw(self, *_: Any) -> None:
        for item in self.curves.values():
            self.plot.removeItem(item)
        self.curves.clear()
        self.legend.clear()
        log = self.log_box.isChecked()
        for name, counts in self._counts.items():
            y = np.log1p(counts) if log else counts
            rgb = COLOURS.get(name, (120, 120, 120))
            item = pg.PlotDataItem(self._edges, y, stepMode="center", fillLevel=0,
                                   brush=pg.mkBrush(*rgb, 60), pen=pg.mkPen(rgb, width=2), name=name)
            self.plot.addItem(item)
            self.curves[name] = item
        self.plot.setLabel("left", "log(1 + pixels)" if log else "pixels")
        if self._edges.size:
            self.plot.setXRange(float(self._edges[0]), float(self._edges[-1]), padding=0.01)

    def _show_table(self, result: Any) -> None:
        columns = [str(c) for c in getattr(result, "columns", ())]
        rows = list(getattr(result, "rows", ()))
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(columns)
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(f"{v:.6g}" if isinstance(v, float) else str(v)))
        self.stack.setCurrentIndex(1)
