"""One internal model for return distributions (numpy only, no Qt, no torch).

Every distributional agent's output is turned into the same object, a batch of *discrete*
probability measures on the real line, so every plot and statistic works for every algorithm:

* ``categorical`` (C51): fixed atoms ``z_0 < ... < z_{N-1}`` and probabilities per atom.
* ``quantiles`` (QR-DQN): N quantile values at fixed levels ``tau`` (default the midpoints
  ``(2i+1)/(2N)``). The measure puts mass on each value equal to the width of the tau cell it
  represents (cell boundaries halfway between neighbouring levels, 0 and 1 at the ends), which for
  midpoint levels is exactly QR-DQN's "N Diracs of mass 1/N".
* ``sampled_quantiles`` (IQN): arbitrary sampled levels ``tau`` with values, per distribution;
  the same cell rule gives the masses (the quantile function is the step function through the
  samples, each value held over its nearest-tau cell).

Conversions between PMF, CDF and quantile function are exact for this measure (step functions,
no interpolation): ``pmf() -> cdf_steps() -> quantile_function() -> from_quantile_function()``
returns the original probabilities.  ``to_quantiles(n)`` (projection onto n midpoint quantiles)
is the only lossy operation and says so.

Risk measures follow the usual lower-tail convention for *returns* (bigger is better):
``VaR_alpha`` is the alpha-quantile and ``CVaR_alpha = (1/alpha) * integral_0^alpha F^-1(tau) dtau``,
the mean of the worst alpha fraction of outcomes. IQN distortion risk measures (CVaR, Wang, CPW,
power; Dabney et al. 2018, section 3) are applied exactly by re-weighting the measure: a distortion
``beta`` sampled as ``Z(beta(tau)), tau ~ U(0,1)`` is the measure with CDF ``beta^-1(F(z))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

CATEGORICAL = "categorical"
QUANTILES = "quantiles"
SAMPLED_QUANTILES = "sampled_quantiles"
EMPIRICAL = "empirical"
KINDS = (CATEGORICAL, QUANTILES, SAMPLED_QUANTILES)

PROB_SUM_TOL = 1e-3  # a distribution whose probabilities miss 1 by more than this is rejected


# --------------------------------------------------------------------------------------------
# Errors and issues
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem found in input data, named by field and (where it applies) step and action."""

    field: str
    message: str
    step: int | None = None
    action: int | None = None
    severity: str = "error"  # "error" (that step/field is unusable) or "warning"

    def __str__(self) -> str:
        where = []
        if self.step is not None:
            where.append(f"step {self.step}")
        if self.action is not None:
            where.append(f"action {self.action}")
        where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}"


class DistributionError(ValueError):
    """Invalid distribution data; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[Issue] | str):
        if isinstance(issues, str):
            issues = [Issue(field="distribution", message=issues)]
        self.issues = list(issues)
        shown = "; ".join(str(i) for i in self.issues[:5])
        more = len(self.issues) - 5
        if more > 0:
            shown += f"; and {more} more problem(s)"
        super().__init__(shown)


def _row_index(batch_index: tuple, step_axis: bool) -> tuple[int | None, int | None]:
    """Map a batch index to (step, action) for messages: (T, A) -> step, action; (A,) -> action."""
    idx = tuple(int(i) for i in batch_index)
    if len(idx) == 0:
        return None, None
    if len(idx) == 1:
        return (idx[0], None) if step_axis else (None, idx[0])
    return idx[0], idx[-1]


def _issues_from_mask(mask: np.ndarray, field: str, make_msg, step_axis: bool,
                      limit: int | None = None) -> list[Issue]:
    out = []
    for bi in zip(*np.nonzero(mask)) if mask.ndim else ([()] if bool(mask) else []):
        step, action = _row_index(bi, step_axis)
        out.append(Issue(field=field, message=make_msg(bi), step=step, action=action))
        if limit is not None and len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------------------------
# Validation (returns issues + a mask of bad rows; constructors raise, readers keep going)
# --------------------------------------------------------------------------------------------


def check_categorical(atoms: np.ndarray, probs: np.ndarray, *, field_atoms: str = "atoms",
                      field_probs: str = "probs", step_axis: bool | None = None,
                      tol: float = PROB_SUM_TOL) -> tuple[list[Issue], np.ndarray]:
    """Check C51-style data. Returns (issues, bad) where ``bad`` has the batch shape of probs."""
    atoms = np.asarray(atoms, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if step_axis is None:
        step_axis = probs.ndim >= 3
    issues: list[Issue] = []
    if atoms.ndim != 1:
        raise DistributionError([Issue(field_atoms, f"atoms must be a 1-D array, got shape {atoms.shape}")])
    if atoms.size < 1:
        raise DistributionError([Issue(field_atoms, "no atoms")])
    if not np.all(np.isfinite(atoms)):
        raise DistributionError([Issue(field_atoms, "atoms contain NaN or infinite values")])
    if atoms.size > 1 and not np.all(np.diff(atoms) > 0):
        k = int(np.argmin(np.diff(atoms) > 0))
        raise DistributionError([Issue(field_atoms, f"atoms must be strictly increasing "
                                       f"(atom {k + 1} = {atoms[k + 1]:g} follows {atoms[k]:g})")])
    if probs.ndim < 1 or probs.shape[-1] != atoms.size:
        raise DistributionError([Issue(field_probs, f"probabilities have {probs.shape[-1] if probs.ndim else 0} "
                                       f"entries per distribution but there are {atoms.size} atoms "
                                       f"(shape {probs.shape})")])
    nan = ~np.all(np.isfinite(probs), axis=-1)
    neg = np.any(probs < -1e-9, axis=-1) & ~nan
    s = np.where(nan, 1.0, probs.sum(axis=-1))
    badsum = (np.abs(s - 1.0) > tol) & ~nan & ~neg
    issues += _issues_from_mask(nan, field_probs, lambda bi: "probabilities contain NaN or infinite values",
                                step_axis)
    issues += _issues_from_mask(neg, field_probs, lambda bi: f"negative probability "
                                f"{float(np.min(probs[bi])):.4g}", step_axis)
    issues += _issues_from_mask(badsum, field_probs, lambda bi: f"probabilities sum to {float(s[bi]):.4f}, "
                                f"expected 1 (tolerance {tol:g})", step_axis)
    return issues, nan | neg | badsum


def check_quantiles(taus: np.ndarray, values: np.ndarray, *, field_taus: str = "taus",
                    field_values: str = "values", step_axis: bool | None = None,
                    ) -> tuple[list[Issue], np.ndarray]:
    """Check quantile data (taus broadcastable to values, both already ordered by tau)."""
    taus = np.asarray(taus, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if step_axis is None:
        step_axis = values.ndim >= 3
    if values.ndim < 1:
        raise DistributionError([Issue(field_values, "quantile values must have at least one axis")])
    if taus.ndim < 1 or taus.shape[-1] != values.shape[-1]:
        raise DistributionError([Issue(field_taus, f"{taus.shape[-1] if taus.ndim else 0} quantile levels but "
                                       f"{values.shape[-1]} quantile values per distribution")])
    try:
        taus_b = np.broadcast_to(taus, values.shape)
    except ValueError:
        raise DistributionError([Issue(field_taus, f"quantile levels of shape {taus.shape} do not match "
                                       f"values of shape {values.shape}")]) from None
    issues: list[Issue] = []
    tnan = ~np.all(np.isfinite(taus_b), axis=-1)
    trange = np.any((taus_b <= 0) | (taus_b >= 1), axis=-1) & ~tnan
    tsort = np.any(np.diff(taus_b, axis=-1) <= 0, axis=-1) & ~tnan & ~trange
    vnan = ~np.all(np.isfinite(values), axis=-1)
    vsort = np.any(np.diff(values, axis=-1) < 0, axis=-1) & ~vnan
    issues += _issues_from_mask(tnan, field_taus, lambda bi: "quantile levels contain NaN", step_axis)
    issues += _issues_from_mask(trange, field_taus, lambda bi: "quantile levels must lie strictly between "
                                "0 and 1", step_axis)
    issues += _issues_from_mask(tsort, field_taus, lambda bi: "quantile levels are not strictly increasing",
                                step_axis)
    issues += _issues_from_mask(vnan, field_values, lambda bi: "quantile values contain NaN or infinite values",
                                step_axis)

    def unsorted_msg(bi):
        d = np.diff(values[bi])
        k = int(np.argmin(d))
        return (f"quantile values are not sorted: value {k + 1} ({values[bi][k + 1]:.4g}) is below "
                f"value {k} ({values[bi][k]:.4g}); a quantile function cannot decrease")

    issues += _issues_from_mask(vsort, field_values, unsorted_msg, step_axis)
    return issues, tnan | trange | tsort | vnan | vsort


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def midpoint_taus(n: int) -> np.ndarray:
    """QR-DQN quantile levels (2i+1)/(2n), i = 0..n-1."""
    if n < 1:
        raise ValueError(f"number of quantiles must be at least 1, got {n}")
    return (2 * np.arange(n) + 1) / (2.0 * n)


def tau_cell_masses(taus: np.ndarray) -> np.ndarray:
    """Mass of each quantile level's cell: boundaries halfway between levels, 0 and 1 at the ends."""
    taus = np.asarray(taus, dtype=np.float64)
    mids = 0.5 * (taus[..., 1:] + taus[..., :-1])
    zeros = np.zeros(taus.shape[:-1] + (1,))
    bounds = np.concatenate([zeros, mids, zeros + 1.0], axis=-1)
    return np.diff(bounds, axis=-1)


def _count_less(sorted_rows: np.ndarray, queries: np.ndarray, *, inclusive: bool,
                chunk_elems: int = 4_000_000) -> np.ndarray:
    """Per-row searchsorted: for rows (..., K) and queries (..., M) return (..., M) counts of
    row entries < q (inclusive=False) or <= q (inclusive=True)."""
    a = np.asarray(sorted_rows)
    q = np.asarray(queries)
    batch = np.broadcast_shapes(a.shape[:-1], q.shape[:-1])
    a = np.broadcast_to(a, batch + a.shape[-1:]).reshape(-1, a.shape[-1])
    q = np.broadcast_to(q, batch + q.shape[-1:]).reshape(-1, q.shape[-1])
    out = np.empty(q.shape, dtype=np.int64)
    per_row = max(1, a.shape[1] * q.shape[1])
    step = max(1, chunk_elems // per_row)
    for s in range(0, a.shape[0], step):
        aa = a[s:s + step, None, :]
        qq = q[s:s + step, :, None]
        cmp = (aa <= qq) if inclusive else (aa < qq)
        out[s:s + step] = cmp.sum(axis=-1)
    return out.reshape(batch + (q.shape[-1],))


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    batch = np.broadcast_shapes(values.shape[:-1], idx.shape[:-1])
    v = np.broadcast_to(values, batch + values.shape[-1:])
    i = np.broadcast_to(idx, batch + idx.shape[-1:])
    return np.take_along_axis(v, i, axis=-1)


# --------------------------------------------------------------------------------------------
# Distortions (IQN, Dabney et al. 2018): beta maps uniform tau to the level that is evaluated
# --------------------------------------------------------------------------------------------

DISTORTIONS = ("neutral", "cvar", "wang", "cpw", "power")
DEFAULT_ETA = {"neutral": 0.0, "cvar": 0.25, "wang": -0.75, "cpw": 0.71, "power": -2.0}


@dataclass(frozen=True)
class Distortion:
    """A distortion risk measure. ``beta(tau)`` is applied to IQN's sampled quantile levels;
    ``inverse(u)`` is the CDF of ``beta(U)``, used to re-weight any discrete distribution exactly.

    * cvar(eta):  beta(tau) = eta * tau, 0 < eta <= 1 (eta is the CVaR level alpha)
    * wang(eta):  beta(tau) = Phi(Phi^-1(tau) + eta); eta < 0 is risk-averse
    * cpw(eta):   beta(tau) = tau^eta / (tau^eta + (1 - tau)^eta)^(1/eta) (Tversky-Kahneman), eta > 0.28
    * power(eta): beta(tau) = tau^(1/(1+|eta|)) if eta >= 0 (risk-seeking) else
      1 - (1 - tau)^(1/(1+|eta|)) (risk-averse)
    """

    name: str
    eta: float

    def __post_init__(self):
        if self.name not in DISTORTIONS:
            raise ValueError(f"unknown distortion '{self.name}'; choose one of {', '.join(DISTORTIONS)}")
        if not np.isfinite(self.eta):
            raise ValueError(f"distortion parameter eta must be finite, got {self.eta}")
        if self.name == "cvar" and not (0 < self.eta <= 1):
            raise ValueError(f"CVaR level must be in (0, 1], got {self.eta}")
        if self.name == "cpw" and not (self.eta > 0.28):
            raise ValueError(f"CPW parameter must be above 0.28 for beta to be monotone, got {self.eta}")

    def beta(self, tau: np.ndarray) -> np.ndarray:
        t = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0)
        e = float(self.eta)
        if self.name == "neutral":
            return t
        if self.name == "cvar":
            return e * t
        if self.name == "wang":
            from scipy.special import ndtr, ndtri
            with np.errstate(divide="ignore"):
                return ndtr(ndtri(t) + e)
        if self.name == "cpw":
            with np.errstate(divide="ignore", invalid="ignore"):
                num = t ** e
                out = num / (num + (1 - t) ** e) ** (1 / e)
            return np.where(t <= 0, 0.0, np.where(t >= 1, 1.0, out))
        p = 1.0 / (1.0 + abs(e))
        return t ** p if e >= 0 else 1.0 - (1.0 - t) ** p

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """beta^-1 extended to [0, 1] (levels beta never reaches map to 1)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        e = float(self.eta)
        if self.name == "neutral":
            return u
        if self.name == "cvar":
            return np.minimum(u / e, 1.0)
        if self.name == "wang":
            from scipy.special import ndtr, ndtri
            with np.errstate(divide="ignore"):
                return ndtr(ndtri(u) - e)
        if self.name == "power":
            p = 1.0 + abs(e)
            return u ** p if e >= 0 else 1.0 - (1.0 - u) ** p
        # cpw: monotone, no closed-form inverse -> bisection to machine precision
        lo = np.zeros_like(u)
        hi = np.ones_like(u)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self.beta(mid) < u
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out = 0.5 * (lo + hi)
        return np.where(u <= 0, 0.0, np.where(u >= 1, 1.0, out))


def distortion(name: str, eta: float | None = None) -> Distortion:
    name = name.lower().replace("-", "").replace("_", "")
    name = {"pow": "power", "none": "neutral", "mean": "neutral"}.get(name, name)
    if name not in DISTORTIONS:
        raise ValueError(f"unknown distortion '{name}'; choose one of {', '.join(DISTORTIONS)}")
    return Distortion(name, DEFAULT_ETA[name] if eta is None else float(eta))


# --------------------------------------------------------------------------------------------
# The distribution model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReturnDistribution:
    """A batch of discrete return distributions (batch shape = ``values.shape[:-1]``).

    ``values`` are the support points (sorted ascending along the last axis; may repeat) and
    ``probs`` their masses (summing to 1). ``kind`` remembers the source representation so views
    draw categorical agents as PMF bars and quantile agents as quantile functions; ``taus`` holds
    the source quantile levels for quantile kinds (broadcastable to ``values``), ``atoms`` the
    categorical support.
    """

    kind: str
    values: np.ndarray
    probs: np.ndarray
    taus: np.ndarray | None = None
    atoms: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    # ---------------- construction ----------------

    @classmethod
    def categorical(cls, atoms, probs, *, validate: bool = True, normalize: bool = True
                    ) -> "ReturnDistribution":
        atoms = np.asarray(atoms, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        if validate:
            issues, _ = check_categorical(atoms, probs)
            if issues:
                raise DistributionError(issues)
        if normalize:
            probs = probs / probs.sum(axis=-1, keepdims=True)
        values = np.broadcast_to(atoms, probs.shape)
        return cls(CATEGORICAL, values, probs, None, atoms)

    @classmethod
    def quantiles(cls, values, taus=None, *, validate: bool = True, rearrange: bool = False
                  ) -> "ReturnDistribution":
        """Fixed-level quantiles (QR-DQN). ``taus`` default to the n midpoints."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim < 1:
            raise DistributionError([Issue("values", "quantile values must have at least one axis")])
        taus = midpoint_taus(values.shape[-1]) if taus is None else np.asarray(taus, dtype=np.float64)
        if rearrange:
            values = np.sort(values, axis=-1)
        if validate:
            issues, _ = check_quantiles(taus, values)
            if issues:
                raise DistributionError(issues)
        probs = np.broadcast_to(tau_cell_masses(taus), values.shape).copy()
        return cls(QUANTILES, values, probs, taus, None)

    @classmethod
    def sampled_quantiles(cls, taus, values, *, validate: bool = True, rearrange: bool = False
                          ) -> "ReturnDistribution":
        """Sampled levels with values (IQN). Pairs are ordered by tau first (sampling order
        carries no meaning); the values must then be non-decreasing, or ``rearrange=True`` sorts
        them (monotone rearrangement, which never moves the estimate further from the truth)."""
        values = np.asarray(values, dtype=np.float64)
        taus = np.asarray(taus, dtype=np.float64)
        try:
            taus = np.broadcast_to(taus, values.shape)
        except ValueError:
            raise DistributionError([Issue("taus", f"quantile levels of shape {taus.shape} do not match "
                                            f"values of shape {values.shape}")]) from None
        order = np.argsort(taus, axis=-1, kind="stable")
        taus = np.take_along_axis(taus, order, axis=-1)
        values = np.take_along_axis(values, order, axis=-1)
        if rearrange:
            values = np.sort(values, axis=-1)
        if validate:
            issues, _ = check_quantiles(taus, values)
            if issues:
                raise DistributionError(issues)
        return cls(SAMPLED_QUANTILES, values, tau_cell_masses(taus), taus, None)

    @classmethod
    def from_discrete(cls, values, probs, kind: str = EMPIRICAL) -> "ReturnDistribution":
        """Any discrete measure (values need not be sorted; they are sorted here)."""
        values = np.asarray(values, dtype=np.float64)
        probs = np.broadcast_to(np.asarray(probs, dtype=np.float64), values.shape)
        order = np.argsort(values, axis=-1, kind="stable")
        return cls(kind, np.take_along_axis(values, order, axis=-1),
                   np.take_along_axis(probs, order, axis=-1))

    @classmethod
    def empirical(cls, samples) -> "ReturnDistribution":
        """Equal-weight measure on samples (..., S); NaN entries are ignored (zero mass)."""
        s = np.asarray(samples, dtype=np.float64)
        if s.ndim == 0:
            s = s[None]
        ok = np.isfinite(s)
        n = ok.sum(axis=-1, keepdims=True)
        if np.any(n == 0):
            raise DistributionError([Issue("samples", "a row of samples has no finite value")])
        fill = np.nanmax(np.where(ok, s, np.nan), axis=-1, keepdims=True)
        vals = np.where(ok, s, fill)
        probs = np.where(ok, 1.0 / n, 0.0)
        return cls.from_discrete(vals, probs, EMPIRICAL)

    @classmethod
    def from_cdf(cls, values, cdf, kind: str = CATEGORICAL) -> "ReturnDistribution":
        """Inverse of :meth:`cdf_steps`: the PMF is the jump of the CDF at each value."""
        cdf = np.asarray(cdf, dtype=np.float64)
        if np.any(np.diff(cdf, axis=-1) < -1e-12):
            raise DistributionError([Issue("cdf", "a CDF must be non-decreasing")])
        probs = np.diff(cdf, axis=-1, prepend=0.0)
        values = np.asarray(values, dtype=np.float64)
        if kind == CATEGORICAL and values.ndim >= 1:
            atoms = values.reshape(-1, values.shape[-1])[0]
            if np.all(values == atoms):
                return cls(CATEGORICAL, np.broadcast_to(atoms, probs.shape), probs, None, atoms)
        return cls.from_discrete(values, probs, kind)

    @classmethod
    def from_quantile_function(cls, levels, values, kind: str = CATEGORICAL) -> "ReturnDistribution":
        """Inverse of :meth:`quantile_function`: ``Q(tau) = values[k]`` for
        ``levels[k-1] < tau <= levels[k]`` (levels are the right ends, the last one 1)."""
        levels = np.asarray(levels, dtype=np.float64)
        if np.any(np.diff(levels, axis=-1) < -1e-12):
            raise DistributionError([Issue("levels", "quantile-function levels must be non-decreasing")])
        return cls.from_cdf(values, levels, kind)

    # ---------------- shape and indexing ----------------

    @property
    def batch_shape(self) -> tuple:
        return self.values.shape[:-1]

    @property
    def n_support(self) -> int:
        return self.values.shape[-1]

    def __getitem__(self, idx) -> "ReturnDistribution":
        if not isinstance(idx, tuple):
            idx = (idx,)
        idx = idx + (slice(None),)
        taus = None
        if self.taus is not None:
            t = np.broadcast_to(self.taus, self.values.shape)
            taus = t[idx] if self.kind == SAMPLED_QUANTILES else self.taus
        return ReturnDistribution(self.kind, self.values[idx], self.probs[idx], taus, self.atoms,
                                  dict(self.meta))

    # ---------------- exact conversions ----------------

    def pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, probabilities) -- the measure itself."""
        return self.values, self.probs

    def cdf_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """CDF as a right-continuous step function: F(z) = cum[k] for values[k] <= z < values[k+1]."""
        cum = np.cumsum(self.probs, axis=-1)
        cum[..., -1] = np.where(np.isfinite(cum[..., -1]), 1.0, cum[..., -1])  # remove round-off at the top
        return self.values, cum

    def quantile_function(self) -> tuple[np.ndarray, np.ndarray]:
        """Quantile function as a left-continuous step function: Q(tau) = values[k] for
        levels[k-1] < tau <= levels[k] (levels[-1] = 1). Returns (levels, values)."""
        v, cum = self.cdf_steps()
        return cum, v

    def cdf(self, z) -> np.ndarray:
        """F(z) = P(Z <= z) for query points z (..., M) or (M,). Returns batch + (M,)."""
        z = np.asarray(z, dtype=np.float64)
        scalar = z.ndim == 0
        z = np.atleast_1d(z)
        v, cum = self.cdf_steps()
        idx = _count_less(v, z, inclusive=True)  # number of values <= z
        cum0 = np.concatenate([np.zeros(cum.shape[:-1] + (1,)), cum], axis=-1)
        out = _take(cum0, idx)
        return out[..., 0] if scalar else out

    def quantile(self, tau) -> np.ndarray:
        """F^-1(tau) = min{z : F(z) >= tau} for levels tau in (0, 1]."""
        tau = np.asarray(tau, dtype=np.float64)
        scalar = tau.ndim == 0
        tau = np.atleast_1d(tau)
        if np.any(~np.isfinite(tau)) or np.any(tau < 0) or np.any(tau > 1):
            raise ValueError("quantile levels must lie in [0, 1]")
        levels, v = self.quantile_function()
        # tolerate float round-off: a level equal to a cumulative sum (within 1e-12) selects that step
        idx = _count_less(levels, tau - 1e-12, inclusive=False)
        idx = np.minimum(idx, v.shape[-1] - 1)
        out = _take(v, idx)
        return out[..., 0] if scalar else out

    def to_quantiles(self, n: int) -> "ReturnDistribution":
        """Projection onto n midpoint quantiles (the W1-closest n-quantile measure; lossy)."""
        taus = midpoint_taus(n)
        return ReturnDistribution(QUANTILES, self.quantile(taus), np.broadcast_to(
            tau_cell_masses(taus), self.batch_shape + (n,)).copy(), taus, None)

    def density_on_grid(self, edges) -> np.ndarray:
        """Probability mass falling in each bin [edges[i], edges[i+1]) -- for heat maps and ridges."""
        edges = np.asarray(edges, dtype=np.float64)
        F = self.cdf(edges - 1e-12 * max(1.0, float(np.max(np.abs(edges)))))  # P(Z < edge)
        return np.diff(F, axis=-1)

    # ---------------- statistics and risk ----------------

    def mean(self) -> np.ndarray:
        return np.sum(self.values * self.probs, axis=-1)

    def var(self) -> np.ndarray:
        m = self.mean()
        return np.sum(self.probs * (self.values - m[..., None]) ** 2, axis=-1)

    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.var(), 0.0))

    def value_at_risk(self, alpha: float) -> np.ndarray:
        """VaR_alpha: the alpha-quantile of the return (lower tail)."""
        _check_alpha(alpha)
        return self.quantile(alpha)

    def cvar(self, alpha: float) -> np.ndarray:
        """CVaR_alpha = (1/alpha) * integral_0^alpha F^-1(tau) dtau (mean of the worst alpha)."""
        _check_alpha(alpha)
        _, cum = self.cdf_steps()
        upto = np.minimum(cum, alpha)
        w = np.diff(upto, axis=-1, prepend=0.0)
        return np.sum(w * self.values, axis=-1) / alpha

    def distort(self, d: Distortion | str, eta: float | None = None) -> "ReturnDistribution":
        """The distorted measure: the law of Z(beta(tau)), tau ~ U(0,1); its mean is the IQN
        distortion risk measure."""
        if isinstance(d, str):
            d = distortion(d, eta)
        _, cum = self.cdf_steps()
        g = d.inverse(cum)
        w = np.diff(g, axis=-1, prepend=0.0)
        w = np.maximum(w, 0.0)
        return ReturnDistribution(self.kind, self.values, w, self.taus, self.atoms,
                                  {**self.meta, "distortion": (d.name, d.eta)})

    def risk(self, d: Distortion | str, eta: float | None = None) -> np.ndarray:
        """Distorted expectation E[Z(beta(tau))]."""
        return self.distort(d, eta).mean()

    def edge_mass(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For categorical distributions: mass on the lowest and highest atom (support clipping)."""
        if self.kind != CATEGORICAL:
            return None
        return self.probs[..., 0], self.probs[..., -1]


def _check_alpha(alpha: float) -> None:
    if not (np.isfinite(alpha) and 0 < alpha <= 1):
        raise ValueError(f"risk level alpha must be in (0, 1], got {alpha}")


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


def wasserstein1(a: ReturnDistribution, b: ReturnDistribution) -> np.ndarray:
    """Exact W1 between two batches of discrete measures: integral_0^1 |Qa(tau) - Qb(tau)| dtau,
    summed over the merged breakpoints of both quantile functions."""
    la, va = a.quantile_function()
    lb, vb = b.quantile_function()
    batch = np.broadcast_shapes(la.shape[:-1], lb.shape[:-1])
    la = np.broadcast_to(la, batch + la.shape[-1:])
    lb = np.broadcast_to(lb, batch + lb.shape[-1:])
    va = np.broadcast_to(va, batch + va.shape[-1:])
    vb = np.broadcast_to(vb, batch + vb.shape[-1:])
    levels = np.sort(np.concatenate([np.zeros(batch + (1,)), la, lb], axis=-1), axis=-1)
    widths = np.diff(levels, axis=-1)
    mids = 0.5 * (levels[..., 1:] + levels[..., :-1])
    ia = np.minimum(_count_less(la, mids, inclusive=False), va.shape[-1] - 1)
    ib = np.minimum(_count_less(lb, mids, inclusive=False), vb.shape[-1] - 1)
    qa = np.take_along_axis(va, ia, axis=-1)
    qb = np.take_along_axis(vb, ib, axis=-1)
    return np.sum(widths * np.abs(qa - qb), axis=-1)


def wasserstein1_to_samples(d: ReturnDistribution, samples) -> np.ndarray:
    """W1 between predicted distributions and empirical samples (batch + (S,), NaN = missing).
    A single sample g gives E|Z - g|."""
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == len(d.batch_shape):
        s = s[..., None]
    return wasserstein1(d, ReturnDistribution.empirical(s))


def stack(dists: Iterable[ReturnDistribution]) -> ReturnDistribution:
    """Stack distributions of one kind and support size along a new leading axis."""
    ds = list(dists)
    if not ds:
        raise ValueError("nothing to stack")
    kinds = {d.kind for d in ds}
    if len(kinds) != 1:
        raise ValueError(f"cannot stack distributions of different kinds: {sorted(kinds)}")
    k = ds[0].kind
    taus = None
    if k == SAMPLED_QUANTILES:
        taus = np.stack([np.broadcast_to(d.taus, d.values.shape) for d in ds])
    elif k == QUANTILES:
        taus = ds[0].taus
    return ReturnDistribution(k, np.stack([np.broadcast_to(d.values, d.probs.shape) for d in ds]),
                              np.stack([d.probs for d in ds]), taus, ds[0].atoms)
