""""Send to" menus: one action per tool that takes an image (:func:`app.controller.send_targets`
finds them from the tool specs, so h-Edit, inpainting, text-to-image's image-to-image and any
plugin's image tool appear without being named here). The controller gives the values to send
(:meth:`app.controller.RunController.send_to`); this module only fills menus."""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QMenu

from app.controller import SendTarget


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
