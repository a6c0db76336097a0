"""Device and dtype selection for the diffusion plugins, through ``app/devices.py`` (the one place
the studio picks devices) with a plain fallback when the app package is not importable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Placement:
    """Where a model runs: torch device string, torch dtype name, ONNX Runtime providers."""

    device: str = "cpu"
    dtype: str = "float32"
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def choose_placement(device: str | None = "auto", dtype: str | None = None, backend: str = "torch") -> Placement:
    """Resolve ``device`` (auto/cpu/cuda/cuda:N/mps) and ``dtype`` (None = fp16 on CUDA, float32
    elsewhere) for ``backend`` (``"torch"`` or ``"onnx"``)."""
    backends = ("torch", "onnx") if backend == "onnx" else ("torch",)
    try:
        from app import devices
    except Exception:  # pragma: no cover - app package absent
        devices = None
    if devices is not None:
        choice = devices.choose(device or "auto", backends, dtype)
        return Placement(choice.device, choice.dtype, tuple(choice.ort_providers))
    import torch  # pragma: no cover

    dev = "cuda" if (device in (None, "auto") and torch.cuda.is_available()) else (device or "cpu")
    if dev == "auto":
        dev = "cpu"
    return Placement(dev, dtype or ("float16" if dev.startswith("cuda") else "float32"))


def placement_from_context(ctx, backend: str = "torch") -> Placement:
    """The placement a :class:`app.api.RunContext` carries."""
    providers = tuple(getattr(ctx, "ort_providers", None) or ("CPUExecutionProvider",))
    return Placement(str(getattr(ctx, "device", "cpu")), str(getattr(ctx, "dtype", "float32")), providers)


def cache_dir() -> Path:
    """Where ONNX exports, converted checkpoints and the hash cache live:
    ``IMPLICIT_STUDIO_CACHE_DIR``, else the studio's data folder ``/cache``."""
    env = os.environ.get("IMPLICIT_STUDIO_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        try:
            from app.settings import data_dir

            path = data_dir() / "cache"
        except Exception:  # pragma: no cover
            path = Path.home() / ".cache" / "implicit-studio"
    path.mkdir(parents=True, exist_ok=True)
    return path
