"""Overdamped Langevin's two methods: Euler–Maruyama (weak order 1) and stochastic Heun (weak order 2),
measured on coupled rungs (the coarse rung's noise is the sum of the finest rung's), and the ziggurat
normals and the bilinear charge kernel the noise and its exact law use."""

import numpy as np
import pytest
from scipy import stats

import noether_sim as ns
from noether_sim.kernels.linear import linear_charges, linear_charges_cross
from noether_sim.kernels.stochastic import normals_into

HS = (0.1, 0.05, 0.025, 0.0125)


def coupled_differences(method, seeds=2000, temperature=0.05, t_end=1.0):
    """Per rung pair, the seed mean of f(θ_h(T)) − f(θ_{h/2}(T)), f = |θ|², and its standard error."""
    model = ns.DeepLinear((3, 4, 2))
    data = ns.data.synthetic_regression(3, 2, 10, noise=0.1)
    theta0 = ns.simulate(model, data, dynamics="gd", h=0.1, n_steps=1, seeds=seeds).theta_initial.values
    f = []
    for h in HS:
        ds = ns.simulate(model, data, dynamics="langevin", method=method, temperature=temperature, h=h, t_end=t_end,
                         seeds=seeds, init=ns.init.Given(theta0), noise_substeps=int(round(h / HS[-1])),
                         watch_seeds=[0])
        assert not ds.diverged.any()
        f.append((ds.theta_final.values ** 2).sum(axis=1))
    d = np.diff(np.array(f)[::-1], axis=0)[::-1]  # f(h) − f(h/2), coarsest pair first
    d = -d
    return d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(seeds)


def test_weak_orders_one_and_two():
    """Weak error C·h^p: the coupled differences shrink by 2^p per halving. Measured (2000 seeds, T = 0.05,
    t = 1): Euler–Maruyama 1.50, 1.14 (→ 1); stochastic Heun 2.76, 2.24 (→ 2). Each difference stands
    more than 5 SE from zero, so the orders are resolved, and Heun's exceeds Euler–Maruyama's by far more
    than their uncertainty (≈ 0.2)."""
    orders = {}
    for method in ("euler_maruyama", "stochastic_heun"):
        m, se = coupled_differences(method)
        assert np.all(np.abs(m) > 5 * se), (method, m, se)
        orders[method] = np.log2(m[:-1] / m[1:])
    em, heun = orders["euler_maruyama"][-1], orders["stochastic_heun"][-1]
    assert 0.7 < em < 1.5, orders
    assert 1.6 < heun < 2.7, orders
    assert heun - em > 0.6


def test_ziggurat_normals_are_standard_normal():
    """KS against N(0, 1) on 400k draws, tail frequencies beyond 2, 3, 4 within 4 SE of the exact ones,
    and no correlation between neighbours; the KS test rejects a 2% scale error (it can fail)."""
    z = np.empty(400_000)
    normals_into(np.uint64(0x1234_5678_9ABC_DEF0), 7_000_000, z)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.kstest(1.02 * z, "norm").pvalue < 1e-3
    for a in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(a)
        assert abs((np.abs(z) > a).mean() - p) < 4 * np.sqrt(p * (1 - p) / z.size)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(z.size)
    again = np.empty(10)
    normals_into(np.uint64(0x1234_5678_9ABC_DEF0), 7_000_000 + 5, again)  # a pure function of (key, index)
    assert np.array_equal(again, z[5:15])


@pytest.mark.parametrize("bias", [False, True])
def test_bilinear_charge_kernel_polarises_the_charges(bias):
    """D(a + b) = D(a) + 2B(a, b) + D(b), B symmetric: the kernel the noisy law uses for 2θᵀSN."""
    model = ns.DeepLinear((4, 6, 5, 3), bias=bias)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, model.n_params))
    ints = model.descriptor()
    nq = sum(g.size for g in model.charge_groups)
    qa, qb, qab, cross, cross_ba = (np.empty(nq) for _ in range(5))
    linear_charges(a, qa, ints)
    linear_charges(b, qb, ints)
    linear_charges(a + b, qab, ints)
    linear_charges_cross(a, b, cross, ints)
    linear_charges_cross(b, a, cross_ba, ints)
    np.testing.assert_allclose(qa + 2 * cross + qb, qab, rtol=0, atol=1e-12 * np.abs(qab).max())
    np.testing.assert_allclose(cross, cross_ba, rtol=0, atol=1e-13)
