"""Ensembles: per-seed independence (bit-identical alone, in a batch, on 1 or 2 threads), scale,
divergence detection."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import noether_sim as ns

RUN = dict(method="rk4", h=0.05, t_end=2.0, save_every=0.5)
FIELDS = ["loss", "drift", "drift_max", "scale", "theta_final", "charge_final", "n_grad_evals"]


def test_seed_results_are_bit_identical_alone_and_in_a_batch(reference_problem):
    model, data = reference_problem
    batch = ns.simulate(model, data, seeds=64, **RUN)
    alone = ns.simulate(model, data, seeds=[37], **RUN)
    for field in FIELDS:
        assert np.array_equal(batch[field].sel(seed=37).values, alone[field].sel(seed=37).values), field


def test_adaptive_seed_results_are_bit_identical_alone_and_in_a_batch(reference_problem):
    model, data = reference_problem
    kw = dict(method="dopri5", t_end=2.0, save_every=0.5, rtol=1e-9, atol=1e-9)
    batch = ns.simulate(model, data, seeds=32, **kw)
    alone = ns.simulate(model, data, seeds=[5, 30], **kw)
    for field in FIELDS + ["n_accepted", "n_rejected"]:
        assert np.array_equal(batch[field].sel(seed=[5, 30]).values, alone[field].values), field
    assert len(set(batch.n_accepted.values)) > 1  # seeds really chose their own steps


_THREAD_SCRIPT = """
import sys, numba, numpy as np, noether_sim as ns
numba.set_num_threads(int(sys.argv[1]))
model = ns.DeepLinear((10, 16, 16, 5)); data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
ds = ns.simulate(model, data, seeds=16, method="rk4", h=0.05, t_end=2.0, save_every=0.5)
np.save(sys.argv[2], np.concatenate([ds.theta_final.values.ravel(), ds.drift.values.ravel(), ds.loss.values.ravel()]))
"""


def test_results_are_bit_identical_on_one_and_two_threads(tmp_path):
    out = {}
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.npy"
        subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, str(threads), str(path)], check=True,
                       env={**os.environ, "NUMBA_NUM_THREADS": "2"})
        out[threads] = np.load(path)
    assert np.array_equal(out[1], out[2])


def test_one_hundred_thousand_seeds_in_one_call():
    model = ns.DeepLinear((3, 4, 2))
    data = ns.data.synthetic_regression(3, 2, 8, seed=0)
    ds = ns.simulate(model, data, seeds=100_000, method="heun", h=0.1, t_end=0.2, save_every=0.2)
    assert ds.sizes["seed"] == 100_000
    assert not ds.diverged.any() and np.isfinite(ds.drift).all()
    single = ns.simulate(model, data, seeds=[99_999], method="heun", h=0.1, t_end=0.2, save_every=0.2)
    assert np.array_equal(ds.theta_final.isel(seed=-1).values, single.theta_final.isel(seed=0).values)


def test_initialisation_depends_only_on_root_seed_and_seed_id(reference_problem):
    model, data = reference_problem
    a = ns.simulate(model, data, seeds=[3, 4], root_seed=11, **RUN)
    b = ns.simulate(model, data, seeds=[4], root_seed=11, **RUN)
    c = ns.simulate(model, data, seeds=[4], root_seed=12, **RUN)
    assert np.array_equal(a.theta_initial.sel(seed=4), b.theta_initial.sel(seed=4))
    assert not np.array_equal(b.theta_initial.values, c.theta_initial.values)


def test_diverging_seeds_are_flagged_with_their_time_and_excluded(reference_problem):
    """Gradient descent with a learning rate at the edge of stability: large initialisations diverge."""
    model, data = reference_problem
    theta = ns.simulate(model, data, seeds=8, dynamics="gd", h=0.01, n_steps=1).theta_initial.values
    theta[[2, 5]] *= 4.0  # these two start far out on the loss surface, where η = 0.2 is unstable
    ds = ns.simulate(model, data, seeds=8, dynamics="gd", h=0.2, n_steps=200, save_every=2.0,
                     init=ns.init.Given(theta), divergence_bound=1e6)
    assert list(ds.seed.values[ds.diverged.values]) == [2, 5]
    assert ds.attrs["n_diverged"] == 2
    t_div = ds.t_diverged.values
    assert np.all(np.isnan(t_div[~ds.diverged.values]))
    assert np.all((t_div[[2, 5]] > 0) & (t_div[[2, 5]] <= 40.0))
    # records stop at the divergence: NaN from the first save after it, finite before
    for s in (2, 5):
        after = ds.time.values >= t_div[s]
        assert np.isnan(ds.loss.isel(seed=s).values[after]).all()
        assert np.isfinite(ds.loss.isel(seed=s).values[~after]).all()
    # the others went on to the end
    assert np.isfinite(ds.loss.isel(time=-1).values[~ds.diverged.values]).all()
    # statistics across seeds exclude them explicitly, and say so
    rows = ns.ladder.summarise_verdicts(ns.analyse_ladder(ns.run_ladder(
        model, data, step_sizes=[0.2, 0.1, 0.05], dynamics="gd", n_steps=None, t_end=4.0, save_every=2.0,
        seeds=8, init=ns.init.Given(theta), divergence_bound=1e6)))
    assert all(r["seeds_excluded"] >= 2 and r["seeds_judged"] == 8 - r["seeds_excluded"] for r in rows)
