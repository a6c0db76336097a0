"""The job-queue dock: every queued, running and recently finished run with a progress bar (step
count and ETA), a live preview of the running job, cancel, and reorder/remove for waiting jobs.

The dock only shows state and emits requests (``cancelRequested``, ``moveRequested``,
``removeRequested``); the window forwards them to the services' job runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.widgets.flow import ElidedLabel, FlowLayout
from app.widgets.icons import std
from app.widgets.image_view import ImageView

if TYPE_CHECKING:
    from PySide6.QtGui import QImage

    from app import api

ACTIVE = ("queued", "running", "cancelling")
MAX_FINISHED = 30


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def progress_text(step: int, total: int, message: str = "") -> str:
    """"42% · step 24/25": how far a job is, in the tool's own words when it gave some."""
    pct = f"{100 * step // total}%" if total > 0 else ""
    return " · ".join(x for x in (pct, message.strip()) if x) or "running"


@dataclass
class JobState:
    job_id: int
    title: str
    status: str = "queued"
    step: int = 0
    total: int = 0
    message: str = ""
    started: float | None = None
    first_step_at: float | None = None
    first_step: int = 0
    finished: float | None = None
    duration: float | None = None  # the job's own duration, as recorded with its run
    eta_s: float | None = None  # the job runner's estimate, when it was received
    eta_at: float | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: the job runner's estimate (the one the command line prints too), less
        the time since it came; before one comes, the pace of the steps seen here (the first step,
        which often includes loading a model, is not counted)."""
        if self.status != "running" or self.total <= 0 or self.step <= 0:
            return None
        now = time.monotonic() if now is None else now
        if self.eta_s is not None and self.eta_at is not None:
            return max(0.0, self.eta_s - (now - self.eta_at))
        if self.first_step_at is None:
            return None
        done = self.step - self.first_step
        if done <= 0:
            return None
        rate = (now - self.first_step_at) / done
        return max(0.0, rate * (self.total - self.step))


class JobRow(QWidget):
    def __init__(self, state: JobState, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = ElidedLabel(state.title)
        self.title.setStyleSheet("font-weight: 600;")
        self.status = QLabel()
        self.status.setObjectName("muted")
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setMaximumHeight(16)
        self.cancel = QToolButton()
        self.cancel.setIcon(std("BrowserStop"))
        self.cancel.setToolTip("Cancel this job (Esc cancels the running one)")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.status)
        top.addWidget(self.cancel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(4)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.update_from(state)

    def update_from(self, st: JobState) -> None:
        active = st.status in ACTIVE
        self.cancel.setVisible(active)
        self.cancel.setEnabled(st.status != "cancelling")
        if st.status == "queued":
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            self.bar.setFormat("waiting")
            self.status.setText("queued")
        elif st.status in ("running", "cancelling"):
            if st.total > 0:
                self.bar.setRange(0, st.total)
                self.bar.setValue(min(st.step, st.total))
                eta = format_eta(st.eta())
                self.bar.setFormat(f"{100 * min(st.step, st.total) // st.total}%" + (f" · ETA {eta}" if eta else ""))
            else:
                self.bar.setRange(0, 0)  # busy indicator until the first progress report
                self.bar.setFormat("starting…")
            self.status.setText("cancelling…" if st.status == "cancelling" else (st.message or "running"))
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(1 if st.status in ("ok", "done", "finished") else 0)
            dur = ""
            if st.duration is not None:  # the run's recorded duration (History and the status bar say it)
                dur = f" in {st.duration:.1f}s"
            elif st.started is not None and st.finished is not None:
                dur = f" in {st.finished - st.started:.1f}s"
            label = {"ok": "done", "done": "done", "finished": "done"}.get(st.status, st.status)
            self.bar.setFormat(label + dur)
            self.status.setText(label)
            if st.error:
                self.status.setToolTip(st.error)
                self.setToolTip(st.error)
            color = "#e5484d" if st.status == "failed" else ("#d9a000" if st.status == "cancelled" else "")
            self.status.setStyleSheet(f"color: {color};" if color else "")


class QueueDock(QWidget):
    cancelRequested = Signal(object)
    moveRequested = Signal(object, int)  # job id, delta (-1 up, +1 down)
    removeRequested = Signal(object)
    pauseToggled = Signal(bool)  # True: hold the queue, False: resume

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs: dict[int, JobState] = {}
        self._items: dict[int, QListWidgetItem] = {}
        self._rows: dict[int, JobRow] = {}
        self.preview = ImageView(placeholder="Live preview")
        self.preview.setMinimumHeight(90)
        self.list = QListWidget()
        self.list.setSpacing(2)
        # rows follow the dock's width (their titles elide) instead of scrolling sideways
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        # the view widens its row widgets with the dock but does not narrow them again
        self.list.viewport().installEventFilter(self)
        self.list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.up_btn = self._tool("ArrowUp", "Move the selected waiting job up", lambda: self._move(-1))
        self.down_btn = self._tool("ArrowDown", "Move the selected waiting job down", lambda: self._move(1))
        self.remove_btn = self._tool("TrashIcon", "Remove the selected waiting job from the queue", self._remove)
        self.clear_btn = self._tool("DialogResetButton", "Clear finished jobs", self.clear_finished)
        self.paused = False
        self.pause_btn = QToolButton()
        self.pause_btn.setCheckable(True)
        self.pause_btn.setIconSize(QSize(16, 16))
        self.pause_btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.pause_btn.toggled.connect(self._pause_toggled)
        self.summary = ElidedLabel("Idle")
        self.summary.setObjectName("muted")
        # wraps in a narrow dock rather than widening it
        bar_box = QWidget()
        bar = FlowLayout(bar_box, spacing=4)
        bar.addWidget(self.summary)
        bar.addStretch()
        for b in (self.pause_btn, self.up_btn, self.down_btn, self.remove_btn, self.clear_btn):
            bar.addWidget(b)
        listbox = QWidget()
        lv = QVBoxLayout(listbox)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(4)
        lv.addWidget(bar_box)
        lv.addWidget(self.list, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.preview)
        split.addWidget(listbox)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(split)
        self._show_paused()
        self._update_buttons()

    def _tool(self, icon: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setIcon(std(icon))
        b.setToolTip(tip)
        b.setIconSize(QSize(16, 16))
        b.clicked.connect(slot)
        return b

    def _pause_toggled(self, on: bool) -> None:
        self.paused = bool(on)
        self._show_paused()
        self._update_summary()
        self.pauseToggled.emit(self.paused)

    def set_paused(self, on: bool) -> None:
        """Show the queue as paused or running (without emitting ``pauseToggled``)."""
        self.pause_btn.blockSignals(True)
        self.pause_btn.setChecked(bool(on))
        self.pause_btn.blockSignals(False)
        self.paused = bool(on)
        self._show_paused()
        self._update_summary()

    def _show_paused(self) -> None:
        if self.paused:
            self.pause_btn.setIcon(std("MediaPlay"))
            self.pause_btn.setText("Resume")
            self.pause_btn.setToolTip("Resume the queue: waiting jobs start again")
        else:
            self.pause_btn.setIcon(std("MediaPause"))
            self.pause_btn.setText("Pause")
            self.pause_btn.setToolTip("Pause the queue: the running job finishes, waiting jobs do not start")

    # --- state updates (called by the window on the GUI thread) ------------------------
    def add_job(self, job_id: int, title: str) -> JobState:
        st = JobState(job_id, title)
        self.jobs[job_id] = st
        item = QListWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, job_id)
        # queued jobs go after running/queued ones, before finished ones
        pos = sum(1 for j, s in self.jobs.items() if s.status in ACTIVE and j != job_id)
        self.list.insertItem(pos, item)
        self._items[job_id] = item
        self._set_row(job_id, item)
        self._refresh(job_id)
        return st

    def set_status(self, job_id: int, status: str, error: str = "", duration: float | None = None) -> None:
        st = self.jobs.get(job_id)
        if st is None:
            return
        st.status = status
        if duration:
            st.duration = float(duration)
        now = time.monotonic()
        if status == "running" and st.started is None:
            st.started = now
        if status not in ACTIVE:
            st.finished = now
            st.error = error
            if st.started is None:
                st.started = now
        self._refresh(job_id)
        self._trim()

    def set_progress(self, job_id: int, step: int, total: int, message: str = "",
                     eta_s: float | None = None) -> None:
        st = self.jobs.get(job_id)
        if st is None:
            return
        now = time.monotonic()
        if st.status == "queued":
            st.status = "running"
            st.started = st.started or now
        if st.first_step_at is None and step > 0:
            st.first_step_at, st.first_step = now, step
        st.step, st.total, st.message = step, total, message
        if eta_s is not None:
            st.eta_s, st.eta_at = eta_s, now
        self._refresh(job_id)

    def set_preview(self, job_id: int, image: QImage | api.ImageResult) -> None:
        """Show a preview: a QImage made on the worker thread or a finished ImageResult."""
        data = getattr(image, "image", image)
        self.preview.set_image(data, keep_view=True)

    def reorder(self, order: list[int]) -> None:
        """Show waiting jobs in ``order`` (ids as the runner now holds them)."""
        for target, job_id in enumerate([j for j in order if j in self._items]):
            item = self._items[job_id]
            row = self.list.row(item)
            base = sum(1 for s in self.jobs.values() if s.status in ("running", "cancelling"))
            want = base + target
            if row != want and 0 <= want < self.list.count():
                self._move_item(job_id, want)
        self._update_buttons()

    def _move_item(self, job_id: int, new_row: int) -> None:
        item = self._items[job_id]
        sel = self.list.currentItem() is item
        old = self.list.row(item)
        self.list.takeItem(old)
        self.list.insertItem(new_row, item)
        self._set_row(job_id, item)
        if sel:
            self.list.setCurrentItem(item)

    def remove_job(self, job_id: int) -> None:
        item = self._items.pop(job_id, None)
        self._rows.pop(job_id, None)
        self.jobs.pop(job_id, None)
        if item is not None:
            self.list.takeItem(self.list.row(item))
        self._update_summary()

    def clear_finished(self) -> None:
        for j in [j for j, s in self.jobs.items() if s.status not in ACTIVE]:
            self.remove_job(j)

    def _trim(self) -> None:
        done = [j for j, s in self.jobs.items() if s.status not in ACTIVE]
        for j in done[:-MAX_FINISHED]:
            self.remove_job(j)

    def _refresh(self, job_id: int) -> None:
        row = self._rows.get(job_id)
        if row is not None:
            row.update_from(self.jobs[job_id])
        self._update_summary()
        self._update_buttons()

    def _update_summary(self) -> None:
        running = sum(1 for s in self.jobs.values() if s.status in ("running", "cancelling"))
        queued = sum(1 for s in self.jobs.values() if s.status == "queued")
        if running or queued:
            text = f"{running} running · {queued} waiting"
        else:
            text = "Idle"
        self.summary.set_full_text(("Paused · " + text) if self.paused else text)

    # --- user requests ------------------------------------------------------------------
    def selected_job(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _update_buttons(self) -> None:
        j = self.selected_job()
        waiting = j is not None and self.jobs.get(j) is not None and self.jobs[j].status == "queued"
        self.up_btn.setEnabled(waiting)
        self.down_btn.setEnabled(waiting)
        self.remove_btn.setEnabled(waiting)
        self.clear_btn.setEnabled(any(s.status not in ACTIVE for s in self.jobs.values()))

    def _move(self, delta: int) -> None:
        j = self.selected_job()
        if j is not None:
            self.moveRequested.emit(j, delta)

    def _remove(self) -> None:
        j = self.selected_job()
        if j is not None:
            self.removeRequested.emit(j)

    def running_job(self) -> int | None:
        for j, s in self.jobs.items():
            if s.status in ("running", "cancelling"):
                return j
        return None

    def _set_row(self, job_id: int, item: QListWidgetItem) -> None:
        """A new row widget for the job, shown in its (inserted) list item."""
        row = JobRow(self.jobs[job_id])
        row.cancel.clicked.connect(lambda _=False, j=job_id: self.cancelRequested.emit(j))
        self.list.setItemWidget(item, row)
        # only the height: a row as wide as its hint made the list's contents wider than a narrow dock
        # (the status and the end of the bar cut off); list-mode rows span the viewport anyway
        item.setSizeHint(QSize(1, row.sizeHint().height()))
        self._rows[job_id] = row

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if obj is self.list.viewport() and event.type() == QEvent.Type.Resize:
            QTimer.singleShot(0, self._fit_rows)
        return super().eventFilter(obj, event)

    def _fit_rows(self) -> None:
        """Every row as wide as its item in the view (after the view's own relayout)."""
        for job_id, row in self._rows.items():
            item = self._items.get(job_id)
            if item is not None:
                rect = self.list.visualItemRect(item)
                if rect.width() > 0 and row.width() != rect.width():
                    row.setGeometry(rect)

    def row_widget(self, job_id: int) -> JobRow | None:
        return self._rows.get(job_id)
