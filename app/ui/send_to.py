""""Send to": hand a session image result to any tool that takes an image, in one click.

The targets are discovered from the tool specs: every tool with an image parameter (not a mask)
is listed, so h-Edit, inpainting, text-to-image's image-to-image and any plugin's image tool appear
without being named here. The window does the sending (:meth:`MainWindow.send_to`); this module
only finds the targets and fills menus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from PySide6.QtWidgets import QMenu

from app.ui import adapters as ad

# a text parameter that describes the input image, filled from the source run's prompt
SOURCE_PROMPT_PARAMS = ("source_prompt",)
PROMPT_PARAMS = ("prompt", "target_prompt")


@dataclass(frozen=True)
class SendTarget:
    tool_id: str
    title: str
    param: str  # the image parameter that receives the result


def image_param(tool: Any) -> str | None:
    """The name of the first image input of ``tool`` (masks do not count), else None."""
    for p in ad.tool_params(tool):
        if ad.param_kind(p) == "image":
            return ad.param_name(p)
    return None


def send_targets(tools: Iterable[Any]) -> list[SendTarget]:
    """Every tool with an image input, sorted by title."""
    out = []
    for tool in tools:
        name = image_param(tool)
        if name is not None:
            out.append(SendTarget(ad.tool_id(tool), ad.tool_title(tool), name))
    return sorted(out, key=lambda t: (t.title.lower(), t.tool_id))


def sent_values(tool: Any, param: str, result_id: Any, source_params: dict | None = None) -> dict:
    """The form values that send result ``result_id`` to ``tool``: its image parameter set to the
    ``result:<id>`` reference the image picker uses and, where the tool has a source prompt, the
    source run's prompt."""
    values: dict[str, Any] = {param: f"result:{result_id}"}
    names = {ad.param_name(p) for p in ad.tool_params(tool)}
    src = source_params or {}
    prompt = next((src[k] for k in PROMPT_PARAMS if isinstance(src.get(k), str) and src[k].strip()), None)
    if prompt is not None:
        for k in SOURCE_PROMPT_PARAMS:
            if k in names:
                values[k] = prompt
    return values


def fill_menu(menu: QMenu, targets: list[SendTarget], send: Callable[[SendTarget], None],
              enabled: bool = True) -> None:
    """Replace ``menu``'s entries by one action per target (disabled when ``enabled`` is False)."""
    menu.clear()
    if not targets:
        menu.addAction("(no tool takes an image)").setEnabled(False)
        return
    for t in targets:
        a = menu.addAction(t.title)
        a.setToolTip(f"Open {t.title} with this image as its {t.param}")
        a.setData(t.tool_id)
        a.setEnabled(enabled)
        a.triggered.connect(lambda _=False, t=t: send(t))
