"""Where compute runs: the one place that picks the torch device, its dtype and the ONNX Runtime
execution providers.

Order: CUDA, then Apple MPS, then CPU for torch; TensorRT, CUDA, DirectML, CoreML, then CPU for
ONNX Runtime. Nothing heavy is imported when this module is imported: torch is imported only by
:func:`choose` when a torch tool is about to run, onnxruntime only by :func:`ort_providers`.
GPU execution providers are requested only when ONNX Runtime lists them *and* a device exists,
so a machine without a GPU gets no error spam from ``onnxruntime-gpu``.

The user's choice comes from the settings (``device``) or the CLI (``--device``): ``auto``,
``cpu``, ``cuda``, ``cuda:N`` or ``mps``. The arithmetic comes the same way (``precision`` in the
settings, ``--precision`` or ``IMPLICIT_STUDIO_PRECISION``): ``auto`` (float16 on CUDA, float32
elsewhere), ``fp32``, ``fp16`` or ``bf16``. :func:`choose` checks it against the device: bf16 on a
GPU without bfloat16 arithmetic is refused with a message naming the GPU, fp16 on the CPU runs in
float32 with a note (torch's float16 is emulated on most CPUs: 36x slower than float32 for a
512x512 matrix product on the AVX-512 CPU where this was measured, bfloat16 2x faster).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform
import re
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

_log = logging.getLogger("implicit_studio.devices")

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: The arithmetic a user can ask for, and the torch dtype name each stands for.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float": "fp32"}

#: ONNX Runtime providers in order of preference.
ORT_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


class DeviceError(ValueError):
    """The requested device is malformed or not available; the message says what to do."""


@dataclass(frozen=True)
class DeviceChoice:
    """The outcome of :func:`choose`: a torch device string, the dtype name to compute in, the
    ONNX Runtime providers to ask for, and a human description for logs and the status bar."""

    device: str
    dtype: str
    ort_providers: tuple[str, ...]
    description: str
    #: What became of the precision asked for, when it is not what the run computes in (fp16
    #: asked for on the CPU): sentences for the run's log and the command line.
    notes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``"cuda"``, ``"mps"`` or ``"cpu"``."""
        return self.device.split(":")[0]


def parse_device(text: str | None) -> str:
    """Normalise a device name given by a user; raise :class:`DeviceError` if malformed."""
    value = (text or "auto").strip().lower()
    if value == "gpu":
        value = "cuda"
    if not _DEVICE_RE.match(value):
        raise DeviceError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    return value


def parse_precision(text: str | None) -> str:
    """Normalise a precision given by a user (``auto``, ``fp32``, ``fp16``, ``bf16``; the dtype
    names float32, float16 and bfloat16 too); raise :class:`DeviceError` if unknown."""
    value = (text or "auto").strip().lower()
    value = _PRECISION_ALIASES.get(value, value)
    if value not in PRECISIONS:
        raise DeviceError(f"unknown precision {text!r}; use auto, fp32, fp16 or bf16")
    return value


@functools.lru_cache(maxsize=1)
def cuda_device_count_driver() -> int:
    """Number of CUDA devices seen by the NVIDIA driver, without importing torch (0 when there
    is no driver)."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so", "libcuda.dylib"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except (AttributeError, OSError):
            return 0
    return 0


def _is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def accelerator_hint() -> str:
    """The accelerator kind present, found cheaply (no torch import): ``"cuda"``, ``"mps"`` or
    ``"cpu"``. Used to pick a job queue before torch is loaded."""
    if "torch" in sys.modules:
        return _torch_accelerator()
    if cuda_device_count_driver() > 0:
        return "cuda"
    if _is_apple_silicon():
        return "mps"
    return "cpu"


def _torch_accelerator() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def queue_name(preference: str | None, backends: Sequence[str]) -> str:
    """The job queue a tool run goes to: ``"cpu"`` for numpy-only tools, otherwise the device
    the preference resolves to (without importing torch)."""
    pref = parse_device(preference)
    if not any(b in ("torch", "onnx") for b in backends):
        return "cpu"
    if pref == "auto":
        return accelerator_hint()
    return pref.split(":")[0] if pref != "cuda" else "cuda"


def choose(preference: str | None = "auto", backends: Iterable[str] = ("torch",), dtype: str | None = None,
           precision: str | None = None) -> DeviceChoice:
    """Resolve a device preference for a run that uses ``backends``.

    ``auto`` takes CUDA, then MPS, then CPU (falling back to CPU with a logged note when, for
    example, a CPU-only torch build is installed on a GPU machine). An explicit device that is not
    available raises :class:`DeviceError`. Imports torch only if ``backends`` contains ``"torch"``.

    ``precision`` (:data:`PRECISIONS`) is the user's choice of arithmetic, checked against the
    device (:func:`resolve_dtype`). ``dtype`` (float32, float16 or bfloat16) is taken as given,
    unchecked: for benchmarks and tests that need one exact dtype.
    """
    pref = parse_device(preference)
    backends = tuple(backends)
    uses_torch = "torch" in backends
    if uses_torch:
        device = _choose_torch(pref)
    else:
        device = _choose_without_torch(pref)
    notes: tuple[str, ...] = ()
    if dtype is None:
        dtype, notes = resolve_dtype(device, precision, uses_torch)
    if dtype not in ("float32", "float16", "bfloat16"):
        raise DeviceError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16")
    providers = tuple(ort_providers(device)) if "onnx" in backends else ("CPUExecutionProvider",)
    desc = _describe(device, dtype, uses_torch)
    return DeviceChoice(device=device, dtype=dtype, ort_providers=providers, description=desc, notes=notes)


def resolve_dtype(device: str, precision: str | None = "auto", with_torch: bool = True) -> tuple[str, tuple[str, ...]]:
    """The dtype name a run on ``device`` computes in for ``precision``, and notes on the way.

    ``auto``: float16 on CUDA, float32 elsewhere. ``fp16`` on the CPU: float32, with a note saying
    so (torch emulates float16 on most CPUs, many times slower than float32). ``bf16`` on a CUDA
    GPU without bfloat16 arithmetic (before compute capability 8.0) or on an MPS device without it
    raises :class:`DeviceError`; on the CPU it is taken (AVX-512 and AMX CPUs compute it natively,
    others convert). With ``with_torch`` False (a run without torch) nothing is probed.
    """
    prec = parse_precision(precision)
    kind = device.split(":")[0]
    if prec == "auto":
        return ("float16" if kind == "cuda" else "float32"), ()
    if prec == "fp16" and kind == "cpu":
        return "float32", ("fp16 was asked for, but this run is on the CPU, where torch emulates float16 (many "
                           "times slower than float32 on most CPUs): it computes in float32. Use bf16 for reduced "
                           "precision on the CPU.",)
    if prec == "bf16" and with_torch and kind in ("cuda", "mps"):
        problem = _bf16_problem(device)
        if problem:
            raise DeviceError(f"bf16 was asked for, but {problem}; use --precision fp16 or fp32 (or the "
                              "Preferences' precision setting)")
    return PRECISION_DTYPES[prec], ()


def _bf16_problem(device: str) -> str:
    """Why ``device`` (cuda or mps) cannot compute in bfloat16, or "" if it can (imports torch)."""
    import torch

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        major, minor = torch.cuda.get_device_capability(index)
        if major >= 8:
            return ""
        return (f"{torch.cuda.get_device_name(index)} ({device}, compute capability {major}.{minor}) has no "
                "bfloat16 arithmetic (it needs compute capability 8.0, NVIDIA Ampere, or later)")
    try:
        torch.ones(2, dtype=torch.bfloat16, device=device).sum().item()
    except (RuntimeError, TypeError) as exc:
        return f"this {device.upper()} device has no bfloat16 support ({str(exc).splitlines()[0]})"
    return ""


def _choose_without_torch(pref: str) -> str:
    if pref == "auto":
        return accelerator_hint()
    kind = pref.split(":")[0]
    if kind == "cuda" and cuda_device_count_driver() == 0:
        raise DeviceError("CUDA was requested but no CUDA device was found; use --device cpu (or auto)")
    if kind == "mps" and not _is_apple_silicon():
        raise DeviceError("MPS was requested but this is not an Apple silicon Mac; use --device cpu (or auto)")
    return pref


def _choose_torch(pref: str) -> str:
    import torch

    cuda_ok = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps_backend is not None and mps_backend.is_available())
    if pref == "auto":
        if cuda_ok:
            return "cuda"
        if mps_ok:
            return "mps"
        if cuda_device_count_driver() > 0:
            _log.info("a CUDA device is present but this torch build has no CUDA support; using the CPU "
                      "(see the README to install a CUDA build of torch)")
        return "cpu"
    if pref == "cpu":
        return "cpu"
    if pref.startswith("cuda"):
        if not cuda_ok:
            raise DeviceError("CUDA was requested but torch sees no CUDA device (CPU-only torch build or no "
                              "GPU); use --device cpu or install a CUDA build of torch")
        index = int(pref.split(":")[1]) if ":" in pref else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"{pref} was requested but only {count} CUDA device(s) exist")
        return pref
    if pref == "mps":
        if not mps_ok:
            raise DeviceError("MPS was requested but it is not available; use --device cpu")
        return "mps"
    raise DeviceError(f"unknown device {pref!r}")


def _describe(device: str, dtype: str, with_torch: bool) -> str:
    if device.startswith("cuda") and with_torch:
        try:
            import torch

            index = int(device.split(":")[1]) if ":" in device else 0
            return f"{torch.cuda.get_device_name(index)} ({device}, {dtype})"
        except Exception:  # noqa: BLE001 - description only
            pass
    names = {"cpu": "CPU", "mps": "Apple GPU (MPS)"}
    return f"{names.get(device.split(':')[0], device)} ({device}, {dtype})"


def _tensorrt_present() -> bool:
    for name in ("nvinfer", "nvinfer_10", "nvinfer_8"):
        if ctypes.util.find_library(name):
            return True
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer.dll", "nvinfer_10.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def ort_providers(device: str = "auto", available: Sequence[str] | None = None) -> list[str]:
    """The ONNX Runtime providers to request for ``device``, best first, always ending with
    ``CPUExecutionProvider``. GPU providers are included only when ONNX Runtime offers them and
    a matching device is present. ``available`` defaults to ``onnxruntime.get_available_providers()``
    (imports onnxruntime; an empty list if it is not installed)."""
    device = parse_device(device)
    if available is None:
        try:
            import onnxruntime

            available = onnxruntime.get_available_providers()
        except Exception:  # noqa: BLE001 - no onnxruntime: CPU only
            available = []
    available = list(available)
    kind = device.split(":")[0]
    if kind == "auto":
        kind = accelerator_hint()
    chosen: list[str] = []
    if kind == "cuda" and cuda_device_count_driver() > 0:
        if "TensorrtExecutionProvider" in available and _tensorrt_present():
            chosen.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
    if kind != "cpu" and sys.platform == "win32" and "DmlExecutionProvider" in available:
        chosen.append("DmlExecutionProvider")
    if kind in ("mps",) and sys.platform == "darwin" and "CoreMLExecutionProvider" in available:
        chosen.append("CoreMLExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def summary(preference: str | None = "auto", precision: str | None = "auto") -> list[str]:
    """Human lines describing what is present (for ``implicit-studio devices``); imports torch
    and onnxruntime."""
    lines = []
    try:
        import torch

        lines.append(f"torch {torch.__version__}: cuda={'yes' if torch.cuda.is_available() else 'no'}"
                     f" ({torch.cuda.device_count()} device(s)), "
                     f"mps={'yes' if getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available() else 'no'}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"torch: not usable ({exc})")
    try:
        import onnxruntime

        lines.append(f"onnxruntime {onnxruntime.__version__}: available providers "
                     f"{', '.join(onnxruntime.get_available_providers())}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"onnxruntime: not usable ({exc})")
    lines.append(f"NVIDIA driver devices: {cuda_device_count_driver()}")
    choice = choose(preference, ("torch", "onnx"), precision=precision)
    lines.append(f"chosen: {choice.description}; ONNX providers: {', '.join(choice.ort_providers)}")
    lines += [f"note: {note}" for note in choice.notes]
    return lines
