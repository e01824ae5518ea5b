"""The charge laws of theory.md §3 for deep linear networks: exact GD law, weight-decay law, balanced
starts, and the ladder verdict."""

import numpy as np
import pytest

import noether_sim as ns
from reference import balance_matrices

EPS = np.finfo(float).eps


def test_recorded_charges_equal_independent_balance_matrices(reference_problem):
    model, data = reference_problem
    ds = ns.simulate(model, data, method="rk4", h=0.05, t_end=1.0, save_every=0.5, seeds=3, watch_seeds=[0, 2])
    for slot, seed in enumerate([0, 2]):
        theta = ds.theta_final.sel(seed=seed).values
        for i, D in enumerate(balance_matrices(model, theta), start=1):
            full = ns.charge_matrix(ds, f"D{i}").isel(watched_seed=slot, time=-1).values
            np.testing.assert_allclose(full, D, rtol=0, atol=1e-12 * np.abs(D).max())
            D0 = balance_matrices(model, ds.theta_initial.sel(seed=seed).values)[i - 1]
            drift = ds.drift.sel(seed=seed, charge=f"D{i}").isel(time=-1).item()
            assert drift == pytest.approx(np.linalg.norm(D - D0), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.005])
def test_gradient_descent_exact_law_holds_to_roundoff_over_10000_steps(reference_problem, bias, weight_decay):
    """D(k+1) = (1 − ηλ)² D(k) + η²(G_{i+1}ᵀG_{i+1} − G_iG_iᵀ − g_b g_bᵀ): measured minus accumulated
    prediction must stay at round-off.

    Bound: each step rounds every entry of θ (relative ε), moving D by ~ε·|W|² in a random direction,
    so after k steps the residual is a random walk of size ~ε·√k·scale (scale = |W_{i+1}|² + |W_i|² +
    |b_i|², the size of the terms that cancel in D). We allow 2·ε·√k·scale; measured: ≤ 0.45·ε·√k·scale.
    """
    _, data = reference_problem
    model = ns.DeepLinear((10, 16, 16, 5), bias=bias)
    lr, n_steps = 0.02, 10_000
    ds = ns.simulate(model, data, dynamics="gd", h=lr, n_steps=n_steps, save_every=20 * lr, seeds=16,
                     weight_decay=weight_decay, init=ns.init.Gaussian(bias_scale=0.5))
    assert not ds.diverged.any()
    steps = ds.time.values / lr
    running_scale = np.maximum.accumulate(ds.scale.values, axis=1)
    bound = 2 * EPS * np.sqrt(np.maximum(steps, 1))[None, :, None] * running_scale
    assert (ds.residual <= bound).all()
    # the law is not trivially satisfied: the η² terms it accounts for are 10⁹ × larger than the residual
    assert (ds.predicted.isel(time=-1) > 1e9 * ds.residual.isel(time=-1)).all()
    np.testing.assert_allclose(ds.drift.isel(time=-1), ds.predicted.isel(time=-1), rtol=1e-9)


def test_watched_seeds_keep_the_predicted_matrices(reference_problem):
    model, data = reference_problem
    ds = ns.simulate(model, data, dynamics="gd", h=0.02, n_steps=500, save_every=1.0, seeds=4, watch_seeds=[1])
    measured = ns.charge_matrix(ds, "D2").isel(watched_seed=0)
    predicted = ns.charge_matrix(ds, "D2", "predicted_watch").isel(watched_seed=0)
    scale = ds.scale.sel(seed=1, charge="D2").max().item()
    assert float(np.abs(measured - predicted).max()) < 2 * EPS * np.sqrt(500) * scale
    assert float(np.abs(measured - measured.isel(time=0)).max()) > 1e-6  # GD really moved D2


def fitted_slope(hs, values):
    return np.polyfit(np.log(hs), np.log(values), 1)[0]


@pytest.mark.parametrize("method,order,exponents", [("heun", 2, range(4, 8)), ("rk4", 4, range(3, 7))])
def test_weight_decay_law_holds_to_the_integrators_order(reference_problem, method, order, exponents):
    """Under GF with weight decay, D_i(t) = e^{−2λt} D_i(0): the recorded drift (distance from that law)
    shrinks at least at the method's order and is far below the size of the decay itself."""
    model, data = reference_problem
    lam, T = 0.3, 1.0
    hs = 2.0 ** -np.array(exponents)
    lad = ns.run_ladder(model, data, method=method, step_sizes=hs, t_end=T, save_every=T, seeds=8, weight_decay=lam)
    drift = lad.drift.isel(time=-1).sortby("h", ascending=False)
    decay = np.abs(1 - np.exp(-2 * lam * T)) * np.linalg.norm(lad.charge_initial.isel(h=0).values, axis=1)
    for seed in range(8):
        for k in range(2):
            d = drift.isel(seed=seed, charge=k).values
            assert fitted_slope(hs, d) > order - 0.2
            assert d[-1] < 1e-5 * decay[seed]


@pytest.mark.parametrize("method,order", [("euler", 1), ("rk4", 4)])
def test_balanced_start_stays_balanced_to_the_methods_order(reference_problem, method, order):
    model, data = reference_problem
    hs = 2.0 ** -np.arange(4, 8)
    lad = ns.run_ladder(model, data, method=method, step_sizes=hs, t_end=1.0, save_every=0.5, seeds=4,
                        init=ns.init.Balanced(scale=1.0))
    assert float(np.abs(lad.charge_initial).max()) < 1e-13  # the start is balanced to round-off
    drift = lad.drift.isel(time=-1).sortby("h", ascending=False)
    for seed in range(4):
        for k in range(2):
            assert fitted_slope(hs, drift.isel(seed=seed, charge=k).values) > order - 0.2


def test_verdict_conserved_with_extrapolated_drift_at_roundoff_floor(reference_problem):
    model, data = reference_problem
    lad = ns.run_ladder(model, data, method="rk4", step_sizes=2.0 ** -np.arange(6, 10), t_end=0.5,
                        save_every=0.25, seeds=16, init=ns.init.Gaussian(scale=0.7))
    analysis = ns.analyse_ladder(lad)
    assert (analysis.verdict == ns.ladder.CONSERVED).all()
    assert np.allclose(analysis.fitted_order, 4, atol=0.2)
    # the finest run still drifts by ≫ round-off; the extrapolation removes that to the floor
    assert (analysis.finest_drift > 10 * analysis.roundoff_floor).all()  # measured: ≥ 13×
    assert float((analysis.extrapolated_drift / analysis.roundoff_floor).median()) < 3
    rows = ns.summarise_verdicts(analysis)
    assert [r["verdict"] for r in rows] == [ns.ladder.CONSERVED] * 2
