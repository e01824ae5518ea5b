"""The transformer block: self-attention with its residual, then a residual ReLU MLP (SelfAttention(mlp_hidden=m)).

Oracles: central finite differences of the model's NumPy forward; an independent NumPy forward/backward
written here (einsum; no code shared with the kernel or the model); the charges' formulas; gradient
descent's exact one-step law checked step by step from the oracle's gradient; RK4's order on a ladder;
discovery's count against the catalogue; and Głuch & Urbanke's claim (b) on the block.
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError
from noether_sim.kernels.entries import ensemble_charges, ensemble_loss_grad
from noether_sim.ladder import CONSERVED, analyse_ladder, run_ladder, summarise_verdicts

CASES = [dict(heads=1, tokens=4, mlp_hidden=5), dict(heads=2, tokens=4, causal=True, mlp_hidden=3),
         dict(heads=2, tokens=3, readout="last", mlp_hidden=7), dict(heads=2, d_k=2, d_v=5, tokens=4, causal=True,
                                                                     readout=1, mlp_hidden=4)]


def kernel_grad(model, data, theta):
    X, Y = model.kernel_data(data)
    ints = model.descriptor()
    return ensemble_loss_grad(int(ints[0]), np.atleast_2d(theta), ints, model.constants(data), X, Y)


def numpy_block(model, data, theta):
    """Independent loss and gradient: U = X + Σ_h A_h V_h W_Oᵀ, F = U + relu(UW_1ᵀ + b_1)W_2ᵀ (einsum)."""
    N, T, d, m = data.n_points, model.tokens, model.d_model, model.mlp_hidden
    X = data.X.T.reshape(N, T, d)
    r = model.readout_token
    rows = np.arange(T) if r < 0 else np.array([r])
    Y = data.Y.T.reshape(N, len(rows), d)
    mask = np.tril(np.ones((T, T))) if model.causal else np.ones((T, T))
    pos, cache, U = 0, [], X.copy()

    def take(shape):
        nonlocal pos
        out = theta[pos: pos + int(np.prod(shape))].reshape(shape)
        pos += int(np.prod(shape))
        return out
    for _h in range(model.heads):
        WQ, WK, WV, WO = take((model.d_k, d)), take((model.d_k, d)), take((model.d_v, d)), take((d, model.d_v))
        Q, K, V = (np.einsum("nti,ai->nta", X, W) for W in (WQ, WK, WV))
        S = np.where(mask > 0, np.einsum("nta,nsa->nts", Q, K) / np.sqrt(model.d_k), -1e300)
        E = np.exp(S - S.max(-1, keepdims=True)) * mask
        A = E / E.sum(-1, keepdims=True)
        Z = np.einsum("nts,nsc->ntc", A, V)
        U = U + np.einsum("ntc,oc->nto", Z, WO)
        cache.append((WO, Q, K, V, A, Z))
    W1, b1, W2 = take((m, d)), take((m,)), take((d, m))
    Zh = np.einsum("nti,ji->ntj", U, W1) + b1
    Hh = np.maximum(Zh, 0.0)
    F = U + np.einsum("ntj,oj->nto", Hh, W2)
    R = F[:, rows] - Y
    loss = 0.5 * np.sum(R ** 2) / N
    dF = np.zeros_like(F)
    dF[:, rows] = R / N
    gW2 = np.einsum("nto,ntj->oj", dF, Hh)
    dZh = np.einsum("nto,oj->ntj", dF, W2) * (Zh > 0)
    gW1, gb1 = np.einsum("ntj,nti->ji", dZh, U), dZh.sum((0, 1))
    dU = dF + np.einsum("ntj,ji->nti", dZh, W1)
    grads = []
    for WO, Q, K, V, A, Z in cache:
        dZ = np.einsum("nto,oc->ntc", dU, WO)
        dA = np.einsum("ntc,nsc->nts", dZ, V)
        dS = A * (dA - np.sum(A * dA, -1, keepdims=True)) / np.sqrt(model.d_k)
        grads += [np.einsum("nts,nsa,nti->ai", dS, K, X), np.einsum("nts,nta,nsi->ai", dS, Q, X),
                  np.einsum("nts,ntc,nsi->ci", A, dZ, X), np.einsum("nto,ntc->oc", dU, Z)]
    grads += [gW1, gb1, gW2]
    return loss, np.concatenate([g.ravel() for g in grads])


def numpy_charges(model, theta):
    parts = []
    for h in range(model.heads):
        WQ, WK, WV, WO = model.head_weights(theta, h)
        parts += [(WQ @ WQ.T - WK @ WK.T).ravel(), (WV @ WV.T - WO.T @ WO).ravel()]
    W1, b1, W2 = model.mlp_weights(theta)
    return np.concatenate(parts + [(W1 ** 2).sum(1) + b1 ** 2 - (W2 ** 2).sum(0)])


# ---------------------------------------------------------------- gradients and charges

@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_block_gradient_matches_finite_differences_and_an_independent_numpy_backward(kw):
    model = ns.SelfAttention(6, **kw)
    data = ns.data.sequences(model, 7, seed=2, noise=0.1)
    theta = 0.5 * np.random.default_rng(3).standard_normal(model.n_params)
    loss, g = kernel_grad(model, data, theta)
    ref_loss, ref_g = numpy_block(model, data, theta)
    assert loss[0] == pytest.approx(ref_loss, rel=1e-13)
    assert loss[0] == pytest.approx(model.loss_value(theta, data), rel=1e-13)
    np.testing.assert_allclose(g[0], ref_g, rtol=1e-11, atol=1e-13 * np.abs(ref_g).max())
    step = 1e-6
    fd = np.array([(model.loss_value(theta + e, data) - model.loss_value(theta - e, data)) / (2 * step)
                   for e in step * np.eye(model.n_params)])
    assert np.abs(fd - g[0]).max() < 1e-6 * np.abs(g[0]).max()


def test_block_charges_match_their_formula_and_the_rescale_identity_holds():
    model = ns.SelfAttention(6, heads=2, tokens=3, mlp_hidden=5)
    data = ns.data.sequences(model, 9, seed=4)
    theta = np.random.default_rng(0).standard_normal((3, model.n_params))
    ints = model.descriptor()
    q = ensemble_charges(int(ints[0]), theta, ints, model.constants(), model.n_charges)
    for s in range(3):
        np.testing.assert_allclose(q[s], numpy_charges(model, theta[s]), rtol=1e-13, atol=1e-13)
    # the symmetry behind r: ⟨w_in, g_in⟩ + b g_b = ⟨w_out, g_out⟩ per neuron, at round-off
    _, g = kernel_grad(model, data, theta[0])
    W1, b1, W2 = model.mlp_weights(theta[0])
    G1, gb, G2 = model.mlp_weights(g[0])
    lhs, rhs = (W1 * G1).sum(1) + b1 * gb, (W2 * G2).sum(0)
    assert np.abs(lhs - rhs).max() < 1e-12 * np.abs(lhs).max()


def test_jet_gradient_of_discovery_matches_the_kernel_for_a_block():
    from noether_sim import _jets as J

    model = ns.SelfAttention(6, heads=2, tokens=3, causal=True, readout="last", mlp_hidden=4)
    data = ns.data.sequences(model, 5, seed=0)
    theta = np.random.default_rng(0).standard_normal((1, model.n_params))
    g = J.weighted_gradient(model, J.Jet(theta[None]), data.X, data.Y, np.full((1, 5), 0.2)).value
    np.testing.assert_allclose(g, kernel_grad(model, data, theta)[1], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the dynamics

def test_block_runs_under_every_dynamics_family_and_keeps_its_laws():
    model = ns.SelfAttention(4, heads=2, tokens=3, mlp_hidden=3)
    data = ns.data.sequences(model, 8, seed=1)
    names = ["QK0", "VO0", "QK1", "VO1", "r"]
    gl = ns.simulate(model, data, method="gl2", h=0.01, n_steps=10, seeds=4)  # keeps quadratic charges exactly
    assert [str(c) for c in gl.charge.values] == names
    # where a ReLU kink falls inside a step the implicit solve may not converge: that seed stops with a
    # failure status (measured: 1 of these 4), never a silently wrong value
    ok = gl.status.values == 0
    assert ok.sum() >= 2 and np.all(np.isnan(gl.drift.isel(time=-1).values[~ok]))
    assert np.all(gl.drift.isel(time=-1)[ok] < 100 * np.finfo(float).eps * gl.scale.isel(time=-1)[ok])
    mb = ns.simulate(model, data, dynamics="gd", h=0.02, n_steps=50, seeds=2, batch_size=4)
    assert np.all(mb.residual.isel(time=-1) < 10 * np.sqrt(50) * np.finfo(float).eps * mb.scale.isel(time=-1))
    mom = ns.simulate(model, data, dynamics="momentum", method="verlet", tau=0.5, h=0.02, n_steps=50, seeds=2,
                      velocity=0.5)
    assert [str(c) for c in mom.charge.values] == names + ["J_QK0", "J_VO0", "J_QK1", "J_VO1"]  # no J for r
    iso = ["J_QK0", "J_VO0", "J_QK1", "J_VO1"]
    J = mom.drift.sel(charge=iso).isel(time=-1).values
    assert np.all(J < 100 * np.finfo(float).eps * mom.scale.sel(charge=iso).isel(time=-1).values)
    for dyn, extra in (("adam", {}), ("heavy_ball", {"tau": 0.5})):
        ds = ns.simulate(model, data, dynamics=dyn, h=0.01, n_steps=20, seeds=2, **extra)
        assert np.all(np.isfinite(ds.loss.values)) and ds.loss.isel(time=-1).max() < ds.loss.isel(time=0).max()


@pytest.mark.parametrize("kw,expected", [(dict(heads=1, mlp_hidden=3), 9),   # 3 + 3 (QK, VO) + 3 neurons
                                         (dict(heads=2, mlp_hidden=2), 14)])  # 2·(3 + 3) + 2
def test_discovery_counts_the_blocks_catalogue(kw, expected):
    model = ns.SelfAttention(4, d_k=2, d_v=2, tokens=3, **kw)
    result = ns.discover(model, seed=0)
    assert result.count == expected, str(result)
    assert result.catalogue.independent == expected and result.catalogue.complete, str(result)


def test_discovery_under_momentum_finds_only_the_heads_rotations():
    model = ns.SelfAttention(4, heads=1, d_k=2, d_v=2, tokens=3, mlp_hidden=3)
    result = ns.discover(model, flow="momentum", seed=0)
    assert result.count == 2 and result.catalogue.complete, str(result)


# ---------------------------------------------------------------- claim (b) on a transformer block

def _claim_model():
    model = ns.SelfAttention(6, heads=2, tokens=4, causal=True, readout="last", mlp_hidden=4)
    return model, ns.data.sequences(model, 6, noise=0.05, seed=3)


def test_claim_b_rk4_keeps_every_charge_with_high_order():
    """RK4 ladder: every charge (QK, VO per head and the MLP's r) 'conserved by the flow', seed-median
    fitted order ≈ 4, with and without weight decay (the law e^{−2λt}q(0) is what the ladder measures from)."""
    model, data = _claim_model()
    for lam in (0.0, 0.05):
        ladder = run_ladder(model, data, step_sizes=[0.025, 0.0125, 0.00625, 0.003125], method="rk4", t_end=0.25,
                            save_every=0.25, seeds=16, init=init.Gaussian(scale=1.0, bias_scale=3.0),
                            weight_decay=lam)
        analysis = analyse_ladder(ladder)
        rows = summarise_verdicts(analysis)
        assert {r["charge"] for r in rows} == {"QK0", "VO0", "QK1", "VO1", "r"}
        order = analysis.fitted_order.median("seed").values
        assert np.all((3.5 < order) & (order < 4.7)), order
        # per charge, the share of seeds judged conserved (measured 0.62–0.88); the others are inconclusive,
        # seeds along whose path a ReLU pre-activation changes sign (a piecewise smooth flow, lower order)
        conserved = (analysis.verdict == CONSERVED).mean("seed").values
        assert np.all(conserved >= 0.5), conserved
        assert not np.any(analysis.verdict.values == "broken by the flow")


def test_claim_b_weight_decay_breaks_the_charges_at_the_known_rate():
    model, data = _claim_model()
    lam, h, n = 0.05, 0.0025, 400
    run = dict(h=h, n_steps=n, seeds=4, init=init.Gaussian(scale=1.0, bias_scale=3.0), weight_decay=lam)
    rk4 = ns.simulate(model, data, method="rk4", **run)
    t = h * n
    q0, q1 = rk4.charge_initial.values, rk4.charge_final.values
    moved = np.abs(q1 - q0).max()
    assert moved > 0.03 * np.abs(q0).max()                                       # weight decay breaks them …
    # … as e^{−2λt}: what the law leaves is RK4's error (measured 3e-5 against a move of ~3)
    assert np.abs(q1 - np.exp(-2 * lam * t) * q0).max() < 1e-4 * moved
    gd = ns.simulate(model, data, dynamics="gd", **run)
    # one gradient descent step, checked from the oracle: q(θ') = (1 − ηλ)²q(θ) + η²q(∇L(θ)) − (the
    # quadratic part's η² term, here written out), with θ' = (1 − ηλ)θ − η∇L
    one = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=1, seeds=1, weight_decay=lam,
                      init=init.Gaussian(scale=1.0, bias_scale=3.0))
    th0, th1 = one.theta_initial.values[0], one.theta_final.values[0]
    _, g = numpy_block(model, data, th0)
    np.testing.assert_allclose(th1, (1 - 0.05 * lam) * th0 - 0.05 * g, rtol=1e-12, atol=1e-14)
    law = (1 - 0.05 * lam) ** 2 * numpy_charges(model, th0) + 0.05 ** 2 * numpy_charges(model, g)
    assert np.abs(numpy_charges(model, th1) - law).max() < 1e-13 * np.abs(law).max()
    floor = np.sqrt(n) * np.finfo(float).eps * gd.scale.isel(time=-1)
    assert float(gd.drift.isel(time=-1).min()) > 1e-4 and np.all(gd.residual.isel(time=-1) < 10 * floor)


def test_claim_b_example_study_and_sweep_run(tmp_path):
    import tomllib

    from noether_sim.sweep import plan

    with open("examples/architectures/transformer_block.toml", "rb") as f:
        cfg = tomllib.load(f)
    assert cfg["model"]["mlp_hidden"] == 4 and len(plan(cfg).points) == 2
    small = {"name": "tb", "t_end": 0.25, "save_every": 0.125,
             "model": {"kind": "attention", "d_model": 4, "tokens": 3, "mlp_hidden": 3},
             "data": {"kind": "sequences", "n_points": 6}, "seeds": {"count": 2},
             "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.0625, 0.03125, 0.015625]}},
             "sweep": {"model.mlp_hidden": [2, 3]}}
    ds = ns.run_study(small, out=tmp_path / "s")
    assert ds.sizes["model.mlp_hidden"] == 2 and "r" in [str(c) for c in ds.charge.values]
    assert np.all(ds.verdict.values == CONSERVED)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,match", [(dict(mlp_hidden=0), "mlp_hidden=0"), (dict(mlp_hidden=2.5), "mlp_hidden=2.5"),
                                      (dict(mlp_hidden=3, d_out=2), "d_out")])
def test_bad_block_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        ns.SelfAttention(6, heads=2, tokens=3, **kw)


def test_bad_block_study_is_refused():
    from noether_sim.config import parse_config

    cfg = {"name": "tb", "t_end": 0.25, "model": {"kind": "attention", "d_model": 4, "tokens": 3, "mlp_hidden": 0},
           "data": {"kind": "sequences", "n_points": 6}, "seeds": {"count": 2},
           "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.0625]}}}
    with pytest.raises(ConfigError, match="mlp_hidden"):
        parse_config(cfg)
    cfg["model"] = {"kind": "mlp", "widths": [4, 4, 1], "mlp_hidden": 3}
    cfg["data"] = {"kind": "synthetic_regression", "n_points": 6}
    with pytest.raises(ConfigError, match="model.mlp_hidden"):
        parse_config(cfg)
