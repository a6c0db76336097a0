"""The real main window with every built-in plugin, and the artist's path through all built-in
tools with small settings (a few denoising steps, a short fit, a short training): shared by the
layout test (issue 28, item 1) and the walk-through tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

TIMEOUT = 300000  # a few steps of the bundled model, a short fit or training, on a busy shared CPU

LONG_PROMPT = ("a small red star in the top left on a blue background, with a large green ring at the "
               "center and a medium yellow triangle in the bottom right, on a gray background, small, ")
LONG_PROMPT = (LONG_PROMPT * 2)[:200]
assert len(LONG_PROMPT) == 200


def builtin_window(qtbot, studio_env: Path, width: int = 1280, height: int = 800):
    """The main window with the built-in plugins on a fresh session, ``width`` x ``height``."""
    import torch

    from app.plugins import get_manager
    from app.settings import Settings
    from app.ui.main_window import MainWindow

    torch.set_num_threads(1)
    settings = Settings()
    settings.set("device", "cpu")
    win = MainWindow(session_dir=studio_env / "session", manager=get_manager(settings), settings=settings)
    qtbot.addWidget(win)
    win.resize(width, height)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(win.is_ready, timeout=30000)
    return win


def picture(folder: Path) -> str:
    """A 64x64 picture of a red square on gray, as a PNG file."""
    from PIL import Image

    img = np.full((64, 64, 3), 150, np.uint8)
    img[18:46, 20:44] = (210, 40, 40)
    path = folder / "picture.png"
    Image.fromarray(img).save(path)
    return str(path)


@dataclass
class Step:
    tool: str
    values: Callable[[dict], dict]  # outputs so far -> form values
    keep: Callable[[Any, dict], None] = field(default=lambda win, outputs: None)  # after the run


def _file_of(win, run_id: int, ext: str) -> Optional[str]:
    run = win.session.run(run_id)
    for r in run.results:
        if r.kind == "file" and str(r.path).endswith(ext):
            return str(r.path)
    return None


def _latest(win, tool_id: str):
    """The newest run of ``tool_id`` (a run's own child runs, such as rl-train's recording, are newer)."""
    return next(r for r in win.session.list_runs(limit=20) if r.tool_id == tool_id)


def _keep_run(name: str) -> Callable[[Any, dict], None]:
    def keep(win, outputs: dict) -> None:
        outputs[name] = _latest(win, name)
    return keep


def _agent_dir(win, outputs: dict) -> None:
    run = _latest(win, "rl-train")
    outputs["rl-train"] = run
    outputs["agent"] = next(str(r.path) for r in run.results if r.kind == "file"
                            and str(r.path).endswith((".safetensors", ".json")))


def _trajectory(win, outputs: dict) -> None:
    run = _latest(win, "rl-record")
    outputs["rl-record"] = run
    outputs["trajectory"] = next(str(r.path) for r in run.results if r.kind == "file"
                                 and str(r.path).endswith((".npz", ".hdf5", ".h5")))


def _inr_weights(win, outputs: dict) -> None:
    run = _latest(win, "inr-fit-image")
    outputs["inr-fit-image"] = run
    outputs["inr"] = next(str(r.path) for r in run.results if r.kind == "file"
                          and str(r.path).endswith((".safetensors", ".json")))


def _first_image(outputs: dict) -> str:
    run = outputs["text-to-image"]
    return f"result:{next(r.id for r in run.results if r.kind == 'image')}"


def _mask() -> np.ndarray:
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    return m


def artist_steps(picture_path: str) -> list[Step]:
    """Every built-in tool in an order where each finds its inputs in the runs before it."""
    return [
        Step("text-to-image", lambda o: {"prompt": LONG_PROMPT, "steps": 3, "seed": 4083813968},
             _keep_run("text-to-image")),
        Step("h-edit", lambda o: {"image": _first_image(o), "source_prompt": LONG_PROMPT,
                                  "target_prompt": LONG_PROMPT.replace("red", "blue"), "steps": 3, "seed": 11}),
        Step("inpaint", lambda o: {"image": _first_image(o), "mask": _mask(), "prompt": LONG_PROMPT,
                                   "steps": 3, "method": "blend", "seed": 12}),
        Step("inr-fit-image", lambda o: {"image": picture_path, "steps": 20, "hidden": 16, "layers": 2,
                                         "max_side": 16, "render_scale": 1}, _inr_weights),
        Step("inr-fit-sdf", lambda o: {"steps": 20, "hidden": 16, "layers": 2, "points": 256,
                                       "resolution": 16}),
        Step("inr-render", lambda o: {"inr": o["inr"], "width": 32, "height": 32}),
        Step("rl-train", lambda o: {"steps": 500, "record_episodes": 1, "hidden": 16, "seed": 3,
                                    "stop_when_solved": False}, _agent_dir),
        Step("rl-record", lambda o: {"episodes": 1, "seed": 4}, _trajectory),
        Step("rl-annotate", lambda o: {"trajectory": o["trajectory"], "agent": o["agent"]}),
        Step("rl-calibration", lambda o: {"trajectory": o["trajectory"], "bins": 5}),
    ]


def run_tool(qtbot, win, tool_id: str, values: dict) -> str:
    """Select ``tool_id``, set ``values`` in its form and run it; returns the job's status."""
    assert win.select_tool(tool_id), tool_id
    bad = win.tool_panel.set_values(values)
    assert not bad, f"{tool_id}: not set: {bad}"
    with qtbot.waitSignal(win.jobFinished, timeout=TIMEOUT) as blocker:
        assert win.run_current() is not None, f"{tool_id}: {win.statusBar().currentMessage()} {win.last_error}"
    return blocker.args[1]
