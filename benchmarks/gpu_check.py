"""The GPU check: one process that runs the studio's CUDA paths and compares each with the CPU (issue 31).

    python benchmarks/gpu_check.py OUT_DIR [--smoke] [--budget S] [--check-budget S] [--only TEXT]
    bash benchmarks/gpu_check.sh OUT_DIR       (a bare lent GPU machine: installs, then runs this)

It goes through the product's own code paths: the plugin manager and the job runner run each tool
as the window and the CLI do (``JobRunner.prepare``/``run_job``, with the precision a check asks
for: ``--precision fp32|fp16|bf16``); where the runner cannot give what a check needs (float16 on the
CPU, which the runner computes in float32, or a single ONNX Runtime provider) the tool's own run
function gets a ``RunContext`` built as the runner builds it. What it covers:

- device discovery as ``implicit-studio devices`` prints it, and ``devices.choose`` on CUDA;
- text-to-image with the bundled model and a tiny random SD 1.x and SDXL model built on the spot
  (``plugins/diffusion_common/tiny.py``), in float32, float16 and bfloat16 on torch CUDA, and on ONNX
  Runtime's CUDA and TensorRT providers where the installed build has them, each compared with the
  CPU float32 image of the same seed within a stated tolerance (:data:`TOLERANCES`); model CPU offload,
  attention slicing and VAE tiling on CUDA;
- h-Edit and inpainting on CUDA against the CPU;
- the INR image fit (float32 and the runner's default, float16 mixed precision, on CUDA), the SDF fit
  and the SDF bake on CUDA against the CPU;
- an RL training burst, and the default-model trainer's steps/s (its ``device`` option, on CUDA in
  its recipe's arithmetic: bfloat16 autocast on a GPU that has it);
- CUDA memory peaks (``torch.cuda.max_memory_allocated``) of every CUDA check, and speed figures
  (images/s at 512x512 with the tiny SDXL model, steps/s of the trainer, each beside the CPU's).

Every CUDA check also asks whether the work really went to the GPU (CUDA memory was allocated while it
ran): a tool that takes ``device="cuda"`` and computes on the CPU fails its check.

It writes ``report.json`` and ``report.md`` into OUT_DIR after every check (so a run that is killed
still leaves what it did) and ``gpu_check.log``. A check that raises is reported as failed with its
error, and the next one runs. Exit status: 0 when nothing failed, 1 when a check failed (stderr names
each), 2 for bad arguments, 3 when the watchdog ended a run that outlived its global budget.

On a machine without CUDA the CPU half runs and every CUDA check is reported "skipped: no CUDA".
``--smoke`` runs every kind of check small and fast (the CI test, tests/app/test_gpu_check.py).
``--rehearse-on-cpu`` runs the CUDA checks' own code with the CPU as their device, so that a mistake in
this script shows before a GPU session pays for it (its report says REHEARSAL; it proves nothing about
CUDA). ``--test-force-mismatch NAME`` and ``--test-force-error NAME`` (for that test only) perturb one check's
comparison and set its tolerance to zero, or make the check raise, which must fail it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCHEMA = "implicit-studio-gpu-check-1"
STATUSES = ("passed", "failed", "skipped")
NO_CUDA = "no CUDA"
PROMPT = "a red circle in the top left on a blue background"
EDIT_PROMPT = "a green circle in the top left on a blue background"
FAR_LEVELS = 8  # a pixel "far off" differs by more than this many 8-bit levels in some channel

_log = logging.getLogger("implicit_studio.gpu_check")


# ---------------------------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """Limits of an image comparison: ``mad``, the mean absolute difference in 8-bit levels over
    all pixels and channels; ``far``, the largest share of pixels off by more than FAR_LEVELS levels
    in some channel. Rounding moves many pixels a little (MAD), a fault moves some pixels a lot (far)."""

    mad: float
    far: float
    why: str


#: What a real fault does to these images, measured on the CPU (10 steps, 64x64, float32; bundled model /
#: tiny SD / tiny SDXL): guidance off moves them by 1.9 / 5.2 / 3.0 levels on average with 8% / 44% / 15%
#: of the pixels off by more than 8 levels; another seed (other noise) by 0.6 / 50 / 37 levels; another
#: prompt by 133 / 5.5 / 1.0; one step fewer by 0.13 / 1.4 / 1.0. Rounding alone, on the same CPU:
#: bfloat16 against float32 0.23 / 0.47 / 0.52 levels (no pixel off by more than 6), float16 0.03 / 0.06
#: / 0.04 (none by more than 1), ONNX Runtime against torch 0 / 0. The limits below sit between the two.
FAULT_SCALE = ("guidance off: MAD 1.9-5.2 levels, 8-44% of pixels off by >8; another seed: MAD 0.6-50; "
               "another prompt: MAD 1.0-133; one step fewer: MAD 0.13-1.4 (bundled, tiny SD, tiny SDXL; CPU)")

#: Image tolerances against the CPU float32 image of the same seed.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(0.5, 0.002, (
        "The same float32 arithmetic up to summation order, cuDNN's TF32 convolutions (10-bit mantissa, on by "
        "default in torch on Ampere and later: float16-class rounding in the convolutions) and ONNX Runtime's "
        "fused kernels. On the CPU, float16 against float32 moves these images by at most 0.06 levels (no pixel "
        "by more than 1) and ONNX Runtime against torch by 0, so 0.5 levels and 0.2% of the pixels (8 of "
        "4,096) leave room for TF32 while guidance off (1.9-5.2 levels, 8-44% far) and a step fewer on the "
        "tiny models (1.0-1.4) do not fit.")),
    "fp16": Tolerance(1.0, 0.005, (
        "float16 keeps an 11-bit mantissa (relative rounding 5e-4 per operation); on the CPU it moves these "
        "images by 0.03-0.06 levels (no pixel by more than 1). CUDA's float16 kernels (flash or memory-efficient "
        "attention, cuBLAS with float32 accumulation) round in other places, so the limit is 15x the CPU "
        "figure, still under guidance off (1.9-5.2 levels, 8-44% far).")),
    "bf16": Tolerance(2.0, 0.02, (
        "bfloat16 keeps an 8-bit mantissa (relative rounding 4e-3 per operation, 8x float16's); on the CPU "
        "it moves these images by 0.23-0.52 levels, no pixel by more than 6 (the cpu-bf16 rows). The limit is "
        "4x that on average and 2% of the pixels off by more than 8 levels, under guidance off's 8-44%.")),
    "edit-fp16": Tolerance(3.0, 0.05, (
        "h-Edit and inpainting add an inversion, guidance terms and gradient steps to sampling, which carry "
        "rounding further: on the CPU bfloat16 against float32 moves their images by 1.06 (h-Edit) and 0.56 "
        "(inpainting) levels on average, with 0.5% and 2.4% of the pixels off by more than 8 (the cpu-bf16 "
        "rows of these groups, 6 steps; float16 rounds 8x finer). The edits themselves move the picture by "
        "5.5-12.7 levels, so the limit is 3 levels and 5% of the pixels.")),
}

#: Other tolerances (numbers, not images), with why.
PSNR_DB = 1.0
PSNR_WHY = ("INR image fit: the same initial weights (seed), the whole image every step, float32; only the "
            "summation order differs between devices, which moves the PSNR after a few hundred Adam steps by "
            "hundredths of a dB. A fit that does not train or trains on other data loses many dB.")
PSNR_FP16_DB = 9.0
PSNR_FP16_WHY = ("INR image fit in the runner's default arithmetic on CUDA, float16 mixed precision (autocast, "
                 "float32 weights, a gradient scaler), against the CPU's float32 fit: float16 products cap the "
                 "PSNR a SIREN reaches. On the CPU (float16 autocast, emulated) this fit ends 4.4 dB under float32 "
                 "at 200 steps of 32x32 (56.9 against 61.3 dB) and 0.2 dB over it at the smoke fit's 30 steps of "
                 "16x16; the limit is twice the larger gap. A fit that does not train stays near its first step's "
                 "8.6 dB, 17-53 dB under the CPU's.")
CHAMFER_REL, CHAMFER_ABS = 0.25, 1e-3
CHAMFER_WHY = ("SDF fit: the same seed, sample points and initial weights; the Chamfer distance of the meshes "
               "is itself a seeded sample of 20,000 points, so devices agree to within a quarter of the CPU's "
               "distance plus 0.001 (the bounds are 2 units wide); a failed fit is 5-50x the CPU's.")
GRID_ABS = 1e-3
GRID_WHY = ("SDF bake of one set of weights on both devices: float32 linear layers (torch's CUDA matmul does "
            "not use TF32 unless asked), so the SDF values agree to about 1e-6; 1e-3 is 1/30 of a grid "
            "cell at 64^3 in a 2-unit box, far under anything visible in the mesh.")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


@dataclass
class CheckRecord:
    name: str
    group: str
    device: str  # "cpu" or "cuda"
    status: str = "skipped"
    reason: str = ""
    seconds: float = 0.0
    error: Optional[str] = None
    tolerance: Optional[str] = None
    cuda_peak_mb: Optional[float] = None
    detail: dict = field(default_factory=dict)


class Report:
    """The checks and figures of one run, written as JSON and Markdown after every change."""

    def __init__(self, out: Path, mode: str, budget_s: float, check_budget_s: float):
        self.out = out
        self.mode = mode
        self.budget_s = budget_s
        self.check_budget_s = check_budget_s
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.t0 = time.monotonic()
        self.environment: dict = {}
        self.checks: list[CheckRecord] = []
        self.figures: list[dict] = []
        self.finished = False
        self._lock = threading.Lock()

    def figure(self, name: str, value: float, unit: str, device: str, note: str = "") -> None:
        if device == "cuda" and "REHEARSAL" in self.mode:
            device = "cpu (rehearsal of the cuda row)"
        self.figures.append({"name": name, "value": round(float(value), 4), "unit": unit, "device": device,
                             "note": note})

    def summary(self) -> dict:
        counts = {s: sum(c.status == s for c in self.checks) for s in STATUSES}
        return {**counts, "failed_checks": [c.name for c in self.checks if c.status == "failed"]}

    def as_json(self) -> dict:
        return {
            "schema": SCHEMA, "mode": self.mode, "started": self.started,
            "seconds": round(time.monotonic() - self.t0, 2), "finished": self.finished,
            "budget_s": self.budget_s, "check_budget_s": self.check_budget_s,
            "environment": self.environment,
            "fault_scale": FAULT_SCALE, "far_levels": FAR_LEVELS,
            "tolerances": {**{k: asdict(v) for k, v in TOLERANCES.items()},
                           "psnr_db": {"limit": PSNR_DB, "why": PSNR_WHY},
                           "psnr_fp16_db": {"limit": PSNR_FP16_DB, "why": PSNR_FP16_WHY},
                           "chamfer": {"relative": CHAMFER_REL, "absolute": CHAMFER_ABS, "why": CHAMFER_WHY},
                           "sdf_grid": {"limit": GRID_ABS, "why": GRID_WHY}},
            "summary": self.summary(),
            "checks": [asdict(c) for c in self.checks],
            "figures": self.figures,
        }

    def write(self) -> None:
        with self._lock:
            self.out.mkdir(parents=True, exist_ok=True)
            data = self.as_json()
            _write_atomic(self.out / "report.json", json.dumps(data, indent=2, default=_json_default) + "\n")
            _write_atomic(self.out / "report.md", render_markdown(data))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt_detail(c: dict) -> str:
    d = c.get("detail") or {}
    keys = ("mad", "far", "std", "changed_from_input", "untiled_mad", "psnr_db", "psnr_delta_db", "chamfer", "chamfer_delta", "grid_max_abs", "images_per_s",
            "steps_per_s", "env_steps_per_s", "providers", "note")
    parts = []
    for k in keys:
        if k in d:
            v = d[k]
            parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "; ".join(parts)


def render_markdown(data: dict) -> str:
    """The report as Markdown: what ran where, each check, the figures and the tolerances."""
    env = data["environment"]
    s = data["summary"]
    lines = [
        f"# GPU check ({data['mode']} mode)",
        "",
        f"Started {data['started']}, {data['seconds']:.1f} s in all"
        + ("" if data["finished"] else " (NOT FINISHED: the run stopped before its last check)")
        + "; " + (f"budget {data['budget_s']:.0f} s in all" if data["budget_s"] else "no global budget") + ", "
        + (f"{data['check_budget_s']:.0f} s per check. " if data["check_budget_s"] else "no per-check budget. ")
        + f"**{s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped.**",
        "",
    ]
    if s["failed_checks"]:
        lines += ["Failed: " + ", ".join(f"`{n}`" for n in s["failed_checks"]), ""]
    lines += ["## Machine", ""]
    for k, v in env.items():
        if isinstance(v, list):
            v = "; ".join(map(str, v))
        lines.append(f"- {k}: {v}")
    lines += ["", "## Checks", "",
              "| check | device | status | seconds | CUDA peak MB | tolerance | measured |",
              "|---|---|---|---:|---:|---|---|"]
    for c in data["checks"]:
        status = c["status"] + (f": {c['reason']}" if c["reason"] else "")
        peak = "" if c["cuda_peak_mb"] is None else f"{c['cuda_peak_mb']:.1f}"
        lines.append(f"| `{c['name']}` | {c['device']} | {status} | {c['seconds']:.2f} | {peak} | "
                     f"{c['tolerance'] or ''} | {_fmt_detail(c)} |")
    errors = [c for c in data["checks"] if c["error"]]
    if errors:
        lines += ["", "## Errors", ""]
        for c in errors:
            lines += [f"### `{c['name']}`", "", "```", c["error"].rstrip(), "```", ""]
    if data["figures"]:
        lines += ["", "## Figures", "", "| figure | value | unit | device | note |", "|---|---:|---|---|---|"]
        for f in data["figures"]:
            lines.append(f"| {f['name']} | {f['value']:.4g} | {f['unit']} | {f['device']} | {f['note']} |")
    lines += ["", "## Tolerances", "",
              f"Images are compared with the CPU float32 image of the same seed: mad is the mean absolute "
              f"difference in 8-bit levels, far the share of pixels off by more than {data['far_levels']} levels. "
              f"The scale of a real fault, measured on the CPU: {data['fault_scale']}.", ""]
    for name, t in data["tolerances"].items():
        limits = ", ".join(f"{k} {v}" for k, v in t.items() if k != "why")
        lines.append(f"- **{name}** ({limits}): {t['why']}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------


class Mismatch(AssertionError):
    """A comparison outside its tolerance (the check fails with this message)."""


def image_difference(ref, img) -> dict:
    """Mean absolute difference (8-bit levels) and the share of pixels off by more than FAR_LEVELS."""
    import numpy as np

    a = np.asarray(ref, dtype=np.float32)
    b = np.asarray(img, dtype=np.float32)
    if a.shape != b.shape:
        raise Mismatch(f"image shapes differ: {b.shape} against the reference's {a.shape}")
    diff = np.abs(a - b)
    per_pixel = diff.max(axis=-1) if diff.ndim == 3 else diff
    return {"mad": float(diff.mean()), "far": float((per_pixel > FAR_LEVELS).mean()),
            "max": float(diff.max())}


def informative(img, what: str) -> None:
    """Raise when an image is flat (a black, white or single-colour image compares as equal to
    another flat one and proves nothing)."""
    import numpy as np

    std = float(np.asarray(img, dtype=np.float32).std())
    if not math.isfinite(std) or std < 2.0:
        raise Mismatch(f"{what} is flat (standard deviation {std:.2f} levels): a broken result, or nothing "
                       "to compare")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class Skip(Exception):
    """A check that cannot run here (its message says why)."""


class OverBudget(Exception):
    """A check cancelled at its time budget."""


def default_model_trainer():
    """The default model's training module (``lab.default_model.train``)."""
    return importlib.import_module("lab.default_model.train")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return f"not usable ({type(exc).__name__}: {exc})"


class CudaWatch:
    """Peak CUDA memory over a block, and whether the block allocated any (the proof that the work
    went to the GPU). A no-op without CUDA."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = 0
        self.peak = 0

    def __enter__(self) -> "CudaWatch":
        if self.enabled:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()

    def current_peak(self) -> int:
        import torch

        return torch.cuda.max_memory_allocated()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def used(self) -> bool:
        return self.peak > self.start


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------


class GpuCheck:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.smoke = bool(args.smoke)
        self.out = Path(args.out)
        mode = ("smoke" if self.smoke else "full") + (" REHEARSAL: the CUDA checks ran on the CPU" if args.rehearse_on_cpu
                                                       else "")
        self.report = Report(self.out, mode, args.budget, args.check_budget)
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.refs: dict[str, Any] = {}
        self.cuda = False
        self.rehearse = bool(args.rehearse_on_cpu)
        self.gpu = "cpu" if self.rehearse else "cuda"  # where the CUDA checks' work goes
        self.manager = None
        self.runner = None
        self.current: Optional[CheckRecord] = None
        self.steps = 3 if self.smoke else 10
        self.edit_steps = 2 if self.smoke else 6

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self) -> None:
        for key in ("CONFIG", "DATA", "CACHE", "LOG"):  # the studio's folders: inside the work folder
            os.environ[f"IMPLICIT_STUDIO_{key}_DIR"] = str(self.work / key.lower())
        for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("DIFFUSERS_VERBOSITY", "error"),
                           ("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
            os.environ.setdefault(key, value)
        import torch

        try:  # loading bars and advice from the libraries would bury the check's own lines
            import diffusers.utils.logging as dlog
            import transformers.utils.logging as tlog

            dlog.disable_progress_bar()
            tlog.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetic; the checks report a missing library themselves
            pass

        from app.jobs import JobRunner
        from app.plugins import PluginManager
        from app.settings import Settings

        self.torch_threads = torch.get_num_threads()
        self.cuda = bool(torch.cuda.is_available())
        self.manager = PluginManager(Settings()).load()
        self.plugins_source = "entry points (the installed studio)"
        if "text-to-image" not in self.manager.tools:
            self.register_builtins()
        bad = {r.name: r.error for r in self.manager.records.values() if r.status in ("failed", "incompatible")}
        if bad:
            _log.warning("plugins that did not load: %s", bad)
        self.runner = JobRunner(self.manager, None, device="cpu")
        self.report.environment = self.environment()
        self.report.write()

    def register_builtins(self) -> None:
        """Register the built-in plugins named in pyproject.toml's entry-point table when the studio is
        not installed here (no entry points found), so that the check still runs from a bare checkout."""
        import tomllib

        table = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        eps = table["project"]["entry-points"]["implicit_studio.plugins"]
        for name, module in eps.items():
            if name not in self.manager.records or not self.manager.records[name].ok:
                self.manager.register_plugin(importlib.import_module(module), name, builtin=True)
        self.plugins_source = "registered from pyproject.toml (the studio is not installed here)"

    def environment(self) -> dict:
        import torch

        env = {
            "python": sys.version.split()[0], "platform": platform.platform(), "cpu_cores": os.cpu_count(),
            "torch": torch.__version__, "torch_cuda": str(torch.version.cuda),
            "cuda_available": self.cuda, "diffusers": _version("diffusers"), "transformers": _version("transformers"),
            "onnxruntime": _version("onnxruntime"), "git_commit": _git_commit(),
            "torch_threads": torch.get_num_threads(), "plugins": self.plugins_source,
        }
        try:
            import onnxruntime

            env["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
        except Exception:  # noqa: BLE001
            env["onnxruntime_providers"] = []
        if self.cuda:
            props = torch.cuda.get_device_properties(0)
            env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                       compute_capability=f"{props.major}.{props.minor}",
                       cudnn=str(torch.backends.cudnn.version()),
                       tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
                       tf32_cudnn=bool(torch.backends.cudnn.allow_tf32))
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=20)
                env["driver"] = smi.stdout.strip() or "unknown"
            except (OSError, subprocess.SubprocessError):
                env["driver"] = "unknown (no nvidia-smi)"
        return env

    # -- running checks ----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.report.t0

    def wanted(self, name: str) -> bool:
        return not self.args.only or any(part in name for part in self.args.only)

    def check(self, name: str, device: str, fn: Callable[[CheckRecord, CudaWatch], None],
              needs: tuple[str, ...] = (), tolerance: Optional[str] = None) -> Optional[CheckRecord]:
        """Run one check: skipped without CUDA (CUDA checks), when a check it needs did not pass, or
        when the global budget is spent; failed with its error when it raises."""
        if not self.wanted(name):
            return None
        rec = CheckRecord(name=name, group=name.split("/")[0], device=device, tolerance=tolerance)
        self.report.checks.append(rec)
        self.current = rec
        missing = [n for n in needs if n not in self.refs]
        watch = CudaWatch(device == "cuda" and self.cuda and not self.rehearse)
        t0 = time.monotonic()
        try:
            if device == "cuda" and not self.cuda and not self.rehearse:
                raise Skip(NO_CUDA)
            if missing:
                raise Skip("needs " + ", ".join(missing) + ", which did not pass")
            if self.report.budget_s and self.elapsed() > self.report.budget_s:
                raise Skip(f"the global budget of {self.report.budget_s:.0f} s was spent")
            with watch:
                if self.args.test_force_error == name:
                    raise RuntimeError("forced error (test option)")
                fn(rec, watch)
            if watch.enabled:
                rec.detail.setdefault("cuda_used", watch.used)
                if not watch.used and not rec.detail.get("cuda_not_required"):
                    raise Mismatch("it allocated no CUDA memory: the work ran on the CPU")
            rec.status = "passed"
            self.refs.setdefault(name, True)  # later checks may need this one
        except Skip as exc:
            rec.status, rec.reason = "skipped", str(exc)
        except OverBudget as exc:
            rec.status, rec.reason, rec.error = "failed", "over its time budget", str(exc)
        except Mismatch as exc:
            rec.status, rec.reason, rec.error = "failed", "mismatch", str(exc)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a check that raises is a failed check; go on
            original = getattr(exc, "original", exc)
            rec.status, rec.reason = "failed", "error"
            rec.error = f"{type(original).__name__}: {original}\n" + "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)[-12:])
        finally:
            rec.seconds = round(time.monotonic() - t0, 3)
            if watch.enabled and watch.peak:
                rec.cuda_peak_mb = round(watch.peak_mb, 1)
            self._restore_threads()
            self.current = None
            self.report.write()
        mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[rec.status]
        print(f"[{self.elapsed():6.1f}s] {mark} {name} ({rec.seconds:.1f} s)"
              + (f": {rec.reason}" if rec.reason else ""), flush=True)
        if rec.status == "failed" and rec.error:
            _log.error("%s failed: %s", name, rec.error)
        return rec

    def _restore_threads(self) -> None:
        import torch

        if torch.get_num_threads() != self.torch_threads:  # a trainer sets its own thread count
            torch.set_num_threads(self.torch_threads)

    def calibration(self, fn: Callable) -> Callable:
        """A CPU row that only shows how far rounding moves a result (slow on a CPU: float16 kernels, or
        an edit in bfloat16): run where there is no CUDA, skipped on a GPU machine to save its time."""
        def wrapped(rec: CheckRecord, watch: CudaWatch) -> None:
            if self.cuda and not self.rehearse:
                raise Skip("a CPU calibration row: it runs on machines without CUDA (benchmarks/gpu_check_example)")
            fn(rec, watch)
        return wrapped

    def forced(self, rec: CheckRecord) -> bool:
        return self.args.test_force_mismatch == rec.name

    def judge_images(self, rec: CheckRecord, ref, img, tol_name: str) -> None:
        """Compare an image with its reference within TOLERANCES[tol_name]; record the numbers."""
        import numpy as np

        tol = TOLERANCES[tol_name]
        informative(img, "the image")
        if self.forced(rec):  # test option: flip the lowest bit of every value and allow nothing
            img = np.asarray(img) ^ 1
            tol = Tolerance(0.0, 0.0, "forced mismatch (test option)")
            rec.detail["note"] = "forced mismatch (test option)"
        d = image_difference(ref, img)
        rec.detail.update({k: round(v, 4) for k, v in d.items()})
        rec.detail["limits"] = {"mad": tol.mad, "far": tol.far}
        rec.tolerance = tol_name
        if d["mad"] > tol.mad or d["far"] > tol.far:
            raise Mismatch(f"mean difference {d['mad']:.3f} levels (limit {tol.mad}), {100 * d['far']:.2f}% of "
                           f"pixels off by more than {FAR_LEVELS} levels (limit {100 * tol.far:.2f}%)")

    def judge_value(self, rec: CheckRecord, what: str, delta: float, limit: float) -> None:
        if self.forced(rec):
            delta, limit = abs(delta) + 1e-6, 0.0
            rec.detail["note"] = "forced mismatch (test option)"
        rec.detail[f"{what}_limit"] = limit
        if not math.isfinite(delta) or abs(delta) > limit:
            raise Mismatch(f"{what} differs by {delta:.6g} (limit {limit:.6g})")

    # -- running tools through the studio --------------------------------------------------------
    def run_tool(self, tool_id: str, params: dict, device: str, dtype: Optional[str] = None,
                 providers: Optional[tuple[str, ...]] = None, listener: Optional[Callable] = None) -> list:
        """Run a tool as the studio does and return its results. Through the job runner, asked for the
        precision of ``dtype`` (None: the runner's default, ``auto``), when the runner gives that dtype and
        its own ONNX providers are wanted; otherwise (float16 on the CPU, one provider) the tool's run
        function with a RunContext built the way the runner builds it, with that dtype or those providers."""
        from app import api, devices
        from app.jobs import JobState

        tool = self.manager.tool(tool_id)
        if device.startswith("cuda") and self.rehearse:
            device = self.gpu
        budget = float(self.args.check_budget or 0) or None
        precision = devices.parse_precision(dtype) if dtype else "auto"
        choice = devices.choose(device, tool.backends, precision=precision)
        if (dtype is None or dtype == choice.dtype) and providers is None:
            job = self.runner.prepare(tool, params, device, precision=precision)
            timer = threading.Timer(budget, self.runner.cancel, (job.id,)) if budget else None
            if listener is not None:
                self.runner.add_listener(listener)
            try:
                if timer:
                    timer.start()
                self.runner.run_job(job)
            finally:
                if timer:
                    timer.cancel()
                if listener is not None:
                    self.runner.remove_listener(listener)
            if self.current is not None:
                self.current.detail.update(path="job runner", run_device=job.device, run_dtype=job.dtype,
                                           run_precision=precision)
            if job.state is JobState.CANCELLED:
                raise OverBudget(f"{tool_id} was cancelled at the check budget of {budget:.0f} s")
            if job.state is not JobState.FINISHED:
                raise RuntimeError(f"{tool_id} {job.state.value}: {job.error}\n{job.traceback or ''}")
            return job.results
        values = tool.validate(dict(params))
        for p in tool.params:
            if isinstance(p, api.ImageParam) and values.get(p.name) is not None:
                values[p.name] = self.runner.load_input(values[p.name], "mask" if isinstance(p, api.MaskParam)
                                                        else "image")
        choice = devices.choose(device, tool.backends, dtype=dtype)
        seed = next((values[p.name] for p in tool.params if isinstance(p, api.SeedParam)), 0)
        cancel = threading.Event()
        ctx = api.RunContext(device=choice.device, dtype=choice.dtype, seed=seed,
                             ort_providers=providers or choice.ort_providers, tool_id=tool.id, cancel_event=cancel)
        if self.current is not None:
            self.current.detail.update(path="run function", run_device=choice.device, run_dtype=choice.dtype)
        timer = threading.Timer(budget, cancel.set) if budget else None
        try:
            if timer:
                timer.start()
            out = self.manager.guarded(tool.plugin, f"tool {tool.id!r}", self.manager.run_function(tool), ctx,
                                       **values)
        except Exception as exc:  # noqa: BLE001
            if isinstance(getattr(exc, "original", exc), api.Cancelled) and cancel.is_set():
                raise OverBudget(f"{tool_id} was cancelled at the check budget of {budget:.0f} s") from None
            raise
        finally:
            if timer:
                timer.cancel()
        return list(out) if isinstance(out, (list, tuple)) else [out]

    @staticmethod
    def first_image(results: list):
        from app import api

        for r in results:
            if isinstance(r, api.ImageResult):
                return r.image, r.metadata
        raise RuntimeError("the tool returned no image")

    @staticmethod
    def table(results: list, label: str) -> dict:
        from app import api

        for r in results:
            if isinstance(r, api.TableResult) and r.label == label:
                return {str(row[0]): row[1] for row in r.rows}
        raise RuntimeError(f"the tool returned no {label!r} table")

    # -- devices ---------------------------------------------------------------------------------
    def check_devices(self) -> None:
        def cli(rec: CheckRecord, _w: CudaWatch) -> None:
            from app.cli import main as cli_main

            buf, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
                code = cli_main(["devices"])
            lines = buf.getvalue().splitlines()
            rec.detail["lines"] = lines
            if code != 0:
                raise Mismatch(f"'implicit-studio devices' exited {code}: {err.getvalue().strip()}")
            chosen = next((ln for ln in lines if ln.startswith("chosen:")), None)
            if chosen is None:
                raise Mismatch("'implicit-studio devices' printed no 'chosen:' line")
            wants = "cuda" if self.cuda else "cpu"
            if f"({wants}" not in chosen:
                raise Mismatch(f"torch says CUDA is {'available' if self.cuda else 'not available'}, but the "
                               f"studio chose: {chosen}")

        def cuda(rec: CheckRecord, _w: CudaWatch) -> None:
            import torch

            from app import devices

            if self.rehearse:
                raise Skip("a rehearsal on the CPU")
            choice = devices.choose("cuda", ("torch", "onnx"))
            rec.detail.update(device=choice.device, dtype=choice.dtype, providers=list(choice.ort_providers),
                              description=choice.description, driver_devices=devices.cuda_device_count_driver(),
                              torch_devices=torch.cuda.device_count(),
                              queue=devices.queue_name("auto", ("torch",)))
            rec.detail["cuda_not_required"] = True
            if choice.kind != "cuda" or choice.dtype != "float16":
                raise Mismatch(f"devices.choose('cuda') gave {choice.device} {choice.dtype}")
            if rec.detail["driver_devices"] != rec.detail["torch_devices"]:
                raise Mismatch(f"the driver reports {rec.detail['driver_devices']} device(s), torch "
                               f"{rec.detail['torch_devices']}")
            if rec.detail["queue"] != "cuda":
                raise Mismatch(f"a torch tool would queue on {rec.detail['queue']!r}, not 'cuda'")

        self.check("devices/cli", "cpu", cli)
        self.check("devices/cuda-choice", "cuda", cuda)

    # -- text-to-image ---------------------------------------------------------------------------
    def build_models(self) -> dict[str, str]:
        models = {"default": "default"}

        def build(kind: str) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                from plugins.diffusion_common import tiny

                folder = self.work / f"tiny-{kind}"
                if kind == "sd":
                    tiny.build_tiny_pipeline(folder, seed=0)
                else:
                    tiny.build_tiny_sdxl_pipeline(folder, seed=0)
                models[f"tiny-{kind}"] = str(folder)
                self.refs[f"model/tiny-{kind}"] = str(folder)
            return fn

        self.check("t2i/build-tiny-sd", "cpu", build("sd"))
        self.check("t2i/build-tiny-sdxl", "cpu", build("sdxl"))
        return models

    def t2i_params(self, model: str, **extra: Any) -> dict:
        return {"prompt": PROMPT, "seed": 1, "steps": self.steps, "model": model, "record_trajectory": False,
                **extra}

    def check_text_to_image(self, key: str, model: str) -> None:
        sd = key != "tiny-sdxl"
        ref_name = f"t2i/{key}/cpu-fp32"

        def reference(rec: CheckRecord, _w: CudaWatch) -> None:
            img, meta = self.first_image(self.run_tool("text-to-image", self.t2i_params(model), "cpu", "float32"))
            informative(img, "the CPU reference image")
            rec.detail.update(shape=list(img.shape), std=round(float(img.std()), 2), model_arch=meta.get("model_arch"))
            self.refs[ref_name] = img

        def against_ref(device: str, dtype: str, tol: str, backend: str = "torch",
                        providers: Optional[tuple[str, ...]] = None) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                if providers:
                    import onnxruntime

                    missing = [p for p in providers if p != "CPUExecutionProvider"
                               and p not in onnxruntime.get_available_providers()]
                    if missing:
                        raise Skip(f"onnxruntime {onnxruntime.__version__} has no {', '.join(missing)}")
                if backend == "onnx" and device != "cpu":
                    # ONNX Runtime allocates through its own arena, which torch's counters do not see:
                    # the session's providers say where it ran
                    rec.detail["cuda_not_required"] = True
                params = self.t2i_params(model, backend=backend)
                img, meta = self.first_image(self.run_tool("text-to-image", params, device, dtype, providers))
                rec.detail["ran_on"] = meta.get("device")
                if providers:
                    rec.detail["providers"] = str(meta.get("device"))
                    if providers[0] not in str(meta.get("device")):
                        raise Mismatch(f"ONNX Runtime ran on {meta.get('device')}, not {providers[0]}")
                self.judge_images(rec, self.refs[ref_name], img, tol)
            return fn

        self.check(ref_name, "cpu", reference, needs=(f"model/{key}",) if key != "default" else ())
        need = (ref_name,)
        if not self.smoke or key == "tiny-sd":
            self.check(f"t2i/{key}/cpu-bf16", "cpu", against_ref("cpu", "bfloat16", "bf16"), need, "bf16")
        if not self.smoke:
            self.check(f"t2i/{key}/cpu-fp16", "cpu", self.calibration(against_ref("cpu", "float16", "fp16")), need,
                       "fp16")
        if sd and (not self.smoke or key == "tiny-sd"):
            self.check(f"t2i/{key}/cpu-onnx", "cpu", against_ref("cpu", None, "fp32", "onnx"), need, "fp32")
        for dtype, tol in (("float32", "fp32"), ("float16", "fp16"), ("bfloat16", "bf16")):
            self.check(f"t2i/{key}/cuda-{tol}", "cuda", against_ref("cuda", dtype, tol), need, tol)
        if sd:
            self.check(f"t2i/{key}/cuda-onnx-cuda", "cuda",
                       against_ref("cuda", None, "fp32", "onnx", ("CUDAExecutionProvider", "CPUExecutionProvider")),
                       need, "fp32")
            self.check(f"t2i/{key}/cuda-onnx-tensorrt", "cuda",
                       against_ref("cuda", None, "fp32", "onnx", ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                                  "CPUExecutionProvider")), need, "fp32")

    def check_memory_options(self) -> None:
        """Model CPU offload and attention slicing on the bundled model, VAE tiling on the tiny SD
        model at 256x256 (its VAE tiles at 64 pixels): each on CUDA float16 against the CPU."""
        size = 128 if self.smoke else 256
        tiled_ref = f"t2i/tiny-sd/cpu-vae-tiling-{size}"

        def cpu_tiling(rec: CheckRecord, _w: CudaWatch) -> None:
            model = self.refs["model/tiny-sd"]
            plain, _ = self.first_image(self.run_tool("text-to-image", self.t2i_params(
                model, width=size, height=size), "cpu", "float32"))
            tiled, _ = self.first_image(self.run_tool("text-to-image", self.t2i_params(
                model, width=size, height=size, vae_tiling=True), "cpu", "float32"))
            informative(tiled, "the tiled image")
            d = image_difference(plain, tiled)
            rec.detail.update({f"untiled_{k}": round(v, 4) for k, v in d.items()})
            # Tiles are decoded apart (group norms see one tile) and blended, so the tiled image must
            # differ from the untiled one: equal images mean the option did nothing.
            if d["mad"] < 0.1:
                raise Mismatch(f"VAE tiling changed nothing at {size}x{size} (mean difference {d['mad']:.4f}): "
                               "the option was not applied")
            self.refs[tiled_ref] = tiled

        def cuda_tiling(rec: CheckRecord, _w: CudaWatch) -> None:
            model = self.refs["model/tiny-sd"]
            img, _ = self.first_image(self.run_tool("text-to-image", self.t2i_params(
                model, width=size, height=size, vae_tiling=True), "cuda", "float16"))
            self.judge_images(rec, self.refs[tiled_ref], img, "fp16")

        def cuda_option(option: str) -> Callable:
            def fn(rec: CheckRecord, watch: CudaWatch) -> None:
                img, _ = self.first_image(self.run_tool("text-to-image", self.t2i_params(
                    "default", **{option: True}), "cuda", "float16"))
                self.judge_images(rec, self.refs["t2i/default/cpu-fp32"], img, "fp16")
            return fn

        self.check(tiled_ref, "cpu", cpu_tiling, ("model/tiny-sd",))
        self.check(f"t2i/tiny-sd/cuda-vae-tiling-{size}", "cuda", cuda_tiling, (tiled_ref,), "fp16")
        self.check("t2i/default/cuda-cpu-offload", "cuda", cuda_option("cpu_offload"), ("t2i/default/cpu-fp32",), "fp16")
        self.check("t2i/default/cuda-attention-slicing", "cuda", cuda_option("attention_slicing"),
                   ("t2i/default/cpu-fp32",), "fp16")

    # -- h-Edit and inpainting ---------------------------------------------------------------------
    def check_edits(self) -> None:
        """h-Edit and inpainting of the CPU reference picture: the bundled model (the tiny SD model in
        smoke mode, where the bundled model's edits cost too much CPU), CUDA at the runner's dtype
        against the CPU in float32; the CPU in bfloat16 shows how far rounding alone moves an edit."""
        import numpy as np

        key = "tiny-sd" if self.smoke else "default"
        source = f"t2i/{key}/cpu-fp32"
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255

        def params(tool: str) -> dict:
            model = self.refs.get(f"model/{key}", "default")
            image = self.refs[source]
            if tool == "h-edit":
                return {"image": image, "source_prompt": PROMPT, "target_prompt": EDIT_PROMPT,
                        "steps": self.edit_steps, "seed": 3, "model": model}
            return {"image": image, "mask": mask, "prompt": "a yellow star", "steps": self.edit_steps, "seed": 3,
                    "model": model}

        for tool in ("h-edit", "inpaint"):
            ref_name = f"{tool}/cpu-fp32"

            def reference(rec: CheckRecord, _w: CudaWatch, tool: str = tool, ref_name: str = ref_name) -> None:
                img, _ = self.first_image(self.run_tool(tool, params(tool), "cpu", "float32"))
                informative(img, f"the CPU {tool} image")
                rec.detail.update(model=key, changed_from_input=round(float(np.abs(
                    img.astype(np.float32) - self.refs[source]).mean()), 3))
                self.refs[ref_name] = img

            def against(device: str, dtype: Optional[str], tool: str = tool, ref_name: str = ref_name) -> Callable:
                def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                    img, _ = self.first_image(self.run_tool(tool, params(tool), device, dtype))
                    rec.detail["model"] = key
                    self.judge_images(rec, self.refs[ref_name], img, "edit-fp16")
                return fn

            self.check(ref_name, "cpu", reference, (source,))
            if not self.smoke:
                self.check(f"{tool}/cpu-bf16", "cpu", self.calibration(against("cpu", "bfloat16")), (ref_name,),
                           "edit-fp16")
            self.check(f"{tool}/cuda-fp16", "cuda", against("cuda", None), (ref_name,), "edit-fp16")

    # -- INR ---------------------------------------------------------------------------------------
    def check_inr(self) -> None:
        import numpy as np

        side = 16 if self.smoke else 32
        yy, xx = np.mgrid[0:side, 0:side] / side
        picture = np.stack([np.sin(6 * xx) * 0.5 + 0.5, np.cos(4 * yy) * 0.5 + 0.5, xx * yy], -1)
        picture = (picture * 255).astype(np.uint8)
        fit_steps = 30 if self.smoke else 200
        sdf_steps = 20 if self.smoke else 150
        resolution = 32 if self.smoke else 64

        def fit_image(device: str, dtype: Optional[str] = None, limit: float = PSNR_DB) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                res = self.run_tool("inr-fit-image", {"image": picture, "steps": fit_steps, "max_side": side,
                                                      "render_scale": 1, "seed": 0,
                                                      "save_to": str(self.work / f"inr-image-{device}-{dtype}")},
                                    device, dtype)
                psnr = float(self.table(res, "metrics")["PSNR (dB)"])
                rec.detail["psnr_db"] = psnr
                if device == "cpu":
                    self.refs["inr/fit-image/cpu"] = psnr
                    return
                delta = psnr - self.refs["inr/fit-image/cpu"]
                rec.detail["psnr_delta_db"] = round(delta, 4)
                self.judge_value(rec, "psnr_delta_db", delta, limit)
            return fn

        def fit_sdf(device: str) -> Callable:
            def fn(rec: CheckRecord, watch: CudaWatch) -> None:
                seen = {"fit_peak": 0}

                def listener(event: Any) -> None:
                    # the tool reports the fit as the first 75% of its progress and the bake after it
                    if watch.enabled and event.kind == "progress" and event.data["total"] and \
                            event.data["step"] / event.data["total"] < 0.75:
                        seen["fit_peak"] = watch.current_peak()
                folder = self.work / f"inr-sdf-{device}"
                res = self.run_tool("inr-fit-sdf", {"shape": "torus", "steps": sdf_steps, "points": 2048,
                                                    "resolution": resolution, "seed": 0, "save_to": str(folder)},
                                    device, listener=listener)
                metrics = self.table(res, "metrics")
                chamfer = float(metrics["Chamfer distance (input units)"])
                rec.detail.update(chamfer=chamfer, evaluator=str(metrics.get("evaluator")))
                if device == "cpu":
                    self.refs["inr/fit-sdf/cpu"] = chamfer
                    self.refs["inr/sdf-weights"] = folder / "inr-sdf.json"
                    return
                rec.detail["fit_phase_cuda_mb"] = round(max(0, seen["fit_peak"] - watch.start) / 2**20, 2)
                ref = self.refs["inr/fit-sdf/cpu"]
                rec.detail["chamfer_delta"] = round(chamfer - ref, 6)
                self.judge_value(rec, "chamfer_delta", chamfer - ref, CHAMFER_REL * ref + CHAMFER_ABS)
                if watch.enabled and seen["fit_peak"] <= watch.start:
                    raise Mismatch("the SDF fit allocated no CUDA memory: it ran on the CPU (the bake after it "
                                   f"used {rec.detail['evaluator']})")
            return fn

        def bake(rec: CheckRecord, _w: CudaWatch) -> None:
            from plugins.inr.fields import TorchEvaluator, bake_grid
            from plugins.inr.models import load_inr

            model = load_inr(self.refs["inr/sdf-weights"])
            bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
            cpu = bake_grid(TorchEvaluator(model, device="cpu"), bounds, resolution)
            gpu = bake_grid(TorchEvaluator(load_inr(self.refs["inr/sdf-weights"]), device=self.gpu), bounds, resolution)
            diff = float(np.abs(np.asarray(cpu, np.float64) - np.asarray(gpu, np.float64)).max())
            rec.detail.update(grid_max_abs=diff, grid=f"{resolution}^3")
            self.judge_value(rec, "grid_max_abs", diff, GRID_ABS)

        self.check("inr/fit-image/cpu", "cpu", fit_image("cpu", "float32"))
        # float32 on both devices: only summation order differs; the runner's default on CUDA (float16
        # mixed precision) rounds more
        self.check("inr/fit-image/cuda-fp32", "cuda", fit_image("cuda", "float32"), ("inr/fit-image/cpu",),
                   "psnr_db")
        self.check("inr/fit-image/cuda", "cuda", fit_image("cuda", None, PSNR_FP16_DB), ("inr/fit-image/cpu",),
                   "psnr_fp16_db")
        self.check("inr/fit-sdf/cpu", "cpu", fit_sdf("cpu"))
        self.check("inr/fit-sdf/cuda", "cuda", fit_sdf("cuda"), ("inr/fit-sdf/cpu",), "chamfer")
        self.check("inr/sdf-bake/cuda", "cuda", bake, ("inr/sdf-weights",), "sdf_grid")

    # -- RL ----------------------------------------------------------------------------------------
    def check_rl(self) -> None:
        # learning starts after 1,000 steps and trains every 256: 1,300 steps give one round of 128
        # gradient steps, 2,000 give three
        steps = 1300 if self.smoke else 2000

        def train(device: str) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                t0 = time.perf_counter()
                res = self.run_tool("rl-train", {"algo": "qr-dqn", "env": "CartPole-v1", "steps": steps,
                                                 "stop_when_solved": False, "record_episodes": 0, "seed": 0,
                                                 "save_to": str(self.work / f"rl-{device}")}, device)
                seconds = time.perf_counter() - t0
                summary = self.table(res, "training")
                rec.detail.update(env_steps=steps, env_steps_per_s=round(steps / seconds, 1),
                                  summary={k: v for k, v in summary.items() if k != "agent"})
                self.report.figure(f"rl-train qr-dqn CartPole, {steps} env steps", steps / seconds, "env steps/s",
                                   device)
            return fn

        self.check("rl/train/cpu", "cpu", train("cpu"))
        self.check("rl/train/cuda", "cuda", train("cuda"), ("rl/train/cpu",))

    # -- default-model trainer -----------------------------------------------------------------------
    def check_trainer(self) -> None:
        unet_steps = 2 if self.smoke else 12
        unet_batch = 4 if self.smoke else 64
        small = dict(num_images=16, vae_crop_steps=1, vae_full_steps=1, vae_batch=4, vae_full_batch=2) if self.smoke \
            else dict(num_images=64, vae_crop_steps=2, vae_full_steps=1, vae_batch=8, vae_full_batch=4)

        def train(device: str) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                import dataclasses

                import torch

                mod = default_model_trainer()
                rec.detail["module"] = mod.__name__
                fields = {f.name for f in dataclasses.fields(mod.TrainConfig)}
                if "device" not in fields:
                    raise Mismatch(f"{mod.__name__}.TrainConfig has no device option: the trainer trains on "
                                   "the CPU only")
                where = "cpu" if device == "cpu" else self.gpu
                # the recipe's arithmetic (precision auto): bfloat16 autocast on a GPU that computes it
                cfg = mod.TrainConfig(**small, decoder_steps=0, unet_steps=unet_steps,
                                      unet_batch=unet_batch, warmup=2, checkpoint_every=unet_steps,
                                      threads=torch.get_num_threads(), device=where)
                out = self.work / f"trainer-{device}"
                log = io.StringIO()
                try:
                    with contextlib.redirect_stdout(log):
                        mod.run(out, cfg, stages=("vae", "latents", "unet"), log=lambda *a: print(*a))
                finally:
                    _log.info("trainer output (%s):\n%s", device, log.getvalue()[-4000:])
                meta = json.loads((out / "unet_ckpt.json").read_text(encoding="utf-8"))
                losses = meta["losses"]
                if not losses or not all(math.isfinite(x) for x in losses):
                    raise Mismatch(f"the UNet losses are not finite: {losses}")
                rate = meta["step"] / meta["seconds"]
                rec.detail.update(steps=meta["step"], batch=unet_batch, steps_per_s=round(rate, 3),
                                  precisions=meta.get("precisions"), devices=meta.get("devices"),
                                  last_loss=round(losses[-1], 5))
                want = mod.resolve_device(where)
                if meta.get("devices") != [want]:
                    raise Mismatch(f"the checkpoint says its steps ran on {meta.get('devices')}, not [{want!r}]")
                self.report.figure(f"default-model trainer, UNet steps at batch {unet_batch}", rate, "steps/s", device,
                                   "the trainer's own clock (unet_ckpt.json), one checkpoint save included")
            return fn

        self.check("train/default-model/cpu", "cpu", train("cpu"))
        self.check("train/default-model/cuda", "cuda", train("cuda"), ("train/default-model/cpu",))

    # -- speed ---------------------------------------------------------------------------------------
    def check_speed(self) -> None:
        """Images/s at 512x512 with the tiny SDXL model (20 steps, guidance 5) after a warm-up run
        (smoke mode: 256x256, 2 steps)."""
        size = 256 if self.smoke else 512
        steps = 2 if self.smoke else 20

        def speed(device: str, batch: int) -> Callable:
            def fn(rec: CheckRecord, _w: CudaWatch) -> None:
                model = self.refs["model/tiny-sdxl"]
                warm = self.t2i_params(model, width=size, height=size, steps=1, batch_size=1)
                self.run_tool("text-to-image", warm, device)
                params = self.t2i_params(model, width=size, height=size, steps=steps, batch_size=batch)
                t0 = time.perf_counter()
                res = self.run_tool("text-to-image", params, device)
                seconds = time.perf_counter() - t0
                img, meta = self.first_image(res)
                informative(img, "the 512x512 image")
                rate = batch / seconds
                rec.detail.update(images=batch, steps=steps, seconds=round(seconds, 3), images_per_s=round(rate, 4))
                self.report.figure(f"tiny SDXL {size}x{size}, {steps} steps, batch {batch}", rate, "images/s", device,
                                   f"{meta.get('device')}, default dtype")
            return fn

        self.check(f"speed/tiny-sdxl-{size}/cpu", "cpu", speed("cpu", 1), ("model/tiny-sdxl",))
        self.check(f"speed/tiny-sdxl-{size}/cuda", "cuda", speed("cuda", 8), ("model/tiny-sdxl",))

    # -- all -----------------------------------------------------------------------------------------
    def free_cuda(self) -> None:
        if self.cuda and not self.rehearse:
            import gc

            import torch

            from plugins.diffusion_common.models import clear_pipeline_cache

            clear_pipeline_cache()
            gc.collect()
            torch.cuda.empty_cache()

    def run(self) -> int:
        self.setup()
        self.check_devices()
        models = self.build_models()
        for key in ("default", "tiny-sd", "tiny-sdxl"):
            self.check_text_to_image(key, models.get(key, ""))
        self.check_memory_options()
        self.check_edits()
        self.free_cuda()
        self.check_inr()
        self.check_rl()
        self.check_speed()
        self.free_cuda()
        self.check_trainer()
        self.report.finished = True
        self.report.write()
        failed = self.report.summary()["failed_checks"]
        self.print_summary()
        if failed:
            print(f"gpu_check: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        return 0

    def print_summary(self) -> None:
        s = self.report.summary()
        print(f"\n{s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped in {self.elapsed():.1f} s; "
              f"report: {self.out / 'report.md'}")
        for f in self.report.figures:
            print(f"  {f['name']} [{f['device']}]: {f['value']:.4g} {f['unit']}")
        for c in self.report.checks:
            if c.cuda_peak_mb is not None:
                print(f"  {c.name}: CUDA peak {c.cuda_peak_mb:.1f} MB")


def _watchdog(check: GpuCheck, limit_s: float) -> None:
    """End a run that outlives its global budget by ``limit_s`` (a hung kernel or download): record
    the check in progress as failed, write the report and leave with status 3."""
    time.sleep(limit_s)
    rec = check.current
    if rec is not None:
        rec.status, rec.reason = "failed", "still running when the watchdog stopped the run"
        rec.error = f"still running {limit_s:.0f} s after the start (global budget plus grace)"
    check.report.write()
    print(f"gpu_check: watchdog: stopped after {limit_s:.0f} s" + (f" during {rec.name}" if rec else ""),
          file=sys.stderr, flush=True)
    os._exit(3)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder for report.json, report.md and gpu_check.log")
    p.add_argument("--smoke", action="store_true", help="every kind of check, small and fast (CI)")
    p.add_argument("--budget", type=float, default=None,
                   help="global time budget in seconds: checks not started by then are skipped "
                        "(default 360, smoke 120; 0 = none)")
    p.add_argument("--check-budget", type=float, default=None,
                   help="per-check budget in seconds: a tool still running then is cancelled and the check "
                        "fails (default 120; 0 = none)")
    p.add_argument("--watchdog-grace", type=float, default=90.0,
                   help="seconds after the global budget at which a still-running process writes its report "
                        "and exits with status 3 (0 = no watchdog)")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only checks whose name contains TEXT (repeatable); what they need must be selected too")
    p.add_argument("--work", help="scratch folder (default: a new temporary folder, removed at the end)")
    p.add_argument("--test-force-mismatch", metavar="CHECK", default=None, help=argparse.SUPPRESS)
    p.add_argument("--test-force-error", metavar="CHECK", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rehearse-on-cpu", action="store_true",
                   help="run the CUDA checks' code with the CPU as their device (no GPU needed): finds mistakes in "
                        "this script before a GPU session; proves nothing about CUDA")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 120.0 if args.smoke else 360.0
    if args.check_budget is None:
        args.check_budget = 120.0
    if args.budget < 0 or args.check_budget < 0:
        p.error("budgets must be 0 (none) or positive")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"gpu_check: cannot create {out}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(filename=str(out / "gpu_check.log"), filemode="w", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    check = GpuCheck(args)
    if args.budget and args.watchdog_grace:
        threading.Thread(target=_watchdog, args=(check, args.budget + args.watchdog_grace), daemon=True).start()
    keep = bool(args.work)
    try:
        return check.run()
    finally:
        if not keep:
            shutil.rmtree(check.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
