"""Stochastic training (theory.md §6): minibatch gradients and Langevin noise — exact per-trajectory laws,
replays in plain NumPy, bit-identical seeds, and the refusals."""

import numba
import numpy as np
import pytest

import noether_sim as ns
from noether_sim.mlp import MLP
from noether_sim.stochastic import minibatch_indices, minibatch_indices_of
from noether_sim.results import sweep_point
from noether_sim.tables import summary_rows
from reference import loss_and_grad

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def problem():
    model = ns.DeepLinear((4, 6, 5, 3), bias=True)
    data = ns.data.synthetic_regression(4, 3, 24, noise=0.1, seed=1)
    return model, data


def residual_bound(ds, h):
    """The round-off bound of the exact laws (as in test_charges): 2·ε·√k·(running max of the scale)."""
    steps = ds.time.values / h
    running_scale = np.maximum.accumulate(ds.scale.values, axis=1)
    return 2 * EPS * np.sqrt(np.maximum(steps, 1))[None, :, None] * running_scale


@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("model_name", ["deep_linear", "mlp"])
def test_minibatch_descent_exact_law_holds_to_roundoff_for_every_seed(problem, sampling, weight_decay, model_name):
    """GD's exact one-step law with the batch gradient g_B: q(k+1) = (1 − ηλ)² q(k) + η² q(g_B)."""
    model, data = problem
    if model_name == "mlp":
        model = MLP((4, 6, 5, 3), activation="relu", bias=True)
    h = 0.05
    ds = ns.simulate(model, data, dynamics="gd", h=h, n_steps=400, save_every=40 * h, seeds=6, batch_size=5,
                     sampling=sampling, weight_decay=weight_decay, init=ns.init.Gaussian(bias_scale=0.5))
    assert not ds.diverged.any()
    assert (ds.residual <= residual_bound(ds, h)).all()
    # not trivially satisfied: the η² terms the law accumulates are far above the residual
    assert (ds.predicted.isel(time=-1) > 1e8 * ds.residual.isel(time=-1)).all()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_langevin_exact_law_with_noise_holds_to_roundoff(problem, weight_decay):
    """q(θ') = (1 − ηλ)² q(θ) + 2(1 − ηλ)θᵀSN + q(U) per trajectory (theory.md §6), with and without
    minibatches."""
    model, data = problem
    h = 0.01
    for batch_size in (None, 6):
        ds = ns.simulate(model, data, dynamics="langevin", temperature=0.05, h=h, n_steps=500, save_every=50 * h,
                         seeds=6, weight_decay=weight_decay, batch_size=batch_size)
        assert not ds.diverged.any()
        assert (ds.residual <= residual_bound(ds, h)).all()
        assert (ds.predicted.isel(time=-1) > 1e8 * ds.residual.isel(time=-1)).all()


@pytest.mark.parametrize("dynamics,kw", [("gd", {}), ("heavy_ball", {"tau": 0.5}), ("nesterov", {"tau": 0.5})])
@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
def test_full_size_batch_is_bit_identical_to_full_batch(problem, dynamics, kw, sampling):
    model, data = problem
    common = dict(dynamics=dynamics, h=0.05, n_steps=60, save_every=1.0, seeds=3, weight_decay=0.01, **kw)
    full = ns.simulate(model, data, **common)
    same = ns.simulate(model, data, batch_size=data.n_points, sampling=sampling, **common)
    np.testing.assert_array_equal(full.theta_final.values, same.theta_final.values)
    np.testing.assert_array_equal(full.loss.values, same.loss.values)


@pytest.mark.parametrize("dynamics,kw", [("gd", {"batch_size": 5, "sampling": "epoch"}),
                                         ("nesterov", {"batch_size": 5, "tau": 0.5}),
                                         ("langevin", {"temperature": 0.1, "batch_size": 7})])
def test_seed_is_bit_identical_alone_batched_and_threaded(problem, dynamics, kw):
    model, data = problem
    common = dict(dynamics=dynamics, h=0.02, n_steps=120, save_every=0.6, **kw)
    many = ns.simulate(model, data, seeds=9, **common)
    alone = ns.simulate(model, data, seeds=[5], **common)
    np.testing.assert_array_equal(alone.theta_final.values[0], many.theta_final.sel(seed=5).values)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ns.simulate(model, data, seeds=9, **common)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = ns.simulate(model, data, seeds=9, **common)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one.theta_final.values, many.theta_final.values)
    np.testing.assert_array_equal(two.theta_final.values, many.theta_final.values)
    # and the seeds really differ from one another (their draws are their own)
    assert not np.array_equal(many.theta_final.values[0], many.theta_final.values[1])


@pytest.mark.parametrize("dynamics", ["gd", "heavy_ball", "nesterov"])
@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
def test_trajectory_replays_in_numpy_from_minibatch_indices(problem, dynamics, sampling):
    """The public indices reproduce a seed's trajectory with an independent NumPy gradient."""
    model, data = problem
    h, n_steps, lam, B, tau = 0.05, 25, 0.02, 5, 0.5
    kw = {"tau": tau} if dynamics != "gd" else {}
    ds = ns.simulate(model, data, dynamics=dynamics, h=h, n_steps=n_steps, seeds=[2, 7], batch_size=B,
                     sampling=sampling, weight_decay=lam, root_seed=11, **kw)
    eta, beta = ns.heavy_ball_from_flow(h, tau) if dynamics != "gd" else (h, 0.0)
    for seed in (2, 7):
        theta = ds.theta_initial.sel(seed=seed).values.copy()
        prev = theta.copy()
        for k in range(n_steps):
            idx = minibatch_indices_of(ds, seed, k)
            batch = ns.data.from_arrays(data.X[:, idx], data.Y[:, idx])
            look = theta + beta * (theta - prev) if dynamics == "nesterov" else theta
            g = loss_and_grad(model, batch, look)[1]
            if dynamics == "nesterov":
                new = look - eta * (g + lam * look)
            else:
                new = theta + beta * (theta - prev) - eta * (g + lam * theta)
            prev, theta = theta, new
        np.testing.assert_allclose(ds.theta_final.sel(seed=seed).values, theta, rtol=1e-11, atol=1e-13)


def test_minibatch_indices_draw_what_they_promise():
    N, B = 23, 5
    # uniform: B distinct points per step; every point drawn about equally often over many steps
    counts = np.zeros(N)
    for k in range(2000):
        idx = minibatch_indices(N, B, 3, k, root_seed=1)
        assert len(set(idx.tolist())) == B and idx.min() >= 0 and idx.max() < N
        counts[idx] += 1
    expected = 2000 * B / N
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # binomial sd < √expected
    # epoch: the N // B batches of an epoch are disjoint; the next epoch is a different shuffle
    per_epoch = N // B
    epoch0 = np.concatenate([minibatch_indices(N, B, 3, k, sampling="epoch") for k in range(per_epoch)])
    epoch1 = np.concatenate([minibatch_indices(N, B, 3, k, sampling="epoch") for k in range(per_epoch, 2 * per_epoch)])
    assert len(set(epoch0.tolist())) == per_epoch * B and len(set(epoch1.tolist())) == per_epoch * B
    assert not np.array_equal(epoch0, epoch1)
    # keyed by seed and root seed
    assert not np.array_equal(minibatch_indices(N, B, 3, 0), minibatch_indices(N, B, 4, 0))
    assert not np.array_equal(minibatch_indices(N, B, 3, 0), minibatch_indices(N, B, 3, 0, root_seed=1))


@pytest.mark.parametrize("kw,name", [
    ({"dynamics": "gd", "batch_size": 0}, "batch_size"),
    ({"dynamics": "gd", "batch_size": 25}, "batch_size"),
    ({"dynamics": "gd", "batch_size": 2.5}, "batch_size"),
    ({"dynamics": "gd", "batch_size": True}, "batch_size"),
    ({"dynamics": "gd", "batch_size": 4, "sampling": "shuffled"}, "sampling"),
    ({"dynamics": "gd", "sampling": "epoch"}, "sampling"),
    ({"dynamics": "gf", "method": "rk4", "batch_size": 4}, "batch_size"),
    ({"dynamics": "momentum", "method": "rk4", "tau": 1.0, "batch_size": 4}, "batch_size"),  # splittings take it
    ({"dynamics": "gd", "temperature": 0.1}, "temperature"),
    ({"dynamics": "heavy_ball", "tau": 1.0, "temperature": 0.1}, "temperature"),
    ({"dynamics": "langevin", "temperature": -1.0}, "temperature"),
    ({"dynamics": "langevin", "temperature": float("nan")}, "temperature"),
    ({"dynamics": "langevin", "temperature": float("inf")}, "temperature"),
    ({"dynamics": "langevin"}, "temperature"),
    ({"dynamics": "langevin", "method": "rk4", "temperature": 0.1}, "method"),
    ({"dynamics": "langevin", "temperature": 0.1, "track_energy": True}, "track_energy"),
    ({"dynamics": "gd", "batch_size": 4, "track_energy": True}, "track_energy"),
    ({"dynamics": "gd", "split_drift": True}, "split_drift"),
    ({"dynamics": "langevin", "temperature": 0.1, "batch_size": 4, "split_drift": True}, "split_drift"),
    ({"dynamics": "langevin", "temperature": 0.1, "noise_substeps": 0}, "noise_substeps"),
])
def test_bad_stochastic_input_is_refused_before_any_work(problem, kw, name):
    model, data = problem  # N = 24
    with pytest.raises(ns.ConfigError, match=name):
        ns.simulate(model, data, h=0.01, n_steps=2, seeds=1, **kw)


def trace_statistics(ds, n, c, temperature, lam):
    """Per seed, tr D₁(t) − E[tr D₁(t) | D₁(0)] and tr D₁(t) − e^{−2λt} tr D₁(0), from the watched charges,
    with E[D₁(t) | D₁(0)] = e^{−2λt}D₁(0) + (T/λ)c(1 − e^{−2λt})I (theory.md §6, written out here)."""
    diag = np.arange(n) * n + np.arange(n)
    q = ds.charge_watch.values[:, :, diag].sum(-1)
    q0 = ds.charge_initial.values[:, diag].sum(-1)[:, None]
    t = ds.time.values[None, :]
    decay = np.exp(-2 * lam * t)
    growth = (1 - decay) / lam if lam else 2 * t
    return q - (decay * q0 + temperature * c * n * growth), q - decay * q0


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_langevin_balance_means_follow_the_expectation_law(lam):
    """Seed means of tr D₁ within 4 standard errors of the closed form, for a width-matched (n₀ = n₂:
    balance kept in expectation) and a mismatched net (n₂ − n₀ = −3: the noise breaks it). The check can
    fail: the mismatched net's mean change stands > 8 SE from 'conserved', and the law's own
    discretisation part (gradient descent's η² drift at this η) is < 0.1 SE."""
    T, h, S = 0.05, 1e-3, 300
    for widths in ((4, 6, 4), (4, 6, 1)):
        model = ns.DeepLinear(widths)
        data = ns.data.synthetic_regression(widths[0], widths[-1], 32, noise=0.1, seed=1)
        common = dict(h=h, t_end=1.0, save_every=0.25, seeds=S, weight_decay=lam)
        ds = ns.simulate(model, data, dynamics="langevin", temperature=T, **common)
        c = widths[2] - widths[0]
        dev, change = trace_statistics(ds, widths[1], c, T, lam)
        se = dev[:, 1:].std(0, ddof=1) / np.sqrt(S)
        assert np.all(np.abs(dev[:, 1:].mean(0)) < 4 * se)
        change_se = change[:, -1].std(ddof=1) / np.sqrt(S)
        if c == 0:
            assert abs(change[:, -1].mean()) < 4 * change_se
        else:
            assert abs(change[:, -1].mean()) > 8 * change_se
        gd = ns.simulate(model, data, dynamics="gd", **common)
        assert gd.predicted.isel(time=-1).max() < 0.1 * se[-1]
        # the result's own statistics say the same, component by component
        n = widths[1]
        diag = np.arange(n) * n + np.arange(n)
        law = ds.expectation_law.isel(time=-1).values[diag]
        np.testing.assert_allclose(law.sum(), (np.exp(-2 * lam) * ds.charge_initial.values[:, diag].sum(-1)).mean()
                                   + T * c * n * ((1 - np.exp(-2 * lam)) / lam if lam else 2.0), rtol=1e-12)
        z = ds.mean_deviation.isel(time=-1) / ds.mean_deviation_se.isel(time=-1)
        assert np.all(np.abs(z.values[:n * n]) < 5)


def test_langevin_rescale_means_follow_the_expectation_law():
    """ReLU net with biases: E[r(t)] = r(0) + 2T(d_in − d_out)t per hidden neuron (d_in = n₀ + 1)."""
    model = MLP((3, 8, 2), activation="relu", bias=True)
    data = ns.data.synthetic_regression(3, 2, 32, noise=0.1, seed=2)
    T, S = 0.05, 300
    ds = ns.simulate(model, data, dynamics="langevin", temperature=T, h=1e-3, t_end=1.0, save_every=0.5, seeds=S)
    r = ds.charge_watch.values[:, -1, :8] - ds.charge_initial.values[:, :8]
    expected = 2 * T * ((3 + 1) - 2) * 1.0
    total = r.sum(-1)
    se = total.std(ddof=1) / np.sqrt(S)
    assert abs(total.mean() - 8 * expected) < 4 * se
    assert abs(total.mean()) > 8 * se  # broken by the noise, not conserved
    np.testing.assert_allclose(ds.expectation_law.isel(time=-1).values[:8] - ds.charge_initial.values[:, :8].mean(0),
                               expected, rtol=1e-12)


def test_noise_rates_are_the_traces_of_the_charges():
    """c = Σ_j q(e_j): n_{i+1} − n_{i−1} − [bias] on the balance diagonals, 0 off them; d_in − α·d_out
    for rescale charges (theory.md §6)."""
    from noether_sim.kernels.entries import ensemble_charges
    from noether_sim.stochastic import noise_rates

    model = ns.DeepLinear((3, 4, 6, 2), bias=True)
    rates = noise_rates(int(model.descriptor()[0]), model.descriptor(), np.zeros(1), model.n_params,
                        model.n_charges, ensemble_charges)
    np.testing.assert_array_equal(rates[:16].reshape(4, 4), (6 - 3 - 1) * np.eye(4))
    np.testing.assert_array_equal(rates[16:].reshape(6, 6), (2 - 4 - 1) * np.eye(6))
    mlp = MLP((3, 5, 2), activation="relu_pow", power=2.0, bias=True)
    rates = noise_rates(int(mlp.descriptor()[0]), mlp.descriptor(), mlp.constants(), mlp.n_params, mlp.n_charges,
                        ensemble_charges)
    np.testing.assert_array_equal(rates, np.full(5, (3 + 1) - 2.0 * 2))


LADDER = dict(step_sizes=[0.04, 0.02, 0.01, 0.005], t_end=1.0, seeds=200)


def verdict(ladder, charge):
    analysis = ns.analyse_ladder(ladder)
    return str(analysis.verdict.sel(charge=charge).item()), analysis


def test_stochastic_ladder_verdicts():
    """Each verdict of the stochastic analysis on a case whose answer theory.md §6 gives."""
    for widths, expected in (((4, 6, 4), "conserved in expectation"), ((4, 6, 1), "broken by the noise")):
        model = ns.DeepLinear(widths)
        data = ns.data.synthetic_regression(widths[0], widths[-1], 32, noise=0.1, seed=1)
        got, analysis = verdict(ns.run_ladder(model, data, dynamics="langevin", temperature=0.05, **LADDER), "D1")
        assert got == expected
        if expected == "broken by the noise":  # the law's drift stands clear of zero, the mean sits on it
            assert analysis.z_from_zero.sel(charge="D1") > 5 >= analysis.z_from_law.sel(charge="D1")
        got, _ = verdict(ns.run_ladder(model, data, dynamics="gd", batch_size=8, **LADDER), "D1")
        assert got == "conserved by the flow"
    # tanh has no rescaling symmetry: its r (a control) is broken by the flow, minibatches or not
    model = MLP((3, 8, 2), activation="tanh", bias=True)
    data = ns.data.synthetic_regression(3, 2, 32, noise=0.1, seed=2)
    got, _ = verdict(ns.run_ladder(model, data, dynamics="gd", batch_size=8, **LADDER), "r1")
    assert got == "broken by the flow"


def test_coupled_langevin_ladder_differences_are_less_noisy():
    """Coupled rungs (the coarse step's noise = the sum of the fine steps') differ by discretisation
    only: the seed spread of q(h) − q(h/2) is far smaller than with independent noise per rung."""
    model = ns.DeepLinear((4, 6, 1))
    data = ns.data.synthetic_regression(4, 1, 32, noise=0.1, seed=1)
    spread = {}
    for coupled in (True, False):
        lad = ns.run_ladder(model, data, dynamics="langevin", temperature=0.05, coupled=coupled, **LADDER)
        q = lad.sortby("h", ascending=False).charge_final.values  # (h, seed, component)
        spread[coupled] = np.std(q[-1] - q[-2], axis=0, ddof=1).mean()
    assert spread[True] < 0.1 * spread[False], spread


def test_coupling_is_refused_where_it_cannot_apply(problem):
    model, data = problem
    with pytest.raises(ns.ConfigError, match="coupled"):
        ns.run_ladder(model, data, dynamics="gd", batch_size=4, coupled=True, **LADDER)
    with pytest.raises(ns.ConfigError, match="step_sizes"):
        ns.run_ladder(model, data, dynamics="langevin", temperature=0.1, step_sizes=[0.03, 0.02, 0.015], t_end=0.06)


@pytest.mark.parametrize("sampling", ["uniform", "epoch"])
def test_one_step_moments_of_minibatch_drift_split(problem, sampling):
    """E[D' − D | θ] = η²(B(Ḡ, Ḡ) + c_B·B(Σ)) (theory.md §6) from one fixed θ over many seeds' batches,
    every component within 4 standard errors; the check can fail: the discretisation part alone misses
    the mean by > 10 SE."""
    model, data = problem
    S = 3000
    theta = ns.init.Gaussian(bias_scale=0.5).draw(model, np.random.default_rng(3))
    ds = ns.simulate(model, data, dynamics="gd", h=0.1, n_steps=1, seeds=S, batch_size=4, sampling=sampling,
                     split_drift=True, init=ns.init.Given(theta))
    change = ds.charge_final.values - ds.charge_initial.values
    se = change.std(0, ddof=1) / np.sqrt(S)
    disc, noise = ds.drift_discretisation_final.values, ds.drift_noise_final.values
    # from one θ both parts are the same for every seed
    np.testing.assert_array_equal(disc, np.broadcast_to(disc[0], disc.shape))
    assert np.all(np.abs(change.mean(0) - (disc[0] + noise[0])) < 4 * se)
    assert np.max(np.abs(change.mean(0) - disc[0]) / se) > 10
    # the recorded group norms are those of the accumulated parts
    n = 6
    np.testing.assert_allclose(ds.drift_noise.isel(seed=0, time=-1).sel(charge="D1").item(),
                               np.linalg.norm(noise[0, :n * n]), rtol=1e-12)


def test_batch_factor():
    from noether_sim.stochastic import batch_factor
    assert batch_factor(24, 24) == 0.0 and batch_factor(24, 1) == 1.0
    assert batch_factor(24, 4) == pytest.approx(20 / (4 * 23))


@pytest.mark.slow  # a whole study or sweep through the CLI: the README's quick command leaves it out
def test_batch_size_and_temperature_sweep_through_a_study(tmp_path):
    """batch_size and temperature are method keys of a study and sweep dimensions; the store's verdicts
    are the stochastic analysis's (Langevin rungs coupled as in run_ladder)."""
    cfg = {
        "name": "stoch", "t_end": 0.4, "save_every": 0.2,
        "model": {"widths": [4, 6, 1]}, "data": {"n_points": 32, "noise": 0.1}, "seeds": {"count": 40},
        "methods": {"sgd": {"dynamics": "gd", "batch_size": 8, "step_sizes": [0.05, 0.025, 0.0125]},
                    "langevin": {"dynamics": "langevin", "temperature": 0.05,
                                 "step_sizes": [0.05, 0.025, 0.0125]}},
        "sweep": {"methods.sgd.batch_size": [4, 16], "methods.langevin.temperature": [0.0, 0.5]},
    }
    ds = ns.run_study(cfg, tmp_path / "stoch")
    assert ds.drift.dims[:4] == ("methods.sgd.batch_size", "methods.langevin.temperature", "scheme", "step")
    assert list(ds["methods.sgd.batch_size"].values) == [4, 16]
    # a point equals the same run through simulate(), bit for bit (the finest Langevin rung: noise_substeps 1)
    model, data = ns.DeepLinear((4, 6, 1)), ns.data.synthetic_regression(4, 1, 32, noise=0.1)
    alone = ns.simulate(model, data, dynamics="langevin", temperature=0.5, h=0.0125, t_end=0.4, save_every=0.2,
                        seeds=40)
    stored = ds.charge_initial  # a cheap check of the data set, then the final charges
    point = {"methods.sgd.batch_size": 16, "methods.langevin.temperature": 0.5, "scheme": "langevin"}
    np.testing.assert_array_equal(stored.sel(point).isel(step=2).values, alone.charge_initial.values)
    np.testing.assert_array_equal(ds.charge_final.sel(point).isel(step=2).values, alone.charge_final.values)
    for i, langevin in ((3, "broken by the noise"), (2, "conserved by the flow")):  # T = 0.5; T = 0 is gd
        rows = {(r.method, r.charge): r.verdict for r in summary_rows(sweep_point(ds, i))}
        assert rows == {("sgd", "D1"): "conserved by the flow", ("langevin", "D1"): langevin}


@pytest.mark.slow  # a whole-process run: the README's quick command leaves it out, .ci/run runs it
@pytest.mark.timeout(600)
def test_stochastic_study_on_a_local_dask_cluster_gives_the_same_bits(tmp_path):
    """Minibatches and Langevin noise keyed by (root seed, seed id, step): the same store, bit for bit,
    whether the blocks run in this process or on two Dask worker processes."""
    from test_dask import assert_same_bits

    cfg = {
        "name": "stoch-dask", "t_end": 0.2, "save_every": 0.1,
        "model": {"widths": [4, 6, 1]}, "data": {"n_points": 32, "noise": 0.1}, "seeds": {"count": 6},
        "methods": {"sgd": {"dynamics": "gd", "batch_size": 8, "sampling": "epoch",
                            "step_sizes": [0.05, 0.025, 0.0125]},
                    "langevin": {"dynamics": "langevin", "temperature": 0.1, "batch_size": 4,
                                 "step_sizes": [0.05, 0.025, 0.0125]}},
    }
    here = ns.run_study(cfg, tmp_path / "here")
    there = ns.run_study(cfg, tmp_path / "cluster", workers=2)
    assert_same_bits(ns.load(tmp_path / "cluster"), here)
    assert not np.array_equal(there.charge_final.values[0, 0, 0], there.charge_final.values[0, 0, 1])
