"""Everything the episode views draw, computed once per episode with numpy (no Qt).

The views only index these arrays when the user scrubs, so a redraw is a handful of ``setData``
calls; a change of alpha or distortion recomputes the risk arrays for the whole episode at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .distributions import CATEGORICAL, Distortion, ReturnDistribution, distortion, wasserstein1_to_samples
from .trajectory import Trajectory

BAND_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class RiskSettings:
    alpha: float = 0.1
    distortion: str = "cvar"
    eta: float | None = None     # None: alpha for CVaR, the IQN paper's default otherwise

    def make(self) -> Distortion:
        if self.distortion == "cvar":
            return distortion("cvar", self.alpha if self.eta is None else self.eta)
        return distortion(self.distortion, self.eta)


@dataclass
class EpisodeStats:
    traj: Trajectory
    kind: str
    T: int
    A: int
    mean: np.ndarray            # (T, A)
    std: np.ndarray             # (T, A)
    valid: np.ndarray           # (T,)
    chosen: np.ndarray          # (T,) action taken
    greedy: np.ndarray          # (T,) argmax of the mean
    mc: np.ndarray              # (T,) realised discounted return
    mc_cut: np.ndarray          # (T,) True where that return is cut short by a truncation
    bands: np.ndarray           # (T, len(BAND_LEVELS)) quantiles of the chosen action
    w1: np.ndarray              # (T,) W1(predicted chosen, realised)
    x_range: tuple[float, float]
    # per-step drawing arrays (stepMode="center": edges one longer than heights)
    cdf_x: np.ndarray           # (T, A, K + 2)
    cdf_y: np.ndarray           # (T, A, K + 1)
    qf_x: np.ndarray            # (T, A, K + 1) tau edges
    qf_y: np.ndarray            # (T, A, K) values
    pmf: np.ndarray | None      # (T, A, K) categorical probabilities
    atoms: np.ndarray | None
    # risk (recomputed by set_risk)
    risk: RiskSettings = field(default_factory=RiskSettings)
    var: np.ndarray | None = None        # (T, A) VaR_alpha
    cvar: np.ndarray | None = None       # (T, A) CVaR_alpha
    distorted: np.ndarray | None = None  # (T, A) distortion risk measure
    risk_action: np.ndarray | None = None
    disagree: np.ndarray | None = None   # (T,) risk-averse choice differs from greedy
    # density of the chosen action on a return grid, for the heat map / ridge plot
    grid: np.ndarray | None = None       # (M + 1,) bin edges
    density: np.ndarray | None = None    # (T, M) probability per bin

    @property
    def dist(self) -> ReturnDistribution:
        return self.traj.dist

    def set_risk(self, risk: RiskSettings) -> None:
        d = self.dist
        self.risk = risk
        with np.errstate(invalid="ignore"):
            self.var = d.value_at_risk(risk.alpha)
            self.cvar = d.cvar(risk.alpha)
            self.distorted = d.risk(risk.make())
        filled = np.where(np.isfinite(self.distorted), self.distorted, -np.inf)
        self.risk_action = np.argmax(filled, axis=1)
        self.disagree = self.valid & (self.risk_action != self.greedy)

    def summary_rows(self, t: int) -> list[tuple]:
        """(action name, mean, std, VaR, CVaR, distorted) for step t."""
        names = self.traj.action_names
        return [(names[a], self.mean[t, a], self.std[t, a], self.var[t, a], self.cvar[t, a],
                 self.distorted[t, a]) for a in range(self.A)]


def compute_episode_stats(traj: Trajectory, risk: RiskSettings | None = None, grid_bins: int = 120) -> EpisodeStats:
    if traj.dist is None:
        raise ValueError("this trajectory has no return distributions; load an agent to add them")
    d = traj.dist
    T, A = d.batch_shape
    valid = traj.dist_valid if traj.dist_valid is not None else np.ones(T, bool)
    with np.errstate(invalid="ignore"):
        mean = d.mean()
        std = d.std()
    greedy = np.argmax(np.where(np.isfinite(mean), mean, -np.inf), axis=1)
    chosen = np.clip(traj.action.astype(np.int64), 0, A - 1)
    mc = traj.mc_returns()
    mc_cut = traj.truncated_mask()
    ch = traj.chosen()
    with np.errstate(invalid="ignore"):
        bands = ch.quantile(np.array(BAND_LEVELS))
        samples = mc[:, None]
        if traj.return_samples is not None:
            samples = np.concatenate([samples, traj.return_samples], axis=1)
        w1 = np.full(T, np.nan)
        ok = valid & np.isfinite(mc)
        if ok.any():
            w1[ok] = wasserstein1_to_samples(ch[np.nonzero(ok)[0]], samples[ok])
    finite_vals = d.values[np.isfinite(d.values)]
    lo = float(min(finite_vals.min() if finite_vals.size else 0.0, np.nanmin(mc) if np.isfinite(mc).any() else 0))
    hi = float(max(finite_vals.max() if finite_vals.size else 1.0, np.nanmax(mc) if np.isfinite(mc).any() else 1))
    if d.kind == CATEGORICAL:
        lo, hi = min(lo, float(d.atoms[0])), max(hi, float(d.atoms[-1]))
    pad = 0.04 * max(hi - lo, 1e-6)
    x_range = (lo - pad, hi + pad)

    values, cum = d.cdf_steps()
    values = np.broadcast_to(values, cum.shape)
    K = values.shape[-1]
    cdf_x = np.empty((T, A, K + 2))
    cdf_x[..., 0] = x_range[0]
    cdf_x[..., 1:K + 1] = values
    cdf_x[..., K + 1] = x_range[1]
    cdf_y = np.concatenate([np.zeros((T, A, 1)), cum], axis=-1)
    qf_x = np.concatenate([np.zeros((T, A, 1)), cum], axis=-1)
    qf_y = np.array(values)
    for arr in (cdf_x, cdf_y, qf_x, qf_y):  # invalid steps draw nothing
        arr[~valid] = np.nan
    pmf = None
    if d.kind == CATEGORICAL:
        pmf = np.where(valid[:, None, None], d.probs, 0.0)
    edges = np.linspace(x_range[0], x_range[1], grid_bins + 1)
    with np.errstate(invalid="ignore"):
        dens = ch.density_on_grid(edges)
    dens = np.where(valid[:, None], dens, np.nan)
    st = EpisodeStats(traj=traj, kind=d.kind, T=T, A=A, mean=mean, std=std, valid=valid, chosen=chosen,
                      greedy=greedy, mc=mc, mc_cut=mc_cut, bands=bands, w1=w1, x_range=x_range, cdf_x=cdf_x,
                      cdf_y=cdf_y, qf_x=qf_x, qf_y=qf_y, pmf=pmf, atoms=None if d.atoms is None else np.asarray(d.atoms),
                      grid=edges, density=dens)
    st.set_risk(risk or RiskSettings())
    return st


def compare_w1(a: Trajectory, b: Trajectory) -> np.ndarray:
    """Per step, W1 between two agents' distributions of the action taken (same episode)."""
    from .distributions import wasserstein1
    if len(a) != len(b):
        raise ValueError(f"the two trajectories have different lengths ({len(a)} and {len(b)} steps)")
    with np.errstate(invalid="ignore"):
        return wasserstein1(a.chosen(), b.chosen())


def export_npz(stats: EpisodeStats, path) -> None:
    """The arrays behind the episode plots, for re-plotting elsewhere."""
    np.savez_compressed(path, mean=stats.mean, std=stats.std, var=stats.var, cvar=stats.cvar,
                        distorted=stats.distorted, greedy=stats.greedy, risk_action=stats.risk_action,
                        action=stats.chosen, mc_return=stats.mc, band_levels=np.array(BAND_LEVELS),
                        bands=stats.bands, w1=stats.w1, grid=stats.grid, density=stats.density,
                        alpha=stats.risk.alpha, distortion=np.array(stats.risk.distortion))


def export_csv(stats: EpisodeStats, path) -> None:
    names = stats.traj.action_names
    cols = ["step", "action", "greedy", "risk_action", "mc_return", "w1"]
    cols += [f"q{int(l * 100):02d}" for l in BAND_LEVELS]
    for n in names:
        k = n.replace(" ", "_").replace(",", "")
        cols += [f"mean_{k}", f"std_{k}", f"var_{k}", f"cvar_{k}", f"distorted_{k}"]
    lines = [",".join(cols)]
    for t in range(stats.T):
        row = [t, int(stats.chosen[t]), int(stats.greedy[t]), int(stats.risk_action[t]), f"{stats.mc[t]:.6g}",
               f"{stats.w1[t]:.6g}"] + [f"{v:.6g}" for v in stats.bands[t]]
        for a in range(stats.A):
            row += [f"{stats.mean[t, a]:.6g}", f"{stats.std[t, a]:.6g}", f"{stats.var[t, a]:.6g}",
                    f"{stats.cvar[t, a]:.6g}", f"{stats.distorted[t, a]:.6g}"]
        lines.append(",".join(str(v) for v in row))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
