"""Regression: init.Given with one row per seed used to hand the driver a read-only broadcast view
(numba TypingError 'Cannot modify readonly array'), and the driver integrates in place."""

import numpy as np

import noether_sim
from noether_sim.init import Given


def test_given_rows_per_seed_run_and_leave_the_callers_array_alone():
    model = noether_sim.DeepLinear((3, 4, 2))
    data = noether_sim.data.synthetic_regression(3, 2, 8, noise=0.1)
    rows = np.random.default_rng(1).standard_normal((3, model.n_params))
    before = rows.copy()
    ds = noether_sim.simulate(model, data, method="rk4", h=0.01, n_steps=10, save_every=0.05, seeds=3,
                                init=Given(rows))
    np.testing.assert_array_equal(ds.theta_initial.values, before)
    np.testing.assert_array_equal(rows, before)
    assert np.all(np.isfinite(ds.theta_final.values)) and not np.array_equal(ds.theta_final.values, before)
