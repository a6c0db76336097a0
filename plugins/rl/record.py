"""Record evaluation trajectories from an agent, or add an agent's distributions to a trajectory.

No Qt. ``record(agent, episodes=...)`` runs the greedy (optionally epsilon-greedy or
risk-sensitive) policy and stores per step the observation, action, reward, done flags, the
return distribution of every action, and, for episodes cut by the time limit, the agent's value
at the final state (so Monte-Carlo returns of truncated episodes can be completed).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .distributions import Distortion
from .trajectory import Trajectory


def record(agent, *, episodes: int = 1, seed: int = 0, epsilon: float = 0.0, risk: Distortion | None = None,
           frames: bool = False, max_steps: int | None = None, progress: Callable[[float], None] | None = None,
           cancel: Callable[[], bool] | None = None) -> Trajectory:
    """Run ``episodes`` episodes of ``agent`` in its environment and record them."""
    from .render import render_frame
    from .train import make_env

    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    env_id = agent.cfg.env_id
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    obs_l, act_l, rew_l, term_l, trunc_l, ep_l, frame_l, boot = [], [], [], [], [], [], [], []
    limit = max_steps or getattr(env.spec, "max_episode_steps", None) or 10_000
    try:
        for e in range(episodes):
            o, _ = env.reset(seed=seed + e)
            for t in range(limit):
                if cancel is not None and cancel():
                    raise InterruptedError("recording cancelled")
                a = int(agent.act(o[None], risk=risk)[0])
                if epsilon and rng.random() < epsilon:
                    a = int(rng.integers(agent.cfg.n_actions))
                obs_l.append(np.asarray(o, np.float32))
                if frames:
                    frame_l.append(render_frame(env_id, o))
                o, r, term, trunc, _ = env.step(a)
                cut = (t == limit - 1) and not term
                act_l.append(a)
                rew_l.append(float(r))
                term_l.append(bool(term))
                trunc_l.append(bool(trunc or cut))
                ep_l.append(e)
                if term or trunc or cut:
                    break
            boot.append(np.nan if term_l[-1] else float(agent.q_values(o[None]).max()))
            if progress is not None:
                progress((e + 1) / episodes)
    finally:
        env.close()
    obs = np.stack(obs_l)
    dist = agent.distribution(obs, rng=np.random.default_rng(seed + 12345))
    header = {"env_id": env_id, "algo": agent.algo, "gamma": agent.cfg.gamma,
              "n_actions": agent.cfg.n_actions, "action_names": action_names(env_id, agent.cfg.n_actions),
              "agent": {"algo": agent.algo, "source": agent.cfg.source,
                        "name": getattr(agent, "name", None) or agent.cfg.extra.get("name")},
              "policy": {"epsilon": epsilon, "risk": None if risk is None else [risk.name, risk.eta]},
              "seed": seed, "rearranged_quantiles": int(dist.meta.get("rearranged", 0)),
              "obs_names": obs_names(env_id)}
    return Trajectory(obs=obs, action=np.array(act_l, np.int64), reward=np.array(rew_l), terminated=np.array(term_l),
                      truncated=np.array(trunc_l), episode=np.array(ep_l, np.int32), header=header, dist=dist,
                      dist_valid=np.ones(len(act_l), bool), frames=np.stack(frame_l) if frames else None,
                      bootstrap=np.array(boot))


def annotate(traj: Trajectory, agent, *, seed: int = 0) -> Trajectory:
    """The same trajectory with ``agent``'s return distributions at its observations (for Minari /
    D4RL data, or to compare a second agent or checkpoint on the same episode)."""
    if traj.obs.ndim != 2 or traj.obs.shape[1] != agent.cfg.obs_dim:
        raise ValueError(f"the agent expects observations of size {agent.cfg.obs_dim}; this trajectory has "
                         f"{traj.obs.shape[1:] if traj.obs.ndim > 1 else 'none'}")
    if len(traj) and int(traj.action.max()) >= agent.cfg.n_actions:
        raise ValueError(f"the trajectory uses action {int(traj.action.max())} but the agent has only "
                         f"{agent.cfg.n_actions} actions")
    dist = agent.distribution(traj.obs, rng=np.random.default_rng(seed))
    header = dict(traj.header)
    header.update(algo=agent.algo, gamma=header.get("gamma", agent.cfg.gamma), n_actions=agent.cfg.n_actions,
                  agent={"algo": agent.algo, "source": agent.cfg.source},
                  rearranged_quantiles=int(dist.meta.get("rearranged", 0)))
    header.setdefault("env_id", agent.cfg.env_id)
    header.setdefault("action_names", action_names(agent.cfg.env_id, agent.cfg.n_actions))
    return Trajectory(obs=traj.obs, action=traj.action, reward=traj.reward, terminated=traj.terminated,
                      truncated=traj.truncated, episode=traj.episode, header=header, dist=dist,
                      dist_valid=np.ones(len(traj), bool), frames=traj.frames, return_samples=traj.return_samples,
                      bootstrap=traj.bootstrap, issues=list(traj.issues))


def action_names(env_id: str, n: int) -> list[str]:
    names = {"CartPole-v1": ["push left", "push right"], "CartPole-v0": ["push left", "push right"],
             "Acrobot-v1": ["torque -1", "torque 0", "torque +1"],
             "MountainCar-v0": ["accelerate left", "no push", "accelerate right"]}.get(env_id)
    return names if names and len(names) == n else [f"action {i}" for i in range(n)]


def obs_names(env_id: str) -> list[str] | None:
    return {"CartPole-v1": ["cart position", "cart velocity", "pole angle", "pole angular velocity"],
            "Acrobot-v1": ["cos theta1", "sin theta1", "cos theta2", "sin theta2", "theta1 dot", "theta2 dot"],
            }.get(env_id)
