"""File readers: Netpbm images (``.ppm``/``.pgm``/``.pnm``) and NumPy arrays (``.npy``).

The studio calls ``read(path)`` when such a file is dropped on the window, opened from the File
menu, or given as an image parameter (``--image picture.ppm``). A reader returns a result (here
an :class:`~app.api.ImageResult`) or raises ``ValueError`` with a sentence saying what is wrong,
so the studio can pass the file on to another reader or show the message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.api import ImageResult, MaskResult

_WHITESPACE = b" \t\r\n\v\f"
_MAGIC = {b"P2": ("gray", False), b"P3": ("rgb", False), b"P5": ("gray", True), b"P6": ("rgb", True)}


def _header_tokens(data: bytes, count: int) -> tuple[list[bytes], int]:
    """Read ``count`` whitespace-separated tokens after the magic number, skipping ``#`` comments.
    Returns the tokens and the offset just after the last one."""
    tokens: list[bytes] = []
    i = 2
    n = len(data)
    while len(tokens) < count:
        while i < n and data[i] in _WHITESPACE:
            i += 1
        if i < n and data[i] == ord("#"):
            while i < n and data[i] not in b"\r\n":
                i += 1
            continue
        start = i
        while i < n and data[i] not in _WHITESPACE and data[i] != ord("#"):
            i += 1
        if start == i:
            raise ValueError("the Netpbm header ends early (expected width, height and maximum value)")
        tokens.append(data[start:i])
    return tokens, i


def parse_netpbm(data: bytes) -> np.ndarray:
    """Decode a P2/P3 (text) or P5/P6 (binary) Netpbm image to ``HxW`` or ``HxWx3`` ``uint8``.
    Samples with a maximum value other than 255 are rescaled to 0..255."""
    magic = data[:2]
    if magic not in _MAGIC:
        kinds = ", ".join(m.decode() for m in _MAGIC)
        raise ValueError(f"not a Netpbm image this reader understands (magic {magic!r}; supported: {kinds})")
    layout, binary = _MAGIC[magic]
    tokens, end = _header_tokens(data, 3)
    try:
        width, height, maxval = (int(t) for t in tokens)
    except ValueError:
        raise ValueError(f"the Netpbm header has a non-numeric size or maximum: {b' '.join(tokens)!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"the Netpbm image size {width}x{height} is empty")
    if not 1 <= maxval <= 65535:
        raise ValueError(f"the Netpbm maximum value must be 1..65535, got {maxval}")
    channels = 3 if layout == "rgb" else 1
    count = width * height * channels
    if binary:
        if end >= len(data) or data[end] not in _WHITESPACE:
            raise ValueError("the Netpbm header must end with one whitespace byte before the pixels")
        body = data[end + 1:]  # exactly one whitespace byte separates the header from the pixels
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        need = count * dtype.itemsize
        if len(body) < need:
            raise ValueError(f"the Netpbm file is truncated: {len(body)} bytes of pixels, {need} needed "
                             f"for {width}x{height}")
        samples = np.frombuffer(body[:need], dtype=dtype).astype(np.int64)
    else:
        words = data[end:].split()
        if len(words) < count:
            raise ValueError(f"the Netpbm file is truncated: {len(words)} samples, {count} needed for {width}x{height}")
        try:
            samples = np.array([int(w) for w in words[:count]], dtype=np.int64)
        except ValueError:
            raise ValueError("the Netpbm file has a non-numeric sample") from None
    if samples.size and samples.max() > maxval:
        raise ValueError(f"a Netpbm sample exceeds the maximum value {maxval}")
    if maxval != 255:
        samples = (samples * 255 + maxval // 2) // maxval
    pixels = samples.astype(np.uint8)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return pixels.reshape(shape)


def read_netpbm(path: str) -> ImageResult:
    """Reader for ``*.ppm``, ``*.pgm`` and ``*.pnm`` files."""
    data = Path(path).read_bytes()
    pixels = parse_netpbm(data)
    return ImageResult(image=pixels, label=Path(path).stem,
                       metadata={"source": str(path), "format": "netpbm " + data[:2].decode("ascii")})


def read_npy(path: str) -> ImageResult | MaskResult:
    """Reader for ``*.npy`` arrays: ``HxW``, ``HxWx3`` or ``HxWx4``. ``uint8`` data is used as is;
    a 2-D ``bool`` array becomes a mask; other numbers are stretched from their range to 0..255
    (recorded in the metadata). Pickled object arrays are refused (never unpickle a file)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{Path(path).name} is not a plain NumPy array file: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {Path(path).name} as a NumPy array: {exc}") from None
    meta = {"source": str(path), "format": "npy", "dtype": str(arr.dtype), "shape": list(arr.shape)}
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"{Path(path).name}: expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{Path(path).name}: the array is empty")
    if arr.dtype == np.bool_:
        if arr.ndim == 2:
            return MaskResult(mask=arr, label=Path(path).stem, metadata=meta)
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{Path(path).name}: cannot show an array of {arr.dtype}")
        values = arr.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{Path(path).name}: the array contains NaN or infinite values")
        lo, hi = float(values.min()), float(values.max())
        meta["value_range"] = [lo, hi]
        arr = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return ImageResult(image=arr, label=Path(path).stem, metadata=meta)
