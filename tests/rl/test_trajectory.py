"""Trajectory format round trip, partial loading of bad files, HDF5 readers, MC returns, calibration."""

import json

import h5py
import numpy as np
import pytest

from plugins.rl.distributions import CATEGORICAL, QUANTILES, SAMPLED_QUANTILES, ReturnDistribution
from plugins.rl.trajectory import (Trajectory, TrajectoryError, calibration, read_any, read_d4rl, read_minari,
                                   read_trajectory, write_trajectory)


def make_traj(kind=CATEGORICAL, T=12, A=2, n=7, episodes=(5, 7), seed=0, terminated_last=(True, False)):
    rng = np.random.default_rng(seed)
    ep = np.concatenate([np.full(l, i) for i, l in enumerate(episodes)]).astype(np.int32)
    T = len(ep)
    term = np.zeros(T, bool)
    trunc = np.zeros(T, bool)
    ends = np.cumsum(episodes) - 1
    for e, end in enumerate(ends):
        (term if terminated_last[e] else trunc)[end] = True
    if kind == CATEGORICAL:
        p = rng.random((T, A, n))
        dist = ReturnDistribution.categorical(np.linspace(-5, 5, n), p / p.sum(-1, keepdims=True))
    elif kind == QUANTILES:
        dist = ReturnDistribution.quantiles(np.sort(rng.normal(size=(T, A, n)), -1))
    else:
        taus = (np.arange(n) + rng.random((T, A, n))) / n
        dist = ReturnDistribution.sampled_quantiles(taus, np.sort(rng.normal(size=(T, A, n)), -1))
    return Trajectory(obs=rng.normal(size=(T, 4)).astype(np.float32), action=rng.integers(0, A, T),
                      reward=np.ones(T), terminated=term, truncated=trunc, episode=ep,
                      header={"env_id": "CartPole-v1", "gamma": 0.9, "algo": "test"}, dist=dist,
                      dist_valid=np.ones(T, bool), bootstrap=np.array([np.nan, 2.0]))


@pytest.mark.parametrize("kind", [CATEGORICAL, QUANTILES, SAMPLED_QUANTILES])
def test_roundtrip(tmp_path, kind):
    t = make_traj(kind)
    t.frames = np.random.default_rng(1).integers(0, 255, (len(t), 6, 8, 3), dtype=np.uint8)
    path = write_trajectory(tmp_path / "run", t)
    assert path.suffix == ".npz"
    r = read_trajectory(path)
    assert r.issues == []
    assert r.dist.kind == kind
    np.testing.assert_array_equal(r.action, t.action)
    np.testing.assert_array_equal(r.episode, t.episode)
    np.testing.assert_array_equal(r.terminated, t.terminated)
    np.testing.assert_array_equal(r.frames, t.frames)
    np.testing.assert_allclose(r.dist.mean(), t.dist.mean(), atol=1e-5)
    np.testing.assert_allclose(r.dist.cvar(0.3), t.dist.cvar(0.3), atol=1e-5)
    assert r.gamma == 0.9 and r.env_id == "CartPole-v1" and r.n_episodes == 2
    np.testing.assert_allclose(r.mc_returns(), t.mc_returns())
    # file is readable without pickle and has a JSON header
    with np.load(path, allow_pickle=False) as z:
        h = json.loads(str(z["header"]))
    assert h["format"] == "implicit-studio/rl-trajectory" and h["distribution"]["kind"] == kind


def test_mc_returns_discounted_with_bootstrap():
    t = make_traj()  # episode 0: 5 steps terminated; episode 1: 7 steps truncated, bootstrap 2.0
    g = t.mc_returns(0.9)
    expect0 = [sum(0.9 ** k for k in range(5 - s)) for s in range(5)]
    expect1 = [sum(0.9 ** k for k in range(7 - s)) + 0.9 ** (7 - s) * 2.0 for s in range(7)]
    np.testing.assert_allclose(g, expect0 + expect1)
    g_nb = t.mc_returns(0.9, bootstrap=False)
    np.testing.assert_allclose(g_nb[5:], [sum(0.9 ** k for k in range(7 - s)) for s in range(7)])
    t.bootstrap = None
    assert t.truncated_mask(0.9).sum() == 7 and not t.truncated_mask(0.9)[:5].any()


def test_partial_load_bad_steps(tmp_path):
    t = make_traj(CATEGORICAL)
    path = write_trajectory(tmp_path / "bad.npz", t)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["dist_probs"][3, 1] *= 0.8          # does not sum to 1
    arrays["dist_probs"][6, 0, 2] = np.nan     # NaN
    np.savez(path, **arrays)
    r = read_trajectory(path)
    msgs = [str(i) for i in r.issues]
    assert any(m.startswith("step 3, action 1, field 'dist_probs'") and "sum to 0.8000" in m for m in msgs), msgs
    assert any("step 6, action 0, field 'dist_probs'" in m and "NaN" in m for m in msgs), msgs
    assert r.dist_valid.tolist() == [i not in (3, 6) for i in range(len(t))]
    # the rest of the file is still viewable
    assert np.isnan(r.dist.mean()[3]).all() and np.isfinite(r.dist.mean()[[0, 1, 2, 4, 5]]).all()
    cal = calibration(r, gamma=0.9, exclude_truncated=False)
    assert cal.n_states == len(t) - 2


def test_partial_load_unsorted_quantiles_and_rearrangement(tmp_path):
    t = make_traj(QUANTILES)
    path = write_trajectory(tmp_path / "q.npz", t)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    v = arrays["dist_values"]
    v[4, 1, 1], v[4, 1, 2] = v[4, 1, 2] + 0.5, v[4, 1, 1]
    np.savez(path, **arrays)
    r = read_trajectory(path)
    assert any(i.step == 4 and i.action == 1 and i.field == "dist_values" and "not sorted" in i.message
               for i in r.issues)
    assert not r.dist_valid[4] and r.dist_valid.sum() == len(t) - 1
    r2 = read_trajectory(path, rearrange_crossing=True)
    assert r2.dist_valid.all()
    assert any(i.severity == "warning" and i.step == 4 for i in r2.issues)


def test_mismatched_lengths_truncate_with_message(tmp_path):
    t = make_traj(QUANTILES)
    path = write_trajectory(tmp_path / "m.npz", t)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["reward"] = arrays["reward"][:-3]
    arrays["reward"][2] = np.nan
    np.savez(path, **arrays)
    r = read_trajectory(path)
    assert len(r) == len(t) - 3
    assert any(i.field == "length" and "reward=9" in i.message and "action=12" in i.message for i in r.issues)
    assert any(i.field == "reward" and i.step == 2 for i in r.issues)
    assert r.dist.batch_shape == (len(t) - 3, 2)


def test_unreadable_files_raise_clear_errors(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(TrajectoryError, match="not a trajectory file"):
        read_trajectory(p)
    np.savez(p, obs=np.zeros((3, 2)))
    with pytest.raises(TrajectoryError, match="'action', 'reward'"):
        read_trajectory(p)
    # a file with an unusable distribution still loads its steps
    np.savez(p, action=np.zeros(3, int), reward=np.ones(3), dist_atoms=np.array([0.0, 1.0]),
             dist_probs=np.ones((2, 1, 2)) / 2)
    r = read_trajectory(p)
    assert r.dist is None and len(r) == 3
    assert any("has 2 steps but the trajectory has 3" in str(i) for i in r.issues)


def write_minari(path, episodes, obs_dim=4, extra_obs=True):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i, T in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            g.attrs["total_steps"] = T
            g.create_dataset("observations", data=rng.normal(size=(T + int(extra_obs), obs_dim)).astype(np.float32))
            g.create_dataset("actions", data=rng.integers(0, 2, T))
            g.create_dataset("rewards", data=np.ones(T))
            term = np.zeros(T, bool)
            term[-1] = i % 2 == 0
            g.create_dataset("terminations", data=term)
            g.create_dataset("truncations", data=~term & (np.arange(T) == T - 1))
            g.create_group("infos")


def test_minari_reader(tmp_path):
    d = tmp_path / "cartpole-test-v0" / "data"
    d.mkdir(parents=True)
    write_minari(d / "main_data.hdf5", [5, 8, 3])
    (d / "metadata.json").write_text(json.dumps({"dataset_id": "cartpole/test-v0", "total_episodes": 3,
                                                 "env_spec": json.dumps({"id": "CartPole-v1"})}))
    t = read_any(tmp_path / "cartpole-test-v0")
    assert len(t) == 16 and t.n_episodes == 3 and t.env_id == "CartPole-v1"
    assert t.obs.shape == (16, 4) and t.dist is None
    assert t.terminated.tolist().count(True) == 2 and t.truncated[12]
    with h5py.File(d / "main_data.hdf5") as f:
        np.testing.assert_allclose(t.obs[5:13], f["episode_1/observations"][:8])
    assert t.header["minari"]["dataset_id"] == "cartpole/test-v0"


def test_minari_reader_reports_bad_episode(tmp_path):
    p = tmp_path / "main_data.hdf5"
    write_minari(p, [4, 4])
    with h5py.File(p, "a") as f:
        del f["episode_1/rewards"]
        f["episode_1"].create_dataset("rewards", data=np.ones(3))
    t = read_minari(p)
    assert len(t) == 7
    assert any("episode_1" in i.field and "length mismatch" in i.message for i in t.issues)


def test_d4rl_reader(tmp_path):
    p = tmp_path / "d4rl.hdf5"
    N = 10
    with h5py.File(p, "w") as f:
        f["observations"] = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
        f["actions"] = np.arange(N) % 2
        f["rewards"] = np.ones(N)
        term = np.zeros(N, bool)
        term[3] = True
        tout = np.zeros(N, bool)
        tout[7] = True
        f["terminals"] = term
        f["timeouts"] = tout
        f.create_group("infos")["qpos"] = np.zeros((N, 2))
    t = read_any(p)
    assert t.header["source"] == "d4rl"
    assert [b - a for a, b in t.episode_bounds()] == [4, 4, 2]
    assert t.terminated[3] and t.truncated[7] and not t.truncated[3]
    with pytest.raises(TrajectoryError, match="missing rewards"):
        with h5py.File(tmp_path / "bad.hdf5", "w") as f:
            f["observations"] = np.zeros((3, 2))
            f["actions"] = np.zeros(3)
        read_d4rl(tmp_path / "bad.hdf5")


def test_calibration_uniform_pit_when_returns_follow_prediction():
    rng = np.random.default_rng(7)
    T = 4000
    mu = rng.normal(size=T) * 3
    taus = (np.arange(50) + 0.5) / 50
    from scipy import stats
    vals = mu[:, None, None] + stats.norm.ppf(taus)[None, None, :]
    vals = np.repeat(vals, 2, axis=1)
    G = mu + rng.normal(size=T)
    # single-step episodes with reward = realised return, gamma irrelevant
    t = Trajectory(obs=np.zeros((T, 1), np.float32), action=np.zeros(T, int), reward=G,
                   terminated=np.ones(T, bool), truncated=np.zeros(T, bool), episode=np.arange(T),
                   header={"gamma": 0.99}, dist=ReturnDistribution.quantiles(vals), dist_valid=np.ones(T, bool))
    cal = calibration(t)
    assert cal.n_states == T
    np.testing.assert_allclose(cal.hist, 0.1, atol=0.03)
    np.testing.assert_allclose(cal.coverage, cal.nominal, atol=0.04)
    # over-confident predictions (too narrow) pile PIT values at both ends
    narrow = mu[:, None, None] + 0.2 * stats.norm.ppf(taus)[None, None, :]
    t.dist = ReturnDistribution.quantiles(np.repeat(narrow, 2, axis=1))
    cal2 = calibration(t)
    assert cal2.hist[0] > 0.2 and cal2.hist[-1] > 0.2
    assert np.all(cal2.coverage[:-1] < cal2.nominal[:-1])


def test_support_clipping_warning():
    T, n = 200, 11
    p = np.zeros((T, 2, n))
    p[..., -1] = 0.6
    p[..., -2] = 0.4
    t = Trajectory(obs=np.zeros((T, 1), np.float32), action=np.zeros(T, int), reward=np.full(T, 30.0),
                   terminated=np.ones(T, bool), truncated=np.zeros(T, bool), episode=np.arange(T),
                   header={"gamma": 0.99}, dist=ReturnDistribution.categorical(np.linspace(0, 10, n), p),
                   dist_valid=np.ones(T, bool))
    cal = calibration(t)
    assert any("v_max = 10" in w for w in cal.warnings)
    assert any("outside the support" in w for w in cal.warnings)
    assert cal.edge_mass[1] == pytest.approx(0.6)
