"""A CustomModel vectorised over seeds (``vectorised=True``) stepped in lockstep (noether_sim/custom_lockstep.py).

Oracle: the compiled CustomModel path (the user's numba.njit function through the driver) on the same model
and θ₀ — the lockstep path does the same arithmetic in NumPy (products and sums rounded separately where the
driver fuses them), so every record agrees to round-off and every status and counter exactly. And the
property the path exists for: one call of the user's function per stage (and per save) for all seeds.
"""

import pathlib
import sys

import numpy as np
import pytest

import noether_sim as ns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402

P = ref.P


@pytest.fixture(scope="module")
def data():
    return ns.data.synthetic_regression(ref.N0, ref.N2, 16, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def theta0():
    th = np.random.default_rng(0).standard_normal((5, P)) * 0.7
    th[4] *= 30  # leaves the divergence bound in the first steps
    return th


class _Counted:
    """The reference's vectorised function, counting its calls by the number of rows."""

    def __init__(self):
        self.rows = []
        self.__name__ = "loss_grad_vectorised"

    def __call__(self, Theta, X, Y):
        self.rows.append(Theta.shape[0])
        return ref.loss_grad_vectorised(Theta, X, Y)


def _compiled():
    """The reference with a charge whose symmetry fails: ½|W_1|² (its law is broken)."""
    w1 = np.r_[np.ones(ref.N1 * ref.N0), np.zeros(P - ref.N1 * ref.N0)]
    return ref.model().with_charges(ns.Charge.quadratic(np.diag(w1), "W1_norm"))


def _vectorised(f=ref.loss_grad_vectorised):
    return ns.CustomModel(P, f, vectorised=True, charges=_compiled().charges)


def _agree(vec, fast):
    """Same variables, dimensions and shapes; integers and statuses equal; floats to round-off."""
    assert set(vec.data_vars) == set(fast.data_vars)
    for v in fast.data_vars:
        a, b = vec[v], fast[v]
        assert a.dims == b.dims and a.shape == b.shape, v
        if b.dtype.kind != "f":
            np.testing.assert_array_equal(a.values, b.values, err_msg=v)
            continue
        x, y = a.values, b.values
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=v)
        ok = ~np.isnan(y)
        if v in ("residual", "law_residual"):  # round-off themselves: two orders of arithmetic differ by it
            floor = fast.roundoff_floor.broadcast_like(b).transpose(*b.dims).values
            assert np.all(np.abs(x[ok] - y[ok]) <= floor[ok]), v
            continue
        scale = max(np.max(np.abs(y[ok]), initial=0.0), 1.0) if v in ("theta_final", "theta_initial") else None
        if scale is not None:
            np.testing.assert_allclose(x[ok], y[ok], rtol=0, atol=1e-12 * scale, err_msg=v)
        else:
            np.testing.assert_allclose(x[ok], y[ok], rtol=1e-9, atol=1e-13, err_msg=v)


@pytest.mark.parametrize("kw", [
    dict(method="rk4", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.1),
    dict(dynamics="gd", h=0.05, n_steps=40, save_every=0.25, weight_decay=0.05),
    dict(method="heun", h=0.05, n_steps=30),
    dict(method="dp5", h=0.05, n_steps=30, save_every=0.5),
    dict(dynamics="heavy_ball", learning_rate=0.01, n_steps=100, beta=0.9, velocity="gradient"),
    dict(dynamics="nesterov", learning_rate=0.01, n_steps=100, beta=0.9, velocity="gradient", weight_decay=0.1),
    dict(dynamics="heavy_ball", learning_rate=0.01, n_steps=50, beta=0.9, track_law=False),
], ids=["rk4_wd", "gd_wd", "heun", "dp5_fsal", "heavy_ball", "nesterov_wd", "heavy_ball_untracked"])
def test_lockstep_agrees_with_compiled(data, theta0, kw):
    """Records, laws, verdict inputs, watched charges, a diverging seed (its status and time exactly)."""
    run = dict(seeds=5, init=ns.init.Given(theta0), watch_seeds=[0, 4], progress=False, **kw)
    fast = ns.simulate(_compiled(), data, **run)
    vec = ns.simulate(_vectorised(), data, **run)
    assert list(fast.status.values) == [0, 0, 0, 0, 1]
    _agree(vec, fast)
    # a GD law's residual is round-off for the balance charges and not for ½|W_1|²: the records carry it
    if kw.get("dynamics") == "gd":
        assert np.all(vec.residual.sel(charge="D_00").isel(seed=slice(0, 4)).values < 1e-12)
        assert np.all(vec.residual.sel(charge="W1_norm").isel(seed=slice(0, 4), time=-1).values > 1e-6)
        verdicts = [{r["charge"]: (r["verdict"], r["basis"])
                     for r in ns.summarise_verdicts(ns.judge(ds.isel(seed=slice(0, 4))))} for ds in (vec, fast)]
        assert verdicts[0] == verdicts[1]
        assert verdicts[0]["D_00"][0] == "conserved by the flow" and verdicts[0]["W1_norm"][0] == "broken by the flow"


def test_one_call_per_stage_for_all_seeds(data, theta0):
    """RK4, 4 seeds × 20 steps, 3 saves: 4 calls per step and one per save, each on all 4 rows (besides the
    contract check's single rows before the run)."""
    f = _Counted()
    model = _vectorised(f)
    th = theta0[:4]
    model.check(data)  # the contract check (single rows and one call on its 3 random points), done here first
    f.rows.clear()
    ns.simulate(model, data, seeds=4, init=ns.init.Given(th), method="rk4", h=0.05, n_steps=20, save_every=0.5,
                progress=False)
    n_saves = 3
    assert f.rows == [4] * (20 * 4 + n_saves)


def test_seeding_is_the_package_seeding(data):
    """The default initialisation: seed id k starts from the same θ on both paths (and on any subset)."""
    kw = dict(dynamics="gd", h=0.05, n_steps=5, progress=False)
    fast = ns.simulate(_compiled(), data, seeds=[3, 7, 11], **kw)
    vec = ns.simulate(_vectorised(), data, seeds=[7, 11], **kw)
    np.testing.assert_array_equal(vec.theta_initial.values, fast.theta_initial.sel(seed=[7, 11]).values)
    _agree(vec, fast.sel(seed=[7, 11]))


@pytest.mark.parametrize("kw", [dict(method="gl2", h=0.1, n_steps=5),
                                dict(method="dopri5", t_end=0.5, rtol=1e-8, atol=1e-10)],
                         ids=["gl2", "dopri5_adaptive"])
def test_other_methods_run_row_at_a_time(data, theta0, kw):
    """Runs that cannot step in lockstep keep the row-at-a-time route (calls on one row) and its results."""
    f = _Counted()
    model = _vectorised(f)
    model.check(data)
    f.rows.clear()
    run = dict(seeds=3, init=ns.init.Given(theta0[:3]), progress=False, **kw)
    vec = ns.simulate(model, data, **run)
    assert f.rows and set(f.rows) == {1}
    _agree(vec, ns.simulate(_compiled(), data, **run))
