"""The precision choice (auto, fp32, fp16, bf16): app.devices resolves and checks it, the job runner
asks for it (runner default, IMPLICIT_STUDIO_PRECISION, settings read per job), the run function's
torch work gets that dtype, the session records it, and the CLI takes --precision."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from app import api, devices
from app.jobs import JobRunner, JobState


def torch_probe(ctx, size: int = 4):
    """A torch tool: makes a tensor on the run's device in the run's dtype and reports both."""
    import torch

    x = torch.ones(size, device=ctx.torch_device(), dtype=ctx.torch_dtype())
    y = (x * 3).sum()
    return api.TableResult(columns=("device", "dtype", "sum"), rows=[(str(y.device), str(y.dtype), float(y))],
                           label="probe")


PROBE = api.ToolSpec(id="torch-probe", title="Torch probe", run=f"{__name__}:torch_probe", backends=("torch",),
                     params=(api.IntParam(name="size", default=4, min=1, max=8),))


def probe_row(job):
    assert job.state is JobState.FINISHED, job.error
    return dict(zip(job.results[0].columns, job.results[0].rows[0]))


# --------------------------------------------------------------------------------- app.devices
def test_parse_precision_takes_the_four_names_and_dtype_names():
    assert devices.parse_precision(None) == "auto"
    assert [devices.parse_precision(t) for t in (" FP16 ", "bfloat16", "float32", "half", "bf16")] == \
        ["fp16", "bf16", "fp32", "fp16", "bf16"]
    with pytest.raises(devices.DeviceError, match="unknown precision 'fp64'; use auto, fp32, fp16 or bf16"):
        devices.parse_precision("fp64")


def test_precision_on_the_cpu():
    assert devices.choose("cpu", ("torch",)).dtype == "float32"
    assert devices.choose("cpu", ("torch",), precision="auto").dtype == "float32"
    assert devices.choose("cpu", ("torch",), precision="fp32").dtype == "float32"
    bf16 = devices.choose("cpu", ("torch",), precision="bf16")
    assert (bf16.dtype, bf16.notes) == ("bfloat16", ())
    assert "bfloat16" in bf16.description
    fp16 = devices.choose("cpu", ("torch", "onnx"), precision="fp16")
    assert fp16.dtype == "float32"  # what happens is said, not silently swapped
    (note,) = fp16.notes
    assert "fp16" in note and "on the CPU" in note and "computes in float32" in note and "bf16" in note
    # an explicit dtype is taken as given (benchmarks and tests that need one exact dtype)
    assert devices.choose("cpu", ("torch",), dtype="float16").dtype == "float16"
    with pytest.raises(devices.DeviceError, match="unknown precision"):
        devices.choose("cpu", ("torch",), precision="int8")


def test_auto_and_fp16_on_cuda_and_bf16_needs_an_ampere_gpu(monkeypatch):
    """The rules for a CUDA device (resolve_dtype does not look for the device; choose does)."""
    import torch

    assert devices.resolve_dtype("cuda", "auto") == ("float16", ())
    assert devices.resolve_dtype("cuda:1", "fp16") == ("float16", ())
    assert devices.resolve_dtype("cuda", "fp32") == ("float32", ())
    # what torch reports for a Turing and an Ampere card (no GPU here to ask)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    with pytest.raises(devices.DeviceError) as err:
        devices.resolve_dtype("cuda:0", "bf16")
    message = str(err.value)
    assert "Tesla T4" in message and "compute capability 7.5" in message and "8.0" in message
    assert "--precision fp16 or fp32" in message
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 0))
    assert devices.resolve_dtype("cuda:0", "bf16") == ("bfloat16", ())
    # without torch in the run nothing is probed
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    assert devices.resolve_dtype("cuda", "bf16", with_torch=False) == ("bfloat16", ())


def test_devices_summary_shows_the_chosen_precision_and_its_note():
    lines = devices.summary("cpu", "fp16")
    assert any(ln.startswith("chosen:") and "float32" in ln for ln in lines)
    assert any(ln.startswith("note: fp16 was asked for") for ln in lines)
    assert any("bfloat16" in ln for ln in devices.summary("cpu", "bf16") if ln.startswith("chosen:"))


# --------------------------------------------------------------------------------- the runner
def test_the_run_computes_in_the_precision_asked_for_and_the_session_records_it(store, monkeypatch):
    monkeypatch.delenv("IMPLICIT_STUDIO_PRECISION", raising=False)
    runner = JobRunner(None, store, device="cpu", precision="bf16")
    job = runner.run_sync(PROBE, {"size": 5})
    row = probe_row(job)
    # the run function's tensors are on torch.device(ctx.device) in ctx's dtype
    assert (row["device"], row["dtype"], row["sum"]) == ("cpu", "torch.bfloat16", 15.0)
    assert (job.device, job.dtype, job.precision_preference) == ("cpu", "bfloat16", "bf16")
    assert job.run_info["dtype"] == "bfloat16"
    run = store.get_run(job.run_id)
    assert (run.device, run.dtype) == ("cpu", "bfloat16")
    from app.session_view import run_tooltip  # what the window's history shows of a run

    assert "cpu bfloat16" in run_tooltip(run)
    # one job may name its own precision
    job = runner.run_sync(PROBE, {}, precision="fp32")
    assert probe_row(job)["dtype"] == "torch.float32" and store.get_run(job.run_id).dtype == "float32"


def test_fp16_on_the_cpu_runs_in_float32_and_says_so(store, caplog, monkeypatch):
    monkeypatch.delenv("IMPLICIT_STUDIO_PRECISION", raising=False)
    runner = JobRunner(None, store, device="cpu")
    started = []
    with caplog.at_level(logging.WARNING, logger="implicit_studio.tool.torch-probe"):
        job = runner.run_sync(PROBE, {}, precision="fp16",
                              listener=lambda e: started.append(e.data) if e.kind == "started" else None)
    assert probe_row(job)["dtype"] == "torch.float32" and job.dtype == "float32"
    assert store.get_run(job.run_id).dtype == "float32"  # what it computed in, not what was asked
    (data,) = started
    assert data["dtype"] == "float32" and len(data["notes"]) == 1 and "fp16 was asked for" in data["notes"][0]
    assert any("fp16 was asked for" in r.getMessage() for r in caplog.records)


def test_the_default_precision_comes_from_the_environment_then_the_settings_read_per_job(tmp_path, monkeypatch):
    from app.settings import Settings

    monkeypatch.delenv("IMPLICIT_STUDIO_PRECISION", raising=False)
    settings = Settings(tmp_path / "settings.json")
    runner = JobRunner(None, None, settings=settings, device="cpu")
    assert runner.precision == "auto" and probe_row(runner.run_sync(PROBE, {}))["dtype"] == "torch.float32"
    settings.set("precision", "bf16")  # Preferences saved while the runner lives: the next run follows
    assert runner.precision == "bf16" and probe_row(runner.run_sync(PROBE, {}))["dtype"] == "torch.bfloat16"
    monkeypatch.setenv("IMPLICIT_STUDIO_PRECISION", "fp32")  # implicit-studio --precision fp32
    assert probe_row(runner.run_sync(PROBE, {}))["dtype"] == "torch.float32"
    runner.precision = "bf16"  # given to the runner: above both
    assert probe_row(runner.run_sync(PROBE, {}))["dtype"] == "torch.bfloat16"
    with pytest.raises(devices.DeviceError, match="unknown precision 'fp8'"):
        runner.prepare(PROBE, {}, precision="fp8")
    runner.precision = None
    settings.set("precision", "quad")  # a hand-edited settings file: refused with the same sentence
    monkeypatch.delenv("IMPLICIT_STUDIO_PRECISION")
    with pytest.raises(devices.DeviceError, match="unknown precision 'quad'"):
        runner.prepare(PROBE, {})


# --------------------------------------------------------------------------------- the CLI
def cli(args, env):
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_run_takes_precision_records_it_and_says_what_fp16_on_the_cpu_does(cli_env, tmp_path):
    session = tmp_path / "sess"
    base = ["run", "noise-image", "--size", "8", "--steps", "1", "--device", "cpu", "--session", session]
    p = cli(base + ["--precision", "bf16", "--json"], cli_env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["dtype"] == "bfloat16"
    p = cli(base + ["--precision", "fp16"], cli_env)
    assert p.returncode == 0, p.stderr
    assert "note: fp16 was asked for, but this run is on the CPU" in p.stderr and "cpu float32" in p.stdout
    p = cli(["--precision", "bf16"] + base + ["--json"], cli_env)  # the global option reaches run
    assert json.loads(p.stdout)["dtype"] == "bfloat16"
    p = cli(base + ["--json"], {**cli_env, "IMPLICIT_STUDIO_PRECISION": "bf16"})
    assert json.loads(p.stdout)["dtype"] == "bfloat16"
    p = cli(base + ["--precision", "fp64"], cli_env)
    assert p.returncode == 2 and "unknown precision 'fp64'; use auto, fp32, fp16 or bf16" in p.stderr
    first = json.loads(cli(base + ["--json"], cli_env).stdout)["run_id"]
    r = cli(["--precision", "bf16", "reproduce", first, "--session", session, "--json"], cli_env)
    assert r.returncode == 0, r.stderr  # a numpy tool: the same pixels in any precision
    h = cli(["history", "--session", session], cli_env)
    assert h.returncode == 0, h.stderr
    assert "Device" in h.stdout and h.stdout.count("cpu bfloat16") == 4 and h.stdout.count("cpu float32") == 2
    d = cli(["devices", "--device", "cpu", "--precision", "fp16"], cli_env)
    assert d.returncode == 0 and "note: fp16 was asked for" in d.stdout
