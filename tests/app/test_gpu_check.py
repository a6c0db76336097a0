"""The GPU check (``benchmarks/gpu_check.py``, issue 31) as CI runs it: its smoke mode in a
subprocess, the two report files and their schema, every CUDA check "skipped: no CUDA" on a
machine without CUDA, and a comparison forced out of tolerance (or a check forced to raise) failing
the run with the check named while the other checks go on."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CHECK_FIELDS = {"name": str, "group": str, "device": str, "status": str, "reason": str, "seconds": float,
                "detail": dict}


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


gpu_check = _load_module()


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *args], capture_output=True, text=True,
                          timeout=570, env=env, cwd=str(REPO))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check-smoke")
    proc = _run(out, "--smoke", "--budget", "0", "--check-budget", "0")
    return out, proc


def test_smoke_mode_passes_and_writes_both_reports(smoke):
    out, proc = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    md = (out / "report.md").read_text(encoding="utf-8")
    assert data["finished"] is True and data["mode"] == "smoke"
    s = data["summary"]
    assert s["failed"] == 0 and s["failed_checks"] == []
    assert f"**{s['passed']} passed, 0 failed, {s['skipped']} skipped.**" in md
    for c in data["checks"]:  # every check has its row in the Markdown table
        assert f"| `{c['name']}` | {c['device']} | {c['status']}" in md
    assert (out / "gpu_check.log").is_file()


def test_report_schema(smoke):
    out, _ = smoke
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["schema"] == gpu_check.SCHEMA
    for key in ("started", "seconds", "environment", "tolerances", "summary", "checks", "figures", "fault_scale"):
        assert key in data, key
    for key in ("python", "torch", "cuda_available", "onnxruntime", "plugins", "git_commit"):
        assert key in data["environment"], key
    for name, tol in data["tolerances"].items():
        assert isinstance(tol["why"], str) and len(tol["why"]) > 40, name
    names = [c["name"] for c in data["checks"]]
    assert len(names) == len(set(names))
    for c in data["checks"]:
        for key, typ in CHECK_FIELDS.items():
            assert isinstance(c[key], typ), (c["name"], key)
        assert c["status"] in gpu_check.STATUSES
        assert c["device"] in ("cpu", "cuda")
        assert c["group"] == c["name"].split("/")[0]
        if c["tolerance"] is not None:
            assert c["tolerance"] in data["tolerances"], c["name"]
    counts = {s: sum(c["status"] == s for c in data["checks"]) for s in gpu_check.STATUSES}
    assert {k: data["summary"][k] for k in gpu_check.STATUSES} == counts
    groups = {c["group"] for c in data["checks"]}
    assert {"devices", "t2i", "h-edit", "inpaint", "inr", "rl", "speed", "train"} <= groups
    # comparisons record their numbers and limits; speed checks add figures
    bf16 = next(c for c in data["checks"] if c["name"] == "t2i/tiny-sd/cpu-bf16")
    assert bf16["detail"]["mad"] <= bf16["detail"]["limits"]["mad"]
    units = {f["unit"] for f in data["figures"]}
    assert {"images/s", "steps/s", "env steps/s"} <= units
    assert all(f["value"] > 0 for f in data["figures"])


def test_cpu_half_runs_and_cuda_checks_say_no_cuda(smoke):
    if _cuda():
        pytest.skip("this machine has CUDA: its CUDA checks run")
    out, _ = smoke
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cuda = [c for c in data["checks"] if c["device"] == "cuda"]
    cpu = [c for c in data["checks"] if c["device"] == "cpu"]
    assert len(cuda) >= 20 and len(cpu) >= 12
    assert all(c["status"] == "skipped" and c["reason"] == "no CUDA" for c in cuda)
    assert all(c["status"] == "passed" for c in cpu), [(c["name"], c["status"], c["error"]) for c in cpu]
    names = {c["name"] for c in cuda}
    for expected in ("t2i/default/cuda-fp16", "t2i/tiny-sdxl/cuda-bf16", "t2i/tiny-sd/cuda-onnx-cuda",
                     "t2i/tiny-sd/cuda-onnx-tensorrt", "t2i/default/cuda-cpu-offload", "h-edit/cuda-fp16",
                     "inpaint/cuda-fp16", "inr/fit-image/cuda", "inr/sdf-bake/cuda", "rl/train/cuda",
                     "train/default-model/cuda"):
        assert expected in names, expected


ONLY = ("--only", "t2i/build-tiny-sd", "--only", "t2i/tiny-sd/cpu-fp32", "--only", "t2i/tiny-sd/cpu-bf16",
        "--only", "devices/cli", "--only", "inr/fit-image/cpu")


@pytest.fixture(scope="module")
def forced(tmp_path_factory):
    """One small run with one comparison forced out of tolerance and another check forced to raise."""
    out = tmp_path_factory.mktemp("gpu-check-forced")
    proc = _run(out, *ONLY, "--test-force-mismatch", "t2i/tiny-sd/cpu-bf16", "--test-force-error", "devices/cli")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return out, proc, {c["name"]: c for c in data["checks"]}, data


def test_a_forced_mismatch_fails_the_run_and_names_the_check(forced):
    out, proc, by_name, data = forced
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "t2i/tiny-sd/cpu-bf16" in proc.stderr
    bad = by_name["t2i/tiny-sd/cpu-bf16"]
    assert bad["status"] == "failed" and bad["reason"] == "mismatch"
    assert bad["detail"]["limits"] == {"mad": 0.0, "far": 0.0} and bad["detail"]["mad"] > 0
    assert set(data["summary"]["failed_checks"]) == {"t2i/tiny-sd/cpu-bf16", "devices/cli"}
    assert by_name["t2i/tiny-sd/cpu-fp32"]["status"] == "passed"
    assert "`t2i/tiny-sd/cpu-bf16`" in (out / "report.md").read_text(encoding="utf-8").split("## Machine")[0]


def test_a_check_that_raises_is_reported_and_the_next_one_runs(forced):
    _out, proc, by_name, _data = forced
    assert "devices/cli" in proc.stderr
    bad = by_name["devices/cli"]
    assert bad["status"] == "failed" and bad["reason"] == "error"
    assert bad["error"].startswith("RuntimeError: forced error (test option)")
    # the run went on: every check after it ran
    assert by_name["t2i/build-tiny-sd"]["status"] == "passed"
    assert by_name["t2i/tiny-sd/cpu-fp32"]["status"] == "passed"
    assert by_name["inr/fit-image/cpu"]["status"] == "passed"


def test_a_check_whose_reference_failed_is_skipped_with_the_reason(tmp_path):
    proc = _run(tmp_path, "--only", "t2i/tiny-sd/cpu-bf16")  # its reference is not selected
    assert proc.returncode == 0
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    (c,) = data["checks"]
    assert c["status"] == "skipped" and c["reason"] == "needs t2i/tiny-sd/cpu-fp32, which did not pass"


def test_bad_arguments_exit_2(tmp_path):
    proc = _run(tmp_path, "--budget", "-1")
    assert proc.returncode == 2 and "budget" in proc.stderr


def test_image_difference_and_flat_images():
    ref = np.full((8, 8, 3), 100, np.uint8)
    img = ref.copy()
    img[0, 0] = (100, 100, 130)  # one pixel off by 30 levels in one channel
    img[1, 1] = (104, 104, 104)  # one off by 4 in every channel
    d = gpu_check.image_difference(ref, img)
    assert d["mad"] == pytest.approx((30 + 12) / (8 * 8 * 3))
    assert d["far"] == pytest.approx(1 / 64) and d["max"] == 30
    with pytest.raises(gpu_check.Mismatch, match="shapes differ"):
        gpu_check.image_difference(ref, img[:4])
    with pytest.raises(gpu_check.Mismatch, match="flat"):
        gpu_check.informative(ref, "the image")
    gpu_check.informative(np.arange(64 * 3, dtype=np.uint8).reshape(8, 8, 3), "the image")


def test_trainer_is_found_where_it_lives():
    mod = gpu_check.default_model_trainer()
    assert mod.__name__ == "lab.default_model.train"
    assert hasattr(mod, "TrainConfig") and hasattr(mod, "run")


def test_rehearsal_runs_the_cuda_checks_code_on_the_cpu(tmp_path):
    """The CUDA checks' own code (not CUDA) runs in CI too: with the CPU as their device, the
    comparisons agree, and ONNX Runtime asked for its CUDA provider without a GPU is caught falling
    back to the CPU (or the check says the build has no such provider)."""
    proc = _run(tmp_path, "--smoke", "--rehearse-on-cpu", "--budget", "0", "--check-budget", "0",
                "--only", "t2i/build-tiny-sd", "--only", "t2i/tiny-sd/", "--only", "inr/")
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert "REHEARSAL" in data["mode"] and "REHEARSAL" in (tmp_path / "report.md").read_text(encoding="utf-8")
    by_name = {c["name"]: c for c in data["checks"]}
    ort = {"t2i/tiny-sd/cuda-onnx-cuda", "t2i/tiny-sd/cuda-onnx-tensorrt"}
    for name in ort:
        c = by_name[name]
        assert (c["status"] == "skipped" and "has no" in c["reason"]) or \
            (c["status"] == "failed" and "not " in c["error"] and "ExecutionProvider" in c["error"]), c
    others = [c for c in data["checks"] if c["name"] not in ort]
    assert [c["name"] for c in others if c["status"] != "passed"] == [], proc.stdout[-3000:]
    cuda_run = [c["name"] for c in others if c["device"] == "cuda"]
    assert {"t2i/tiny-sd/cuda-fp16", "t2i/tiny-sd/cuda-bf16", "t2i/tiny-sd/cuda-vae-tiling-128",
            "inr/fit-image/cuda", "inr/fit-sdf/cuda", "inr/sdf-bake/cuda"} <= set(cuda_run)
    assert by_name["inr/sdf-bake/cuda"]["detail"]["grid_max_abs"] == 0.0
    failed = [n for n in ort if by_name[n]["status"] == "failed"]
    assert proc.returncode == (1 if failed else 0)
