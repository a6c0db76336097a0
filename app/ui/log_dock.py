"""The log dock: records of the ``implicit_studio`` loggers, from any thread, with a level filter."""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

from app.widgets.icons import std

MAX_LINES = 5000


class _Bridge(QObject):
    record = Signal(int, str)


class QtLogHandler(logging.Handler):
    """A logging handler that forwards formatted records to the GUI thread through a signal
    (queued across threads, so a worker thread never touches a widget)."""

    def __init__(self, level: int = logging.INFO):
        super().__init__(level)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(asctime)s  %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bridge.record.emit(record.levelno, self.format(record))
        except RuntimeError:  # the bridge was deleted while the app shuts down
            pass


class LogDock(QWidget):
    LEVELS = (("Debug", logging.DEBUG), ("Info", logging.INFO), ("Warnings", logging.WARNING), ("Errors", logging.ERROR))

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setMinimumHeight(40)
        f = self.view.font()
        f.setFamily("monospace")
        f.setStyleHint(f.StyleHint.Monospace)
        self.view.setFont(f)
        self.level = QComboBox()
        for name, lv in self.LEVELS:
            self.level.addItem(name, lv)
        self.level.setCurrentIndex(1)
        self.clear_btn = QToolButton()
        self.clear_btn.setIcon(std("DialogResetButton"))
        self.clear_btn.setToolTip("Clear the log view")
        self.clear_btn.clicked.connect(self.view.clear)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.level)
        top.addStretch(1)
        top.addWidget(self.clear_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        lay.addLayout(top)
        lay.addWidget(self.view)
        self.handler = QtLogHandler(logging.DEBUG)
        self.handler.bridge.record.connect(self.append, Qt.ConnectionType.QueuedConnection)

    def attach(self, logger_name: str = "implicit_studio") -> None:
        lg = logging.getLogger(logger_name)
        if self.handler not in lg.handlers:
            lg.addHandler(self.handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)

    def detach(self, logger_name: str = "implicit_studio") -> None:
        logging.getLogger(logger_name).removeHandler(self.handler)

    def append(self, levelno: int, text: str) -> None:
        if levelno < (self.level.currentData() or 0):
            return
        fmt = QTextCharFormat()
        if levelno >= logging.ERROR:
            fmt.setForeground(QColor("#e5484d"))
        elif levelno >= logging.WARNING:
            fmt.setForeground(QColor("#d9a000"))
        cur = self.view.textCursor()
        cur.movePosition(QTextCursor.MoveOperation.End)
        if not self.view.document().isEmpty():
            cur.insertBlock()
        cur.insertText(text, fmt)
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())

    def message(self, text: str, levelno: int = logging.INFO) -> None:
        """Add a line from the window itself."""
        self.append(levelno, f"{time.strftime('%H:%M:%S')}  {logging.getLevelName(levelno):<7} window: {text}")

    def text(self) -> str:
        return self.view.toPlainText()
