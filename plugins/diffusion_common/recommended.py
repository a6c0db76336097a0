"""Settings a model recommends for the studio's tools (no Qt, no torch).

A diffusers model folder may carry ``implicit_studio.json`` beside ``model_index.json``: the values
a tool uses for this model where the user leaves a setting at "default", as InvokeAI's per-model
default settings do. The bundled model uses it for its h-Edit guidance weights, measured on its own
images (see its model card); checkpoints without the file get each tool's own defaults.

    {"h-edit": {"random": {"w_orig": 3.0, "w_src_edit": 2.0, "w_edit": 7.5}}}

A malformed file never stops a run: it is ignored with a sentence saying why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FILENAME = "implicit_studio.json"


def model_folder(pipe: Any) -> Path | None:
    """The folder a diffusers pipeline was loaded from (None for single files and in-memory models)."""
    name = getattr(pipe, "name_or_path", None) or getattr(getattr(pipe, "config", None), "_name_or_path", None)
    if not name:
        return None
    path = Path(str(name))
    return path if path.is_dir() else None


def recommended_settings(folder: Path | None, tool: str, section: str | None = None,
                         notes: list[str] | None = None) -> dict[str, float]:
    """The numeric settings ``folder``'s ``implicit_studio.json`` recommends for ``tool`` (and, when
    given, its ``section``); {} when there is none. Problems go to ``notes`` as sentences."""
    if folder is None:
        return {}
    path = Path(folder) / FILENAME
    if not path.is_file():
        return {}

    def ignored(why: str) -> dict[str, float]:
        if notes is not None:
            notes.append(f"ignored the model's recommended settings ({path.name}): {why}; using the tool's defaults")
        return {}

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return ignored(f"not valid JSON ({exc})")
    if not isinstance(data, dict):
        return ignored("it does not hold a JSON object")
    entry = data.get(tool, {})
    if section is not None and isinstance(entry, dict):
        entry = entry.get(section, {})
    if not isinstance(entry, dict):
        return ignored(f"the {tool!r} entry is not an object")
    out: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return ignored(f"{tool}.{key} is not a finite number ({value!r})")
        out[key] = float(value)
    return out
