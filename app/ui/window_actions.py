"""The window's tool bar and menus, and the dialogs they open (Plugins, Preferences, About)."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox, QSizePolicy, QWidget

from app.widgets.icons import std

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow
    from app.ui.plugins_dialog import PluginsDialog
    from app.ui.preferences import PreferencesDialog


def _action(win: MainWindow, icon: str | None, text: str, slot, *keys: str | QKeySequence.StandardKey | Qt.Key,
            tip: str = "") -> QAction:
    a = QAction(std(icon), text, win) if icon else QAction(text, win)
    if keys:
        a.setShortcuts([QKeySequence(k) for k in keys])
    if tip:
        a.setToolTip(tip)
    a.triggered.connect(slot)
    return a


def build_actions(win: MainWindow) -> None:
    """Make the window's actions (``win.act_run`` … ``win.act_prefs``), tool bar and menu bar."""
    tb = win.addToolBar("Main")
    tb.setObjectName("toolbar_main")
    tb.setMovable(False)
    tb.setIconSize(QSize(18, 18))
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    undo = win.undo_stack
    win.act_run = _action(win, "MediaPlay", "Generate", win.run_current, "Ctrl+Return", "Ctrl+Enter",
                          tip="Run the selected tool (Ctrl+Enter)")
    win.act_run.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    win.act_cancel = _action(win, "BrowserStop", "Cancel", win.cancel_running, Qt.Key.Key_Escape,
                             tip="Cancel the running job (Esc)")
    win.act_undo = _action(win, "ArrowBack", "Undo", undo.undo, "Ctrl+Z")
    win.act_redo = _action(win, "ArrowForward", "Redo", undo.redo, "Ctrl+Shift+Z", "Ctrl+Y")
    for act, can, text_changed, word, keys in (
            (win.act_undo, undo.canUndoChanged, undo.undoTextChanged, "Undo", "Ctrl+Z"),
            (win.act_redo, undo.canRedoChanged, undo.redoTextChanged, "Redo", "Ctrl+Shift+Z")):
        act.setEnabled(False)
        can.connect(act.setEnabled)
        text_changed.connect(lambda t, a=act, w=word, k=keys: a.setToolTip(f"{w} {t} ({k})" if t else f"{w} ({k})"))
    win.act_open = _action(win, "DialogOpenButton", "Open…", lambda: win.run_actions.open_dialog(), "Ctrl+O")
    win.act_export = _action(win, "DialogSaveButton", "Export…", lambda: win.run_actions.export_result(None, None),
                             "Ctrl+E")
    win.act_plugins = _action(win, "FileDialogListView", "Plugins", win.show_plugins)
    win.act_prefs = _action(win, None, "Preferences…", win.show_preferences, "Ctrl+,")
    for group in ((win.act_run, win.act_cancel), (win.act_undo, win.act_redo), (win.act_open, win.act_export)):
        if tb.actions():
            tb.addSeparator()
        for a in group:
            tb.addAction(a)
    spacer = QWidget()
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    tb.addWidget(spacer)
    tb.addAction(win.act_plugins)
    win.addAction(win.act_run)
    win.addAction(win.act_cancel)

    mb = win.menuBar()
    m_file = mb.addMenu("&File")
    m_file.addActions([win.act_open, win.act_export])
    m_file.addSeparator()
    m_file.addAction(_action(win, None, "Quit", win.close, "Ctrl+Q"))
    m_edit = mb.addMenu("&Edit")
    m_edit.addActions([win.act_undo, win.act_redo])
    m_edit.addSeparator()
    m_edit.addAction(win.act_prefs)
    mb.addMenu("&Run").addActions([win.act_run, win.act_cancel])
    m_view = mb.addMenu("&View")
    for d in (win.tools_dock, win.history_dock, win.queue_dock, win.log_dock):
        m_view.addAction(d.toggleViewAction())
    m_view.addSeparator()
    m_view.addAction(_action(win, None, "Reset layout", win.reset_layout))
    mb.addMenu("&Plugins").addAction(win.act_plugins)
    m_help = mb.addMenu("&Help")
    m_help.addAction(_action(win, None, "Quick guide", lambda: show_guide(win), QKeySequence.StandardKey.HelpContents))
    m_help.addAction(_action(win, None, "Keyboard shortcuts", lambda: show_shortcuts(win)))
    m_help.addSeparator()
    m_help.addAction(_action(win, None, "About Implicit Studio", lambda: show_about(win)))


def show_plugins(win: MainWindow) -> PluginsDialog:
    from app.ui.plugins_dialog import PluginsDialog  # noqa: PLC0415

    def set_enabled(name: str, enabled: bool) -> None:
        try:
            win.manager.set_enabled(name, enabled)
        except Exception as exc:
            win.show_error(f"Could not {'enable' if enabled else 'disable'} {name}", str(exc), traceback.format_exc())
        win.refresh_tools()
        dlg.note.setText(f"{name} {'enabled' if enabled else 'disabled'}; the choice is remembered.")

    dlg = PluginsDialog(list(win.manager.records.values()), set_enabled, win)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    dlg.show()
    return dlg


def show_preferences(win: MainWindow) -> PreferencesDialog:
    from app.ui.preferences import PreferencesDialog  # noqa: PLC0415

    dlg = PreferencesDialog(win.settings, list(win.manager.settings_pages), win)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)

    def saved() -> None:
        try:
            win.controller.set_device(win.settings.device)
        except Exception as exc:
            win.show_error("The device setting was not applied", str(exc))
        win.update_status_right()
        win.statusBar().showMessage("Preferences saved", 4000)

    dlg.accepted.connect(saved)
    dlg.show()
    return dlg


GUIDE = """<h3>Implicit Studio in a minute</h3>
<ol>
<li><b>Pick a tool</b> in <i>Tools</i> (left); its parameters are below it. Hover a field for what
it does; a field at its lowest value says what that means (<i>native size</i>, <i>default</i>).</li>
<li><b>Generate</b> (Ctrl+Enter) runs it; <i>Queue</i> shows the bar, Esc cancels. The result opens in
the centre, its run in <i>History</i> (right), with the seed whole (click it to copy).</li>
<li><b>Edit a result</b>: <i>Send to</i> (in the centre's header or History) hands it to h-Edit,
inpainting or any tool that takes its kind. Masks are painted on the big canvas in the centre:
wheel to zoom, right-drag or Space+drag to pan, [ and ] for the brush size; the side panel holds
the mask tools.</li>
<li><b>History</b> keeps every run: <i>Open</i> shows it, <i>Use</i> puts its parameters back in the
form, <i>Reproduce</i> runs it again and checks the output bit for bit. Runs made on the command
line appear here as they finish.</li>
<li><b>Export…</b> (Ctrl+E) writes the shown result; a PNG keeps the run's parameters in its text
chunks, and <b>Open…</b> (Ctrl+O) on such a PNG restores its tool and parameters.</li>
</ol>
<p><b>Undo/Redo</b> (Ctrl+Z, Ctrl+Shift+Z) step through the form's parameters only; results are not
undone, as none is ever lost: every run stays in History. On the mask canvas, with the focus in
it, Ctrl+Z undoes brush strokes.</p>
<p>The same tools run headless: <code>implicit-studio run TOOL --help</code>.</p>"""

#: Keys of the mask canvas (handled by the canvas itself, not actions of the window).
CANVAS_KEYS = (("[ ]", "mask canvas: smaller / larger brush"), ("Space + drag", "mask canvas: pan"),
               ("Wheel", "mask canvas: zoom about the pointer"),
               ("Ctrl+Z / Ctrl+Shift+Z", "mask canvas (with the focus): undo / redo a stroke"))


def show_guide(win: MainWindow) -> QMessageBox:
    box = QMessageBox(win)
    box.setWindowTitle("Implicit Studio: quick guide")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(GUIDE)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.setModal(False)
    box.show()
    return box


def shortcut_rows(win: MainWindow) -> list[tuple[str, str]]:
    """(keys, what) of every action of the window that has a shortcut, then the canvas's keys."""
    from PySide6.QtGui import QAction as _QAction  # noqa: PLC0415

    rows, seen = [], set()
    for act in win.findChildren(_QAction):
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in act.shortcuts() if not k.isEmpty()]
        name = act.text().replace("&", "").rstrip("…").strip()
        if not keys or not name or (name, tuple(keys)) in seen:
            continue
        seen.add((name, tuple(keys)))
        rows.append((" / ".join(keys), name))
    rows.sort(key=lambda r: r[1].lower())
    return rows + list(CANVAS_KEYS)


def show_shortcuts(win: MainWindow) -> QWidget:
    from html import escape  # noqa: PLC0415

    from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout  # noqa: PLC0415

    dlg = QDialog(win)
    dlg.setWindowTitle("Keyboard shortcuts")
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    dlg.browser = QTextBrowser(dlg)
    dlg.browser.setHtml("<table cellspacing=4>" + "".join(
        f"<tr><td><b>{escape(k)}</b></td><td>{escape(what)}</td></tr>" for k, what in shortcut_rows(win)) + "</table>")
    lay = QVBoxLayout(dlg)
    lay.addWidget(dlg.browser)
    dlg.resize(460, 420)
    dlg.show()
    return dlg


def show_about(win: MainWindow) -> None:
    from app import __version__  # noqa: PLC0415
    from app.api import API_VERSION  # noqa: PLC0415

    QMessageBox.about(win, "About Implicit Studio",
                      f"<b>Implicit Studio</b> {__version__}<br>Plugin API {API_VERSION}<br><br>"
                      "Diffusion image generation and editing, implicit neural representations and distributional RL, "
                      "in one plugin-based desktop studio.")


def error_box(win: MainWindow, message: str, details: str) -> QMessageBox:
    """A non-modal warning with the details folded away (deleted when closed)."""
    box = QMessageBox(win)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Implicit Studio")
    box.setText(message)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.show()
    return box


def report_failed_plugins(win: MainWindow) -> None:
    """Say in the Plugins button, the status bar and the log which plugins could not be loaded."""
    bad = [r for r in win.manager.records.values() if r.status in ("failed", "incompatible")]
    win.act_plugins.setText(f"Plugins ({len(bad)} failed)" if bad else "Plugins")
    win.act_plugins.setIcon(std("MessageBoxWarning") if bad else std("FileDialogListView"))
    if bad:
        import logging  # noqa: PLC0415

        names = ", ".join(r.name for r in bad)
        win.act_plugins.setToolTip(f"Could not be loaded: {names}")
        msg = f"{len(bad)} plugin{'s' if len(bad) > 1 else ''} could not be loaded: {names}. See Plugins for details."
        win.statusBar().showMessage(msg, 20000)
        for r in bad:
            win.log_view.message(f"plugin {r.name} {r.status}: {r.error}", logging.ERROR)


def offer_to_disable_crashed_plugin(win: MainWindow) -> None:
    """When the last session ended in a native crash during a run, name the tool's plugin and
    offer to disable it (non-blocking)."""
    from app import crashguard  # noqa: PLC0415
    from app.jobs import interrupted_runs  # noqa: PLC0415

    crashed = crashguard.crashed(interrupted_runs(win.session.store)) if win.session.store else []
    if not crashed:
        return
    run = crashed[-1]
    text = (f"Implicit Studio crashed ({run.fatal_error}) the last time while tool "
            f"{run.tool_id!r} of plugin {run.plugin!r} was running (run {run.run_id}, now marked "
            f"failed).\n\nDisable the plugin {run.plugin!r}? It can be enabled again in Plugins.")
    box = QMessageBox(QMessageBox.Icon.Warning, "Implicit Studio", text,
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, win)
    box.button(QMessageBox.StandardButton.Yes).setText(f"Disable {run.plugin}")
    box.button(QMessageBox.StandardButton.No).setText("Keep it")
    box.setWindowModality(Qt.WindowModality.NonModal)

    def answered(button) -> None:
        if box.standardButton(button) == QMessageBox.StandardButton.Yes:
            try:
                win.manager.set_enabled(run.plugin, False)
            except KeyError:  # not installed any more
                pass
            win.refresh_tools()
            win.statusBar().showMessage(f"Plugin {run.plugin} disabled; enable it again in Plugins.", 15000)

    box.buttonClicked.connect(answered)
    win.log_view.message(text.replace("\n\n", " "), logging.WARNING)
    win.crash_notice = box
    box.show()
