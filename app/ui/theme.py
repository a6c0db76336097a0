"""Look of the studio: Fusion style, a palette that follows the system light/dark scheme, and a
small style sheet for spacing and the accent colour.

``apply_theme(app)`` is called once at start-up and again whenever the system colour scheme changes
(``QStyleHints.colorSchemeChanged``), so a person switching their desktop to dark mode sees the
studio follow without restarting.
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#4f8cff"

_DARK = {
    "window": "#1f2126",
    "base": "#17191d",
    "alt": "#23262c",
    "panel": "#2a2d34",
    "text": "#e6e8ec",
    "muted": "#9aa1ad",
    "border": "#363a43",
    "button": "#2d3139",
    "highlight": ACCENT,
}
_LIGHT = {
    "window": "#f3f4f6",
    "base": "#ffffff",
    "alt": "#f7f8fa",
    "panel": "#ffffff",
    "text": "#1c1e22",
    "muted": "#5f6671",
    "border": "#d5d8de",
    "button": "#ffffff",
    "highlight": ACCENT,
}


def system_prefers_dark() -> bool:
    """True when the desktop asks for a dark colour scheme.

    ``IMPLICIT_STUDIO_THEME=dark|light`` overrides (used for screenshots and by people whose desktop
    does not report a scheme).
    """
    forced = os.environ.get("IMPLICIT_STUDIO_THEME", "").strip().lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    # Unknown: judge from the platform's default window colour.
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def colors(dark: bool) -> dict[str, str]:
    return dict(_DARK if dark else _LIGHT)


def build_palette(dark: bool) -> QPalette:
    c = colors(dark)
    pal = QPalette()
    role = QPalette.ColorRole
    pal.setColor(role.Window, QColor(c["window"]))
    pal.setColor(role.WindowText, QColor(c["text"]))
    pal.setColor(role.Base, QColor(c["base"]))
    pal.setColor(role.AlternateBase, QColor(c["alt"]))
    pal.setColor(role.ToolTipBase, QColor(c["panel"]))
    pal.setColor(role.ToolTipText, QColor(c["text"]))
    pal.setColor(role.PlaceholderText, QColor(c["muted"]))
    pal.setColor(role.Text, QColor(c["text"]))
    pal.setColor(role.Button, QColor(c["button"]))
    pal.setColor(role.ButtonText, QColor(c["text"]))
    pal.setColor(role.BrightText, QColor("#ff5555"))
    pal.setColor(role.Highlight, QColor(c["highlight"]))
    pal.setColor(role.HighlightedText, QColor("#ffffff"))
    pal.setColor(role.Link, QColor(ACCENT))
    pal.setColor(role.Mid, QColor(c["border"]))
    pal.setColor(role.Dark, QColor(c["border"]))
    pal.setColor(role.Light, QColor(c["panel"]))
    disabled = QColor(c["muted"])
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, r, disabled)
    return pal


def _icon_url(name: str, dark: bool) -> str:
    from app.paths import resources_dir

    return (resources_dir() / "icons" / f"{name}-{'dark' if dark else 'light'}.svg").as_posix()


def style_sheet(dark: bool) -> str:
    c = colors(dark)
    up, down = _icon_url("chevron-up", dark), _icon_url("chevron-down", dark)
    return f"""
QMainWindow::separator {{ background: {c['border']}; width: 1px; height: 1px; }}
QDockWidget {{ titlebar-close-icon: none; font-weight: 600; }}
QDockWidget::title {{ padding: 6px 8px; background: {c['window']}; border-bottom: 1px solid {c['border']}; }}
QToolBar {{ border: none; spacing: 4px; padding: 4px; background: {c['window']}; }}
QStatusBar {{ border-top: 1px solid {c['border']}; }}
QGroupBox {{ border: 1px solid {c['border']}; border-radius: 6px; margin-top: 14px; padding: 8px 6px 6px 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {c['muted']}; }}
QLineEdit, QPlainTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    border: 1px solid {c['border']}; border-radius: 5px; padding: 3px 6px; background: {c['base']};
    selection-background-color: {ACCENT};
}}
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {{
    border: 1px solid {ACCENT};
}}
QSpinBox, QDoubleSpinBox {{ padding-right: 18px; }}
QSpinBox::up-button, QDoubleSpinBox::up-button {{ subcontrol-origin: border; subcontrol-position: top right;
    width: 16px; border: none; border-left: 1px solid {c['border']}; border-top-right-radius: 5px; }}
QSpinBox::down-button, QDoubleSpinBox::down-button {{ subcontrol-origin: border; subcontrol-position: bottom right;
    width: 16px; border: none; border-left: 1px solid {c['border']}; border-bottom-right-radius: 5px; }}
QSpinBox::up-button:hover, QDoubleSpinBox::up-button:hover, QSpinBox::down-button:hover, QDoubleSpinBox::down-button:hover {{ background: {c['alt']}; }}
QSpinBox::up-arrow, QDoubleSpinBox::up-arrow {{ image: url({up}); width: 9px; height: 9px; }}
QSpinBox::down-arrow, QDoubleSpinBox::down-arrow {{ image: url({down}); width: 9px; height: 9px; }}
QComboBox {{ padding-right: 20px; }}
QComboBox::drop-down {{ subcontrol-origin: padding; subcontrol-position: center right; width: 20px; border: none; }}
QComboBox::down-arrow {{ image: url({down}); width: 10px; height: 10px; }}
QComboBox QAbstractItemView {{ border: 1px solid {c['border']}; background: {c['base']}; selection-background-color: {ACCENT}; }}
QPushButton {{ border: 1px solid {c['border']}; border-radius: 5px; padding: 5px 12px; background: {c['button']}; }}
QPushButton:hover {{ border-color: {ACCENT}; }}
QPushButton:disabled {{ color: {c['muted']}; }}
QPushButton#primary {{ background: {ACCENT}; color: white; border: 1px solid {ACCENT}; font-weight: 600; padding: 7px 16px; }}
QPushButton#primary:hover {{ background: #3f7af0; }}
QPushButton#primary:disabled {{ background: {c['border']}; border-color: {c['border']}; color: {c['muted']}; }}
QToolButton {{ border: 1px solid transparent; border-radius: 5px; padding: 3px; }}
QToolButton:hover {{ border-color: {c['border']}; background: {c['panel']}; }}
QToolButton:checked {{ background: {ACCENT}; color: white; border-color: {ACCENT}; }}
QTreeView, QListView, QTableView {{ border: none; background: {c['base']}; }}
QTreeView::item, QListView::item {{ padding: 3px 2px; }}
QTreeView::item:selected, QListView::item:selected {{ background: {ACCENT}; color: white; border-radius: 4px; }}
QProgressBar {{ border: 1px solid {c['border']}; border-radius: 5px; text-align: center; background: {c['base']}; min-height: 16px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 4px; }}
QSlider::groove:horizontal {{ height: 4px; background: {c['border']}; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {c['text'] if dark else '#ffffff'}; border: 1px solid {c['border']};
    width: 14px; height: 14px; margin: -6px 0; border-radius: 7px; }}
QTabBar::tab {{ padding: 5px 12px; }}
QLabel#muted {{ color: {c['muted']}; }}
QLabel#title {{ font-size: 15px; font-weight: 600; }}
QLabel#placeholder {{ color: {c['muted']}; font-size: 14px; }}
QFrame#card {{ background: {c['panel']}; border: 1px solid {c['border']}; border-radius: 8px; }}
QScrollArea {{ border: none; }}
"""


def apply_theme(app: QApplication) -> bool:
    """Apply Fusion + palette + style sheet for the current system scheme; returns ``dark``."""
    dark = system_prefers_dark()
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setPalette(build_palette(dark))
    app.setStyleSheet(style_sheet(dark))
    app.setProperty("implicit_studio_dark", dark)
    return dark


def follow_system(app: QApplication) -> None:
    """Re-apply the theme whenever the system colour scheme changes."""
    hints = QGuiApplication.styleHints()
    if hints is not None and hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda *_: apply_theme(app))
