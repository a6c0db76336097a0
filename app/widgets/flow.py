"""Layouts and labels that never widen the window (part of the widget kit).

- :class:`FlowLayout`: lays its items out left to right and wraps onto the next line when the
  width runs out, so a row of buttons in a narrow dock shows every button (on two lines) instead
  of clipping the last ones or widening the dock. Its minimum width is that of its widest item.
- :class:`ElidedLabel`: one line of text cut with an ellipsis to the width it is given (the whole
  text in its tooltip); it never asks for the width of its text.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLabel, QLayout, QLayoutItem, QSizePolicy, QWidget, QWidgetItem


class FlowLayout(QLayout):
    """Items in rows that wrap (see the module docstring). ``align_right`` puts the items of
    each row at the right edge (a header's buttons)."""

    def __init__(self, parent: Optional[QWidget] = None, spacing: int = 6, align_right: bool = False):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._stretch_at: Optional[int] = None  # items from this index on sit at the right edge of their row
        self._spacing = spacing
        self.align_right = align_right
        self.setContentsMargins(0, 0, 0, 0)

    # -- QLayout ------------------------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt API
        self._items.append(item)

    def addWidget(self, w: QWidget) -> None:  # noqa: N802 - Qt API
        self.addChildWidget(w)
        self.addItem(QWidgetItem(w))
        self.invalidate()

    def addStretch(self) -> None:  # noqa: N802 - Qt's name in box layouts
        """The items added after this sit at the right edge of the row they are on."""
        self._stretch_at = len(self._items)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> Optional[QLayoutItem]:  # noqa: N802 - Qt API
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> Optional[QLayoutItem]:  # noqa: N802 - Qt API
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def spacing(self) -> int:
        return self._spacing

    def setSpacing(self, spacing: int) -> None:  # noqa: N802 - Qt API
        self._spacing = spacing
        self.invalidate()

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt API
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API
        return self._place(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt API
        super().setGeometry(rect)
        self._place(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """All items on one line."""
        m = self.contentsMargins()
        visible = [i for i in self._items if not i.isEmpty()]
        w = sum(_hint(i).width() for i in visible) + self._spacing * max(0, len(visible) - 1)
        h = max((_hint(i).height() for i in visible), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt API
        """The widest item: everything else wraps."""
        m = self.contentsMargins()
        size = QSize()
        for i in self._items:
            if not i.isEmpty():
                size = size.expandedTo(i.minimumSize())
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    # -- placing ------------------------------------------------------------------------------
    def _place(self, rect: QRect, apply: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        rows: list[list[tuple[QLayoutItem, QSize, bool]]] = [[]]
        x = 0
        for index, item in enumerate(self._items):
            if item.isEmpty():
                continue
            hint = _hint(item)
            w = min(hint.width(), max(area.width(), item.minimumSize().width()))
            if rows[-1] and x + self._spacing + w > area.width():
                rows.append([])
                x = 0
            x += (self._spacing if rows[-1] else 0) + w
            right = self._stretch_at is not None and index >= self._stretch_at
            rows[-1].append((item, QSize(w, hint.height()), right))
        y = area.y()
        for row in rows:
            if not row:
                continue
            height = max(s.height() for _, s, _r in row)
            used = sum(s.width() for _, s, _r in row) + self._spacing * (len(row) - 1)
            free = max(0, area.width() - used)
            x = area.x() + (free if self.align_right else 0)
            pushed = self.align_right
            for item, size, right in row:
                if right and not pushed:  # the first item after the stretch: the rest go right
                    x += free
                    pushed = True
                if apply:
                    item.setGeometry(QRect(QPoint(x, y + (height - size.height()) // 2), size))
                x += size.width() + self._spacing
            y += height + self._spacing
        return y - self._spacing - area.y() + m.top() + m.bottom() if y > area.y() else m.top() + m.bottom()


def _hint(item: QLayoutItem) -> QSize:
    """The size an item would like (a widget's own hint: a layout item of a widget whose policy is
    Ignored says 0), never under its minimum nor over its maximum."""
    w = item.widget()
    if w is None:
        return item.sizeHint().expandedTo(item.minimumSize())
    hint = w.sizeHint().expandedTo(w.minimumSizeHint()).boundedTo(w.maximumSize())
    return hint.expandedTo(w.minimumSize()).expandedTo(item.minimumSize())


class ElidedLabel(QLabel):
    """One line cut with an ellipsis to its width; the whole text is the tooltip (see the module
    docstring). ``mode`` is where the ellipsis goes (right by default)."""

    def __init__(self, text: str = "", parent: Optional[QWidget] = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight, min_width: int = 40):
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(min_width)
        self.set_full_text(text)

    def set_full_text(self, text: str, tooltip: Optional[str] = None) -> None:
        self._full = text or ""
        self.setToolTip(self._full if tooltip is None else tooltip)
        self._elide()
        self.updateGeometry()

    def full_text(self) -> str:
        return self._full

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        fm = self.fontMetrics()
        m = self.contentsMargins()
        return QSize(fm.horizontalAdvance(self._full) + 6 + m.left() + m.right(), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(self.minimumWidth(), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt API: a style sheet's font arrives late
        super().changeEvent(event)
        if event.type() in (event.Type.FontChange, event.Type.StyleChange):
            self._elide()
            self.updateGeometry()

    def _elide(self) -> None:
        m = self.contentsMargins()
        room = max(self.width() - m.left() - m.right(), 10)
        self.setText(self.fontMetrics().elidedText(self._full, self._mode, room))
