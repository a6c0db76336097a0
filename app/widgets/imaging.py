"""Turning result data into ``QImage`` and back, without importing numpy or PIL until needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage


def _from_array(arr: Any) -> QImage:
    import numpy as np

    a = np.asarray(arr)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a), 0.0, 1.0)
        a = (a * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))  # CHW -> HWC
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.ascontiguousarray(a)
        h, w = a.shape
        img = QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8)
        return img.copy()
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"cannot show an array of shape {tuple(a.shape)} as an image")
    a = np.ascontiguousarray(a)
    h, w, ch = a.shape
    fmt = QImage.Format.Format_RGB888 if ch == 3 else QImage.Format.Format_RGBA8888
    return QImage(a.data, w, h, a.strides[0], fmt).copy()


def to_qimage(obj: Any) -> QImage:
    """A ``QImage`` from a QImage, a file path, PNG/JPEG bytes, a PIL image, or an array
    (H×W, H×W×3/4, or C×H×W; uint8, bool or float in [0, 1])."""
    if isinstance(obj, QImage):
        return obj
    if isinstance(obj, (str, Path)):
        img = QImage(str(obj))
        if img.isNull():
            raise ValueError(f"could not read an image from {obj}")
        return img
    if isinstance(obj, (bytes, bytearray, memoryview)):
        img = QImage.fromData(QByteArray(bytes(obj)))
        if img.isNull():
            raise ValueError("the bytes are not a readable image")
        return img
    mod = type(obj).__module__ or ""
    if mod.startswith("PIL."):
        im = obj
        if im.mode not in ("RGB", "RGBA", "L"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        import numpy as np

        return _from_array(np.asarray(im))
    if mod.startswith("torch"):
        return _from_array(obj.detach().cpu().numpy())
    if hasattr(obj, "__array__") or hasattr(obj, "shape"):
        return _from_array(obj)
    for attr in ("image", "data", "array", "path"):
        inner = getattr(obj, attr, None)
        if inner is not None and inner is not obj:
            return to_qimage(inner)
    raise ValueError(f"cannot show a {type(obj).__name__} as an image")


def qimage_to_array(img: QImage):
    """RGBA uint8 array (H, W, 4) copy of ``img``."""
    import numpy as np

    img = img.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return arr[:, : w * 4].reshape(h, w, 4).copy()


def qimage_png_bytes(img: QImage) -> bytes:
    ba = QByteArray()
    buf = QBuffer(ba)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    buf.close()
    return bytes(ba)


def as_rgb(value: Any, what: str = "image"):
    """An HxWx3 uint8 array from an array (HxW, HxWx3/4; uint8, bool or float in [0, 1]) or a PIL
    image, converted as :class:`app.api.ImageResult` converts its pixels; ``ValueError`` with a
    sentence naming ``what`` otherwise."""
    import numpy as np

    from app.api import ImageResult

    try:
        arr = ImageResult(image=value).image
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The {what} cannot be used: {exc}") from None
    return np.ascontiguousarray(arr[:, :, :3])


def load_rgb(path: str | Path, what: str = "image"):
    """Read an image file as HxWx3 uint8; ``ValueError`` with a sentence for a missing file or
    one that is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return as_rgb(img.convert("RGB"), what)
    except FileNotFoundError:
        raise ValueError(f"The {what} file {str(path)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"The {what} file {str(path)!r} is not an image Pillow can read "
                         f"({type(exc).__name__}).") from None
