"""The trajectory viewer widget (offscreen Qt)."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")


def make_traj(steps, seed, scheduler):
    from plugins.diffusion_common.sampling import Trajectory

    rng = np.random.default_rng(seed)
    return Trajectory(
        timesteps=np.linspace(999, 1, steps).astype(np.float32),
        sigmas=np.geomspace(14.6, 0.03, steps).astype(np.float32),
        latent_norm=rng.uniform(5, 20, (steps, 2)).astype(np.float32),
        x0_norm=rng.uniform(5, 20, (steps, 2)).astype(np.float32),
        thumbnails=rng.integers(0, 256, (steps, 2, 8, 8, 3), dtype=np.uint8),
        labels=[f"seed {seed}", f"seed {seed + 1}"], meta={"scheduler": scheduler, "prompt": "a red circle"})


def test_viewer_shows_filmstrip_curves_and_compares(qtbot):
    from app.api import FileResult
    from plugins.text_to_image.trajectory_view import TrajectoryViewer

    w = TrajectoryViewer()
    qtbot.addWidget(w)
    a = make_traj(10, 1, "ddim")
    w.set_result(FileResult(data=a.to_bytes(), ext=".npz", metadata={"role": "trajectory"}))
    assert len(w.strip_a.labels) == 10 and "ddim" in w.title.text()
    assert len(w.norm_plot.listDataItems()) == 1
    w.slider.setValue(4)
    assert "step 5/10" in w.step_label.text()
    w.image_index.setValue(1)
    assert w.image_index.maximum() == 1

    w.pin()
    b = make_traj(4, 5, "euler")
    w.set_result(FileResult(data=b.to_bytes(), ext=".npz", metadata={"role": "trajectory"}))
    assert len(w.strip_a.labels) == 10 and len(w.strip_b.labels) == 4
    assert len(w.norm_plot.listDataItems()) == 2 and len(w.diff_plot.listDataItems()) == 1
    assert w.comparison["thumb_diff"].shape == (4,)
    assert "A: ddim" in w.title.text() and "B: euler" in w.title.text()
    w.unpin()
    assert len(w.norm_plot.listDataItems()) == 1
    img = w.grab().toImage()
    assert img.width() > 0


def test_viewer_describes_other_files(qtbot):
    from app.api import FileResult
    from plugins.text_to_image.trajectory_view import TrajectoryViewer

    w = TrajectoryViewer()
    qtbot.addWidget(w)
    w.set_result(FileResult(data=b"hello", ext=".gif", label="anim"))
    assert "not a denoising trajectory" in w.title.text()
    assert not w.slider.isEnabled()
