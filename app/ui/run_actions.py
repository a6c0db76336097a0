"""The window's actions on recorded runs and files — reproduce, compare, export, "Send to", use a
run's parameters, open a file or a dropped PNG — done through the run controller; this module only
turns their answers into dialogs, form values and status messages."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import Qt

from app import api
from app.ui.result_area import result_labels

if TYPE_CHECKING:
    from app.ui.compare_dialog import CompareDialog
    from app.ui.main_window import MainWindow

log = logging.getLogger("implicit_studio.ui")


def _file_dialog():
    """QFileDialog, imported when a dialog is opened (its type costs ~6 ms to create)."""
    from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415

    return QFileDialog


class RunActions:
    def __init__(self, win: MainWindow):
        self.win = win

    # -- reproduce, compare, export -----------------------------------------------------------
    def reproduce(self, run_id: int) -> Optional[int]:
        """Re-run ``run_id`` with its parameters, seed and model; the bit-for-bit check arrives
        as ``reproduceChecked``. Returns the job id, or None when it cannot be repeated."""
        win = self.win
        try:
            job_id = win.controller.reproduce(run_id)
        except (LookupError, ValueError) as exc:  # unknown run or tool, inputs not kept, bad parameters
            win.show_error(f"Cannot reproduce run #{run_id}", str(exc))
            return None
        except Exception as exc:
            win.show_error(f"Could not reproduce run #{run_id}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        win.jobs.set_title(job_id, f"Reproduce #{run_id}")
        return job_id

    def compare(self, a: tuple[int, Optional[int]], b: tuple[int, Optional[int]]) -> Optional[CompareDialog]:
        from app.ui.compare_dialog import CompareDialog  # noqa: PLC0415

        try:
            left, right = self.win.controller.compare(a, b)
        except Exception as exc:
            self.win.show_error("Could not compare the runs", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        dlg = CompareDialog(left, right, self.win)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dlg.show()
        self.win.compare_dialog = dlg
        return dlg

    def export_result(self, run_id: Optional[int], result_id: Optional[int]) -> None:
        win = self.win
        result = win.result_area.current_result
        if run_id is not None:
            try:
                run = win.session.run(run_id)
            except Exception as exc:
                win.show_error("Could not export", str(exc))
                return
            if result_id is None and run.results:
                result_id = run.results[0].id
        if result_id is None and result is None:
            win.statusBar().showMessage("Nothing to export yet", 4000)
            return
        path, _ = _file_dialog().getSaveFileName(win, "Export result", "", "PNG image (*.png);;All files (*)")
        if not path:
            return
        try:
            out = win.session.export(result_id, path, result=result, run_id=run_id)
        except Exception as exc:
            win.show_error("Export failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        win.statusBar().showMessage(f"Exported to {out}", 8000)

    # -- send to, parameters ------------------------------------------------------------------
    def send_to(self, run_id: Optional[int], result_id: Optional[int], tool_id: str) -> bool:
        """Select ``tool_id`` and set its image input to stored result ``result_id`` (of run
        ``run_id``); a source prompt the tool has is filled from the run's prompt."""
        from app.controller import SendError  # noqa: PLC0415

        win = self.win
        try:
            values = win.controller.send_to(run_id, result_id, tool_id)
        except SendError as exc:
            win.show_error(str(exc), exc.details)
            return False
        title = win.manager.tools[tool_id].title
        if not win.tool_panel.select_tool(tool_id):
            win.show_error(f"Could not open {title}", "The tool is not listed in the Tools panel.")
            return False
        bad = win.tool_panel.set_values(values)
        param = next(k for k, v in values.items() if v == f"{api.RESULT_REF_PREFIX}{result_id}")
        if param in bad:
            win.show_error(f"Could not set the image of {title}", f"The form refused result:{result_id}.")
            return False
        win.tools_dock.raise_()
        src = f"run #{run_id}" if run_id is not None else f"result {result_id}"
        win.statusBar().showMessage(f"Sent {src} to {title}", 8000)
        return True

    def use_run_params(self, run_id: int) -> bool:
        run = self.win.session.run(run_id)  # its params hold every parameter, the model included
        return self.restore_params(run.tool_id, run.params, seed=run.seed, source=f"run #{run_id}",
                                   version=run.plugin_version)

    def restore_params(self, tool_id: str, params: dict[str, Any], seed: Optional[int] = None, source: str = "",
                       version: Optional[str] = None) -> bool:
        win = self.win
        try:  # parameters recorded by another version of the plugin go through its migrate_params
            carried = win.controller.restore(tool_id, params, seed, version)
        except LookupError as exc:
            win.show_error(str(exc), "Its plugin may be disabled or not installed. See Plugins.")
            return False
        win.tool_panel.select_tool(tool_id)
        bad = win.tool_panel.set_values(carried.values)
        msg = f"Parameters of {tool_id} restored" + (f" from {source}" if source else "")
        if bad:
            msg += f" (not restored: {', '.join(bad)})"
        if carried.notes:
            msg += " — " + "; ".join(carried.notes)
            log.info("%s", msg)
        win.statusBar().showMessage(msg, 15000 if carried.notes else 8000)
        return True

    # -- files ----------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        paths, _ = _file_dialog().getOpenFileNames(self.win, "Open files", "", "All files (*)")
        for p in paths:
            self.open_path(p)

    def open_path(self, path: str | os.PathLike) -> bool:
        """Open a file: a PNG carrying our parameters restores its tool and parameters (and shows
        the image); other files go through the plugins' reader hooks; a plain image is shown."""
        win = self.win
        path = os.fspath(path)
        name = Path(path).name
        meta = win.session.png_params(path) if path.lower().endswith(".png") else None
        if meta and meta.get("tool"):
            restored = self.restore_params(meta["tool"], meta.get("params", {}), seed=meta.get("seed"), source=name,
                                           version=meta.get("plugin_version"))
            self._show_image_file(path, name, "parameters restored" if restored else "")
            return restored
        try:
            results = win.manager.read_file(path)
        except ValueError as exc:
            from PySide6.QtGui import QImageReader  # noqa: PLC0415

            if QImageReader.imageFormat(path):  # no reader: plain images still open in the image viewer
                return self._show_image_file(path, name, "opened")
            win.show_error(f"Cannot open {name}", str(exc))
            return False
        except Exception as exc:
            win.show_error(f"Cannot open {name}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return False
        if not results:
            win.show_error(f"{name} contained nothing to show", "")
            return False
        win.feedback.show(results[0], name, "opened")
        if len(results) > 1:
            win.result_area.set_choices(result_labels(results),
                                        lambda i: win.feedback.show(results[i], name, "opened", keep_choices=True))
        return True

    def _show_image_file(self, path: str, name: str, sub: str) -> bool:
        from app.widgets.imaging import qimage_to_array, to_qimage  # noqa: PLC0415

        try:
            image = api.ImageResult(image=qimage_to_array(to_qimage(path)))
        except Exception:
            log.warning("could not show %s", path, exc_info=True)
            return False
        self.win.feedback.show(image, name, sub)
        return True
