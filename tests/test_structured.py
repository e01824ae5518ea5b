"""Structure-preserving integration and momentum dynamics: properties against oracles.

Oracles: the tableau conditions computed from the coefficients; scipy solve_ivp (DOP853, rtol = atol
= 1e-12) for trajectories; the exact laws of theory.md §2 and §4 (J(t) = e^{−t/τ}J(0), the integrated
balance law); heavy ball's algebraic identity with conformal symplectic Euler; fitted convergence orders.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import noether_sim as ns
from noether_sim._validate import ConfigError
from noether_sim.kernels import STATUS_OK, STATUS_SOLVE_FAILED
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.methods import EXPLICIT_METHODS, IMPLICIT_METHODS, SPLITTING_METHODS
from noether_sim import flow_from_heavy_ball, heavy_ball_from_flow
from noether_sim import simulate as simulate_structured

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def small():
    model = ns.DeepLinear((4, 6, 5, 3))
    data = ns.data.synthetic_regression(4, 3, 20, noise=0.1, seed=1)
    return model, data


@pytest.fixture(scope="module")
def reference():
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
    return model, data


def grad_fn(model, data):
    ints, floats = model.descriptor(), model.constants(data)
    da, db = model.kernel_data(data)
    return lambda th: ensemble_loss_grad(int(ints[0]), np.ascontiguousarray(th[None]), ints, floats, da, db)[1][0]


def fitted_order(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


# ---------------------------------------------------------------- methods as data

@pytest.mark.parametrize("name", IMPLICIT_METHODS)
def test_gauss_legendre_tableau_symplectic_and_exact_order(name):
    m = IMPLICIT_METHODS[name]
    assert m.symplectic and not m.explicit
    assert m.satisfied_order(up_to=m.order + 1) == m.order  # all conditions to 2s hold, not 2s + 1
    assert np.allclose(m.c, m.A.sum(axis=1), atol=1e-15)


def test_gauss_legendre_2_matches_closed_form():
    r = np.sqrt(3) / 6
    m = IMPLICIT_METHODS["gl2"]
    assert np.allclose(m.A, [[1 / 4, 1 / 4 - r], [1 / 4 + r, 1 / 4]], atol=2 * EPS)
    assert np.allclose(m.c, [1 / 2 - r, 1 / 2 + r], atol=2 * EPS)


@pytest.mark.parametrize("name", EXPLICIT_METHODS)
def test_explicit_tableaus_are_not_symplectic(name):
    m = EXPLICIT_METHODS[name]
    assert m.explicit and not m.symplectic
    assert m.satisfied_order() >= m.order


def test_splittings_are_consistent_conformal_symplectic_compositions():
    for m in SPLITTING_METHODS.values():
        assert m.consistent and m.conformal_symplectic
    assert SPLITTING_METHODS["verlet"].symmetric and SPLITTING_METHODS["yoshida4"].symmetric
    assert not SPLITTING_METHODS["symplectic_euler"].symmetric


def test_heavy_ball_map_round_trips():
    eta, beta = heavy_ball_from_flow(0.1, 0.5)
    assert eta == pytest.approx(0.02) and beta == pytest.approx(np.exp(-0.2))
    h, tau = flow_from_heavy_ball(eta, beta)
    assert h == pytest.approx(0.1, rel=1e-14) and tau == pytest.approx(0.5, rel=1e-14)


# ---------------------------------------------------------------- charges

def test_isometric_charge_matches_numpy_formula():
    model = ns.DeepLinear((3, 4, 5, 2), bias=True)
    data = ns.data.synthetic_regression(3, 2, 10, seed=0)
    ds = simulate_structured(model, data, dynamics="momentum", method="verlet", h=0.1, tau=1.0, n_steps=1,
                             seeds=2, velocity=0.5, init=ns.init.Gaussian(bias_scale=0.3))
    th, p = ds.theta_initial.values[1], ds.velocity_initial.values[1]
    (W1, b1), (W2, b2), (W3, _) = model.unflatten(th)
    (P1, pb1), (P2, pb2), (P3, _) = model.unflatten(p)
    C1 = W1 @ P1.T + np.outer(b1, pb1) - P2.T @ W2
    C2 = W2 @ P2.T + np.outer(b2, pb2) - P3.T @ W3
    J = np.concatenate([((C1 - C1.T) / 2).ravel(), ((C2 - C2.T) / 2).ravel()])
    nq = model.n_charges
    assert np.allclose(ds.charge_initial.values[1, nq:], J, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- Gauss–Legendre on gradient flow

def test_gauss_legendre_keeps_balance_where_rk4_drifts(reference):
    """Reference problem 10-16-16-5, 4 seeds, T = 5. Bound for GL: per step the solve leaves a stage error
    δ ≤ tol (relative to max(1, |θ|)), which moves a quadratic charge by O(δ·scale); plus round-off ε·scale.
    Over n steps: drift ≤ 10·n·(tol + ε)·scale (the measured drift sits near the round-off floor)."""
    model, data = reference
    tol = 1e-14
    for h in (0.1, 0.5):
        rk4 = ns.simulate(model, data, method="rk4", h=h, t_end=5.0, save_every=0.5, seeds=4)
        rk4_rel = np.nanmax((rk4.drift_max / rk4.scale).values)
        assert rk4_rel > 1e-4  # visible drift (h = 0.5: some seeds even diverge)
        for name in IMPLICIT_METHODS:
            ds = ns.simulate(model, data, method=name, h=h, t_end=5.0, save_every=0.5, seeds=4, solve_tol=tol)
            assert np.all(ds.status.values == STATUS_OK)
            n = ds.n_accepted.values[:, None, None]
            bound = 10 * n * (tol + EPS) * ds.scale.values
            assert np.all(ds.drift_max.values <= bound), (h, name)
            assert np.all(ds.solve_residual.values <= tol)
            assert np.all(ds.n_solve_iters.values > 0)


def test_gauss_legendre_orders_on_gradient_flow(small):
    """Final-weight error at T = 4 against a fine GL3 reference (h = 0.004: its own error ~1e-18, below
    round-off), which is itself checked against DOP853 (rtol = atol = 1e-12). Init scale 0.5 keeps
    h·λ_max(Hessian) small enough for the asymptotic regime and for the fixed point to converge at h."""
    model, data = small
    grad = grad_fn(model, data)
    T = 4.0
    init = ns.init.Gaussian(scale=0.5)
    th0 = ns.simulate(model, data, method="gl1", h=1.0, t_end=T, seeds=1, init=init).theta_initial.values[0]
    ref = ns.simulate(model, data, method="gl3", h=0.004, t_end=T, save_every=T, seeds=1,
                      init=ns.init.Given(th0)).theta_final.values[0]
    oracle = solve_ivp(lambda t, y: -grad(y), (0, T), th0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    assert np.max(np.abs(ref - oracle)) < 1e-10
    ladders = {"gl1": [0.2, 0.1, 0.05, 0.025], "gl2": [0.1, 0.05, 0.025, 0.0125], "gl3": [0.4, 0.2, 0.1, 0.05]}
    for name, hs in ladders.items():
        errs = []
        for h in hs:
            ds = ns.simulate(model, data, method=name, h=h, t_end=T, save_every=T, seeds=1,
                             init=ns.init.Given(th0), max_solve_iters=1000)
            assert ds.n_retried_steps.values[0] == 0  # every step at h itself, else the ladder lies
            errs.append(np.max(np.abs(ds.theta_final.values[0] - ref)))
        assert min(errs) > 1e-12, (name, errs)  # 100× above the reference's round-off
        assert abs(fitted_order(hs, errs) - IMPLICIT_METHODS[name].order) < 0.2, (name, errs)


def test_failed_solve_is_flagged_or_retried_never_accepted(reference):
    model, data = reference
    flagged = ns.simulate(model, data, method="gl1", h=2.0, t_end=2.0, save_every=2.0, seeds=2, max_halvings=0)
    assert np.all(flagged.status.values == STATUS_SOLVE_FAILED)
    assert np.all(np.isnan(flagged.theta_final.values)) and np.all(np.isnan(flagged.drift.values[:, -1]))
    assert np.all(np.isfinite(flagged.drift.values[:, 0]))  # t = 0 was recorded
    retried = ns.simulate(model, data, method="gl1", h=2.0, t_end=2.0, save_every=2.0, seeds=2, max_halvings=8)
    assert np.all(retried.status.values == STATUS_OK) and np.all(retried.n_retried_steps.values == 1)
    assert np.all(retried.solve_residual.values <= 1e-14)


# ---------------------------------------------------------------- momentum flow

@pytest.mark.slow  # one scipy DOP853 reference trajectory per method
@pytest.mark.parametrize("method,h,tol", [("rk4", 0.0025, 1e-9), ("gl2", 0.0025, 1e-9), ("verlet", 0.002, 1e-5),
                                          ("yoshida4", 0.005, 1e-7)])
def test_momentum_trajectory_matches_scipy(small, method, h, tol):
    model, data = small
    grad = grad_fn(model, data)
    tau, lam, T = 0.3, 0.05, 1.0
    ds = ns.simulate(model, data, dynamics="momentum", method=method, h=h, tau=tau, weight_decay=lam,
                     t_end=T, save_every=T, seeds=1, velocity=0.5)
    P = model.n_params
    y0 = np.concatenate([ds.theta_initial.values[0], ds.velocity_initial.values[0]])

    def f(t, y):
        q, p = y[:P], y[P:]
        return np.concatenate([p, -(grad(q) + lam * q + p) / tau])

    ref = solve_ivp(f, (0, T), y0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    got = np.concatenate([ds.theta_final.values[0], ds.velocity_final.values[0]])
    assert np.max(np.abs(got - ref)) < tol


def _momentum_final(model, data, method, h, T, tau, **kw):
    ds = ns.simulate(model, data, dynamics="momentum", method=method, h=h, tau=tau, t_end=T, save_every=T,
                     seeds=1, velocity=0.5, **kw)
    return ds, np.concatenate([ds.theta_final.values[0], ds.velocity_final.values[0]])


def test_splitting_orders_on_momentum_flow(small):
    model, data = small
    T, tau = 1.0, 0.5
    _, ref = _momentum_final(model, data, "gl3", 0.005, T, tau)
    for name, hs in {"verlet": [0.1, 0.05, 0.025, 0.0125], "yoshida4": [0.1, 0.05, 0.025, 0.0125]}.items():
        errs = [np.max(np.abs(_momentum_final(model, data, name, h, T, tau)[1] - ref)) for h in hs]
        assert min(errs) > 1e-10, (name, errs)
        assert abs(fitted_order(hs, errs) - SPLITTING_METHODS[name].order) < 0.2, (name, errs)


@pytest.mark.parametrize("h", [0.01, 0.05, 0.1])  # 0.1: near Yoshida's stability limit (substeps up to 1.7h)
@pytest.mark.parametrize("method", list(SPLITTING_METHODS))
def test_conformal_symplectic_isometric_law_exact_at_any_step(small, method, h):
    """J_{k+1} = e^{−h/τ}J_k: every sub-flow maps J exactly (damp by e^{−s/τ}, kick and drift not at all),
    so the only error is round-off: bound 10·√(steps)·ε·scale per save, scale = the cancelling terms."""
    model, data = small
    ds = ns.simulate(model, data, dynamics="momentum", method=method, h=h, tau=0.7, t_end=6.0, save_every=3.0,
                     seeds=3, velocity=1.0)
    iso = ds.charge_kind == "isometric"
    drift = ds.drift_max.sel(charge=iso).values
    bound = 10 * np.sqrt(ds.n_accepted.values)[:, None, None] * EPS * ds.scale.sel(charge=iso).values
    # near Yoshida's stability limit a seed may blow up: it is flagged with its time, and the law is
    # checked on the others (at least two of the three)
    ok = ds.status.values == STATUS_OK
    assert ok.sum() >= 2
    assert np.all(np.isfinite(ds.t_diverged.values[~ok]))
    assert np.all(drift[ok] <= bound[ok])
    assert np.max(np.abs(ds.charge_initial.values[:, model.n_charges:])) > 0.1  # J(0) is not trivially 0


def test_rk4_breaks_isometric_law_at_order_4(small):
    model, data = small
    hs = [0.2, 0.1, 0.05, 0.025]
    devs = []
    for h in hs:
        ds = ns.simulate(model, data, dynamics="momentum", method="rk4", h=h, tau=0.7, t_end=2.0, save_every=2.0,
                         seeds=1, velocity=1.0)
        devs.append(float(ds.drift.sel(charge=ds.charge_kind == "isometric").isel(time=-1).max()))
    assert min(devs) > 1e3 * EPS
    assert abs(fitted_order(hs, devs) - 4) < 0.2, devs


def test_heavy_ball_is_conformal_symplectic_euler(reference):
    """Algebraically identical (θ_{k+1} − θ_k = h p_{k+1}); in floating point the two orderings differ by
    a few ulp per step: bound 100·n·ε·max|θ| after n = 200 steps."""
    model, data = reference
    h, tau = 0.05, 0.4
    eta, beta = heavy_ball_from_flow(h, tau)
    hb = ns.simulate(model, data, dynamics="heavy_ball", learning_rate=eta, beta=beta, n_steps=200, seeds=3,
                     velocity=0.3)
    cse = ns.simulate(model, data, dynamics="momentum", method="symplectic_euler", h=h, tau=tau, n_steps=200,
                      seeds=3, velocity=0.3)
    assert hb.attrs["h"] == pytest.approx(h, rel=1e-14) and hb.attrs["tau"] == pytest.approx(tau, rel=1e-14)
    scale = np.max(np.abs(cse.theta_final.values))
    assert np.max(np.abs(hb.theta_final.values - cse.theta_final.values)) <= 100 * 200 * EPS * scale
    assert np.allclose(hb.loss.values, cse.loss.values, rtol=1e-11, atol=0)
    nest = ns.simulate(model, data, dynamics="nesterov", h=h, tau=tau, n_steps=200, seeds=3, velocity=0.3)
    assert np.all(nest.status.values == STATUS_OK)
    assert np.max(np.abs(nest.theta_final.values - hb.theta_final.values)) > 1e-6  # a different algorithm


def test_balance_law_residual(small):
    """Integrated law τḊ + D + 2λ∫D(q) − 2τ∫D(p) = const: a quadratic invariant of the augmented state, so
    Gauss–Legendre keeps it to the solve tolerance; RK4's residual converges at order 4."""
    model, data = small
    kw = dict(tau=0.4, weight_decay=0.1)
    ds, _ = _momentum_final(model, data, "gl2", 0.1, 2.0, **kw)
    bal = ds.charge_kind == "model"
    law_scale = ds.scale.sel(charge=bal) + np.abs(ds.law_initial).max()
    assert np.all(ds.law_residual.sel(charge=bal).values <= 1e-12 * law_scale.values)
    assert np.all(np.isnan(ds.law_residual.sel(charge=~bal).values))
    assert float(ds.drift.sel(charge=bal).isel(time=-1).max()) > 1e-3  # momentum does break D
    hs = [0.2, 0.1, 0.05, 0.025]
    res = [float(_momentum_final(model, data, "rk4", h, 2.0, **kw)[0].law_residual.sel(charge=bal)
                 .isel(time=-1).max()) for h in hs]
    assert abs(fitted_order(hs, res) - 4) < 0.2, res


def test_small_tau_approaches_gradient_flow(small):
    """D's change over T = 1 is O(τ) (D(T) − D(0) = 2τ∫D(p) − τ(Ḋ(T) − Ḋ(0)) − 2λ∫D): fitted rate 1 ± 0.2.
    Started at the gradient-flow velocity; h = τ/20 keeps the integration error far below the effect."""
    model, data = small
    taus = [0.05, 0.025, 0.0125, 0.00625]  # local rates 1.18, 1.09, 1.05 → 1
    drifts = []
    for tau in taus:
        ds = ns.simulate(model, data, dynamics="momentum", method="rk4", h=tau / 20, tau=tau, t_end=1.0,
                         save_every=1.0, seeds=1, velocity="gradient")
        drifts.append(float(ds.drift.sel(charge=ds.charge_kind == "model").isel(time=-1).max()))
    assert np.all(np.diff(drifts) < 0)
    assert abs(fitted_order(taus, drifts) - 1) < 0.2, drifts


# ---------------------------------------------------------------- contract

def test_seeds_are_independent(small):
    model, data = small
    kw = dict(dynamics="momentum", method="gl2", h=0.1, tau=0.5, t_end=1.0, velocity=0.5)
    batch = ns.simulate(model, data, seeds=[0, 1, 2, 3], **kw)
    alone = ns.simulate(model, data, seeds=[2], **kw)
    assert np.array_equal(batch.theta_final.sel(seed=2).values, alone.theta_final.sel(seed=2).values)
    assert np.array_equal(batch.drift.sel(seed=2).values, alone.drift.sel(seed=2).values)


@pytest.mark.parametrize("kwargs,name", [
    (dict(dynamics="momentum", method="verlet", h=0.1), "tau"),
    (dict(dynamics="momentum", method="verlet", h=0.1, tau=-1.0), "tau"),
    (dict(dynamics="gf", method="gl2", h=0.1, tau=1.0), "tau"),
    (dict(dynamics="momentum", method="gauss", h=0.1, tau=1.0), "method"),
    (dict(dynamics="momentum", method="verlet", h=0.1, tau=1.0, rtol=1e-6), "rtol"),
    (dict(dynamics="gd", h=0.1, velocity="zero"), "velocity"),
    (dict(dynamics="heavy_ball", method="verlet", h=0.1, tau=1.0), "method"),
    (dict(dynamics="heavy_ball", learning_rate=0.1, beta=1.5), "beta"),
    (dict(dynamics="heavy_ball", learning_rate=0.1, beta=0.9, h=0.1), "h"),
    (dict(dynamics="momentum", method="verlet", h=0.1, tau=1.0, beta=0.9), "beta"),
    (dict(dynamics="momentum", method="verlet", h=0.1, tau=1.0, velocity=np.ones(3)), "velocity"),
    (dict(dynamics="momentum", method="verlet", h=0.1, tau=1.0, velocity="up"), "velocity"),
    (dict(method="gl2", h=0.1, solve_tol=0.0), "solve_tol"),
    (dict(method="gl2", h=0.1, max_halvings=-1), "max_halvings"),
    (dict(method="rk4", h=0.1, tau=1.0), "tau"),
])
def test_bad_input_names_the_parameter(small, kwargs, name):
    model, data = small
    with pytest.raises(ConfigError, match=name):
        ns.simulate(model, data, t_end=1.0, **kwargs)
