import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipe(tmp_path_factory):
    import torch
    from diffusers import StableDiffusionPipeline

    from plugins.diffusion_common.tiny import build_tiny_pipeline

    torch.set_num_threads(1)
    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"), seed=0)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def test_image():
    """A 64x64 picture with a red disc on a grey background."""
    import numpy as np

    yy, xx = np.mgrid[0:64, 0:64]
    img = np.full((64, 64, 3), 150, np.uint8)
    disc = (yy - 30) ** 2 + (xx - 34) ** 2 < 14 ** 2
    img[disc] = (220, 30, 30)
    return img


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
    """The tiny model declared as v-predicting (like the bundled model)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sched = DDIMScheduler.from_config(tiny_pipe.scheduler.config, prediction_type="v_prediction")
    return StableDiffusionPipeline(**{**tiny_pipe.components, "scheduler": sched})
