"""Checks of a run's image inputs before any work is done (no Qt, no torch).

A file given as an image that is not one, or a mask whose size differs from its image's, used to
be found by the tool after it had loaded its model (exit status 1, a minute later). The command
line and the window check them first (:func:`check_image_inputs`): the file's header is read (not
its pixels), and a mask is compared with the image it belongs to (``MaskParam.image_param``)
unless the tool resizes masks (a true ``resize_mask`` parameter). A failure is an
:class:`app.api.ParamError` naming the parameter: exit status 2 on the command line, a message
under the field in the window.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from app import api

#: The size (width, height) of a ``result:<id>`` input, or None when it is not known.
SizeOf = Callable[[int], Optional[tuple[int, int]]]


def image_size(value: Any, size_of: Optional[SizeOf] = None) -> Optional[tuple[int, int]]:
    """(width, height) of an image input: a file (its header is read; ``ParamError`` when it is
    not an image), a ``result:<id>`` (through ``size_of``), an array or a Result; None when it
    cannot be known cheaply."""
    if isinstance(value, str):
        if value.startswith(api.RESULT_REF_PREFIX):
            rid = value[len(api.RESULT_REF_PREFIX):].strip()
            return size_of(int(rid)) if size_of is not None and rid.isdigit() else None
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

        try:
            with Image.open(value) as im:
                return int(im.width), int(im.height)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"{value} is not an image that can be read ({type(exc).__name__})") from None
    data = getattr(value, "image", None)
    if data is None:
        data = getattr(value, "mask", None)
    shape = getattr(data if data is not None else value, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(shape[1]), int(shape[0])
    return None


def check_image_inputs(tool: api.ToolSpec, values: Mapping[str, Any], size_of: Optional[SizeOf] = None) -> None:
    """``ParamError`` for an image input that is not an image, or a mask of another size than
    its image (when the tool does not resize masks)."""
    sizes: dict[str, Optional[tuple[int, int]]] = {}
    for p in tool.params:
        if not isinstance(p, api.ImageParam):
            continue
        v = values.get(p.name)
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        try:
            sizes[p.name] = image_size(v, size_of)
        except ValueError as exc:
            raise api.ParamError(str(exc), p.name) from None
    resize = values.get("resize_mask") is True
    for p in tool.params:
        if not isinstance(p, api.MaskParam) or resize or not p.image_param:
            continue
        mask, image = sizes.get(p.name), sizes.get(p.image_param)
        if mask is not None and image is not None and mask != image:
            hint = " (or let the tool resize it: resize_mask)" if any(q.name == "resize_mask" for q in tool.params) else ""
            raise api.ParamError(f"the mask is {mask[0]}x{mask[1]} but the image is {image[0]}x{image[1]}; give a "
                                 f"mask of the image's size{hint}", p.name)
