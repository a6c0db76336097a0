"""The arithmetic of training passes: bfloat16 autocast (weights, optimiser state and losses in
float32) or plain float32, shared by the default-model trainer and the distillation tool.

``resolve_precision("auto", device)`` takes bfloat16 where the hardware multiplies bfloat16 matrices
fast: a CUDA GPU that supports bfloat16, or a CPU with AMX tiles. On CPUs with AVX-512 bf16 dot
products alone it was not faster (benchmarks/bench_train_precision.py), so they train in float32.
"""

from __future__ import annotations

import contextlib

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """The arithmetic a run uses on ``device``: "bf16" or "fp32" ("auto": bf16 where it pays; an
    explicit "bf16" on a GPU that does not compute bfloat16 is a ValueError naming the GPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16_ok:
            name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else str(device)
            raise ValueError(f"{name} does not compute bfloat16; use --precision fp32 (or auto)")
        return precision if precision != "auto" else ("bf16" if bf16_ok else "fp32")
    if precision != "auto":
        return precision
    if kind != "cpu":  # MPS: float32 (its bfloat16 was not measured)
        return "fp32"
    import torch

    try:  # AMX multiplies bfloat16 tiles in hardware; AVX-512's bf16 dot products alone were not faster
        return "bf16" if torch.cpu._is_amx_tile_supported() else "fp32"
    except AttributeError:  # a torch without the probe
        return "fp32"


def _attention_in_float32(sdpa):
    """``sdpa`` (scaled dot-product attention) computed in float32 whatever autocast says."""
    import functools

    import torch

    @functools.wraps(sdpa)
    def attention(query, key, value, attn_mask=None, *args, **kwargs):
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.float()
        with torch.autocast("cpu", enabled=False):
            out = sdpa(query.float(), key.float(), value.float(), attn_mask, *args, **kwargs)
        return out.to(query.dtype)

    return attention


@contextlib.contextmanager
def mixed_precision(precision: str, device: str = "cpu"):
    """The context a training forward pass runs in: bfloat16 autocast for "bf16", nothing for "fp32".

    On the CPU under bf16, attention (diffusers' and transformers' calls of torch's
    scaled_dot_product_attention) runs in float32: the flash-attention kernel's bfloat16 backward pass
    took 10x its float32 time and cost more than autocast saved everywhere else, and the math kernel in
    bfloat16 made a UNet step still 6-13% slower than float32 flash attention
    (benchmarks/bench_train_precision.py). On CUDA, autocast alone (its attention kernels are fast).
    """
    if precision != "bf16":
        yield
        return
    import torch

    kind = str(device).split(":")[0]
    if kind != "cpu":  # on a GPU attention stays in bfloat16, the point of it there
        with torch.autocast(kind, dtype=torch.bfloat16):
            yield
        return
    import torch.nn.functional as F

    sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _attention_in_float32(sdpa)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    finally:
        F.scaled_dot_product_attention = sdpa


def _flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (torch offers no getter)."""
    import torch

    return float(torch.tensor([1e-40], dtype=torch.float32).mul(1.0).item()) == 0.0


@contextlib.contextmanager
def flush_denormals():
    """Flush denormal floats to zero inside (tiny activations on flat images otherwise slow CPU arithmetic
    many times over), and leave the thread's setting as it was found: it is process state that other
    code (a property-based test drawing subnormal floats, say) relies on."""
    import torch

    was = _flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was)
