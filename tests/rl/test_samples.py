"""The bundled agents and trajectories (made by `python -m lab.rl_samples`) load cleanly."""

import json

import numpy as np
import pytest
import torch

from app.paths import resources_dir
from plugins.rl.loaders import load_agent
from plugins.rl.trajectory import calibration, read_trajectory

torch.set_num_threads(1)
SAMPLES = resources_dir() / "samples" / "rl"
NAMES = ["cartpole-c51", "cartpole-qr-dqn", "cartpole-iqn", "acrobot-qr-dqn"]


@pytest.mark.parametrize("name", NAMES)
def test_bundled_sample(name):
    agent = load_agent(SAMPLES / f"{name}.json")
    traj = read_trajectory(SAMPLES / f"{name}.npz")
    assert not [i for i in traj.issues if i.severity == "error"]
    assert traj.dist.kind == {"c51": "categorical", "qr-dqn": "quantiles", "iqn": "sampled_quantiles"}[agent.algo]
    assert traj.env_id == agent.cfg.env_id and traj.n_episodes == 2
    # the recorded actions are the agent's greedy actions on the recorded observations (up to float
    # ties: recording evaluates one observation at a time, this a batch)
    q = agent.q_values(traj.obs)
    differ = agent.act(traj.obs) != traj.action
    gap = np.abs(q.max(1) - q[np.arange(len(traj)), traj.action])
    assert np.all(gap[differ] < 1e-3), gap[differ]
    cal = calibration(traj, exclude_truncated=False)
    assert cal.n_states == len(traj)


def test_training_record_and_size():
    runs = json.loads((SAMPLES / "training.json").read_text())["runs"]
    assert set(NAMES) <= set(runs)
    total = sum(p.stat().st_size for p in SAMPLES.iterdir())
    assert total < 3 * 1024 * 1024, f"bundled RL samples take {total / 1e6:.1f} MB"
