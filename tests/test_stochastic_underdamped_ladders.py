"""Underdamped Langevin (momentum with a temperature) on coupled ladders, with minibatches, and its exact
per-trajectory law (theory.md §4 and §6; docs/guide/stochastic.md "Underdamped Langevin").

- Coupled rungs: each OU sub-step of rung h draws the normalised OU-weighted sum of the finest rung's draws
  over the same interval (kernels/stochastic.ou_noise), replayed in NumPy; the rung differences are far
  less noisy than with independent noise, and the seed means keep E[J(t)] = e^{−t/τ}J(0) and
  equipartition at every rung.
- Minibatches: B = N is the full batch bit for bit; seeds bit-identical alone, batched, on 1 or 2 threads;
  one step replayed in NumPy from ``minibatch_indices``.
- The splitting's exact law (kernels/splitting._law_kick): residual at round-off for every seed; a NumPy
  replay of the law without its noise term misses by O(1).
"""

import numba
import numpy as np
import pytest

import noether_sim as ns
from noether_sim.kernels.stochastic import NOISE_STREAM, normals_into, ou_noise, stream_key
from reference import balance_matrices, loss_and_grad

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def problem():
    return ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10, noise=0.1, seed=3)


def seed_normals(root, seed, first, n):
    out = np.empty(n)
    normals_into(np.uint64(stream_key(root, NOISE_STREAM, seed)), first, out)
    return out


def residual_bound(ds, h, substeps=5):
    """2·ε·√(sub-steps so far)·(running max of the scale): the round-off bound of test_stochastic.py's
    exact laws, counting the splitting's sub-steps (Verlet: 5 per step), each of which updates the law."""
    steps = ds.time.values / h * substeps
    running_scale = np.maximum.accumulate(ds.scale.values, axis=1)
    return 2 * EPS * np.sqrt(np.maximum(steps, 1))[None, :, None] * running_scale


# ---- coupled OU noise ----

@pytest.mark.parametrize("r", [2, 3, 5])
def test_coupled_ou_draw_is_the_fine_rungs_composition(r):
    """r fine OU steps of length a compose to e^{−ra/τ}p + σ_a Σ_i e^{−(r−1−i)a/τ}ξ_i; the coarse step's
    σ_{ra}ξ must be exactly that noise (the weights make it the fine rung's, σ_{ra} = σ_a‖w‖ its variance)."""
    T, tau, a, P, draw = 0.07, 0.3, 0.04, 6, 3
    key = np.uint64(stream_key(2, NOISE_STREAM, 9))
    sig = lambda s: np.sqrt(T / tau * -np.expm1(-2 * s / tau))  # noqa: E731
    got = np.empty(P)
    ou_noise(key, draw, r, np.exp(-a / tau), sig(r * a), got)
    fine = np.zeros(P)  # the fine rung's OU steps from p = 0 over the same interval
    for i in range(r):
        xi = np.empty(P)
        normals_into(key, (draw * r + i) * P, xi)
        fine = np.exp(-a / tau) * fine + sig(a) * xi
    np.testing.assert_allclose(got, fine, rtol=1e-12, atol=1e-15)
    # the unweighted sum (overdamped Langevin's coupling) is not the OU composition
    flat = sum(seed_normals_at(key, (draw * r + i) * P, P) for i in range(r)) / np.sqrt(r) * sig(r * a)
    assert np.max(np.abs(flat - fine)) > 1e-3 * np.max(np.abs(fine))


def seed_normals_at(key, first, n):
    out = np.empty(n)
    normals_into(key, first, out)
    return out


@pytest.mark.parametrize("substeps", [1, 2, 3])
def test_coupled_obabo_replays_in_numpy(problem, substeps):
    """OBABO with noise_substeps = r: the m-th OU step of step k draws ξ = Σ_i w_i ξ_{(2k+m)r+i}/‖w‖ with
    w_i = e^{−(r−1−i)a/τ}, a = (h/2)/r (r = 1: draw 2k + m, as before)."""
    model, data = problem
    h, tau, T, lam, n_steps, root = 0.05, 0.4, 0.03, 0.02, 10, 5
    ds = ns.simulate(model, data, dynamics="momentum", tau=tau, temperature=T, h=h, n_steps=n_steps, seeds=[2],
                     weight_decay=lam, root_seed=root, noise_substeps=substeps)
    P = model.n_params
    e = np.exp(-0.5 * h / tau)
    sigma = np.sqrt(T / tau * (1 - np.exp(-h / tau)))
    a = 0.5 * h / substeps
    w = np.exp(-(substeps - 1 - np.arange(substeps)) * a / tau)

    def xi(d):
        return sum(w[i] * seed_normals(root, 2, (d * substeps + i) * P, P) for i in range(substeps)) / np.sqrt(w @ w)

    force = lambda x: loss_and_grad(model, data, x)[1] + lam * x  # noqa: E731
    q = ds.theta_initial.sel(seed=2).values.copy()
    p = np.zeros(P)
    for k in range(n_steps):
        p = e * p + sigma * xi(2 * k)
        p = p - 0.5 * h / tau * force(q)
        q = q + h * p
        p = p - 0.5 * h / tau * force(q)
        p = e * p + sigma * xi(2 * k + 1)
    np.testing.assert_allclose(ds.theta_final.sel(seed=2).values, q, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ds.velocity_final.sel(seed=2).values, p, rtol=1e-11, atol=1e-13)


LADDER = dict(dynamics="momentum", tau=0.5, temperature=0.05, step_sizes=[0.1, 0.05, 0.025, 0.0125], t_end=1.0,
              seeds=400, velocity=1.0, weight_decay=0.1)


def rung_differences(ladder):
    """Per adjacent pair of rungs (coarse − fine) and seed, the difference of the final charges."""
    q = ladder.sortby("h", ascending=False).charge_final.transpose("h", "seed", "component").values
    return q[1:] - q[:-1]


def test_coupled_underdamped_ladder_differences_are_far_less_noisy():
    """run_ladder couples momentum+temperature rungs by default. Measured (4-6-1 net, τ = 0.5, T = 0.05,
    λ = 0.1, t = 1, 400 seeds, h = 0.1 … 0.0125): the seed variance of q(h) − q(h/2), averaged over the
    charge components, is 68, 273 and 1117 times smaller coupled than independent (coupled=False), from
    the coarsest pair to the finest: the coupled rungs converge onto one another; so is the square of the
    standard error of the difference of the rungs' seed means (the same ratio). Asserted: > 20 for every
    pair (the ratio of two 400-seed variances is known to about ±10%)."""
    model = ns.DeepLinear((4, 6, 1))
    data = ns.data.synthetic_regression(4, 1, 32, noise=0.1, seed=1)
    coupled = ns.run_ladder(model, data, **LADDER)
    independent = ns.run_ladder(model, data, coupled=False, **LADDER)
    var_c = rung_differences(coupled).var(axis=1, ddof=1).mean(axis=1)
    var_i = rung_differences(independent).var(axis=1, ddof=1).mean(axis=1)
    ratio = var_i / var_c
    assert np.all(ratio > 20), ratio
    assert ratio[-1] > ratio[0]  # the coupled rungs converge onto one another (strong error → 0)
    # the finest rung is the same run either way (noise_substeps = 1): bit for bit
    fine = lambda lad: lad.sortby("h").isel(h=0).charge_final.values  # noqa: E731
    np.testing.assert_array_equal(fine(coupled), fine(independent))
    # and the exact law holds on every rung of the coupled ladder, to round-off
    for h in coupled.h.values:
        rung = coupled.sel(h=h)
        assert (rung.residual <= residual_bound(rung, h)).all()


def test_coupled_ladder_seed_means_keep_the_expectation_laws(problem):
    """Weak error across a coupled ladder: E[J(t)] = e^{−t/τ}J(0) holds at every step size (no weak error
    at all), so each rung's seed mean sits within 4.5 SE of it and the coupled rungs' mean differences are
    zero within 4 of their (much smaller) standard errors; equipartition τ·mean_j E[p_j²] = T (OBABO's bias
    is O(h²), below the Monte-Carlo error here) within 4 SE at every rung, and its coupled rung differences
    too. Can fail: J(0) without the decay is far off, and the wrong OU variance (T instead of T/τ) would
    put τE[p²] at T/τ."""
    model, data = problem
    tau, T, S = 0.2, 0.02, 1000
    rng = np.random.default_rng(4)
    q0, p0 = rng.standard_normal((2, model.n_params))
    lad = ns.run_ladder(model, data, dynamics="momentum", tau=tau, temperature=T, step_sizes=[0.16, 0.08, 0.04, 0.02],
                        t_end=4.0, seeds=S, weight_decay=0.5, init=ns.init.Given(np.tile(q0, (S, 1))), velocity=p0)
    lad = lad.sortby("h", ascending=False)
    iso = np.isin(lad.component_charge.values, ["J1"])
    J = lad.charge_final.transpose("h", "seed", "component").values[:, :, iso]
    J_law = np.exp(-4.0 / tau) * lad.charge_initial.isel(h=0).values[0, iso]
    off = J.std(axis=(0, 1)) > 0  # the antisymmetric J's diagonal is 0 exactly
    m, se = J.mean(axis=1)[:, off], J.std(axis=1, ddof=1)[:, off] / np.sqrt(S)
    assert np.all(np.abs(m - J_law[off]) < 4.5 * se), np.max(np.abs(m - J_law[off]) / se)
    d = J[1:] - J[:-1]
    dm, dse = d.mean(axis=1)[:, off], d.std(axis=1, ddof=1)[:, off] / np.sqrt(S)
    assert np.all(np.abs(dm) < 4 * dse)
    assert np.all(dse < 0.5 * se[1:])  # coupling: the differences are known better than the means
    J_start = lad.charge_initial.isel(h=0).values[0, iso][off]
    assert np.max(np.abs(m - J_start) / se) > 8
    p = lad.velocity_final.transpose("h", "seed", "param").values
    kin = tau * (p ** 2).mean(axis=-1)  # (h, seed)
    km, kse = kin.mean(axis=1), kin.std(axis=1, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(km - T) < 4 * kse), (km, kse)
    assert np.all(np.abs(km - T / tau) > 40 * kse)
    kd = kin[1:] - kin[:-1]
    assert np.all(np.abs(kd.mean(axis=1)) < 4 * kd.std(axis=1, ddof=1) / np.sqrt(S))


# ---- minibatches ----

@pytest.mark.parametrize("temperature", [None, 0.03])
def test_full_batch_is_bit_identical(problem, temperature):
    model, data = problem
    kw = dict(dynamics="momentum", tau=0.3, h=0.05, n_steps=25, seeds=3, temperature=temperature, weight_decay=0.1)
    full = ns.simulate(model, data, **kw)
    same = ns.simulate(model, data, batch_size=data.n_points, **kw)
    np.testing.assert_array_equal(full.theta_final.values, same.theta_final.values)
    np.testing.assert_array_equal(full.velocity_final.values, same.velocity_final.values)
    np.testing.assert_array_equal(full.loss.values, same.loss.values)


@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
def test_minibatch_underdamped_seeds_are_bit_identical_alone_batched_and_threaded(problem, sampling):
    model, data = problem
    common = dict(dynamics="momentum", tau=0.3, temperature=0.02, h=0.05, n_steps=60, save_every=0.75,
                  batch_size=3, sampling=sampling)
    many = ns.simulate(model, data, seeds=7, **common)
    alone = ns.simulate(model, data, seeds=[5], **common)
    np.testing.assert_array_equal(alone.theta_final.values[0], many.theta_final.sel(seed=5).values)
    np.testing.assert_array_equal(alone.velocity_final.values[0], many.velocity_final.sel(seed=5).values)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ns.simulate(model, data, seeds=7, **common)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = ns.simulate(model, data, seeds=7, **common)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one.theta_final.values, many.theta_final.values)
    np.testing.assert_array_equal(two.theta_final.values, many.theta_final.values)
    assert not np.array_equal(many.theta_final.values[0], many.theta_final.values[1])


@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
def test_minibatch_obabo_replays_in_numpy(problem, sampling):
    """Each step draws its batch (minibatch_indices) and both kicks of the step use it: the gradient of the
    previous step's last kick is not reused (two gradients per Verlet step)."""
    model, data = problem
    h, tau, T, lam, n_steps, root, B = 0.05, 0.4, 0.03, 0.05, 9, 1, 4
    ds = ns.simulate(model, data, dynamics="momentum", tau=tau, temperature=T, h=h, n_steps=n_steps, seeds=[3],
                     weight_decay=lam, root_seed=root, batch_size=B, sampling=sampling)
    assert int(ds.n_grad_evals.sel(seed=3)) == 2 * n_steps
    P = model.n_params
    e = np.exp(-0.5 * h / tau)
    sigma = np.sqrt(T / tau * (1 - np.exp(-h / tau)))
    q = ds.theta_initial.sel(seed=3).values.copy()
    p = np.zeros(P)
    for k in range(n_steps):
        idx = ns.minibatch_indices(data.n_points, B, seed=3, step=k, root_seed=root, sampling=sampling)
        batch = ns.data.from_arrays(data.X[:, idx], data.Y[:, idx])
        force = lambda x: loss_and_grad(model, batch, x)[1] + lam * x  # noqa: E731
        p = e * p + sigma * seed_normals(root, 3, (2 * k) * P, P)
        p = p - 0.5 * h / tau * force(q)
        q = q + h * p
        p = p - 0.5 * h / tau * force(q)
        p = e * p + sigma * seed_normals(root, 3, (2 * k + 1) * P, P)
    np.testing.assert_allclose(ds.theta_final.sel(seed=3).values, q, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ds.velocity_final.sel(seed=3).values, p, rtol=1e-11, atol=1e-13)


# ---- the exact per-trajectory law of the splitting ----

@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, batch_size=7),
                                dict(batch_size=5, sampling="epoch"), dict(temperature=None, batch_size=6),
                                dict(method="symplectic_euler", weight_decay=0.05)])
def test_splitting_law_holds_to_roundoff_for_every_seed(kw):
    """Balance D_i (with biases) and rotation J charges: |q − q̂| ≤ 2ε√(sub-steps)·scale for every seed and
    save time, while the noise and splitting part q̂ − q_law it accounts for is ≥ 10⁸ times larger."""
    model = ns.DeepLinear((4, 6, 5, 3), bias=True)
    data = ns.data.synthetic_regression(4, 3, 24, noise=0.1, seed=1)
    args = dict(dynamics="momentum", tau=0.5, temperature=0.05, h=0.02, n_steps=300, save_every=0.6, seeds=6,
                velocity=0.5, init=ns.init.Gaussian(bias_scale=0.5))
    args.update(kw)
    ds = ns.simulate(model, data, **args)
    substeps = 5 if args.get("method", "verlet") == "verlet" else 3
    assert not ds.diverged.any()
    kinds = dict(zip(ds.charge.values, ds.charge_kind.values))
    assert {"model", "isometric"} <= set(kinds.values())
    assert np.isfinite(ds.residual).all()
    assert (ds.residual <= residual_bound(ds, args["h"], substeps)).all()
    # not trivially met: what the law accounts for is far above the residual. Without noise the isometric
    # law is the deterministic e^{−t/τ}J(0) itself (Ĵ − e^{−t/τ}J(0) is round-off), so only the model charges
    last = ds.isel(time=-1)
    judged = ds.charge_kind.values == "model" if args["temperature"] is None else np.ones(ds.sizes["charge"], bool)
    assert (last.predicted.values[:, judged] > 1e8 * last.residual.values[:, judged]).all()


def test_splitting_law_on_an_mlp_with_linear_charges():
    """A linear softmax-CE MLP has every kind of charge the law treats: quadratic model charges (rescale r_i,
    balance D_i), a linear one (the softmax translation T: V = T(p), drift Q̂ += sV, OU V ← eV + T(n)), the
    rotation charges J_i and a linear isometric one (JT = Σ_c P_L[c, ·]: its kicks take −cλ·JT(q), non-zero
    with weight decay). With weight decay, minibatches and noise: residual at round-off for every seed."""
    from noether_sim.mlp import MLP

    model = MLP((3, 4, 5, 3), activation="linear", loss="softmax_ce", bias=True)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 20))
    Y = np.eye(3)[:, rng.integers(0, 3, 20)]
    data = ns.data.from_arrays(X, Y)
    h = 0.02
    ds = ns.simulate(model, data, dynamics="momentum", tau=0.5, temperature=0.05, h=h, n_steps=200, save_every=0.8,
                     seeds=5, velocity=0.5, weight_decay=0.1, batch_size=7, init=ns.init.Gaussian(bias_scale=0.5))
    assert not ds.diverged.any()
    assert {"r1", "D1", "T", "J1", "JT"} <= set(ds.charge.values)
    assert (ds.residual <= residual_bound(ds, h)).all()
    assert (ds.predicted.isel(time=-1) > 1e8 * ds.residual.isel(time=-1)).all()


def test_splitting_law_replayed_in_numpy_and_without_its_noise_term(problem):
    """An independent NumPy replay of OBABO and of the law for D_1 = W_2ᵀW_2 − W_1W_1ᵀ:
    kick V −= cλQ̂; drift Q̂ += 2sV + s²D(p), V += sD(p); OU V ← eV + B(q, n). With the noise term it
    reproduces the run's charge and its ``predicted_watch`` to round-off; without it (V ← eV), the law
    misses the charge by O(1) of its change: the law can fail, and the noise term is what makes it exact."""
    model, data = problem
    h, tau, T, lam, n_steps, root = 0.05, 0.4, 0.05, 0.1, 40, 3
    ds = ns.simulate(model, data, dynamics="momentum", tau=tau, temperature=T, h=h, n_steps=n_steps, seeds=[1],
                     weight_decay=lam, root_seed=root, velocity=0.5, watch_seeds=[1])
    P = model.n_params
    e = np.exp(-0.5 * h / tau)
    sigma = np.sqrt(T / tau * (1 - np.exp(-h / tau)))
    D = lambda x: balance_matrices(model, x)[0]  # noqa: E731
    B = lambda a, b: 0.25 * (D(a + b) - D(a - b))  # noqa: E731
    force = lambda x: loss_and_grad(model, data, x)[1] + lam * x  # noqa: E731
    q = ds.theta_initial.sel(seed=1).values.copy()
    p = ds.velocity_initial.sel(seed=1).values.copy()
    preds = {True: [D(q), B(q, p)], False: [D(q), B(q, p)]}

    def ou(p, n):
        for noise, (Q, V) in preds.items():
            preds[noise][1] = e * V + (B(q, n) if noise else 0.0)
        return e * p + n

    def kick(p, c):
        for Q, V in preds.values():
            V -= c * lam * Q
        return p - c * force(q)

    for k in range(n_steps):
        p = ou(p, sigma * seed_normals(root, 1, (2 * k) * P, P))
        p = kick(p, 0.5 * h / tau)
        for noise in preds:
            Q, V = preds[noise]
            preds[noise] = [Q + 2 * h * V + h * h * D(p), V + h * D(p)]
        q = q + h * p
        p = kick(p, 0.5 * h / tau)
        p = ou(p, sigma * seed_normals(root, 1, (2 * k + 1) * P, P))
    np.testing.assert_allclose(ds.theta_final.sel(seed=1).values, q, rtol=1e-11, atol=1e-13)
    comp = ds.component_charge.values == "D1"
    actual = D(q).ravel()
    np.testing.assert_allclose(ds.charge_final.sel(seed=1).values[comp], actual, rtol=1e-11, atol=1e-13)
    watched = ds.predicted_watch.isel(watched_seed=0, time=-1).values[comp]
    np.testing.assert_allclose(watched, preds[True][0].ravel(), rtol=1e-11, atol=1e-13)
    change = np.abs(actual - D(ds.theta_initial.sel(seed=1).values).ravel()).max()
    assert np.abs(preds[True][0].ravel() - actual).max() < 1e-12 * max(change, 1.0)
    assert np.abs(preds[False][0].ravel() - actual).max() > 0.05 * change


# ---- studies and refusals ----

@pytest.mark.slow  # a whole study with a sweep: the README's quick command leaves it out
def test_sweep_over_temperature_and_batch_size_of_underdamped_langevin(tmp_path):
    """examples/underdamped_langevin.toml's minibatch underdamped method through the study front door, swept
    over temperature and batch size (sweep dimensions like any other key; rungs coupled by default): J1
    keeps its expectation law at every point, and a point's finest rung is simulate()'s run, bit for bit."""
    import pathlib
    import tomllib

    from noether_sim.results import sweep_point
    from noether_sim.tables import summary_rows

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "underdamped_langevin.toml"
    cfg = tomllib.loads(path.read_text())
    assert cfg["methods"]["underdamped-b8"]["batch_size"] == 8
    cfg["seeds"]["count"] = 60
    cfg["methods"] = {"underdamped-b8": cfg["methods"]["underdamped-b8"]}
    cfg["sweep"] = {"methods.underdamped-b8.temperature": [0.02, 0.05],
                    "methods.underdamped-b8.batch_size": [4, 16]}
    ds = ns.run_study(cfg, tmp_path / "ud")
    assert ds.drift.dims[:2] == ("methods.underdamped-b8.temperature", "methods.underdamped-b8.batch_size")
    for i in range(4):
        rows = {(r.method, r.charge): r.verdict for r in summary_rows(sweep_point(ds, i))}
        assert rows[("underdamped-b8", "J1")] == "conserved in expectation", (i, rows)
    m = cfg["methods"]["underdamped-b8"]
    alone = ns.simulate(ns.DeepLinear((4, 6, 1)), ns.data.synthetic_regression(4, 1, 32, noise=0.1),
                        dynamics="momentum", tau=m["tau"], velocity=m["velocity"], temperature=0.05, batch_size=16,
                        h=m["step_sizes"][-1], t_end=cfg["t_end"], save_every=cfg["save_every"], seeds=60)
    point = {"methods.underdamped-b8.temperature": 0.05, "methods.underdamped-b8.batch_size": 16,
             "scheme": "underdamped-b8"}
    np.testing.assert_array_equal(ds.charge_final.sel(point).isel(step=-1).values, alone.charge_final.values)


@pytest.mark.parametrize("kw, name", [
    (dict(dynamics="momentum", tau=0.3, temperature=0.1, noise_substeps=2.5), "noise_substeps"),
    (dict(dynamics="momentum", tau=0.3, temperature=0.1, noise_substeps=0), "noise_substeps"),
    (dict(dynamics="momentum", tau=0.3, noise_substeps=2), "noise_substeps"),
    (dict(dynamics="momentum", method="yoshida4", tau=0.3, temperature=0.1), "temperature"),
    (dict(dynamics="momentum", method="rk4", tau=0.3, batch_size=4), "batch_size"),
    (dict(dynamics="gf", batch_size=4), "batch_size"),
    (dict(dynamics="momentum", tau=0.3, temperature=0.1, batch_size=11), "batch_size"),
    (dict(dynamics="momentum", tau=0.3, temperature=0.1, batch_size=2.0), "batch_size"),
    (dict(dynamics="momentum", tau=0.3, sampling="epoch"), "sampling"),
    (dict(dynamics="momentum", tau=0.3, batch_size=4, sampling="shuffled"), "sampling"),
])
def test_bad_input_is_refused_before_any_work(problem, kw, name):
    model, data = problem
    with pytest.raises(ns.ConfigError, match=name):
        ns.simulate(model, data, h=0.05, n_steps=2, seeds=1, **kw)


def test_ladder_refusals(problem):
    model, data = problem
    kw = dict(dynamics="momentum", tau=0.3, temperature=0.1, t_end=0.06)
    with pytest.raises(ns.ConfigError, match="step_sizes"):  # coupling needs whole ratios
        ns.run_ladder(model, data, step_sizes=[0.03, 0.015, 0.01], **kw)
    with pytest.raises(ns.ConfigError, match="noise_substeps"):  # a coupled ladder sets it per rung
        ns.run_ladder(model, data, step_sizes=[0.04, 0.02, 0.01], noise_substeps=2, **kw)
    with pytest.raises(ns.ConfigError, match="coupled"):  # no noise to share
        ns.run_ladder(model, data, dynamics="momentum", tau=0.3, step_sizes=[0.04, 0.02, 0.01], t_end=0.12,
                      coupled=True)
    # uncoupled, any step sizes
    lad = ns.run_ladder(model, data, step_sizes=[0.03, 0.015, 0.01], coupled=False, seeds=2, **kw)
    assert lad.sizes["h"] == 3


@pytest.mark.parametrize("method", ["rk4", "gl1", "yoshida4", "verlet"])
def test_momentum_without_noise_still_plans(problem, method):
    """The underdamped checks touch only splitting runs with noise options (a Runge–Kutta momentum run has no
    damp steps to inspect; yoshida4 without a temperature is deterministic momentum)."""
    from noether_sim.simulate import plan

    model, data = problem
    p = plan(model, data, dynamics="momentum", method=method, tau=0.3, h=0.05, n_steps=2)
    assert p.resolved.method == method
    if method == "yoshida4":  # T = 0: no OU step to run backwards
        plan(model, data, dynamics="momentum", method=method, tau=0.3, h=0.05, n_steps=2, temperature=0.0)
