"""Verdicts that rest on the exact discrete laws (noether_sim.laws), and the discrete momentum law of heavy
ball and Nesterov (kernels/driver.py ``_algorithm_law``).

Known answers: the model's charges (balance D_i, ReLU rescale r_i) are conserved by gradient flow, so
gradient descent's drift of them is its one-step law's alone; tanh's r_i is not protected by any symmetry
(broken by the flow); under momentum the model's charges move (broken) while their momentum law holds, and
heavy ball keeps the isometric charges' e^{−t/τ} law exactly.
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.ladder import _richardson
from noether_sim.laws import HOLDS_FACTOR
from noether_sim.mlp import MLP, teacher_regression

CONSERVED, BROKEN = ns.laws.CONSERVED, ns.laws.BROKEN


@pytest.fixture(scope="module")
def linear():
    return ns.DeepLinear((4, 5, 5, 3)), ns.data.synthetic_regression(4, 3, 32, noise=0.1)


@pytest.fixture(scope="module")
def relu():
    model = MLP((4, 8, 1), bias=True, activation="relu")
    return model, teacher_regression(model, 32, noise=0.1)


@pytest.fixture(scope="module")
def tanh():
    model = MLP((4, 8, 1), bias=True, activation="tanh")
    return model, teacher_regression(model, 32, noise=0.1)


def rows(analysis):
    return {r["charge"]: r for r in ns.summarise_verdicts(analysis)}


def test_richardson_removes_every_power_it_assumes():
    # q(h) = 2 + h − 3h² + 5h³ on a ladder in its asymptotic regime: three levels remove h, h², h³
    hs = np.array([0.01, 0.005, 0.0025, 0.00125])
    q = (2 + hs - 3 * hs ** 2 + 5 * hs ** 3)[:, None, None]
    best, moved = _richardson(q, hs, np.array([1.0]))
    assert abs(best[0, 0] - 2.0) < 1e-13
    assert moved[0] > 1e-8  # one power fewer removed: still moves (the uncertainty)
    # from a higher leading order (p = 2): q = 1 + h² + h³ + h⁴
    q2 = (1 + hs ** 2 + hs ** 3 + hs ** 4)[:, None, None]
    assert abs(_richardson(q2, hs, np.array([2.0]))[0][0, 0] - 1.0) < 1e-13


def test_richardson_keeps_one_level_where_the_ladder_shows_no_power():
    # an error that does not shrink as a power of h (a kink crossed at some step sizes, not others):
    # only the first Richardson step, with the movement between the finest pairs as its uncertainty
    hs = np.array([0.04, 0.02, 0.01, 0.005])
    q = (1 + hs ** 4 + 1e-9 * np.array([0.0, 3.0, -2.0, 1.0]))[:, None, None]
    best, moved = _richardson(q, hs, np.array([4.0]))
    level1 = q[-1] + (q[-1] - q[-2]) / (2.0 ** 4 - 1)
    assert best[0, 0] == level1[0, 0]
    assert moved[0] >= abs(level1[0, 0] - (q[-2] + (q[-2] - q[-3]) / 15)[0, 0])


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_gd_ladder_is_decided_by_the_exact_law(linear, weight_decay):
    model, data = linear
    lad = ns.run_ladder(model, data, dynamics="gd", step_sizes=[1 / 16, 1 / 32, 1 / 64], t_end=1.0, seeds=6,
                        weight_decay=weight_decay)
    for name, r in rows(ns.analyse_ladder(lad)).items():
        assert r["verdict"] == CONSERVED and r["basis"] == "exact law", (name, r)
        # the drift is real (the step's η² terms), the residual round-off
        assert r["finest_drift"] > 1e6 * r["law_residual"]
        assert r["law_residual"] <= HOLDS_FACTOR * r["roundoff_floor"]


def test_gd_single_run_verdicts(relu, tanh):
    ds = ns.simulate(*relu, dynamics="gd", h=0.05, n_steps=100, seeds=4)
    r = rows(ns.judge(ds))["r1"]
    assert (r["verdict"], r["basis"]) == (CONSERVED, "exact law")
    assert r["finest_drift"] > 1e-6 and r["law_residual"] < 1e-12
    # tanh: nothing protects r; the law's residual is the flow's own drift, far above round-off
    bad = rows(ns.judge(ns.simulate(*tanh, dynamics="gd", h=0.05, n_steps=100, seeds=4)))["r1"]
    assert (bad["verdict"], bad["basis"]) == (BROKEN, "exact law")
    assert bad["law_residual"] > 1e6 * bad["roundoff_floor"]


def test_single_run_without_an_exact_law_asks_for_a_ladder(linear):
    ds = ns.simulate(*linear, method="rk4", h=0.05, n_steps=20, seeds=2)
    assert set(ns.judge(ds).verdict.values.ravel()) == {ns.laws.NEEDS_LADDER}
    with pytest.raises(ns.ConfigError, match="ds="):
        ns.judge(ns.run_ladder(*linear, method="rk4", step_sizes=[0.1, 0.05, 0.025], t_end=0.2, seeds=2))


@pytest.mark.parametrize("dynamics", ["heavy_ball", "nesterov"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_momentum_algorithms_keep_their_discrete_law(linear, relu, dynamics, weight_decay):
    for model, data in (linear, relu):
        ds = ns.simulate(model, data, dynamics=dynamics, learning_rate=0.01, beta=0.9, n_steps=300, seeds=3,
                         weight_decay=weight_decay, velocity="gradient")
        assert np.all(ds.status.values == 0)
        model_charges = ds.charge_kind.values == "model"
        res = ds.law_residual.isel(time=-1).values[:, model_charges]
        floor = ds.roundoff_floor.values[:, model_charges]
        moved = ds.drift.isel(time=-1).values[:, model_charges]
        assert np.all(res <= HOLDS_FACTOR * floor), (res / floor).max()
        assert np.all(moved > 1e6 * floor)  # the charges themselves move: the law is not trivially met
        assert np.all(np.isfinite(ds.law_initial.values[:, :model.n_charges]))


def test_momentum_algorithm_law_fails_without_the_symmetry(tanh):
    ds = ns.simulate(*tanh, dynamics="heavy_ball", learning_rate=0.05, beta=0.9, n_steps=200, seeds=2)
    assert np.all(ds.law_residual.sel(charge="r1").isel(time=-1).values
                  > 1e6 * ds.roundoff_floor.sel(charge="r1").values)
    assert set(ns.judge(ds).law_verdict.sel(charge="r1").values) == {ns.laws.LAW_FAILS}


def test_heavy_ball_ladder_verdicts(linear):
    lad = ns.run_ladder(*linear, dynamics="heavy_ball", tau=0.5, step_sizes=[1 / 16, 1 / 32, 1 / 64], t_end=1.0,
                        seeds=4, velocity="gradient", weight_decay=0.05)
    r = rows(ns.analyse_ladder(lad))
    for name in ("D1", "D2"):  # moved by momentum, by its exact law
        assert r[name]["verdict"] == BROKEN and r[name]["law_verdict"] == ns.laws.LAW_HOLDS_EXACTLY
    for name in ("J1", "J2"):  # e^{−t/τ}J(0) exactly: heavy ball is conformal symplectic Euler
        assert (r[name]["verdict"], r[name]["basis"]) == (CONSERVED, "exact law")


def test_momentum_flow_law_judged_by_the_ladder(linear):
    lad = ns.run_ladder(*linear, dynamics="momentum", method="rk4", tau=0.5, step_sizes=[1 / 16, 1 / 32, 1 / 64],
                        t_end=1.0, seeds=4, velocity="gradient")
    r = rows(ns.analyse_ladder(lad))
    assert r["D1"]["verdict"] == BROKEN and r["D1"]["law_verdict"] == ns.laws.LAW_HOLDS_FLOW
    assert r["J1"]["verdict"] == CONSERVED and r["J1"]["basis"] == "ladder"


def test_gd_energy_ladder_reaches_a_verdict():
    # no exact law for the energy under gradient descent: the repeated extrapolation must decide at the
    # step sizes `noether-sim reproduce d` uses (first order, 1/32 … 1/256)
    model = MLP((4, 8, 1), activation="tanh")
    data = teacher_regression(model, 24, noise=0.05)
    lad = ns.run_ladder(model, data, dynamics="gd", track_energy=True, step_sizes=[1 / 32, 1 / 64, 1 / 128, 1 / 256],
                        t_end=1.0, seeds=4)
    r = rows(ns.analyse_ladder(lad))
    assert r["energy"]["verdict"] == CONSERVED and r["energy"]["basis"] == "ladder"
    assert r["energy"]["finest_drift"] > 1e3 * r["energy"]["extrapolated_drift"]
    assert r["r1"]["verdict"] == BROKEN  # tanh: the control case


@pytest.mark.parametrize("method", ["symplectic_euler", "verlet", "yoshida4"])
def test_splittings_keep_the_isometric_decay_exactly(linear, method):
    lad = ns.run_ladder(*linear, dynamics="momentum", method=method, tau=0.5, step_sizes=[1 / 8, 1 / 16, 1 / 32],
                        t_end=1.0, seeds=3, velocity="gradient", weight_decay=0.1)
    r = rows(ns.analyse_ladder(lad))
    for name in ("J1", "J2"):
        assert (r[name]["verdict"], r[name]["basis"]) == (CONSERVED, "exact law"), r[name]


@pytest.mark.parametrize("dynamics", ["momentum", "heavy_ball", "nesterov"])
def test_linear_charges_keep_their_own_momentum_law(dynamics):
    # the softmax translation charge T is linear: τL̈ + L̇ + λL = 0 (not the quadratic charges' law);
    # with weight decay it moves, so a wrong law would show at once
    from noether_sim.mlp import teacher_classification
    model = MLP((4, 6, 3), bias=True, activation="relu", loss="softmax_ce")
    data = teacher_classification(model, 32)
    kw = dict(method="rk4", tau=0.5, h=0.01) if dynamics == "momentum" else dict(learning_rate=0.01, beta=0.9)
    ds = ns.simulate(model, data, dynamics=dynamics, n_steps=200, seeds=2, velocity="gradient", weight_decay=0.2, **kw)
    t = ds.sel(charge="T")
    assert np.all(t.drift.isel(time=-1).values > 1e-3)
    assert np.all(t.law_residual.isel(time=-1).values <= HOLDS_FACTOR * t.roundoff_floor.values)
