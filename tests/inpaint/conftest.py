import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipe(tmp_path_factory):
    import torch
    from diffusers import StableDiffusionPipeline

    from plugins.diffusion_common.tiny import build_tiny_pipeline

    torch.set_num_threads(1)
    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd_inpaint"), seed=1)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_inpaint_pipe(tiny_pipe):
    """The same tiny model with a 9-channel UNet (latent, mask, masked-image latent)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(2)
    cfg = dict(tiny_pipe.unet.config)
    cfg["in_channels"] = 9
    unet = UNet2DConditionModel.from_config(cfg).eval()
    return StableDiffusionPipeline(vae=tiny_pipe.vae, text_encoder=tiny_pipe.text_encoder,
                                   tokenizer=tiny_pipe.tokenizer, unet=unet, scheduler=tiny_pipe.scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="session")
def scene():
    """64x64 image (red square on grey) and a box mask over part of it."""
    import numpy as np

    img = np.full((64, 64, 3), 150, np.uint8)
    img[20:40, 20:40] = (220, 30, 30)
    mask = np.zeros((64, 64), bool)
    mask[17:43, 23:50] = True
    return img, mask


@pytest.fixture
def run_tool(studio_manager):
    """Run a tool to completion through the studio's job runner (no session store needed)."""
    from app.jobs import JobRunner, JobState
    from app.testing import ToolRunError

    runner = JobRunner(studio_manager, None, device="cpu")

    def _run(tool_id, **params):
        job = runner.run_sync(tool_id, params, device="cpu")
        if job.state is not JobState.FINISHED:
            raise ToolRunError(f"{tool_id} {job.state.value}: {job.error}\n{job.traceback or ''}")
        return job.results

    return _run


@pytest.fixture(scope="session")
def tiny_vpred_pipe(tiny_pipe):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sched = DDIMScheduler.from_config(tiny_pipe.scheduler.config, prediction_type="v_prediction")
    return StableDiffusionPipeline(**{**tiny_pipe.components, "scheduler": sched})
