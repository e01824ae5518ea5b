"""The lane contract (``CustomModel(..., loss_grad_lanes=f)``): 8 seeds per call of the user's function on
the fixed-step gradient flow / gradient descent fast path (kernels/custom_fast.py), against the per-seed
custom path as the oracle.

Tolerance: the lane function of the example (deep_linear_reference.loss_grad_lanes) sums in another order
than the per-seed ``loss_grad`` (loops, not BLAS/@), so each gradient differs by a few ulps; over 40 steps
of a contracting flow these stay a few hundred ε of the state's size at most. RTOL = 1e-12 (≈ 4500 ε) is far
above that and far below any real error (a wrong lane or a missed stage is O(h) = 1e-2).
"""

import pathlib
import sys

import numba
import numpy as np
import pytest

import noether_sim as ns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402

RTOL = 1e-12


@numba.njit(cache=True)
def _lanes_swapped(theta, X, Y, grad):  # seeds 2 and 5 exchanged: a layout mistake
    ref.loss_grad_lanes(theta, X, Y, grad)
    for p in range(grad.shape[0]):
        a = grad[p, 2]
        grad[p, 2] = grad[p, 5]
        grad[p, 5] = a


@numba.njit(cache=True)
def _lanes_one_unwritten(theta, X, Y, grad):
    ref.loss_grad_lanes(theta, X, Y, grad)
    grad[3, 7] = np.nan


@pytest.fixture(scope="module")
def data():
    return ns.data.synthetic_regression(ref.N0, ref.N2, 16, noise=0.1, seed=3)


def _thetas(n, diverge=None):
    th = np.random.default_rng(1).standard_normal((n, ref.P)) * 0.7
    if diverge is not None:
        th[diverge] *= 30  # leaves the divergence bound mid-run
    return th


# records that are differences of charges (q(θ_t) − q(θ_0), its law's prediction, their difference): their
# round-off is that of the charges, so they are compared at RTOL of the charges' size
_CHARGE_DIFFERENCES = ("drift", "drift_max", "predicted", "residual", "law_residual", "predicted_watch")


def _close(a, b):
    """The variables of two results that differ beyond RTOL of each variable's size (of the charges' size for
    charge differences; NaN where NaN, integers equal)."""
    q = np.concatenate([b[v].values.ravel() for v in ("charge_initial", "charge_final", "charge_watch")])
    q_size = np.max(np.abs(q[np.isfinite(q)]))
    bad = []
    for v in a.data_vars:
        x, y = a[v].values, b[v].values
        if x.dtype.kind != "f":
            if not np.array_equal(x, y):
                bad.append(v)
            continue
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            bad.append(v)
            continue
        m = np.isfinite(y)
        size = q_size if v in _CHARGE_DIFFERENCES else np.max(np.abs(y[m]), initial=0.0)
        if np.max(np.abs(x[m] - y[m]), initial=0.0) > RTOL * max(size, 1e-300):
            bad.append(v)
    return bad


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kw", [
    dict(method="rk4", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.1),
    dict(dynamics="gd", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.05),
    dict(method="heun", h=0.05, n_steps=30),
], ids=["rk4_wd", "gd_wd", "heun"])
def test_lanes_agree_with_per_seed_path(data, kw, threads, monkeypatch):
    """13 seeds (a block of 8 and a padded one of 5), one diverging: every record, θ, counter, status and
    divergence time of the lane path agrees with the per-seed custom path (counters, status exactly), and
    the lane kernel did run."""
    from noether_sim.kernels import custom_fast

    calls = []
    lane = custom_fast._advance_custom_lanes
    monkeypatch.setattr(custom_fast, "_advance_custom_lanes", lambda *a: (calls.append(1), lane(*a)))
    th = _thetas(13, diverge=5)
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        per_seed = ns.simulate(ref.model(), data, seeds=13, init=ns.init.Given(th), watch_seeds=[0, 5], progress=False,
                               **kw)
        assert not calls
        lanes = ns.simulate(ref.model(lanes=True), data, seeds=13, init=ns.init.Given(th), watch_seeds=[0, 5],
                            progress=False, **kw)
    finally:
        numba.set_num_threads(old)
    assert calls
    assert int(lanes.status.values[5]) == 1 and int(np.sum(lanes.status.values)) == 1
    assert _close(lanes, per_seed) == []


def test_lanes_switch_off_is_per_seed_bit_for_bit(data, monkeypatch):
    """NOETHER_SIM_CUSTOM_LANES=0 runs the per-seed loop: the result is the lane-less model's bit for bit; and
    the lanes' result is not (the example's lane function rounds differently), so the test above can fail."""
    th = _thetas(9)
    kw = dict(method="rk4", h=0.05, n_steps=20, progress=False, seeds=9, init=ns.init.Given(th))
    per_seed = ns.simulate(ref.model(), data, **kw)
    lanes = ns.simulate(ref.model(lanes=True), data, **kw)
    monkeypatch.setenv("NOETHER_SIM_CUSTOM_LANES", "0")
    off = ns.simulate(ref.model(lanes=True), data, **kw)
    assert np.array_equal(off.theta_final.values, per_seed.theta_final.values)
    assert not np.array_equal(lanes.theta_final.values, per_seed.theta_final.values)


def test_single_seed_and_other_methods(data):
    """One seed (a block of one, padded); an adaptive run (the lane function is not used: the per-seed path)."""
    th = _thetas(1)
    for kw in (dict(method="rk4", h=0.05, n_steps=20), dict(method="dopri5", t_end=1.0, rtol=1e-8, atol=1e-10)):
        a = ns.simulate(ref.model(lanes=True), data, seeds=1, init=ns.init.Given(th), progress=False, **kw)
        b = ns.simulate(ref.model(), data, seeds=1, init=ns.init.Given(th), progress=False, **kw)
        assert _close(a, b) == []


def test_wrong_lane_function_names_seed_and_coordinate(data):
    with pytest.raises(ns.ConfigError, match=r"loss_grad_lanes='_lanes_swapped'.*seed \(lane\) 2, coordinate"):
        ns.CustomModel(ref.P, ref.loss_grad, loss_grad_lanes=_lanes_swapped).check(data)
    with pytest.raises(ns.ConfigError, match=r"seed \(lane\) 7, coordinate 3"):
        ns.CustomModel(ref.P, ref.loss_grad, loss_grad_lanes=_lanes_one_unwritten).check(data)


def test_lane_function_must_be_compiled():
    with pytest.raises(ns.ConfigError, match="loss_grad_lanes"):
        ns.CustomModel(ref.P, ref.loss_grad, loss_grad_lanes=ref.loss_grad_lanes.py_func)
    with pytest.raises(ns.ConfigError, match="loss_grad_lanes"):
        ns.CustomModel(ref.P, ref.loss_grad.py_func, plain_python=True, loss_grad_lanes=ref.loss_grad_lanes)


def test_with_charges_keeps_the_lanes(data):
    m = ref.model(lanes=True).with_charges(ns.Charge.linear(np.ones(ref.P), "sum"))
    assert m.loss_grad_lanes is ref.loss_grad_lanes


def test_a_model_without_lanes_never_takes_them(data, monkeypatch):
    """The lane function belongs to its model: the same loss_grad in a model without one runs per seed, after
    a model with one has run."""
    from noether_sim.kernels import custom_fast

    calls = []
    lane = custom_fast._advance_custom_lanes
    monkeypatch.setattr(custom_fast, "_advance_custom_lanes", lambda *a: (calls.append(1), lane(*a)))
    kw = dict(method="rk4", h=0.05, n_steps=5, seeds=9, progress=False)
    ns.simulate(ref.model(lanes=True), data, **kw)
    n = len(calls)
    assert n > 0
    ns.simulate(ref.model(), data, **kw)
    assert len(calls) == n
