"""Fixtures for the window tests: an isolated config/data/log folder, a plugin manager with the
toy plugin (and optionally a broken one from tests/plugins_fixture), and the real main window."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURE_PLUGINS = Path(__file__).resolve().parent.parent / "plugins_fixture"


@pytest.fixture
def studio_env(tmp_path, monkeypatch):
    """Settings, logs, data and the window's QSettings all live under ``tmp_path``."""
    monkeypatch.setenv("IMPLICIT_STUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMPLICIT_STUDIO_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("IMPLICIT_STUDIO_THEME", "light")
    return tmp_path


def make_manager(settings, with_broken: bool = False):
    from app.plugins import PluginManager

    from . import toy_plugin

    env = {"IMPLICIT_STUDIO_LOAD_PLUGINS": "toy,studio_broken"}
    if with_broken:
        env["IMPLICIT_STUDIO_PLUGINS_DIR"] = str(FIXTURE_PLUGINS)
    pm = PluginManager(settings, entry_points=[], env=env).load()
    pm.register_plugin(toy_plugin, "toy", version="1.2.3")
    return pm


@pytest.fixture
def make_window(qtbot, studio_env):
    """Build (and afterwards close) main windows on a session in ``tmp_path``."""
    from app.settings import Settings
    from app.ui.main_window import MainWindow

    windows = []

    def _make(with_broken: bool = False, session: str = "session"):
        settings = Settings()
        pm = make_manager(settings, with_broken)
        win = MainWindow(session_dir=studio_env / session, manager=pm, settings=settings)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        # Keyboard shortcuts go to the active window. Offscreen, a shown window is active; under
        # Xvfb (CI runs the suite with the xcb platform for the OpenGL tests) and no window
        # manager, it must be activated explicitly.
        win.raise_()
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=5000)
        qtbot.waitUntil(win.is_ready, timeout=30000)  # the session opens after the first paint
        windows.append(win)
        return win

    yield _make
    for w in windows:
        if w.isVisible():
            w.close()


@pytest.fixture
def window(make_window):
    return make_window()


def storage_ready() -> bool:
    try:
        from storage import SessionStore  # noqa: F401
    except ImportError:
        try:
            from storage.store import SessionStore  # noqa: F401
        except ImportError:
            return False
    return True


needs_storage = pytest.mark.skipif(not storage_ready(), reason="storage.SessionStore is not available yet")


def diffusion_window(qtbot, session_dir, plugins: dict):
    """The real main window with built-in diffusion plugins (name -> plugin module) on the CPU with
    one torch thread, its session open; the caller closes it."""
    import torch

    from app.plugins import PluginManager
    from app.settings import Settings
    from app.ui.main_window import MainWindow

    torch.set_num_threads(1)
    settings = Settings()
    settings.set("device", "cpu")
    pm = PluginManager(settings, entry_points=[], env={"IMPLICIT_STUDIO_LOAD_PLUGINS": ",".join(plugins)}).load()
    for name, module in plugins.items():
        pm.register_plugin(module, name, version="1")
    win = MainWindow(session_dir=session_dir, manager=pm, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(win.is_ready, timeout=30000)
    return win
