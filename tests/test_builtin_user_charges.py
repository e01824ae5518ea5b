"""User charges on every built-in model (``model.with_charges``, issue 20 item 2): LoRA, SelfAttention (and
the transformer block), ResidualMLP, and MLPs with biases or a layer-normalised first layer.

Oracle: a catalogue entry written by hand as ½θᵀSθ (or ⟨v, θ⟩), its S built here from the model's parameter
layout (``unflatten`` of the indices 0 … P−1), independently of the kernels' charge code. The kernels
evaluate it from the descriptor's trailer; it must equal the catalogue's entry, its gradient-descent law
prediction (with weight decay's factor) and heavy ball's law invariant to round-off, and the user's charges
must not steer the run (θ bit for bit the plain model's).
"""

import numba
import numpy as np
import pytest

import noether_sim as ns


def _gram(P, terms):
    """S with ½θᵀSθ = Σ sign·Σ_i θ[u_i]θ[w_i] over ``terms`` = [(sign, u, w)] (index arrays of one shape)."""
    S = np.zeros((P, P))
    for sign, u, w in terms:
        for a, b in zip(np.ravel(u), np.ravel(w)):
            S[a, b] += sign
            S[b, a] += sign
    return S


def _rows(M, a, b):  # Σ_c M[a, c]M[b, c]
    return M[a, :], M[b, :]


def _cols(M, a, b):  # Σ_c M[c, a]M[c, b]
    return M[:, a], M[:, b]


def _lora():
    model = ns.LoRA(ns.DeepLinear((3, 4, 2)), rank=2)         # adapters on both layers
    idx = [W for W, _ in model.unflatten(np.arange(model.n_params))]   # A_1, B_1, A_2, B_2
    entries = []
    for j, l in enumerate(model.layers):
        A, B = idx[2 * j], idx[2 * j + 1]
        for s, t in [(0, 0), (0, 1), (1, 1)]:  # D_l[s, t] = (B_lᵀB_l − A_lA_lᵀ)[s, t]
            S = _gram(model.n_params, [(1, *_cols(B, s, t)), (-1, *_rows(A, s, t))])
            entries.append((f"u{l}_{s}{t}", S, f"D{l}", s * model.rank + t))
    data = ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)
    return model, entries, data


def _attention():
    model = ns.SelfAttention(4, heads=2, tokens=3, mlp_hidden=3)       # a transformer block: d_k = d_v = 2
    mats = model.unflatten(np.arange(model.n_params))
    P, entries = model.n_params, []
    for h in range(model.heads):
        Q, K, V, O = (W for W, _ in mats[4 * h: 4 * h + 4])
        for a, b in [(0, 0), (0, 1)]:
            entries.append((f"qk{h}_{a}{b}", _gram(P, [(1, *_rows(Q, a, b)), (-1, *_rows(K, a, b))]), f"QK{h}",
                            a * model.d_k + b))
            entries.append((f"vo{h}_{a}{b}", _gram(P, [(1, *_rows(V, a, b)), (-1, *_cols(O, a, b))]), f"VO{h}",
                            a * model.d_v + b))
    (W1, b1), (W2, _) = mats[4 * model.heads:]
    for j in range(3):  # r[j] = |W_1[j, :]|² + b_1[j]² − |W_2[:, j]|²
        S = _gram(P, [(1, *_rows(W1, j, j)), (1, b1[j:j + 1], b1[j:j + 1]), (-1, *_cols(W2, j, j))])
        entries.append((f"r_{j}", S, "r", j))
    data = ns.data.sequences(model, 10, noise=0.1, seed=3)
    return model, entries, data


def _residual():
    model = ns.ResidualMLP(3, width=4, hidden=3, blocks=2, d_out=2, bias=True)
    layers = model.unflatten(np.arange(model.n_params))  # (W_in, b_in), (W1_1, b1_1), (W2_1, b2_1), …, (W_out, b_out)
    P, entries = model.n_params, []
    for k in (1, 2):
        (W1, b1), (W2, _) = layers[2 * k - 1], layers[2 * k]
        for j in (0, 2):  # r<k>[j] = |W1_k[j, :]|² + b1_k[j]² − |W2_k[:, j]|² (ReLU: α = 1)
            S = _gram(P, [(1, *_rows(W1, j, j)), (1, b1[j:j + 1], b1[j:j + 1]), (-1, *_cols(W2, j, j))])
            entries.append((f"r{k}_{j}", S, f"r{k}", j))
    (Win, bin_), (Wout, _) = layers[0], layers[-1]
    a, b = 0, 1  # C[0, 1] = (W_outᵀW_out + Σ W1_kᵀW1_k − W_inW_inᵀ − Σ W2_kW2_kᵀ − b_in b_inᵀ − Σ b2_k b2_kᵀ)[0, 1]
    terms = [(1, *_cols(Wout, a, b)), (-1, *_rows(Win, a, b)), (-1, bin_[a:a + 1], bin_[b:b + 1])]
    for k in (1, 2):
        (W1, _), (W2, b2) = layers[2 * k - 1], layers[2 * k]
        terms += [(1, *_cols(W1, a, b)), (-1, *_rows(W2, a, b)), (-1, b2[a:a + 1], b2[b:b + 1])]
    entries.append(("c01", _gram(P, terms), "C", a * model.width + b))
    data = ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)
    return model, entries, data


def _layer_norm_mlp():
    model = ns.MLP((3, 4, 2), bias=True, activation="relu", normalisation="layer")
    (W1, b1), _ = model.unflatten(np.arange(model.n_params))
    P = model.n_params
    entries = [("n_user", _gram(P, [(1, W1, W1), (1, b1, b1)]), "N", 0)]  # |W_1|² + |b_1|²
    for c in (0, 2):  # M[c] = Σ_k W_1[k, c]: a linear charge
        v = np.zeros(P)
        v[W1[:, c]] = 1.0
        entries.append((f"m_{c}", v, "M", c))
    data = ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)
    return model, entries, data


def _biased_mlp():
    """An MLP with biases: the trailer's values follow its floats, where bias rates would be read."""
    model = ns.MLP((3, 4, 2), bias=True, activation="relu")
    (W1, b1), (W2, _) = model.unflatten(np.arange(model.n_params))
    P = model.n_params
    entries = [(f"r_{j}", _gram(P, [(1, *_rows(W1, j, j)), (1, b1[j:j + 1], b1[j:j + 1]), (-1, *_cols(W2, j, j))]),
                "r1", j) for j in (0, 3)]
    data = ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)
    return model, entries, data


CASES = {"lora": _lora, "attention_block": _attention, "residual": _residual, "layer_norm_mlp": _layer_norm_mlp,
         "biased_mlp": _biased_mlp}


def _charge(name, S):
    return ns.Charge.quadratic(S, name) if S.ndim == 2 else ns.Charge.linear(S, name)


def _by_name(ds, name, var):
    return ds[var].values[..., ds.component_charge.values == name]


def _compare(ours, plain, entries, variables):
    scale = np.max(np.abs(plain.charge_final.values))
    for name, _, group, k in entries:
        for var in variables:
            cat, mine = _by_name(plain, group, var)[..., k], _by_name(ours, name, var)[..., 0]
            assert np.array_equal(np.isnan(cat), np.isnan(mine)), (name, var)
            assert np.any(np.isfinite(mine)), (name, var)  # the law is really compared
            np.testing.assert_allclose(mine, cat, rtol=0, atol=1e-12 * scale, equal_nan=True, err_msg=f"{name} {var}")


@pytest.mark.parametrize("case", list(CASES))
def test_user_entry_equals_catalogue_under_gd(case):
    """GD with weight decay: the user's charge, its exact-law prediction and its verdict are the catalogue
    entry's to ~1e-12 of the charges' size; θ is the plain model's bit for bit."""
    base, entries, data = CASES[case]()
    model = base.with_charges(*[_charge(n, S) for n, S, _, _ in entries])
    assert [g.name for g in model.charge_groups][-len(entries):] == [e[0] for e in entries]
    theta0 = np.random.default_rng(1).standard_normal((3, base.n_params)) * 0.6
    run = dict(dynamics="gd", h=0.05, n_steps=30, weight_decay=0.2, seeds=3, init=ns.init.Given(theta0),
               watch_seeds=[0, 1, 2])
    ours, plain = ns.simulate(model, data, **run), ns.simulate(base, data, **run)
    np.testing.assert_array_equal(ours.theta_final.values, plain.theta_final.values)
    np.testing.assert_array_equal(ours.loss.values, plain.loss.values)
    _compare(ours, plain, entries, ("charge_initial", "charge_final", "charge_watch", "predicted_watch"))
    v_ours, v_plain = ns.judge(ours), ns.judge(plain)
    for name, _, group, _ in entries:
        assert list(v_ours.verdict.sel(charge=name).values) == list(v_plain.verdict.sel(charge=group).values)


@pytest.mark.parametrize("case", ["lora", "attention_block", "residual"])
def test_user_entry_equals_catalogue_under_heavy_ball(case):
    """Heavy ball with weight decay and the law tracked: the user's law invariant is the catalogue entry's;
    the isometric charges sit behind the user's with their values unchanged."""
    base, entries, data = CASES[case]()
    model = base.with_charges(*[_charge(n, S) for n, S, _, _ in entries])
    theta0 = np.random.default_rng(2).standard_normal((2, base.n_params)) * 0.6
    run = dict(dynamics="heavy_ball", learning_rate=0.02, beta=0.9, n_steps=30, weight_decay=0.1, track_law=True,
               seeds=2, init=ns.init.Given(theta0), watch_seeds=[0, 1])
    ours, plain = ns.simulate(model, data, **run), ns.simulate(base, data, **run)
    np.testing.assert_array_equal(ours.theta_final.values, plain.theta_final.values)
    _compare(ours, plain, entries, ("charge_final", "charge_watch", "law_final"))
    for g in base.isometric_groups():
        if g.name in plain.charge.values:
            np.testing.assert_array_equal(_by_name(ours, g.name, "charge_final"), _by_name(plain, g.name, "charge_final"))


@pytest.mark.parametrize("case", ["lora", "attention_block", "residual", "layer_norm_mlp"])
def test_symmetry_check_and_refusals(case):
    """The check holds for the catalogue entries and refutes |θ|² claimed conserved (ConfigError with the
    measured value); a charge of the wrong size is refused naming n_params."""
    base, entries, data = CASES[case]()
    P = base.n_params
    model = base.with_charges(*[_charge(n, S) for n, S, _, _ in entries], ns.Charge.quadratic(np.eye(P), "norm"))
    report = {r["charge"]: r for r in model.check_symmetries(data)}
    for name, *_ in entries:
        assert report[name]["holds"], report[name]["message"]
    assert not report["norm"]["holds"] and report["norm"]["max_abs"] > 1e-3 * report["norm"]["scale"]
    with pytest.raises(ns.ConfigError, match=r"refutes it.*largest \|θᵀS∇L\| = [0-9.e+-]+"):
        ns.simulate(base.with_charges(ns.Charge.quadratic(np.eye(P), "norm", claim="conserved")), data,
                    dynamics="gd", h=0.05, n_steps=2)
    with pytest.raises(ns.ConfigError, match=rf"charges\[0\].*has size {P + 1} but the model has n_params = {P}"):
        base.with_charges(ns.Charge.linear(np.ones(P + 1), "v"))


# ---- discovery checks the user's charges as it checks the catalogue ----

@numba.njit(cache=True)
def _d1_entry_fn(theta):  # D1[0, 1] of DeepLinear((3, 4, 2)) = (W_2ᵀW_2 − W_1W_1ᵀ)[0, 1]: conserved
    W1 = theta[:12].reshape((4, 3))
    W2 = theta[12:].reshape((2, 4))
    return np.array([W2[0, 0] * W2[0, 1] + W2[1, 0] * W2[1, 1] - np.sum(W1[0] * W1[1])])


@numba.njit(cache=True)
def _norm_fn(theta):  # |θ|²: not conserved
    return np.array([np.sum(theta * theta)])


def _deep_linear():
    model = ns.DeepLinear((3, 4, 2))
    (W1, _), (W2, _) = model.unflatten(np.arange(model.n_params))
    P = model.n_params
    entries = [(f"d{a}{b}", _gram(P, [(1, *_cols(W2, a, b)), (-1, *_rows(W1, a, b))]), "D1", a * 4 + b)
               for a, b in [(0, 0), (0, 1), (2, 3)]]
    return model, entries, ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)


def _relu_mlp():
    model = ns.MLP((3, 4, 2), activation="relu")
    (W1, _), (W2, _) = model.unflatten(np.arange(model.n_params))
    entries = [(f"r_{j}", _gram(model.n_params, [(1, *_rows(W1, j, j)), (-1, *_cols(W2, j, j))]), "r1", j)
               for j in (0, 3)]
    return model, entries, ns.data.synthetic_regression(3, 2, 12, noise=0.1, seed=3)


def _small_attention():
    model = ns.SelfAttention(2, heads=1, tokens=2)
    Q, K, V, O = (W for W, _ in model.unflatten(np.arange(model.n_params)))
    P = model.n_params
    entries = [("qk01", _gram(P, [(1, *_rows(Q, 0, 1)), (-1, *_rows(K, 0, 1))]), "QK0", 1),
               ("vo11", _gram(P, [(1, *_rows(V, 1, 1)), (-1, *_cols(O, 1, 1))]), "VO0", 3)]
    return model, entries, ns.data.sequences(model, 8, noise=0.1, seed=3)


DISCOVER = {"deep_linear": _deep_linear, "mlp": _relu_mlp, "lora": _lora, "attention": _small_attention,
            "layer_norm_mlp": _layer_norm_mlp}


@pytest.mark.parametrize("case", list(DISCOVER))
def test_discover_checks_user_charges(case):
    """True user charges (catalogue entries as S or v) are reported conserved with a residual at round-off,
    |θ|² not conserved with an O(1) residual; the catalogue's own count and completeness are unchanged."""
    base, entries, data = DISCOVER[case]()
    P = base.n_params
    model = base.with_charges(*[_charge(n, S) for n, S, _, _ in entries], ns.Charge.quadratic(np.eye(P), "norm"))
    res, plain = ns.discover(model, data, points=1), ns.discover(base, data, points=1)
    groups = {g["name"]: g for g in res.catalogue.groups}
    for name, *_ in entries:
        assert groups[name]["user"] and groups[name]["conserved"], str(res)
        assert groups[name]["residual"] < 1e-12, str(res)
    assert groups["norm"]["user"] and not groups["norm"]["conserved"] and groups["norm"]["residual"] > 1e-3
    assert "your charge norm is not conserved" in str(res)
    assert [g for g in res.catalogue.groups if not g.get("user")] == plain.catalogue.groups
    assert (res.count, res.catalogue.independent, res.catalogue.complete) == \
        (plain.count, plain.catalogue.independent, plain.catalogue.complete)


def test_discover_checks_user_function_charges():
    """Function charges on a built-in model: the D1 entry as a compiled q is conserved (⟨∇q, ∇ℓ⟩ at the
    central differences' round-off), |θ|² is not; linear user charges are also checked under momentum flow,
    quadratic ones noted as unchecked there."""
    base, _, data = _deep_linear()
    P = base.n_params
    model = base.with_charges(ns.Charge.function(_d1_entry_fn, "fD", n_params=P),
                              ns.Charge.function(_norm_fn, "fnorm", n_params=P))
    res = ns.discover(model, data, points=1)
    groups = {g["name"]: g for g in res.catalogue.groups}
    assert groups["fD"]["conserved"] and groups["fD"]["residual"] < 1e-7, str(res)
    assert not groups["fnorm"]["conserved"] and groups["fnorm"]["residual"] > 1e-2, str(res)
    assert "⟨∇q, ∇ℓ_n⟩, central differences" in str(res)
    ln, entries, ln_data = _layer_norm_mlp()  # N (quadratic), M[0], M[2] (linear, conserved)
    v = np.zeros(ln.n_params)
    v[-2:] = 1.0  # the output biases' sum: not conserved
    mom = ns.discover(ln.with_charges(*[_charge(n, S) for n, S, _, _ in entries], ns.Charge.linear(v, "sum_b2")),
                      ln_data, points=1, flow="momentum")
    g = {g["name"]: g for g in mom.catalogue.groups}
    assert g["m_0"]["conserved"] and g["m_2"]["conserved"] and g["m_0"]["residual"] < 1e-12, str(mom)
    assert not g["sum_b2"]["conserved"] and "n_user" not in g
    assert any("your charge n_user is not checked under flow='momentum'" in n for n in mom.catalogue.notes)
