"""The RL plugin's glue: conformance (cheap import, references resolve), tool run functions,
reader and writer."""

import numpy as np
import pytest
import torch

from app import api
from app.testing import assert_plugin_conforms
from plugins.rl import tools
from plugins.rl.trajectory import read_trajectory

torch.set_num_threads(1)


def test_plugin_conforms():
    out = assert_plugin_conforms("plugins.rl.plugin")
    assert {"rl-train", "rl-record", "rl-annotate", "rl-calibration"} <= set(out["tools"])
    assert out["qt_refs"] == ["plugins.rl.views:EpisodeViewer"]


def ctx_with_metrics():
    metrics = []
    progress = []
    ctx = api.RunContext(on_metric=lambda n, s, v: metrics.append((n, s, v)),
                         on_progress=lambda s, t, m: progress.append((s, t)))
    return ctx, metrics, progress


def test_train_then_record_then_read(tmp_path, run_tool):
    # through the studio (the run_tool fixture): rl-train records its episodes by running rl-record
    res = run_tool("rl-train", algo="c51", env="CartPole-v1", steps=1200, seed=1, save_to=str(tmp_path / "agent"),
                   record_episodes=1, hidden=16)
    table, weights, series, traj_file, metrics_table = res
    assert isinstance(table, api.TableResult) and isinstance(series, api.DistributionSeries)
    assert weights.path.endswith("cartpole-c51.safetensors") and traj_file.path.endswith(".npz")
    assert series.representation == "categorical" and series.weights.shape[1:] == (2, 51)
    assert metrics_table.label == "metrics" and any(r[0] == "episode return" for r in metrics_table.rows)
    agent_json = tmp_path / "agent" / "cartpole-c51.json"
    assert agent_json.exists() and (tmp_path / "agent" / "cartpole-c51.safetensors").exists()
    # the recording is a child run of the training, with the agent file and its own seed recorded
    job = run_tool.last_job
    (child,) = run_tool.session.children(job.run_id)
    assert child.tool_id == "rl-record" and child.status == "ok" and child.seed == 1001
    assert child.params["agent"] == weights.path and child.params["episodes"] == 1
    assert read_trajectory(traj_file.path).n_episodes == 1
    # a plain context (no studio) says what it cannot do instead of failing obscurely
    with pytest.raises(api.ToolError, match="cannot run the tool 'rl-record'"):
        tools.run_train(api.RunContext(), algo="c51", steps=500, seed=1, save_to=str(tmp_path / "plain"),
                        record_episodes=1, hidden=8)

    ctx2, _, _ = ctx_with_metrics()
    out = tools.run_record(ctx2, agent=str(agent_json), episodes=2, seed=4, save_to=str(tmp_path / "rec"),
                           risk="cvar", risk_param=0.25)
    s2, episodes, f = out
    assert isinstance(f, api.FileResult) and f.path.endswith(".npz")
    assert len(episodes.rows) == 2
    traj = read_trajectory(f.path)
    assert traj.header["policy"]["risk"] == ["cvar", 0.25]
    # reader hook gives the same series back
    read = tools.read_trajectory_file(f.path)
    np.testing.assert_allclose(read[0].weights, s2.weights)
    # the series alone is enough to rebuild a viewable trajectory
    t2 = tools.series_to_trajectory(api.DistributionSeries(
        support=s2.support, weights=s2.weights, representation=s2.representation,
        series_labels=s2.series_labels, metadata={k: v for k, v in s2.metadata.items() if k != "trajectory"}))
    np.testing.assert_array_equal(t2.action, traj.action)
    np.testing.assert_allclose(t2.dist.mean(), traj.dist.mean(), atol=1e-4)
    # CSV writer
    csv = tmp_path / "stats.csv"
    tools.write_distribution_csv(s2, str(csv))
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("step,episode,action_taken,reward,mc_return,series,mean,std,var_0.05")
    assert len(lines) == 1 + 2 * len(traj)
    # calibration tool
    pit, cov = tools.run_calibration(api.RunContext(), trajectory=f.path, exclude_truncated=False)
    assert len(pit.rows) == 10 and abs(sum(r[2] for r in pit.rows) - 1) < 1e-6


def test_tool_errors_are_user_messages(tmp_path):
    with pytest.raises(api.ToolError, match="agent not found"):
        tools.run_record(api.RunContext(), agent=str(tmp_path / "none.json"), save_to=str(tmp_path))
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a trajectory file"):
        tools.read_trajectory_file(str(tmp_path / "x.npz"))
    with pytest.raises(api.ToolError, match="unknown distortion|CVaR level"):
        p = tmp_path / "a"
        from plugins.rl.agents import Agent, AgentConfig
        cfgp = Agent(AgentConfig(algo="qr-dqn", env_id="CartPole-v1", obs_dim=4, n_actions=2, hidden=[4])).save(p, "a")
        tools.run_record(api.RunContext(), agent=str(cfgp), risk="cvar", risk_param=3.0, save_to=str(tmp_path))


def test_annotate_minari_with_agent(tmp_path):
    from tests.rl.test_trajectory import write_minari
    from plugins.rl.agents import Agent, AgentConfig

    write_minari(tmp_path / "main_data.hdf5", [6, 4])
    cfgp = Agent(AgentConfig(algo="iqn", env_id="CartPole-v1", obs_dim=4, n_actions=2, hidden=[8])).save(tmp_path, "iqn")
    series, table, f = tools.run_annotate(api.RunContext(), trajectory=str(tmp_path / "main_data.hdf5"),
                                          agent=str(cfgp), save_to=str(tmp_path / "out"))
    assert series.representation == "quantile" and series.weights.shape == (10, 2, 32)
    assert np.all(np.diff(series.weights, axis=-1) >= 0)


def test_cli_record_and_train_write_into_out(studio_cli, tmp_path):
    """implicit-studio run rl-record [--agent F] [--episodes N] --out D (default: the bundled agent),
    and rl-train ... --out D whose weights file is itself a loadable agent."""
    out = tmp_path / "D"
    r = studio_cli("run", "rl-record", "--episodes", "1", "--seed", "3", "--out", str(out), "--no-session")
    assert r.exit_code == 0, r.stderr
    trajs = [p for p in out.iterdir() if p.name.endswith("trajectory.npz")]
    assert len(trajs) == 1
    t = read_trajectory(trajs[0])
    assert t.header["agent"]["name"] == "cartpole-qr-dqn" and t.n_episodes == 1 and t.dist is not None

    out2 = tmp_path / "T"
    r = studio_cli("run", "rl-train", "--algo", "iqn", "--steps", "600", "--hidden", "16", "--seed", "1",
                   "--save-to", str(tmp_path / "work"), "--out", str(out2), "--no-session")
    assert r.exit_code == 0, r.stderr
    weights = [p for p in out2.iterdir() if p.suffix == ".safetensors"]
    assert len(weights) == 1
    r = studio_cli("run", "rl-record", "--agent", str(weights[0]), "--episodes", "1", "--out", str(out2 / "rec"),
                   "--no-session")
    assert r.exit_code == 0, r.stderr
    rec = read_trajectory(next((out2 / "rec").glob("*trajectory.npz")))
    assert rec.dist.kind == "sampled_quantiles"
    bad = studio_cli("run", "rl-record", "--agent", str(tmp_path / "missing.zip"), "--no-session")
    assert bad.exit_code != 0 and "missing.zip" in bad.stderr


def test_cli_takes_a_minari_dataset_folder_and_a_dataset_id(studio_cli, tmp_path, monkeypatch):
    """The command line takes what the reader takes: a Minari dataset folder, and a dataset named by
    its id from the local Minari root ($MINARI_DATASETS_PATH here)."""
    import json

    from tests.rl.test_trajectory import write_minari

    root = tmp_path / "minari"
    data = root / "cartpole" / "test-v0" / "data"
    data.mkdir(parents=True)
    write_minari(data / "main_data.hdf5", [6, 4])
    (data / "metadata.json").write_text(json.dumps({"dataset_id": "cartpole/test-v0", "total_episodes": 2,
                                                    "env_spec": json.dumps({"id": "CartPole-v1"})}))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    for source in (str(root / "cartpole" / "test-v0"), "cartpole/test-v0"):
        r = studio_cli("run", "rl-annotate", "--trajectory", source, "--save-to", str(tmp_path / "out"),
                       "--no-session", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "finished"
    missing = studio_cli("run", "rl-annotate", "--trajectory", "cartpole/nothing-v1", "--no-session")
    assert missing.exit_code == 1 and "no Minari dataset 'cartpole/nothing-v1'" in missing.stderr
    assert str(root) in missing.stderr and "Traceback" not in missing.stderr
    typo = studio_cli("run", "rl-annotate", "--trajectory", str(tmp_path / "nope.npz"), "--no-session")
    assert typo.exit_code == 1 and "no such file or folder" in typo.stderr
