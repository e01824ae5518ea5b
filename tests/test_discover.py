"""Counting and finding conservation laws: exact derivatives, published counts, the catalogue, rank decisions.

Known counts used as oracles (derivations in the comments):
* two-layer linear x ↦ UVᵀx, U: n×r, V: m×r, n + m ≥ r: r(r+1)/2 laws under gradient flow (the entries of
  UᵀU − VᵀV; Marcotte, Gribonval, Peyré 2023), r(r−1)/2 under momentum flow (the rotations' isometric
  charges e^{t/τ}J; Marcotte et al. 2024);
* two-layer ReLU without biases, r hidden neurons: r laws (|u_j|² − |v_j|²) under gradient flow, none under
  momentum flow (Marcotte et al. 2023, 2024).
"""

from pathlib import Path

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import _jets as J
from noether_sim._validate import ConfigError
from noether_sim.discover import decide_rank, plot_discovery
from noether_sim.mlp import MLP


def _data_for(model, rng, n=7):
    X = rng.standard_normal((model.widths[0], n))
    if getattr(model, "loss", "squared") == "softmax_ce":
        Y = rng.dirichlet(np.ones(model.widths[-1]), n).T
    else:
        Y = rng.standard_normal((model.widths[-1], n))
    return X, Y


JET_MODELS = [
    ns.DeepLinear((3, 4, 2), bias=True),
    MLP((3, 4, 3, 2), bias=True, activation="tanh"),
    MLP((3, 4, 3), activation="gelu", loss="softmax_ce", bias=True),
    MLP((3, 4, 2), activation="softplus", normalised_first_layer=True, bias=True),
    MLP((3, 4, 2), activation="relu_pow", power=2.5),
    MLP((3, 4, 2), activation="leaky_relu", slope=0.1, bias=True),
    MLP((3, 4, 2), activation="abs"),
    MLP((3, 4, 2), activation="relu", bias=True),
]


@pytest.mark.parametrize("model", JET_MODELS, ids=lambda m: f"{m.kind}-{getattr(m, 'activation', '')}")
def test_jet_gradient_is_the_package_gradient(model):
    from noether_sim.kernels.entries import ensemble_loss_grad

    rng = np.random.default_rng(0)
    X, Y = _data_for(model, rng)
    data = ns.data.from_arrays(X, Y)
    theta = rng.standard_normal((3, model.n_params))
    ints, floats = model.descriptor(), model.constants(data)
    a, b = model.kernel_data(data)
    _, g = ensemble_loss_grad(int(ints[0]), theta, ints, floats, a, b)
    gj = J.weighted_gradient(model, J.Jet(theta[None]), X, Y, np.full((3, X.shape[1]), 1.0 / X.shape[1])).value
    np.testing.assert_allclose(gj, g, rtol=1e-12, atol=1e-14 * np.abs(g).max())


@pytest.mark.parametrize("model", JET_MODELS, ids=lambda m: f"{m.kind}-{getattr(m, 'activation', '')}")
def test_jet_derivatives_match_central_differences(model):
    """Hessian-vector products and third derivatives D²∇ℓ[u, v] against central differences (h = 1e-5:
    truncation O(h²) ~ 1e-10 relative, round-off ε/h ~ 1e-11)."""
    rng = np.random.default_rng(1)
    X, Y = _data_for(model, rng)
    w = np.full((2, X.shape[1]), 1.0 / X.shape[1])
    theta, u, v = (rng.standard_normal((2, model.n_params)) for _ in range(3))

    def grad(t):
        return J.weighted_gradient(model, J.Jet(t[None]), X, Y, w).value

    def hvp(t):
        return J.derivative_part(J.weighted_gradient(model, J.with_direction(J.Jet(t[None]), J.Jet(u[None])), X, Y, w)).value

    h = 1e-5
    exact = hvp(theta)
    fd = (grad(theta + h * u) - grad(theta - h * u)) / (2 * h)
    assert np.abs(exact - fd).max() <= 1e-6 * np.abs(exact).max()
    two = J.with_direction(J.with_direction(J.Jet(theta[None]), J.Jet(u[None])), J.Jet(v[None]))
    third = J.weighted_gradient(model, two, X, Y, w).c[3]
    fd3 = (hvp(theta + h * v) - hvp(theta - h * v)) / (2 * h)
    scale = max(np.abs(third).max(), np.abs(exact).max())
    assert np.abs(third - fd3).max() <= 1e-6 * scale


@pytest.mark.parametrize("n,m,r", [(3, 2, 2), (4, 3, 3), (2, 2, 3)])
def test_two_layer_linear_has_r_r_plus_1_over_2_laws(n, m, r):
    model = ns.DeepLinear((n, r, m))  # W_1 = Vᵀ (r×n), W_2 = U (m×r)
    gf = ns.discover(model, seed=1)
    assert gf.decided and gf.count == r * (r + 1) // 2
    assert gf.quadratic.dim == r * (r + 1) // 2 and gf.linear.dim == 0
    assert gf.catalogue.complete and gf.catalogue.independent == gf.count
    mf = ns.discover(model, seed=1, flow="momentum")
    assert mf.decided and mf.count == r * (r - 1) // 2
    assert mf.quadratic.dim == r * (r - 1) // 2 and mf.catalogue.complete


@pytest.mark.parametrize("r", [2, 3])
def test_two_layer_relu_has_one_law_per_neuron_and_none_under_momentum(r):
    model = MLP((3, r, 2), activation="relu")
    gf = ns.discover(model, seed=2)
    assert gf.decided and gf.count == r and gf.quadratic.dim == r
    assert gf.catalogue.complete
    mf = ns.discover(model, seed=2, flow="momentum")
    assert mf.decided and mf.count == 0 and mf.quadratic.dim == 0 and mf.linear.dim == 0


CATALOGUE_CASES = [  # (model, expected count): every catalogued kind of charge
    (ns.DeepLinear((3, 3, 2, 2)), 6 + 3),                                       # D1 (3×3), D2 (2×2)
    (ns.DeepLinear((3, 2, 2), bias=True), 3),                                   # D1 with − b bᵀ
    (MLP((3, 3, 2, 2), activation="relu", bias=True), 3 + 2),                   # r1, r2
    (MLP((3, 3, 2), activation="leaky_relu", slope=0.2), 3),                    # r1
    (MLP((3, 3, 2), activation="abs"), 3),                                      # r1
    (MLP((3, 3, 2), activation="relu_pow", power=2.0), 3),                      # r1 with α = 2
    (MLP((3, 3, 3), activation="relu", loss="softmax_ce", bias=True), 3 + 4),   # r1, T (3 columns + bias)
    (MLP((3, 3, 2), activation="tanh", normalised_first_layer=True), 3),        # S (no rescale of layer 1)
]


@pytest.mark.parametrize("model,count", CATALOGUE_CASES, ids=lambda x: getattr(x, "kind", str(x)))
def test_catalogue_accounts_for_every_law(model, count):
    res = ns.discover(model, seed=3, points=6)
    assert res.decided and res.count == count
    assert res.catalogue.complete, res
    assert all(g["conserved"] for g in res.catalogue.groups)
    assert res.catalogue.missing == []


def test_softmax_translations_are_the_linear_laws():
    model = MLP((3, 3, 3), activation="relu", loss="softmax_ce", bias=True)
    res = ns.discover(model, seed=4)
    assert res.linear.dim == 4  # Σ_c W_2[c, m] for m = 1…3 and Σ_c b_2[c]
    assert res.quadratic.dim == 3 + 10 and res.quadratic.products == 10  # r1, and T_a T_b (a ≤ b)
    assert res.catalogue.complete and res.catalogue.missing == []
    V = np.array(res.linear.basis)
    # each found v is constant over the classes within a column of W_2 (and over b_2), zero elsewhere
    W2 = model.unflatten(V)[1][0]  # (4, classes, 3)
    assert np.allclose(W2, W2[:, :1, :], atol=1e-10)
    assert np.abs(model.unflatten(V)[0][0]).max() < 1e-10
    # under momentum each translation v gives two laws: τ⟨v, q̈⟩ + ⟨v, q̇⟩ = 0, so e^{t/τ}⟨v, p⟩ and (integrating
    # once) ⟨v, q + τp⟩ are conserved; the kernels record JT = ⟨v, p⟩ (isometric) beside T = ⟨v, q⟩
    mf = ns.discover(model, seed=4, flow="momentum")
    assert mf.decided and mf.count == 8 and mf.linear.dim == 4
    assert mf.catalogue.complete and mf.catalogue.missing == [] and mf.catalogue.independent == 8


def test_linear_activation_mlp_records_every_entry_of_the_balance_matrix():
    """An MLP with the identity activation is a deep linear network: all of D_1 (6 laws) holds, and its
    catalogue carries it (group D1 beside the rescale charges r1 = −diag D1); under momentum the 3
    rotations' J1."""
    model = MLP((3, 3, 2), activation="linear")
    res = ns.discover(model, seed=5)
    assert res.count == 6 and res.catalogue.independent == 6 and res.catalogue.complete
    assert res.catalogue.missing == []
    assert {g["name"]: g["conserved"] for g in res.catalogue.groups} == {"r1": True, "D1": True}
    mf = ns.discover(model, seed=5, flow="momentum")
    assert mf.count == 3 and mf.catalogue.independent == 3 and mf.catalogue.complete


@pytest.mark.parametrize("activation", ["tanh", "softplus", "gelu"])
def test_networks_without_symmetry_have_no_law(activation):
    res = ns.discover(MLP((3, 3, 2), activation=activation, bias=True), seed=8)
    assert res.decided and res.count == 0 and res.linear.dim == 0 and res.quadratic.dim == 0
    assert res.catalogue.complete  # nothing to account for: the rescale control group is not conserved
    assert [g["conserved"] for g in res.catalogue.groups] == [False]


def test_count_is_invariant_under_reparametrising_the_sample_points():
    """Other draws of θ and data, an invertible linear map of the inputs and outputs, and more points:
    the count is a property of the model, not of the samples."""
    model = ns.DeepLinear((3, 3, 2, 2))
    counts = {ns.discover(model, seed=s).count for s in range(3)}
    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((3, 40)), rng.standard_normal((2, 40))
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    counts.add(ns.discover(model, ns.data.from_arrays(X, Y)).count)
    counts.add(ns.discover(model, ns.data.from_arrays(A @ X, B @ Y)).count)
    counts.add(ns.discover(model, n_data=60).count)
    assert counts == {9}


def test_found_quadratic_laws_are_conserved_along_a_gradient_flow_trajectory():
    """An independent check of the null-space solve: each found ½θᵀSθ stays constant under the flow
    (scipy DOP853, rtol 1e-12) of a data set the discovery never saw."""
    from scipy.integrate import solve_ivp

    model = MLP((3, 3, 2), activation="relu_pow", power=2.0)
    res = ns.discover(model, seed=10)
    rng = np.random.default_rng(11)
    X, Y = rng.standard_normal((3, 30)), rng.standard_normal((2, 30))
    w = np.full((1, 30), 1 / 30)
    theta0 = rng.standard_normal(model.n_params) / np.sqrt(3)
    sol = solve_ivp(lambda t, th: -J.weighted_gradient(model, J.Jet(th[None, None]), X, Y, w).value[0],
                    (0, 1.0), theta0, method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success
    theta1 = sol.y[:, -1]
    assert np.linalg.norm(theta1 - theta0) > 1e-2  # it moved
    for S in res.quadratic.basis:
        q0, q1 = 0.5 * theta0 @ S @ theta0, 0.5 * theta1 @ S @ theta1
        assert abs(q1 - q0) < 1e-9 * max(1.0, abs(q0))


def test_layer_gram_structure_finds_the_full_search_laws_when_they_lie_in_it():
    model = ns.DeepLinear((3, 2, 2), bias=True)
    full = ns.discover(model, seed=12, quadratic="full")
    gram = ns.discover(model, seed=12, quadratic="layer_gram")
    assert full.quadratic.structure == "full" and gram.quadratic.structure == "layer_gram"
    F = np.array([S.ravel() for S in full.quadratic.basis]).T
    G = np.array([S.ravel() for S in gram.quadratic.basis]).T
    assert F.shape == G.shape == (model.n_params ** 2, 3)
    # same span: the principal angles are all zero
    cosines = np.linalg.svd(np.linalg.qr(F)[0].T @ np.linalg.qr(G)[0], compute_uv=False)
    assert np.allclose(cosines, 1.0, atol=1e-9)


def test_rank_decisions_report_a_gap_too_small_to_decide():
    clear = decide_rank(np.zeros((1, 4)), singular_values=np.array([1.0, 0.5, 1e-15, 1e-16]))
    assert clear.decided and clear.rank == 2 and clear.gap > 1e13
    blurred = decide_rank(np.zeros((1, 6)), singular_values=10.0 ** -np.arange(0, 18, 3))  # ×1e3 steps
    assert not blurred.decided and "undecided" in blurred.message
    two_gaps = decide_rank(np.zeros((1, 4)), singular_values=np.array([1.0, 1e-6, 1e-15, 1e-15]))
    assert not two_gaps.decided and "two gaps" in two_gaps.message
    full = decide_rank(np.eye(3))
    assert full.decided and full.rank == 3
    res = ns.discover(MLP((3, 2, 2), activation="relu"), min_gap=1e30)
    assert not res.decided and res.count is None and "undecided" in res.message


def test_the_figure_shows_the_gap_that_sets_the_count(tmp_path):
    res = [ns.discover(ns.DeepLinear((3, 2, 2)), seed=13), ns.discover(ns.DeepLinear((3, 2, 2)), seed=13,
                                                                        flow="momentum")]
    fig = plot_discovery(res)
    path = tmp_path / "discover.png"
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 10_000
    for ax, r in zip(fig.axes, res):
        kept, dropped = ax.lines[0], ax.lines[1]
        assert len(dropped.get_xdata()) == r.count and len(kept.get_xdata()) == r.dim - r.count
        assert np.min(kept.get_ydata()) > 1e4 * np.max(dropped.get_ydata())  # the plotted gap
        assert f"count = {r.count}" in ax.get_title()


def test_cli_discover_prints_the_table(capsys):
    from noether_sim.cli import main

    study = str(Path(__file__).resolve().parents[1] / "examples" / "default_study.toml")
    code = main(["discover", study, "--set", "model.widths=[3, 2, 2]", "--set", "data.n_points=16"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["model", "flow", "P", "laws"]
    assert lines[1].split()[:4] == ["deep_linear", "[3,", "2,", "2]"] and " 3 " in lines[1]
    assert "momentum" in lines[2] and " 1 " in lines[2]
    assert main(["discover", study, "--set", "model.widths=[3, 2, 2]", "--study-data", "--flow", "gradient"]) == 0
    assert main(["discover", study, "--set", "model.kind=perceptron"]) == 2  # a ConfigError: usage


@pytest.mark.parametrize("kwargs,name", [
    ({"flow": "adam"}, "flow"), ({"quadratic": "cubic"}, "quadratic"), ({"points": 0}, "points"),
    ({"max_depth": 9}, "max_depth"), ({"min_gap": 0.5}, "min_gap"), ({"tau": -1.0}, "tau"), ({"seed": -2}, "seed"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=f"^{name}="):
        ns.discover(ns.DeepLinear((2, 2, 1)), **kwargs)


def test_bad_model_and_data_are_rejected():
    with pytest.raises(ConfigError, match="^model="):
        ns.discover("relu")
    data = ns.data.from_arrays(np.ones((3, 4)), np.ones((1, 4)))
    with pytest.raises(ConfigError, match="^data="):
        ns.discover(ns.DeepLinear((2, 2, 1)), data)
    with pytest.raises(ConfigError, match="^n_data="):
        ns.discover(ns.DeepLinear((3, 2, 1)), data, n_data=10)


def test_rank_is_the_same_at_symmetric_images_of_a_point():
    """Moving θ along its symmetry orbit (an invertible M on the hidden layer of a linear network:
    W_1 → MW_1, W_2 → W_2M⁻¹) changes the fields' values but not the dimension of their Lie algebra."""
    from noether_sim.discover import _Fields, lie_rank

    model = ns.DeepLinear((3, 3, 2))
    rng = np.random.default_rng(14)
    X, Y = rng.standard_normal((3, 20)), rng.standard_normal((2, 20))
    fields = _Fields(model, X, Y, "gradient", 1.0)
    theta = rng.standard_normal(model.n_params)
    (W1, _), (W2, _) = model.unflatten(theta)
    M = np.eye(3) + 0.5 * rng.standard_normal((3, 3))
    moved = model.flatten([(M @ W1, None), (W2 @ np.linalg.inv(M), None)])
    assert np.allclose(model.forward(moved, X), model.forward(theta, X))
    assert not np.allclose(moved, theta)
    ranks = [lie_rank(fields, z, np.random.default_rng(15)).decision.rank for z in (theta, moved)]
    assert ranks == [3 * 3 + 2 * 3 - 6] * 2  # P − r(r+1)/2 with r = 3


def test_found_momentum_laws_are_conserved_along_a_momentum_trajectory():
    """e^{t/τ}⟨p, Kq⟩ for each found K, and e^{t/τ}⟨v, p⟩, ⟨v, q + τp⟩ for each found v, stay constant
    under τq̈ + q̇ = −∇L (scipy DOP853, rtol 1e-12) on a data set the discovery never saw."""
    from scipy.integrate import solve_ivp

    model, tau = MLP((3, 3, 3), activation="linear", loss="softmax_ce"), 0.7
    res = ns.discover(model, seed=16, flow="momentum", tau=tau)
    assert res.decided and res.linear.dim == 3 and res.quadratic.dim >= 3
    rng = np.random.default_rng(17)
    X, Y = rng.standard_normal((3, 25)), rng.dirichlet(np.ones(3), 25).T
    w = np.full((1, 25), 1 / 25)
    P = model.n_params

    def rhs(t, y):
        g = J.weighted_gradient(model, J.Jet(y[None, None, :P]), X, Y, w).value[0]
        return np.concatenate([y[P:], -(g + y[P:]) / tau])

    y0 = np.concatenate([rng.standard_normal(P) / np.sqrt(3), rng.standard_normal(P)])
    T = 1.5
    sol = solve_ivp(rhs, (0, T), y0, method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success
    (q0, p0), (q1, p1) = (y0[:P], y0[P:]), (sol.y[:P, -1], sol.y[P:, -1])
    assert np.linalg.norm(q1 - q0) > 1e-2
    laws = [lambda q, p, t, K=K: np.exp(t / tau) * p @ K @ q for K in res.quadratic.basis]
    laws += [lambda q, p, t, v=v: np.exp(t / tau) * v @ p for v in res.linear.basis]
    laws += [lambda q, p, t, v=v: v @ (q + tau * p) for v in res.linear.basis]
    for h in laws:
        a, b = h(q0, p0, 0.0), h(q1, p1, T)
        assert abs(b - a) < 1e-9 * max(1.0, abs(a))


def test_discover_with_layer_lr_finds_the_weighted_laws():
    """Fields M∇ℓ_j (layer-wise rates, biases with their layer): the same number of laws, the weighted
    catalogue conserved — and the unweighted catalogue is not (the check can fail)."""
    import noether_sim as ns
    from noether_sim.discover.catalogue import catalogue_forms
    from noether_sim.discover.discovery import _layer_scale
    from noether_sim.discover.laws import _sample_rows
    from noether_sim.discover.lie import _Fields

    for model, rates in ((ns.DeepLinear((4, 3, 3), bias=True), (2.0, 0.5)), (ns.MLP((3, 4, 2), bias=True), (3.0, 0.5))):
        plain, weighted = ns.discover(model), ns.discover(model, layer_lr=rates)
        assert weighted.count == plain.count and weighted.catalogue.complete
        assert all(g["conserved"] and g["residual"] < 1e-12 for g in weighted.catalogue.groups)
        rng = np.random.default_rng(0)
        X, Y = rng.standard_normal((model.widths[0], 12)), rng.standard_normal((model.widths[-1], 12))
        fields = _Fields(model, X, Y, "gradient", 1.0, _layer_scale(model, rates, "gradient"))
        theta, g = _sample_rows(model, fields, rng, 8)
        _, _, _, S = catalogue_forms(model)[0]  # the unweighted first charge: not conserved by M∇L
        d = theta @ S.T
        rel = np.abs(np.sum(d * g, axis=1)) / (np.linalg.norm(d, axis=1) * np.linalg.norm(g, axis=1))
        assert rel.max() > 1e-3
    with pytest.raises(ns.ConfigError, match="layer_lr"):
        ns.discover(ns.DeepLinear((4, 3, 3)), layer_lr=(1.0,))
    with pytest.raises(ns.ConfigError, match="layer_lr"):
        ns.discover(ns.DeepLinear((4, 3, 3)), layer_lr=(1.0, 2.0), flow="momentum")


def test_discover_with_bias_lr_finds_the_bias_weighted_laws():
    """Biases with rates of their own (bias_lr): the same count of laws, and the catalogue weighted with
    the bias rates (b_ib_iᵀ/m_{b_i}, b²/m_b) conserved; weighting the biases with their layer is not."""
    import noether_sim as ns
    from noether_sim.discover.catalogue import catalogue_forms
    from noether_sim.discover.discovery import _layer_scale
    from noether_sim.discover.laws import _sample_rows
    from noether_sim.discover.lie import _Fields

    model, rates, bias_rates = ns.MLP((3, 4, 2), bias=True), (3.0, 0.5), (0.2, 5.0)
    plain, weighted = ns.discover(model), ns.discover(model, layer_lr=rates, bias_lr=bias_rates)
    assert weighted.count == plain.count and weighted.catalogue.complete
    assert all(g["conserved"] and g["residual"] < 1e-12 for g in weighted.catalogue.groups)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((model.widths[0], 12)), rng.standard_normal((model.widths[-1], 12))
    fields = _Fields(model, X, Y, "gradient", 1.0, _layer_scale(model, rates, "gradient", bias_rates))
    theta, g = _sample_rows(model, fields, rng, 8)
    m = _layer_scale(model, rates, "gradient")  # biases with their layer: the wrong weights here
    _, _, _, S = catalogue_forms(model)[0]
    W = np.diag(1.0 / np.sqrt(m)) @ S @ np.diag(1.0 / np.sqrt(m))
    d = theta @ W.T
    rel = np.abs(np.sum(d * g, axis=1)) / (np.linalg.norm(d, axis=1) * np.linalg.norm(g, axis=1))
    assert rel.max() > 1e-3
    with pytest.raises(ns.ConfigError, match="bias_lr"):
        ns.discover(ns.MLP((3, 4, 2)), bias_lr=2.0)
