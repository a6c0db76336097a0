"""The error of the diffusion plugins (cheap to import).

``ModelError`` is a model that cannot be found, read, classified or run: a
:class:`app.api.ToolError`, so the job runner and the command line show its sentence without a
traceback. A parameter the model cannot take is an :class:`app.api.ParamError` and a cancelled run
an :class:`app.api.Cancelled`, raised directly.
"""

from __future__ import annotations

from app.api import ToolError


class ModelError(ToolError):
    """A model folder/file is missing, corrupt, of an unknown architecture, refused (pickle) or
    failed on the device (out of memory)."""
