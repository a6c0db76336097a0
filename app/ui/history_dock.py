"""The history / gallery dock.

Two views of the session's runs, newest first: a gallery of result thumbnails and a tree of
runs where a run made from another run's result is that run's child. Filters by tool, tag and
prompt text (the store's full-text search). Actions on the selection: open, use parameters,
reproduce (re-run with identical parameters and seed and report a bit-for-bit match), compare two
results side by side with a parameter diff, tag, rate and export.

The dock reads the session through :class:`app.session_view.SessionView` (its runs are
``RunInfo`` records; no SQL here) and asks the window to do anything that runs a tool.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStackedWidget,
    QTabBar,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.session_view import INPUT_TOOL_ID, RunInfo, SessionView, result_label, run_tooltip, run_when
from app.ui.thumbs import THUMB, ThumbnailLoader
from app.widgets.flow import ElidedLabel, FlowLayout
from app.widgets.icons import std

log = logging.getLogger("implicit_studio.ui.history")

PAGE = 100
STATUS_MARK = {"failed": "✕ ", "cancelled": "⏹ ", "running": "… "}


def _centred_square(img: QImage, size: int) -> QPixmap:
    """The picture scaled to fit a transparent ``size`` square, centred: a wide filmstrip sits in the
    middle of its tile like a square image does, not as a sliver along the top. (Thumbnails of small
    pictures come at their own size, 64x64 for the bundled model, and are scaled up here.) A strip
    much wider than high (a denoising filmstrip) is folded into rows first, so its frames are seen
    rather than a thin line."""
    img = _fold_strip(img)
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    scaled = img.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    p = QPainter(pm)
    p.drawImage((size - scaled.width()) // 2, (size - scaled.height()) // 2, scaled)
    p.end()
    return pm


def _fold_strip(img: QImage, max_aspect: float = 2.5) -> QImage:
    """A strip of square frames (width a multiple of its height) folded into a near-square grid of
    whole frames; any other strip wider than ``max_aspect`` into rows of equal width."""
    w, h = img.width(), img.height()
    if h <= 0 or w / h <= max_aspect:
        return img
    frames = w // h if w % h == 0 else 0
    if frames:
        cols = max(1, math.ceil(math.sqrt(frames)))
        chunk = cols * h
    else:
        rows = max(1, round(math.sqrt(w / h)))
        chunk = math.ceil(w / rows)
    rows = math.ceil(w / chunk)
    out = QImage(chunk, rows * h, QImage.Format.Format_ARGB32)
    out.fill(Qt.GlobalColor.transparent)
    p = QPainter(out)
    for r in range(rows):
        p.drawImage(0, r * h, img, r * chunk, 0, min(chunk, w - r * chunk), h)
    p.end()
    return out


class _FetchSignals(QObject):
    done = Signal(int, object, object)  # generation, data, error


class _Fetch(QRunnable):
    def __init__(self, gen: int, fn: Callable[[], object], signals: _FetchSignals):
        super().__init__()
        self.gen, self.fn, self.signals = gen, fn, signals

    def run(self) -> None:
        try:
            data, err = self.fn(), None
        except Exception as exc:  # reported in the dock
            data, err = None, f"{type(exc).__name__}: {exc}"
        try:
            self.signals.done.emit(self.gen, data, err)
        except RuntimeError:
            pass


class HistoryDock(QWidget):
    openRequested = Signal(object, object)  # run id, result id (or None)
    useParamsRequested = Signal(object)  # run id
    reproduceRequested = Signal(object)  # run id
    compareRequested = Signal(object, object)  # (run id, result id), (run id, result id)
    exportRequested = Signal(object, object)  # run id, result id
    sendToRequested = Signal(object, object, str)  # run id, result id, tool id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.source: Optional[SessionView] = None
        self.runs: dict[int, RunInfo] = {}
        self._limit = PAGE
        self._generation = 0
        self._pending = False
        self._known_tools: list[str] = []
        self._seen_tools: list[str] = []
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # reads in order, one at a time
        self._fetch_signals = _FetchSignals()
        self._fetch_signals.done.connect(self._apply, Qt.ConnectionType.QueuedConnection)
        self.loader = ThumbnailLoader(THUMB, self)
        self.loader.ready.connect(self._thumb_ready)
        self._select_next: Optional[int] = None  # a run to select when the next answer arrives
        self._gallery_items: dict[tuple[int, Optional[int]], QListWidgetItem] = {}
        self._tree_items: dict[int, QTreeWidgetItem] = {}

        # filters
        self.tool_filter = QComboBox()
        self.tool_filter.addItem("All tools", None)
        # the filters keep a short width (their lists name long tool ids), so the dock stays narrow
        for combo in (self.tool_filter,):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(4)
            combo.setMinimumWidth(64)  # an explicit minimum: the layout may narrow it below its hint
        self.tool_filter.setToolTip("Show runs of one tool")
        self.tag_filter = QComboBox()
        self.tag_filter.addItem("All tags", None)
        self.tag_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.tag_filter.setMinimumContentsLength(4)
        self.tag_filter.setMinimumWidth(64)
        self.tag_filter.setToolTip("Show runs with this tag")
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Search prompts…")
        self.text_filter.setClearButtonEnabled(True)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.refresh)
        self.text_filter.textChanged.connect(lambda *_: self._debounce.start())
        self.tool_filter.currentIndexChanged.connect(lambda *_: self.refresh())
        self.tag_filter.currentIndexChanged.connect(lambda *_: self.refresh())

        self.mode = QTabBar()
        self.mode.addTab("Gallery")
        self.mode.addTab("Tree")
        self.mode.setDrawBase(False)
        self.mode.setExpanding(False)

        # gallery
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setGridSize(QSize(THUMB + 16, THUMB + 34))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setMovement(QListWidget.Movement.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(True)
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.gallery.itemDoubleClicked.connect(lambda it: self._open_item(it))
        self.gallery.itemSelectionChanged.connect(self._selection_changed)
        self.gallery.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.gallery.customContextMenuRequested.connect(lambda pos: self._menu(self.gallery.viewport().mapToGlobal(pos)))
        self.gallery.verticalScrollBar().valueChanged.connect(self._maybe_more)

        # tree
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Run", "Tool", "Status", "When"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setIconSize(QSize(40, 40))
        self.tree.itemDoubleClicked.connect(lambda it, _c: self._open_item(it))
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(lambda pos: self._menu(self.tree.viewport().mapToGlobal(pos)))
        self.tree.setColumnWidth(0, 150)

        self.empty = QLabel("No runs yet.\nResults you make appear here, newest first.")
        self.empty.setObjectName("placeholder")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.gallery)
        self.stack.addWidget(self.tree)
        self.stack.addWidget(self.empty)
        self.mode.currentChanged.connect(lambda _i: self._show_view())

        # actions
        self.open_btn = self._button("Open", "DialogOpenButton", "Show the selected result", self._open_selected)
        self.use_btn = self._button("Use", "ArrowBack", "Put this run's tool and parameters into the form", self._use_selected)
        self.repro_btn = self._button("Reproduce", "BrowserReload", "Run again with identical parameters and seed, and check the output matches bit for bit", self._repro_selected)
        self.compare_btn = self._button("Compare", "FileDialogContentsView", "Compare two selected results side by side", self._compare_selected)
        # (run id, result id) -> where it can be sent (app.ui.send_to.Target); set by the window
        self._targets_of: Callable[[int, Optional[int]], list] = lambda _run, _res: []
        self.send_btn = QToolButton()
        self.send_btn.setText("Send to")
        self.send_btn.setIcon(std("ArrowRight"))
        self.send_btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.send_btn.setToolTip("Open a tool that takes the selected result (an image, an agent, a trajectory…) as its input")
        self.send_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.send_btn.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.send_menu = QMenu(self.send_btn)
        self.send_menu.aboutToShow.connect(lambda: self._fill_send_menu(self.send_menu))
        self.send_btn.setMenu(self.send_menu)
        self.more_btn = QToolButton()
        self.more_btn.setIcon(std("TitleBarUnshadeButton"))
        self.more_btn.setToolTip("Tag, rate, note, export…")
        self.more_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more_btn)
        more.aboutToShow.connect(lambda: self._fill_menu(more))
        self.more_btn.setMenu(more)
        self.more_btn.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.count_label = ElidedLabel("", min_width=30)
        self.count_label.setObjectName("muted")
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.setSpacing(4)
        filters.addWidget(self.tool_filter, 1)
        filters.addWidget(self.tag_filter, 1)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.mode)
        top.addWidget(self.count_label, 1)
        # the buttons wrap onto a second line in a narrow dock: every one stays whole and visible
        # (a tool bar folded Reproduce and Compare into an extension menu that was clipped away)
        self.actions_bar = QWidget()
        actions_flow = FlowLayout(self.actions_bar, spacing=2)
        for b in (self.open_btn, self.use_btn, self.send_btn, self.repro_btn, self.compare_btn, self.more_btn):
            b.setIconSize(QSize(16, 16))
            b.setAutoRaise(True)
            actions_flow.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        lay.addWidget(self.text_filter)
        lay.addLayout(filters)
        lay.addLayout(top)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.actions_bar)
        self._show_view()

    def _button(self, text: str, icon: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setIcon(std(icon))
        b.setToolTip(tip)
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        b.clicked.connect(slot)
        return b

    # --- data -------------------------------------------------------------------------
    def set_source(self, source: SessionView) -> None:
        self.source = source
        self.refresh()

    def set_known_tools(self, tool_ids: list[str]) -> None:
        """Tool ids offered in the tool filter besides those found in the session."""
        self._known_tools = sorted(set(tool_ids))
        self._fill_combo(self.tool_filter, sorted(set(self._known_tools) | set(self._seen_tools)), "All tools")

    def refresh_filters(self) -> None:
        """The tag and tool lists are re-read with the next :meth:`refresh`."""
        self.refresh()

    @staticmethod
    def _fill_combo(combo: QComboBox, values: list, all_label: str) -> None:
        cur = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(all_label, None)
        for v in values:
            combo.addItem(str(v), v)
        i = combo.findData(cur)
        if i < 0 and cur is not None:  # keep a filter the person chose even if it has no runs now
            combo.addItem(str(cur), cur)
            i = combo.count() - 1
        combo.setCurrentIndex(max(0, i))
        combo.blockSignals(False)

    def filters(self) -> dict:
        return {
            "tool": self.tool_filter.currentData(),
            "tag": self.tag_filter.currentData(),
            "text": self.text_filter.text().strip() or None,
        }

    def set_text_filter(self, text: str) -> None:
        self.text_filter.setText(text)
        self._debounce.stop()
        self.refresh()

    def set_tool_filter(self, tool_id: str | None) -> None:
        i = self.tool_filter.findData(tool_id)
        if i < 0 and tool_id is not None:
            self.tool_filter.addItem(tool_id, tool_id)
            i = self.tool_filter.count() - 1
        self.tool_filter.setCurrentIndex(max(0, i))

    def set_tag_filter(self, tag: str | None) -> None:
        i = self.tag_filter.findData(tag)
        if i < 0 and tag is not None:
            self.tag_filter.addItem(tag, tag)
            i = self.tag_filter.count() - 1
        self.tag_filter.setCurrentIndex(max(0, i))

    def refresh(self, keep_limit: bool = False) -> None:
        """Re-read the session (on a worker thread; the dock updates when the answer arrives and
        emits ``refreshed``). Only the newest request is applied."""
        if not keep_limit:
            self._limit = PAGE
        if self.source is None:
            return
        self._generation += 1
        gen, limit, filters, source = self._generation, self._limit, self.filters(), self.source

        def fetch():
            runs = source.list_runs(limit=limit, **filters)
            tags = source.all_tags()
            return runs, tags

        self._pending = True
        self._pool.start(_Fetch(gen, fetch, self._fetch_signals))

    def wait_idle(self, msecs: int = 10000) -> bool:
        """Block until queued reads finished and their answers were applied (tests, closing)."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer  # noqa: PLC0415

        deadline = QDeadlineTimer(msecs)
        while self._pending and not deadline.hasExpired():
            self._pool.waitForDone(20)
            QCoreApplication.processEvents()
        return not self._pending

    def _apply(self, gen: int, data: object, error: Optional[str]) -> None:
        if gen != self._generation:
            return  # an older request; a newer one is on its way
        self._pending = False
        if error is not None:
            log.error("history: listing runs failed: %s", error)
            self.count_label.set_full_text(f"cannot list runs: {error}")
            self.refreshed.emit()
            return
        runs, tags = data
        self._seen_tools = sorted({r.tool_id for r in runs} | set(self._seen_tools))
        if self.filters()["tool"] != INPUT_TOOL_ID:
            # inputs kept for reproducibility (a painted mask) are not runs an artist made: they
            # show in the tooltip of the run that used them, and under the "input" tool filter
            runs = [r for r in runs if r.tool_id != INPUT_TOOL_ID]
        self._fill_combo(self.tool_filter, sorted(set(self._known_tools) | set(self._seen_tools)), "All tools")
        self._fill_combo(self.tag_filter, list(tags), "All tags")
        sel = self.selected()
        self.runs = {r.id: r for r in runs}
        self._fill_gallery(runs)
        self._fill_tree(runs)
        self.count_label.set_full_text(f"{len(runs)} run{'s' if len(runs) != 1 else ''}" + ("+" if len(runs) >= self._limit else ""))
        filtered = any(v for v in self.filters().values())
        self.empty.setText("No runs match these filters." if filtered else
                           "No runs yet.\nResults you make appear here, newest first.")
        self._show_view()
        if sel:
            self.select(*sel[0])
        if self._select_next is not None:
            self.select(self._select_next)
            self._select_next = None
        self._selection_changed()
        self.refreshed.emit()

    def select_after_refresh(self, run_id: int) -> None:
        """Select ``run_id`` once the next refresh has listed it (a run that just finished)."""
        self._select_next = run_id

    def _show_view(self) -> None:
        if not self.runs:
            self.stack.setCurrentWidget(self.empty)
        else:
            self.stack.setCurrentIndex(self.mode.currentIndex())
        self._selection_changed()

    def _maybe_more(self, value: int) -> None:
        sb = self.gallery.verticalScrollBar()
        if value >= sb.maximum() - 10 and len(self.runs) >= self._limit:
            self._limit += PAGE
            self.refresh(keep_limit=True)

    def _placeholder_icon(self, run: RunInfo) -> QIcon:
        return std({"failed": "MessageBoxCritical", "cancelled": "BrowserStop"}.get(run.status, "FileIcon"))

    def _fill_gallery(self, runs: list[RunInfo]) -> None:
        self.gallery.clear()
        self._gallery_items.clear()
        for run in runs:
            results = [r for r in run.results if r.kind in ("image", "mask")] or run.results[:1]
            if not results:
                results = [None]
            for n, res in enumerate(results):
                rid = res.id if res is not None else None
                caption = f"{STATUS_MARK.get(run.status, '')}#{run.id} {run.tool_id}"
                if n:  # a run's further pictures (a sweep's images, a trajectory filmstrip) say which they are
                    caption = f"#{run.id} · {result_label(res) or f'{n + 1} of {len(results)}'}"
                it = QListWidgetItem(self._placeholder_icon(run), caption)
                it.setData(Qt.ItemDataRole.UserRole, (run.id, rid))
                it.setToolTip(run_tooltip(run))
                it.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
                self.gallery.addItem(it)
                self._gallery_items[(run.id, rid)] = it
                if res is not None and res.kind in ("image", "mask"):
                    self.loader.request(("g", run.id, rid), str(res.path))

    def _fill_tree(self, runs: list[RunInfo]) -> None:
        self.tree.clear()
        items: dict[int, QTreeWidgetItem] = {}
        self._tree_items = items  # before any thumbnail request: cached ones answer at once
        by_id = {r.id: r for r in runs}
        # parents first so children can attach (runs are newest first)
        for run in sorted(runs, key=lambda r: r.id):
            first = run.results[0] if run.results else None
            it = QTreeWidgetItem([f"#{run.id}", run.tool_id, run.status, run_when(run)])
            it.setData(0, Qt.ItemDataRole.UserRole, (run.id, first.id if first is not None else None))
            it.setToolTip(0, run_tooltip(run))
            it.setIcon(0, self._placeholder_icon(run))
            parent = items.get(run.parent_run_id) if run.parent_run_id in by_id else None
            if parent is not None:
                parent.addChild(it)
            else:
                self.tree.insertTopLevelItem(0, it)
            items[run.id] = it
            if first is not None and first.kind in ("image", "mask"):
                self.loader.request(("t", run.id, first.id), str(first.path))
        self.tree.expandAll()

    def _thumb_ready(self, key: tuple[str, int, int], img: QImage) -> None:
        if img.isNull():
            return
        where, run_id, rid = key
        if where == "g":
            it = self._gallery_items.get((run_id, rid))
            if it is not None:
                it.setIcon(QIcon(_centred_square(img, THUMB)))
        else:
            it = self._tree_items.get(run_id)
            if it is not None:
                it.setIcon(0, QIcon(QPixmap.fromImage(img)))

    # --- selection and actions ------------------------------------------------------------
    def selected(self) -> list[tuple]:
        """Selected (run id, result id) pairs in the visible view."""
        view = self.stack.currentWidget()
        if view is self.empty:
            return []
        items = view.selectedItems()
        out = []
        for it in items:
            data = it.data(0, Qt.ItemDataRole.UserRole) if isinstance(it, QTreeWidgetItem) else it.data(Qt.ItemDataRole.UserRole)
            if data is not None:
                out.append(tuple(data))
        return out

    def select(self, run_id: int, result_id: Optional[int] = None) -> bool:
        if self.mode.currentIndex() == 0:
            for (rid, resid), it in self._gallery_items.items():
                if rid == run_id and (result_id is None or resid == result_id):
                    self.gallery.clearSelection()
                    it.setSelected(True)
                    self.gallery.setCurrentItem(it)
                    self.gallery.scrollToItem(it)
                    return True
            return False
        it = self._tree_items.get(run_id)
        if it is not None:
            self.tree.clearSelection()
            it.setSelected(True)
            self.tree.setCurrentItem(it)
            return True
        return False

    def gallery_keys(self) -> list[tuple]:
        return [self.gallery.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.gallery.count())]

    def _selection_changed(self) -> None:
        sel = self.selected()
        one = len(sel) == 1
        self.open_btn.setEnabled(one and sel[0][1] is not None)
        self.use_btn.setEnabled(one)
        self.repro_btn.setEnabled(one)
        self.compare_btn.setEnabled(len(sel) == 2)
        self.send_btn.setEnabled(self.sendable() is not None)

    def set_targets_provider(self, targets_of: Callable[[int, Optional[int]], list]) -> None:
        """Where a selected result can be sent: ``targets_of(run id, result id)`` gives the
        :class:`app.ui.send_to.Target` s (the window finds them from the tools and the run)."""
        self._targets_of = targets_of
        self._selection_changed()

    def sendable(self) -> tuple | None:
        """(run id, result id) of the one selected run when some tool takes one of its results
        (an image, an agent, a trajectory), else None."""
        sel = self.selected()
        if len(sel) != 1:
            return None
        run_id, result_id = sel[0]
        return (run_id, result_id) if self._targets_of(run_id, result_id) else None

    def _fill_send_menu(self, menu: QMenu) -> None:
        from app.ui.send_to import fill_menu  # noqa: PLC0415

        src = self.sendable()
        found = self._targets_of(*src) if src else []
        fill_menu(menu, found, lambda t: self.sendToRequested.emit(src[0], src[1], t.tool_id) if src else None,
                  enabled=src is not None)

    def _open_item(self, it: QListWidgetItem | QTreeWidgetItem) -> None:
        data = it.data(0, Qt.ItemDataRole.UserRole) if isinstance(it, QTreeWidgetItem) else it.data(Qt.ItemDataRole.UserRole)
        if data is not None:
            self.openRequested.emit(data[0], data[1])

    def _open_selected(self) -> None:
        sel = self.selected()
        if sel:
            self.openRequested.emit(*sel[0])

    def _use_selected(self) -> None:
        sel = self.selected()
        if sel:
            self.useParamsRequested.emit(sel[0][0])

    def _repro_selected(self) -> None:
        sel = self.selected()
        if sel:
            self.reproduceRequested.emit(sel[0][0])

    def _compare_selected(self) -> None:
        sel = self.selected()
        if len(sel) == 2:
            self.compareRequested.emit(sel[0], sel[1])

    def _menu(self, global_pos) -> None:
        m = QMenu(self)
        self._fill_menu(m)
        m.exec(global_pos)

    def _fill_menu(self, m: QMenu) -> None:
        m.clear()
        sel = self.selected()
        one = len(sel) == 1
        for text, slot, enabled in (
            ("Open", self._open_selected, one and sel[0][1] is not None),
            ("Use parameters", self._use_selected, one),
            ("Reproduce", self._repro_selected, one),
            ("Compare", self._compare_selected, len(sel) == 2),
        ):
            a = m.addAction(text)
            a.triggered.connect(slot)
            a.setEnabled(enabled)
        send = m.addMenu("Send to")
        send.setEnabled(self.sendable() is not None)
        self._fill_send_menu(send)
        m.addSeparator()
        a = m.addAction("Add tag…")
        a.setEnabled(bool(sel))
        a.triggered.connect(self._add_tag)
        rate = m.addMenu("Rate")
        rate.setEnabled(bool(sel))
        for n in range(0, 6):
            ra: QAction = rate.addAction("★" * n if n else "No rating")
            ra.triggered.connect(lambda _=False, n=n: self._rate(n))
        a = m.addAction("Note…")
        a.setEnabled(one)
        a.triggered.connect(self._note)
        a = m.addAction("Export…")
        a.setEnabled(one and sel[0][1] is not None)
        a.triggered.connect(lambda: self.exportRequested.emit(*sel[0]) if sel else None)
        m.addSeparator()
        a = m.addAction("Refresh")
        a.triggered.connect(lambda: self.refresh())

    def _add_tag(self) -> None:
        sel = self.selected()
        if not sel or self.source is None:
            return
        tag, ok = QInputDialog.getText(self, "Add tag", "Tag:")
        if ok and tag.strip():
            self.add_tag([s[0] for s in sel], tag.strip())

    def add_tag(self, run_ids: list[int], tag: str) -> None:
        for rid in run_ids:
            self.source.add_tag(rid, tag)
        self.refresh()

    def _rate(self, n: int) -> None:
        for run_id, _ in self.selected():
            self.source.set_rating(run_id, n)
        self.refresh()

    def _note(self) -> None:
        sel = self.selected()
        if not sel:
            return
        run = self.runs.get(sel[0][0])
        text, ok = QInputDialog.getMultiLineText(self, "Note", "Note:", (run.note if run is not None else "") or "")
        if ok:
            self.source.set_note(sel[0][0], text)
            self.refresh()
