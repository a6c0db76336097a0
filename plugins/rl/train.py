"""Training C51, QR-DQN and IQN on Gymnasium classic-control tasks, on the run's device.

``train(cfg)`` is a generator: it yields events (``episode`` with its return, ``eval`` with the
mean greedy return over ``eval_episodes``, ``checkpoint``, ``progress``) and finally a ``done``
event holding a :class:`TrainResult`. Stopping iteration (or ``cancel()`` returning True) ends
training cleanly; the partially trained agent is still returned in the ``done`` event.

Defaults follow the RL Baselines3 Zoo's tuned CartPole-v1 settings for QR-DQN (lr 2.3e-3, batch
64, train every 256 steps with 128 gradient steps, exploration to 0.04 over 16% of the run,
learning starts at 1,000 steps) for all three algorithms.

``device`` and ``dtype`` (a run's ``ctx.device`` and ``ctx.dtype``) say where the networks train
and in what: float32 as it always has; float16 or bfloat16 in mixed precision (the forward passes
under autocast, weights, optimiser state and losses in float32, a gradient scaler for float16).
The environment, the replay buffer and every random draw stay on the CPU, so a seed makes the same
episodes and batches on every device. The trained agent is returned on the CPU.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np

SOLVE_THRESHOLDS = {"CartPole-v1": 475.0, "CartPole-v0": 195.0, "Acrobot-v1": -100.0,
                    "MountainCar-v0": -110.0, "LunarLander-v3": 200.0}

# sensible C51 supports for discounted returns (gamma 0.99) of the classic-control tasks
C51_SUPPORT = {"CartPole-v1": (0.0, 100.0), "CartPole-v0": (0.0, 100.0), "Acrobot-v1": (-100.0, 0.0),
               "MountainCar-v0": (-100.0, 0.0)}


@dataclass
class TrainConfig:
    algo: str = "qr-dqn"
    env_id: str = "CartPole-v1"
    total_steps: int = 50_000
    seed: int = 0
    gamma: float = 0.99
    lr: float = 2.3e-3
    batch_size: int = 64
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    train_freq: int = 256
    gradient_steps: int = 128
    target_update: int = 256           # env steps between target-network syncs
    eps_start: float = 1.0
    eps_end: float = 0.04
    eps_fraction: float = 0.16
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    n_atoms: int = 51
    v_min: float | None = None
    v_max: float | None = None
    n_quantiles: int = 25
    iqn_n: int = 8                     # tau samples for the online net in the loss (N)
    iqn_n_prime: int = 8               # tau' samples for the target (N')
    iqn_k: int = 8                     # tau samples for the target's greedy action (K)
    eval_every: int = 2_500
    eval_episodes: int = 20
    solve_threshold: float | None = None
    stop_when_solved: bool = True
    checkpoint_every: int = 0          # env steps between checkpoint events (0: none)
    threads: int = 1
    device: str = "cpu"                # torch device the networks train on (a run's ctx.device)
    dtype: str = "float32"             # float32, or float16/bfloat16 mixed precision (ctx.dtype)

    def resolved(self) -> "TrainConfig":
        from .agents import normalise_algo
        c = TrainConfig(**asdict(self))
        c.algo = normalise_algo(c.algo)
        lo, hi = C51_SUPPORT.get(c.env_id, (-100.0, 100.0))
        c.v_min = lo if c.v_min is None else c.v_min
        c.v_max = hi if c.v_max is None else c.v_max
        if c.solve_threshold is None:
            c.solve_threshold = SOLVE_THRESHOLDS.get(c.env_id)
        for name in ("total_steps", "batch_size", "buffer_size", "train_freq", "target_update"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(c, name)}")
        if not 0 <= c.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {c.gamma}")
        if c.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {c.dtype!r}")
        return c


@dataclass
class TrainResult:
    agent: object
    config: TrainConfig
    steps: int
    wall_s: float
    train_s: float                     # wall time minus evaluation time
    solved: bool
    solved_step: int | None
    solved_wall_s: float | None
    solved_train_s: float | None
    episode_returns: list[float]
    episode_steps: list[int]
    evals: list[dict]
    cancelled: bool = False

    def summary(self) -> dict:
        return {"algo": self.config.algo, "env_id": self.config.env_id, "steps": self.steps,
                "wall_s": round(self.wall_s, 2), "train_s": round(self.train_s, 2), "solved": self.solved,
                "solved_step": self.solved_step,
                "solved_wall_s": None if self.solved_wall_s is None else round(self.solved_wall_s, 2),
                "solved_train_s": None if self.solved_train_s is None else round(self.solved_train_s, 2),
                "final_eval": self.evals[-1] if self.evals else None, "cancelled": self.cancelled}


def make_env(env_id: str, seed: int | None = None):
    import gymnasium as gym
    try:
        env = gym.make(env_id)
    except Exception as e:  # gymnasium raises its own error types
        raise ValueError(f"cannot create environment '{env_id}': {e}") from None
    if not hasattr(env.action_space, "n"):
        raise ValueError(f"{env_id} has a continuous action space; distributional DQN agents need discrete actions")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def evaluate(agent, env_id: str, episodes: int = 20, seed: int = 10_000, risk=None,
             max_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns of the greedy (or risk-sensitive) policy over ``episodes`` episodes,
    run side by side so each step makes one batched forward pass."""
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    alive = np.ones(episodes, bool)
    ret = np.zeros(episodes)
    steps = 0
    while alive.any():
        idx = np.nonzero(alive)[0]
        acts = agent.act(obs[idx], risk=risk)
        for j, i in enumerate(idx):
            o, r, term, trunc, _ = envs[i].step(int(acts[j]))
            ret[i] += r
            obs[i] = o
            if term or trunc:
                alive[i] = False
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    for e in envs:
        e.close()
    return ret


def _quantile_huber(pred, target, taus, kappa: float = 1.0):
    """pred (B, N) at levels taus (B, N) or (N,); target (B, N'). Sum over N, mean over N' and B."""
    import torch
    u = target[:, None, :] - pred[:, :, None]                      # (B, N, N')
    absu = u.abs()
    huber = torch.where(absu <= kappa, 0.5 * u * u, kappa * (absu - 0.5 * kappa))
    t = taus if taus.dim() == 2 else taus[None, :]
    w = (t[:, :, None] - (u.detach() < 0).float()).abs()
    return (w * huber / kappa).sum(1).mean(1).mean()


def train(cfg: TrainConfig, *, cancel: Callable[[], bool] | None = None) -> Iterator[dict]:
    """Generator of training events; the last one is ``{"kind": "done", "result": TrainResult}``."""
    import torch
    import torch.nn.functional as F

    from .agents import Agent, AgentConfig

    cfg = cfg.resolved()
    dev = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    mixed = dtype != torch.float32
    scaler = torch.amp.GradScaler(dev.type) if dtype == torch.float16 else None

    def autocast():
        return torch.autocast(dev.type, dtype=dtype) if mixed else contextlib.nullcontext()

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = make_env(cfg.env_id, cfg.seed)
    obs_dim = int(np.prod(env.observation_space.shape))
    n_actions = int(env.action_space.n)
    acfg = AgentConfig(algo=cfg.algo, env_id=cfg.env_id, obs_dim=obs_dim, n_actions=n_actions,
                       hidden=list(cfg.hidden), gamma=cfg.gamma, n_atoms=cfg.n_atoms, v_min=cfg.v_min,
                       v_max=cfg.v_max, n_quantiles=cfg.n_quantiles)
    agent = Agent(acfg)
    net = agent.net.to(dev)
    net.train()
    target = Agent(acfg).net.to(dev)
    target.load_state_dict(net.state_dict())
    target.eval()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    N = min(cfg.buffer_size, cfg.total_steps)
    b_obs = np.zeros((N, obs_dim), np.float32)
    b_next = np.zeros((N, obs_dim), np.float32)
    b_act = np.zeros(N, np.int64)
    b_rew = np.zeros(N, np.float32)
    b_done = np.zeros(N, np.float32)
    size = ptr = 0

    if cfg.algo == "c51":
        atoms = torch.linspace(cfg.v_min, cfg.v_max, cfg.n_atoms).to(dev)
        dz = (cfg.v_max - cfg.v_min) / (cfg.n_atoms - 1)
    qr_taus = torch.as_tensor((2 * np.arange(cfg.n_quantiles) + 1) / (2.0 * cfg.n_quantiles), dtype=torch.float32,
                              device=dev)

    def rand(*shape):  # drawn on the CPU (its seeded stream, the same on every device), used on dev
        return torch.rand(*shape).to(dev)

    def loss_fn(o, a, r, o2, d):
        B = o.shape[0]
        ar = torch.arange(B, device=dev)
        if cfg.algo == "c51":
            with torch.no_grad():
                with autocast():
                    logits_next = target(o2)
                p_next = torch.softmax(logits_next.float(), -1)               # (B, A, N)
                a_star = (p_next * atoms).sum(-1).argmax(-1)
                p = p_next[ar, a_star]                                        # (B, N)
                tz = (r[:, None] + cfg.gamma * (1 - d[:, None]) * atoms[None]).clamp(cfg.v_min, cfg.v_max)
                b = (tz - cfg.v_min) / dz
                lo = b.floor().long()
                hi = b.ceil().long()
                m = torch.zeros(B, cfg.n_atoms, device=dev)
                m.scatter_add_(1, lo, p * (hi.float() - b + (lo == hi).float()))
                m.scatter_add_(1, hi, p * (b - lo.float()))
            with autocast():
                logits = net(o)
            logp = F.log_softmax(logits.float()[ar, a], -1)
            return -(m * logp).sum(-1).mean()
        if cfg.algo == "qr-dqn":
            with torch.no_grad():
                with autocast():
                    qn = target(o2).float()                                   # (B, A, N)
                a_star = qn.mean(-1).argmax(-1)
                tgt = r[:, None] + cfg.gamma * (1 - d[:, None]) * qn[ar, a_star]
            with autocast():
                pred = net(o).float()[ar, a]
            return _quantile_huber(pred, tgt, qr_taus)
        # IQN
        taus = rand(B, cfg.iqn_n)
        with torch.no_grad():
            with autocast():
                a_star = target.q(o2, rand(B, cfg.iqn_k)).float().argmax(-1)
                tp = rand(B, cfg.iqn_n_prime)
                q_tp = target(o2, tp).float()
            tgt = r[:, None] + cfg.gamma * (1 - d[:, None]) * q_tp[ar, a_star]
        with autocast():
            pred = net(o, taus).float()[ar, a]
        return _quantile_huber(pred, tgt, taus)

    t0 = time.perf_counter()
    eval_time = 0.0
    ep_returns: list[float] = []
    ep_steps: list[int] = []
    evals: list[dict] = []
    solved_step = solved_wall = solved_train = None
    cancelled = False
    o, _ = env.reset(seed=cfg.seed)
    ep_ret, ep_len = 0.0, 0
    last_loss = float("nan")
    explore_steps = max(1, int(cfg.eps_fraction * cfg.total_steps))
    step = 0
    try:
        for step in range(1, cfg.total_steps + 1):
            if cancel is not None and step % 64 == 0 and cancel():
                cancelled = True
                break
            eps = cfg.eps_end + (cfg.eps_start - cfg.eps_end) * max(0.0, 1 - (step - 1) / explore_steps)
            if step <= cfg.learning_starts or rng.random() < eps:
                a = int(rng.integers(n_actions))
            else:
                with torch.no_grad(), autocast():
                    a = int(net.q(torch.as_tensor(o, dtype=torch.float32, device=dev)[None]).float().argmax())
            o2, r, term, trunc, _ = env.step(a)
            b_obs[ptr], b_next[ptr], b_act[ptr], b_rew[ptr], b_done[ptr] = o, o2, a, r, float(term)
            ptr = (ptr + 1) % N
            size = min(size + 1, N)
            ep_ret += r
            ep_len += 1
            o = o2
            if term or trunc:
                ep_returns.append(ep_ret)
                ep_steps.append(step)
                yield {"kind": "episode", "step": step, "return": ep_ret, "length": ep_len,
                       "time": time.perf_counter() - t0, "epsilon": eps, "loss": last_loss}
                o, _ = env.reset()
                ep_ret, ep_len = 0.0, 0
            if step > cfg.learning_starts and step % cfg.train_freq == 0:
                for _ in range(cfg.gradient_steps):
                    idx = rng.integers(0, size, cfg.batch_size)
                    loss = loss_fn(*(torch.from_numpy(b[idx]).to(dev) for b in (b_obs, b_act, b_rew, b_next, b_done)))
                    opt.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                        opt.step()
                    else:  # float16: scaled gradients, unscaled before clipping
                        scaler.scale(loss).backward()
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                        scaler.step(opt)
                        scaler.update()
                last_loss = float(loss.detach())
            if step % cfg.target_update == 0:
                target.load_state_dict(net.state_dict())
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                net.eval()
                yield {"kind": "checkpoint", "step": step, "agent": agent.clone(), "time": time.perf_counter() - t0}
                net.train()
            if cfg.eval_every and step % cfg.eval_every == 0 and step > cfg.learning_starts:
                te = time.perf_counter()
                net.eval()
                rets = evaluate(agent, cfg.env_id, cfg.eval_episodes, seed=10_000 + step)
                net.train()
                eval_time += time.perf_counter() - te
                now = time.perf_counter() - t0
                ev = {"kind": "eval", "step": step, "mean": float(rets.mean()), "std": float(rets.std()),
                      "min": float(rets.min()), "time": now, "train_time": now - eval_time}
                solved = cfg.solve_threshold is not None and ev["mean"] >= cfg.solve_threshold
                ev["solved"] = bool(solved)
                evals.append(ev)
                yield ev
                if solved and solved_step is None:
                    solved_step, solved_wall, solved_train = step, now, now - eval_time
                    if cfg.stop_when_solved:
                        break
            if step % 1000 == 0:
                yield {"kind": "progress", "step": step, "fraction": step / cfg.total_steps,
                       "time": time.perf_counter() - t0}
    finally:
        env.close()
        net.eval()
        net.to("cpu")  # the agent is handed back on the CPU, where it is saved and recorded
        torch.set_num_threads(prev_threads)
    wall = time.perf_counter() - t0
    agent.info = {"trained_steps": step}
    yield {"kind": "done", "result": TrainResult(
        agent=agent, config=cfg, steps=step, wall_s=wall, train_s=wall - eval_time,
        solved=solved_step is not None, solved_step=solved_step, solved_wall_s=solved_wall,
        solved_train_s=solved_train, episode_returns=ep_returns, episode_steps=ep_steps, evals=evals,
        cancelled=cancelled)}


def run_training(cfg: TrainConfig, on_event: Callable[[dict], None] | None = None,
                 cancel: Callable[[], bool] | None = None) -> TrainResult:
    """Drive :func:`train` to the end and return its result."""
    result = None
    for ev in train(cfg, cancel=cancel):
        if on_event is not None:
            on_event(ev)
        if ev["kind"] == "done":
            result = ev["result"]
    return result
