"""Bias rates of their own (bias_lr) beside layer_lr: descent against plain NumPy descent with a multiplier
per weight and per bias, the weighted charges with their bias terms (theory.md §7) computed from θ, gradient
descent's exact law to round-off (and the unweighted charges breaking it, so the check can fail), and
multipliers of 1 (or bias rates equal to the layers') reproducing the runs without them bit for bit."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import ConfigError
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.mlp import MLP
from noether_sim.simulate import plan

ETA = 0.02
N_STEPS = 25
RATES = (2.0, 0.5, 1.5)
BIAS_RATES = (0.3, 3.0, 1.0)


def _problem(activation="relu"):
    return MLP((3, 5, 4, 2), activation=activation, bias=True), ns.data.synthetic_regression(3, 2, 20, noise=0.1, seed=1)


def _multipliers(model, rates, bias_rates):
    m = np.empty(model.n_params)
    for i, (W, b) in enumerate(model.unflatten(np.arange(model.n_params))):
        m[W.ravel()] = rates[i]
        m[b] = bias_rates[i]
    return m


def _grad(model, data, theta):
    """∇L of the plain network (no factors), from the package's kernel on the raw data."""
    ints, floats = model.descriptor(), model.constants(data)
    a, b = model.kernel_data(data)
    return ensemble_loss_grad(int(ints[0]), np.ascontiguousarray(theta[None]), ints, floats, a, b)[1][0]


def _weighted_charges(model, theta, rates, bias_rates):
    """r_i per hidden neuron, then (linear activation) C_i row-major: theory.md §7 with the bias terms."""
    layers = model.unflatten(theta)
    r, C = [], []
    for i in range(len(layers) - 1):
        (W, b), (W2, _) = layers[i], layers[i + 1]
        r.append((W ** 2).sum(axis=1) / rates[i] + b ** 2 / bias_rates[i] - (W2 ** 2).sum(axis=0) / rates[i + 1])
        C.append((W2.T @ W2 / rates[i + 1] - W @ W.T / rates[i] - np.outer(b, b) / bias_rates[i]).ravel())
    return np.concatenate(r + (C if model.activation == "linear" else []))


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_bias_lr_descent_matches_numpy_and_keeps_weighted_law(activation):
    model, data = _problem(activation)
    ds = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, save_every=ETA * 5, seeds=2,
                     layer_lr=RATES, bias_lr=BIAS_RATES)
    m = _multipliers(model, RATES, BIAS_RATES)
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        for _ in range(N_STEPS):
            theta = theta - ETA * m * _grad(model, data, theta)
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
        want = _weighted_charges(model, theta, RATES, BIAS_RATES)
        got = ds.charge_final.values[s]
        assert np.max(np.abs(got - want)) <= 1e-11 * np.max(np.abs(want))
    # the exact GD law (η² terms with each layer's and each bias's rate) holds to round-off ...
    rows = ns.summarise_verdicts(ns.judge(ds))
    assert {(r["verdict"], r["basis"]) for r in rows} == {(ns.laws.CONSERVED, ns.laws.BASIS_LAW)}
    # ... and, independently in NumPy, one step's law r_η' − r_η = η²(m_i‖g_in‖² + m_b g_b² − m_{i+1}‖g_out‖²)
    # holds to round-off with the bias rates, and fails by far more when the biases are weighted as their layer
    theta = ds.theta_initial.values[0]
    g = _grad(model, data, theta)
    step = theta - ETA * m * g
    n_r = sum(model.widths[1:-1])
    for bias_rates, small in ((BIAS_RATES, True), (RATES, False)):
        gm = model.unflatten(g)
        terms = np.concatenate([ETA ** 2 * (RATES[i] * (gm[i][0] ** 2).sum(axis=1) + bias_rates[i] * gm[i][1] ** 2
                                            - RATES[i + 1] * (gm[i + 1][0] ** 2).sum(axis=0))
                                for i in range(len(RATES) - 1)])
        change = (_weighted_charges(model, step, RATES, bias_rates) - _weighted_charges(model, theta, RATES, bias_rates))
        residual = np.abs(change[:n_r] - terms).max()
        assert (residual <= 1e-14 * 100) if small else (residual > 1e-6), (bias_rates, residual)
    assert ds.attrs["bias_lr"] == "[0.3, 3.0, 1.0]"


def test_bias_lr_of_ones_and_equal_to_layers_is_bit_identical():
    model, data = _problem()
    kw = dict(dynamics="gd", h=ETA, n_steps=15, save_every=ETA * 5, seeds=3, watch_seeds=[1])
    plain = ns.simulate(model, data, **kw)
    ones = ns.simulate(model, data, layer_lr=(1, 1, 1), bias_lr=1.0, **kw)
    for name in plain.data_vars:
        if name != "wall_seconds":
            np.testing.assert_array_equal(plain[name].values, ones[name].values, err_msg=name)
    with_layer = ns.simulate(model, data, layer_lr=RATES, **kw)
    explicit = ns.simulate(model, data, layer_lr=RATES, bias_lr=RATES, **kw)
    for name in with_layer.data_vars:
        if name != "wall_seconds":
            np.testing.assert_array_equal(with_layer[name].values, explicit[name].values, err_msg=name)


def test_bias_lr_alone_means_layers_at_one():
    model, data = _problem()
    kw = dict(dynamics="gd", h=ETA, n_steps=5, seeds=1)
    a = ns.simulate(model, data, bias_lr=2.0, **kw)
    b = ns.simulate(model, data, layer_lr=(1, 1, 1), bias_lr=(2, 2, 2), **kw)
    np.testing.assert_array_equal(a.theta_final.values, b.theta_final.values)


@pytest.mark.parametrize("model,kwargs,why", [
    (MLP((3, 5, 4, 2), bias=True), dict(bias_lr=(1.0, 2.0)), "one multiplier > 0 or 3"),
    (MLP((3, 5, 4, 2), bias=True), dict(bias_lr=(1.0, 0.0, 2.0)), "finite and > 0"),
    (MLP((3, 5, 4, 2), bias=True), dict(bias_lr=np.nan), "finite and > 0"),
    (MLP((3, 5, 4, 2), bias=True), dict(bias_lr="slow"), "one multiplier"),
    (MLP((3, 5, 4, 2)), dict(bias_lr=2.0), "needs a network with biases"),
    (ns.DeepLinear((3, 4, 2), bias=True), dict(bias_lr=2.0), "MLP(widths, activation='linear', bias=True)"),
])
def test_bad_bias_lr_refused_by_name(model, kwargs, why):
    data = ns.data.synthetic_regression(3, 2, 16)
    with pytest.raises(ConfigError) as info:
        plan(model, data, dynamics="gd", h=0.01, n_steps=10, **kwargs)
    assert why in str(info.value)


def test_bias_lr_in_a_study(tmp_path):
    """A method table's bias_lr reaches simulate: the weighted rescale charges keep gd's exact law and the
    finest rung is the direct run's."""
    from noether_sim.config import load_config

    base = ["model.kind='mlp'", "model.widths=[3, 4, 2]", "model.bias=true", "model.activation='relu'",
            "data.n_points=16", "seeds.count=2", "t_end=0.0625", "save_every=0.03125"]
    cfg = load_config(None, base)
    cfg["methods"] = {"gd": {"dynamics": "gd", "step_sizes": [0.015625, 0.0078125, 0.00390625],
                             "layer_lr": [2.0, 0.5], "bias_lr": 4.0}}
    ds = ns.run_study(cfg, tmp_path / "study").load()
    assert list(ds.verdict.sel(scheme="gd", charge="r1").values) == [ns.laws.CONSERVED] * 2
    block = ns.simulate(ns.builders.build_model(cfg), ns.builders.build_data(cfg), init=ns.builders.build_init(cfg),
                        dynamics="gd", h=0.00390625, t_end=0.0625, save_every=0.03125, seeds=2, layer_lr=[2.0, 0.5],
                        bias_lr=4.0)
    np.testing.assert_allclose(ds.charge_final.sel(scheme="gd").isel(step=-1).values, block.charge_final.values,
                               rtol=0, atol=1e-14)
    cfg["methods"]["gd"]["bias_lr"] = [1.0, -1.0]
    with pytest.raises(ConfigError, match="bias_lr"):
        ns.run_study(cfg, tmp_path / "bad")


def test_bias_lr_with_minibatches_matches_numpy():
    """batch_size with bias rates: the same replayed points (ns.minibatch_indices), θ follows minibatch
    descent with a multiplier per weight and per bias; full-batch descent ends elsewhere (the check can fail)."""
    model, data = _problem()
    B = 6
    ds = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, seeds=2, layer_lr=RATES,
                     bias_lr=BIAS_RATES, batch_size=B)
    m = _multipliers(model, RATES, BIAS_RATES)
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        for k in range(N_STEPS):
            idx = ns.minibatch_indices(data.n_points, B, s, k)
            theta = theta - ETA * m * _grad(model, ns.data.from_arrays(data.X[:, idx], data.Y[:, idx]), theta)
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
    full = ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=N_STEPS, seeds=2, layer_lr=RATES, bias_lr=BIAS_RATES)
    assert np.max(np.abs(full.theta_final.values[1] - theta)) > 1e-4
    rows = ns.summarise_verdicts(ns.judge(ds))  # the exact law holds per step with the minibatch gradient
    assert {r["basis"] for r in rows} == {ns.laws.BASIS_LAW}
