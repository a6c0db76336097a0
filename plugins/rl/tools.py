"""Run functions of the RL tools, the trajectory reader and the CSV writer (no Qt).

Referenced lazily from ``plugins/rl/plugin.py``; torch is imported only by the functions that
need an agent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app import api

from .distributions import CATEGORICAL, QUANTILES, distortion
from .trajectory import Trajectory, TrajectoryError, calibration, episode_summary, read_any, write_trajectory


def bundled_dir(resources_dir: Path) -> Path:
    """The bundled agents and trajectories inside the plugin's resources (``ctx.resources_dir``)."""
    return Path(resources_dir) / "samples" / "rl"


def bundled_agent_path(resources_dir: Path, env_id: str = "CartPole-v1", algo: str = "qr-dqn") -> Path:
    return bundled_dir(resources_dir) / f"{env_id.split('-')[0].lower()}-{algo}.json"


def to_series(traj: Trajectory, *, path: str | None = None, label: str = "") -> api.DistributionSeries:
    """A :class:`~app.api.DistributionSeries` (T x actions x K) of a trajectory's distributions.

    Categorical -> atoms and probabilities; quantiles -> levels and values; sampled quantiles are
    given on their common number of midpoint levels (the quantile function at those levels, exact
    for the recorded step function). ``metadata['trajectory']`` points at the file for viewers."""
    if traj.dist is None:
        raise api.ToolError("this trajectory has no return distributions; load an agent to add them")
    d = traj.dist
    if d.kind == CATEGORICAL:
        support, weights, rep = d.atoms, d.probs, "categorical"
    elif d.kind == QUANTILES:
        support, weights, rep = np.asarray(d.taus), d.values, "quantile"
    else:
        q = d.to_quantiles(d.n_support)
        support, weights, rep = q.taus, q.values, "quantile"
    meta = {"env_id": traj.env_id, "algo": traj.header.get("algo"), "gamma": traj.gamma,
            "source_kind": d.kind, "n_steps": len(traj), "n_episodes": traj.n_episodes,
            "actions": traj.action.astype(int).tolist(), "rewards": np.asarray(traj.reward, float).round(6).tolist(),
            "episode": traj.episode.astype(int).tolist(),
            "issues": [str(i) for i in traj.issues[:50]]}
    if path:
        meta["trajectory"] = str(path)
    return api.DistributionSeries(support=support, weights=np.nan_to_num(weights, nan=0.0), representation=rep,
                                  steps=np.arange(len(traj)), series_labels=tuple(traj.action_names),
                                  metadata=meta, label=label or f"{traj.header.get('algo', 'agent')} on {traj.env_id}")


def series_to_trajectory(series: api.DistributionSeries) -> Trajectory:
    """Rebuild a viewable trajectory from a DistributionSeries (the stored file if it still
    exists, otherwise the series and its metadata)."""
    from .distributions import ReturnDistribution
    from .trajectory import read_trajectory

    meta = series.metadata or {}
    p = meta.get("trajectory")
    if p and Path(p).is_file():
        try:
            return read_trajectory(p)
        except TrajectoryError:
            pass
    w = np.asarray(series.weights, dtype=np.float64)
    if w.ndim == 2:
        w = w[:, None, :]
    T = w.shape[0]
    if series.representation == "categorical":
        dist = ReturnDistribution.categorical(series.support, w, validate=False)
    else:
        dist = ReturnDistribution.quantiles(w, np.asarray(series.support, dtype=np.float64), validate=False,
                                            rearrange=True)
    actions = np.asarray(meta.get("actions") or np.argmax(dist.mean(), axis=1), dtype=np.int64)[:T]
    rewards = np.asarray(meta.get("rewards") or np.zeros(T), dtype=np.float64)[:T]
    episode = np.asarray(meta.get("episode") or np.zeros(T), dtype=np.int32)[:T]
    ends = np.concatenate([np.diff(episode) != 0, [True]])
    return Trajectory(obs=np.zeros((T, 0), np.float32), action=actions, reward=rewards, terminated=ends,
                      truncated=np.zeros(T, bool), episode=episode,
                      header={"env_id": meta.get("env_id", ""), "gamma": meta.get("gamma", 0.99),
                              "algo": meta.get("algo"), "action_names": list(series.series_labels)},
                      dist=dist, dist_valid=np.ones(T, bool))


def _summary_table(traj: Trajectory, label: str) -> api.TableResult:
    rows = [(r["episode"], r["start"], r["steps"], round(r["return"], 3), r["end"]) for r in episode_summary(traj)]
    return api.TableResult(columns=("episode", "start", "steps", "return", "end"), rows=rows, label=label)


def _out_dir(ctx: api.RunContext, save_to: str | None, kind: str) -> Path:
    """The folder files are written to: ``save_to``, or a new folder in the plugin's data folder
    (``ctx.data_dir / <kind> / <timestamp>``). The command line's ``--out D`` then copies the
    results (agent, trajectory, tables) into D."""
    import time
    if save_to:
        p = Path(save_to).expanduser()
    else:
        p = ctx.data_dir / kind / time.strftime("%Y%m%d-%H%M%S")
    if p.exists() and not p.is_dir():
        raise api.ToolError(f"{p} exists and is not a folder")
    p.mkdir(parents=True, exist_ok=True)
    return p


# ------------------------------------------------------------------------------------ tools


def run_train(ctx: api.RunContext, algo: str = "qr-dqn", env: str = "CartPole-v1", steps: int = 50_000,
              seed: int = 0, save_to: str | None = None, stop_when_solved: bool = True, record_episodes: int = 1,
              hidden: int = 128):
    """rl-train: train an agent on the run's device in its dtype (ctx.device, ctx.dtype) with live
    episode-return curves; save it, then record ``record_episodes`` greedy episodes by running the
    rl-record tool on the saved agent (``ctx.run_tool``: the recording is a child run of the training)."""
    from .train import TrainConfig, train

    out_dir = _out_dir(ctx, save_to, "agents")
    cfg = TrainConfig(algo=algo, env_id=env, total_steps=int(steps), seed=int(seed),
                      stop_when_solved=bool(stop_when_solved), hidden=[int(hidden), int(hidden)],
                      device=ctx.device, dtype=ctx.dtype)
    try:
        cfg = cfg.resolved()
    except ValueError as e:
        raise api.ToolError(str(e)) from None
    result = None
    try:
        for ev in train(cfg, cancel=lambda: ctx.cancelled):
            k = ev["kind"]
            if k == "episode":
                ctx.log_metric("episode return", ev["step"], ev["return"])
            elif k == "eval":
                ctx.log_metric("eval mean return", ev["step"], ev["mean"])
                ctx.logger.info("step %d: greedy mean return %.1f", ev["step"], ev["mean"])
            elif k == "progress":
                ctx.progress(ev["step"], cfg.total_steps, f"{ev['step']} steps")
            elif k == "done":
                result = ev["result"]
    except ValueError as e:  # e.g. an environment that cannot be created
        raise api.ToolError(str(e)) from None
    ctx.check_cancelled()
    name = f"{env.split('-')[0].lower()}-{cfg.algo}"
    summ = result.summary()
    cfg_path = result.agent.save(out_dir, name, info={"training": summ, "curve": {
        "step": result.episode_steps, "return": result.episode_returns}, "seed": int(seed)})
    weights = cfg_path.with_suffix(".safetensors")
    results: list[api.Result] = [
        api.TableResult(columns=("quantity", "value"),
                        rows=[(k, "" if v is None else (v if isinstance(v, (int, float, str, bool)) else str(v)))
                              for k, v in summ.items() if k != "final_eval"] + [("agent", str(cfg_path))],
                        label="training", metadata={"agent": str(cfg_path)}),
        # the weights file alone is a loadable agent (config in its header): --agent F takes it
        api.FileResult(path=str(weights), label="agent", metadata={"algo": cfg.algo, "env_id": env})]
    if record_episodes > 0:
        ctx.progress(cfg.total_steps, cfg.total_steps + 1, "recording episodes")  # the recording fills the rest
        recorded = ctx.run_tool("rl-record", agent=str(weights), episodes=int(record_episodes),
                                seed=(int(seed) + 1000) % (api.SEED_MAX + 1), save_to=str(out_dir))
        results += [r for r in recorded if r.kind in ("distribution", "file")]  # the episode and its file
    return results


def run_record(ctx: api.RunContext, agent: str | None = None, episodes: int = 2, epsilon: float = 0.0,
               risk: str = "neutral", risk_param: float = -1.0, frames: bool = False, seed: int = 0,
               save_to: str | None = None):
    """rl-record: record episodes of an agent (default: the bundled CartPole QR-DQN)."""
    from .loaders import AgentFormatError, load_agent
    from .record import record

    path = Path(agent) if agent else bundled_agent_path(ctx.resources_dir)
    if not path.exists():
        raise api.ToolError(f"agent not found: {path}" + ("" if agent else
                            " (the bundled agents are made by `python -m lab.rl_samples`)"))
    try:
        ag = load_agent(path)
    except (AgentFormatError, ValueError, FileNotFoundError) as e:
        raise api.ToolError(str(e)) from None
    if not ag.cfg.env_id:
        raise api.ToolError(f"{path.name}: the environment of this agent is unknown")
    try:
        dist_risk = None if risk == "neutral" else distortion(risk, None if risk_param == -1.0 else risk_param)
    except ValueError as e:
        raise api.ToolError(str(e)) from None
    try:
        traj = record(ag, episodes=int(episodes), seed=int(seed), epsilon=float(epsilon), risk=dist_risk,
                      frames=bool(frames), progress=lambda f: ctx.progress(int(f * 100), 100, "recording"),
                      cancel=lambda: ctx.cancelled)
    except InterruptedError:
        ctx.check_cancelled()
        raise
    traj.header["agent"]["file"] = str(path)
    out_dir = _out_dir(ctx, save_to, "trajectories")
    tpath = write_trajectory(out_dir / f"{path.stem}-record-{int(seed)}.npz", traj)
    return [to_series(traj, path=str(tpath), label="episode"), _summary_table(traj, "episodes"),
            api.FileResult(path=str(tpath), label="trajectory")]


def run_annotate(ctx: api.RunContext, trajectory: str = "", agent: str | None = None, save_to: str | None = None):
    """rl-annotate: add an agent's return distributions to a trajectory (ours, Minari, D4RL)."""
    from .loaders import load_agent
    from .record import annotate

    try:
        traj = read_any(trajectory)
    except (TrajectoryError, OSError) as e:
        raise api.ToolError(str(e)) from None
    path = Path(agent) if agent else bundled_agent_path(ctx.resources_dir, traj.env_id or "CartPole-v1")
    try:
        ag = load_agent(path)
        t2 = annotate(traj, ag)
    except (ValueError, FileNotFoundError) as e:
        raise api.ToolError(str(e)) from None
    out_dir = _out_dir(ctx, save_to, "trajectories")
    tpath = write_trajectory(out_dir / f"{Path(trajectory).stem}-{ag.algo}.npz", t2)
    return [to_series(t2, path=str(tpath), label="episode"), _summary_table(t2, "episodes"),
            api.FileResult(path=str(tpath), label="trajectory")]


def run_calibration(ctx: api.RunContext, trajectory: str = "", bins: int = 10, exclude_truncated: bool = True):
    """rl-calibration: PIT histogram and interval coverage over every state of a trajectory file."""
    try:
        traj = read_any(trajectory)
    except (TrajectoryError, OSError) as e:
        raise api.ToolError(str(e)) from None
    if traj.dist is None:
        raise api.ToolError(f"{Path(trajectory).name} has no return distributions; run rl-annotate first")
    cal = calibration(traj, bins=int(bins), exclude_truncated=bool(exclude_truncated))
    for w in cal.warnings:
        ctx.logger.warning(w)
    pit = api.TableResult(columns=("bin_low", "bin_high", "fraction"),
                          rows=[(round(float(a), 4), round(float(b), 4), round(float(h), 5))
                                for a, b, h in zip(cal.edges[:-1], cal.edges[1:], cal.hist)],
                          label="PIT histogram", metadata={"warnings": cal.warnings, "n_states": cal.n_states})
    cov = api.TableResult(columns=("nominal", "coverage"),
                          rows=[(float(n), round(float(c), 5)) for n, c in zip(cal.nominal, cal.coverage)],
                          label="central-interval coverage", metadata={"warnings": cal.warnings})
    return [pit, cov]


# ------------------------------------------------------------------------------------ reader / writer


def read_trajectory_file(path: str):
    """Reader hook: our trajectory npz (or Minari/D4RL HDF5) -> DistributionSeries + episode table.
    Raises ValueError for files that are not trajectories so other readers may try them."""
    try:
        traj = read_any(path)
    except TrajectoryError as e:
        raise ValueError(str(e)) from None
    out: list[api.Result] = []
    if traj.dist is not None:
        out.append(to_series(traj, path=str(path), label=Path(path).name))
    out.append(_summary_table(traj, f"{Path(path).name}: episodes"))
    return out


def write_distribution_csv(result: api.DistributionSeries, path: str) -> None:
    """Writer hook: per step and action, mean, std, VaR and CVaR at 5/10/25% as CSV."""
    traj = series_to_trajectory(result)
    d = traj.dist
    m, s = d.mean(), d.std()
    alphas = (0.05, 0.1, 0.25)
    var = {a: d.value_at_risk(a) for a in alphas}
    cvar = {a: d.cvar(a) for a in alphas}
    g = traj.mc_returns()
    names = traj.action_names
    cols = ["step", "episode", "action_taken", "reward", "mc_return", "series", "mean", "std"]
    cols += [f"var_{a:g}" for a in alphas] + [f"cvar_{a:g}" for a in alphas]
    lines = [",".join(cols)]
    for t in range(len(traj)):
        for a in range(d.batch_shape[1]):
            row = [t, int(traj.episode[t]), int(traj.action[t]), f"{traj.reward[t]:g}", f"{g[t]:.6g}",
                   '"' + names[a].replace('"', "'") + '"', f"{m[t, a]:.6g}", f"{s[t, a]:.6g}"]
            row += [f"{var[x][t, a]:.6g}" for x in alphas] + [f"{cvar[x][t, a]:.6g}" for x in alphas]
            lines.append(",".join(str(v) for v in row))
    Path(path).write_text("\n".join(lines) + "\n")
