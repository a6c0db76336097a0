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
from app.ui.send_to import Source, Target, file_values, targets

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

    def export_result(self, run_id: Optional[int], result_id: Optional[int]) -> Optional[str]:
        """Export a stored result (``result_id`` of ``run_id``; both None: the result shown) to a
        file the user chooses. The stored file is written as it is, so a PNG keeps the run's
        parameters in its text chunks; an opened file is copied as it is. The dialog suggests a
        name from the tool, the run and the seed, in the folder of the last export. Returns the
        path written, or None."""
        win = self.win
        result = win.result_area.current_result
        opened = None
        if run_id is None and result_id is None:
            if win.current_source is not None:
                run_id, result_id = win.current_source
            elif win.current_file is not None:
                opened = win.current_file
        run = None
        if run_id is not None:
            try:
                run = win.session.run(run_id)
            except Exception as exc:
                win.show_error("Could not export", str(exc))
                return None
            if result_id is None and run.results:
                result_id = run.results[0].id
        if result_id is None and result is None and opened is None:
            win.statusBar().showMessage("Nothing to export yet", 4000)
            return None
        ext = self._export_ext(run, result_id, result, opened)
        suggested = str(Path(win.settings_value("export/dir", str(Path.home()))) / export_name(run, result_id, ext, opened))
        filters = f"{ext[1:].upper()} file (*{ext});;All files (*)" if ext else "All files (*)"
        path, _ = _file_dialog().getSaveFileName(win, "Export result", suggested, filters)
        if not path:
            return None
        try:
            if opened is not None:
                out = _copy_file(opened, path)
            else:
                out = win.session.export(result_id, path, result=result, run_id=run_id)
        except Exception as exc:
            win.show_error("Export failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        win.set_settings_value("export/dir", str(Path(path).parent))
        win.statusBar().showMessage(f"Exported to {out}", 8000)
        return str(out)

    def _export_ext(self, run, result_id: Optional[int], result: Optional[api.Result], opened: Optional[str]) -> str:
        if opened is not None:
            return Path(opened).suffix.lower()
        if run is not None and result_id is not None:
            info = next((r for r in run.results if r.id == result_id), None)
            if info is not None and info.ext:
                return info.ext if info.ext.startswith(".") else "." + info.ext
        kind = getattr(result, "kind", "")
        return ".png" if kind in ("image", "mask") else (getattr(result, "ext", "") or "")

    # -- send to, parameters ------------------------------------------------------------------
    def sources_of(self, run_id: Optional[int], result_id: Optional[int] = None) -> list[Source]:
        """What a stored run offers to "Send to": each of its results (``result_id`` first)."""
        if run_id is None:
            return [Source("image", result_id=result_id)] if result_id is not None else []
        run = self.win.history.runs.get(run_id) if self.win.history is not None else None
        if run is None:
            try:
                run = self.win.session.run(run_id)
            except Exception:  # noqa: BLE001 - an unknown run offers nothing
                return []
        from app.session_view import result_label  # noqa: PLC0415

        out = [Source(r.kind, str(r.path), run.id, r.id, result_label(r), dict(r.metadata or {}), dict(run.params))
               for r in run.results]
        out.sort(key=lambda s: s.result_id != result_id)
        return out

    def shown_sources(self) -> list[Source]:
        """What the result shown offers to "Send to": its run's results, or the file opened."""
        win = self.win
        if win.current_source is not None:
            return self.sources_of(*win.current_source)
        if win.current_file is not None:
            kind = "image" if win.current_file_kind in ("image", "mask") else "file"
            return [Source(kind, win.current_file, params=win.current_file_params or {})]
        return []

    def targets_for(self, sources: list[Source]) -> list[Target]:
        return targets(self.win.manager.tools.values(), sources)

    def send_to(self, run_id: Optional[int], result_id: Optional[int], tool_id: str) -> bool:
        """Open ``tool_id`` on stored result ``result_id`` of run ``run_id``: an image as its image
        input (``result:<id>``, with the run's prompt as a source prompt), or the run's file that
        one of the tool's file inputs takes (an RL trajectory for calibration)."""
        tool = self.win.manager.tools.get(tool_id)
        found = targets([tool], self.sources_of(run_id, result_id)) if tool is not None else []
        if found and not (found[0].source.kind == "image" and found[0].source.result_id is not None):
            return self.send_target(found[0])
        return self._send_stored_image(run_id, result_id, tool_id)

    def send_target(self, target: Target) -> bool:
        """Open ``target``'s tool with its source as the input it names."""
        src = target.source
        if src.kind == "image" and src.result_id is not None:
            return self._send_stored_image(src.run_id, src.result_id, target.tool_id)
        win = self.win
        tool = win.manager.tools[target.tool_id]
        if not win.tool_panel.select_tool(tool.id):
            win.show_error(f"Could not open {tool.title}", "The tool is not listed in the Tools panel.")
            return False
        values = file_values(tool, target)
        bad = win.tool_panel.set_values(values)
        if target.param in bad:
            win.show_error(f"Could not set the {target.param} of {tool.title}", f"The form refused {src.path}.")
            return False
        win.tool_panel.remember_source(target.param, src.path, src.run_id, src.describe())
        win.tools_dock.raise_()
        win.statusBar().showMessage(f"Sent {src.describe()} to {tool.title}", 8000)
        return True

    def _send_stored_image(self, run_id: Optional[int], result_id: Optional[int], tool_id: str) -> bool:
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
            self._show_image_file(path, name, "parameters restored" if restored else "", meta.get("params"))
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
        win.feedback.show(results[0], name, "opened", opened=path)
        if len(results) > 1:
            win.result_area.set_choices(result_labels(results), lambda i: win.feedback.show(
                results[i], name, "opened", keep_choices=True, opened=path))
        return True

    def _show_image_file(self, path: str, name: str, sub: str, params: Optional[dict] = None) -> bool:
        from app.widgets.imaging import qimage_to_array, to_qimage  # noqa: PLC0415

        try:
            image = api.ImageResult(image=qimage_to_array(to_qimage(path)))
        except Exception:
            log.warning("could not show %s", path, exc_info=True)
            return False
        self.win.feedback.show(image, name, sub, opened=path, opened_params=params)
        return True


def export_name(run: Any, result_id: Optional[int], ext: str, opened: Optional[str] = None) -> str:
    """A file name for an export: ``text-to-image-run12-seed4083813968.png`` (the result's position
    is added for a run's second and later results), an opened file's own name, else
    ``result.png``."""
    if opened is not None:
        return Path(opened).name
    if run is None:
        return f"result{ext}"
    parts = [run.tool_id, f"run{run.id}"]
    if run.seed is not None:
        parts.append(f"seed{run.seed}")
    ids = [r.id for r in run.results]
    if result_id in ids and ids.index(result_id) > 0:
        parts.append(f"result{ids.index(result_id) + 1}")
    return "-".join(parts) + ext


def _copy_file(src: str, dest: str) -> str:
    """Copy ``src`` to ``dest`` through a temporary name (the whole file or nothing)."""
    import shutil  # noqa: PLC0415

    tmp = Path(dest).with_name("." + Path(dest).name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest
