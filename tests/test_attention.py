"""Multi-head self-attention: gradients, the QK/VO charges and their laws (theory.md §8).

Oracles: central finite differences of the model's NumPy forward pass; an independent NumPy
forward/backward written here (einsum, no shared code with the kernel); the symmetry identities
G_QW_Qᵀ = W_KG_Kᵀ and G_VW_Vᵀ = W_OᵀG_O that make the charges conserved; gradient descent's exact
one-step law; RK4's order on a step-size ladder; the e^{−t/τ} law of the isometric charges.
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError
from noether_sim.kernels.attention import CHUNK
from noether_sim.kernels.entries import ensemble_charges, ensemble_loss_grad
from noether_sim.ladder import CONSERVED, analyse_ladder, run_ladder, summarise_verdicts
from noether_sim.laws import BASIS_LAW

CASES = [dict(heads=1, tokens=4), dict(heads=2, tokens=4, causal=True),
         dict(heads=2, tokens=3, readout="last"), dict(heads=2, d_k=2, d_v=5, tokens=4, causal=True, readout=1, d_out=3)]


def make(**kw):
    return ns.SelfAttention(6, **kw)


def kernel_grad(model, data, theta):
    X, Y = model.kernel_data(data)
    ints = model.descriptor()
    return ensemble_loss_grad(int(ints[0]), np.atleast_2d(theta), ints, model.constants(data), X, Y)


def numpy_loss_grad(model, data, theta):
    """An independent forward and backward pass: batched einsum over (sequence, token)."""
    N, T, d = data.n_points, model.tokens, model.d_model
    X = data.X.T.reshape(N, T, d)
    r = model.readout_token
    rows = np.arange(T) if r < 0 else np.array([r])
    Y = data.Y.T.reshape(N, len(rows), model.d_out)
    mask = np.tril(np.ones((T, T))) if model.causal else np.ones((T, T))
    cache, F = [], 0.0
    pos = 0
    for _h in range(model.heads):
        mats = []
        for shape in [(model.d_k, d), (model.d_k, d), (model.d_v, d), (model.d_out, model.d_v)]:
            mats.append(theta[pos: pos + shape[0] * shape[1]].reshape(shape))
            pos += shape[0] * shape[1]
        WQ, WK, WV, WO = mats
        Q, K, V = (np.einsum("nti,ai->nta", X, W) for W in (WQ, WK, WV))
        S = np.einsum("nta,nsa->nts", Q, K) / np.sqrt(model.d_k)
        S = np.where(mask > 0, S, -1e300)
        E = np.exp(S - S.max(-1, keepdims=True)) * mask
        A = E / E.sum(-1, keepdims=True)
        Z = np.einsum("nts,nsc->ntc", A, V)
        F = F + np.einsum("ntc,oc->nto", Z, WO)
        cache.append((WQ, WK, WV, WO, Q, K, V, A, Z))
    R = F[:, rows] - Y
    loss = 0.5 * np.sum(R ** 2) / N
    dF = np.zeros_like(F)
    dF[:, rows] = R / N
    grads = []
    for WQ, WK, WV, WO, Q, K, V, A, Z in cache:
        gO = np.einsum("nto,ntc->oc", dF, Z)
        dZ = np.einsum("nto,oc->ntc", dF, WO)
        dA = np.einsum("ntc,nsc->nts", dZ, V)
        dV = np.einsum("nts,ntc->nsc", A, dZ)
        dS = A * (dA - np.sum(A * dA, -1, keepdims=True)) / np.sqrt(model.d_k)
        dQ = np.einsum("nts,nsa->nta", dS, K)
        dK = np.einsum("nts,nta->nsa", dS, Q)
        grads += [np.einsum("nta,nti->ai", dQ, X), np.einsum("nsa,nsi->ai", dK, X),
                  np.einsum("nsc,nsi->ci", dV, X), gO]
    return loss, np.concatenate([g.ravel() for g in grads])


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("n", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 6, 3 * CHUNK])
@pytest.mark.parametrize("kw", CASES[1:] + [dict(heads=1, tokens=5, mlp_hidden=4)],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_gradient_in_chunks_of_sequences_matches_the_numpy_backward(kw, n):
    """More sequences than one chunk of the kernel (CHUNK): the chunks' sums, a ragged last chunk."""
    model = make(**kw)
    data = ns.data.sequences(model, n, seed=5, noise=0.1)
    theta = 0.5 * np.random.default_rng(n).standard_normal(model.n_params)
    loss, g = kernel_grad(model, data, theta)
    if model.m:  # the transformer block: the model's own forward for the loss, finite differences for g
        assert loss[0] == pytest.approx(model.loss_value(theta, data), rel=1e-13)
        step = 1e-6
        fd = np.array([(model.loss_value(theta + e, data) - model.loss_value(theta - e, data)) / (2 * step)
                       for e in step * np.eye(model.n_params)])
        assert np.abs(fd - g[0]).max() < 1e-6 * np.abs(g[0]).max()
        return
    ref_loss, ref_g = numpy_loss_grad(model, data, theta)
    assert loss[0] == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(g[0], ref_g, rtol=1e-11, atol=1e-13 * np.abs(ref_g).max())

@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_gradient_matches_finite_differences_and_an_independent_numpy_backward(kw):
    model = make(**kw)
    data = ns.data.sequences(model, 7, seed=2, noise=0.1)
    theta = 0.5 * np.random.default_rng(3).standard_normal(model.n_params)
    loss, g = kernel_grad(model, data, theta)
    ref_loss, ref_g = numpy_loss_grad(model, data, theta)
    assert loss[0] == pytest.approx(ref_loss, rel=1e-13)
    assert loss[0] == pytest.approx(model.loss_value(theta, data), rel=1e-13)
    np.testing.assert_allclose(g[0], ref_g, rtol=1e-11, atol=1e-13 * np.abs(ref_g).max())
    step = 1e-6
    fd = np.array([(model.loss_value(theta + e, data) - model.loss_value(theta - e, data)) / (2 * step)
                   for e in step * np.eye(model.n_params)])
    assert np.abs(fd - g[0]).max() < 1e-6 * np.abs(g[0]).max()


def test_symmetry_identities_hold_in_this_orientation_and_not_in_the_other():
    """G_QW_Qᵀ = W_KG_Kᵀ and G_VW_Vᵀ = W_OᵀG_O (the generators of GL(d_k), GL(d_v)) at round-off; the
    transposed orientation (W_QᵀG_Q vs G_KᵀW_K) is not a symmetry and fails by O(1)."""
    model = make(heads=2, tokens=4, causal=True)
    data = ns.data.sequences(model, 9, seed=4)
    theta = np.random.default_rng(5).standard_normal(model.n_params)
    _, g = kernel_grad(model, data, theta)
    for h in range(model.heads):
        WQ, WK, WV, WO = model.head_weights(theta, h)
        GQ, GK, GV, GO = model.head_weights(g[0], h)
        size = np.abs(GQ @ WQ.T).max()
        assert np.abs(GQ @ WQ.T - WK @ GK.T).max() < 1e-13 * size
        assert np.abs(GV @ WV.T - WO.T @ GO).max() < 1e-13 * np.abs(GV @ WV.T).max()
        assert np.abs(WQ.T @ GQ - GK.T @ WK).max() > 1e-3 * np.abs(WQ.T @ GQ).max()


def test_charge_kernel_matches_its_formula():
    model = make(heads=2, d_k=2, d_v=5, d_out=3, tokens=2)
    theta = np.random.default_rng(0).standard_normal((3, model.n_params))
    ints = model.descriptor()
    q = ensemble_charges(int(ints[0]), theta, ints, model.constants(), model.n_charges)
    for s in range(3):
        parts = []
        for h in range(model.heads):
            WQ, WK, WV, WO = model.head_weights(theta[s], h)
            parts += [(WQ @ WQ.T - WK @ WK.T).ravel(), (WV @ WV.T - WO.T @ WO).ravel()]
        np.testing.assert_allclose(q[s], np.concatenate(parts), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- laws under the dynamics

def test_gradient_descent_exact_law_holds_at_round_off():
    model = make(heads=2, tokens=4, causal=True)
    data = ns.data.sequences(model, 16, seed=2)
    ds = ns.simulate(model, data, dynamics="gd", h=0.02, n_steps=200, seeds=3)
    # a real drift, explained by the law to round-off: residual ≤ 10 floors (√steps·ε·scale)
    assert float(ds.drift.isel(time=-1).min()) > 1e-5
    floor = np.sqrt(200) * np.finfo(float).eps * ds.scale.isel(time=-1)
    assert np.all(ds.residual.isel(time=-1) < 10 * floor)
    v = ns.judge(ds)
    assert np.all(v.verdict.values == CONSERVED) and np.all(v.basis.values == BASIS_LAW)


def test_minibatch_gradient_descent_keeps_the_exact_law():
    model = make(heads=2, tokens=3, readout="last")
    data = ns.data.sequences(model, 16, seed=1)
    ds = ns.simulate(model, data, dynamics="gd", h=0.02, n_steps=100, seeds=2, batch_size=4)
    floor = np.sqrt(100) * np.finfo(float).eps * ds.scale.isel(time=-1)
    assert np.all(ds.residual.isel(time=-1) < 10 * floor)


def test_rk4_ladder_converges_at_order_four_to_a_conserved_charge():
    model = make(heads=2, tokens=4, causal=True)
    data = ns.data.sequences(model, 12, seed=3)
    ladder = run_ladder(model, data, step_sizes=[0.0125, 0.00625, 0.003125, 0.0015625], method="rk4",
                        t_end=0.5, save_every=0.5, seeds=4, init=init.Gaussian(scale=1.0))
    rows = summarise_verdicts(analyse_ladder(ladder))
    assert {r["charge"] for r in rows} == {"QK0", "VO0", "QK1", "VO1"}
    for r in rows:
        assert r["verdict"] == CONSERVED, r
        assert 3.5 < r["fitted_order"] < 4.7, r
    drift = ladder.drift.isel(time=-1).max(["seed", "charge"]).values
    assert drift[0] > 1e-9 and np.all(np.diff(np.log2(drift)) < -3.5)  # each halving gains ~16×


def test_gauss_legendre_conserves_the_charges_at_any_step():
    model = make(heads=2, tokens=3)
    data = ns.data.sequences(model, 8, seed=1)
    ds = ns.simulate(model, data, method="gl2", h=0.05, n_steps=20, seeds=2)
    assert np.all(ds.drift.isel(time=-1) < 100 * np.finfo(float).eps * ds.scale.isel(time=-1))


def test_isometric_charges_decay_exactly_under_a_conformal_symplectic_splitting():
    model = make(heads=2, tokens=3)
    data = ns.data.sequences(model, 8, seed=1)
    run = dict(dynamics="momentum", tau=0.5, h=0.02, n_steps=100, seeds=2, velocity=0.5)  # J(0) ≠ 0
    ds = ns.simulate(model, data, method="verlet", **run)
    names = [str(c) for c in ds.charge.values]
    assert names == ["QK0", "VO0", "QK1", "VO1", "J_QK0", "J_VO0", "J_QK1", "J_VO1"]
    J = ds.drift.sel(charge=names[4:]).isel(time=-1)
    assert np.all(J < 100 * np.finfo(float).eps * ds.scale.sel(charge=names[4:]).isel(time=-1))
    assert float(ds.drift.sel(charge=names[:4]).isel(time=-1).min()) > 1e-3  # momentum breaks QK/VO
    assert float(np.abs(ds.charge_initial.sel(component=ds.component_charge.isin(names[4:]))).max()) > 1e-2
    rk4 = ns.simulate(model, data, method="rk4", **run)  # not conformal symplectic: a discretisation drift
    assert np.all(rk4.drift.sel(charge=names[4:]).isel(time=-1) > 1e3 * J)


# ---------------------------------------------------------------- data and bad input

def test_sequences_from_user_tokens_and_targets():
    model = make(heads=2, tokens=3, readout="last")
    tokens = np.random.default_rng(0).standard_normal((5, 3, 6))
    data = ns.data.sequences(model, tokens=tokens, targets=np.ones((5, 6)))
    np.testing.assert_array_equal(data.X[:, 2], tokens[2].ravel())
    assert data.Y.shape == (6, 5)
    teacher = ns.data.sequences(model, tokens=tokens, seed=3)  # targets from a teacher on your tokens
    np.testing.assert_array_equal(teacher.X, data.X)


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_model=6, heads=4, tokens=3), "heads=4"),
    (dict(d_model=6, heads=2, tokens=0), "tokens=0"),
    (dict(d_model=6, heads=2), "tokens=None"),
    (dict(d_model=0, tokens=3), "d_model=0"),
    (dict(d_model=6, heads=2, tokens=3, readout=3), "readout=3"),
    (dict(d_model=6, heads=2, tokens=3, readout="middle"), "readout='middle'"),
    (dict(d_model=6, heads=2, d_k=0, tokens=3), "d_k=0"),
])
def test_bad_architecture_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ns.SelfAttention(**kwargs)


def test_data_that_does_not_fit_is_refused_before_any_work():
    model = make(heads=2, tokens=3)
    other = ns.data.sequences(ns.SelfAttention(4, heads=2, tokens=3), 5)
    with pytest.raises(ConfigError, match="d_model=6"):
        ns.simulate(model, other, h=0.1, n_steps=1)
    with pytest.raises(ConfigError, match="tokens="):
        ns.data.sequences(model, tokens=np.zeros((5, 3, 4)))
    with pytest.raises(ConfigError, match="targets="):
        ns.data.sequences(model, tokens=np.zeros((5, 3, 6)), targets=np.zeros((5, 6)))
    with pytest.raises(ConfigError, match="n_sequences"):
        ns.data.sequences(model)
    with pytest.raises(ConfigError, match="track_ntk"):
        ns.simulate(model, ns.data.sequences(model, 5), h=0.1, n_steps=1, track_ntk=True, watch_seeds=[0])


# ---------------------------------------------------------------- discovery

def test_jet_gradient_of_discovery_matches_the_kernel():
    from noether_sim import _jets as J

    model = make(heads=2, tokens=3, causal=True, readout="last")
    data = ns.data.sequences(model, 5, seed=0)
    theta = np.random.default_rng(0).standard_normal((1, model.n_params))
    g = J.weighted_gradient(model, J.Jet(theta[None]), data.X, data.Y, np.full((1, 5), 0.2)).value
    np.testing.assert_allclose(g, kernel_grad(model, data, theta)[1], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("heads,d_k,d_v,flow,expected", [
    (1, 2, 2, "gradient", 6),      # d_k(d_k + 1)/2 + d_v(d_v + 1)/2 per head
    (2, 2, 2, "gradient", 12),
    (1, 3, 2, "gradient", 9),
    (1, 2, 2, "momentum", 2),      # d_k(d_k − 1)/2 + d_v(d_v − 1)/2 rotations per head
])
def test_discovery_counts_the_catalogues_laws(heads, d_k, d_v, flow, expected):
    model = ns.SelfAttention(4, heads=heads, d_k=d_k, d_v=d_v, tokens=3, causal=d_k == 3,
                             readout="last" if d_k == 3 else "sequence")
    result = ns.discover(model, flow=flow)
    assert result.count == expected, str(result)
    assert result.catalogue.independent == expected and result.catalogue.complete, str(result)


# ---------------------------------------------------------------- studies and sweeps

def _study(**model):
    return {"name": "att", "t_end": 0.25, "save_every": 0.125,
            "model": {"kind": "attention", "d_model": 4, "tokens": 3, **model},
            "data": {"kind": "sequences", "n_points": 8}, "seeds": {"count": 2},
            "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.0625, 0.03125, 0.015625]}}}


def test_example_study_parses_and_a_study_and_sweep_run(tmp_path):
    from noether_sim.config import load_config

    cfg = load_config("examples/attention_study.toml")
    assert cfg["model"]["heads"] == 2 and cfg["data"]["kind"] == "sequences"
    ds = ns.run_study(_study(heads=2, causal=True), out=tmp_path / "s")
    assert [str(c) for c in ds.charge.values] == ["QK0", "VO0", "QK1", "VO1"]
    assert np.all(ds.verdict.values == CONSERVED)
    sweep = {**_study(), "sweep": {"model.heads": [1, 2]}}
    sw = ns.run_study(sweep, out=tmp_path / "w")
    assert sw.sizes["model.heads"] == 2


@pytest.mark.parametrize("change,match", [
    (lambda c: c["model"].update(widths=[4, 4, 4]), "model.widths"),
    (lambda c: c["model"].pop("tokens"), "model.tokens"),
    (lambda c: c["model"].update(tokens=0), "tokens"),
    (lambda c: c["model"].update(heads=3), "heads=3"),
    (lambda c: c["model"].update(activation="relu"), "model.activation"),
    (lambda c: c["model"].update(lora_rank=1), "model.lora_rank"),
    (lambda c: c["data"].update(kind="synthetic_regression"), "data.kind"),
    (lambda c: c.update(model={"kind": "mlp", "widths": [4, 4, 1]}), "data.kind"),
    (lambda c: c.update(model={"kind": "deep_linear", "widths": [4, 4, 1], "tokens": 3}), "model.tokens"),
])
def test_bad_study_configuration_is_refused(change, match):
    from noether_sim.config import parse_config

    cfg = _study()
    change(cfg)
    with pytest.raises(ConfigError, match=match):
        parse_config(cfg)
