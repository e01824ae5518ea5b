"""Layer-wise learning rates (layer_lr): the trajectory against plain NumPy descent with per-layer rates,
the weighted charges C_i = W_{i+1}ᵀW_{i+1}/m_{i+1} − W_iW_iᵀ/m_i and their exact gradient-descent law,
multipliers of 1 bit-identical to an unweighted run, and bad input refused before any work."""

import numpy as np
import pytest
import xarray as xr

import noether_sim as ns
from noether_sim import ConfigError
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.mlp import MLP, teacher_regression
from noether_sim.simulate import plan

from reference import loss_and_grad

RATES = (2.0, 0.5, 1.5)
ETA = 0.02
N_STEPS = 30


def _problem():
    return ns.DeepLinear((3, 4, 5, 2)), ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=1)


def _layer_of(model):
    return np.concatenate([[i] * (model.widths[i + 1] * model.widths[i]) for i in range(len(model.widths) - 1)])


def test_layer_lr_descent_matches_numpy_and_keeps_weighted_law():
    model, data = _problem()
    ds = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, save_every=ETA * 10, seeds=2,
                     layer_lr=RATES, watch_seeds=[0])
    m = np.asarray(RATES)[_layer_of(model)]
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        for _ in range(N_STEPS):
            theta = theta - ETA * m * loss_and_grad(model, data, theta)[1]
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
        # the recorded charges are the weighted ones, computed here from θ
        layers = model.unflatten(theta)
        W = [w for w, _ in layers]
        want = np.concatenate([(W[i + 1].T @ W[i + 1] / RATES[i + 1] - W[i] @ W[i].T / RATES[i]).ravel()
                               for i in range(2)])
        got = ds.charge_final.values[s]
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
        assert np.abs(ds.loss.values[s, -1] - loss_and_grad(model, data, theta)[0]) <= 1e-12
    # gradient descent's exact law holds for the weighted charges: the verdict rests on it
    rows = ns.summarise_verdicts(ns.judge(ds))
    assert [(r["verdict"], r["basis"]) for r in rows] == [(ns.laws.CONSERVED, ns.laws.BASIS_LAW)] * 2
    # and it can fail: the same run's unweighted charges break the law by far more than round-off
    theta_f = ds.theta_final.values[0]
    W = [w for w, _ in model.unflatten(theta_f)]
    W0 = [w for w, _ in model.unflatten(ds.theta_initial.values[0])]
    plain_change = np.abs((W[1].T @ W[1] - W[0] @ W[0].T) - (W0[1].T @ W0[1] - W0[0] @ W0[0].T)).max()
    assert plain_change > 1e6 * float(ds.roundoff_floor.values[0, 0])
    assert ds.attrs["layer_lr"] == "[2.0, 0.5, 1.5]"


@pytest.mark.parametrize("dynamics,method", [("gd", None), ("gf", "rk4")])
def test_layer_lr_of_ones_is_bit_identical(dynamics, method):
    model, data = _problem()
    kw = dict(dynamics=dynamics, method=method, h=ETA, n_steps=20, save_every=ETA * 5, seeds=3, watch_seeds=[1])
    a = ns.simulate(model, data, **kw)
    b = ns.simulate(model, data, layer_lr=(1, 1, 1), **kw)
    for name in a.data_vars:
        if name in ("wall_seconds",):
            continue
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_layer_lr_relu_mlp_flow_matches_weighted_gradient():
    """Gradient flow with layer rates on a bias-free ReLU MLP: rk4 against NumPy rk4 of θ̇ = −M∇L."""
    model = MLP((3, 6, 2), activation="relu")
    data = teacher_regression(MLP((3, 6, 2), activation="relu"), 12, noise=0.1, seed=3)
    rates = (3.0, 0.25)
    ds = ns.simulate(model, data, dynamics="gf", method="rk4", h=0.01, n_steps=20, seeds=1, layer_lr=rates)
    ints, floats = model.descriptor(), model.constants(data)
    a, b = model.kernel_data(data)
    m = np.asarray(rates)[_layer_of(model)]

    def f(th):
        return -m * ensemble_loss_grad(int(ints[0]), np.ascontiguousarray(th[None]), ints, floats, a, b)[1][0]

    th = ds.theta_initial.values[0].copy()
    for _ in range(20):
        k1 = f(th); k2 = f(th + 0.005 * k1); k3 = f(th + 0.005 * k2); k4 = f(th + 0.01 * k3)
        th = th + 0.01 / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert np.max(np.abs(ds.theta_final.values[0] - th)) <= 1e-12 * np.max(np.abs(th))
    W1, W2 = (w for w, _ in model.unflatten(th))
    r = (W1 ** 2).sum(axis=1) / rates[0] - (W2 ** 2).sum(axis=0) / rates[1]
    assert np.max(np.abs(ds.charge_final.values[0] - r)) <= 1e-12 * np.max(np.abs(r))


@pytest.mark.parametrize("kwargs,why", [
    (dict(layer_lr=(1.0, 2.0)), "3 step multipliers"),
    (dict(layer_lr=(1.0, 0.0, 1.0)), "finite and > 0"),
    (dict(layer_lr=(1.0, -1.0, 1.0)), "finite and > 0"),
    (dict(layer_lr=(1.0, np.inf, 1.0)), "finite and > 0"),
    (dict(layer_lr=(1.0, np.nan, 1.0)), "finite and > 0"),
    (dict(layer_lr=(1.0, 1.0, 1.0), dynamics="adam"), "not to dynamics="),
    (dict(layer_lr="fast"), "step multipliers"),
])
def test_bad_layer_lr_refused_by_name(kwargs, why):
    model, data = _problem()
    kwargs = {"dynamics": "gd", **kwargs}
    with pytest.raises(ConfigError, match="layer_lr") as info:
        plan(model, data, h=0.01, n_steps=10, **kwargs)
    assert why in str(info.value)


def test_layer_lr_refuses_deep_linear_biases():
    with pytest.raises(ConfigError, match="with biases needs an MLP"):
        plan(ns.DeepLinear((3, 4, 2), bias=True), ns.data.synthetic_regression(3, 2, 16), dynamics="gd", h=0.01,
             n_steps=10, layer_lr=(1.0, 2.0))


def test_layer_lr_heavy_ball_matches_numpy_and_keeps_its_momentum_law():
    model, data = _problem()
    eta, beta = 0.02, 0.8
    ds = ns.simulate(model, data, dynamics="heavy_ball", learning_rate=eta, beta=beta, n_steps=N_STEPS, seeds=2,
                     layer_lr=RATES, velocity=0.3)
    h = ds.attrs["h"]
    m = np.asarray(RATES)[_layer_of(model)]
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        prev = theta - h * ds.velocity_initial.values[s]
        for _ in range(N_STEPS):
            theta, prev = theta + beta * (theta - prev) - eta * m * loss_and_grad(model, data, theta)[1], theta
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
        assert np.max(np.abs(ds.velocity_final.values[s] - (theta - prev) / h)) <= 1e-10 * np.max(np.abs(theta))
    # heavy ball's exact discrete law holds for the weighted charges (which it moves)
    rows = ns.summarise_verdicts(ns.judge(ds))
    assert [r["law_verdict"] for r in rows[:2]] == [ns.laws.LAW_HOLDS_EXACTLY] * 2


def test_layer_lr_of_ones_is_bit_identical_under_momentum():
    model, data = _problem()
    kw = dict(dynamics="momentum", method="verlet", h=0.02, tau=0.5, n_steps=20, seeds=2, velocity="gradient")
    a = ns.simulate(model, data, **kw)
    b = ns.simulate(model, data, layer_lr=(1, 1, 1), **kw)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_layer_lr_with_minibatches_matches_numpy():
    """batch_size: the φ-run draws the same points (ns.minibatch_indices) from the scaled inputs, so θ follows
    minibatch descent with per-layer rates, θ_i ← θ_i − ηm_i∇_{θ_i}L_B."""
    model, data = _problem()
    B = 5
    ds = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, seeds=2, layer_lr=RATES, batch_size=B)
    m = np.asarray(RATES)[_layer_of(model)]
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        for k in range(N_STEPS):
            idx = ns.minibatch_indices(data.n_points, B, s, k)
            sub = ns.data.from_arrays(data.X[:, idx], data.Y[:, idx])
            theta = theta - ETA * m * loss_and_grad(model, sub, theta)[1]
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
        full = theta.copy()
    # the comparison can fail: full-batch descent ends elsewhere
    plain = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, seeds=2, layer_lr=RATES)
    assert np.max(np.abs(plain.theta_final.values[1] - full)) > 1e-4


def test_layer_lr_in_a_study_and_a_sweep(tmp_path):
    """A method table's layer_lr reaches simulate (weighted charges with gd's exact law), and a sweep over it
    gives one point per multiplier list."""
    from noether_sim.config import load_config

    base = ["model.widths=[3, 4, 2]", "data.n_points=16", "seeds.count=3", "t_end=0.0625", "save_every=0.015625"]
    cfg = load_config(None, base)
    cfg["methods"] = {"gd": {"dynamics": "gd", "step_sizes": [0.015625, 0.0078125, 0.00390625, 0.001953125],
                             "layer_lr": [2.0, 0.5]}}
    ds = ns.run_study(cfg, tmp_path / "study").load()
    verdicts = ds.verdict.sel(scheme="gd", charge="D1").values
    assert list(verdicts) == [ns.laws.CONSERVED] * 3
    block = ns.simulate(ns.DeepLinear((3, 4, 2)), ns.builders.build_data(cfg), init=ns.builders.build_init(cfg),
                        dynamics="gd", h=0.001953125, t_end=0.0625, save_every=0.015625, seeds=3, layer_lr=[2.0, 0.5])
    finest = ds.charge_final.sel(scheme="gd").isel(step=-1).values
    assert np.allclose(finest, block.charge_final.values, rtol=0, atol=1e-14)
    cfg["sweep"] = {"methods.gd.layer_lr": [[1.0, 1.0], [4.0, 0.25]]}
    sw = ns.run_study(cfg, tmp_path / "sweep").load()
    assert sw.sizes["methods.gd.layer_lr"] == 2
