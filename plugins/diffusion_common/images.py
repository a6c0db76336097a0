"""Image helpers of the diffusion tools (numpy and PIL only: cheap enough for a Qt panel).

Every image the editing tools take goes through :func:`to_uint8_rgb`, every file through
:func:`load_image_file`, so a bad input gets the same sentence everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_uint8_rgb(image: Any, what: str = "image") -> np.ndarray:
    """HxWx3 uint8 from a PIL image, an HxWx{3,4} / HxW array (uint8 or float in [0, 1])."""
    if type(image).__module__.startswith("PIL"):
        image = np.asarray(image.convert("RGB"))
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must be an RGB image (HxWx3), got an array of shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{what} contains NaN or infinite values")
            arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def load_image_file(path: str, what: str = "image") -> np.ndarray:
    """Read an image file as HxWx3 uint8, with a clear error for anything that is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return to_uint8_rgb(img.convert("RGB"), what)
    except FileNotFoundError:
        raise ValueError(f"{what} file {path!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{what} file {path!r} is not an image Pillow can read ({exc.__class__.__name__})") from None


def resize_uint8(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to (width, height) with a good filter."""
    from PIL import Image

    w, h = size
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.LANCZOS))
