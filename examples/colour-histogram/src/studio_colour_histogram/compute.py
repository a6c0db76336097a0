"""The colour-histogram computation: numpy and PIL only, no Qt.

This module is imported only when the tool runs (the plugin module names it as the string
``"studio_colour_histogram.compute:run"``), so its imports never slow down the studio's start-up.
The pure functions :func:`channel_histograms` and :func:`render_plot` are usable and tested
without the studio at all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from app.api import ImageResult, RunContext, TableResult, ToolError

#: Channel name -> colour of its curve in the plot (RGB).
CHANNEL_COLOURS = {
    "red": (220, 50, 47),
    "green": (60, 170, 60),
    "blue": (38, 110, 220),
    "luma": (90, 90, 90),
}

#: Values of the ``channels`` parameter -> the channels computed.
CHANNEL_SETS = {
    "rgb": ("red", "green", "blue"),
    "rgb+luma": ("red", "green", "blue", "luma"),
    "luma": ("luma",),
}

#: ITU-R BT.601 weights, the usual "brightness" of an RGB pixel.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

TABLE_ROLE = "colour-histogram"


def channel_values(pixels: np.ndarray, channel: str) -> np.ndarray:
    """The 0..255 values of one channel of an ``HxWx3``/``HxWx4`` uint8 image, as a flat array.
    Fully transparent pixels (alpha 0) are left out: they have no colour to count."""
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 or HxWx4 image, got shape {pixels.shape}")
    rgb = pixels[..., :3]
    if pixels.shape[2] == 4:
        rgb = rgb[pixels[..., 3] > 0]
    else:
        rgb = rgb.reshape(-1, 3)
    if channel == "luma":
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
        return np.clip(np.rint(rgb.astype(np.float64) @ weights), 0, 255).astype(np.uint8)
    index = {"red": 0, "green": 1, "blue": 2}.get(channel)
    if index is None:
        raise ValueError(f"unknown channel {channel!r}; use red, green, blue or luma")
    return rgb[:, index]


def channel_histograms(pixels: np.ndarray, bins: int, channels: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts of each channel in ``bins`` equal bins over 0..255.

    Returns ``(edges, counts)``: ``edges`` has ``bins + 1`` values from 0 to 256 (bin ``i``
    holds values ``edges[i] <= v < edges[i+1]``), ``counts[channel]`` has ``bins`` integers.
    """
    if not 1 <= int(bins) <= 256:
        raise ValueError(f"bins must be between 1 and 256, got {bins}")
    edges = np.linspace(0.0, 256.0, int(bins) + 1)
    counts = {}
    for ch in channels:
        values = channel_values(pixels, ch)
        # integer arithmetic: bin = v * bins // 256 is exact for equal-width bins over 0..256
        idx = (values.astype(np.int64) * int(bins)) // 256
        counts[ch] = np.bincount(idx, minlength=int(bins)).astype(np.int64)
    return edges, counts


def render_plot(edges: np.ndarray, counts: dict[str, np.ndarray], *, width: int = 512, height: int = 256,
                log_scale: bool = False) -> np.ndarray:
    """Draw the histograms as filled, overlapping curves; returns an ``HxWx3`` uint8 array.

    The plot area has a light background with a grid every 64 grey levels; each channel is a
    translucent area in its colour with a solid outline. ``log_scale`` plots ``log(1 + count)``.
    """
    from PIL import Image, ImageDraw

    if width < 32 or height < 32:
        raise ValueError(f"the plot needs at least 32x32 pixels, got {width}x{height}")
    margin = 8
    x0, y0, x1, y1 = margin, margin, width - margin - 1, height - margin - 1
    canvas = Image.new("RGBA", (width, height), (250, 250, 250, 255))
    grid = ImageDraw.Draw(canvas)
    for level in (0, 64, 128, 192, 256):
        gx = x0 + (x1 - x0) * level / 256.0
        grid.line([(gx, y0), (gx, y1)], fill=(215, 215, 215, 255))
    grid.rectangle([x0, y0, x1, y1], outline=(150, 150, 150, 255))

    def transform(c: np.ndarray) -> np.ndarray:
        c = c.astype(np.float64)
        return np.log1p(c) if log_scale else c

    peak = max((float(transform(c).max()) for c in counts.values() if c.size), default=0.0)
    scale = (y1 - y0) / peak if peak > 0 else 0.0
    xs = x0 + (x1 - x0) * (edges / 256.0)
    for name, c in counts.items():
        ys = y1 - transform(c) * scale
        # a step outline: for each bin, its left and right edge at the bin's height
        outline = []
        for i, y in enumerate(ys):
            outline += [(float(xs[i]), float(y)), (float(xs[i + 1]), float(y))]
        area = [(float(xs[0]), float(y1))] + outline + [(float(xs[-1]), float(y1))]
        rgb = CHANNEL_COLOURS.get(name, (0, 0, 0))
        layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        draw.polygon(area, fill=rgb + (70,))
        draw.line(outline, fill=rgb + (255,), width=2)
        canvas = Image.alpha_composite(canvas, layer)
    return np.asarray(canvas.convert("RGB"))


def histogram_table(edges: np.ndarray, counts: dict[str, np.ndarray], pixels: int) -> TableResult:
    """The histograms as a table: one row per bin, ``bin_start``/``bin_end`` (grey levels, end
    exclusive) then one count column per channel. Mean and standard deviation per channel go
    into the metadata."""
    names = list(counts)
    centres = (edges[:-1] + edges[1:]) / 2.0
    stats = {}
    for name, c in counts.items():
        total = int(c.sum())
        mean = float((c * centres).sum() / total) if total else 0.0
        var = float((c * (centres - mean) ** 2).sum() / total) if total else 0.0
        stats[name] = {"mean": round(mean, 3), "std": round(var ** 0.5, 3)}
    rows = [[float(edges[i]), float(edges[i + 1])] + [int(counts[n][i]) for n in names]
            for i in range(len(edges) - 1)]
    return TableResult(columns=("bin_start", "bin_end", *names), rows=rows, label="histogram",
                       metadata={"role": TABLE_ROLE, "bins": len(edges) - 1, "pixels": int(pixels),
                                 "channels": names, "stats": stats})


def run(ctx: RunContext, image: ImageResult, bins: int = 64, channels: str = "rgb",
        log_scale: bool = False) -> list:
    """The ``colour-histogram`` tool: a table of counts and an image of the plot."""
    if channels not in CHANNEL_SETS:
        raise ToolError(f"channels must be one of {', '.join(CHANNEL_SETS)}, got {channels!r}")
    pixels = image.image
    names = CHANNEL_SETS[channels]
    total_steps = len(names) + 1
    edges = np.linspace(0.0, 256.0, bins + 1)
    counts: dict[str, np.ndarray] = {}
    for step, name in enumerate(names):
        ctx.progress(step, total_steps, f"counting {name}")  # also where a cancel takes effect
        counts[name] = channel_histograms(pixels, bins, [name])[1][name]
    counted = int(next(iter(counts.values())).sum())
    if counted == 0:
        raise ToolError("the image has no visible pixels (every pixel is fully transparent)")
    ctx.progress(len(names), total_steps, "drawing the plot")
    plot = render_plot(edges, counts, log_scale=log_scale)
    ctx.progress(total_steps, total_steps, "done")
    table = histogram_table(edges, counts, counted)
    return [table, ImageResult(image=plot, label="plot", metadata={"role": "colour-histogram-plot",
                                                                   "log_scale": bool(log_scale)})]
