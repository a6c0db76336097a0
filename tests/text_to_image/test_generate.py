"""Generation: equivalence with diffusers, schedulers, seeds, batches, cancel, preview,
trajectory, image-to-image, sizes, clip skip, presets, sweeps, torch vs ONNX Runtime."""

import numpy as np
import pytest

from app.api import Cancelled, ParamError
from plugins.diffusion_common.errors import ModelError
from plugins.diffusion_common.schedulers import SCHEDULER_NAMES
from plugins.text_to_image.compute import GenerationParams, generate, make_grid, parse_sweep_values, sweep


def gp(**kw):
    base = dict(prompt="a small red circle in the center", seed=7, steps=3, guidance=5.0)
    base.update(kw)
    return GenerationParams(**base)


def diff(a, b):
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_matches_a_bare_diffusers_pipeline(sd_model):
    import torch
    from diffusers import StableDiffusionPipeline

    ours = generate(gp(steps=4, scheduler="default"), sd_model)
    pipe = StableDiffusionPipeline.from_pretrained(sd_model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(gp().prompt, num_inference_steps=4, guidance_scale=5.0, output_type="np",
               generator=torch.Generator().manual_seed(7)).images[0]
    ref = np.round(ref * 255).astype(np.uint8)
    assert ours.images[0].shape == ref.shape
    assert diff(ours.images[0], ref).max() <= 1


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_runs(tiny_model, scheduler):
    r = generate(gp(steps=2, scheduler=scheduler), str(tiny_model))
    assert len(r.images) == 1 and r.images[0].shape == (64, 64, 3)
    assert r.params["scheduler"] == scheduler
    assert r.trajectory.steps == 2
    assert np.isfinite(r.trajectory.latent_norm).all()


@pytest.fixture(scope="module")
def cosine_model(tiny_model, tmp_path_factory):
    """The tiny model with the bundled model's kind of schedule: cosine betas that end at pure noise
    (sigma_max ~ 2e4), v-prediction, trailing timesteps."""
    import json
    import shutil

    dest = tmp_path_factory.mktemp("cosine") / "tiny"
    shutil.copytree(tiny_model, dest)
    cfg_path = dest / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", timestep_spacing="trailing")
    cfg_path.write_text(json.dumps(cfg))
    return dest


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_runs_on_a_schedule_that_ends_at_pure_noise(cosine_model, scheduler):
    # DPM++ Karras sigmas on such a schedule repeat timesteps; stepping by position must still
    # take exactly the asked number of steps (it used to run past the end: IndexError).
    for steps in (3, 4, 10):  # 3 Euler-a steps gave NaN (float32 sigmas)
        r = generate(gp(steps=steps, scheduler=scheduler), str(cosine_model))
        assert r.trajectory.steps == steps
        assert np.isfinite(r.trajectory.latent_norm).all() and r.images[0].std() > 0


def test_schedulers_give_different_images(tiny_model):
    a = generate(gp(scheduler="ddim"), str(tiny_model)).images[0]
    b = generate(gp(scheduler="euler-a"), str(tiny_model)).images[0]
    assert diff(a, b).max() > 0


def test_seed_determinism_and_random_seed_recorded(sd_model):
    a = generate(gp(seed=11), sd_model)
    b = generate(gp(seed=11), sd_model)
    c = generate(gp(seed=12), sd_model)
    assert np.array_equal(a.images[0], b.images[0])
    assert not np.array_equal(a.images[0], c.images[0])
    r = generate(gp(seed=-1), sd_model)
    assert 0 <= r.seeds[0] < 2**32 and r.params["seed"] == r.seeds[0]
    again = generate(gp(seed=r.seeds[0]), sd_model)
    assert np.array_equal(r.images[0], again.images[0])


def test_batch_size_and_count(tiny_model):
    r = generate(gp(seed=100, batch_size=2, batch_count=2, scheduler="euler-a"), str(tiny_model))
    assert len(r.images) == 4 and r.seeds == [100, 101, 102, 103]
    assert r.trajectory.latent_norm.shape == (3, 4) and r.trajectory.thumbnails.shape[:2] == (3, 4)
    # each image depends on its own seed only, not on its place in a batch
    single = generate(gp(seed=103, scheduler="euler-a"), str(tiny_model))
    assert diff(single.images[0], r.images[3]).max() <= 2
    assert r.metadata(3)["seed"] == 103


def test_progress_preview_and_cancel(tiny_model):
    calls, previews = [], []
    r = generate(gp(steps=4, batch_count=2), str(tiny_model), on_progress=lambda i, n, m: calls.append((i, n, m)),
                 on_preview=previews.append)
    assert [c[0] for c in calls] == list(range(1, 9)) and all(c[1] == 8 for c in calls)
    assert calls[0][2] == "batch 1/2, step 1/4" and calls[-1][2] == "batch 2/2, step 4/4"
    assert len(previews) == 8 and previews[0].shape == (64, 64, 3) and previews[0].dtype == np.uint8
    assert len(r.images) == 2

    seen = []
    with pytest.raises(Cancelled):
        generate(gp(steps=6), str(tiny_model), on_progress=lambda i, n, m: seen.append(i),
                 is_cancelled=lambda: len(seen) >= 2)
    assert seen == [1, 2]


def test_trajectory_is_recorded(tiny_model, tmp_path):
    from plugins.diffusion_common.sampling import Trajectory, compare_trajectories

    r = generate(gp(steps=5, scheduler="ddim"), str(tiny_model))
    tr = r.trajectory
    assert tr.steps == 5 and tr.batch == 1
    assert np.all(np.diff(tr.timesteps) < 0) and np.all(np.diff(tr.sigmas) < 0)
    assert tr.thumbnails.shape == (5, 1, 8, 8, 3) and tr.thumbnails.dtype == np.uint8
    assert tr.meta["scheduler"] == "ddim" and tr.labels == ["seed 7"]
    path = tmp_path / "t.npz"
    tr.to_npz(path)
    back = Trajectory.from_npz(path)
    assert np.array_equal(back.thumbnails, tr.thumbnails) and back.meta == tr.meta
    assert Trajectory.from_npz(tr.to_bytes()).steps == 5
    other = generate(gp(steps=3, scheduler="euler"), str(tiny_model)).trajectory
    cmp = compare_trajectories(tr, other)
    assert len(cmp["progress"]) == 3 and cmp["thumb_diff"].shape == (3,)
    assert len(tr.rows()) == 5 and tr.rows()[0][0] == 1
    same = compare_trajectories(tr, tr)
    assert np.all(same["thumb_diff"] == 0)


def test_image_to_image(sd_model, tmp_path):
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    init = np.full((64, 64, 3), 40, np.uint8)
    init[(yy - 32) ** 2 + (xx - 32) ** 2 < 15 ** 2] = (230, 30, 30)
    calls = []
    r = generate(gp(steps=10, init_image=init, strength=0.3), sd_model, on_progress=lambda i, n, m: calls.append(i))
    assert len(calls) == 3  # int(10 * 0.3) steps run
    assert r.images[0].shape == (64, 64, 3)
    path = tmp_path / "init.png"
    Image.fromarray(init).save(path)
    from_file = generate(gp(steps=10, init_image=str(path), strength=0.3), sd_model)
    assert np.array_equal(from_file.images[0], r.images[0])
    full = generate(gp(steps=10, init_image=init, strength=1.0), sd_model)
    assert not np.array_equal(full.images[0], r.images[0])
    with pytest.raises(ParamError, match="leaves no step"):
        generate(gp(steps=2, init_image=init, strength=0.2), sd_model)
    with pytest.raises(ParamError, match="not found"):
        generate(gp(init_image=str(tmp_path / "missing.png")), sd_model)


def test_image_to_image_keeps_the_picture_at_low_strength(sd_model):
    from plugins.diffusion_common.backends import TorchSDBackend
    from plugins.diffusion_common.models import load_pipeline

    yy, xx = np.mgrid[0:64, 0:64]
    init = np.full((64, 64, 3), 40, np.uint8)
    init[(yy - 32) ** 2 + (xx - 32) ** 2 < 15 ** 2] = (230, 30, 30)
    # what the VAE alone makes of the picture (a random tiny VAE does not reproduce it)
    import torch

    be = TorchSDBackend(load_pipeline(sd_model))
    x = torch.from_numpy(init.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    recon = np.round(((be.decode(be.encode(x))[0].permute(1, 2, 0).numpy() / 2 + 0.5).clip(0, 1)) * 255)
    low = generate(gp(steps=20, init_image=init, strength=0.1, guidance=1.0), sd_model).images[0]
    high = generate(gp(steps=20, init_image=init, strength=1.0, guidance=1.0), sd_model).images[0]
    assert np.abs(low - recon).mean() < np.abs(high - recon).mean()


def test_size_validation(tiny_model):
    r = generate(gp(width=96, height=64, steps=2), str(tiny_model))
    assert r.images[0].shape == (64, 96, 3)
    with pytest.raises(ParamError, match="70 is not a multiple of 8.*64 or 72"):
        generate(gp(width=70), str(tiny_model))
    with pytest.raises(ParamError, match="too small"):
        generate(gp(height=4), str(tiny_model))
    with pytest.raises(ParamError, match="multiple of 16"):
        generate(gp(width=72, steps=2), str(tiny_model), backend="onnx", ort_threads=1)


def test_bad_parameters(tiny_model):
    for kw, word in [(dict(steps=0), "Steps"), (dict(guidance=-1), "Guidance"), (dict(scheduler="restart"), "Scheduler"),
                     (dict(schedule="polyexponential"), "Schedule"),
                     (dict(scheduler="ddim", schedule="karras"), "Schedule: the Karras schedule does not apply"),
                     (dict(batch_size=0), "Batch size"), (dict(seed=2**40), "Seed"), (dict(clip_skip=5), "Clip skip"),
                     (dict(preset="fast"), "Preset")]:
        with pytest.raises(ParamError, match=word):
            generate(gp(**kw), str(tiny_model))
    with pytest.raises(ParamError, match="Backend"):
        generate(gp(), str(tiny_model), backend="tensorrt")


def test_empty_prompt_is_allowed_with_a_warning(tiny_model):
    r = generate(gp(prompt="   ", steps=2), str(tiny_model))
    assert len(r.images) == 1
    assert any("prompt is empty" in w for w in r.warnings)


def test_long_prompt_warns(tiny_model):
    r = generate(gp(prompt="red " * 100, steps=1), str(tiny_model))
    assert any("cut off" in w for w in r.warnings)


def test_clip_skip_changes_the_conditioning(tiny_model):
    a = generate(gp(clip_skip=0), str(tiny_model)).images[0]
    b = generate(gp(clip_skip=1), str(tiny_model)).images[0]
    assert diff(a, b).max() > 0


def test_speed_presets_set_steps_guidance_scheduler(tiny_model):
    calls = []
    r = generate(gp(preset="lcm", steps=30, guidance=7.0), str(tiny_model), on_progress=lambda i, n, m: calls.append(n))
    assert (r.params["steps"], r.params["guidance"], r.params["scheduler"]) == (4, 1.0, "lcm")
    assert calls[-1] == 4
    t = generate(gp(preset="turbo"), str(tiny_model))
    assert t.params["steps"] == 1 and t.trajectory.steps == 1


def test_seed_grid_sweep(tiny_model):
    grid, results = sweep(gp(steps=2), "seed", "1, 2, 3", str(tiny_model))
    assert [r.seeds[0] for r in results] == [1, 2, 3]
    assert grid.ndim == 3 and grid.shape[1] >= 2 * 64 and grid.shape[0] >= 2 * 64
    grid2, res2 = sweep(gp(steps=2, seed=5), "scheduler", ["ddim", "euler"], str(tiny_model))
    assert [r.params["scheduler"] for r in res2] == ["ddim", "euler"]
    assert parse_sweep_values("guidance", "1, 2.5") == [1.0, 2.5]
    with pytest.raises(ParamError, match="not valid"):
        parse_sweep_values("steps", "1, many")
    with pytest.raises(ParamError, match="sweep one of"):
        parse_sweep_values("width", "1")
    assert make_grid([np.zeros((8, 8, 3), np.uint8)] * 3).shape[:2] == (2 + 2 * 10, 2 + 2 * 10)


def test_out_of_memory_becomes_a_message(tiny_model, monkeypatch):
    import torch

    from plugins.diffusion_common.models import load_pipeline

    unet = load_pipeline(str(tiny_model)).pipe.unet

    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(unet, "forward", boom)
    with pytest.raises(ModelError, match="out of memory.*smaller size"):
        generate(gp(), str(tiny_model))


def test_torch_and_onnx_runtime_agree(sd_model):
    params = gp(steps=4, scheduler="euler-a", batch_size=2)
    t = generate(params, sd_model, backend="torch")
    o = generate(params, sd_model, backend="onnx", ort_threads=1)
    assert o.backend == "onnx" and "CPUExecutionProvider" in o.device
    for a, b in zip(t.images, o.images):
        d = diff(a, b)
        assert d.max() <= 3 and d.mean() < 0.5
    assert np.allclose(t.trajectory.latent_norm, o.trajectory.latent_norm, rtol=1e-3)
    from plugins.diffusion_common.models import load_pipeline

    if load_pipeline(sd_model).pipe.text_encoder.config.num_hidden_layers < 2:
        return  # no clip skip on a one-layer text encoder
    ts = generate(gp(steps=2, clip_skip=1), sd_model, backend="torch").images[0]
    os_ = generate(gp(steps=2, clip_skip=1), sd_model, backend="onnx", ort_threads=1).images[0]
    assert diff(ts, os_).max() <= 3


def test_onnx_export_is_cached_by_model_hash(tiny_model):
    from plugins.diffusion_common.backends import export_onnx, onnx_export_dir
    from plugins.diffusion_common.models import load_pipeline

    loaded = load_pipeline(str(tiny_model))
    folder = export_onnx(loaded)
    assert folder == onnx_export_dir(loaded.hash)
    stamp = (folder / "unet" / "model.onnx").stat().st_mtime_ns
    assert export_onnx(loaded) == folder
    assert (folder / "unet" / "model.onnx").stat().st_mtime_ns == stamp
    for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder", "tokenizer", "scheduler"):
        assert (folder / part).is_dir()


def test_sdxl_structured_model_runs_through_its_pipeline(tmp_path_factory):
    from plugins.diffusion_common.tiny import build_tiny_sdxl_pipeline

    folder = build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny_sdxl") / "xl", seed=0)
    previews, calls = [], []
    r = generate(gp(steps=3, batch_size=2, scheduler="euler"), str(folder), on_preview=previews.append,
                 on_progress=lambda i, n, m: calls.append(i))
    assert r.model["arch"] == "sdxl" and len(r.images) == 2 and r.images[0].shape == (64, 64, 3)
    assert calls == [1, 2, 3] and len(previews) == 3
    assert r.trajectory.latent_norm.shape == (3, 2) and np.all(np.diff(r.trajectory.sigmas) < 0)
    again = generate(gp(steps=3, batch_size=2, scheduler="euler"), str(folder))
    assert np.array_equal(again.images[1], r.images[1])
    i2i = generate(gp(steps=4, init_image=r.images[0], strength=0.5, scheduler="dpmpp-2m"), str(folder))
    assert i2i.trajectory.steps == 2
    with pytest.raises(ParamError, match="ONNX backend runs SD-structured"):
        generate(gp(), str(folder), backend="onnx")
    seen = []
    with pytest.raises(Cancelled):
        generate(gp(steps=5), str(folder), on_progress=lambda i, n, m: seen.append(i), is_cancelled=lambda: len(seen) >= 2)
    assert seen == [1, 2]


def test_a_shipped_export_of_the_same_model_is_used(tiny_model, tmp_path):
    import shutil

    from plugins.diffusion_common.backends import export_onnx, ort_backend_for, shipped_export_for
    from plugins.diffusion_common.models import load_pipeline

    loaded = load_pipeline(str(tiny_model))
    shipped = tmp_path / "res" / "models" / "default-onnx"
    shutil.copytree(export_onnx(loaded), shipped)
    assert shipped_export_for(loaded.hash, [tmp_path / "nothing", shipped]) == shipped
    assert ort_backend_for(loaded, threads=1, shipped=[shipped]).folder == shipped
    assert shipped_export_for("0" * 64, [shipped]) is None


def test_onnx_runs_an_existing_export_without_loading_torch_weights(tiny_model, monkeypatch):
    from plugins.diffusion_common import models

    first = generate(gp(steps=2), str(tiny_model), backend="onnx", ort_threads=1)  # exports if needed
    native = generate(gp(steps=1), str(tiny_model)).images[0].shape

    def no_loading(*a, **k):
        raise AssertionError("the torch pipeline was loaded")

    monkeypatch.setattr(models, "load_pipeline", no_loading)  # generate() imports it from the module
    again = generate(gp(steps=2), str(tiny_model), backend="onnx", ort_threads=1)
    assert np.array_equal(first.images[0], again.images[0])
    assert again.model["onnx_export"] == first.model["onnx_export"]
    assert again.images[0].shape == native  # the model's own size, not an export default


def test_vae_thumbnails_are_real_decodes(tiny_model):
    previews = []
    r = generate(gp(steps=3, scheduler="ddim", width=96), str(tiny_model), thumbnails="vae", on_preview=previews.append)
    assert previews[0].shape == (64, 96, 3)
    tr = r.trajectory
    assert tr.thumbnails.shape == (3, 1, 64, 96, 3) and tr.meta["thumbnail_decode"] == "VAE decode"
    # the last predicted x0 of DDIM is the final latent, so its decode is the image
    assert np.abs(tr.thumbnails[-1, 0].astype(int) - r.images[0].astype(int)).max() <= 30
    with pytest.raises(ParamError, match="Thumbnails"):
        generate(gp(), str(tiny_model), thumbnails="slow")
