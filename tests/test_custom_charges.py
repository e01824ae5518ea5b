"""User charges beyond the quadratic and linear ones (issue 20): ``Charge.function`` (a compiled q(θ) → R^m)
on a CustomModel.

Oracles: the user's own function evaluated in NumPy on the recorded θ (the kernels call the same compiled
code, so the values agree bit for bit), the catalogue (a D entry written as a function is conserved by
gradient flow, |θ|² is not: the ladder must tell them apart), and claims the finite-difference check must
refute.
"""

import pathlib
import sys

import numba
import numpy as np
import pytest

import noether_sim as ns
from noether_sim.laws import NEEDS_LADDER

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402

N0, N1, N2, P = ref.N0, ref.N1, ref.N2, ref.P


@numba.njit(cache=True)
def _balance_entries(theta):  # (D[0, 1], D[2, 2]) of D = W_2ᵀW_2 − W_1W_1ᵀ: conserved by gradient flow
    W1 = theta[:N1 * N0].reshape((N1, N0))
    W2 = theta[N1 * N0:].reshape((N2, N1))
    D = W2.T @ W2 - W1 @ W1.T
    return np.array([D[0, 1], D[2, 2]])


@numba.njit(cache=True)
def _norm2(theta):  # |θ|²: not conserved
    return np.array([np.sum(theta * theta)])


@numba.njit(cache=True)
def _scalar(theta):
    return np.sum(theta)


@numba.njit(cache=True)
def _ragged(theta):
    return np.zeros(1 + int(abs(theta[0]) * 1e6) % 7)  # a length that depends on θ


@numba.njit(cache=True)
def _nan(theta):
    return np.array([np.nan])


@pytest.fixture(scope="module")
def data():
    return ns.data.synthetic_regression(N0, N2, 16, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def model():
    return ns.CustomModel(P, ref.loss_grad, init_scale=0.7, charges=[
        ns.Charge.function(_balance_entries, "fD", n_params=P, law="conserved"),
        ns.Charge.function(_norm2, "norm", n_params=P)])


def test_function_charge_recorded_as_the_users_function(model, data):
    """Every recorded component is the user's q at the recorded θ (the same compiled code: bit for bit);
    a function charge has no exact law: charge_degree 0, predicted/residual NaN, ladder decides."""
    ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=30, seeds=3, watch_seeds=[0, 1, 2])
    assert list(ds.charge.values) == ["fD", "norm"] and list(ds.charge_degree.values) == [0, 0]
    for s in range(3):
        th = ds.theta_final.values[s]
        want = np.concatenate([_balance_entries(th), _norm2(th)])
        np.testing.assert_array_equal(ds.charge_watch.isel(watched_seed=s, time=-1).values, want)
        np.testing.assert_array_equal(ds.charge_final.values[s], want)
    after = dict(time=slice(1, None))  # (at t = 0 the law is q(0) itself)
    assert np.all(np.isnan(ds.predicted.isel(after).values)) and np.all(np.isnan(ds.residual.isel(after).values))
    v = ns.judge(ds)
    assert list(v.step_law.values) == ["none: a ladder decides"] * 2
    assert set(v.verdict.values.ravel()) == {NEEDS_LADDER}


def test_ladder_judges_function_charges(model, data):
    """The ladder: the D entries (conserved by gradient flow) are 'conserved by the flow', |θ|² 'broken';
    both drifts first order in η (GD is a first-order method)."""
    L = ns.run_ladder(model, data, dynamics="gd", step_sizes=[0.02, 0.01, 0.005, 0.0025], t_end=0.5, seeds=3)
    A = ns.analyse_ladder(L)
    assert list(A.verdict.sel(charge="fD").values) == ["conserved by the flow"] * 3
    assert list(A.verdict.sel(charge="norm").values) == ["broken by the flow"] * 3
    assert np.all(np.abs(A.fitted_order.values - 1.0) < 0.1)


def test_heavy_ball_with_a_function_charge(model, data):
    """Heavy ball with the law tracked: a function charge has no discrete law (NaN), the run stays finite."""
    ds = ns.simulate(model, data, dynamics="heavy_ball", learning_rate=0.01, beta=0.9, n_steps=50, seeds=2,
                     track_law=True)
    assert np.all(ds.status.values == 0)
    assert np.all(np.isnan(ds.law_final.values[:, :3]))
    assert np.all(np.isfinite(ds.charge_final.values))


def test_refuted_claim_is_a_config_error(data):
    """|θ|² claimed conserved: refused before any work, with the measured ⟨∇q, ∇L⟩."""
    m = ns.CustomModel(P, ref.loss_grad, charges=[ns.Charge.function(_norm2, "norm", n_params=P, law="conserved")])
    with pytest.raises(ns.ConfigError, match=r"refutes it.*largest \|⟨∇q, ∇L⟩\| = [0-9.e+-]+"):
        ns.simulate(m, data, dynamics="gd", h=0.05, n_steps=2)


def test_symmetry_check_can_tell(model, data):
    report = {r["charge"]: r for r in model.check_symmetries(data)}
    assert report["fD"]["holds"] and not report["norm"]["holds"]
    assert report["fD"]["max_abs"] < 1e-9 * report["fD"]["scale"]


@pytest.mark.parametrize("q, match", [
    (lambda theta: np.zeros(1), "numba.njit"),
    (_scalar, "1-D array"),
    (_ragged, "fixed length"),
    (_nan, "non-finite"),
])
def test_function_charge_contract(q, match):
    with pytest.raises(ns.ConfigError, match=match):
        ns.Charge.function(q, "q", n_params=P)


def test_bad_law_and_size():
    with pytest.raises(ns.ConfigError, match="law"):
        ns.Charge.function(_norm2, "q", n_params=P, law="kept")
    with pytest.raises(ns.ConfigError, match="n_params"):
        ns.CustomModel(P, ref.loss_grad, charges=[ns.Charge.function(_norm2, "q", n_params=P + 1)])


# ---- user charges on built-in models (model.with_charges) ----

def _by_name(ds, name, var="charge_final"):
    return ds[var].values[..., ds.component_charge.values == name]


def _d1_as_user_charges():
    """Every entry of D1 (upper triangle) of DeepLinear((3, 4, 2)) written as ½θᵀSθ (the example's S)."""
    return [ref.balance_charge(a, b) for a in range(N1) for b in range(a, N1)]


def _upper(D):  # (…, N1·N1) row-major D1 → its upper triangle, in the order of _d1_as_user_charges
    iu = np.triu_indices(N1)
    return D.reshape(D.shape[:-1] + (N1, N1))[..., iu[0], iu[1]]


@pytest.mark.parametrize("kw", [
    dict(dynamics="gd", h=0.05, n_steps=40, weight_decay=0.2),
    dict(dynamics="heavy_ball", learning_rate=0.02, beta=0.9, n_steps=40, weight_decay=0.1, track_law=True),
    dict(dynamics="momentum", method="rk4", h=0.05, t_end=1.0, tau=0.5),
    dict(dynamics="langevin", temperature=0.01, h=0.01, n_steps=40, weight_decay=0.1),
], ids=["gd_wd", "heavy_ball", "momentum", "langevin"])
def test_user_quadratic_equals_catalogue_entry(data, kw):
    """D1's entries written as the user's ½θᵀSθ on the built-in DeepLinear: the same values, GD law
    predictions (with weight decay's factor; Langevin's with its noise term, through the user charges'
    bilinear form ½aᵀSb), heavy ball's law invariant and verdicts as the catalogue's, to round-off; the
    isometric charges (momentum) move behind the user's and keep their values."""
    base = ns.DeepLinear((N0, N1, N2))
    model = base.with_charges(*_d1_as_user_charges())
    theta0 = np.random.default_rng(1).standard_normal((3, P)) * 0.7
    run = dict(seeds=3, init=ns.init.Given(theta0), watch_seeds=[0, 1, 2], **kw)
    ours, plain = ns.simulate(model, data, **run), ns.simulate(base, data, **run)
    np.testing.assert_array_equal(ours.theta_final.values, plain.theta_final.values)  # charges do not steer
    scale = np.max(np.abs(plain.charge_final.values))
    user = [c.name for c in _d1_as_user_charges()]
    for var in ("charge_initial", "charge_final", "charge_watch", "predicted_watch", "law_final"):
        cat = _upper(_by_name(plain, "D1", var))
        mine = np.stack([_by_name(ours, n, var)[..., 0] for n in user], axis=-1)
        assert np.array_equal(np.isnan(cat), np.isnan(mine)), var
        np.testing.assert_allclose(mine, cat, rtol=0, atol=1e-13 * scale, equal_nan=True, err_msg=var)
        if var == "predicted_watch" and kw["dynamics"] in ("gd", "langevin"):  # the law is really compared
            assert np.all(np.isfinite(mine))
    if "J1" in plain.charge.values:
        np.testing.assert_array_equal(_by_name(ours, "J1"), _by_name(plain, "J1"))
    if kw["dynamics"] in ("gd", "heavy_ball"):
        v_ours, v_plain = ns.judge(ours), ns.judge(plain)
        for n in user:
            assert list(v_ours.verdict.sel(charge=n).values) == list(v_plain.verdict.sel(charge="D1").values)
            assert list(v_ours.basis.sel(charge=n).values) == list(v_plain.basis.sel(charge="D1").values)


def test_user_charges_on_an_mlp(data):
    """An MLP (ReLU) with its rescale charge r1[k] written twice by the user — as ½θᵀSθ and as a compiled
    function — recorded equal to the catalogue's r1[k]; a non-conserved user charge is judged broken by GD's
    exact law."""
    base = ns.MLP((N0, N1, N2), activation="relu")
    k = 2
    S = np.zeros((P, P))
    S[np.arange(k * N0, (k + 1) * N0), np.arange(k * N0, (k + 1) * N0)] = 2.0    # |W_1[k, :]|²
    out = N1 * N0 + np.arange(N2) * N1 + k                                          # W_2[:, k]
    S[out, out] = -2.0
    model = base.with_charges(ns.Charge.quadratic(S, "r_k", claim="conserved"),
                              ns.Charge.function(_rescale_k, "r_k_fn", n_params=P, law="conserved"),
                              ns.Charge.quadratic(np.eye(P), "norm"))
    ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=40, seeds=3, watch_seeds=[0, 1, 2])
    cat = _by_name(ds, "r1", "charge_watch")[..., k]
    scale = np.max(np.abs(cat))
    np.testing.assert_allclose(_by_name(ds, "r_k", "charge_watch")[..., 0], cat, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(_by_name(ds, "r_k_fn", "charge_watch")[..., 0], cat, rtol=0, atol=1e-13 * scale)
    v = ns.judge(ds)
    assert set(v.verdict.sel(charge="r_k").values) == set(v.verdict.sel(charge="r1").values) == {"conserved by the flow"}
    assert set(v.verdict.sel(charge="norm").values) == {"broken by the flow"}


@numba.njit(cache=True)
def _rescale_k(theta):  # r1[2] = |W_1[2, :]|² − |W_2[:, 2]|² of the 3-4-2 network
    s = 0.0
    for j in range(N0):
        s += theta[2 * N0 + j] ** 2
    for c in range(N2):
        s -= theta[N1 * N0 + c * N1 + 2] ** 2
    return np.array([s])


def test_with_charges_refusals(data):
    base = ns.DeepLinear((N0, N1, N2))
    with pytest.raises(ns.ConfigError, match="refutes it.*largest"):
        ns.simulate(base.with_charges(ns.Charge.quadratic(np.eye(P), "norm", claim="conserved")), data,
                    dynamics="gd", h=0.05, n_steps=2)
    with pytest.raises(ns.ConfigError, match="repeats the name 'D1'"):
        base.with_charges(ns.Charge.quadratic(np.eye(P), "D1"))
    with pytest.raises(ns.ConfigError, match="n_params"):
        base.with_charges(ns.Charge.linear(np.ones(P + 1), "v"))
    with pytest.raises(ns.ConfigError, match="layer_lr"):
        ns.simulate(base.with_charges(ns.Charge.linear(np.ones(P), "v")), data, dynamics="gd", h=0.05, n_steps=2,
                    layer_lr=[1.0, 2.0])


# ---- block-described S ----

def _d1_blocks(a, b):
    """D1[a, b] of the 3-4-2 network by blocks: W_2's columns a, b and W_1's rows a, b, each entry pair
    described as a 1 × 1 or identity block (never a P × P matrix)."""
    blocks = []
    for c in range(N2):  # +1 at (W_2[c, a], W_2[c, b]) and its mirror
        i, j = N1 * N0 + c * N1 + a, N1 * N0 + c * N1 + b
        blocks += [(slice(i, i + 1), slice(j, j + 1), np.ones((1, 1))), (slice(j, j + 1), slice(i, i + 1), np.ones((1, 1)))]
    ra, rb = slice(a * N0, (a + 1) * N0), slice(b * N0, (b + 1) * N0)  # −1 on (W_1[a, k], W_1[b, k])
    blocks += [(ra, rb, -np.eye(N0)), (rb, ra, -np.eye(N0))]
    return blocks


def test_block_described_s_equals_dense(data):
    """Every D1 entry by blocks and densely (the example's S): the same triplets up to order, so the same
    recorded charges and GD law to round-off, on a CustomModel and on the built-in DeepLinear."""
    dense = _d1_as_user_charges()
    pairs = [(a, b) for a in range(N1) for b in range(a, N1)]
    blocks = [ns.Charge.quadratic(_d1_blocks(a, b), f"B_{a}{b}", n_params=P) for a, b in pairs]
    rng = np.random.default_rng(5)
    for c_dense, c_block in zip(dense, blocks):
        for _ in range(3):
            th = rng.standard_normal(P)
            assert np.isclose(c_block.value(th), c_dense.value(th), rtol=1e-14, atol=1e-14)
    theta0 = rng.standard_normal((2, P)) * 0.7
    run = dict(dynamics="gd", h=0.05, n_steps=30, weight_decay=0.1, seeds=2, init=ns.init.Given(theta0),
               watch_seeds=[0, 1])
    for base in (ns.CustomModel(P, ref.loss_grad), ns.DeepLinear((N0, N1, N2))):
        ds = ns.simulate(base.with_charges(*dense, *blocks), data, **run)
        scale = np.max(np.abs(ds.charge_final.values))
        for (a, b), c in zip(pairs, dense):
            for var in ("charge_watch", "predicted_watch"):
                np.testing.assert_allclose(_by_name(ds, f"B_{a}{b}", var), _by_name(ds, c.name, var), rtol=0,
                                           atol=1e-13 * scale)


def test_block_description_refusals():
    with pytest.raises(ns.ConfigError, match="n_params"):
        ns.Charge.quadratic([(slice(0, 2), slice(0, 2), np.eye(2))], "q")
    with pytest.raises(ns.ConfigError, match="transpose"):
        ns.Charge.quadratic([(slice(0, 2), slice(2, 4), np.eye(2))], "q", n_params=4)
    with pytest.raises(ns.ConfigError, match="inside θ"):
        ns.Charge.quadratic([(slice(0, 2), slice(3, 5), np.eye(2))], "q", n_params=4)
    with pytest.raises(ns.ConfigError, match="fit its slices"):
        ns.Charge.quadratic([(slice(0, 2), slice(0, 2), np.eye(3))], "q", n_params=4)


# ---- a function vectorised over seeds (NumPy), through the same front door ----

def _mixes_seeds(Theta, X, Y):  # each row's gradient depends on the mean over rows: refused
    g = Theta - Theta.mean(axis=0) + 0.5 * Theta
    return 0.5 * np.sum(Theta * Theta, axis=1), Theta + 0.0 * g if Theta.shape[0] == 1 else g


@pytest.mark.parametrize("kw", [dict(dynamics="gd", h=0.05, n_steps=30, weight_decay=0.1),
                                dict(method="rk4", h=0.05, t_end=1.0)], ids=["gd", "rk4"])
def test_vectorised_numpy_agrees_with_compiled(data, kw):
    """The deep linear reference written in NumPy over (S, P) rows runs the compiled path's trajectory and
    charges to ~1e-12 (the same arithmetic in another order)."""
    theta0 = np.random.default_rng(2).standard_normal((3, P)) * 0.7
    run = dict(seeds=3, init=ns.init.Given(theta0), **kw)
    fast = ns.simulate(ref.model(), data, **run)
    vec = ns.simulate(ns.CustomModel(P, ref.loss_grad_vectorised, vectorised=True, charges=ref.model().charges),
                      data, **run)
    np.testing.assert_allclose(vec.theta_final.values, fast.theta_final.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(vec.charge_final.values, fast.charge_final.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(vec.loss.values, fast.loss.values, rtol=1e-12, atol=0)


def test_vectorised_contract(data):
    with pytest.raises(ns.ConfigError, match="depend on that row of Theta only"):
        ns.simulate(ns.CustomModel(P, _mixes_seeds, vectorised=True), data, dynamics="gd", h=0.1, n_steps=2)
    with pytest.raises(ns.ConfigError, match=rf"must be \(1,\) and \(1, {P}\)"):
        ns.simulate(ns.CustomModel(P, lambda T, X, Y: (T.sum(axis=1), T[:, :3]), vectorised=True), data,
                    dynamics="gd", h=0.1, n_steps=2)
    with pytest.raises(ns.ConfigError, match="vectorised=True"):
        ns.CustomModel(P, ref.loss_grad, vectorised=True)


def test_discover_checks_function_charges(model, data):
    """Discovery checks a function charge against every per-point field: the D entries written as q(θ) are
    laws (⟨∇q, ∇ℓ_n⟩ at finite-difference round-off), |θ|² is not (O(1) relative)."""
    res = ns.discover(model, data, points=1)
    found = {c["charge"]: c for c in res.charges}
    assert found["fD"]["in_span"] and found["fD"]["distance"] < 1e-7, str(res)
    assert not found["norm"]["in_span"] and found["norm"]["distance"] > 1e-2, str(res)
    assert "⟨∇q, ∇ℓ_n⟩" in str(res)
