"""The energy identity of time symmetry (theory.md §2 item 6) recorded by simulate(): E = L + λ|θ|²/2
(+ τ|p|²/2 under momentum flow) + ∫₀ᵗ|θ̇|² ds is constant along the flow; an order-p method's drift
falls as h^p, gradient descent's as η."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import mlp
from noether_sim._validate import ConfigError
from noether_sim.ladder import analyse_ladder, run_ladder


@pytest.fixture(scope="module")
def smooth():
    model = mlp.MLP((4, 8, 2), activation="tanh")
    data = ns.data.synthetic_regression(4, 2, 16, noise=0.1, seed=2)
    return model, data


def _energy(ds, which="charge_initial"):
    return ds[which].sel(component=ds.component_charge == "energy").values[:, 0]


def test_initial_energy_is_the_potential_plus_kinetic_term(smooth):
    model, data = smooth
    lam, tau = 0.03, 0.7
    gf = ns.simulate(model, data, method="rk4", h=0.05, n_steps=2, seeds=3, weight_decay=lam, track_energy=True)
    theta = gf.theta_initial.values
    np.testing.assert_allclose(_energy(gf), gf.loss.isel(time=0).values + 0.5 * lam * np.sum(theta ** 2, axis=1),
                               rtol=1e-14)
    mom = ns.simulate(model, data, dynamics="momentum", method="rk4", h=0.05, n_steps=2, seeds=3, weight_decay=lam,
                      tau=tau, velocity=0.3, track_energy=True)
    p = mom.velocity_initial.values
    expected = mom.loss.isel(time=0).values + 0.5 * lam * np.sum(theta ** 2, axis=1) + 0.5 * tau * np.sum(p ** 2, axis=1)
    np.testing.assert_allclose(_energy(mom), expected, rtol=1e-14)
    assert list(gf.charge.values)[-1] == "energy" and gf.law_factor.values[-1] == 1.0


def test_dissipated_energy_equals_the_loss_decrease_along_the_flow(smooth):
    """L(0) − L(T) = ∫₀ᵀ|θ̇|²: the recorded E(T) − L(T) against the recorded loss decrease (DOP853-level
    accuracy from the adaptive pair at tight tolerance)."""
    model, data = smooth
    ds = ns.simulate(model, data, method="dopri5", rtol=1e-11, atol=1e-13, t_end=2.0, save_every=0.5, seeds=4,
                     track_energy=True)
    dissipated = _energy(ds, "charge_final") - ds.loss.isel(time=-1).values
    decrease = ds.loss.isel(time=0).values - ds.loss.isel(time=-1).values
    assert np.all(decrease > 1e-2)
    np.testing.assert_allclose(dissipated, decrease, rtol=1e-8)


# Heun's energy drift has a large h³ term next to its h² term: it reaches order 2 only below h ≈ 0.003
# (measured fitted orders 1.3–2.0 on 0.01 … 0.00125, 1.90–1.99 on the ladder below)
@pytest.mark.parametrize("dynamics, method, order, hs", [
    ("gf", "rk4", 4, [0.04, 0.02, 0.01, 0.005]), ("gf", "heun", 2, [0.0025, 0.00125, 0.000625, 0.0003125]),
    ("gd", None, 1, [0.02, 0.01, 0.005, 0.0025]), ("momentum", "rk4", 4, [0.04, 0.02, 0.01, 0.005])])
def test_energy_drift_falls_with_the_method_order(smooth, dynamics, method, order, hs):
    model, data = smooth
    extra = {"tau": 0.5, "velocity": 0.3} if dynamics == "momentum" else {}
    ladder = run_ladder(model, data, step_sizes=hs, dynamics=dynamics, method=method, t_end=0.8, seeds=6,
                        track_energy=True, weight_decay=0.01, **extra)
    an = analyse_ladder(ladder).sel(charge="energy")
    np.testing.assert_allclose(an.fitted_order.values, order, atol=0.25)
    if order > 1:  # the extrapolated drift is zero to the ladder's resolution: conserved by the flow
        assert set(an.verdict.values) == {"conserved by the flow"}


@pytest.mark.parametrize("dynamics, method", [("momentum", "verlet"), ("heavy_ball", None), ("nesterov", None)])
def test_energy_needs_a_runge_kutta_method(smooth, dynamics, method):
    model, data = smooth
    with pytest.raises(ConfigError, match="track_energy"):
        ns.simulate(model, data, dynamics=dynamics, method=method, h=0.1, t_end=1.0, tau=1.0, track_energy=True)
    with pytest.raises(ConfigError, match="track_energy"):
        ns.simulate(model, data, method="rk4", h=0.1, t_end=1.0, track_energy="yes")


def test_engine_energy_equals_the_independent_numpy_integration(smooth):
    """The compiled engine's E(T) against diagnostics.energy_balance (same tableau, NumPy arithmetic)."""
    from noether_sim import diagnostics as dg

    model, data = smooth
    lam = 0.02
    ds = ns.simulate(model, data, method="rk38", h=0.02, n_steps=50, seeds=3, weight_decay=lam, track_energy=True)
    ref = dg.energy_balance(model, data, ds.theta_initial.values, h=0.02, n_steps=50, method="rk38", weight_decay=lam)
    E_ref = ref["objective"][:, -1] + ref["dissipated"][:, -1]
    np.testing.assert_allclose(_energy(ds, "charge_final"), E_ref, rtol=1e-13)
    np.testing.assert_allclose(_energy(ds), ref["objective"][:, 0], rtol=1e-14)


def test_tracking_the_energy_leaves_the_trajectory_bit_for_bit(reference_problem):
    """The energy is one more state entry, integrated beside θ: θ(t) and the charges are unchanged (and a
    deep linear run without it takes the seed-interleaved fast path, with it the general driver)."""
    model, data = reference_problem
    kw = dict(method="rk4", h=0.01, n_steps=50, save_every=0.25, seeds=9, weight_decay=0.01)
    plain = ns.simulate(model, data, **kw)
    tracked = ns.simulate(model, data, track_energy=True, **kw)
    np.testing.assert_array_equal(plain.theta_final.values, tracked.theta_final.values)
    np.testing.assert_array_equal(plain.drift.values, tracked.drift.sel(charge=plain.charge).values)
    np.testing.assert_array_equal(plain.loss.values, tracked.loss.values)
