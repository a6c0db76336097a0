"""Icons: our few SVGs in ``resources/icons`` (themed ``-dark``/``-light`` variants) and the Qt
standard style's icons for everything else."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

from app.paths import resources_dir


def icons_dir() -> Path:
    return resources_dir() / "icons"


def _is_dark() -> bool:
    app = QApplication.instance()
    return bool(app.property("implicit_studio_dark")) if app is not None else False


def icon_path(name: str, themed: bool = False, dark: bool | None = None) -> Path:
    if themed:
        d = _is_dark() if dark is None else dark
        return icons_dir() / f"{name}-{'dark' if d else 'light'}.svg"
    return icons_dir() / f"{name}.svg"


def icon(name: str, themed: bool = False) -> QIcon:
    p = icon_path(name, themed)
    return QIcon(str(p)) if p.is_file() else QIcon()


def std(which: str) -> QIcon:
    """A standard style icon by its short name, e.g. ``std("MediaPlay")``."""
    style = QApplication.style()
    return style.standardIcon(getattr(QStyle.StandardPixmap, f"SP_{which}"))
