"""Multilayer networks: gradients, the charge catalogue and its exact laws, energy balance and the NTK.

Oracles: central finite differences of an independent NumPy forward pass; theory.md §2–3 (exact GD law,
order of explicit methods, Richardson extrapolation); an independent NumPy Jacobian for the NTK.
"""

import numpy as np
import pytest

from noether_sim import diagnostics as dg
from noether_sim import init, simulate
from noether_sim._validate import ConfigError
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.ensemble import initial_weights
from noether_sim.ladder import BROKEN, CONSERVED, INCONCLUSIVE, analyse_ladder, run_ladder, summarise_verdicts
from noether_sim.methods import EXPLICIT_METHODS
from noether_sim.mlp import ACTIVATIONS, MLP, teacher_classification, teacher_regression

EPS = np.finfo(float).eps
HOMOGENEOUS = ["relu", "leaky_relu", "abs", "relu_pow", "linear"]
CONTROLS = ["tanh", "softplus", "gelu"]


def make(activation, loss="squared", bias=True, normalised=False, widths=(4, 6, 1)):
    return MLP(widths, activation=activation, loss=loss, bias=bias, normalised_first_layer=normalised,
               slope=0.2, power=2.5)


def regression(n_points=8):
    return teacher_regression(MLP((4, 6, 1), activation="tanh", bias=True), n_points, noise=0.1, seed=1)


def classification(n_points=8, classes=3):
    return teacher_classification(MLP((4, 6, classes), activation="tanh", bias=True), n_points, seed=2)


def kernel_grad(model, data, theta):
    X, Y = model.kernel_data(data)
    return ensemble_loss_grad(int(model.descriptor()[0]), np.atleast_2d(theta), model.descriptor(), model.constants(data), X, Y)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("normalised", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("loss", ["squared", "softmax_ce"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradient_matches_central_differences(activation, loss, bias, normalised):
    model = make(activation, loss, bias, normalised, widths=(4, 5, 3, 3 if loss == "softmax_ce" else 2))
    data = classification(7) if loss == "softmax_ce" else teacher_regression(
        MLP((4, 6, 2), activation="tanh", bias=True), 7, noise=0.1, seed=1)
    theta = np.random.default_rng(3).standard_normal(model.n_params)
    # away from kinks: a step of 1e-6 moves a pre-activation by at most ~1e-6·(1 + |x|₁ + …) ≈ 1e-5,
    # far below the closest one to zero
    zs = np.concatenate([z.ravel() for z in model.preactivations(theta, data.X)[:-1]])
    assert np.min(np.abs(zs)) > 1e-4
    loss_k, g = kernel_grad(model, data, theta)
    assert loss_k[0] == pytest.approx(model.loss_value(theta, data), rel=1e-13)
    step = 1e-6
    fd = np.array([(model.loss_value(theta + e, data) - model.loss_value(theta - e, data)) / (2 * step)
                   for e in step * np.eye(model.n_params)])
    # truncation O(step²·L''') ~ 1e-12, rounding ~ ε·L/step ~ 1e-10: 1e-6 leaves a wide margin
    assert np.max(np.abs(fd - g[0])) <= 1e-6 * np.max(np.abs(g[0]))


@pytest.mark.parametrize("activation,expected", [("relu", 0.0), ("leaky_relu", 0.2), ("abs", 0.0),
                                                 ("relu_pow", 0.0), ("linear", 1.0)])
def test_derivative_at_the_kink_is_the_left_derivative(activation, expected):
    """b_1 = 0 and a data point x = 0 put every first-layer pre-activation of that point exactly at z = 0;
    its δ then enters g_{b_1} through σ'(0). Kernel and the NumPy reference must use the same σ'(0)."""
    from noether_sim.data import TrainingData

    model = make(activation, widths=(2, 3, 1))
    data = TrainingData(np.array([[0.0, 1.0], [0.0, -0.5]]), np.array([[1.0, 0.3]]))
    theta = np.random.default_rng(0).standard_normal(model.n_params)
    model.unflatten(theta)[0][1][:] = 0.0  # b_1 = 0 (a view into theta)
    assert np.all(model.preactivations(theta, data.X)[0][:, 0] == 0.0)
    assert model.act_derivative(np.array([0.0]))[0] == expected
    _, g = kernel_grad(model, data, theta)
    r = model.forward(theta, data.X) - data.Y
    np.testing.assert_allclose(g[0], dg.jacobian(model, theta, data.X).T @ r.ravel() / 2, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- ladder verdicts

LADDER = dict(step_sizes=[0.0125, 0.00625, 0.003125, 0.0015625], method="rk4", t_end=0.5, save_every=0.5,
              seeds=8, init=init.Gaussian(scale=1.0, bias_scale=0.5))


def verdicts(model, data, **overrides):
    rows = summarise_verdicts(analyse_ladder(run_ladder(model, data, **{**LADDER, **overrides})))
    return {r["charge"]: r for r in rows}


@pytest.mark.slow  # a ladder per activation (the longest test of the suite: 65 s for relu under load)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "abs", "relu_pow"])
def test_rescale_charges_of_homogeneous_networks_are_conserved(activation):
    """Kinks: a crossing contributes O(h²·|jump|·|θ̇|) to the drift (the stages straddle the jump), not
    O(h⁵), so the order-4 Richardson extrapolation cannot resolve a seed that crosses kinks often: such a
    seed may come out "inconclusive", never "broken". Every seed whose path crosses no kink
    (diagnostics.sign_changes along a fine trajectory) is judged "conserved"; see docs/performance/mlp.md."""
    model, data = make(activation), regression()
    an = analyse_ladder(run_ladder(model, data, **LADDER))
    theta0 = initial_weights(model, LADDER["init"], np.arange(LADDER["seeds"]), 0)
    path = dg.trajectory(model, data, save_times=np.linspace(0, 0.5, 161)[1:], theta0=theta0, method="rk4",
                         h=0.0015625 / 2)
    crossings = dg.sign_changes(model, path, data.X)
    verdict = an.verdict.sel(charge="r1").values
    assert np.all(verdict[crossings == 0] == CONSERVED), (verdict, crossings)
    assert np.all(np.isin(verdict[crossings > 0], [CONSERVED, INCONCLUSIVE])), (verdict, crossings)
    assert np.sum(crossings == 0) >= LADDER["seeds"] // 2  # the assertion above is about most seeds


@pytest.mark.parametrize("activation", CONTROLS)
def test_same_expression_on_smooth_controls_is_broken_by_the_flow(activation):
    row = verdicts(make(activation), regression())["r1"]
    assert row["verdict"] == BROKEN, row
    assert row["extrapolated_drift"] > 1e6 * max(row["uncertainty"], row["roundoff_floor"])
    assert 3.5 < row["fitted_order"] < 4.7  # the discretisation part still converges at RK4's order


def test_scale_charges_of_a_normalised_layer_are_conserved():
    model = make("tanh", normalised=True, widths=(4, 5, 5, 1))  # S: conserved even with tanh
    rows = verdicts(model, regression())
    assert rows["S"]["verdict"] == CONSERVED, rows["S"]
    rows = verdicts(make("relu", normalised=True), regression())
    assert rows["S"]["verdict"] == CONSERVED, rows["S"]


@pytest.mark.parametrize("method", [m for m, t in EXPLICIT_METHODS.items() if not t.adaptive])
def test_translation_charges_are_constant_to_roundoff_under_every_method(method):
    model = make("relu", loss="softmax_ce", widths=(4, 6, 3))
    for h in (0.5, 0.05):
        ds = simulate(model, classification(), method=method, h=h, n_steps=200, save_every=10 * h, seeds=4,
                      init=init.Gaussian(bias_scale=0.5))
        drift = ds.drift.sel(charge="T").values
        # every stage's translation component Σ_c K_c is 0 up to one rounding per entry: a random walk
        assert np.all(drift <= 10 * ds.roundoff_floor.sel(charge="T").values[:, None]), (h, drift.max())


# ---------------------------------------------------------------- gradient descent's exact law

@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("model", [make("relu"), make("leaky_relu"), make("abs"), make("relu_pow"),
                                   make("gelu", loss="softmax_ce", widths=(4, 6, 3)),
                                   make("relu", normalised=True, widths=(4, 5, 5, 1))],
                         ids=["relu", "leaky", "abs", "relu_pow", "softmax_translation", "normalised_scale"])
def test_gradient_descent_exact_law_over_10000_steps(model, weight_decay):
    data = classification() if model.loss == "softmax_ce" else regression()
    ds = simulate(model, data, dynamics="gd", h=0.05, n_steps=10_000, save_every=25.0, seeds=4,
                  init=init.Gaussian(bias_scale=0.5), weight_decay=weight_decay)
    assert np.all(ds.status.values == 0)
    groups = [g.name for g in model.charge_groups if model.homogeneous or g.name in ("T", "S")]
    for name in groups:
        resid = ds.residual.sel(charge=name).values
        floor = ds.roundoff_floor.sel(charge=name).values[:, None]
        # residual = charge − (decayed start + accumulated η² terms): a random walk of a few roundings
        # per step, bounded by 10·ε·√steps·scale; the discretisation part itself is far above it
        assert np.all(resid <= 10 * floor), (name, resid.max(), floor.max())
        if name.startswith("r"):
            assert np.max(ds.predicted.sel(charge=name).values) > 1e3 * np.max(floor)


def test_gradient_descent_law_fails_without_the_symmetry():
    ds = simulate(make("tanh"), regression(), dynamics="gd", h=0.05, n_steps=2000, save_every=10.0, seeds=4,
                  init=init.Gaussian(bias_scale=0.5))
    assert np.all(ds.residual.sel(charge="r1").isel(time=-1).values > 1e6 * ds.roundoff_floor.sel(charge="r1").values)


# ---------------------------------------------------------------- energy balance, NTK, boundedness

@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu_pow"])
def test_energy_balance_holds_to_the_integrators_order(activation, method, order):
    model = make(activation)
    theta0 = np.stack([init.Gaussian(bias_scale=0.5).draw(model, np.random.default_rng(s)) for s in range(2)])
    hs = np.array([0.1, 0.05, 0.025, 0.0125])
    errors = np.array([np.abs(dg.energy_balance(model, regression(), theta0, h=h, n_steps=int(round(1 / h)),
                                                method=method)["balance"][:, -1]) for h in hs])
    for s in range(2):
        slope = np.polyfit(np.log(hs), np.log(errors[:, s]), 1)[0]
        assert slope > order - 0.2, (s, slope, errors[:, s])


def test_energy_balance_trajectory_is_the_engines():
    model = make("relu")
    theta0 = init.Gaussian(bias_scale=0.5).draw(model, np.random.default_rng(0))[None]
    eb = dg.energy_balance(model, regression(), theta0, h=0.01, n_steps=100)
    ds = simulate(model, regression(), h=0.01, n_steps=100, save_every=1.0, init=init.Given(theta0))
    np.testing.assert_allclose(eb["theta"], ds.theta_final.values, rtol=0, atol=1e-13)
    np.testing.assert_allclose(eb["objective"][0, -1], ds.loss.values[0, -1], rtol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_ntk_function_space_identity_along_a_tight_dopri5_run(activation):
    model, data = make(activation), regression()
    theta0 = np.stack([init.Gaussian(bias_scale=0.5).draw(model, np.random.default_rng(s)) for s in range(2)])
    times = np.linspace(0.25, 2.0, 8)
    states = dg.trajectory(model, data, save_times=times, theta0=theta0, method="dopri5", rtol=1e-11, atol=1e-13)
    for s in range(2):
        for k in range(len(times) + 1):
            assert dg.ntk_identity(model, data, states[s, k])["relative_error"] <= 1e-8


def test_ntk_identity_against_the_trajectorys_own_derivative():
    """ṙ from a 5-point stencil on the dopri5 path (δ = 1e-2: truncation δ⁴·r⁽⁵⁾/30 ~ 1e-9, solver
    error rtol/δ ~ 1e-9) agrees with −Θr/N; a wrong gradient would miss by O(1)."""
    model, data = make("tanh"), regression()
    theta0 = init.Gaussian(bias_scale=0.5).draw(model, np.random.default_rng(0))[None]
    t, d = 1.0, 1e-2
    states = dg.trajectory(model, data, save_times=t + d * np.arange(-2, 3), theta0=theta0, method="dopri5",
                           rtol=1e-12, atol=1e-14)[0, 1:]
    r = np.array([(model.forward(th, data.X) - data.Y).ravel() for th in states])
    r_dot = (r[0] - 8 * r[1] + 8 * r[3] - r[4]) / (12 * d)
    pred = dg.ntk_identity(model, data, states[2])["predicted"]
    assert np.linalg.norm(r_dot - pred) <= 1e-6 * np.linalg.norm(pred)


def test_wide_network_is_lazy_and_narrow_one_is_rich():
    """Standard parametrisation, W_i ~ N(0, 1/fan_in), no bias, squared loss on N = 16 teacher points.
    Learning rate 0.5/λ_max(Θ(0)/N) (small: a quarter of the stability edge), 400 GD steps."""
    data = teacher_regression(MLP((5, 8, 1), activation="relu"), 16, noise=0.1, seed=3)
    change = {}
    for width in (1024, 8):
        model = MLP((5, width, 1), activation="relu")
        theta0 = init.Gaussian().draw(model, np.random.default_rng(0))
        lr = 0.5 / np.linalg.eigvalsh(dg.ntk(model, theta0, data.X) / data.n_points)[-1]
        ds = simulate(model, data, dynamics="gd", h=float(lr), n_steps=400, save_every=400 * float(lr),
                      init=init.Given(theta0))
        assert ds.loss.values[0, -1] < 0.5 * ds.loss.values[0, 0]  # both actually train
        change[width] = dg.ntk_relative_change(model, theta0, ds.theta_final.values[0], data.X)
    assert change[1024] < 0.1 < change[8], change
    assert change[8] > 5 * change[1024]


def test_boundedness_recovers_neuron_norms_from_the_charge():
    """α = 1, no bias, one output: (r(0), P(t)) fix |w_in|², |w_out|² at every t. The recovery map has
    |∂|w_in|²/∂r| ≤ 1, so its error is bounded by the integrator's drift of r, which itself is tiny."""
    model = MLP((4, 6, 1), activation="relu")
    data = regression()
    theta0 = init.Gaussian().draw(model, np.random.default_rng(1))[None]
    states = dg.trajectory(model, data, save_times=[0.5, 1.0, 2.0], theta0=theta0, method="rk4", h=0.001)[0]

    def norms(th):
        (W1, _), (W2, _) = model.unflatten(th)
        return np.sum(W1 ** 2, axis=1), W2[0] ** 2

    w_in2, w_out2 = norms(states[0])
    r0 = w_in2 - w_out2
    for th in states[1:]:
        w_in2, w_out2 = norms(th)
        drift = np.abs((w_in2 - w_out2) - r0)
        assert np.all(drift <= 1e-8 * (w_in2 + w_out2))
        rec_in, rec_out = dg.neuron_norms_from_charge(r0, np.sqrt(w_in2 * w_out2))
        assert np.all(np.abs(rec_in - w_in2) <= drift + 1e-14 * w_in2)
        assert np.all(np.abs(rec_out - w_out2) <= drift + 1e-14 * w_in2)
        assert np.max(np.abs(w_in2 - norms(states[0])[0])) > 1e-3  # the norms do move


# ---------------------------------------------------------------- input checks, shared engine

@pytest.mark.parametrize("kwargs,name", [
    (dict(widths=(3, 4, 1), activation="sigmoid"), "activation"),
    (dict(widths=(3, 4, 1), loss="hinge"), "loss"),
    (dict(widths=(3, 4, 1), activation="relu_pow", power=0.5), "power"),
    (dict(widths=(3, 4, 1), loss="softmax_ce"), "widths"),
    (dict(widths=(3, 1)), "widths"),
    (dict(widths=(3, 4, 1), activation="leaky_relu", slope=-1.0), "slope"),
])
def test_invalid_model_arguments_are_named(kwargs, name):
    with pytest.raises(ConfigError, match=f"^{name}="):
        MLP(**kwargs)


def test_deep_linear_still_runs_through_the_shared_driver():
    from noether_sim import DeepLinear
    from noether_sim.data import synthetic_regression

    ds = simulate(DeepLinear((3, 4, 2)), synthetic_regression(3, 2, 20), dynamics="gd", h=0.05, n_steps=200,
                  save_every=1.0, seeds=2)
    assert np.all(ds.residual.values <= 10 * ds.roundoff_floor.values[:, None, :])
