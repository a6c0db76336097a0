"""Spin boxes, sliders and combo boxes that take the mouse wheel only when focused (widget kit).

In a scrolling panel, the wheel scrolls the panel; a control under the pointer changed its value
instead (Grow/Shrink went from 2 to 1 while the artist scrolled). :func:`guard_wheel` makes every
such control in a widget (the control itself, or its children) take the wheel only once it has the
keyboard focus (a click or Tab gives it); otherwise the wheel goes on to the scroll area around it.
The window guards every tool panel it shows; a plugin's own widgets can call it too.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox,
                               QWidget)

GUARDED = (QAbstractSpinBox, QAbstractSlider, QComboBox)


class _WheelGuard(QObject):
    """Hands a wheel event over an unfocused control to the scroll area the control sits in."""

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt API
        if ev.type() != QEvent.Type.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        inner = obj.focusProxy() or obj.findChild(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)
        if isinstance(obj, QAbstractSpinBox) and inner is not None and inner.hasFocus():
            return False  # being edited: its line edit has the focus
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            # Qt does not pass a wheel event on to the parents of the widget that ignored it when
            # the event was sent (not spontaneous), so it goes to the scroll area's viewport here
            viewport = area.viewport()
            pos = QPointF(viewport.mapFromGlobal(ev.globalPosition().toPoint()))
            fwd = QWheelEvent(pos, ev.globalPosition(), ev.pixelDelta(), ev.angleDelta(), ev.buttons(),
                              ev.modifiers(), ev.phase(), ev.inverted())
            QApplication.sendEvent(viewport, fwd)
        return True


_GUARD: _WheelGuard | None = None


def guard_wheel(widget: QWidget | None) -> None:
    """Make the spin boxes, sliders and combo boxes in ``widget`` (and ``widget`` itself) take the
    wheel only when focused. Calling it again on the same widgets is harmless."""
    global _GUARD
    if widget is None:
        return
    if _GUARD is None:
        _GUARD = _WheelGuard(QApplication.instance())
    controls = [widget] if isinstance(widget, GUARDED) else []
    for kind in GUARDED:
        controls += widget.findChildren(kind)
    for w in controls:
        if w.property("wheelGuarded"):
            continue
        w.setProperty("wheelGuarded", True)
        if w.focusPolicy() == Qt.FocusPolicy.WheelFocus:  # the wheel must not give it the focus either
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.installEventFilter(_GUARD)
