"""Opening the window: the QApplication (theme, organisation name, shared OpenGL contexts) and
:func:`launch`, which the command line calls."""

from __future__ import annotations

import os
import sys
import traceback

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.ui import window_state
from app.ui.theme import apply_theme, follow_system


def ensure_app(argv: list[str]) -> QApplication:
    """The application object (made once), themed and following the system's light/dark setting."""
    app = QApplication.instance()
    if app is None:
        QApplication.setOrganizationName(window_state.ORG_NAME)
        QApplication.setApplicationName(window_state.APP_NAME)
        QApplication.setApplicationDisplayName("Implicit Studio")
        prog = sys.argv[0] if sys.argv else window_state.APP_NAME
        args = list(argv)
        if args and args[0] == prog:
            args = args[1:]
        QApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)  # before the app: GL views share
        app = QApplication([prog] + args)
    apply_theme(app)
    follow_system(app)
    return app


def prepare_compute_threads(environ: "os._Environ[str] | dict[str, str] | None" = None) -> bool:
    """OpenMP's threads of the window's runs sleep while they wait instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``), unless the environment already chose. A spinning thread holds
    the core a busy neighbour needs, and generation slowed 10-40x when another process loaded
    the CPU; ``benchmarks/bench_window_threads.py`` measured the policies (RESULTS.md, issue 28,
    item 14). OpenMP reads the variable once, when torch is first imported (in a run, never at
    start-up), so this is called before; returns False when torch was already imported."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return False
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def launch(argv: list[str] | None = None, session_dir: str | os.PathLike | None = None,
           exit_after_paint: bool = False) -> int:
    """Open the main window on ``session_dir`` (the default session when ``None``) and run the
    event loop; returns the exit status. With ``exit_after_paint`` print ``first-paint-ms: N``
    (from process start to the window's first paint) and exit 0."""
    prepare_compute_threads()
    app = ensure_app(list(argv or []))
    try:
        from app.settings import setup_logging  # noqa: PLC0415

        setup_logging()
    except Exception:
        pass
    from app.ui.main_window import MainWindow  # noqa: PLC0415

    try:
        win = MainWindow(session_dir=session_dir)
    except Exception as exc:
        print(f"implicit-studio: the window could not be opened: {exc}\n{traceback.format_exc()}", file=sys.stderr)
        if not exit_after_paint:
            QMessageBox.critical(None, "Implicit Studio", f"The window could not be opened:\n{exc}")
        return 1
    if exit_after_paint:
        def done(ms: float) -> None:
            print(f"first-paint-ms: {ms:.0f}", flush=True)
            QTimer.singleShot(0, lambda: app.exit(0))

        win.firstPainted.connect(done)
    win.show()
    return app.exec()
