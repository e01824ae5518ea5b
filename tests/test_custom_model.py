"""CustomModel: a user's numba.njit loss_grad and the user's charges through the engine.

Oracles: the built-in DeepLinear kernel (the same model written by the user must agree to round-off),
the exact discrete laws (a symmetric user charge's law residual is round-off; a non-symmetric one's is
not), central finite differences, and hand-made wrong functions that the contract check must refuse.
"""

import pathlib
import sys

import numba
import numpy as np
import pytest

import noether_sim as ns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402  (an importable module: numba caches its function)
import quadratic_net  # noqa: E402


@numba.njit(cache=True)
def _scaled_wrong(theta, X, Y, grad):  # gradient of ½|θ|² except coordinate 2, which is off by 1 %
    for i in range(theta.shape[0]):
        grad[i] = theta[i]
    grad[2] *= 1.01
    return 0.5 * np.sum(theta * theta)


@numba.njit(cache=True)
def _writes_nan(theta, X, Y, grad):
    for i in range(theta.shape[0]):
        grad[i] = theta[i]
    grad[1] = np.nan
    return 0.5 * np.sum(theta * theta)


@numba.njit(cache=True)
def _leaves_one(theta, X, Y, grad):
    for i in range(theta.shape[0] - 1):
        grad[i] = theta[i]
    return 0.5 * np.sum(theta * theta)


@numba.njit(cache=True)
def _wrong_signature(theta, X):
    return 0.0


@pytest.fixture(scope="module")
def data():
    return ns.data.synthetic_regression(ref.N0, ref.N2, 16, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def theta0():
    return np.random.default_rng(0).standard_normal((3, ref.P)) * 0.7


def _pair(data, theta0, **kw):
    ours = ns.simulate(ref.model(), data, seeds=3, init=ns.init.Given(theta0), watch_seeds=[0, 1, 2], **kw)
    builtin = ns.simulate(ns.DeepLinear((ref.N0, ref.N1, ref.N2)), data, seeds=3, init=ns.init.Given(theta0),
                          watch_seeds=[0, 1, 2], **kw)
    return ours, builtin


@pytest.mark.parametrize("kw", [
    dict(dynamics="gd", h=0.05, n_steps=60),
    dict(dynamics="gd", h=0.05, n_steps=60, weight_decay=0.3),
    dict(method="rk4", h=0.05, t_end=2.0, track_energy=True),
    dict(method="dopri5", t_end=2.0, rtol=1e-9, atol=1e-12),
    dict(method="gl2", h=0.1, t_end=2.0),
    dict(dynamics="heavy_ball", learning_rate=0.01, n_steps=100, beta=0.9, velocity="gradient"),
    dict(dynamics="nesterov", learning_rate=0.01, n_steps=100, beta=0.9, velocity="gradient", weight_decay=0.1),
], ids=["gd", "gd_wd", "rk4", "dopri5", "gl2", "heavy_ball", "nesterov"])
def test_agrees_with_builtin_deep_linear(data, theta0, kw):
    """The user's deep linear network and the built-in kernel: same trajectory and charges to round-off
    (the built-in reads the data through second moments, the user's through the points: sums in another
    order)."""
    ours, builtin = _pair(data, theta0, **kw)
    assert (ours.status.values == 0).all()
    scale = np.max(np.abs(builtin.theta_final.values))
    np.testing.assert_allclose(ours.theta_final.values, builtin.theta_final.values, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(ours.loss.values, builtin.loss.values, rtol=1e-11, atol=1e-14)
    # the user's D_ab (a <= b) against the built-in balance matrix D1
    D = builtin.charge_watch.values[:, -1, :16].reshape(3, 4, 4)
    user = ours.charge_watch.values[:, -1, :]
    k = 0
    for a in range(4):
        for b in range(a, 4):
            np.testing.assert_allclose(user[:, k], D[:, a, b], rtol=0, atol=1e-12 * max(1.0, np.abs(D).max()))
            k += 1
    if kw.get("track_energy"):  # the energy identity's record (extras.py reads the descriptor's header)
        np.testing.assert_allclose(ours.drift.sel(charge="energy").values, builtin.drift.sel(charge="energy").values,
                                   rtol=1e-6, atol=1e-14)
    if kw.get("dynamics") in ("heavy_ball", "nesterov"):  # the user charges keep the discrete momentum law
        res = ours.law_residual.isel(time=-1).values
        assert np.all(res <= 10 * ours.roundoff_floor.values), (res / ours.roundoff_floor.values).max()
        assert np.all(ours.drift.isel(time=-1).values > 1e3 * ours.roundoff_floor.values)


def test_gd_law_and_verdict_of_user_charges(data, theta0):
    """GD on a user charge: the exact law's residual is round-off where the symmetry holds (balance),
    and the verdict is decided by the law, as for catalogue charges; a charge without the symmetry
    (½|W_1|²) fails the law: broken."""
    norm = np.zeros(ref.P)
    norm[:ref.N1 * ref.N0] = 1.0
    model = ref.model().with_charges(ns.Charge.quadratic(np.diag(norm), "W1_norm"))
    for wd in (0.0, 0.2):
        ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=80, seeds=3, init=ns.init.Given(theta0),
                         weight_decay=wd)
        verdicts = {r["charge"]: r for r in ns.summarise_verdicts(ns.judge(ds))}
        assert verdicts["D_00"]["verdict"] == "conserved by the flow" and verdicts["D_00"]["basis"] == "exact law"
        assert verdicts["D_00"]["law_residual"] <= 10 * verdicts["D_00"]["roundoff_floor"]
        assert verdicts["D_00"]["finest_drift"] > 1e3 * verdicts["D_00"]["roundoff_floor"]  # the η² drift is real
        assert verdicts["W1_norm"]["verdict"] == "broken by the flow"
    rep = {r["charge"]: r for r in model.check_symmetries(data)}
    assert rep["D_01"]["holds"] and not rep["W1_norm"]["holds"]


def test_gd_law_by_hand(data, theta0):
    """The exact GD law recomputed in NumPy from the user's gradient: q(θ − ηg) − q(θ) = −ηθᵀSg + η²/2 gᵀSg,
    and θᵀSg = 0 for the balance charge, so q moves by η²/2 gᵀSg only."""
    model = ref.model()
    c = model.charges[1]
    theta = theta0[0].copy()
    eta = 0.05
    _, g = model.loss_and_grad(theta, data)
    g = g[0]
    S = np.zeros((ref.P, ref.P))
    np.add.at(S, (c.rows, c.cols), c.values)
    lhs = c.value(theta - eta * g) - c.value(theta)
    assert abs(theta @ S @ g) < 1e-13 * np.abs(theta) @ np.abs(S) @ np.abs(g)
    np.testing.assert_allclose(lhs, 0.5 * eta ** 2 * g @ S @ g, rtol=1e-10)


def test_ladder_verdicts_gf(data):
    """A gradient-flow ladder (RK4) on the user's model decides its charges as for catalogue ones."""
    norm = np.zeros(ref.P)
    norm[:ref.N1 * ref.N0] = 1.0
    model = ref.model().with_charges(ns.Charge.quadratic(np.diag(norm), "W1_norm"))
    lad = ns.run_ladder(model, data, method="rk4", step_sizes=[0.2, 0.1, 0.05], t_end=1.0, seeds=3,
                        init=ns.init.Gaussian(scale=0.5))
    verdicts = {r["charge"]: r["verdict"] for r in ns.summarise_verdicts(ns.analyse_ladder(lad))}
    assert verdicts["D_00"] == "conserved by the flow"
    assert verdicts["W1_norm"] == "broken by the flow"


def test_linear_charge_exact(data):
    """A linear charge ⟨v, θ⟩ with ⟨v, ∇L⟩ ≡ 0: a loss that depends on θ₀ + θ₁ only conserves θ₀ − θ₁."""

    @numba.njit
    def lg(theta, X, Y, grad):
        s = theta[0] + theta[1]
        r = s * X[0] - Y[0]
        d = np.sum(r * X[0]) / X.shape[1]
        grad[0] = d
        grad[1] = d
        grad[2] = theta[2]
        return 0.5 * np.sum(r * r) / X.shape[1] + 0.5 * theta[2] ** 2

    d1 = ns.data.synthetic_regression(1, 1, 10, seed=1)
    model = ns.CustomModel(3, lg, charges=[ns.Charge.linear([1.0, -1.0, 0.0], "diff", claim="conserved"),
                                           ns.Charge.linear([0.0, 0.0, 1.0], "third")])
    ds = ns.simulate(model, d1, dynamics="gd", h=0.1, n_steps=50, seeds=2)
    verdicts = {r["charge"]: r["verdict"] for r in ns.summarise_verdicts(ns.judge(ds))}
    assert verdicts == {"diff": "conserved by the flow", "third": "broken by the flow"}
    np.testing.assert_allclose(ds.charge_final.values[:, 0], ds.charge_initial.values[:, 0], rtol=0, atol=1e-14)


def test_seeds_are_the_same_networks(data):
    """Default initialisation: seed i's θ depends only on (root seed, i), in any ensemble."""
    a = ns.simulate(ref.model(), data, dynamics="gd", h=0.05, n_steps=5, seeds=4)
    b = ns.simulate(ref.model(), data, dynamics="gd", h=0.05, n_steps=5, seeds=[2, 3])
    assert np.array_equal(a.theta_final.values[2:], b.theta_final.values)


# ---- the contract: ConfigError before any work ----

def test_not_compiled(data):
    with pytest.raises(ns.ConfigError, match="loss_grad=.*numba.njit"):
        ns.CustomModel(3, lambda theta, X, Y, g: 0.0)


def test_wrong_gradient_names_coordinate(data):
    with pytest.raises(ns.ConfigError, match=r"worst coordinate 2: grad_out\[2\] = .*finite difference = "):
        ns.simulate(ns.CustomModel(4, _scaled_wrong), data, dynamics="gd", h=0.1, n_steps=2)


def test_nan_and_unwritten(data):
    with pytest.raises(ns.ConfigError, match=r"grad_out\[1\] = nan"):
        ns.CustomModel(4, _writes_nan).check(data)
    with pytest.raises(ns.ConfigError, match=r"grad_out\[3\] = nan .*must write every entry"):
        ns.CustomModel(4, _leaves_one).check(data)


def test_wrong_signature(data):
    with pytest.raises(ns.ConfigError, match="does not compile for the contract"):
        ns.CustomModel(4, _wrong_signature).check(data)


def test_bad_charges():
    with pytest.raises(ns.ConfigError, match="must be symmetric"):
        ns.Charge.quadratic(np.triu(np.ones((3, 3))), "q")
    with pytest.raises(ns.ConfigError, match=r"has size 3 but the model has n_params = 4"):
        ns.CustomModel(4, _scaled_wrong, charges=[ns.Charge.quadratic(np.eye(3), "q")])
    with pytest.raises(ns.ConfigError, match="repeats the name"):
        ns.CustomModel(4, _scaled_wrong, charges=[ns.Charge.linear(np.ones(4), "q"), ns.Charge.linear(np.ones(4), "q")])


def test_refuted_claim(data):
    norm = np.zeros(ref.P)
    norm[:ref.N1 * ref.N0] = 1.0
    model = ref.model().with_charges(ns.Charge.quadratic(np.diag(norm), "W1_norm", claim="conserved"))
    with pytest.raises(ns.ConfigError, match=r"W1_norm.*refutes it: symmetry θᵀS∇L ≡ 0 FAILS.*largest \|θᵀS∇L\| = "):
        ns.simulate(model, data, dynamics="gd", h=0.1, n_steps=2)


def test_sparse_charge_equals_dense():
    sp = pytest.importorskip("scipy.sparse")
    S = np.zeros((5, 5))
    S[0, 3] = S[3, 0] = 2.0
    S[1, 1] = -1.0
    th = np.arange(5.0)
    assert ns.Charge.quadratic(sp.csr_matrix(S), "a").value(th) == ns.Charge.quadratic(S, "b").value(th) == 0.5 * th @ S @ th


# ---- the example none of the built-ins covers; discovery; the plain-Python path ----

@pytest.fixture(scope="module")
def qdata():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((quadratic_net.D, 12))
    return ns.data.from_arrays(X, (X[0] ** 2 - 0.5 * X[1] * X[2])[None, :])


def test_quadratic_net_verdicts(qdata):
    ds = ns.simulate(quadratic_net.model(), qdata, dynamics="gd", h=0.02, n_steps=100, seeds=4)
    verdicts = {r["charge"]: (r["verdict"], r["basis"]) for r in ns.summarise_verdicts(ns.judge(ds))}
    for k in range(quadratic_net.K):
        assert verdicts[f"r{k}"] == ("conserved by the flow", "exact law")
    assert verdicts["w0_norm"] == ("broken by the flow", "exact law")


def test_discover_custom_finds_the_rescale_charges(qdata):
    """On f(x) = Σ_k a_k(w_kᵀx)² the Lie algebra of the per-sample fields leaves exactly the K rescale
    laws, and the user's charges r_k lie in the quadratic laws found, the control |w_0|² does not."""
    res = ns.discover(quadratic_net.model(), qdata, points=1)
    assert res.count == quadratic_net.K, str(res)
    assert res.quadratic.dim == quadratic_net.K and res.linear.dim == 0
    found = {c["charge"]: c["in_span"] for c in res.charges}
    assert all(found[f"r{k}"] for k in range(quadratic_net.K)) and not found["w0_norm"]


def test_plain_python_path_agrees(data, theta0):
    """The same gradient in plain NumPy (plain_python=True) gives the compiled path's trajectory."""

    def lg(theta, X, Y, grad):
        W1 = theta[:12].reshape(4, 3)
        W2 = theta[12:].reshape(2, 4)
        H = W1 @ X
        R = W2 @ H - Y
        N = X.shape[1]
        grad[12:] = (R @ H.T).ravel() / N
        grad[:12] = (W2.T @ R @ X.T).ravel() / N
        return 0.5 * np.sum(R * R) / N

    slow = ns.CustomModel(ref.P, lg, plain_python=True, charges=ref.model().charges)
    a = ns.simulate(slow, data, dynamics="gd", h=0.05, n_steps=20, seeds=3, init=ns.init.Given(theta0))
    b = ns.simulate(ref.model(), data, dynamics="gd", h=0.05, n_steps=20, seeds=3, init=ns.init.Given(theta0))
    np.testing.assert_allclose(a.theta_final.values, b.theta_final.values, rtol=0, atol=1e-13)
    with pytest.raises(ns.ConfigError, match="plain_python=True"):
        ns.CustomModel(3, lg)


def test_discover_custom_agrees_with_builtin_count(data):
    """The user's deep linear 3-4-2 (finite-difference brackets) and the built-in DeepLinear (exact jets):
    the same number of laws, r(r + 1)/2 = 10, and the user's balance charges among the quadratic laws."""
    ours = ns.discover(ref.model(), data, points=1)
    theirs = ns.discover(ns.DeepLinear((ref.N0, ref.N1, ref.N2)), data, points=1)
    assert ours.count == theirs.count == 10, str(ours)
    assert all(c["in_span"] for c in ours.charges)


def test_minibatch_gd_agrees_with_builtin(data, theta0):
    """Stochastic dynamics reach a CustomModel: minibatch GD draws the same batches (root seed, seed id,
    step) as for the built-in model, so the trajectories agree to round-off, and the exact law with the
    batch's gradient keeps deciding the user's charges."""
    kw = dict(dynamics="gd", h=0.05, n_steps=40, seeds=3, init=ns.init.Given(theta0), batch_size=5)
    ours = ns.simulate(ref.model(), data, **kw)
    builtin = ns.simulate(ns.DeepLinear((ref.N0, ref.N1, ref.N2)), data, **kw)
    scale = np.max(np.abs(builtin.theta_final.values))
    np.testing.assert_allclose(ours.theta_final.values, builtin.theta_final.values, rtol=0, atol=1e-11 * scale)
    res = ours.residual.isel(time=-1).values
    assert np.all(res <= 10 * ours.roundoff_floor.values), (res / ours.roundoff_floor.values).max()


def test_quadratic_net_ladder(qdata):
    """The example's RK4 ladder: the rescale charges are conserved by gradient flow, the control is not."""
    lad = ns.run_ladder(quadratic_net.model(), qdata, method="rk4", step_sizes=[0.02, 0.01, 0.005], t_end=2.0,
                        seeds=4)
    verdicts = {r["charge"]: r["verdict"] for r in ns.summarise_verdicts(ns.analyse_ladder(lad))}
    assert verdicts == {**{f"r{k}": "conserved by the flow" for k in range(quadratic_net.K)},
                        "w0_norm": "broken by the flow"}


def test_plain_python_exception_is_a_config_error(data):
    def broken(theta, X, Y, grad):
        raise RuntimeError("shape mismatch in my model")

    with pytest.raises(ns.ConfigError, match="raised RuntimeError: shape mismatch in my model"):
        ns.simulate(ns.CustomModel(3, broken, plain_python=True), data, dynamics="gd", h=0.1, n_steps=2)


def _same_bits(a, b):
    """Every variable of two results equal bit for bit (NaN where NaN); the names that differ."""
    return [v for v in a.data_vars if not np.array_equal(a[v].values, b[v].values,
                                                         equal_nan=a[v].values.dtype.kind == "f")]


@pytest.mark.parametrize("kw", [
    dict(method="rk4", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.1),
    dict(dynamics="gd", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.05),
    dict(method="heun", h=0.05, n_steps=30),
    dict(method="dp5", h=0.05, n_steps=30, save_every=0.5),
], ids=["rk4_wd", "gd_wd", "heun", "dp5_fsal"])
def test_fast_path_is_the_general_driver_bit_for_bit(data, theta0, kw, monkeypatch):
    """The custom model's fast path (kernels/custom_fast.py: fixed explicit steps of gradient flow and
    descent) against the general driver (``NOETHER_SIM_CUSTOM_FAST=0``): every record, θ, counter, status
    and divergence time identical, with a charge whose law is broken, a watched seed and a seed that
    diverges mid-run; and the fast path did run."""
    from noether_sim.kernels import custom_fast

    norm = np.zeros(ref.P)
    norm[:ref.N1 * ref.N0] = 1.0
    model = ref.model().with_charges(ns.Charge.quadratic(np.diag(norm), "W1_norm"))
    th = np.vstack([theta0, 30 * theta0[:1]])  # the last seed leaves the divergence bound

    calls = []
    fast = custom_fast.custom_fast_integrate
    monkeypatch.setattr(custom_fast, "custom_fast_integrate", lambda args: (calls.append(1), fast(args)))

    def run(flag):
        monkeypatch.setenv("NOETHER_SIM_CUSTOM_FAST", flag)
        return ns.simulate(model, data, seeds=4, init=ns.init.Given(th), watch_seeds=[0, 3], progress=False, **kw)

    general = run("0")
    assert not calls
    ours = run("1")
    assert calls
    assert list(ours.status.values) == [0, 0, 0, 1]
    assert _same_bits(ours, general) == []
