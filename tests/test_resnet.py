"""Stacked residual blocks (noether_sim.ResidualMLP, kernels/residual.py; issue 22 item 3, theory.md §8):

    s_0 = W_in x + b_in,  s_k = s_{k−1} + W2_k σ(W1_k s_{k−1} + b1_k) + b2_k,  f = W_out s_K + b_out.

Oracles: an independent NumPy back-propagation written here (explicit per-block loops, not the model's
code), central finite differences of the NumPy loss, the symmetries themselves (the loss is invariant
under s → Ms and under each hidden neuron's rescaling), gradient descent's exact one-step law
(theory.md §3), Gauss–Legendre's exact conservation of quadratic charges, heavy ball's exact e^{−h/τ}
decay of isometric charges (§4), and discovery's count.
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError
from noether_sim.kernels.entries import ensemble_charges, ensemble_loss_grad
from noether_sim.kernels.residual import residual_isometric_charges

VARIANTS = {
    "relu": dict(),
    "relu_bias": dict(bias=True),
    "tanh_bias": dict(activation="tanh", bias=True),
    "relu_pow": dict(activation="relu_pow", power=2.5, bias=True),
    "no_input_projection": dict(d_in=4, input_projection=False, bias=True),
    "no_output_projection": dict(d_out=4, output_projection=False, activation="gelu"),
    "no_projections": dict(d_in=4, d_out=4, input_projection=False, output_projection=False, activation="abs"),
    "softmax": dict(d_out=3, loss="softmax_ce", bias=True),
    "linear": dict(activation="linear", bias=True),
}


def model_of(name, blocks=3):
    kw = dict(d_in=3, width=4, hidden=5, blocks=blocks, d_out=2)
    kw.update(VARIANTS[name])
    return ns.ResidualMLP(**kw)


def data_for(model, n=11, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((model.d_in, n))
    Y = rng.dirichlet(np.ones(model.d_out), n).T if model.loss == "softmax_ce" else rng.standard_normal((model.d_out, n))
    return ns.data.from_arrays(X, Y)


def kernel_loss_grad(model, theta, data):
    ints = model.descriptor()
    loss, g = ensemble_loss_grad(int(ints[0]), np.atleast_2d(theta), ints, model.constants(data),
                                 *model.kernel_data(data))
    return loss[0], g[0]


def numpy_loss_grad(model, theta, data):
    """Forward and backward written out block by block (the oracle)."""
    X, Y, N = data.X, data.Y, data.X.shape[1]
    layers = model.unflatten(theta)
    bias = (lambda b: b[:, None]) if model.bias else (lambda b: 0.0)
    pos = 0
    if model.input_projection:
        W_in, b_in = layers[0]
        s = W_in @ X + bias(b_in)
        pos = 1
    else:
        s = X
    S, Z, H, blocks = [s], [], [], []
    for k in range(model.blocks):
        (W1, b1), (W2, b2) = layers[pos + 2 * k], layers[pos + 2 * k + 1]
        z = W1 @ s + bias(b1)
        h = model.act(z)
        s = s + W2 @ h + bias(b2)
        S.append(s), Z.append(z), H.append(h), blocks.append((W1, W2))
    if model.output_projection:
        W_out, b_out = layers[-1]
        f = W_out @ s + bias(b_out)
    else:
        f = s
    if model.loss == "squared":
        loss = 0.5 * np.sum((f - Y) ** 2) / N
        E = (f - Y) / N
    else:
        lse = np.log(np.sum(np.exp(f - f.max(0)), axis=0)) + f.max(0)
        loss = np.sum(Y.sum(0) * lse - np.sum(Y * f, axis=0)) / N
        E = (np.exp(f - lse) * Y.sum(0) - Y) / N
    grads = [None] * model.n_layers
    if model.output_projection:
        grads[-1] = (E @ s.T, E.sum(1))
        ds = W_out.T @ E
    else:
        ds = E
    for k in reversed(range(model.blocks)):
        W1, W2 = blocks[k]
        grads[pos + 2 * k + 1] = (ds @ H[k].T, ds.sum(1))
        dz = (W2.T @ ds) * model.act_derivative(Z[k])
        grads[pos + 2 * k] = (dz @ S[k].T, dz.sum(1))
        ds = ds + W1.T @ dz
    if model.input_projection:
        grads[0] = (ds @ X.T, ds.sum(1))
    return loss, model.flatten(grads)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradient_matches_numpy_backprop_and_finite_differences(name):
    model = model_of(name)
    data = data_for(model)
    theta = 0.6 * np.random.default_rng(1).standard_normal(model.n_params)
    loss, g = kernel_loss_grad(model, theta, data)
    ref_loss, ref = numpy_loss_grad(model, theta, data)
    assert abs(loss - ref_loss) <= 1e-13 * max(1.0, abs(ref_loss))
    assert np.abs(g - ref).max() <= 1e-11 * np.abs(ref).max(), np.abs(g - ref).max() / np.abs(ref).max()
    assert np.isclose(model.loss_value(theta, data), ref_loss, rtol=1e-13)
    eps = 1e-6
    fd = np.array([(model.loss_value(theta + eps * u, data) - model.loss_value(theta - eps * u, data)) / (2 * eps)
                   for u in np.eye(model.n_params)])
    assert np.abs(fd - g).max() <= 1e-6 * max(1.0, np.abs(g).max())


def test_discovery_gradient_over_jets_matches_the_kernel():
    from noether_sim._jets import weighted_gradient

    for name in ("relu_bias", "softmax", "no_projections"):
        model = model_of(name, blocks=2)
        data = data_for(model)
        theta = 0.6 * np.random.default_rng(2).standard_normal(model.n_params)
        _, g = kernel_loss_grad(model, theta, data)
        w = np.full((1, data.n_points), 1.0 / data.n_points)
        jet = weighted_gradient(model, theta[None], data.X, data.Y, w)
        assert np.abs(jet.value[0] - g).max() <= 1e-12 * np.abs(g).max(), name


def _layers_as_list(model, theta):
    return [(W.copy(), None if b is None else b.copy()) for W, b in model.unflatten(theta)]


def test_the_symmetries_leave_the_loss_unchanged():
    """The stream's GL(d) (both projections, any activation) and each hidden neuron's rescaling (degree α)."""
    rng = np.random.default_rng(3)
    for name in ("tanh_bias", "relu_pow"):
        model = model_of(name)
        data = data_for(model)
        theta = 0.6 * rng.standard_normal(model.n_params)
        L0 = model.loss_value(theta, data)
        layers = _layers_as_list(model, theta)
        M = np.eye(model.width) + 0.3 * rng.standard_normal((model.width, model.width))
        Mi = np.linalg.inv(M)
        layers[0] = (M @ layers[0][0], M @ layers[0][1])
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            layers[i1 - 1] = (layers[i1 - 1][0] @ Mi, layers[i1 - 1][1])
            layers[i2 - 1] = (M @ layers[i2 - 1][0], M @ layers[i2 - 1][1])
        layers[-1] = (layers[-1][0] @ Mi, layers[-1][1])
        assert np.isclose(model.loss_value(model.flatten(layers), data), L0, rtol=1e-11)
    model = model_of("relu_pow")
    theta = 0.6 * rng.standard_normal(model.n_params)
    data = data_for(model)
    layers = _layers_as_list(model, theta)
    i1, i2 = model.block_layers(2)
    c = 1.7
    layers[i1 - 1][0][3] *= c
    layers[i1 - 1][1][3] *= c
    layers[i2 - 1][0][:, 3] *= c ** -model.degree
    assert np.isclose(model.loss_value(model.flatten(layers), data), model.loss_value(theta, data), rtol=1e-12)


def numpy_charges(model, theta):
    layers = model.unflatten(theta)
    out = []
    for k in range(1, model.blocks + 1):
        i1, i2 = model.block_layers(k)
        (W1, b1), (W2, _) = layers[i1 - 1], layers[i2 - 1]
        out.append((W1 ** 2).sum(1) + (b1 ** 2 if model.bias else 0.0) - model.degree * (W2 ** 2).sum(0))
    if model.loss == "softmax_ce":
        W_out, b_out = layers[-1]
        out.append(np.concatenate([W_out.sum(0), [b_out.sum()] if model.bias else []]))
    if model.stream_charged:
        (W_in, b_in), (W_out, _) = layers[0], layers[-1]
        C = W_out.T @ W_out - W_in @ W_in.T - (np.outer(b_in, b_in) if model.bias else 0.0)
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            (W1, _), (W2, b2) = layers[i1 - 1], layers[i2 - 1]
            C = C + W1.T @ W1 - W2 @ W2.T - (np.outer(b2, b2) if model.bias else 0.0)
        out.append(C.ravel())
    if model.activation == "linear":
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            (W1, b1), (W2, _) = layers[i1 - 1], layers[i2 - 1]
            out.append((W2.T @ W2 - W1 @ W1.T - (np.outer(b1, b1) if model.bias else 0.0)).ravel())
    return np.concatenate(out)


def numpy_isometric(model, theta, mom):
    Lt, Lp = model.unflatten(theta), model.unflatten(mom)
    out = []
    anti = lambda C: (0.5 * (C - C.T)).ravel()
    if model.activation == "linear":
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            (W1, b1), (W2, _) = Lt[i1 - 1], Lt[i2 - 1]
            (P1, p1), (P2, _) = Lp[i1 - 1], Lp[i2 - 1]
            out.append(anti(W1 @ P1.T + (np.outer(b1, p1) if model.bias else 0.0) - P2.T @ W2))
    if model.stream_charged:
        C = Lt[0][0] @ Lp[0][0].T - Lp[-1][0].T @ Lt[-1][0]
        if model.bias:
            C = C + np.outer(Lt[0][1], Lp[0][1])
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            C = C + Lt[i2 - 1][0] @ Lp[i2 - 1][0].T - Lp[i1 - 1][0].T @ Lt[i1 - 1][0]
            if model.bias:
                C = C + np.outer(Lt[i2 - 1][1], Lp[i2 - 1][1])
        out.append(anti(C))
    if model.loss == "softmax_ce":
        P_out, p_out = Lp[-1]
        out.append(np.concatenate([P_out.sum(0), [p_out.sum()] if model.bias else []]))
    return np.concatenate(out) if out else np.zeros(0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_charges_and_isometric_charges_match_numpy(name):
    model = model_of(name)
    rng = np.random.default_rng(4)
    theta, mom = rng.standard_normal((2, model.n_params))
    ints = model.descriptor()
    q = ensemble_charges(int(ints[0]), theta[None], ints, model.constants(None), model.n_charges)[0]
    assert q.shape == (model.n_charges,)
    assert np.allclose(q, numpy_charges(model, theta), rtol=1e-13, atol=1e-12)
    groups = model.isometric_groups()
    out = np.zeros(sum(g.size for g in groups))
    residual_isometric_charges(theta, mom, out, ints, model.constants(None))
    assert np.allclose(out, numpy_isometric(model, theta, mom), rtol=1e-13, atol=1e-12)
    names = [g.name for g in model.charge_groups] + [g.name for g in groups]
    assert ("C" in names) == ("JC" in names) == model.stream_charged


def test_charge_groups_are_laid_out_in_order():
    model = model_of("linear")
    groups = model.charge_groups + model.isometric_groups()
    assert [g.name for g in groups] == ["r1", "r2", "r3", "C", "D1", "D2", "D3", "J1", "J2", "J3", "JC"]
    assert [g.offset for g in groups] == list(np.cumsum([0] + [g.size for g in groups])[:-1])


@pytest.fixture(scope="module")
def small():
    model = ns.ResidualMLP(3, width=4, hidden=5, blocks=2, d_out=2, bias=True)
    rng = np.random.default_rng(0)
    return model, ns.data.from_arrays(rng.standard_normal((3, 20)), rng.standard_normal((2, 20)))


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_gradient_descent_exact_law_of_rescale_and_stream_charges(small, weight_decay):
    model, data = small
    ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=400, save_every=2.5, seeds=3,
                     init=init.Gaussian(scale=0.7, bias_scale=0.5), weight_decay=weight_decay)
    assert np.all(ds.status.values == 0)
    for name in ("r1", "r2", "C"):
        resid = ds.residual.sel(charge=name).values
        floor = ds.roundoff_floor.sel(charge=name).values[:, None]
        assert np.all(resid <= 10 * floor), (name, resid.max(), floor.max())
        # the η² terms stand far above round-off: the law, not luck, explains the drift
        assert np.max(ds.predicted.sel(charge=name).values) > 1e3 * np.max(floor)


def test_minibatch_sgd_keeps_the_exact_law_with_the_batch_gradient(small):
    model, data = small
    ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=200, save_every=2.5, seeds=3, batch_size=5,
                     init=init.Gaussian(scale=0.7, bias_scale=0.5))
    assert np.all(ds.status.values == 0)
    for name in ("r1", "C"):
        assert np.all(ds.residual.sel(charge=name).values <= 10 * ds.roundoff_floor.sel(charge=name).values[:, None])


def test_gauss_legendre_conserves_the_charges_where_rk4_drifts(small):
    """C is a charge for any activation; tanh's r<k> are the control (no symmetry: they move)."""
    model, data = small
    import dataclasses

    smooth = dataclasses.replace(model, activation="relu_pow")
    kw = dict(h=0.1, t_end=2.0, save_every=1.0, seeds=2, init=init.Gaussian(scale=0.7, bias_scale=0.5))
    gl = ns.simulate(smooth, data, method="gl2", **kw)
    rk = ns.simulate(smooth, data, method="rk4", **kw)
    assert np.all(gl.status.values == 0) and np.all(rk.status.values == 0)
    for name in ("r1", "r2", "C"):
        assert np.all(gl.drift_max.sel(charge=name).values <= 1e-11), (name, gl.drift_max.sel(charge=name).values)
    assert max(float(rk.drift_max.sel(charge=c).max()) for c in ("r1", "r2", "C")) > 1e-8
    control = ns.simulate(dataclasses.replace(model, activation="tanh"), data, method="gl2", **kw)
    assert float(control.drift_max.sel(charge="C").max()) <= 1e-11
    assert float(control.drift_max.sel(charge="r1").max()) > 1e-4


def test_heavy_ball_keeps_the_stream_rotations_exactly(small):
    model, data = small
    ds = ns.simulate(model, data, dynamics="heavy_ball", learning_rate=0.002, beta=0.9, n_steps=300, seeds=3,
                     init=init.Gaussian(scale=0.7, bias_scale=0.5), velocity="gradient")
    assert np.all(ds.status.values == 0)
    drift = ds.drift.sel(charge="JC").values
    assert np.all(drift <= 10 * ds.roundoff_floor.sel(charge="JC").values[:, None]), drift.max()
    assert set(ns.judge(ds).verdict.sel(charge="JC").values) == {ns.laws.CONSERVED}


def test_discovery_counts_the_catalogue():
    res = ns.discover(ns.ResidualMLP(3, 3, 2, 2, 2), seed=1)
    assert res.count == 2 * 2 + 6 and res.catalogue.complete      # r1, r2 and the 3 × 3 symmetric C
    res = ns.discover(ns.ResidualMLP(3, 3, 2, 2, 2), flow="momentum", seed=1)
    assert res.count == 3 and res.catalogue.complete              # JC: the 3 stream rotations


def test_studies_build_the_model_from_its_config():
    import tomllib

    from noether_sim.builders import build_model
    from noether_sim.config import parse_config

    with open("examples/architectures/residual_stack.toml", "rb") as fh:
        raw = tomllib.load(fh)
    model = build_model(parse_config(raw))
    assert model == ns.ResidualMLP(5, 4, 6, 3, 2, bias=True, activation="relu_pow", power=2.0)
    assert build_model(parse_config({**raw, "model": model.to_config()})) == model
    for key, value, match in [("blocks", 0, "model.blocks"), ("normalisation", "rms", "model.normalisation"),
                              ("widths", [5, 4, 3, 2], "model.widths")]:
        bad = {**raw, "model": {**raw["model"], key: value}}
        with pytest.raises(ConfigError, match=match):
            parse_config(bad)
    with pytest.raises(ConfigError, match="model.hidden"):
        parse_config({**raw, "model": {k: v for k, v in raw["model"].items() if k != "hidden"}})
    with pytest.raises(ConfigError, match="model.blocks"):
        parse_config({**raw, "model": {"kind": "mlp", "widths": [5, 4, 2], "blocks": 2}})


@pytest.mark.parametrize("kwargs, match", [
    (dict(blocks=0), r"^blocks=0"),
    (dict(hidden=0), r"^hidden=0"),
    (dict(blocks=2.5), r"^blocks=2.5"),
    (dict(input_projection=False), r"^width=4 .*d_in = 3"),
    (dict(output_projection=False), r"^width=4 .*d_out = 2"),
    (dict(loss="softmax_ce", d_out=4, width=4, output_projection=False), r"^loss='softmax_ce'"),
    (dict(activation="sigmoid"), r"^activation='sigmoid'"),
    (dict(bias=1), r"^bias=1"),
])
def test_invalid_configurations_are_named(kwargs, match):
    kw = dict(d_in=3, width=4, hidden=5, blocks=2, d_out=2)
    kw.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        ns.ResidualMLP(**kw)


def test_data_that_does_not_fit_is_refused(small):
    model, _ = small
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="input width"):
        ns.simulate(model, ns.data.from_arrays(rng.standard_normal((4, 10)), rng.standard_normal((2, 10))),
                    h=0.1, t_end=0.1)
    with pytest.raises(ConfigError, match="layer_lr"):
        ns.simulate(model, ns.data.from_arrays(rng.standard_normal((3, 10)), rng.standard_normal((2, 10))),
                    dynamics="gd", h=0.1, t_end=0.1, layer_lr=[1.0] * model.n_layers)


def test_what_residual_stacks_cannot_do_yet_is_refused(small):
    model, data = small
    with pytest.raises(ConfigError, match="track_ntk"):
        ns.simulate(model, data, h=0.1, t_end=0.1, track_ntk=True, watch_seeds=[0])
    with pytest.raises(ConfigError, match="teleportation"):
        ns.teleport(model, data, np.zeros((1, model.n_params)))
    with pytest.raises(ConfigError, match="layer_lr"):
        ns.discover(model, layer_lr=[1.0] * model.n_layers)


def test_a_sweep_over_the_number_of_blocks(tmp_path):
    """examples/architectures/residual_sweep.toml: K = 1, 2, 4; each point records its own r<k> and C, and
    gradient descent's exact law decides every one 'conserved by the flow'."""
    res = ns.run_study("examples/architectures/residual_sweep.toml", tmp_path / "sweep")
    verdict = res.verdict.load()
    assert list(res["model.blocks"].values) == [1, 2, 4]
    for K in (1, 2, 4):
        for c in ["C"] + [f"r{k}" for k in range(1, 5)]:
            got = set(verdict.sel({"model.blocks": K, "charge": c}).values.ravel())
            assert got == ({ns.laws.CONSERVED} if c == "C" or int(c[1:]) <= K else {""}), (K, c, got)
