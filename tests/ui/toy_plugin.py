"""A toy plugin for the window tests: a gradient image tool with steps, previews and cancel, an
edit tool taking an image input, and a tool that always raises. numpy only, fast."""

from __future__ import annotations

import time

from app.api import (
    BoolParam,
    ChoiceParam,
    FloatParam,
    ImageParam,
    ImageResult,
    IntParam,
    SeedParam,
    TableResult,
    TextParam,
    ToolSpec,
    hookimpl,
)


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="toy-gradient",
            title="Toy gradient",
            description="A seeded noisy gradient, made in steps.",
            group="generate",
            run=f"{__name__}:make_gradient",
            params=(
                TextParam(name="prompt", multiline=True, default="a toy", help="Any text; it tints the image."),
                IntParam(name="size", default=32, min=8, max=256),
                IntParam(name="steps", default=4, min=1, max=500),
                FloatParam(name="delay", default=0.0, min=0.0, max=1.0, step=0.01, help="Seconds per step"),
                ChoiceParam(name="palette", choices=("warm", "cool"), default="warm"),
                BoolParam(name="invert", default=False),
                SeedParam(name="seed", default=7),
                BoolParam(name="with_table", default=False, help="Also return a table of row means"),
                BoolParam(name="with_strip", default=False, help="Also return a wide red strip, like a filmstrip"),
            ),
        ),
        ToolSpec(
            id="toy-invert",
            title="Toy invert",
            description="Inverts an input image.",
            group="edit",
            run=f"{__name__}:invert",
            params=(ImageParam(name="image"), FloatParam(name="amount", default=1.0, min=0.0, max=1.0)),
        ),
        ToolSpec(
            id="toy-fail",
            title="Toy failure",
            description="Always raises.",
            run=f"{__name__}:fail",
            params=(IntParam(name="n", default=1, min=0, max=3),),
        ),
    ]


def make_gradient(ctx, prompt, size, steps, delay, palette, invert, seed, with_table=False, with_strip=False):
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), dtype=np.float64)
    ramp = np.linspace(0, 1, size)
    tint = (sum(map(ord, prompt)) % 97) / 97.0
    for i in range(steps):
        ctx.progress(i, steps, f"step {i + 1}")
        if delay:
            time.sleep(delay)
        img[..., 0] = ramp[None, :] * (i + 1) / steps
        img[..., 1] = ramp[:, None] * tint
        img[..., 2] = 0.5 if palette == "warm" else 0.9
        ctx.preview(np.clip(img, 0, 1))
    img += rng.normal(0, 0.05, img.shape)
    img = np.clip(img, 0, 1)
    if invert:
        img = 1 - img
    ctx.progress(steps, steps)
    out = ImageResult(image=(img * 255).round().astype("uint8"))
    if with_strip:
        strip = np.zeros((size, 4 * size, 3), np.uint8)
        strip[..., 0] = 255
        return [out, ImageResult(image=strip, label="red strip")]
    if with_table:
        means = img.mean(axis=(1, 2))
        return [out, TableResult(columns=("row", "mean"), rows=[(i, float(m)) for i, m in enumerate(means)], label="row means")]
    return out


def invert(ctx, image, amount):
    import numpy as np

    arr = image.image[..., :3].astype(np.float64)
    out = arr * (1 - amount) + (255 - arr) * amount
    ctx.progress(1, 1)
    return ImageResult(image=out.round().astype("uint8"))


def fail(ctx, n):
    raise RuntimeError(f"toy failure number {n}")
