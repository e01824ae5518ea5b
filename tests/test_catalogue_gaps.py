"""The catalogue gaps discovery found, closed (issue 22, item 4).

- An MLP with the identity activation keeps every entry of D_i (group D<i>), not only the diagonal r_i,
  and under momentum the rotations' isometric charges J<i>.
- A softmax head under momentum keeps two laws per translation v: e^{t/τ}⟨v, θ̇⟩ (isometric charge JT)
  and ⟨v, θ + τθ̇⟩ = T + τ·JT.
- ``catalogue.complete`` for every model discovery can run on, under both flows (deep linear, every MLP
  variant, low-rank adapters, stacked residual blocks).

Oracles: NumPy formulas of the charges; gradient descent's exact law (theory.md §3); Gauss–Legendre's
exact conservation of quadratic charges; heavy ball's exact e^{−h/τ} decay of isometric charges (§4).
"""

import itertools

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim.kernels.entries import ensemble_charges
from noether_sim.kernels.mlp import mlp_isometric_charges
from noether_sim.mlp import ACTIVATIONS, MLP, teacher_classification, teacher_regression

EPS = np.finfo(float).eps


def regression():
    return teacher_regression(MLP((4, 5, 2), activation="tanh", bias=True), 10, noise=0.1, seed=3)


def classification():
    return teacher_classification(MLP((4, 5, 3), activation="tanh", bias=True), 10, seed=4)


def charges_of(model, theta):
    ints = model.descriptor()
    return ensemble_charges(int(ints[0]), np.atleast_2d(theta), ints, model.constants(None), model.n_charges)[0]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("normalised", [False, True])
def test_balance_matrices_of_identity_mlps_match_numpy(bias, normalised):
    model = MLP((3, 4, 5, 2), activation="linear", bias=bias, normalised_first_layer=normalised)
    theta = np.random.default_rng(1).standard_normal(model.n_params)
    q = charges_of(model, theta)
    layers = model.unflatten(theta)
    names = [g.name for g in model.charge_groups]
    for i in (1, 2):
        name = f"D{i}"
        if normalised and i == 1:  # W_1's rows are normalised: no GL(n_1)
            assert name not in names
            continue
        (Wi, bi), (Wn, _) = layers[i - 1], layers[i]
        D = Wn.T @ Wn - Wi @ Wi.T - (np.outer(bi, bi) if bias else 0.0)
        g = next(g for g in model.charge_groups if g.name == name)
        assert np.allclose(q[g.offset: g.offset + g.size].reshape(g.shape), D, rtol=1e-14, atol=1e-13)
        r = next(g for g in model.charge_groups if g.name == f"r{i}")
        assert np.allclose(q[r.offset: r.offset + r.size], -np.diag(D), rtol=1e-14, atol=1e-13)
    assert all(not n.startswith("D") for n in (g.name for g in MLP((3, 4, 2), activation="relu").charge_groups))


@pytest.mark.parametrize("loss", ["squared", "softmax_ce"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_isometric_charges_of_mlps_match_numpy(activation, loss):
    model = MLP((3, 4, 5, 3), activation=activation, loss=loss, bias=True)
    rng = np.random.default_rng(2)
    theta, mom = rng.standard_normal((2, model.n_params))
    groups = model.isometric_groups()
    out = np.zeros(sum(g.size for g in groups))
    mlp_isometric_charges(theta, mom, out, model.descriptor(), model.constants(None))
    expected = []
    Lt, Lp = model.unflatten(theta), model.unflatten(mom)
    if activation == "linear":
        for i in (1, 2):
            (Wi, bi), (Wn, _) = Lt[i - 1], Lt[i]
            (Pi, pbi), (Pn, _) = Lp[i - 1], Lp[i]
            C = Wi @ Pi.T + np.outer(bi, pbi) - Pn.T @ Wn
            expected.append((0.5 * (C - C.T)).ravel())
    if loss == "softmax_ce":
        PL, pbL = Lp[-1]
        expected.append(np.concatenate([PL.sum(axis=0), [pbL.sum()]]))
    assert [g.name for g in groups] == (["J1", "J2"] if activation == "linear" else []) + \
        (["JT"] if loss == "softmax_ce" else [])
    if expected:
        assert np.allclose(out, np.concatenate(expected), rtol=1e-14, atol=1e-13)
    assert [g.offset for g in groups] == list(model.n_charges + np.cumsum([0] + [g.size for g in groups])[:-1])


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_gradient_descent_law_of_the_full_balance_matrix(weight_decay):
    model = MLP((4, 3, 3, 2), activation="linear", bias=True)
    ds = ns.simulate(model, regression(), dynamics="gd", h=0.05, n_steps=4000, save_every=25.0, seeds=3,
                     init=init.Gaussian(bias_scale=0.5), weight_decay=weight_decay)
    assert np.all(ds.status.values == 0)
    for name in ("D1", "D2"):
        resid = ds.residual.sel(charge=name).values
        floor = ds.roundoff_floor.sel(charge=name).values[:, None]
        assert np.all(resid <= 10 * floor), (name, resid.max(), floor.max())
        # the η² terms are far above round-off: the law, not luck, explains the drift
        assert np.max(ds.predicted.sel(charge=name).values) > 1e3 * np.max(floor)


def test_gauss_legendre_conserves_the_full_balance_matrix():
    model = MLP((4, 3, 3, 2), activation="linear", bias=True)
    ds = ns.simulate(model, regression(), method="gl2", h=0.2, t_end=4.0, save_every=2.0, seeds=2,
                     init=init.Gaussian(bias_scale=0.5))
    assert np.all(ds.status.values == 0)
    for name in ("D1", "D2"):
        # conserved to the implicit solve's tolerance at a step where RK4 drifts (checked below)
        assert np.all(ds.drift_max.sel(charge=name).values <= 1e-10), ds.drift_max.sel(charge=name).values
    rk = ns.simulate(model, regression(), method="rk4", h=0.2, t_end=4.0, save_every=2.0, seeds=2,
                     init=init.Gaussian(bias_scale=0.5))
    assert np.max(rk.drift_max.sel(charge="D1").values) > 1e-8


@pytest.mark.parametrize("model, data", [
    (MLP((4, 3, 3, 2), activation="linear", bias=True), "regression"),
    (MLP((4, 5, 3), activation="relu", loss="softmax_ce", bias=True), "classification"),
    (MLP((4, 3, 3), activation="linear", loss="softmax_ce"), "classification"),
], ids=["linear", "softmax", "linear_softmax"])
def test_heavy_ball_keeps_the_new_isometric_charges_exactly(model, data):
    data = regression() if data == "regression" else classification()
    ds = ns.simulate(model, data, dynamics="heavy_ball", learning_rate=0.01, beta=0.9, n_steps=400, seeds=3,
                     init=init.Gaussian(bias_scale=0.5), velocity="gradient")
    assert np.all(ds.status.values == 0)
    iso = [g.name for g in model.isometric_groups()]
    assert list(ds.charge.sel(charge=ds.charge_kind == "isometric").values) == iso
    verdicts = ns.judge(ds)
    for name in iso:
        drift = ds.drift.sel(charge=name).values
        assert np.all(drift <= 10 * ds.roundoff_floor.sel(charge=name).values[:, None]), (name, drift.max())
        assert set(verdicts.verdict.sel(charge=name).values) == {ns.laws.CONSERVED}, name


def test_translation_keeps_theta_plus_tau_velocity_under_momentum_flow():
    """T + τ·JT = ⟨v, θ + τθ̇⟩ is constant under momentum flow; it is linear in (θ, θ̇), so every Runge–Kutta
    method keeps it to round-off at any step (theory.md §3), while T alone moves by O(1) (the flow's
    τ⟨v, θ̇(0)⟩(1 − e^{−t/τ}))."""
    model, tau = MLP((4, 5, 3), activation="relu", loss="softmax_ce", bias=True), 0.5
    errs = []
    for h in (0.1, 0.05):
        ds = ns.simulate(model, classification(), dynamics="momentum", method="rk4", tau=tau, h=h, t_end=1.0,
                         save_every=1.0, seeds=2, init=init.Gaussian(bias_scale=0.5), velocity=1.0, watch_seeds=[0, 1])
        comp = ds.component_charge.values
        w = ds.charge_watch.values  # (seed, time, component); time 0 is the start
        T, JT = w[..., comp == "T"], w[..., comp == "JT"]
        law = T + tau * JT
        errs.append(np.abs(law[:, -1] - law[:, 0]).max())
        assert np.abs(T[:, -1] - T[:, 0]).max() > 1e-2
    assert max(errs) < 1e-13, errs


# ---------------------------------------------------------------- the catalogue is complete everywhere

def _every_model():
    """Every model family discovery runs on: deep linear (with and without biases), and MLPs over every
    activation × loss × bias × weight-normalised first layer, at small sizes."""
    yield ns.DeepLinear((3, 2, 2))
    yield ns.DeepLinear((3, 2, 2, 2), bias=True)
    for act, loss, bias, norm in itertools.product(ACTIVATIONS, ("squared", "softmax_ce"), (False, True),
                                                   (False, True)):
        widths = (3, 2, 2, 2) if act == "linear" and norm else (3, 3, 2)
        yield MLP(widths, activation=act, loss=loss, bias=bias, normalised_first_layer=norm)
    # layer and RMS normalisation of the first hidden layer
    for norm, act, loss, bias in itertools.product(("layer", "rms"), ("relu", "tanh"), ("squared", "softmax_ce"),
                                                   (False, True)):
        yield MLP((3, 4, 2), activation=act, loss=loss, bias=bias, normalisation=norm)
    # residual blocks x + (network)
    for act, bias in itertools.product(("relu", "tanh", "linear"), (False, True)):
        yield MLP((3, 4, 3), activation=act, bias=bias, residual=True)
    yield MLP((3, 4, 3), activation="relu", residual=True, normalisation="rms")
    # stacked residual blocks (noether_sim.resnet): rescale charges per block, the stream's GL(d) balance C
    # with both projections, block balance D<k> for the identity, softmax translations on W_out
    yield ns.ResidualMLP(3, 3, 2, 2, 2)
    yield ns.ResidualMLP(3, 3, 2, 2, 2, bias=True, activation="tanh")
    yield ns.ResidualMLP(3, 3, 2, 2, 2, bias=True, activation="linear")
    yield ns.ResidualMLP(2, 2, 2, 2, 2, activation="linear", input_projection=False, output_projection=False)
    yield ns.ResidualMLP(3, 3, 2, 2, 3, activation="relu", input_projection=False)
    yield ns.ResidualMLP(3, 2, 2, 1, 3, activation="relu", loss="softmax_ce", bias=True)
    # low-rank adapters (noether_sim.lora) on deep linear and MLP bases, squared and softmax losses
    yield ns.LoRA(ns.DeepLinear((3, 3, 2)), rank=1)
    yield ns.LoRA(ns.DeepLinear((3, 3, 2), bias=True), rank=2)
    yield ns.LoRA(MLP((3, 4, 3), activation="relu", loss="softmax_ce", bias=True), rank=2, layers=(2,))
    yield ns.LoRA(MLP((3, 4, 3), activation="relu"), rank=1, layers=(1,))
    yield ns.LoRA(MLP((3, 4, 3), activation="linear", loss="softmax_ce"), rank=2)
    yield ns.LoRA(MLP((3, 4, 2), activation="tanh", bias=True), rank=2)


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["gradient", "momentum"])
def test_catalogue_is_complete_for_every_model_discovery_runs_on(flow):
    incomplete = []
    for model in _every_model():
        res = ns.discover(model, flow=flow, seed=1)
        if not (res.decided and res.catalogue.complete):
            incomplete.append((res.summary_row()["model"], res.count, res.catalogue.independent,
                               res.catalogue.missing[:1], res.catalogue.notes[:1]))
    assert incomplete == []
