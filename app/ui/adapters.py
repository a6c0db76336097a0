"""Reading the services' declarations (tools, params, results, plugin records) for the views.

The views talk to ``app.api`` records through these small functions so that one place knows the
attribute names, and the widgets stay simple.
"""

from __future__ import annotations

from typing import Any, Iterable

_KIND_ALIASES = {
    "integer": "int",
    "number": "float",
    "str": "text",
    "string": "text",
    "textarea": "multiline",
    "multiline_text": "multiline",
    "multiline-text": "multiline",
    "enum": "choice",
    "boolean": "bool",
    "file": "path",
    "filepath": "path",
    "file_path": "path",
    "directory": "path",
    "folder": "path",
    "model_ref": "model",
    "modelref": "model",
}


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def param_kind(p: Any) -> str:
    kind = getattr(type(p), "type_name", None)
    if kind in (None, "value"):
        kind = _get(p, "type", default=None)
    if kind is not None and not isinstance(kind, str):
        kind = getattr(kind, "value", None) or getattr(kind, "__name__", None) or str(kind)
    if not kind:
        cls = type(p).__name__.lower()
        for k in ("multiline", "int", "float", "choice", "bool", "seed", "mask", "image", "path", "model", "text"):
            if k in cls:
                kind = k
                break
    kind = str(kind or "text").lower()
    kind = _KIND_ALIASES.get(kind, kind)
    if kind == "text" and _get(p, "multiline", default=False):
        kind = "multiline"
    return kind


def param_name(p: Any) -> str:
    return str(_get(p, "name", "id"))


def param_label(p: Any) -> str:
    lab = _get(p, "label", "title", default=None)
    if lab:
        return str(lab)
    return param_name(p).replace("_", " ").replace("-", " ").capitalize()


def param_help(p: Any) -> str:
    return str(_get(p, "help", "description", "doc", default="") or "")


def param_default(p: Any) -> Any:
    return _get(p, "default", default=None)


def param_range(p: Any) -> tuple[Any, Any]:
    return _get(p, "min", "minimum", "low", default=None), _get(p, "max", "maximum", "high", default=None)


def param_step(p: Any) -> Any:
    return _get(p, "step", default=None)


def param_choices(p: Any) -> list:
    c = _get(p, "choices", "options", "aliases", default=None) or []
    return list(c)


def param_choice_labels(p: Any) -> list:
    labels = list(_get(p, "labels", default=()) or ())
    choices = param_choices(p)
    return labels if len(labels) == len(choices) else [str(c) for c in choices]


def param_placeholder(p: Any) -> str:
    return str(_get(p, "placeholder", default="") or "")


def param_file_filter(p: Any) -> str:
    f = _get(p, "filters", "file_filter", "filter", "extensions", default="") or ""
    if isinstance(f, (list, tuple)) and f and all("(" in str(x) for x in f):
        return ";;".join(str(x) for x in f)
    if isinstance(f, (list, tuple)):
        pats = " ".join(x if x.startswith("*") else f"*{x if x.startswith('.') else '.' + x}" for x in f)
        return f"Files ({pats})"
    return str(f)


def param_is_directory(p: Any) -> bool:
    return str(_get(p, "mode", default="")) == "dir" or bool(_get(p, "directory", "is_dir", default=False))


def param_is_save(p: Any) -> bool:
    return str(_get(p, "mode", default="")) == "save"


def param_optional(p: Any) -> bool:
    return bool(_get(p, "optional", default=False))


def param_advanced(p: Any) -> bool:
    return bool(_get(p, "advanced", default=False))


def tool_params(tool: Any) -> list:
    return list(_get(tool, "params", "parameters", default=()) or ())


def tool_id(tool: Any) -> str:
    return str(_get(tool, "id", "name"))


def tool_title(tool: Any) -> str:
    return str(_get(tool, "title", "label", default=None) or tool_id(tool))


def tool_description(tool: Any) -> str:
    return str(_get(tool, "description", "help", default="") or "")


def tool_plugin(tool: Any) -> str:
    return str(_get(tool, "plugin", "plugin_name", default="") or "")


def iter_kinds(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]
