"""Run functions of the toy plugin (the 'compute' side: may import numpy)."""

import time

import numpy as np

from app.api import ImageResult, MeshResult, TableResult, ToolError


def noise_image(ctx, size, steps, step_delay, palette, invert, note, seed):
    rng = np.random.default_rng(seed)
    channels = 3 if palette == "color" else 1
    acc = np.zeros((size, size, channels), dtype=np.float64)
    for i in range(steps):
        ctx.progress(i, steps, f"step {i + 1}")
        acc += rng.random((size, size, channels))
        if step_delay:
            time.sleep(step_delay)
        ctx.preview((acc / (i + 1) * 255).astype(np.uint8).repeat(3 // channels, axis=2))
        ctx.log_metric("mean", i, float(acc.mean() / (i + 1)))
    ctx.progress(steps, steps, "done")
    img = (acc / steps * 255).astype(np.uint8)
    if channels == 1:
        img = img[:, :, 0]
    if invert:
        img = 255 - img
    return ImageResult(image=img, metadata={"note": note, "seed": seed})


def fail(ctx, after_steps):
    for i in range(after_steps):
        ctx.progress(i, after_steps)
    raise RuntimeError("toy failure on purpose")


def user_error(ctx):
    raise ToolError("the toy model file is missing; put it in ~/toy")


def invert(ctx, image, mask):
    out = 255 - image.array[:, :, :3]
    if mask is not None:
        keep = ~mask.bool_mask
        out[keep] = image.array[:, :, :3][keep]
    return ImageResult(image=out)


def tetrahedron(ctx, scale):
    v = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]], dtype=np.float32) * scale
    f = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    ctx.log_metric("volume", 0, 8 * scale**3 / 3)
    return [MeshResult(vertices=v, faces=f), TableResult(columns=("vertex", "x"), rows=[(i, float(v[i, 0])) for i in range(4)])]


def read_toyimg(path):
    """A '.toyimg' file: first line 'TOY W H', then W*H gray bytes."""
    data = open(path, "rb").read()
    head, _, body = data.partition(b"\n")
    parts = head.split()
    if len(parts) != 3 or parts[0] != b"TOY":
        raise ValueError("not a toy image")
    w, h = int(parts[1]), int(parts[2])
    arr = np.frombuffer(body[: w * h], dtype=np.uint8).reshape(h, w)
    return ImageResult(image=arr, metadata={"source": str(path)})


def hello_main(argv):
    print("hello " + " ".join(argv))
    return 3 if "--fail" in argv else 0
