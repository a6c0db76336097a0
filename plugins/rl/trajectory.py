"""Trajectories with per-step return distributions: the file format, readers and diagnostics.

numpy + h5py only (no Qt, no torch). The format is documented in ``docs/trajectory-format.md``:
one ``.npz`` file per run (``numpy.savez_compressed``), read with ``allow_pickle=False``, holding a
JSON header string and plain arrays. Readers never give up on the whole file for a local problem:
they collect :class:`~plugins.rl.distributions.Issue` records (naming step and field), mark the
affected steps' distributions invalid and keep the rest viewable.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .distributions import (CATEGORICAL, KINDS, QUANTILES, SAMPLED_QUANTILES, DistributionError, Issue,
                            ReturnDistribution, check_categorical, check_quantiles, midpoint_taus,
                            tau_cell_masses)

FORMAT_NAME = "implicit-studio/rl-trajectory"
FORMAT_VERSION = 1


class TrajectoryError(ValueError):
    """A trajectory file that cannot be read at all (not just a bad step)."""


# --------------------------------------------------------------------------------------------
# The in-memory trajectory
# --------------------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """Steps of one or more episodes, concatenated; ``episode[t]`` says which episode step t is in.

    ``dist`` (batch shape (T, n_actions)) is the agent's return distribution per action at each
    step, or None; ``dist_valid[t]`` is False where step t's distribution failed validation (its
    values are NaN then). ``bootstrap[e]`` (optional) is the agent's value estimate at the state
    where episode e was truncated, used to complete Monte-Carlo returns of truncated episodes.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray
    header: dict = field(default_factory=dict)
    dist: ReturnDistribution | None = None
    dist_valid: np.ndarray | None = None
    frames: np.ndarray | None = None
    return_samples: np.ndarray | None = None
    bootstrap: np.ndarray | None = None
    issues: list[Issue] = field(default_factory=list)

    # ---------------- basic facts ----------------

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_steps(self) -> int:
        return len(self)

    @property
    def n_actions(self) -> int:
        if self.dist is not None:
            return int(self.dist.batch_shape[1])
        n = self.header.get("n_actions")
        if n:
            return int(n)
        return int(self.action.max()) + 1 if len(self) else 0

    @property
    def gamma(self) -> float:
        return float(self.header.get("gamma", 0.99))

    @property
    def env_id(self) -> str:
        return str(self.header.get("env_id", ""))

    @property
    def action_names(self) -> list[str]:
        names = self.header.get("action_names")
        if names and len(names) == self.n_actions:
            return [str(n) for n in names]
        return [f"action {i}" for i in range(self.n_actions)]

    def episode_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of each episode, in order."""
        if len(self) == 0:
            return []
        change = np.nonzero(np.diff(self.episode) != 0)[0] + 1
        starts = np.concatenate([[0], change])
        stops = np.concatenate([change, [len(self)]])
        return [(int(a), int(b)) for a, b in zip(starts, stops)]

    @property
    def n_episodes(self) -> int:
        return len(self.episode_bounds())

    def episode_slice(self, i: int) -> "Trajectory":
        bounds = self.episode_bounds()
        if not 0 <= i < len(bounds):
            raise IndexError(f"episode {i} does not exist (this file has {len(bounds)})")
        a, b = bounds[i]
        return self.slice(a, b)

    def slice(self, a: int, b: int) -> "Trajectory":
        sl = slice(a, b)
        eps = np.unique(self.episode[sl])
        boot = None
        if self.bootstrap is not None:
            boot = np.array([self.bootstrap[e] if 0 <= e < len(self.bootstrap) else np.nan for e in eps])
        remap = {int(e): i for i, e in enumerate(eps)}
        return Trajectory(
            obs=self.obs[sl], action=self.action[sl], reward=self.reward[sl],
            terminated=self.terminated[sl], truncated=self.truncated[sl],
            episode=np.array([remap[int(e)] for e in self.episode[sl]], dtype=np.int32),
            header=dict(self.header),
            dist=None if self.dist is None else self.dist[sl],
            dist_valid=None if self.dist_valid is None else self.dist_valid[sl],
            frames=None if self.frames is None else self.frames[sl],
            return_samples=None if self.return_samples is None else self.return_samples[sl],
            bootstrap=boot,
            issues=[i for i in self.issues if i.step is None or a <= i.step < b],
        )

    def chosen(self) -> ReturnDistribution:
        """The distribution of the action actually taken at each step, batch shape (T,)."""
        if self.dist is None:
            raise ValueError("this trajectory has no return distributions; load an agent to add them")
        t = np.arange(len(self))
        a = np.clip(self.action.astype(np.int64), 0, self.n_actions - 1)
        return self.dist[t, a]

    # ---------------- Monte-Carlo returns ----------------

    def mc_returns(self, gamma: float | None = None, *, bootstrap: bool = True) -> np.ndarray:
        """Discounted return actually obtained from each step: G_t = r_t + gamma * G_{t+1}
        within the episode. A terminated episode ends with G = 0 after its last step; a truncated
        one ends with the recorded bootstrap value when ``bootstrap`` and one was recorded."""
        g = self.gamma if gamma is None else float(gamma)
        if not 0 <= g <= 1:
            raise ValueError(f"discount gamma must be in [0, 1], got {g}")
        out = np.empty(len(self), dtype=np.float64)
        r = self.reward.astype(np.float64)
        for e, (a, b) in enumerate(self.episode_bounds()):
            acc = 0.0
            if bootstrap and self.bootstrap is not None and not self.terminated[b - 1] and e < len(self.bootstrap):
                v = float(self.bootstrap[e])
                acc = v if math.isfinite(v) else 0.0
            for t in range(b - 1, a - 1, -1):
                acc = r[t] + g * acc
                out[t] = acc
        return out

    def truncated_mask(self, gamma: float | None = None, tol: float = 0.01) -> np.ndarray:
        """Steps whose MC return is materially cut short by a truncation without a bootstrap
        value: those within the horizon where gamma^k still exceeds ``tol``."""
        g = self.gamma if gamma is None else float(gamma)
        mask = np.zeros(len(self), dtype=bool)
        if g <= 0:
            return mask
        horizon = int(math.ceil(math.log(tol) / math.log(g))) if g < 1 else len(self)
        for e, (a, b) in enumerate(self.episode_bounds()):
            has_boot = self.bootstrap is not None and e < len(self.bootstrap) and np.isfinite(self.bootstrap[e])
            if not self.terminated[b - 1] and not has_boot:
                mask[max(a, b - horizon):b] = True
        return mask


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _dist_arrays(dist: ReturnDistribution) -> tuple[dict, dict]:
    if dist.kind == CATEGORICAL:
        atoms = np.asarray(dist.atoms, dtype=np.float64)
        return ({"dist_atoms": atoms.astype(np.float32), "dist_probs": dist.probs.astype(np.float32)},
                {"kind": CATEGORICAL, "n": int(atoms.size), "v_min": float(atoms[0]), "v_max": float(atoms[-1])})
    if dist.kind == QUANTILES:
        return ({"dist_taus": np.asarray(dist.taus, dtype=np.float32), "dist_values": dist.values.astype(np.float32)},
                {"kind": QUANTILES, "n": int(dist.n_support)})
    if dist.kind == SAMPLED_QUANTILES:
        taus = np.broadcast_to(dist.taus, dist.values.shape)
        return ({"dist_taus": taus.astype(np.float32), "dist_values": dist.values.astype(np.float32)},
                {"kind": SAMPLED_QUANTILES, "n": int(dist.n_support)})
    raise ValueError(f"cannot store a distribution of kind '{dist.kind}'")


def write_trajectory(path: str | os.PathLike, traj: Trajectory) -> Path:
    """Write ``traj`` as a compressed npz (atomically: temporary name, then rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    T = len(traj)
    header = dict(traj.header)
    header.update(format=FORMAT_NAME, version=FORMAT_VERSION, n_steps=T, n_episodes=traj.n_episodes,
                  n_actions=traj.n_actions)
    header.setdefault("gamma", traj.gamma)
    header.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    arrays = {
        "obs": np.asarray(traj.obs, dtype=np.float32),
        "action": np.asarray(traj.action, dtype=np.int64),
        "reward": np.asarray(traj.reward, dtype=np.float32),
        "terminated": np.asarray(traj.terminated, dtype=bool),
        "truncated": np.asarray(traj.truncated, dtype=bool),
        "episode": np.asarray(traj.episode, dtype=np.int32),
    }
    if traj.dist is not None:
        if traj.dist.batch_shape[0] != T:
            raise ValueError(f"distribution has {traj.dist.batch_shape[0]} steps but the trajectory has {T}")
        arr, meta = _dist_arrays(traj.dist)
        arrays.update(arr)
        header["distribution"] = {**header.get("distribution", {}), **meta}
    else:
        header.pop("distribution", None)
    if traj.frames is not None:
        arrays["frames"] = np.asarray(traj.frames, dtype=np.uint8)
    if traj.return_samples is not None:
        arrays["return_samples"] = np.asarray(traj.return_samples, dtype=np.float32)
    if traj.bootstrap is not None:
        arrays["bootstrap"] = np.asarray(traj.bootstrap, dtype=np.float32)
    for k, v in arrays.items():
        if k not in ("dist_atoms", "dist_taus", "bootstrap") and v.shape[0] != T:
            raise ValueError(f"field '{k}' has {v.shape[0]} rows but the trajectory has {T} steps")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, header=np.array(json.dumps(header)), **arrays)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------
# Reading (partial-load: problems become issues, the rest stays usable)
# --------------------------------------------------------------------------------------------


def read_trajectory(path: str | os.PathLike, *, rearrange_crossing: bool = False) -> Trajectory:
    """Read a trajectory file. Raises :class:`TrajectoryError` only when nothing usable is left
    (not an npz, no actions/rewards); per-step problems are listed in ``traj.issues``.

    ``rearrange_crossing`` sorts quantile values that cross (a common artefact of QR-DQN/IQN
    networks) instead of marking those steps invalid; each repaired step gets a warning.
    """
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"{path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrajectoryError(f"{path.name}: not a trajectory file (numpy .npz expected): {e}") from None
    issues: list[Issue] = []
    with npz:
        files = set(npz.files)

        def get(name):
            try:
                return npz[name]
            except ValueError as e:  # object arrays would need pickle: refused
                issues.append(Issue(name, f"cannot be read without unpickling ({e}); ignored"))
                return None
            except Exception as e:  # corrupt member
                issues.append(Issue(name, f"unreadable ({type(e).__name__}: {e}); ignored"))
                return None

        header: dict = {}
        if "header" in files:
            h = get("header")
            try:
                header = json.loads(str(h)) if h is not None else {}
                if not isinstance(header, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                issues.append(Issue("header", f"invalid JSON header ({e}); using defaults", severity="warning"))
                header = {}
        else:
            issues.append(Issue("header", "missing header; using defaults (gamma 0.99)", severity="warning"))
        if header.get("format") not in (None, FORMAT_NAME):
            issues.append(Issue("header", f"unknown format '{header.get('format')}'", severity="warning"))
        if int(header.get("version", FORMAT_VERSION)) > FORMAT_VERSION:
            issues.append(Issue("header", f"file version {header.get('version')} is newer than this reader "
                                f"({FORMAT_VERSION}); reading what is understood", severity="warning"))

        action = get("action") if "action" in files else None
        reward = get("reward") if "reward" in files else None
        if action is None or reward is None:
            missing = [n for n, v in (("action", action), ("reward", reward)) if v is None]
            raise TrajectoryError(f"{path.name}: required field(s) {', '.join(repr(m) for m in missing)} missing")
        arrays = {"action": action, "reward": reward}
        for name in ("obs", "terminated", "truncated", "episode", "frames", "return_samples"):
            if name in files:
                v = get(name)
                if v is not None:
                    arrays[name] = v
        lengths = {k: int(v.shape[0]) if v.ndim else 0 for k, v in arrays.items()}
        T = lengths["action"]
        core = [k for k in ("action", "reward", "obs", "terminated", "truncated", "episode") if k in lengths]
        Tc = min(lengths[k] for k in core)
        if any(lengths[k] != T for k in core):
            detail = ", ".join(f"{k}={lengths[k]}" for k in core)
            issues.append(Issue("length", f"fields have different numbers of steps ({detail}); "
                                f"using the first {Tc} steps"))
            T = Tc
        for opt in ("frames", "return_samples"):
            if opt in lengths and lengths[opt] != T:
                issues.append(Issue(opt, f"has {lengths[opt]} rows but the trajectory has {T} steps; ignored",
                                    severity="warning"))
                arrays.pop(opt)

        action = np.asarray(action[:T])
        if action.ndim != 1 or not np.issubdtype(action.dtype, np.number):
            raise TrajectoryError(f"{path.name}: field 'action' must be a 1-D array of discrete actions, "
                                  f"got shape {action.shape} ({action.dtype})")
        bad_a = ~np.isfinite(action.astype(np.float64)) | (action < 0)
        for t in np.nonzero(bad_a)[0][:20]:
            issues.append(Issue("action", f"invalid action {action[t]}", step=int(t)))
        action = np.where(bad_a, 0, action).astype(np.int64)
        reward = np.asarray(reward[:T], dtype=np.float64).reshape(T, -1)[:, 0]
        for t in np.nonzero(~np.isfinite(reward))[0][:20]:
            issues.append(Issue("reward", "reward is NaN or infinite; Monte-Carlo returns before it in "
                                "this episode are undefined", step=int(t)))
        obs = np.asarray(arrays["obs"][:T], dtype=np.float32) if "obs" in arrays else np.zeros((T, 0), np.float32)
        if "obs" not in arrays:
            issues.append(Issue("obs", "no observations stored", severity="warning"))
        term = np.asarray(arrays["terminated"][:T], dtype=bool) if "terminated" in arrays else None
        trunc = np.asarray(arrays["truncated"][:T], dtype=bool) if "truncated" in arrays else None
        episode = np.asarray(arrays["episode"][:T], dtype=np.int64) if "episode" in arrays else None
        if episode is None:
            ends = np.zeros(T, dtype=bool)
            for x in (term, trunc):
                if x is not None:
                    ends |= x
            episode = np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64) if T else np.zeros(0, np.int64)
        if episode.size and np.any(np.diff(episode) < 0):
            issues.append(Issue("episode", "episode indices decrease; steps are kept in file order",
                                severity="warning"))
        if term is None:
            term = np.zeros(T, dtype=bool)
            if T:
                last = np.concatenate([np.diff(episode) != 0, [True]])
                term = last & ~trunc if trunc is not None else last
            issues.append(Issue("terminated", "missing; episodes assumed to end where 'episode' changes",
                                severity="warning"))
        if trunc is None:
            trunc = np.zeros(T, dtype=bool)

        dist = None
        dist_valid = None
        dmeta = header.get("distribution") or {}
        kind = dmeta.get("kind")
        if kind is None:
            if "dist_probs" in files:
                kind = CATEGORICAL
            elif "dist_values" in files:
                kind = SAMPLED_QUANTILES if ("dist_taus" in files and npz["dist_taus"].ndim > 1) else QUANTILES
        if kind is not None:
            if kind not in KINDS:
                issues.append(Issue("distribution", f"unknown kind '{kind}'; distributions ignored "
                                    f"(expected one of {', '.join(KINDS)})"))
            else:
                try:
                    dist, dist_valid, more = _read_dist(npz, files, kind, T, dmeta, rearrange_crossing)
                    issues += more
                except DistributionError as e:
                    issues += [Issue(i.field, i.message + "; distributions ignored", i.step, i.action)
                               for i in e.issues]
                    dist = dist_valid = None

        bootstrap = None
        if "bootstrap" in files:
            bootstrap = get("bootstrap")
            if bootstrap is not None:
                bootstrap = np.asarray(bootstrap, dtype=np.float64).reshape(-1)
        frames = arrays.get("frames")
        if frames is not None:
            frames = np.asarray(frames[:T])
            if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8:
                issues.append(Issue("frames", f"expected (T, H, W, 3) uint8 images, got {frames.shape} "
                                    f"{frames.dtype}; frames ignored", severity="warning"))
                frames = None
        rs = arrays.get("return_samples")
        if rs is not None:
            rs = np.asarray(rs[:T], dtype=np.float64).reshape(T, -1)

    return Trajectory(obs=obs, action=action, reward=reward, terminated=term, truncated=trunc,
                      episode=episode.astype(np.int32), header=header, dist=dist, dist_valid=dist_valid,
                      frames=frames, return_samples=rs, bootstrap=bootstrap, issues=issues)


def _read_dist(npz, files, kind, T, dmeta, rearrange):
    issues: list[Issue] = []
    if kind == CATEGORICAL:
        for need in ("dist_atoms", "dist_probs"):
            if need not in files:
                raise DistributionError([Issue(need, "missing for a categorical distribution")])
        atoms = np.asarray(npz["dist_atoms"], dtype=np.float64).reshape(-1)
        probs = np.asarray(npz["dist_probs"], dtype=np.float64)
        if probs.ndim == 2:
            probs = probs[:, None, :]
        if probs.ndim != 3:
            raise DistributionError([Issue("dist_probs", f"expected shape (steps, actions, atoms), got {probs.shape}")])
        if probs.shape[0] < T:
            raise DistributionError([Issue("dist_probs", f"has {probs.shape[0]} steps but the trajectory has {T}")])
        if probs.shape[0] > T:
            issues.append(Issue("dist_probs", f"has {probs.shape[0]} steps, more than the trajectory's {T}; "
                                "extra rows ignored", severity="warning"))
        probs = probs[:T]
        if "v_min" in dmeta and "v_max" in dmeta and atoms.size > 1:
            if not (np.isclose(atoms[0], dmeta["v_min"]) and np.isclose(atoms[-1], dmeta["v_max"])):
                issues.append(Issue("dist_atoms", f"atoms span [{atoms[0]:g}, {atoms[-1]:g}] but the header says "
                                    f"[{dmeta['v_min']:g}, {dmeta['v_max']:g}]; using the atoms", severity="warning"))
        more, bad = check_categorical(atoms, probs, field_atoms="dist_atoms", field_probs="dist_probs",
                                      step_axis=True)
        issues += more
        step_bad = bad.any(axis=1)
        safe = np.where(step_bad[:, None, None], 1.0 / atoms.size, probs)
        dist = ReturnDistribution.categorical(atoms, safe, validate=False)
        # keep invalid steps visibly invalid: NaN masses
        probs_out = dist.probs.copy()
        probs_out[step_bad] = np.nan
        dist = ReturnDistribution(CATEGORICAL, dist.values, probs_out, None, atoms)
        return dist, ~step_bad, issues

    for need in ("dist_values",):
        if need not in files:
            raise DistributionError([Issue(need, f"missing for a {kind} distribution")])
    values = np.asarray(npz["dist_values"], dtype=np.float64)
    if values.ndim == 2:
        values = values[:, None, :]
    if values.ndim != 3:
        raise DistributionError([Issue("dist_values", f"expected shape (steps, actions, quantiles), got {values.shape}")])
    if values.shape[0] < T:
        raise DistributionError([Issue("dist_values", f"has {values.shape[0]} steps but the trajectory has {T}")])
    values = values[:T]
    n = values.shape[-1]
    if "dist_taus" in files:
        taus = np.asarray(npz["dist_taus"], dtype=np.float64)
    elif kind == QUANTILES:
        taus = midpoint_taus(n)
        issues.append(Issue("dist_taus", f"missing; assuming the {n} QR-DQN midpoint levels", severity="warning"))
    else:
        raise DistributionError([Issue("dist_taus", "missing for sampled quantiles")])
    if kind == QUANTILES and taus.ndim != 1:
        raise DistributionError([Issue("dist_taus", f"fixed quantile levels must be 1-D, got shape {taus.shape}")])
    if kind == SAMPLED_QUANTILES:
        if taus.ndim == 2:
            taus = taus[:, None, :]
        if taus.ndim == 3:
            if taus.shape[0] < T:
                raise DistributionError([Issue("dist_taus", f"has {taus.shape[0]} steps but the trajectory has {T}")])
            taus = taus[:T]
        try:
            taus = np.broadcast_to(taus, values.shape)
        except ValueError:
            raise DistributionError([Issue("dist_taus", f"shape {taus.shape} does not match values {values.shape}")]) from None
        order = np.argsort(taus, axis=-1, kind="stable")
        taus = np.take_along_axis(taus, order, axis=-1)
        values = np.take_along_axis(values, order, axis=-1)
    if rearrange:
        crossing = np.any(np.diff(values, axis=-1) < 0, axis=-1) & np.all(np.isfinite(values), axis=-1)
        for t, a in zip(*np.nonzero(crossing)):
            if len(issues) > 200:
                break
            issues.append(Issue("dist_values", "crossing quantiles sorted (monotone rearrangement)",
                                step=int(t), action=int(a), severity="warning"))
        values = np.sort(values, axis=-1)
    more, bad = check_quantiles(taus, values, field_taus="dist_taus", field_values="dist_values", step_axis=True)
    issues += more
    step_bad = bad.any(axis=1)
    values = values.copy()
    values[step_bad] = np.nan
    probs = np.broadcast_to(tau_cell_masses(np.where(np.isfinite(taus), taus, 0.5)), values.shape).copy()
    probs[step_bad] = np.nan
    if kind == QUANTILES:
        if bad.all():
            raise DistributionError(more[:5] or [Issue("dist_taus", "invalid quantile levels")])
        dist = ReturnDistribution(QUANTILES, values, probs, taus, None)
    else:
        dist = ReturnDistribution(SAMPLED_QUANTILES, values, probs, np.asarray(taus), None)
    return dist, ~step_bad, issues


# --------------------------------------------------------------------------------------------
# Other sources: Minari HDF5 and D4RL-style flat HDF5 (no distributions)
# --------------------------------------------------------------------------------------------


def _flatten_h5_obs(node, path: str, issues: list[Issue]) -> np.ndarray:
    import h5py
    if isinstance(node, h5py.Dataset):
        a = np.asarray(node[()])
        return a.reshape(a.shape[0], -1).astype(np.float32) if a.ndim != 1 else a.astype(np.float32)[:, None]
    parts = []
    for k in sorted(node.keys()):
        parts.append(_flatten_h5_obs(node[k], f"{path}/{k}", issues))
    issues.append(Issue(path, f"structured observation (keys {', '.join(sorted(node.keys()))}) flattened by "
                        "concatenating its parts in key order", severity="warning"))
    n = min(p.shape[0] for p in parts)
    return np.concatenate([p[:n] for p in parts], axis=1)


def read_minari(path: str | os.PathLike, *, max_episodes: int | None = None) -> Trajectory:
    """Read a Minari dataset (``<dataset>/data/main_data.hdf5`` or the file itself) with h5py.

    Each ``episode_<id>`` group holds ``observations`` (T+1 rows), ``actions``, ``rewards``,
    ``terminations``, ``truncations`` (T rows). The final observation of each episode is dropped
    (no action is taken there). Metadata from ``data/metadata.json`` goes into the header.
    """
    import h5py

    p = Path(path)
    if p.is_dir():
        cand = [p / "data" / "main_data.hdf5", p / "main_data.hdf5"]
        p = next((c for c in cand if c.exists()), cand[0])
    if not p.exists():
        raise TrajectoryError(f"{path}: no Minari main_data.hdf5 found")
    header: dict = {"source": "minari", "source_path": str(p)}
    meta_path = p.parent / "metadata.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            header["minari"] = {k: meta[k] for k in ("dataset_id", "total_episodes", "total_steps",
                                                      "algorithm_name", "author") if k in meta}
            spec = meta.get("env_spec")
            if isinstance(spec, str):
                try:
                    spec = json.loads(spec)
                except ValueError:
                    spec = None
            if isinstance(spec, dict) and spec.get("id"):
                header["env_id"] = spec["id"]
        except ValueError as e:
            header["minari_metadata_error"] = str(e)
    issues: list[Issue] = []
    obs_l, act_l, rew_l, term_l, trunc_l, ep_l = [], [], [], [], [], []
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise TrajectoryError(f"{p.name}: not an HDF5 file ({e})") from None
    with f:
        names = [k for k in f.keys() if k.startswith("episode_")]
        names.sort(key=lambda k: int(k.split("_", 1)[1]) if k.split("_", 1)[1].isdigit() else 1 << 60)
        if not names:
            raise TrajectoryError(f"{p.name}: no 'episode_<id>' groups (is this a Minari dataset?)")
        for ei, name in enumerate(names[:max_episodes] if max_episodes else names):
            g = f[name]
            missing = [k for k in ("observations", "actions", "rewards") if k not in g]
            if missing:
                issues.append(Issue(f"{name}", f"missing {', '.join(missing)}; episode skipped"))
                continue
            acts = np.asarray(g["actions"][()])
            T = acts.shape[0]
            obs = _flatten_h5_obs(g["observations"], f"{name}/observations", issues)
            rew = np.asarray(g["rewards"][()], dtype=np.float64).reshape(-1)
            term = np.asarray(g["terminations"][()], dtype=bool).reshape(-1) if "terminations" in g else np.zeros(T, bool)
            trunc = np.asarray(g["truncations"][()], dtype=bool).reshape(-1) if "truncations" in g else np.zeros(T, bool)
            n = min(T, obs.shape[0], rew.shape[0], term.shape[0], trunc.shape[0])
            if obs.shape[0] not in (T, T + 1) or len({T, rew.shape[0], term.shape[0], trunc.shape[0]}) > 1:
                issues.append(Issue(f"{name}", f"length mismatch (actions {T}, observations {obs.shape[0]}, "
                                    f"rewards {rew.shape[0]}, terminations {term.shape[0]}, truncations "
                                    f"{trunc.shape[0]}); using {n} steps"))
            if acts.ndim > 1 and acts.shape[1:] != (1,):
                issues.append(Issue(f"{name}/actions", "continuous or multi-dimensional actions: only the first "
                                    "component is kept (distribution plots need discrete actions)", severity="warning"))
            obs_l.append(obs[:n])
            act_l.append(acts.reshape(T, -1)[:n, 0])
            rew_l.append(rew[:n])
            term_l.append(term[:n])
            trunc_l.append(trunc[:n])
            ep_l.append(np.full(n, len(ep_l), dtype=np.int32))
    if not act_l:
        raise TrajectoryError(f"{p.name}: no readable episodes")
    dims = {o.shape[1] for o in obs_l}
    if len(dims) > 1:
        raise TrajectoryError(f"{p.name}: episodes have different observation sizes {sorted(dims)}")
    return Trajectory(obs=np.concatenate(obs_l), action=np.concatenate(act_l).astype(np.int64),
                      reward=np.concatenate(rew_l), terminated=np.concatenate(term_l),
                      truncated=np.concatenate(trunc_l), episode=np.concatenate(ep_l), header=header,
                      issues=issues)


def read_d4rl(path: str | os.PathLike) -> Trajectory:
    """Read a D4RL-style flat HDF5: ``observations`` (N x d), ``actions``, ``rewards``,
    ``terminals``, ``timeouts`` (episodes split where either is true)."""
    import h5py

    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise TrajectoryError(f"{p.name}: not an HDF5 file ({e})") from None
    issues: list[Issue] = []
    with f:
        missing = [k for k in ("observations", "actions", "rewards") if k not in f]
        if missing:
            raise TrajectoryError(f"{p.name}: missing {', '.join(missing)} (is this a D4RL-style file?)")
        obs = _flatten_h5_obs(f["observations"], "observations", issues)
        acts = np.asarray(f["actions"][()])
        rew = np.asarray(f["rewards"][()], dtype=np.float64).reshape(-1)
        N = acts.shape[0]
        term = np.asarray(f["terminals"][()], dtype=bool).reshape(-1) if "terminals" in f else None
        tout = np.asarray(f["timeouts"][()], dtype=bool).reshape(-1) if "timeouts" in f else None
        if term is None:
            issues.append(Issue("terminals", "missing; no step is terminal", severity="warning"))
            term = np.zeros(N, bool)
        if tout is None:
            tout = np.zeros(N, bool)
        n = min(N, obs.shape[0], rew.shape[0], term.shape[0], tout.shape[0])
        if len({N, obs.shape[0], rew.shape[0], term.shape[0], tout.shape[0]}) > 1:
            issues.append(Issue("length", f"fields have different lengths (observations {obs.shape[0]}, actions {N}, "
                                f"rewards {rew.shape[0]}, terminals {term.shape[0]}, timeouts {tout.shape[0]}); "
                                f"using the first {n}"))
        if acts.ndim > 1 and acts.shape[1:] != (1,):
            issues.append(Issue("actions", "continuous or multi-dimensional actions: only the first component is "
                                "kept", severity="warning"))
        acts = acts.reshape(N, -1)[:n, 0]
        term, tout, obs, rew = term[:n], tout[:n], obs[:n], rew[:n]
        ends = term | tout
        episode = np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int32) if n else np.zeros(0, np.int32)
        header = {"source": "d4rl", "source_path": str(p)}
        for k, v in f.attrs.items():
            if isinstance(v, (str, bytes, int, float, np.integer, np.floating)):
                header[str(k)] = v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
    return Trajectory(obs=obs, action=acts.astype(np.int64), reward=rew, terminated=term, truncated=tout & ~term,
                      episode=episode, header=header, issues=issues)


def minari_root() -> Path:
    """Where Minari keeps local datasets: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".minari" / "datasets"


_MINARI_ID = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*-v\d+")


def resolve_source(source: str | os.PathLike) -> Path:
    """The file or folder a trajectory source names: a path (our npz, a Minari dataset folder or
    HDF5, a D4RL HDF5), or a Minari dataset id (``cartpole/expert-v0``) in the local Minari root."""
    text = os.fspath(source).strip()
    p = Path(text).expanduser()
    if p.exists():
        return p
    if _MINARI_ID.fullmatch(text):
        root = minari_root()
        found = root / text
        if found.exists():
            return found
        raise TrajectoryError(f"{text}: no such file, and no Minari dataset {text!r} in the local Minari root {root} "
                              f"(download it with 'minari download {text}', or set MINARI_DATASETS_PATH)")
    raise TrajectoryError(f"{text}: no such file or folder (give a trajectory file, a Minari dataset folder or a "
                          "Minari dataset id such as cartpole/expert-v0)")


def read_any(path: str | os.PathLike, **kw) -> Trajectory:
    """Pick the reader from the file: our npz, a Minari dataset/HDF5, or a D4RL flat HDF5. A Minari
    dataset can also be named by its id (see :func:`resolve_source`)."""
    p = resolve_source(path)
    if p.is_dir():
        return read_minari(p)
    if p.suffix == ".npz":
        return read_trajectory(p, **kw)
    if p.suffix in (".hdf5", ".h5"):
        import h5py
        try:
            with h5py.File(p, "r") as f:
                minari = any(k.startswith("episode_") for k in f.keys())
        except OSError as e:
            raise TrajectoryError(f"{p.name}: not an HDF5 file ({e})") from None
        return read_minari(p) if minari else read_d4rl(p)
    raise TrajectoryError(f"{p.name}: unknown trajectory file type (expected .npz, .hdf5 or a Minari folder)")


# --------------------------------------------------------------------------------------------
# Diagnostics over a trajectory
# --------------------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Calibration of predicted return distributions against realised returns."""

    pit: np.ndarray              # PIT value per used state, in [0, 1]
    hist: np.ndarray             # PIT histogram (fractions per bin; 1/bins each if calibrated)
    edges: np.ndarray
    nominal: np.ndarray          # central-interval probabilities
    coverage: np.ndarray         # fraction of realised returns inside each central interval
    n_states: int
    n_excluded: int
    edge_mass: tuple[float, float] | None  # mean mass on (v_min, v_max) for categorical agents
    outside_support: float | None          # fraction of realised returns outside [v_min, v_max]
    warnings: list[str]


def pit_values(dist: ReturnDistribution, returns: np.ndarray) -> np.ndarray:
    """Mid-PIT of each realised return under its predicted distribution:
    u = P(Z < g) + 0.5 * P(Z = g) (uniform on [0, 1] when predictions are calibrated)."""
    g = np.asarray(returns, dtype=np.float64)[..., None]
    eps = 1e-9 * np.maximum(1.0, np.abs(g))
    lower = dist.cdf(g - eps)[..., 0]
    upper = dist.cdf(g)[..., 0]
    return lower + 0.5 * (upper - lower)


def calibration(traj: Trajectory, *, gamma: float | None = None, bins: int = 10,
                exclude_truncated: bool = True, edge_threshold: float = 0.1) -> Calibration:
    """PIT histogram and coverage of the realised Monte-Carlo return by the chosen action's
    predicted distribution over all valid steps; warnings for support clipping (C51 mass piling
    at v_min/v_max) and for realised returns outside the support."""
    if traj.dist is None:
        raise ValueError("this trajectory has no return distributions; load an agent to add them")
    G = traj.mc_returns(gamma)
    use = np.isfinite(G)
    if traj.dist_valid is not None:
        use &= traj.dist_valid
    excluded = 0
    if exclude_truncated:
        tm = traj.truncated_mask(gamma)
        excluded = int(np.sum(use & tm))
        use &= ~tm
    d = traj.chosen()
    idx = np.nonzero(use)[0]
    warnings: list[str] = []
    if excluded:
        warnings.append(f"{excluded} steps excluded: their Monte-Carlo return is cut short by a time-limit "
                        "truncation with no bootstrap value")
    edges = np.linspace(0, 1, bins + 1)
    nominal = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    if idx.size == 0:
        warnings.append("no steps usable for calibration")
        return Calibration(np.zeros(0), np.zeros(bins), edges, nominal, np.full(nominal.shape, np.nan), 0,
                           excluded, None, None, warnings)
    dsub = d[idx]
    g = G[idx]
    pit = pit_values(dsub, g)
    hist = np.histogram(pit, bins=edges)[0] / idx.size
    lo = dsub.quantile((1 - nominal) / 2)
    hi = dsub.quantile((1 + nominal) / 2)
    coverage = np.mean((g[:, None] >= lo) & (g[:, None] <= hi), axis=0)
    mean_pit = float(np.mean(pit))
    if mean_pit > 0.75 or mean_pit < 0.25:
        where = "above" if mean_pit > 0.5 else "below"
        warnings.append(f"realised returns lie mostly {where} the predicted distributions (mean PIT "
                        f"{mean_pit:.2f}; 0.5 when unbiased): the value estimates are biased")
    edge_mass = None
    outside = None
    if d.kind == CATEGORICAL:
        all_d = traj.dist.probs[np.nonzero(traj.dist_valid if traj.dist_valid is not None else
                                           np.ones(len(traj), bool))[0]]
        lo_m = float(np.mean(all_d[..., 0]))
        hi_m = float(np.mean(all_d[..., -1]))
        edge_mass = (lo_m, hi_m)
        v_min, v_max = float(d.atoms[0]), float(d.atoms[-1])
        frac_lo = float(np.mean(dsub.probs[:, 0] > edge_threshold))
        frac_hi = float(np.mean(dsub.probs[:, -1] > edge_threshold))
        for frac, where, v in ((frac_lo, "v_min", v_min), (frac_hi, "v_max", v_max)):
            if frac > 0.05:
                warnings.append(f"support too narrow? {100 * frac:.0f}% of states put more than "
                                f"{100 * edge_threshold:.0f}% of their mass on the edge atom {where} = {v:g}")
        outside = float(np.mean((g < v_min) | (g > v_max)))
        if outside > 0.01:
            warnings.append(f"{100 * outside:.1f}% of realised returns fall outside the support "
                            f"[{v_min:g}, {v_max:g}]")
    return Calibration(pit, hist, edges, nominal, coverage, int(idx.size), excluded, edge_mass, outside, warnings)


def episode_summary(traj: Trajectory, gamma: float | None = None) -> list[dict]:
    """One row per episode: index, steps, undiscounted return, how it ended."""
    rows = []
    for e, (a, b) in enumerate(traj.episode_bounds()):
        rows.append({"episode": e, "start": a, "steps": b - a, "return": float(np.sum(traj.reward[a:b])),
                     "end": "terminated" if traj.terminated[b - 1] else ("truncated" if traj.truncated[b - 1]
                                                                         else "cut")})
    return rows
