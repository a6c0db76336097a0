"""The text-to-image tool through the studio's plugin API, job runner and command line."""

import numpy as np
import pytest

from app.testing import assert_plugin_conforms


def test_plugin_module_conforms_and_is_cheap():
    out = assert_plugin_conforms("plugins.text_to_image.plugin")
    assert "text-to-image" in out["tools"]


def test_declared_choices_match_the_compute_tables():
    from plugins.diffusion_common.schedulers import SCHEDULER_LABELS, SCHEDULER_NAMES
    from plugins.text_to_image import plugin
    from plugins.text_to_image.compute import PRESET_LABELS, PRESETS

    assert plugin.SCHEDULER_CHOICES == SCHEDULER_NAMES
    assert plugin.SCHEDULER_LABELS == SCHEDULER_LABELS
    from plugins.diffusion_common.schedulers import SCHEDULE_LABELS, SCHEDULE_NAMES

    assert plugin.SCHEDULE_CHOICES == SCHEDULE_NAMES and plugin.SCHEDULE_LABELS == SCHEDULE_LABELS
    assert plugin.PRESET_CHOICES == tuple(PRESETS)
    assert plugin.PRESET_LABELS == tuple(PRESET_LABELS[k] for k in PRESETS)
    tool = plugin.studio_tools()[0]
    assert tool.param("model").default == "default"
    assert tool.param("backend").choices == ("torch", "onnx")
    assert tool.validate({"prompt": "a red circle"})["steps"] == 25


def test_parse_loras():
    from app.api import ParamError
    from plugins.text_to_image.run import parse_loras

    assert parse_loras("/a/b.safetensors:0.5\n/c/d.safetensors; e.safetensors:-1") == [
        ("/a/b.safetensors", 0.5), ("/c/d.safetensors", 1.0), ("e.safetensors", -1.0)]
    assert parse_loras(r"C:\models\x.safetensors") == [(r"C:\models\x.safetensors", 1.0)]
    with pytest.raises(ParamError, match="outside"):
        parse_loras("x.safetensors:50")


@pytest.fixture
def runner(studio_manager):
    from app.jobs import JobRunner

    return JobRunner(studio_manager, None, device="cpu")


def test_runner_runs_the_tool_and_returns_images_and_trajectory(runner, tiny_model):
    from app.jobs import JobState

    job = runner.run_sync("text-to-image", {"prompt": "a red circle", "seed": 1, "steps": 3, "batch_size": 2,
                                            "model": str(tiny_model), "thumbnails": "vae"}, device="cpu")
    assert job.state is JobState.FINISHED, job.error
    kinds = [r.kind for r in job.results]
    images = [r for r in job.results if r.kind == "image" and r.metadata.get("role") is None]
    assert len(images) == 2 and images[0].image.shape == (64, 64, 3)
    meta = images[1].metadata
    assert meta["seed"] == 2 and meta["prompt"] == "a red circle" and meta["steps"] == 3
    assert len(meta["model_hash"]) == 64 and meta["backend"] == "torch"
    tables = [r for r in job.results if r.kind == "table" and r.metadata.get("role") == "trajectory"]
    assert tables and len(tables[0].rows) == 3
    files = [r for r in job.results if r.kind == "file"]
    from plugins.diffusion_common.sampling import Trajectory

    tr = Trajectory.from_npz(files[0].read_bytes())
    assert tr.thumbnails.shape == (3, 2, 64, 64, 3)
    assert "table" in kinds and any(r.metadata.get("role") == "metrics" for r in job.results)


def test_runner_seed_grid(runner, tiny_model):
    from app.jobs import JobState

    job = runner.run_sync("text-to-image", {"prompt": "a blue star", "steps": 2, "sweep": "guidance",
                                            "sweep_values": "1, 4, 8", "model": str(tiny_model),
                                            "record_trajectory": False}, device="cpu")
    assert job.state is JobState.FINISHED, job.error
    grid = job.results[0]
    assert grid.metadata["role"] == "grid" and grid.metadata["values"] == [1.0, 4.0, 8.0]
    cells = [r for r in job.results[1:] if r.kind == "image"]
    assert [c.metadata["guidance"] for c in cells] == [1.0, 4.0, 8.0]
    assert len({c.metadata["seed"] for c in cells}) == 1


def test_runner_reports_bad_input_plainly(runner, tiny_model, tmp_path):
    from app.jobs import JobState

    job = runner.run_sync("text-to-image", {"prompt": "x", "width": 70, "model": str(tiny_model)}, device="cpu")
    assert job.state is JobState.FAILED and "not a multiple of 8" in job.error
    missing = tmp_path / "nothing"
    missing.mkdir()
    job = runner.run_sync("text-to-image", {"prompt": "x", "model": str(missing)}, device="cpu")
    assert job.state is JobState.FAILED and "no model_index.json" in job.error
    assert "Traceback" not in job.error


def test_runner_cancel_records_cancelled(runner, tiny_model):
    import time

    from app.jobs import JobState

    job = runner.submit("text-to-image", {"prompt": "a red circle", "steps": 400, "model": str(tiny_model),
                                          "record_trajectory": False}, device="cpu")
    t0 = time.time()
    while job.step < 2 and time.time() - t0 < 60 and not job.state.done:
        time.sleep(0.005)
    assert runner.cancel(job.id)
    step_at_cancel = job.step
    assert job.wait(timeout=60)
    assert job.state is JobState.CANCELLED
    assert job.step <= step_at_cancel + 2  # stops within a step or so, not after 400
    assert not job.results


def test_models_command_lists_folders(tmp_path, tiny_model, capsys):
    import shutil

    from plugins.text_to_image.commands import models_main

    root = tmp_path / "ComfyUI" / "models"
    (root / "diffusers").mkdir(parents=True)
    shutil.copytree(tiny_model, root / "diffusers" / "tiny")
    assert models_main(["--folder", str(tmp_path / "ComfyUI"), "--no-settings", "--no-hf-cache", "--hash"]) == 0
    out = capsys.readouterr().out
    assert "diffusers" in out and "sd-custom" in out and "comfyui" in out and "sha256:" in out


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_cli_run_writes_pngs_with_parameters(studio_cli, tiny_model, tmp_path, backend):
    from PIL import Image

    out = tmp_path / "out"
    res = studio_cli("run", "text-to-image", "--prompt", "a red circle", "--seed", "1", "--steps", "3",
                     "--backend", backend, "--model", str(tiny_model), "--out", str(out),
                     "--session", str(tmp_path / "S"))
    assert res.exit_code == 0, res.stderr + res.stdout
    pngs = sorted(p for p in out.glob("*.png") if "filmstrip" not in p.name)
    assert pngs
    with Image.open(pngs[0]) as im:
        text = " ".join(im.text.values())
        assert im.size == (64, 64)
    assert "a red circle" in text and "Seed: 1" in text and backend in text
    assert any(p.suffix == ".npz" for p in out.iterdir())


def test_runner_image_to_image_from_a_file(runner, tiny_model, tmp_path):
    from PIL import Image

    from app.jobs import JobState

    img = np.zeros((48, 80, 3), np.uint8)
    img[:, 40:] = (200, 40, 40)
    path = tmp_path / "init.png"
    Image.fromarray(img).save(path)
    job = runner.run_sync("text-to-image", {"prompt": "a red square", "steps": 4, "strength": 0.5, "seed": 2,
                                            "init_image": str(path), "model": str(tiny_model),
                                            "record_trajectory": False}, device="cpu")
    assert job.state is JobState.FINISHED, job.error
    out = job.results[0]
    assert out.image.shape == (48, 80, 3)  # the init image's size (a multiple of 8)
    assert out.metadata["strength"] == 0.5 and job.total == 2


def test_a_runs_model_fingerprint_is_the_same_in_its_row_its_pngs_and_its_metadata(studio_manager, tiny_model,
                                                                                  tmp_path):
    """One fingerprint: the run's row, the PNG it stored (our JSON and the A1111 text, and the PNG
    an export writes from the row) and the metadata the diffusion code reports all carry it."""
    from app.jobs import JobRunner, JobState
    from storage import SessionStore, pngmeta

    store = SessionStore.open(tmp_path / "session")
    try:
        runner = JobRunner(studio_manager, store, device="cpu")
        job = runner.run_sync("text-to-image", {"prompt": "a red circle", "seed": 1, "steps": 2,
                                                "model": str(tiny_model), "record_trajectory": False}, device="cpu")
        assert job.state is JobState.FINISHED, job.error
        row = store.get_run(job.run_id)
        assert row.model_hash and len(row.model_hash) == 64
        image, image_id = next((r, i) for r, i in zip(job.results, job.result_ids) if r.kind == "image")
        assert image.metadata["model_hash"] == row.model_hash  # reported by the diffusion code
        assert store.get_result(image_id).metadata["model_hash"] == row.model_hash
        stored = pngmeta.read_png_metadata(store.read_result(image_id))
        assert stored.implicit["model_hash"] == row.model_hash
        assert stored.parameters["model_hash"] == row.model_hash[:10]  # A1111's "Model hash"
        exported = pngmeta.read_png_metadata(pngmeta.png_for_run(store.read_result(image_id), row))
        assert exported.implicit["model_hash"] == row.model_hash
    finally:
        store.close()
