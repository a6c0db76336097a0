"""The internal return-distribution model: exact conversions, risk measures, distances, validation."""

import numpy as np
import pytest
from scipy import stats

from plugins.rl.distributions import (CATEGORICAL, QUANTILES, SAMPLED_QUANTILES, DistributionError,
                                      ReturnDistribution, distortion, midpoint_taus, stack, wasserstein1,
                                      wasserstein1_to_samples)


def random_categorical(rng, batch=(5, 3), n=21, lo=-10, hi=10):
    p = rng.random(batch + (n,)) ** 3
    p[..., rng.integers(0, n)] = 0.0  # some zero-mass atoms
    p /= p.sum(-1, keepdims=True)
    return ReturnDistribution.categorical(np.linspace(lo, hi, n), p)


def normal_quantiles(mu, sigma, n=20000):
    taus = midpoint_taus(n)
    return ReturnDistribution.quantiles(mu + sigma * stats.norm.ppf(taus))


# ------------------------------------------------------------------ exact conversions


def test_pmf_cdf_quantile_roundtrip_is_exact():
    rng = np.random.default_rng(0)
    d = random_categorical(rng)
    values, probs = d.pmf()
    v, cum = d.cdf_steps()
    np.testing.assert_allclose(cum, np.cumsum(probs, -1), atol=1e-12)
    levels, qv = d.quantile_function()
    back = ReturnDistribution.from_quantile_function(levels, qv)
    assert back.kind == CATEGORICAL
    np.testing.assert_allclose(back.probs, probs, atol=1e-12)
    np.testing.assert_array_equal(back.values, values)
    back2 = ReturnDistribution.from_cdf(v, cum)
    np.testing.assert_allclose(back2.probs, probs, atol=1e-12)


def test_cdf_and_quantile_are_inverse_step_functions():
    d = ReturnDistribution.categorical([0.0, 1.0, 2.0, 3.0], [0.1, 0.0, 0.6, 0.3])
    # F at and between atoms (right-continuous)
    np.testing.assert_allclose(d.cdf([-1, 0, 0.5, 1, 1.99, 2, 3, 5]), [0, 0.1, 0.1, 0.1, 0.1, 0.7, 1.0, 1.0])
    # Q(tau) = min{z: F(z) >= tau}: the level 0.1 itself still maps to atom 0, just above to atom 2
    np.testing.assert_allclose(d.quantile([0.05, 0.1, 0.1000001, 0.7, 0.71, 1.0]), [0, 0, 2, 2, 3, 3])


def test_quantile_representation_masses_and_values():
    vals = np.array([[-1.0, 0.5, 0.5, 4.0]])
    q = ReturnDistribution.quantiles(vals)
    assert q.kind == QUANTILES
    np.testing.assert_allclose(q.probs, 0.25)
    np.testing.assert_allclose(q.quantile(midpoint_taus(4))[0], vals[0])   # Q(tau_i) = theta_i exactly
    np.testing.assert_allclose(q.cdf([0.5])[0], [0.75])                     # repeated value gets both masses
    # sampled levels: pairs are ordered by tau, masses are the tau cells
    s = ReturnDistribution.sampled_quantiles([0.9, 0.1, 0.5], [3.0, 1.0, 2.0])
    assert s.kind == SAMPLED_QUANTILES
    np.testing.assert_allclose(s.values, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(s.probs, [0.3, 0.4, 0.3])
    np.testing.assert_allclose(s.taus, [0.1, 0.5, 0.9])


def test_projection_to_quantiles_keeps_the_quantile_function_at_midpoints():
    rng = np.random.default_rng(1)
    d = random_categorical(rng, batch=(4,))
    q = d.to_quantiles(50)
    np.testing.assert_array_equal(q.values, d.quantile(midpoint_taus(50)))
    # W1 of the projection is small relative to the support spacing
    assert np.all(wasserstein1(d, q) < 1.0)


def test_density_on_grid_sums_to_one():
    rng = np.random.default_rng(2)
    d = random_categorical(rng, batch=(3,))
    dens = d.density_on_grid(np.linspace(-10.5, 10.5, 43))
    np.testing.assert_allclose(dens.sum(-1), 1.0, atol=1e-12)


# ------------------------------------------------------------------ statistics and risk


def test_mean_std_var_closed_forms():
    n = 11
    d = ReturnDistribution.categorical(np.arange(n, dtype=float), np.full(n, 1 / n))
    assert d.mean() == pytest.approx((n - 1) / 2)
    assert d.var() == pytest.approx((n * n - 1) / 12)
    assert d.std() == pytest.approx(np.sqrt((n * n - 1) / 12))


def test_var_cvar_discrete_by_hand():
    q = ReturnDistribution.quantiles([1.0, 2.0, 3.0, 4.0])
    assert q.value_at_risk(0.25) == 1.0
    assert q.value_at_risk(0.26) == 2.0
    assert q.cvar(0.25) == pytest.approx(1.0)
    assert q.cvar(0.375) == pytest.approx((0.25 * 1 + 0.125 * 2) / 0.375)
    assert q.cvar(1.0) == pytest.approx(q.mean())


def test_cvar_of_normal_matches_closed_form():
    mu, sigma = 5.0, 2.0
    d = normal_quantiles(mu, sigma)
    for alpha in (0.05, 0.25, 0.5):
        closed = mu - sigma * stats.norm.pdf(stats.norm.ppf(alpha)) / alpha
        assert d.cvar(alpha) == pytest.approx(closed, abs=2e-3)
        assert d.value_at_risk(alpha) == pytest.approx(mu + sigma * stats.norm.ppf(alpha), abs=2e-3)
    assert d.std() == pytest.approx(sigma, rel=2e-3)


def test_distortions_closed_forms():
    mu, sigma = 1.0, 3.0
    d = normal_quantiles(mu, sigma)
    # Wang transform of a normal shifts the mean by eta * sigma
    for eta in (-0.75, 0.5):
        assert d.risk("wang", eta) == pytest.approx(mu + eta * sigma, abs=5e-3)
    # the CVaR distortion is CVaR
    assert d.risk("cvar", 0.3) == pytest.approx(d.cvar(0.3), abs=1e-9)
    assert d.risk("neutral") == pytest.approx(d.mean())
    # power distortion on U(0, 1): E[1 - (1 - tau)^p] = p / (p + 1), p = 1 / (1 + |eta|)
    u = ReturnDistribution.quantiles(midpoint_taus(20000))
    p = 1 / (1 + 2.0)
    assert u.risk("power", -2.0) == pytest.approx(p / (p + 1), abs=1e-4)
    assert u.risk("power", 2.0) == pytest.approx(1 / (p + 1), abs=1e-4)  # E[tau^p]
    # CPW: no closed form; compare with direct integration of Q(beta(tau))
    t = midpoint_taus(200000)
    direct = np.mean(mu + sigma * stats.norm.ppf(distortion("cpw", 0.71).beta(t)))
    assert d.risk("cpw", 0.71) == pytest.approx(direct, abs=5e-3)


def test_distortion_beta_and_inverse_agree():
    u = np.linspace(0.01, 0.99, 99)
    for name, eta in (("wang", -0.75), ("cpw", 0.71), ("power", -2.0), ("power", 1.5), ("cvar", 0.4)):
        dd = distortion(name, eta)
        inv = dd.inverse(u)
        ok = inv < 1  # CVaR never reaches levels above eta
        np.testing.assert_allclose(dd.beta(inv[ok]), u[ok], atol=1e-9)


def test_risk_averse_distortions_are_below_the_mean():
    d = normal_quantiles(0.0, 1.0, 2000)
    for name in ("cvar", "wang", "power"):
        assert d.risk(name) < d.mean()


def test_bad_risk_parameters_have_clear_messages():
    d = normal_quantiles(0.0, 1.0, 10)
    with pytest.raises(ValueError, match="alpha must be in"):
        d.cvar(0.0)
    with pytest.raises(ValueError, match="CVaR level"):
        distortion("cvar", 1.5)
    with pytest.raises(ValueError, match="unknown distortion"):
        distortion("entropic")


# ------------------------------------------------------------------ distances


def test_wasserstein1_closed_forms():
    a = ReturnDistribution.categorical([0.0, 1.0, 2.0], [0.2, 0.5, 0.3])
    shifted = ReturnDistribution.from_discrete(a.values + 3.0, a.probs)
    assert wasserstein1(a, shifted) == pytest.approx(3.0)
    assert wasserstein1(a, a) == pytest.approx(0.0)
    # Dirac vs Dirac
    assert wasserstein1(ReturnDistribution.empirical([1.0]), ReturnDistribution.empirical([4.5])) == pytest.approx(3.5)
    # normals with equal variance: W1 = |mu1 - mu2|
    assert wasserstein1(normal_quantiles(0, 1, 4000), normal_quantiles(1.5, 1, 4000)) == pytest.approx(1.5)
    # against a sample: a single realised return g gives E|Z - g|
    g = 1.3
    assert wasserstein1_to_samples(a, g) == pytest.approx(np.sum(a.probs * np.abs(a.values - g)))
    # symmetric, and works across kinds and sizes in a batch
    rng = np.random.default_rng(3)
    c = random_categorical(rng, batch=(6,))
    q = ReturnDistribution.quantiles(np.sort(rng.normal(size=(6, 7)), -1) * 5)
    np.testing.assert_allclose(wasserstein1(c, q), wasserstein1(q, c), atol=1e-12)
    # brute force on a fine grid: integral |F1 - F2| dz
    z = np.linspace(-30, 30, 600001)
    brute = np.sum(np.abs(c.cdf(z) - q.cdf(z)), -1) * (z[1] - z[0])
    np.testing.assert_allclose(wasserstein1(c, q), brute, atol=2e-3)


def test_empirical_ignores_nan_samples():
    d = ReturnDistribution.categorical([0.0, 10.0], [0.5, 0.5])
    w = wasserstein1_to_samples(d, np.array([5.0, np.nan, 5.0]))
    assert w == pytest.approx(5.0)


def test_indexing_and_stacking_keep_kind():
    rng = np.random.default_rng(4)
    taus = np.sort(rng.random((3, 2, 8)), -1)
    vals = np.sort(rng.normal(size=(3, 2, 8)), -1)
    s = ReturnDistribution.sampled_quantiles(taus, vals)
    row = s[1, 0]
    assert row.kind == SAMPLED_QUANTILES and row.batch_shape == ()
    np.testing.assert_allclose(row.taus, taus[1, 0])
    st = stack([s[0], s[2]])
    assert st.batch_shape == (2, 2)
    np.testing.assert_allclose(st.mean(), s.mean()[[0, 2]])


# ------------------------------------------------------------------ validation messages


def test_probabilities_not_summing_to_one_are_named():
    p = np.full((4, 2, 3), 1 / 3)
    p[2, 1] = [0.5, 0.2, 0.2]
    with pytest.raises(DistributionError) as e:
        ReturnDistribution.categorical([0.0, 1.0, 2.0], p)
    msg = str(e.value)
    assert "step 2" in msg and "action 1" in msg and "'probs'" in msg and "sum to 0.9000" in msg
    assert e.value.issues[0].step == 2 and e.value.issues[0].action == 1


def test_unsorted_quantiles_and_nans_are_named():
    v = np.sort(np.random.default_rng(5).normal(size=(3, 2, 5)), -1)
    v[1, 0, 2], v[1, 0, 3] = v[1, 0, 3] + 1, v[1, 0, 2]
    v[2, 1, 0] = np.nan
    with pytest.raises(DistributionError) as e:
        ReturnDistribution.quantiles(v)
    msgs = [str(i) for i in e.value.issues]
    assert any("step 1" in m and "action 0" in m and "not sorted" in m for m in msgs)
    assert any("step 2" in m and "action 1" in m and "NaN" in m for m in msgs)
    # rearrangement repairs crossing quantiles
    fixed = ReturnDistribution.quantiles(np.nan_to_num(v), rearrange=True)
    assert np.all(np.diff(fixed.values, axis=-1) >= 0)


def test_mismatched_lengths_and_bad_atoms():
    with pytest.raises(DistributionError, match="3 entries per distribution but there are 4 atoms"):
        ReturnDistribution.categorical([0, 1, 2, 3], [[0.2, 0.3, 0.5]])
    with pytest.raises(DistributionError, match="strictly increasing"):
        ReturnDistribution.categorical([0, 2, 1], [0.2, 0.3, 0.5])
    with pytest.raises(DistributionError, match="3 quantile levels but 2 quantile values"):
        ReturnDistribution.quantiles([1.0, 2.0], taus=[0.2, 0.5, 0.8])
    with pytest.raises(DistributionError, match="strictly between 0 and 1"):
        ReturnDistribution.sampled_quantiles([0.0, 0.5], [1.0, 2.0])
    with pytest.raises(DistributionError, match="negative probability"):
        ReturnDistribution.categorical([0, 1], [1.2, -0.2])
