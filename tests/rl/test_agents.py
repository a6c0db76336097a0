"""Agents: tiny training runs (loop works, never to solve), save/load, foreign loaders, recording."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from plugins.rl.agents import Agent, AgentConfig
from plugins.rl.distributions import CATEGORICAL, QUANTILES, SAMPLED_QUANTILES, distortion
from plugins.rl.loaders import AgentFormatError, load_agent, load_cleanrl, load_sb3_qrdqn
from plugins.rl.record import annotate, record
from plugins.rl.render import render_frame
from plugins.rl.trajectory import read_trajectory, write_trajectory
from plugins.rl.train import TrainConfig, evaluate, run_training, train

torch.set_num_threads(1)


def tiny(algo, **kw):
    base = dict(algo=algo, total_steps=400, learning_starts=100, train_freq=50, gradient_steps=5,
                target_update=100, batch_size=16, hidden=[16, 16], eval_every=0, n_quantiles=8, iqn_n=8,
                iqn_n_prime=8, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("algo,kind", [("c51", CATEGORICAL), ("qr-dqn", QUANTILES), ("iqn", SAMPLED_QUANTILES)])
def test_tiny_training_loop_runs_and_learns_something(algo, kind):
    events = list(train(tiny(algo)))
    kinds = {e["kind"] for e in events}
    assert {"episode", "done"} <= kinds
    res = events[-1]["result"]
    assert res.steps == 400 and not res.cancelled
    assert len(res.episode_returns) >= 5 and all(r > 0 for r in res.episode_returns)
    # weights moved away from the initialisation and the loss is finite
    assert np.isfinite([e["loss"] for e in events if e["kind"] == "episode"][-1])
    d = res.agent.distribution(np.zeros((3, 4), np.float32))
    assert d.kind == kind and d.batch_shape == (3, 2)
    assert np.all(np.isfinite(d.mean()))


def test_training_is_seeded_and_cancellable():
    a = run_training(tiny("qr-dqn", total_steps=300))
    b = run_training(tiny("qr-dqn", total_steps=300))
    assert a.episode_returns == b.episode_returns
    torch.testing.assert_close(a.agent.net.state_dict()["net.0.weight"], b.agent.net.state_dict()["net.0.weight"])
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    c = run_training(tiny("c51", total_steps=5000), cancel=cancel)
    assert c.cancelled and c.steps < 5000


def test_evaluation_reports_returns_and_solve_flag():
    cfg = tiny("qr-dqn", total_steps=300, eval_every=150, eval_episodes=2, solve_threshold=1.0)
    res = run_training(cfg)
    assert res.evals and res.solved and res.solved_step == 150  # threshold 1 is met by any episode
    assert res.evals[0]["mean"] >= 1


def test_save_and_load_roundtrip(tmp_path):
    for algo in ("c51", "qr-dqn", "iqn"):
        ag = Agent(AgentConfig(algo=algo, env_id="CartPole-v1", obs_dim=4, n_actions=2, hidden=[8, 8]))
        cfg_path = ag.save(tmp_path, f"a-{algo}")
        back = load_agent(cfg_path)
        obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        np.testing.assert_allclose(back.q_values(obs), ag.q_values(obs), rtol=1e-6)
        assert load_agent(tmp_path / f"a-{algo}.safetensors").algo == algo
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="not an Implicit Studio agent"):
        load_agent(tmp_path / "junk.json")


# ---------------------------------------------------------------- cleanrl


class CleanrlC51(torch.nn.Module):
    """The network layout of cleanrl's c51.py (written here to produce a real state_dict)."""

    def __init__(self, obs=4, n=2, n_atoms=101, v_min=-100, v_max=100):
        super().__init__()
        self.n, self.n_atoms = n, n_atoms
        self.register_buffer("atoms", torch.linspace(v_min, v_max, steps=n_atoms))
        self.network = torch.nn.Sequential(torch.nn.Linear(obs, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84),
                                           torch.nn.ReLU(), torch.nn.Linear(84, n * n_atoms))

    def pmfs(self, x):
        return torch.softmax(self.network(x).view(len(x), self.n, self.n_atoms), dim=2)


def test_cleanrl_loader(tmp_path):
    torch.manual_seed(0)
    net = CleanrlC51(v_min=-50, v_max=150, n_atoms=51)
    path = tmp_path / "c51.cleanrl_model"
    torch.save({"model_weights": net.state_dict(),
                "args": {"env_id": "CartPole-v1", "n_atoms": 51, "v_min": -50.0, "v_max": 150.0, "gamma": 0.98,
                         "exp_name": "c51", "seed": 1}}, path)
    agent = load_agent(path)
    assert agent.cfg.source == "cleanrl" and agent.cfg.gamma == 0.98 and agent.cfg.hidden == [120, 84]
    obs = torch.randn(6, 4)
    d = agent.distribution(obs.numpy())
    assert d.kind == CATEGORICAL and d.atoms[0] == -50 and d.atoms[-1] == 150
    np.testing.assert_allclose(d.probs, net.pmfs(obs).double().detach().numpy(), atol=1e-6)


class NotWeights:
    """An arbitrary object: loading it would need full unpickling."""


def test_cleanrl_loader_rejects_dqn_and_pickles(tmp_path):
    dqn = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    p = tmp_path / "dqn.cleanrl_model"
    torch.save({"network." + k: v for k, v in dqn.state_dict().items()}, p)
    with pytest.raises(AgentFormatError, match="not a cleanrl C51 model"):
        load_cleanrl(p)

    torch.save({"model_weights": NotWeights()}, tmp_path / "evil.cleanrl_model")
    with pytest.raises(AgentFormatError, match="weights only"):
        load_cleanrl(tmp_path / "evil.cleanrl_model")


# ---------------------------------------------------------------- sb3-contrib QR-DQN


def make_sb3_zip(path, n_quantiles=10, n_actions=2, obs_dim=4, arch=(32, 32), seed=0, pickled_field=True):
    """A zip laid out like sb3-contrib's QR-DQN save: data (JSON with cloudpickle fields),
    policy.pth (state_dict with online and target networks), version file."""
    torch.manual_seed(seed)
    sizes = [obs_dim, *arch, n_actions * n_quantiles]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.ReLU()]
    mlp = torch.nn.Sequential(*layers[:-1])
    sd = {}
    for k, v in mlp.state_dict().items():
        sd[f"quantile_net.quantile_net.{k}"] = v
        sd[f"quantile_net_target.quantile_net.{k}"] = v.clone()
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = {
        "policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": "gAWVMAAAAAAAAACMHnNiM19jb250cmli"},
        "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": "gAWV",
                              "dtype": "float32", "_shape": [obs_dim], "low": "[-4.8 -inf]"},
        "action_space": {":type:": "<class 'gymnasium.spaces.discrete.Discrete'>", ":serialized:": "gAWV",
                         "n": str(n_actions), "start": "0", "_shape": []},
        "gamma": 0.99,
        "policy_kwargs": ({":type:": "<class 'dict'>", ":serialized:": "gAWV", "net_arch": list(arch),
                           "n_quantiles": n_quantiles,
                           "activation_fn": "<class 'torch.nn.modules.activation.ReLU'>"}
                          if pickled_field else {"net_arch": list(arch), "n_quantiles": n_quantiles}),
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", buf.getvalue())
        z.writestr("policy.optimizer.pth", b"")
        z.writestr("_stable_baselines3_version", "2.4.0")
        z.writestr("system_info.txt", "OS: test")
    return mlp


@pytest.mark.parametrize("pickled_field", [True, False])
def test_sb3_qrdqn_loader_normalises_axis_order(tmp_path, pickled_field):
    p = tmp_path / "qrdqn.zip"
    mlp = make_sb3_zip(p, n_quantiles=10, n_actions=3, obs_dim=6, pickled_field=pickled_field)
    agent = load_sb3_qrdqn(p)
    assert agent.cfg.n_quantiles == 10 and agent.cfg.n_actions == 3 and agent.cfg.env_id == "Acrobot-v1"
    obs = torch.randn(5, 6)
    sb3_view = mlp(obs).view(-1, 10, 3)                         # (batch, n_quantiles, n_actions)
    ours = agent.net(obs)                                       # (batch, actions, quantiles)
    torch.testing.assert_close(ours, sb3_view.transpose(1, 2))
    np.testing.assert_allclose(agent.q_values(obs.numpy()), sb3_view.mean(1).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert load_agent(p).cfg.source == "sb3-contrib"


def test_sb3_loader_errors(tmp_path):
    p = tmp_path / "x.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("data", "{}")
    with pytest.raises(AgentFormatError, match="no policy.pth"):
        load_sb3_qrdqn(p)
    with zipfile.ZipFile(p, "w") as z:
        buf = io.BytesIO()
        torch.save({"q_net.q_net.0.weight": torch.zeros(2, 4)}, buf)
        z.writestr("policy.pth", buf.getvalue())
    with pytest.raises(AgentFormatError, match="only sb3-contrib QR-DQN"):
        load_sb3_qrdqn(p)


# ---------------------------------------------------------------- recording


def test_record_annotate_and_risk(tmp_path):
    res = run_training(tiny("qr-dqn", total_steps=300))
    traj = record(res.agent, episodes=2, seed=5, frames=True, max_steps=60)
    assert traj.n_episodes == 2 and traj.frames.shape[1:] == (240, 360, 3)
    assert traj.dist.batch_shape == (len(traj), 2)
    path = write_trajectory(tmp_path / "rec.npz", traj)
    back = read_trajectory(path)
    assert not [i for i in back.issues if i.severity == "error"]
    np.testing.assert_allclose(back.dist.mean(), traj.dist.mean(), atol=1e-4)
    # the recorded policy is greedy on the mean of the recorded distributions
    assert np.all(traj.action == np.argmax(traj.dist.mean(), axis=1))
    # a second agent on the same episode (compare checkpoints)
    other = Agent(AgentConfig(algo="c51", env_id="CartPole-v1", obs_dim=4, n_actions=2, hidden=[8]))
    t2 = annotate(traj, other)
    assert t2.dist.kind == CATEGORICAL and np.array_equal(t2.action, traj.action)
    # risk-sensitive acting through IQN's own distorted levels
    iqn = run_training(tiny("iqn", total_steps=200)).agent
    a = iqn.act(np.zeros((4, 4), np.float32), risk=distortion("cvar", 0.1))
    assert a.shape == (4,)
    rets = evaluate(iqn, "CartPole-v1", episodes=2, max_steps=20)
    assert rets.shape == (2,) and np.all(rets > 0)


def test_renderers_draw_cartpole_and_acrobot():
    upright = render_frame("CartPole-v1", [0, 0, 0, 0])
    tilted = render_frame("CartPole-v1", [1.0, 0, 0.2, 0])
    assert upright.shape == (240, 360, 3) and upright.dtype == np.uint8
    assert (upright < 128).any() and not np.array_equal(upright, tilted)
    # the pole colour sits above the cart centre when upright
    pole = np.all(np.abs(upright.astype(int) - [202, 152, 101]) < 20, axis=-1)
    ys, xs = np.nonzero(pole)
    assert abs(xs.mean() - 180) < 3 and ys.mean() < 240 * 0.6
    acro = render_frame("Acrobot-v1", [1, 0, 1, 0, 0, 0])
    assert acro.shape == (240, 240, 3) and (acro != 255).any()
    assert render_frame("Pendulum-v1", [0.5, -0.5, 1.0]).shape == (160, 240, 3)


def test_loader_reads_a_real_sb3_contrib_file(tmp_path):
    """With sb3-contrib installed (benchmark extra, not a runtime dependency): a zip saved by the
    library itself loads, and our network reproduces its quantiles in our axis order."""
    sb3c = pytest.importorskip("sb3_contrib")
    import gymnasium as gym

    model = sb3c.QRDQN("MlpPolicy", gym.make("CartPole-v1"), policy_kwargs=dict(net_arch=[32, 32], n_quantiles=7),
                       learning_starts=0, seed=0, device="cpu")
    path = tmp_path / "qrdqn_cartpole.zip"
    model.save(path)
    agent = load_agent(path)
    assert agent.cfg.n_quantiles == 7 and agent.cfg.hidden == [32, 32] and agent.cfg.env_id == "CartPole-v1"
    obs = torch.randn(5, 4)
    theirs = model.policy.quantile_net(obs).detach()            # (batch, quantiles, actions)
    torch.testing.assert_close(agent.net(obs).detach(), theirs.transpose(1, 2))
