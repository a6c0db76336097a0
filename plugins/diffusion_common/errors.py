"""Error types of the diffusion plugins (stdlib only, cheap to import).

``ModelError`` is a model that cannot be found, read, classified or run; ``ParamError`` is a
parameter the model cannot take. Both carry a sentence meant for the user. When the studio's
public API is importable they subclass its ``ToolError``/``ParamError`` so the job runner and the
command line show them without a traceback.
"""

from __future__ import annotations

try:  # the studio's API is stdlib + pluggy only, so this import is cheap
    from app.api import ParamError as _ApiParamError
    from app.api import ToolError as _ApiToolError
except Exception:  # pragma: no cover - used only when the app package is absent
    _ApiParamError = ValueError  # type: ignore[misc,assignment]
    _ApiToolError = RuntimeError  # type: ignore[misc,assignment]


class ModelError(_ApiToolError):  # type: ignore[misc,valid-type]
    """A model folder/file is missing, corrupt, of an unknown architecture, refused (pickle) or
    failed on the device (out of memory)."""


class ParamError(_ApiParamError):  # type: ignore[misc,valid-type]
    """A generation parameter the model cannot take (size not a multiple, steps out of range...)."""

    def __init__(self, message: str, param: str | None = None):
        if _ApiParamError is ValueError:
            super().__init__(message)
        else:
            super().__init__(message, param)
        self.message = message
        self.param = param


try:
    from app.api import Cancelled  # noqa: F401  (the runner records a run that raised it as cancelled)
except Exception:  # pragma: no cover
    class Cancelled(Exception):  # type: ignore[no-redef]
        """The user cancelled the run."""
