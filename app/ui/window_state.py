"""The window's layout: its docks, and where it keeps the layout (geometry, docks, the selected
tool) and a tool's last parameters between starts."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QWidget

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger("implicit_studio.ui")

ORG_NAME = "ImplicitStudio"
APP_NAME = "implicit-studio"
STATE_VERSION = 1


def window_settings() -> QSettings:
    """Where the window keeps its layout. With ``IMPLICIT_STUDIO_CONFIG_DIR`` set (tests, portable
    installs) an INI file in that folder; otherwise the platform's native settings for
    ``ORG_NAME``/``APP_NAME``."""
    if os.environ.get("IMPLICIT_STUDIO_CONFIG_DIR"):
        from app.settings import config_dir  # noqa: PLC0415

        return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)
    return QSettings(ORG_NAME, APP_NAME)


def json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """The values that can be remembered as JSON (an image given as an array is not)."""
    out = {}
    for k, v in values.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def restore_state(win: MainWindow) -> tuple[bool, Optional[str]]:
    """Apply the saved geometry and dock layout; returns (layout restored, tool to select first)."""
    s = window_settings()
    geo = s.value("window/geometry")
    state = s.value("window/state")
    if isinstance(geo, (QByteArray, bytes)) and geo:
        win.restoreGeometry(geo)
    else:
        win.resize(1400, 880)
    restored = False
    if isinstance(state, (QByteArray, bytes)) and state:
        restored = bool(win.restoreState(state, STATE_VERSION))
    tools = win.manager.tools
    tool = s.value("window/tool")
    if tool and tool in tools:
        return restored, str(tool)
    if tools:
        first = sorted(tools.values(), key=lambda t: (t.plugin, t.title))[0]
        return restored, (tools.get("text-to-image") or first).id
    return restored, None


def save_state(win: MainWindow) -> None:
    s = window_settings()
    s.setValue("window/geometry", win.saveGeometry())
    s.setValue("window/state", win.saveState(STATE_VERSION))
    tool = win.tool_panel.current_tool
    if tool is not None:
        s.setValue("window/tool", tool.id)
        remember_params(win, tool.id, win.tool_panel.values())
    s.sync()


def remember_params(win: MainWindow, tool_id: str, values: dict[str, Any]) -> None:
    try:
        win.settings.set_last_params(tool_id, json_safe(values))
    except Exception:  # settings folder not writable: not a reason to refuse anything
        log.warning("could not remember the parameters", exc_info=True)


def _dock(win: MainWindow, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
    d = QDockWidget(title, win)
    d.setObjectName(f"dock_{name}")
    d.setWidget(widget)
    d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                  | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    win.addDockWidget(area, d)
    return d


def build_docks(win: MainWindow) -> None:
    """The four docks in their default places: Tools (complete at the first paint) on the left,
    History over Queue on the right, Log at the bottom; the last three get their contents right
    after the first paint, in these same frames, so a saved layout applies to all four at once."""
    win.tools_dock = _dock(win, "Tools", "tools", win.tool_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
    win.history_dock = _dock(win, "History", "history", QWidget(), Qt.DockWidgetArea.RightDockWidgetArea)
    win.queue_dock = _dock(win, "Queue", "queue", QWidget(), Qt.DockWidgetArea.RightDockWidgetArea)
    win.log_dock = _dock(win, "Log", "log", QWidget(), Qt.DockWidgetArea.BottomDockWidgetArea)
    win.splitDockWidget(win.history_dock, win.queue_dock, Qt.Orientation.Vertical)
    win.resizeDocks([win.tools_dock, win.history_dock], [360, 380], Qt.Orientation.Horizontal)
    win.resizeDocks([win.history_dock, win.queue_dock], [520, 260], Qt.Orientation.Vertical)
    win.resizeDocks([win.log_dock], [120], Qt.Orientation.Vertical)


def reset_layout(win: MainWindow) -> None:
    for d in (win.tools_dock, win.history_dock, win.queue_dock, win.log_dock):
        d.setFloating(False)
        d.show()
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, win.tools_dock)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, win.history_dock)
    win.splitDockWidget(win.history_dock, win.queue_dock, Qt.Orientation.Vertical)
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, win.log_dock)
