"""Low-rank adapters (issue 22, item 2): f(x) = (W₀ + BA)x with W₀ frozen, charge BᵀB − AAᵀ per adapter.

Oracles: central finite differences of an independent NumPy forward pass; an independent NumPy
back-propagation written here; the charge's NumPy formula; gradient descent's exact law (theory.md §3);
Gauss–Legendre's exact conservation of quadratic charges; heavy ball's exact e^{−h/τ} decay of isometric
charges (§4); discovery's law count (GL(r) gives r(r + 1)/2 per adapter).
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError
from noether_sim.kernels.entries import ensemble_charges, ensemble_loss_grad

ACT = {"tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2), "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
       "linear": (lambda z: z, lambda z: np.ones_like(z))}


def data_for(model, n=10, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((model.widths[0], n))
    if model.loss == "softmax_ce":
        Y = np.eye(model.widths[-1])[:, rng.integers(0, model.widths[-1], n)]
    else:
        Y = rng.standard_normal((model.widths[-1], n))
    return ns.data.from_arrays(X, Y)


def kernel_grad(model, data, theta):
    ints = model.descriptor()
    X, Y = model.kernel_data(data)
    return ensemble_loss_grad(int(ints[0]), np.atleast_2d(theta), ints, model.constants(data), X, Y)


def numpy_grad(model, data, theta):
    """Independent back-propagation: the network written out layer by layer, W_l = W₀_l + B_lA_l."""
    base = model.base
    act, dact = ACT[getattr(base, "activation", "linear")]
    W0 = base.unflatten(np.array(model.base_weights))
    fac = model.unflatten(theta)
    Ws, bs = [], []
    for i, (W, b) in enumerate(W0, start=1):
        W = W.copy()
        if i in model.layers:
            j = model.layers.index(i)
            W += fac[2 * j + 1][0] @ fac[2 * j][0]
        Ws.append(W)
        bs.append(b if b is not None else np.zeros(W.shape[0]))
    hs, zs = [data.X], []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = W @ hs[-1] + b[:, None]
        zs.append(z)
        hs.append(act(z) if i < len(Ws) - 1 else z)
    f, N = hs[-1], data.X.shape[1]
    if model.loss == "softmax_ce":
        p = np.exp(f - f.max(0)) / np.exp(f - f.max(0)).sum(0)
        d = (p - data.Y) / N
    else:
        d = (f - data.Y) / N
    G = [None] * len(Ws)
    for i in range(len(Ws) - 1, -1, -1):
        G[i] = d @ hs[i].T
        if i > 0:
            d = (Ws[i].T @ d) * dact(zs[i - 1])
    out = []
    for j, l in enumerate(model.layers):
        A, B = fac[2 * j][0], fac[2 * j + 1][0]
        out += [(B.T @ G[l - 1]).ravel(), (G[l - 1] @ A.T).ravel()]
    return np.concatenate(out)


MODELS = {
    "mlp_tanh_all": lambda: ns.LoRA(ns.MLP((4, 6, 5, 3), activation="tanh", bias=True), rank=2),
    "mlp_relu_first": lambda: ns.LoRA(ns.MLP((4, 6, 3), activation="relu", bias=True), rank=3, layers=(1,)),
    "softmax_last": lambda: ns.LoRA(ns.MLP((4, 6, 3), activation="tanh", loss="softmax_ce"), rank=2, layers=[2]),
    "deep_linear": lambda: ns.LoRA(ns.DeepLinear((5, 4, 4, 3), bias=True), rank=2, layers=(3, 1)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_matches_finite_differences_and_numpy_backprop(name):
    model = MODELS[name]()
    data = data_for(model)
    theta = np.random.default_rng(1).standard_normal(model.n_params) * 0.7
    loss, g = kernel_grad(model, data, theta)
    assert np.isclose(loss[0], model.loss_value(theta, data), rtol=1e-13)
    assert np.allclose(g[0], numpy_grad(model, data, theta), rtol=1e-11, atol=1e-13)
    eps = 1e-6
    fd = np.array([(model.loss_value(theta + eps * e, data) - model.loss_value(theta - eps * e, data)) / (2 * eps)
                   for e in np.eye(model.n_params)])
    assert np.abs(fd - g[0]).max() < 1e-7 * max(1.0, np.abs(g).max())


def test_the_adapted_network_is_the_base_with_w0_plus_ba():
    base = ns.DeepLinear((5, 4, 3))
    w0 = np.random.default_rng(2).standard_normal(base.n_params)
    model = ns.LoRA(base, rank=2, layers=(2,), base_weights=w0)
    theta = np.random.default_rng(3).standard_normal(model.n_params)
    (A, _), (B, _) = model.unflatten(theta)
    (W1, _), (W2, _) = base.unflatten(w0)
    X = np.random.default_rng(4).standard_normal((5, 7))
    assert np.allclose(model.forward(theta, X), (W2 + B @ A) @ W1 @ X, rtol=1e-14)
    zero = model.flatten([(A, None), (np.zeros_like(B), None)])
    assert np.allclose(model.forward(zero, X), base.forward(w0, X), rtol=0, atol=0)  # B = 0: the base itself


@pytest.mark.parametrize("name", list(MODELS))
def test_charges_match_numpy(name):
    model = MODELS[name]()
    theta = np.random.default_rng(5).standard_normal(model.n_params)
    ints = model.descriptor()
    q = ensemble_charges(int(ints[0]), theta[None], ints, model.constants(None), model.n_charges)[0]
    fac = model.unflatten(theta)
    for j, l in enumerate(model.layers):
        A, B = fac[2 * j][0], fac[2 * j + 1][0]
        g = model.charge_groups[j]
        assert g.name == f"D{l}"
        assert np.allclose(q[g.offset: g.offset + g.size].reshape(g.shape), B.T @ B - A @ A.T, rtol=1e-14, atol=1e-13)
    if model.translated:
        T = model.charge_groups[-1]
        assert np.allclose(q[T.offset: T.offset + T.size], fac[-1][0].sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name", ["mlp_tanh_all", "softmax_last"])
def test_gradient_descent_exact_law(name, weight_decay):
    model = MODELS[name]()
    ds = ns.simulate(model, data_for(model), dynamics="gd", h=0.05, n_steps=4000, save_every=25.0, seeds=3,
                     init=init.Gaussian(scale=0.7), weight_decay=weight_decay)
    assert np.all(ds.status.values == 0)
    for g in model.charge_groups:
        resid = ds.residual.sel(charge=g.name).values
        floor = ds.roundoff_floor.sel(charge=g.name).values[:, None]
        assert np.all(resid <= 10 * floor), (g.name, resid.max(), floor.max())
        if g.degree == 2:  # the η² terms stand far above round-off: the law explains a real drift
            assert np.max(ds.predicted.sel(charge=g.name).values) > 1e3 * np.max(floor)


def test_gradient_flow_conserves_the_adapter_charge_and_explicit_methods_drift():
    model = MODELS["mlp_tanh_all"]()
    data = data_for(model)
    kw = dict(h=0.2, t_end=4.0, save_every=2.0, seeds=2, init=init.Gaussian(scale=0.7))
    gl = ns.simulate(model, data, method="gl2", **kw)
    rk = ns.simulate(model, data, method="rk4", **kw)
    assert np.all(gl.status.values == 0) and np.all(rk.status.values == 0)
    for g in model.charge_groups:
        assert np.max(gl.drift_max.sel(charge=g.name).values) <= 1e-10
    assert max(np.max(rk.drift_max.sel(charge=g.name).values) for g in model.charge_groups) > 1e-8


def test_usual_start_keeps_d_at_minus_a0_a0t():
    model = MODELS["mlp_tanh_all"]()
    ds = ns.simulate(model, data_for(model), method="gl2", h=0.1, t_end=3.0, save_every=1.0, seeds=2,
                     init=model.usual_start(), watch_seeds=[0])
    theta0 = ds.theta_initial.values[0]
    fac = model.unflatten(theta0)
    assert all(np.all(fac[2 * j + 1][0] == 0) for j in range(len(model.layers)))  # B = 0
    comp = ds.component_charge.values
    w = ds.charge_watch.values[0]  # (time, component)
    for j, l in enumerate(model.layers):
        A0 = fac[2 * j][0]
        D = w[:, comp == f"D{l}"].reshape(len(ds.time), 2, 2)
        assert np.allclose(D, -(A0 @ A0.T)[None], atol=1e-11)
    assert np.abs(ds.theta_final.values[0] - theta0).max() > 1e-2  # it trained


@pytest.mark.parametrize("name", ["mlp_tanh_all", "softmax_last"])
def test_heavy_ball_keeps_the_isometric_charges(name):
    model = MODELS[name]()
    ds = ns.simulate(model, data_for(model), dynamics="heavy_ball", learning_rate=0.02, beta=0.9, n_steps=400,
                     seeds=3, init=init.Gaussian(scale=0.7), velocity="gradient")
    assert np.all(ds.status.values == 0)
    v = ns.judge(ds)
    for g in model.isometric_groups():
        drift = ds.drift.sel(charge=g.name).values
        assert np.all(drift <= 10 * ds.roundoff_floor.sel(charge=g.name).values[:, None]), (g.name, drift.max())
        assert set(v.verdict.sel(charge=g.name).values) == {ns.laws.CONSERVED}


def test_minibatch_sgd_keeps_the_exact_law():
    model = MODELS["mlp_relu_first"]()
    ds = ns.simulate(model, data_for(model, n=12), dynamics="gd", h=0.05, n_steps=500, seeds=3, batch_size=4,
                     init=init.Gaussian(scale=0.7))
    assert np.all(ds.status.values == 0)
    resid = ds.residual.sel(charge="D1").values
    assert np.all(resid <= 10 * ds.roundoff_floor.sel(charge="D1").values[:, None])


@pytest.mark.parametrize("flow, expected", [("gradient", 3 + 3), ("momentum", 1 + 1)])
def test_discovery_counts_gl_r_per_adapter(flow, expected):
    """Two rank-2 adapters on a tanh network: r(r + 1)/2 = 3 laws each under gradient flow, the r(r − 1)/2 = 1
    rotation each under momentum flow; the catalogue accounts for all of them."""
    res = ns.discover(ns.LoRA(ns.MLP((4, 5, 3), activation="tanh", bias=True), rank=2), flow=flow, seed=2)
    assert res.decided and res.count == expected
    assert res.catalogue.complete and res.catalogue.independent == expected


@pytest.mark.parametrize("kwargs, name", [
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, layers=(3,)), "layers"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, layers=(0,)), "layers"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, layers=(1, 1)), "layers"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, layers=()), "layers"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=3, layers=(2,)), "rank"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=0), "rank"),
    (dict(base=ns.MLP((4, 3, 2), normalised_first_layer=True), rank=1), "base"),
    (dict(base="mlp", rank=1), "base"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, base_weights=np.zeros(5)), "base_weights"),
    (dict(base=ns.DeepLinear((4, 3, 2)), rank=1, base_weights=np.full(18, np.nan)), "base_weights"),
])
def test_invalid_adapters_are_named(kwargs, name):
    with pytest.raises(ConfigError, match=rf"^{name}="):
        ns.LoRA(**kwargs)
