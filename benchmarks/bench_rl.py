"""Benchmarks of the distributional-RL plugin.

    nice -n 10 python benchmarks/bench_rl.py [--scrub] [--train] [--sb3] [--steps 10000] [--json OUT]

--scrub  (default when nothing is chosen) A 10,000-step episode in the EpisodeViewer (offscreen,
         1400 x 900): time to redraw one step -- ``set_step`` plus the repaint Qt then performs
         (processEvents), CPU time of this process and wall time -- with the plot items updated in place (setData), against rebuilding the
         step plots' items from scratch in the same run. Both for a categorical (C51-style, 51
         atoms) and a quantile (QR-DQN-style, 25 quantiles) trajectory.
--train  Time to solve CartPole-v1 (greedy mean return >= 475 over 20 episodes, checked every
         2,500 steps) for C51, QR-DQN and IQN with this plugin's trainer (1 torch thread).
--sb3    The reference: sb3-contrib QR-DQN with the RL Zoo's CartPole-v1 settings (50k steps),
         checked the same way; only if sb3-contrib is installed (not a runtime dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _percentile(xs, q):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def long_episode(kind: str, T: int, seed: int = 0):
    """A T-step single-episode trajectory with smoothly drifting distributions (CartPole obs)."""
    import numpy as np
    from scipy import stats

    from plugins.rl.distributions import ReturnDistribution
    from plugins.rl.trajectory import Trajectory

    rng = np.random.default_rng(seed)
    t = np.arange(T)
    obs = np.stack([np.sin(t / 300) * 1.5, np.zeros(T), np.sin(t / 23) * 0.15, np.zeros(T)], 1).astype(np.float32)
    mu = 60 + 30 * np.sin(t / 700)[:, None] + np.array([0.0, 1.5])[None] + rng.normal(0, 0.5, (T, 2))
    sd = 6 + 3 * np.cos(t / 400)[:, None]
    if kind == "categorical":
        atoms = np.linspace(0, 100, 51)
        p = np.exp(-0.5 * ((atoms[None, None] - mu[..., None]) / sd[..., None]) ** 2)
        dist = ReturnDistribution.categorical(atoms, p / p.sum(-1, keepdims=True))
    else:
        taus = (np.arange(25) + 0.5) / 25
        dist = ReturnDistribution.quantiles(mu[..., None] + sd[..., None] * stats.norm.ppf(taus)[None, None])
    term = np.zeros(T, bool)
    term[-1] = True
    return Trajectory(obs=obs, action=(rng.random(T) < 0.5).astype(np.int64), reward=np.ones(T), terminated=term,
                      truncated=np.zeros(T, bool), episode=np.zeros(T, np.int32),
                      header={"env_id": "CartPole-v1", "gamma": 0.99, "algo": kind,
                              "action_names": ["push left", "push right"]},
                      dist=dist, dist_valid=np.ones(T, bool))


def bench_scrub(T: int = 10_000, n: int = 150) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from plugins.rl.qtfix import protect_singletons
    from plugins.rl.views import EpisodeViewer

    out = {}
    rng = np.random.default_rng(1)
    for kind in ("categorical", "quantiles"):
        traj = long_episode(kind, T)
        v = EpisodeViewer()
        v.resize(1400, 900)
        v.show()
        t0 = time.perf_counter()
        v.set_trajectory(traj)
        app.processEvents()
        load_s = time.perf_counter() - t0
        steps = rng.integers(0, T, n)
        # warm-up (first renders of frames, font caches)
        for s in steps[:10]:
            v.set_step_in_episode(int(s))
            app.processEvents()
        res = {k: ([], []) for k in ("update_whole_viewer", "update_whole_viewer_grab", "update_step_plots",
                                     "rebuild_step_plots", "rebuild_then_whole_viewer")}

        def timed(key, fn):
            w, c = time.perf_counter(), time.process_time()
            fn()
            res[key][0].append(time.perf_counter() - w)
            res[key][1].append(time.process_time() - c)

        def upd(s):
            v.set_step_in_episode(s)
            app.processEvents()  # the repaint Qt schedules on screen (dirty regions of every plot)

        def upd_grab(s):
            v.set_step_in_episode(s)
            v.grab()     # render every child into a pixmap (stricter than repaint)

        def plots(s):
            v.step_plots.update_step(s)
            app.processEvents()

        def rebuild_plots(s):
            v.step_plots.rebuild(s)
            app.processEvents()

        def rebuild_all(s):
            v.step_plots.rebuild(s)
            v.t = -1
            upd(s)

        for s in steps:
            protect_singletons()
            s = int(s)
            timed("update_whole_viewer", lambda: upd(s))
            timed("update_whole_viewer_grab", lambda: upd_grab((s + 7) % T))
            timed("update_step_plots", lambda: plots((s + 1) % T))
            timed("rebuild_step_plots", lambda: rebuild_plots(s))
            timed("rebuild_then_whole_viewer", lambda: rebuild_all((s + 3) % T))

        def ms(pair):
            wall, cpu = pair
            return {"cpu_median_ms": round(1000 * statistics.median(cpu), 2),
                    "cpu_p95_ms": round(1000 * _percentile(cpu, 95), 2),
                    "wall_median_ms": round(1000 * statistics.median(wall), 2),
                    "wall_p95_ms": round(1000 * _percentile(wall, 95), 2)}

        out[kind] = {"steps": T, "load_s": round(load_s, 2), "samples": n, **{k: ms(v_) for k, v_ in res.items()}}
        v.close()
        v.deleteLater()
        app.processEvents()
    return out


def bench_train(algos=("c51", "qr-dqn", "iqn"), seed: int = 0) -> dict:
    import torch

    from plugins.rl.train import TrainConfig, run_training
    torch.set_num_threads(1)
    out = {}
    for algo in algos:
        res = run_training(TrainConfig(algo=algo, env_id="CartPole-v1", total_steps=100_000, seed=seed))
        out[algo] = res.summary()
        print(f"  {algo}: {out[algo]}", flush=True)
    return out


def bench_sb3(seed: int = 0) -> dict:
    try:
        from sb3_contrib import QRDQN
    except ImportError:
        return {"skipped": "sb3-contrib is not installed"}
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    torch.set_num_threads(1)

    from plugins.rl.train import evaluate

    class Solve(BaseCallback):
        """Every 2,500 steps: greedy mean return over 20 episodes (same check as ours)."""

        def __init__(self):
            super().__init__()
            self.t0 = time.perf_counter()
            self.eval_s = 0.0
            self.solved = None
            self.evals = []

        def _on_step(self):
            if self.num_timesteps % 2500 == 0:
                a = time.perf_counter()
                model = self.model

                class Wrap:
                    def act(self, obs, risk=None):
                        return model.predict(obs, deterministic=True)[0]

                rets = evaluate(Wrap(), "CartPole-v1", 20, seed=10_000 + self.num_timesteps)
                self.eval_s += time.perf_counter() - a
                now = time.perf_counter() - self.t0
                self.evals.append((self.num_timesteps, float(rets.mean()), round(now, 1)))
                if rets.mean() >= 475 and self.solved is None:
                    self.solved = (self.num_timesteps, now, now - self.eval_s)
                    return False
            return True

    # RL Zoo hyperparams/qrdqn.yml, CartPole-v1
    env = gym.make("CartPole-v1")
    model = QRDQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                  gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                  exploration_fraction=0.16, exploration_final_eps=0.04,
                  policy_kwargs=dict(net_arch=[256, 256], n_quantiles=10), seed=seed, verbose=0, device="cpu")
    cb = Solve()
    t0 = time.perf_counter()
    model.learn(total_timesteps=50_000, callback=cb)
    wall = time.perf_counter() - t0
    res = {"steps_run": int(model.num_timesteps), "wall_s": round(wall, 2), "evals": cb.evals}
    if cb.solved:
        res.update(solved_step=cb.solved[0], solved_wall_s=round(cb.solved[1], 2), solved_train_s=round(cb.solved[2], 2))
    else:
        res["solved"] = False
    # and our loader reads the real file
    p = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_rl_qrdqn.zip"
    model.save(p)
    from plugins.rl.loaders import load_sb3_qrdqn
    agent = load_sb3_qrdqn(p)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    ref = model.policy.quantile_net(torch.as_tensor(obs)).mean(1).detach().numpy()
    res["loader_max_abs_diff_q"] = float(np.abs(agent.q_values(obs) - ref).max())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scrub", action="store_true")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--sb3", action="store_true")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds for --train and --sb3")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not (args.scrub or args.train or args.sb3):
        args.scrub = True
    results = {"machine": f"{os.cpu_count()} CPUs", "python": sys.version.split()[0]}
    if args.scrub:
        print("scrubbing...", flush=True)
        results["scrub"] = bench_scrub(args.steps, args.samples)
        print(json.dumps(results["scrub"], indent=1), flush=True)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if args.train:
        print("training...", flush=True)
        results["train"] = {f"seed{sd}": bench_train(seed=sd) for sd in seeds}
    if args.sb3:
        print("sb3-contrib reference...", flush=True)
        results["sb3_qrdqn"] = {}
        for sd in seeds:
            results["sb3_qrdqn"][f"seed{sd}"] = bench_sb3(seed=sd)
            print(json.dumps(results["sb3_qrdqn"][f"seed{sd}"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
