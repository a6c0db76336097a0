"""Where an interactive view computes: the user's device setting, as runs use it (no Qt).

Viewers have no run context (they are built as ``Factory(parent=None)``), so a view that
evaluates a network itself (the INR viewers' bakes, renders and thumbnails) asks here: the device
``implicit-studio --device D`` gave this process (``IMPLICIT_STUDIO_DEVICE``), else the settings'
``device`` as saved now (Preferences), resolved by :mod:`app.devices` like a run's. A device that
is not there (``cuda`` chosen, no GPU) falls back to the CPU with a logged warning: a viewer
shows the field anyway.
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("implicit_studio.widgets.compute")


def view_device(backends: tuple[str, ...] = ("torch", "onnx")) -> tuple[str, tuple[str, ...]]:
    """``(torch device name, ONNX Runtime providers)`` for a view's own computing; imports torch
    when ``backends`` has it."""
    from app import devices
    from app.settings import Settings

    preference = os.environ.get("IMPLICIT_STUDIO_DEVICE") or Settings().device
    try:
        choice = devices.choose(preference, backends)
    except devices.DeviceError as exc:
        _log.warning("the device setting %r cannot be used by the viewer (%s); it computes on the CPU",
                     preference, exc)
        choice = devices.choose("cpu", backends)
    return choice.device, tuple(choice.ort_providers)
