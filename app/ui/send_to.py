""""Send to": any result shown or stored, or a file opened, goes to any tool that takes its kind.

- an image (a stored image result, or an image file opened in the window) goes to every tool with
  an image input (:func:`app.controller.send_targets` finds them from the tool specs: h-Edit,
  inpainting, image-to-image, the INR image fit, any plugin's image tool);
- a file (an RL agent or trajectory, an INR's weights) goes to every tool with a file input
  (``PathParam``) whose filters take its extension and that names what it is: the input's name is
  the result's label ("agent", "trajectory") or a key of its metadata ("inr"). So a trajectory goes
  to calibration and annotation, an agent to recording, INR weights to the INR renderer, and INR
  weights never to an RL tool although both are ``.safetensors``.

A stored image is sent as ``result:<id>`` (:meth:`app.controller.RunController.send_to`, which
also fills a source prompt); a file as its path, with the run it came from remembered as the new
run's parent. This module finds the targets and fills menus; it runs nothing.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from PySide6.QtWidgets import QMenu

from app import api
from app.controller import PROMPT_PARAMS, SOURCE_PROMPT_PARAMS, image_param


@dataclass(frozen=True)
class Source:
    """Something that can be sent: a stored result (``result_id`` of ``run_id``) or a file."""

    kind: str  # "image", "file", "distribution", ...
    path: Optional[str] = None  # its file (a stored result's, or the file opened)
    run_id: Optional[int] = None
    result_id: Optional[int] = None
    label: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)  # the parameters of the run that made it

    @property
    def ext(self) -> str:
        return Path(self.path).suffix.lower() if self.path else ""

    def describe(self) -> str:
        if self.result_id is not None:
            return f"run #{self.run_id}, {self.label or self.kind}" if self.run_id is not None else f"result {self.result_id}"
        return Path(self.path).name if self.path else self.kind


@dataclass(frozen=True)
class Target:
    tool_id: str
    title: str
    param: str  # the input that receives the source
    source: Source

    @property
    def menu_text(self) -> str:
        return self.title if self.param in ("image", "trajectory", "agent", "inr") else f"{self.title} ({self.param})"


def _patterns(p: api.PathParam) -> list[str]:
    out = []
    for f in p.filters:
        inside = f[f.find("(") + 1:f.rfind(")")] if "(" in f else f
        out += [x.strip().lower() for x in inside.split() if x.strip()]
    return out


def _takes_file(p: api.PathParam, src: Source) -> bool:
    """A file input takes a file result (the file a tool wrote: the studio's own encodings of
    other kinds are not files for tools) or an opened file, by extension; a stored one must also
    be named for the input (its label or a key of its metadata)."""
    if p.mode != "open" or not src.path or src.kind != "file":
        return False
    pats = _patterns(p)
    name = Path(src.path).name.lower()
    if pats and not any(fnmatch.fnmatch(name, pat) for pat in pats):
        return False
    if src.run_id is None and src.result_id is None:
        return True  # a file the artist opened
    return src.label == p.name or p.name in src.metadata


def targets(tools: Iterable[api.ToolSpec], sources: Iterable[Source]) -> list[Target]:
    """Where ``sources`` can go: one target per (tool, input), the first source that fits it."""
    sources = list(sources)
    out: list[Target] = []
    for tool in tools:
        img = image_param(tool)
        for p in tool.params:
            if p.name == img:
                src = next((s for s in sources if s.kind == "image"), None)
            elif isinstance(p, api.PathParam):
                src = next((s for s in sources if _takes_file(p, s)), None)
            else:
                continue
            if src is not None:
                out.append(Target(tool.id, tool.title, p.name, src))
    return sorted(out, key=lambda t: (t.title.lower(), t.tool_id, t.param))


def file_values(tool: api.ToolSpec, target: Target) -> dict[str, Any]:
    """The form values that send a file (an opened image, a stored file's path) to ``tool``; a
    source prompt the tool has is filled from the source run's prompt."""
    values: dict[str, Any] = {target.param: target.source.path}
    prompt = next((target.source.params[k] for k in PROMPT_PARAMS
                   if isinstance(target.source.params.get(k), str) and target.source.params[k].strip()), None)
    names = {p.name for p in tool.params}
    if prompt is not None:
        for k in SOURCE_PROMPT_PARAMS:
            if k in names:
                values[k] = prompt
    return values


def fill_menu(menu: QMenu, found: list[Target], send: Callable[[Target], None], enabled: bool = True) -> None:
    """Replace ``menu``'s entries by one action per target (disabled when ``enabled`` is False)."""
    menu.clear()
    if not found:
        menu.addAction("(no tool takes this result)").setEnabled(False)
        return
    for t in found:
        a = menu.addAction(t.menu_text)
        a.setToolTip(f"Open {t.title} with {t.source.describe()} as its {t.param}")
        a.setData(t.tool_id)
        a.setEnabled(enabled)
        a.triggered.connect(lambda _=False, t=t: send(t))
