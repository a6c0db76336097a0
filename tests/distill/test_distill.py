"""Distillation of a tiny random teacher on the CPU: both methods run and write a student that the
studio and plain diffusers draw in one step; a resumed run repeats an uninterrupted one bit for bit;
a cancel keeps the checkpoint; bad input gets a sentence."""

import json

import numpy as np
import pytest

from app.testing import assert_plugin_conforms

SMALL = dict(iterations=4, batch=2, checkpoint_every=2, preview_every=2, threads=1, lr=1e-3, fake_lr=1e-3)


def _run(teacher, out, prompts_file, stop_after=None, export=True, **overrides):
    from plugins.distill import compute

    cfg = compute.DistillConfig(**{**SMALL, **overrides})
    return compute.run(str(teacher), out, cfg, compute.read_prompts(prompts_file), stop_after=stop_after,
                       export=export, log=lambda msg: None)


def _checkpoint(out):
    from plugins.diffusion_common.checkpoint import load_state
    from plugins.distill.compute import CHECKPOINT

    return load_state(out / CHECKPOINT)


@pytest.mark.parametrize("method", ["sid", "dmd"])
def test_each_method_distils_a_tiny_teacher_into_a_one_step_student(teacher, prompts_file, tmp_path, method):
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    progress, metrics, previews = [], [], []
    from plugins.distill import compute

    cfg = compute.DistillConfig(method=method, guidance=3.0, **SMALL)
    report = compute.run(str(teacher), tmp_path / "run", cfg, compute.read_prompts(prompts_file),
                         on_progress=lambda s, t, m: progress.append((s, t, m)),
                         on_metric=lambda n, s, v: metrics.append((n, s, v)), on_preview=previews.append,
                         log=lambda msg: None)
    assert report.step == 4 and not report.cancelled
    from plugins.diffusion_common.precision import _flushing_denormals

    assert not _flushing_denormals()  # the run flushed denormals to zero and put the setting back
    assert [p[0] for p in progress] == [1, 2, 3, 4] and all(p[1] == 4 for p in progress)
    # the cost, measured in the first iterations: said at the third, then seconds per iteration throughout
    assert "cost measured: " in progress[2][2] and "4 iterations take about" in progress[2][2]
    assert "s/iteration" in progress[-1][2]
    assert {n for n, _, _ in metrics} == {"generator loss", "fake-score loss"}
    assert all(np.isfinite(v) for _, _, v in metrics)
    assert len(report.losses["generator"]) == len(report.losses["fake"]) == 4
    # previews: before the first iteration and every second one, each a row of the four prompts
    assert len(previews) == 3 and previews[0].shape == (64, 256, 3) and previews[0].dtype == np.uint8
    assert (tmp_path / "run" / "preview.png").is_file()

    student = report.student
    assert student == tmp_path / "run" / "student" and (student / "model_index.json").is_file()
    settings = json.loads((student / "implicit_studio.json").read_text())
    assert settings["text-to-image"] == {"steps": 1, "guidance": 1.0}
    assert settings["distilled"]["method"] == method and settings["distilled"]["iterations"] == 4
    trained = load_file(str(student / "unet" / "diffusion_pytorch_model.safetensors"))
    original = load_file(str(teacher / "unet" / "diffusion_pytorch_model.safetensors"))
    assert trained.keys() == original.keys()
    assert any(not torch.equal(trained[k], original[k]) for k in trained)  # the generator moved

    # plain diffusers: one step, no guidance, is the generator's call
    pipe = StableDiffusionPipeline.from_pretrained(str(student), local_files_only=True)
    out = pipe("a red circle", num_inference_steps=1, guidance_scale=1.0, output_type="pt",
               generator=torch.Generator().manual_seed(3)).images
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert pipe.scheduler.config.timestep_spacing == "trailing" and pipe.scheduler.config.set_alpha_to_one


def test_the_student_is_the_generator_one_step_ddim_draws(teacher, prompts_file, tmp_path):
    """What the studio's sampler draws at one step from the student folder equals the generator's own
    output from the same noise, decoded: the folder is the trained generator, not an approximation."""
    import torch

    from plugins.distill import compute
    from plugins.diffusion_common.preview import to_uint8_images
    from plugins.text_to_image.compute import GenerationParams, generate

    report = _run(teacher, tmp_path / "run", prompts_file)
    res = generate(GenerationParams(prompt="a red circle", seed=5, steps=1, guidance=1.0), model=str(report.student),
                   record_trajectory=False)
    img = res.images[0]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8

    d = compute.Distiller(compute.load_teacher(str(teacher)), compute.DistillConfig(**SMALL))
    tensors, meta = _checkpoint(tmp_path / "run")
    d.load(tensors, meta)
    z = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x0 = d.generate(z, d.teacher.encode(["a red circle"]))
        vae = d.teacher.pipe.vae
        own = to_uint8_images(vae.decode(x0 / vae.config.scaling_factor, return_dict=False)[0])[0]
    assert np.abs(own.astype(int) - img.astype(int)).max() <= 1


@pytest.mark.parametrize("method", ["sid", "dmd"])
def test_a_resumed_run_repeats_an_uninterrupted_one_bit_for_bit(teacher, prompts_file, tmp_path, method):
    import torch

    whole = _run(teacher, tmp_path / "whole", prompts_file, method=method, export=False)
    first = _run(teacher, tmp_path / "parts", prompts_file, stop_after=2, method=method)
    assert first.step == 2 and first.student is None  # stopped early: checkpointed, no student yet
    _, meta = _checkpoint(tmp_path / "parts")
    assert meta["step"] == 2 and meta["seconds"] > 0 and meta["cpu_seconds"] > 0
    second = _run(teacher, tmp_path / "parts", prompts_file, method=method, export=False)
    assert second.resumed_from == 2 and second.step == 4
    assert second.losses == whole.losses  # the same losses, to the last bit
    a, _ = _checkpoint(tmp_path / "whole")
    b, meta_b = _checkpoint(tmp_path / "parts")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta_b["seconds"] > meta["seconds"]  # the compute time adds up over the processes


def test_cancel_keeps_the_last_iteration_and_the_run_resumes(teacher, prompts_file, tmp_path):
    from app.api import Cancelled
    from plugins.distill import compute

    def progress(step, total, message):
        if step == 3:
            raise Cancelled("stop")

    cfg = compute.DistillConfig(**SMALL)
    with pytest.raises(Cancelled):
        compute.run(str(teacher), tmp_path / "run", cfg, compute.read_prompts(prompts_file), on_progress=progress,
                    log=lambda msg: None)
    _, meta = _checkpoint(tmp_path / "run")
    assert meta["step"] == 3 and len(meta["losses"]["generator"]) == 3  # not only the step-2 checkpoint
    report = _run(teacher, tmp_path / "run", prompts_file)
    assert report.resumed_from == 3 and report.step == 4 and report.student is not None


def test_bad_input_gets_a_sentence(teacher, prompts_file, tmp_path):
    from app.api import ParamError
    from plugins.diffusion_common.errors import ModelError
    from plugins.diffusion_common.tiny import build_tiny_sdxl_pipeline
    from plugins.distill import compute

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ParamError, match="holds no prompt"):
        compute.read_prompts(empty)
    with pytest.raises(ParamError, match="unknown method"):
        compute.DistillConfig(method="gan").resolved()
    # the fake network's guidance follows the method: SiD-LSG's equal guidance, DMD2's none
    assert compute.DistillConfig(method="sid", guidance=3.0).resolved().fake_guidance == 3.0
    assert compute.DistillConfig(method="dmd", guidance=3.0).resolved().fake_guidance == 1.0
    assert compute.DistillConfig(method="dmd").resolved().fake_updates == 5
    with pytest.raises(ParamError, match="DMD2 trains and reads its fake-score network without guidance"):
        compute.DistillConfig(method="dmd", fake_guidance=2.0).resolved()
    with pytest.raises(ModelError, match="Stable Diffusion XL"):
        compute.load_teacher(str(build_tiny_sdxl_pipeline(tmp_path / "xl")))
    _run(teacher, tmp_path / "run", prompts_file, stop_after=2)
    with pytest.raises(ParamError, match="started with method 'sid' \\(asked 'dmd'\\)"):
        _run(teacher, tmp_path / "run", prompts_file, method="dmd")


def test_plugin_conforms_and_declares_the_compute_tables():
    from plugins.distill import compute, plugin

    out = assert_plugin_conforms("plugins.distill.plugin")
    assert "distill" in out["tools"]
    assert plugin.METHOD_CHOICES == compute.METHODS and plugin.METHOD_LABELS == compute.METHOD_LABELS
    tool = plugin.studio_tools()[0]
    config_fields = set(compute.DistillConfig.__dataclass_fields__)
    # every setting of the tool is a field of the run's config (or the tool's own: where and what)
    from plugins.distill.run import _FIELDS

    assert {_FIELDS.get(p.name, p.name) for p in tool.params} - config_fields == {
        "teacher", "run_dir", "prompts", "preview_prompts", "export"}
    assert set(_FIELDS.values()) <= config_fields


@pytest.fixture
def runner(studio_manager):
    from app.jobs import JobRunner

    return JobRunner(studio_manager, None, device="cpu")


def test_the_tool_runs_through_the_job_runner(runner, teacher, prompts_file, tmp_path):
    from app.jobs import JobState

    events = []
    runner.add_listener(lambda ev: events.append(ev.kind))
    params = {"teacher": str(teacher), "run_dir": str(tmp_path / "run"), "prompts": str(prompts_file), "iterations": 3,
              "batch": 2, "preview_every": 3, "checkpoint_every": 3, "threads": 1}
    job = runner.run_sync("distill", params, device="cpu")
    assert job.state is JobState.FINISHED, job.error
    assert "progress" in events and "metric" in events
    image = next(r for r in job.results if r.kind == "image")
    assert image.image.shape == (64, 256, 3)
    assert image.metadata["student"] == str(tmp_path / "run" / "student") and image.metadata["iteration"] == 3
    table = next(r for r in job.results if r.kind == "table" and r.label == "distillation losses")
    assert [row[0] for row in table.rows] == [1, 2, 3]
    assert set(job.metrics) == {"generator loss", "fake-score loss"}

    bad = runner.run_sync("distill", {**params, "run_dir": str(tmp_path / "other"), "method": "dmd",
                                      "fake_guidance": 2.0}, device="cpu")
    assert bad.state is JobState.FAILED and "without guidance" in bad.error


def test_the_command_resumes_after_a_kill(teacher, prompts_file, tmp_path):
    """`implicit-studio run distill` killed (SIGKILL) mid-run leaves a readable checkpoint, and the same
    command on the same folder resumes from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "app", "run", "distill", "--teacher", str(teacher), "--prompts", str(prompts_file),
            "--run-dir", str(out), "--batch", "2", "--checkpoint-every", "1", "--preview-every", "0", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args + ["--iterations", "100000"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            _, meta = _checkpoint(out) if (out / "distill_ckpt.safetensors").exists() else (None, None)
            if meta and meta["step"] >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, meta = _checkpoint(out)  # whatever moment the kill hit, the checkpoint reads whole
    killed_at, kept = meta["step"], meta["losses"]["generator"]
    assert killed_at >= 3 and len(kept) == killed_at
    done = subprocess.run(args + ["--iterations", str(killed_at + 2)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    _, meta = _checkpoint(out)
    assert meta["step"] == killed_at + 2 and meta["losses"]["generator"][:killed_at] == kept  # resumed, not restarted
    assert f"resumed from the checkpoint of iteration {killed_at}" in done.stdout + done.stderr
    assert (out / "student" / "model_index.json").is_file()
