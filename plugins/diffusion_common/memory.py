"""How much memory a generation needs, how much the device has, and a refusal that says what to do.

:func:`estimate` adds up what an image of a given size asks of a model on a device: the UNet's (or
transformer's) activations at every resolution it works at, the VAE decoder's at full resolution
(a tile's when the decode is tiled), and attention score matrices where the backend materialises
them (ONNX Runtime; torch computes them in slices). The factors were measured on the bundled model
on a CPU (peak resident memory of one UNet call and one VAE decode at 256-1024 px; see
benchmarks/RESULTS.md) and hold for SD-structured models, whose layers are the same kind.

:func:`available` is what can still be allocated: free RAM, lowered by a container's memory limit
and by the process's address-space limit (``ulimit -v``); free GPU memory for CUDA.
:func:`check` raises :class:`ParamError` when the estimate does not fit, naming the limit and the
way around (a smaller size or batch, the torch backend).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from app.api import ParamError

UNET_FACTOR = 14.0  # live activation tensors per stored level activation (measured: 11.8-13.8)
VAE_FACTOR = 6.0  # the same for the VAE decoder (measured: 4.8-5.5)
FIXED_OVERHEAD = 96 * 1024**2  # buffers, the scheduler, prompt embeddings, allocator slack
TILE = 512  # side in pixels of the tiles of a tiled VAE decode
TILE_ABOVE = 1024 * 1024  # images with more pixels are decoded in tiles
SAFETY = 0.9  # use at most this part of what is available


@dataclass(frozen=True)
class Estimate:
    total: int  # bytes at the peak
    part: str  # what makes the peak ("the VAE decode at full size", ...)


@dataclass(frozen=True)
class Available:
    bytes: int
    limit: str  # what limits it, in words


def _bytes_per_value(dtype: str) -> int:
    return 2 if dtype in ("float16", "bfloat16") else 4


def _levels(channels, height: int, width: int) -> float:
    """Sum over resolution levels of channels x pixels (each level halves the sides)."""
    return float(sum(c * math.ceil(height / 2**i) * math.ceil(width / 2**i) for i, c in enumerate(channels)))


def tiled_decode(width: int, height: int) -> bool:
    """Whether an image this size is decoded in tiles (bounded memory, cancellable between tiles)."""
    return width * height > TILE_ABOVE


def estimate(config: dict, width: int, height: int, batch: int = 1, cfg: bool = True,
             backend: str = "torch", dtype: str = "float32") -> Estimate:
    """Peak bytes of generating ``batch`` images of ``width`` x ``height``.

    ``config``: ``vae_scale_factor``, ``vae_channels`` (the VAE's ``block_out_channels``) and
    either ``unet_channels`` (UNet ``block_out_channels``) with ``attention_heads`` per level, or
    ``transformer_width``/``transformer_layers``/``patch_size`` for a diffusion transformer.
    """
    vb = _bytes_per_value(dtype)
    vsf = int(config.get("vae_scale_factor", 8))
    b2 = batch * (2 if cfg else 1)
    lh, lw = max(height // vsf, 1), max(width // vsf, 1)
    parts: dict[str, float] = {}
    if config.get("unet_channels"):
        parts["the UNet"] = UNET_FACTOR * b2 * _levels(config["unet_channels"], lh, lw) * vb
        if backend == "onnx":  # ONNX Runtime keeps every attention score matrix whole
            heads = config.get("attention_heads") or [8] * len(config["unet_channels"])
            worst = max((h * (math.ceil(lh / 2**i) * math.ceil(lw / 2**i)) ** 2
                         for i, h in enumerate(heads) if h), default=0)
            parts["the UNet"] += 2.0 * b2 * worst * 4
    else:
        patch = int(config.get("patch_size", 2))
        tokens = math.ceil(lh / patch) * math.ceil(lw / patch) + 512
        parts["the transformer"] = 20.0 * b2 * tokens * int(config.get("transformer_width", 3072)) * vb
    if tiled_decode(width, height) and backend == "torch":
        side = TILE + TILE // 4  # a tile with its overlap
        vae = VAE_FACTOR * _levels(config.get("vae_channels") or [128], side, side) * vb
        parts["the tiled VAE decode"] = vae + batch * width * height * 3 * 4 * 2  # tiles + the whole picture
    else:
        vae = VAE_FACTOR * batch * _levels(config.get("vae_channels") or [128], height, width) * vb
        if backend == "onnx":
            vae += 2.0 * batch * (lh * lw) ** 2 * 4  # the decoder's mid-block attention, whole
        parts["the VAE decode at full size"] = vae
    part = max(parts, key=parts.get)
    return Estimate(int(parts[part] + FIXED_OVERHEAD), part)


def model_memory_config(pipe) -> dict:
    """The numbers :func:`estimate` needs, read from a loaded diffusers pipeline."""
    def config_of(part: str) -> dict | None:
        module = getattr(pipe, part, None)
        return dict(module.config) if module is not None else None

    return memory_config(config_of("unet"), config_of("vae"), config_of("transformer"),
                         int(getattr(pipe, "vae_scale_factor", 8) or 8))


def folder_memory_config(folder) -> dict:
    """The same from a diffusers (or ONNX export) folder's ``unet``/``vae`` config files."""
    import json

    def read(*names: str) -> dict | None:
        for name in names:
            try:
                return json.loads((Path(folder) / name / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return None

    vae = read("vae", "vae_decoder")
    vsf = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1) if vae else 8
    return memory_config(read("unet"), vae, read("transformer"), vsf)


def memory_config(unet: dict | None, vae: dict | None, transformer: dict | None, vsf: int) -> dict:
    cfg: dict = {"vae_scale_factor": vsf}
    if vae:
        cfg["vae_channels"] = list(vae.get("block_out_channels", [128]))
    if unet:
        channels = list(unet.get("block_out_channels", [320, 640, 1280, 1280]))
        # diffusers: num_attention_heads, or (by an old naming) attention_head_dim, is the heads
        heads = unet.get("num_attention_heads") or unet.get("attention_head_dim") or 8
        blocks = list(unet.get("down_block_types") or ["CrossAttnDownBlock2D"] * len(channels))
        blocks[-1] = "Attn"  # the mid block at the lowest level has attention
        cfg["unet_channels"] = channels
        cfg["attention_heads"] = [int(heads[i] if isinstance(heads, (list, tuple)) else heads)
                                  if "Attn" in blocks[i] else 0 for i in range(len(channels))]
    elif transformer:
        cfg["transformer_width"] = (int(transformer.get("num_attention_heads", 24))
                                    * int(transformer.get("attention_head_dim", 128)))
        cfg["patch_size"] = int(transformer.get("patch_size", 2) or 2)
    return cfg


# --------------------------------------------------------------------------------- available
def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What the container's memory limit still allows (cgroup v2, else v1), or None."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - usage, 0)
    return None


def _address_space_room() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process to map, or None."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    try:
        with open("/proc/self/status") as fh:
            size = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return None
    return max(soft - size, 0)


def available(device: str = "cpu") -> Available:
    """Memory that can still be allocated on ``device``, and what limits it."""
    if device.startswith("cuda"):
        try:
            import torch

            free, _total = torch.cuda.mem_get_info(torch.device(device))
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return Available(int(free + max(cached, 0)), f"free memory on {device}")
        except Exception:  # noqa: BLE001 - no CUDA query: fall back to host memory
            pass
    options = []
    ram = _meminfo_available()
    if ram is not None:
        options.append(Available(ram, "free memory (RAM)"))
    room = _cgroup_room()
    if room is not None:
        options.append(Available(room, "the memory limit of this container"))
    room = _address_space_room()
    if room is not None:
        options.append(Available(room, "this process's memory limit (ulimit -v)"))
    if not options:
        return Available(8 * 1024**3, "an assumed 8 GB (the memory could not be read)")
    return min(options, key=lambda a: a.bytes)


# ------------------------------------------------------------------------------------- check
def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GB"


def largest_side(config: dict, have: int, batch: int, cfg: bool, backend: str, dtype: str) -> int:
    """The largest square side (a multiple of 64) whose estimate fits in ``have`` bytes."""
    lo, hi = 0, 64
    while hi <= 16384 and estimate(config, hi, hi, batch, cfg, backend, dtype).total <= have:
        lo, hi = hi, hi * 2
    while hi - lo > 64:
        mid = (lo + hi) // 2 // 64 * 64
        if estimate(config, mid, mid, batch, cfg, backend, dtype).total <= have:
            lo = mid
        else:
            hi = mid
    return lo


def check(config: dict, width: int, height: int, batch: int = 1, cfg: bool = True,
          backend: str = "torch", device: str = "cpu", dtype: str = "float32",
          room: Available | None = None) -> Estimate:
    """The estimate, or :class:`ParamError` (on ``width``) when it does not fit on ``device``."""
    need = estimate(config, width, height, batch, cfg, backend, dtype)
    room = room or available(device)
    usable = int(room.bytes * SAFETY)
    if need.total <= usable:
        return need
    ways = []
    side = largest_side(config, usable, batch, cfg, backend, dtype)
    if side >= 64:
        ways.append(f"a smaller size (at most about {side}x{side} here)")
    if batch > 1:
        ways.append("a smaller batch")
    if backend == "onnx" and estimate(config, width, height, batch, cfg, "torch", dtype).total <= usable:
        ways.append("the torch backend (it slices attention and tiles the VAE decode; ONNX Runtime "
                    "cannot)")
    if device == "cpu" and dtype == "float32" and not ways:
        ways.append("a GPU")
    images = f"{batch} images" if batch > 1 else "an image"
    raise ParamError(
        f"Width and height: {images} of {width}x{height} needs about {_gb(need.total)} of memory for "
        f"{need.part} on {device}, but only {_gb(room.bytes)} is available ({room.limit}). "
        f"Use {' or '.join(ways) or 'a smaller size'}.", "width")
