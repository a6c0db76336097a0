"""What the window shows of runs: queue rows and progress, live previews, a finished run's results
(with the before/after input and the "Send to" source), failures, and results opened from the
history. Fed by the job bridge's signals; Qt only, no run logic."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any, Optional

from app import api
from app.session_view import result_label, run_subtitle
from app.ui.result_area import result_labels

if TYPE_CHECKING:
    from app.ui.job_bridge import JobBridge, Outcome
    from app.ui.main_window import MainWindow

log = logging.getLogger("implicit_studio.ui")

Source = Optional[tuple[int, int]]  # (run id, result id) of a stored result


class RunFeedback:
    def __init__(self, win: MainWindow):
        self.win = win

    def connect(self, bridge: JobBridge) -> None:
        win = self.win
        bridge.queued.connect(lambda job_id, title: win.queue.add_job(job_id, title))
        bridge.started.connect(self.on_started)
        bridge.progress.connect(self.on_progress)
        bridge.preview.connect(self.on_preview)
        bridge.finished.connect(self.on_finished)
        bridge.reproduceChecked.connect(self.on_reproduced)

    def on_started(self, job_id: int) -> None:
        self.win.queue.set_status(job_id, "running")
        st = self.win.queue.jobs.get(job_id)
        self.win.statusBar().showMessage(f"Running {st.title if st else job_id}…")

    def on_progress(self, job_id: int, step: int, total: int, message: str, eta_s: float = -1.0) -> None:
        """One progress model: the tool's own units (step of total, its message) and the job
        runner's one ETA, shown alike in the queue, the status bar and the command line."""
        queue = self.win.queue
        queue.set_progress(job_id, step, total, message, None if eta_s < 0 else eta_s)
        st = queue.jobs.get(job_id)
        if st is not None and st.status == "cancelling":
            return
        from app.ui.queue_dock import format_eta, progress_text  # noqa: PLC0415

        eta = format_eta(st.eta()) if st is not None else ""
        self.win.statusBar().showMessage(f"{st.title if st else ''}: {progress_text(step, total, message)}"
                                         + (f", about {eta} left" if eta else ""))

    def on_preview(self, job_id: int, image: Any) -> None:
        win = self.win
        st = win.queue.jobs.get(job_id)
        win.result_area.show_preview(image, st.title if st else "")
        if not win.queue.preview.isVisible() or win.queue_dock.visibleRegion().isEmpty():
            return
        win.queue.set_preview(job_id, image)

    def on_finished(self, job_id: int, outcome: Outcome) -> None:
        win = self.win
        win.queue.set_status(job_id, outcome.status, outcome.error or "", duration=outcome.duration)
        tool = outcome.tool
        title = tool.title if tool is not None else str(job_id)
        if outcome.status == "ok":
            if outcome.results:
                self._show_outcome(job_id, outcome, title)
            win.statusBar().showMessage(f"{title} finished in {outcome.duration:.1f}s" + (
                f" (run #{outcome.run_id})" if outcome.run_id is not None else ""), 8000)
        elif outcome.status == "cancelled":
            win.statusBar().showMessage(f"{title} was cancelled", 8000)
            area = win.result_area
            if area.stack.currentWidget() is area.preview and area.current_result is not None:
                area._toggle_split(False)
        else:
            win.show_error(f"{title} failed: {outcome.error}", outcome.traceback or outcome.error or "")
        if outcome.run_id is not None and outcome.status == "ok":
            win.history.select_after_refresh(outcome.run_id)
        win.history.refresh()
        win.jobFinished.emit(job_id, outcome.status)

    def _show_outcome(self, job_id: int, outcome: Outcome, title: str) -> None:
        win = self.win
        tool = outcome.tool
        inp = win.session.input_image_for(tool, outcome.params) if tool is not None else None
        results, sub = list(outcome.results), _run_sub(outcome)
        rids = list(outcome.result_ids or [])

        def source(i: int) -> Source:
            ok = outcome.run_id is not None and i < len(rids) and len(rids) == len(results)
            return (outcome.run_id, rids[i]) if ok else None

        seed = outcome.seed if tool is not None and _takes_seed(tool) else None
        self.show(results[0], title, sub, inp, source=source(0), seed=seed)
        if results[0].kind == "image":  # the preview ends on the finished picture
            win.queue.set_preview(job_id, results[0])
        win.result_area.set_choices(result_labels(results), lambda i: self.show(
            results[i], title, sub, inp, keep_choices=True, source=source(i), seed=seed))

    def show(self, result: api.Result, caption: str, sub: str = "", input_image: Any = None,
             keep_choices: bool = False, source: Source = None, seed: Optional[int] = None,
             opened: Optional[str] = None, opened_params: Optional[dict] = None) -> None:
        """Show ``result``: ``source`` is its (run id, result id) when it is stored, ``opened`` the
        file it was opened from; either can be exported and sent to a tool."""
        win = self.win
        if not keep_choices:
            win.result_area.set_choices([], None)
        meta_seed = (getattr(result, "metadata", None) or {}).get("seed")
        if isinstance(meta_seed, int) and not isinstance(meta_seed, bool):
            seed = meta_seed  # one image of a batch or a sweep: its own seed
        win.result_area.show_result(result, caption, sub, input_image, seed=seed)
        win.current_source = source
        win.current_file = opened if source is None else None
        win.current_file_kind = result.kind
        win.current_file_params = opened_params
        win.result_area.set_sendable(bool(win.run_actions.targets_for(win.run_actions.shown_sources())))
        if win.result_area.viewer_error:
            win.log_view.message(win.result_area.viewer_error, logging.WARNING)
        win.resultShown.emit(result)

    def open_result(self, run_id: int, result_id: Optional[int] = None) -> Optional[api.Result]:
        """Show a stored result (the run's first when ``result_id`` is None) with its siblings."""
        win = self.win
        try:
            run = win.session.run(run_id)
            if result_id is None:
                if not run.results:
                    win.statusBar().showMessage(f"Run #{run_id} has no results ({run.status})", 6000)
                    return None
                result_id = run.results[0].id
            result = win.session.load_result(result_id)
        except Exception as exc:
            win.show_error(f"Could not open run #{run_id}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return None
        tool = win.manager.tools.get(run.tool_id)
        inp = win.session.input_image_for(tool, run.params) if tool is not None else None
        caption, sub = f"{run.tool_id} #{run.id}", run_subtitle(run, seed=False)
        seed = run.seed if tool is not None and _takes_seed(tool) else None
        self.show(result, caption, sub, inp, source=(run.id, result_id), seed=seed)
        ids = [r.id for r in run.results]

        def pick(i: int) -> None:
            try:
                self.show(win.session.load_result(ids[i]), caption, sub, inp, keep_choices=True,
                          source=(run.id, ids[i]), seed=seed)
            except Exception as exc:
                win.show_error(f"Could not open result {ids[i]} of run #{run.id}", str(exc), traceback.format_exc())

        win.result_area.set_choices(stored_labels(run.results), pick,
                                    ids.index(result_id) if result_id in ids else 0)
        return result

    def on_reproduced(self, run_id: int, matched: bool, message: str) -> None:
        from PySide6.QtCore import Qt  # noqa: PLC0415
        from PySide6.QtWidgets import QMessageBox  # noqa: PLC0415

        win = self.win
        text = message if message.startswith("Reproducing") else f"Reproduce run #{run_id}: {message}"
        win.statusBar().showMessage(text, 15000)
        win.log_view.message(text, logging.INFO if matched else logging.WARNING)
        box = QMessageBox(QMessageBox.Icon.Information if matched else QMessageBox.Icon.Warning, "Reproduce", text,
                          QMessageBox.StandardButton.Ok, win)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        win.reproduceChecked.emit(run_id, matched, message)


def _takes_seed(tool: api.ToolSpec) -> bool:
    """Whether the tool has a seed (a run of one without records a drawn seed nobody chose)."""
    return any(isinstance(p, api.SeedParam) for p in tool.params)


def _run_sub(outcome: Outcome) -> str:
    parts = []
    if outcome.run_id is not None:
        parts.append(f"run #{outcome.run_id}")
    if outcome.duration:
        parts.append(f"{outcome.duration:.1f}s")
    return "  ·  ".join(parts)


def stored_labels(results) -> list[str]:
    """The picker's labels of a stored run's results (as :func:`result_labels` names new ones)."""
    return [f"{i + 1}. {result_label(r)} ({r.kind})" if result_label(r) else f"{i + 1}. {r.kind}"
            for i, r in enumerate(results)]
