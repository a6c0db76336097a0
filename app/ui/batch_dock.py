"""The Batch dock: a plan editor (axes as rows), the session's batches with a progress bar each,
and a grid of the selected batch's results laid out by two of its axes.

The dock runs a batch with :class:`app.batch.driver.BatchDriver` on a Python thread (the driver
waits on its workers, never the GUI thread); its events come back through a queued Qt signal.
Batches run from the command line in the same session show up too (the list is read again every
two seconds while the dock is visible). Fixed parameters are the Tools dock's values for the
chosen tool (or the tool's last-used values, else its defaults); the axes sweep over them.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger("implicit_studio.ui.batch")

CELL_PX = 96


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class BatchDock(QWidget):
    """See the module docstring. ``store()`` gives the open session store (or None);
    ``values_for(tool_id)`` the fixed parameter values of a tool."""

    openRunRequested = Signal(object, object)  # run id, result id (or None)
    batchFinished = Signal(int, str)  # batch id, status
    itemRecorded = Signal(int, object)  # batch id, run id: a run was added to the session
    _driverEvent = Signal(object)

    def __init__(self, manager: Any, store: Callable[[], Any], values_for: Optional[Callable[[str], dict]] = None,
                 parent: Optional[QWidget] = None, apply_values: Optional[Callable[[str, dict], None]] = None):
        super().__init__(parent)
        self.manager = manager
        self._store = store
        self._values_for = values_for or (lambda _tool_id: {})
        #: puts a loaded plan's fixed parameters into the Tools dock's form (the window's); without
        #: it they are kept here, over ``values_for``'s, until another tool is chosen
        self._apply_values = apply_values
        self._loaded: dict[str, Any] = {}
        self._drivers: dict[int, Any] = {}  # batch id -> driver running in this window
        self._threads: dict[int, threading.Thread] = {}
        self._rows: dict[int, tuple[QTreeWidgetItem, QProgressBar]] = {}
        self._pixmaps: dict[int, QPixmap] = {}
        self.plan_error = ""
        self.item_count = 0
        self._build()
        self._driverEvent.connect(self._on_driver_event, Qt.ConnectionType.QueuedConnection)
        self._check_timer = QTimer(self, singleShot=True, interval=200)
        self._check_timer.timeout.connect(self.check_plan)
        self._refresh_timer = QTimer(self, interval=2000)
        self._refresh_timer.timeout.connect(self._periodic_refresh)
        self._refresh_timer.start()
        self._grid_timer = QTimer(self, singleShot=True, interval=700)
        self._grid_timer.timeout.connect(self.refresh_grid)
        self.set_tools()

    # -- building ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.tool_combo = QComboBox()
        self.tool_combo.currentIndexChanged.connect(self._on_tool_changed)
        self.axes = QTableWidget(0, 2)
        self.axes.setHorizontalHeaderLabels(["Parameter", "Values"])
        self.axes.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.axes.verticalHeader().setVisible(False)
        self.axes.setToolTip("One row per swept parameter. Values: 1, 2, 3 · a range 0.5:2:0.5 · "
                             "seeds 8 (from 100) · files inputs/*.png · folder inputs")
        self.axes.setMinimumHeight(90)
        self.add_axis_btn = QPushButton("+ Axis")
        self.add_axis_btn.clicked.connect(lambda: self.add_axis())
        self.remove_axis_btn = QPushButton("− Axis")
        self.remove_axis_btn.clicked.connect(self.remove_axis)
        self.load_btn = QPushButton("Load…")
        self.load_btn.clicked.connect(self._load_dialog)
        self.save_btn = QPushButton("Save…")
        self.save_btn.clicked.connect(self._save_dialog)
        self.rows_csv = QLineEdit()
        self.rows_csv.setPlaceholderText("optional: a CSV whose columns are parameters (one item per row)")
        self.rows_csv.textChanged.connect(self._plan_changed)
        self.workers = QSpinBox(minimum=1, maximum=256, value=1)
        self.workers.setToolTip("worker processes (or Ray actors), each holding the loaded model")
        self.workers.valueChanged.connect(self._plan_changed)
        self.engine = QComboBox()
        self.engine.addItems(["local", "ray"])
        self.engine.currentTextChanged.connect(self._plan_changed)
        self.ray_address = QLineEdit()
        self.ray_address.setPlaceholderText("Ray address (empty: a local Ray)")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.start_btn = QPushButton("Start batch")
        self.start_btn.clicked.connect(self.start)

        buttons = QHBoxLayout()
        for b in (self.add_axis_btn, self.remove_axis_btn, self.load_btn, self.save_btn):
            buttons.addWidget(b)
        form = QFormLayout()
        form.addRow("Tool", self.tool_combo)
        form.addRow("Rows", self.rows_csv)
        eng = QHBoxLayout()
        eng.addWidget(self.engine)
        eng.addWidget(QLabel("workers"))
        eng.addWidget(self.workers)
        eng.addWidget(self.ray_address, 1)
        form.addRow("Engine", eng)
        plan_box = QWidget()
        pl = QVBoxLayout(plan_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addLayout(form)
        pl.addWidget(QLabel("Sweep (fixed parameters: the Tools dock's values)"))
        pl.addWidget(self.axes)
        pl.addLayout(buttons)
        run_row = QHBoxLayout()
        run_row.addWidget(self.summary, 1)
        run_row.addWidget(self.start_btn)
        pl.addLayout(run_row)

        self.batches = QTreeWidget()
        self.batches.setHeaderLabels(["Batch", "Progress", "Items"])
        self.batches.setRootIsDecorated(False)
        self.batches.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.batches.currentItemChanged.connect(lambda *_: self._on_batch_selected())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(lambda: self.cancel(self.selected_batch()))
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.clicked.connect(lambda: self.resume(self.selected_batch()))
        self.export_grid_btn = QPushButton("Grid PNG…")
        self.export_grid_btn.clicked.connect(self._export_grid_dialog)
        self.export_csv_btn = QPushButton("Items CSV…")
        self.export_csv_btn.clicked.connect(self._export_csv_dialog)
        bl = QHBoxLayout()
        for b in (self.cancel_btn, self.resume_btn, self.export_grid_btn, self.export_csv_btn):
            bl.addWidget(b)
        list_box = QWidget()
        ll = QVBoxLayout(list_box)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.batches)
        ll.addLayout(bl)

        self.grid = QTableWidget(0, 0)
        self.grid.setIconSize(QSize(CELL_PX, CELL_PX))
        self.grid.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.grid.horizontalHeader().setDefaultSectionSize(CELL_PX + 8)
        self.grid.verticalHeader().setDefaultSectionSize(CELL_PX + 8)
        self.grid.cellDoubleClicked.connect(self.open_cell)
        self.grid.setToolTip("Double-click a cell to open its run")
        self.grid_title = QLabel("")

        grid_box = QWidget()
        gl = QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.addWidget(self.grid_title)
        gl.addWidget(self.grid, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        for w in (plan_box, list_box, grid_box):
            split.addWidget(w)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 0)
        split.setStretchFactor(2, 1)
        split.setSizes([290, 110, 520])  # the grid gets what is left
        self.batches.setMinimumHeight(60)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

    # -- the plan ---------------------------------------------------------------------------------
    def set_tools(self) -> None:
        current = self.tool_combo.currentData()
        self.tool_combo.blockSignals(True)
        self.tool_combo.clear()
        for t in sorted(self.manager.tools.values(), key=lambda t: t.title.lower()):
            self.tool_combo.addItem(f"{t.title} ({t.id})", t.id)
        self.tool_combo.blockSignals(False)
        idx = self.tool_combo.findData(current) if current else 0
        self.tool_combo.setCurrentIndex(max(0, idx))
        self._on_tool_changed()

    def tool_id(self) -> Optional[str]:
        return self.tool_combo.currentData()

    def set_tool(self, tool_id: str) -> None:
        idx = self.tool_combo.findData(tool_id)
        if idx < 0:
            raise LookupError(f"no tool {tool_id!r}")
        self.tool_combo.setCurrentIndex(idx)

    def _on_tool_changed(self) -> None:
        self._loaded = {}
        self.axes.setRowCount(0)
        self._plan_changed()

    def _param_names(self) -> list[str]:
        tool = self.manager.tools.get(self.tool_id() or "")
        return [p.name for p in tool.params] if tool is not None else []

    def add_axis(self, name: Optional[str] = None, values: str = "") -> int:
        row = self.axes.rowCount()
        self.axes.insertRow(row)
        combo = QComboBox()
        combo.addItems(self._param_names())
        if name:
            i = combo.findText(name)
            if i < 0:
                raise LookupError(f"the tool {self.tool_id()!r} has no parameter {name!r}")
            combo.setCurrentIndex(i)
        combo.currentTextChanged.connect(self._plan_changed)
        self.axes.setCellWidget(row, 0, combo)
        self.axes.setItem(row, 1, QTableWidgetItem(values))
        if row == 0:
            self.axes.itemChanged.connect(lambda *_: self._plan_changed())
        self._plan_changed()
        return row

    def remove_axis(self) -> None:
        row = self.axes.currentRow()
        self.axes.removeRow(row if row >= 0 else self.axes.rowCount() - 1)
        self._plan_changed()

    def plan_data(self) -> dict[str, Any]:
        """The plan as build_plan takes it (``PlanError`` for an axis row that cannot be read)."""
        from app.batch.plan import sweep_spec_from_text

        tool_id = self.tool_id() or ""
        sweep: dict[str, Any] = {}
        for row in range(self.axes.rowCount()):
            name = self.axes.cellWidget(row, 0).currentText()
            item = self.axes.item(row, 1)
            sweep[name] = sweep_spec_from_text(item.text() if item is not None else "")
        fixed = {}
        for k, v in {**(self._values_for(tool_id) or {}), **self._loaded}.items():
            if k in sweep or v is None:
                continue
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                continue  # an image given in memory: not part of a plan
            fixed[k] = v
        data: dict[str, Any] = {"tool": tool_id, "params": fixed, "sweep": sweep}
        if self.rows_csv.text().strip():
            data["rows"] = self.rows_csv.text().strip()
            for k in list(fixed):  # the rows set their own columns
                fixed.pop(k) if k in self._csv_columns() else None
        return data

    def _csv_columns(self) -> set[str]:
        import csv

        try:
            with open(Path(self.rows_csv.text().strip()).expanduser(), newline="", encoding="utf-8-sig") as f:
                return {c.strip() for c in next(csv.reader(f), [])}
        except OSError:
            return set()

    def plan(self) -> Any:
        from app.batch.plan import build_plan

        return build_plan(self.plan_data(), Path.cwd())

    def _plan_changed(self) -> None:
        self._check_timer.start()

    def check_plan(self) -> bool:
        """Check the plan now: the summary says how many items and about how long, or what is wrong."""
        from app.batch.plan import PlanError

        tool = self.manager.tools.get(self.tool_id() or "")
        try:
            if tool is None:
                raise PlanError("choose a tool")
            plan = self.plan()
            items = plan.check(tool)
        except PlanError as exc:
            self.plan_error, self.item_count = str(exc), 0
            self.summary.setText(f"<span style='color:#c0392b'>{exc}</span>")
            self.start_btn.setEnabled(False)
            return False
        self.plan_error, self.item_count = "", len(items)
        workers = self.workers.value()
        text = f"{len(items)} item(s) on {workers} worker(s)"
        store = self._store()
        if store is not None:
            from app.batch.driver import estimate_seconds

            est = estimate_seconds(store, tool.id, len(items), workers)
            text += f" · about {_fmt_seconds(est)}" if est is not None else " · no estimate yet (no earlier run of this tool)"
        self.summary.setText(text)
        self.start_btn.setEnabled(store is not None)
        return True

    def load_plan_file(self, path: str | Path) -> None:
        from app.batch.plan import load_plan, sweep_spec_to_text

        plan = load_plan(path)  # PlanError with a sentence
        import tomllib

        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        self.set_tool(plan.tool)
        if self._apply_values is not None:
            self._apply_values(plan.tool, dict(plan.params))
        else:
            self._loaded = dict(plan.params)
        self.axes.setRowCount(0)
        for name, spec in (raw.get("sweep") or {}).items():
            if isinstance(spec, dict) and ("files" in spec or "folder" in spec):  # relative to the plan file
                key = "files" if "files" in spec else "folder"
                p = Path(spec[key]).expanduser()
                spec = {**spec, key: str(p if p.is_absolute() else Path(path).parent / p)}
            self.add_axis(name, sweep_spec_to_text(spec))
        rows = raw.get("rows")
        self.rows_csv.setText(str(Path(path).parent / rows) if isinstance(rows, str) else "")
        self.check_plan()

    def save_plan_file(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.plan().to_toml(), encoding="utf-8")
        return path

    def _load_dialog(self) -> None:
        from app.batch.plan import PlanError

        path, _ = QFileDialog.getOpenFileName(self, "Load a batch plan", "", "Batch plans (*.toml)")
        if path:
            try:
                self.load_plan_file(path)
            except (PlanError, LookupError) as exc:
                self.summary.setText(f"<span style='color:#c0392b'>{exc}</span>")

    def _save_dialog(self) -> None:
        from app.batch.plan import PlanError

        path, _ = QFileDialog.getSaveFileName(self, "Save the batch plan", "plan.toml", "Batch plans (*.toml)")
        if path:
            try:
                self.save_plan_file(path)
            except (PlanError, OSError) as exc:
                self.summary.setText(f"<span style='color:#c0392b'>{exc}</span>")

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> Optional[int]:
        """Record the plan as a new batch and run it on a thread; returns the batch id."""
        from app.batch.plan import PlanError

        if not self.check_plan():
            return None
        store = self._store()
        driver = self._make_driver(store)
        try:
            batch_id = driver.create(self.plan())
        except PlanError as exc:
            self.summary.setText(f"<span style='color:#c0392b'>{exc}</span>")
            return None
        self._launch(batch_id, driver)
        return batch_id

    def _make_driver(self, store: Any) -> Any:
        from app.batch.driver import BatchDriver

        return BatchDriver(store, self.manager.tool, engine=self.engine.currentText(), workers=self.workers.value(),
                           ray_address=self.ray_address.text().strip() or None, niceness=5,
                           listener=self._driverEvent.emit)

    def _launch(self, batch_id: int, driver: Any, retry_failed: bool = False) -> None:
        def work() -> None:
            try:
                driver.run(batch_id, retry_failed=retry_failed)
            except Exception as exc:  # noqa: BLE001 - shown in the batch's row
                log.exception("batch %s stopped", batch_id)
                from app.batch.driver import BatchEvent

                self._driverEvent.emit(BatchEvent("error", batch_id, {"error": f"{type(exc).__name__}: {exc}"}))

        self._drivers[batch_id] = driver
        t = threading.Thread(target=work, name=f"batch-{batch_id}", daemon=True)
        self._threads[batch_id] = t
        t.start()
        self.refresh_batches(select=batch_id)

    def cancel(self, batch_id: Optional[int]) -> None:
        if batch_id is None:
            return
        driver = self._drivers.get(batch_id)
        if driver is not None:
            driver.cancel()
        else:  # driven by another process (the command line): ask it through the session
            from app.batch.driver import request_cancel

            request_cancel(self._store(), batch_id)
        self.refresh_batches()

    def resume(self, batch_id: Optional[int], retry_failed: bool = False) -> None:
        if batch_id is None or batch_id in self._drivers:
            return
        self._launch(batch_id, self._make_driver(self._store()), retry_failed)

    def is_running(self, batch_id: int) -> bool:
        t = self._threads.get(batch_id)
        return t is not None and t.is_alive()

    def wait(self, batch_id: int, timeout: float) -> bool:
        t = self._threads.get(batch_id)
        if t is not None:
            t.join(timeout)
        return not self.is_running(batch_id)

    def shutdown(self) -> None:
        """Stop the timers; batches driven here send no more items (they can be resumed)."""
        for timer in (self._check_timer, self._refresh_timer, self._grid_timer):
            timer.stop()
        for d in list(self._drivers.values()):
            d.cancel()

    def closeEvent(self, ev) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(ev)

    def _on_driver_event(self, ev: Any) -> None:
        if ev.kind == "item":
            d = ev.data
            self._update_row(ev.batch_id, d["ok"], d["failed"], d["left"], d.get("items_per_s"))
            self.itemRecorded.emit(ev.batch_id, d.get("run_id"))
            if ev.batch_id == self.selected_batch():
                self._grid_timer.start()
        elif ev.kind in ("finished", "error"):
            self._drivers.pop(ev.batch_id, None)
            self.refresh_batches()
            if ev.batch_id == self.selected_batch():
                self.refresh_grid()
            status = ev.data["summary"].status if ev.kind == "finished" else "stopped"
            self.batchFinished.emit(ev.batch_id, status)

    # -- the batches ------------------------------------------------------------------------------
    def _periodic_refresh(self) -> None:
        if self.isVisible():
            self.refresh_batches()

    def refresh_batches(self, select: Optional[int] = None) -> None:
        store = self._store()
        if store is None:
            return
        from app.batch.driver import list_batches

        try:
            infos = list_batches(store)
        except Exception as exc:  # noqa: BLE001 - a session of an older schema, a busy database
            log.info("cannot list batches: %s", exc)
            return
        keep = select if select is not None else self.selected_batch()
        for info in infos:
            row = self._rows.get(info.id)
            if row is None:
                item = QTreeWidgetItem([f"#{info.id} {info.name}", "", ""])
                item.setData(0, Qt.ItemDataRole.UserRole, info.id)
                self.batches.insertTopLevelItem(0, item)
                bar = QProgressBar()
                bar.setTextVisible(True)
                self.batches.setItemWidget(item, 1, bar)
                self._rows[info.id] = (item, bar)
            item, bar = self._rows[info.id]
            bar.setMaximum(max(1, info.total))
            state = "running" if info.id in self._drivers else info.state
            self._update_row(info.id, info.ok, info.failed, info.left, None, state)
        if keep is not None and keep in self._rows:
            self.batches.setCurrentItem(self._rows[keep][0])
        elif self.batches.currentItem() is None and self.batches.topLevelItemCount():
            self.batches.setCurrentItem(self.batches.topLevelItem(0))
        sel = self.selected_batch()
        running_here = sel in self._drivers
        self.cancel_btn.setEnabled(sel is not None)
        self.resume_btn.setEnabled(sel is not None and not running_here)

    def _update_row(self, batch_id: int, ok: int, failed: int, left: int, per_s: Optional[float],
                    state: Optional[str] = None) -> None:
        row = self._rows.get(batch_id)
        if row is None:
            return
        item, bar = row
        bar.setMaximum(max(1, ok + failed + left))
        bar.setValue(ok + failed)
        bar.setFormat(f"{ok + failed}/{ok + failed + left}")
        text = f"{ok} done · {failed} failed · {left} left"
        if per_s:
            text += f" · {per_s * 60:.1f} items/min"
        if state is not None:
            text += f" · {state}"
            item.setData(2, Qt.ItemDataRole.UserRole, state)
        elif item.data(2, Qt.ItemDataRole.UserRole):
            text += f" · {item.data(2, Qt.ItemDataRole.UserRole)}"
        item.setText(2, text)

    def selected_batch(self) -> Optional[int]:
        item = self.batches.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    def select_batch(self, batch_id: int) -> None:
        self.refresh_batches(select=batch_id)

    def _on_batch_selected(self) -> None:
        sel = self.selected_batch()
        self.resume_btn.setEnabled(sel is not None and sel not in self._drivers)
        self.refresh_grid()

    # -- the grid ---------------------------------------------------------------------------------
    def refresh_grid(self) -> None:
        """Lay out the selected batch's results by its axes (first axis down, seeds across)."""
        store, bid = self._store(), self.selected_batch()
        if store is None or bid is None:
            self.grid.setRowCount(0)
            self.grid.setColumnCount(0)
            return
        from app.batch.export import grid_cells
        from app.batch.driver import get_batch
        from app.batch.plan import BatchPlan, grid_axes

        try:
            info = get_batch(store, bid)
            down, across = grid_axes(BatchPlan.from_dict(info.plan))
            rows, cols, cells = grid_cells(store, bid)
        except Exception as exc:  # noqa: BLE001 - a session closed or busy meanwhile: the grid waits
            log.info("cannot show the grid of batch %s: %s", bid, exc)
            return
        self.grid_title.setText(f"#{bid}: {down.name if down else ''}{' down, ' if down else ''}"
                                f"{across.name + ' across' if across else ''}")
        self.grid.setRowCount(len(rows))
        self.grid.setColumnCount(len(cols))
        self.grid.setVerticalHeaderLabels([f"{down.name}={r}" if down else r for r in rows])
        self.grid.setHorizontalHeaderLabels([f"{across.name}={c}" if across else c for c in cols])
        for (r, c), cell in cells.items():
            item = QTableWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, (cell["run_id"], cell["image"]))
            item.setToolTip(f"{cell['key']}: {cell['status']}" + (f" (run #{cell['run_id']})" if cell["run_id"] else ""))
            if cell["image"] is not None:
                pix = self._pixmap(store, cell["image"])
                if pix is not None:
                    item.setIcon(QIcon(pix))
            else:
                item.setText(cell["status"])
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if cell["status"] == "failed":
                    item.setBackground(QBrush(QColor(230, 120, 120)))
            self.grid.setItem(r, c, item)
        self._fit_grid()

    def _fit_grid(self) -> None:
        """Cells as large as the view allows (at most CELL_PX, at least 40 px) for the whole grid."""
        rows, cols = self.grid.rowCount(), self.grid.columnCount()
        if not rows or not cols:
            return
        vw = self.grid.viewport().width() or self.grid.width()
        vh = self.grid.viewport().height() or self.grid.height()
        px = max(40, min(CELL_PX, vw // cols - 6, vh // rows - 6))
        self.grid.setIconSize(QSize(px, px))
        for c in range(cols):
            self.grid.setColumnWidth(c, px + 6)
        for r in range(rows):
            self.grid.setRowHeight(r, px + 6)

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        QTimer.singleShot(0, self._fit_grid)

    def _pixmap(self, store: Any, result_id: int) -> Optional[QPixmap]:
        pix = self._pixmaps.get(result_id)
        if pix is None:
            try:
                pix = QPixmap(str(store.result_path(result_id)))
            except Exception:  # noqa: BLE001 - a missing file shows as an empty cell
                return None
            if pix.isNull():
                return None
            pix = pix.scaled(CELL_PX, CELL_PX, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
            self._pixmaps[result_id] = pix
        return pix

    def open_cell(self, row: int, col: int) -> None:
        item = self.grid.item(row, col)
        data = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if data and data[0] is not None:
            self.openRunRequested.emit(data[0], data[1])

    # -- export -----------------------------------------------------------------------------------
    def export_grid(self, path: str | Path) -> Path:
        from app.batch.export import write_grid_png

        return write_grid_png(self._store(), self.selected_batch(), path)

    def export_csv(self, path: str | Path) -> Path:
        from app.batch.export import write_items_csv

        return write_items_csv(self._store(), self.selected_batch(), path)

    def _export_grid_dialog(self) -> None:
        if self.selected_batch() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export the grid", f"batch-{self.selected_batch()}.png", "PNG (*.png)")
        if path:
            self.export_grid(path)

    def _export_csv_dialog(self) -> None:
        if self.selected_batch() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export the items", f"batch-{self.selected_batch()}.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


def install(win: QMainWindow) -> QDockWidget:
    """Add the Batch dock to the main window (tabbed with the Queue dock) once its session is open."""
    def values_for(tool_id: str) -> dict:
        panel = win.tool_panel
        if panel.current_tool is not None and panel.current_tool.id == tool_id:
            try:
                return dict(win.form.values())
            except Exception:  # noqa: BLE001 - a panel whose values cannot be read now
                pass
        return dict(win.settings.last_params(tool_id) or {})

    def apply_values(tool_id: str, values: dict) -> None:
        win.select_tool(tool_id)
        win.tool_panel.set_values(values)

    dock_widget = BatchDock(win.manager, lambda: win.session.store, values_for, apply_values=apply_values)
    dock = QDockWidget("Batch", win)
    dock.setObjectName("batch_dock")
    scroll = QScrollArea()  # the dock never forces the window larger than its saved size
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(dock_widget)
    dock_widget.setMinimumSize(360, 520)
    dock.setWidget(scroll)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    queue = getattr(win, "queue_dock", None)
    if queue is not None:
        win.tabifyDockWidget(queue, dock)
        queue.raise_()
    dock_widget.openRunRequested.connect(win.feedback.open_result)
    history_timer = QTimer(dock_widget, singleShot=True, interval=1000)  # the History shows batch runs too
    history_timer.timeout.connect(lambda: win.history.refresh(keep_limit=True) if win.history is not None else None)
    dock_widget.itemRecorded.connect(lambda *_: history_timer.start())
    win.batch = dock_widget
    win.batch_dock = dock
    return dock
