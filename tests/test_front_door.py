"""One entry point for every dynamics and method: one result layout, verdicts for all, ladders that cannot lie,
memory refused up front, studies that reach what the API reaches."""

import time

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import ConfigError
from noether_sim.cli import main
from noether_sim.ladder import BROKEN, CONSERVED

MODEL = ns.DeepLinear((4, 5, 3, 2))
DATA = ns.data.synthetic_regression(4, 2, 16, noise=0.1, seed=3)
LADDER = dict(step_sizes=[1 / 8, 1 / 16, 1 / 32], t_end=0.5, save_every=0.25, seeds=4)

RUNS = {  # every dynamics with each kind of method it takes
    "gf-rk4": dict(dynamics="gf", method="rk4"),
    "gf-gl2": dict(dynamics="gf", method="gl2"),
    "gd": dict(dynamics="gd"),
    "momentum-verlet": dict(dynamics="momentum", method="verlet", tau=0.5, velocity="gradient"),
    "momentum-yoshida4": dict(dynamics="momentum", method="yoshida4", tau=0.5, velocity="gradient"),
    "momentum-gl2": dict(dynamics="momentum", method="gl2", tau=0.5, velocity="gradient"),
    "momentum-rk4": dict(dynamics="momentum", method="rk4", tau=0.5, velocity="gradient"),
    "heavy_ball": dict(dynamics="heavy_ball", tau=0.5, velocity="gradient"),
    "nesterov": dict(dynamics="nesterov", tau=0.5, velocity="gradient"),
}


def _verdicts(kwargs, ladder=LADDER, model=MODEL, data=DATA):
    rows = ns.summarise_verdicts(ns.analyse_ladder(ns.run_ladder(model, data, **ladder, **kwargs)))
    return {r["charge"]: r for r in rows}


def test_one_layout_for_every_dynamics_and_method():
    variables = {}
    for label, kw in [*RUNS.items(), ("gf-dopri5", dict(dynamics="gf", method="dopri5"))]:
        ds = ns.simulate(MODEL, DATA, h=1 / 8, t_end=0.25, seeds=2, **kw)
        variables[label] = sorted(ds.data_vars)
        assert ds.attrs["dynamics"] == kw["dynamics"]
        assert np.all(ds.status.values == 0), label
        # the model's charges always; the isometric ones where there is a velocity
        momentum = kw["dynamics"] in ("momentum", "heavy_ball", "nesterov")
        assert list(ds.charge.values) == (["D1", "D2", "J1", "J2"] if momentum else ["D1", "D2"]), label
    first = next(iter(variables.values()))
    for label, names in variables.items():
        assert names == first, label
    # counters that do not apply are kept, as 0 (solve iterations of an explicit method) or NaN
    ds = ns.simulate(MODEL, DATA, method="rk4", h=1 / 8, t_end=0.25, seeds=2)
    assert np.all(ds.n_solve_iters.values == 0) and np.all(np.isnan(ds.solve_residual.values))
    assert np.all(np.isnan(ds.velocity_final.values)) and np.all(np.isnan(ds.law_residual.values))


# first-order methods (and RK4, whose J law is not exact) need finer ladders for the extrapolation's
# uncertainty to fall below 1e-6 × scale on every seed
FINE = {"gf-rk4": dict(LADDER, step_sizes=[1 / 32, 1 / 64, 1 / 128]),
        "momentum-rk4": dict(LADDER, step_sizes=[1 / 32, 1 / 64, 1 / 128]),
        "gd": dict(LADDER, step_sizes=[2 ** -9, 2 ** -10, 2 ** -11, 2 ** -12], t_end=0.25, save_every=0.125),
        "nesterov": dict(LADDER, step_sizes=[2 ** -9, 2 ** -10, 2 ** -11, 2 ** -12])}


@pytest.mark.parametrize("label", ["gf-rk4", "gf-gl2", "gd"])
def test_gradient_flow_and_descent_conserve_balance(label):
    v = _verdicts(RUNS[label], FINE.get(label, LADDER))
    assert v["D1"]["verdict"] == CONSERVED and v["D2"]["verdict"] == CONSERVED, v


@pytest.mark.parametrize("label", ["momentum-verlet", "momentum-yoshida4", "momentum-gl2", "momentum-rk4",
                                   "heavy_ball", "nesterov"])
def test_momentum_breaks_balance_and_conserves_isometric_charges(label):
    """theory.md §2: under momentum flow the rescaling charges D are broken (τQ̈ + Q̇ = τθ̇ᵀSθ̇) and the
    rotation charges obey J(t) = e^{−t/τ}J(0)."""
    v = _verdicts(RUNS[label], FINE.get(label, LADDER))
    for c in ("D1", "D2"):
        assert v[c]["verdict"] == BROKEN, (c, v[c])
    for c in ("J1", "J2"):
        assert v[c]["verdict"] == CONSERVED, (c, v[c])
        assert v[c]["extrapolated_drift"] < 1e-6 * v[c]["scale"]


def test_gauss_legendre_decides_where_rk4_cannot():
    """At h = 1/2, 1/4, 1/8 RK4's ladder cannot resolve D to 1e-6 of its scale; Gauss–Legendre keeps D
    to the solve tolerance at every step size, so the same ladder decides."""
    ladder = dict(step_sizes=[1 / 2, 1 / 4, 1 / 8], t_end=2.0, save_every=1.0, seeds=4)
    gl = _verdicts(dict(method="gl2"), ladder)
    rk = _verdicts(dict(method="rk4"), ladder)
    assert gl["D1"]["verdict"] == CONSERVED and gl["D2"]["verdict"] == CONSERVED
    assert rk["D1"]["verdict"] != CONSERVED and rk["D2"]["verdict"] != CONSERVED
    assert gl["D1"]["finest_drift"] < 1e-12 * gl["D1"]["scale"] < rk["D1"]["finest_drift"]


def test_relu_rescale_charges_under_momentum_are_broken():
    from noether_sim.mlp import MLP, teacher_regression

    relu = MLP((3, 4, 1), activation="relu")
    data = teacher_regression(relu, 16, noise=0.1)
    v = _verdicts(dict(dynamics="momentum", method="verlet", tau=0.5, velocity="gradient"),
                  dict(step_sizes=[1 / 64, 1 / 128, 1 / 256], t_end=0.25, save_every=0.25, seeds=3),
                  model=relu, data=data)
    assert v["r1"]["verdict"] == BROKEN


# ---------------------------------------------------------------- ladders that cannot lie

@pytest.mark.parametrize("kwargs,name", [
    (dict(n_steps=4, step_sizes=[0.04, 0.02, 0.01], save_every=0.04), "n_steps"),
    (dict(h=0.01, step_sizes=[0.04, 0.02, 0.01], t_end=0.08), "h"),
    (dict(method="dopri5", step_sizes=[0.04, 0.02, 0.01], t_end=0.08), "method"),
    (dict(step_sizes=[0.04, 0.02], t_end=0.08), "step_sizes"),
    (dict(step_sizes=[0.04, 0.03, 0.01], t_end=0.08, save_every=0.04), "save_every"),
    (dict(step_sizes=[0.04, 0.02, 0.01], save_every=0.04), "t_end"),
])
def test_ladder_refuses_before_any_work(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        ns.run_ladder(MODEL, DATA, seeds=2, **kwargs)


def test_ladder_without_save_grid_shares_one_grid():
    lad = ns.run_ladder(MODEL, DATA, step_sizes=[0.04, 0.02, 0.01], t_end=0.4, seeds=2)
    assert float(lad.time.values[-1]) == pytest.approx(0.4)
    assert lad.sizes["h"] == 3
    ns.analyse_ladder(lad)  # aligned: no xarray error


# ---------------------------------------------------------------- arguments, memory, initial weights

@pytest.mark.parametrize("kwargs,name", [
    (dict(root_seed=-1), "root_seed"),
    (dict(root_seed=1.5), "root_seed"),
    (dict(tau=0.5), "tau"),
    (dict(solve_tol=1e-12), "solve_tol"),
    (dict(rtol=1e-6), "rtol"),
    (dict(dynamics="gd", method="rk4"), "method"),
    (dict(dynamics="gf", method="verlet"), "method"),
    (dict(dynamics="sgd"), "dynamics"),
    (dict(dynamics="heavy_ball", learning_rate=0.1), "beta"),
    (dict(memory_limit=1000), "GiB"),
])
def test_bad_arguments_name_themselves(kwargs, name):
    kw = dict(h=0.01, t_end=0.02, seeds=2)
    kw.update(kwargs)
    with pytest.raises(ConfigError, match=name):
        ns.simulate(MODEL, DATA, **kw)


def test_absurd_seed_count_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="seeds per call"):
        ns.simulate(MODEL, DATA, h=0.01, t_end=0.02, seeds=10 ** 9)
    assert time.perf_counter() - started < 5  # refused from the estimate, not after allocating


@pytest.mark.parametrize("init", [ns.init.Gaussian(scale=(1.0, 2.0, 0.5)), ns.init.Orthogonal(), ns.init.Balanced()])
def test_initial_weights_depend_only_on_the_seed_id(init):
    from noether_sim.ensemble import initial_weights

    many = initial_weights(MODEL, init, np.arange(5000), 7)
    some = initial_weights(MODEL, init, np.array([4999, 17, 3]), 7)
    assert np.array_equal(some, many[[4999, 17, 3]])
    other_root = initial_weights(MODEL, init, np.array([17]), 8)
    assert not np.array_equal(other_root[0], many[17])


def test_initial_weights_have_the_stated_distribution():
    """Gaussian init: W_i entries N(0, scale²/n_{i−1}); checked on 20,000 seeds (standard error ~0.5 %)."""
    from noether_sim.ensemble import initial_weights

    theta = initial_weights(MODEL, ns.init.Gaussian(scale=2.0), np.arange(20000), 0)
    for i, (W, _) in enumerate(MODEL.unflatten(theta), start=1):
        n_in = MODEL.widths[i - 1]
        assert abs(W.mean()) < 0.01 * 2 / np.sqrt(n_in)
        assert W.var() == pytest.approx(4.0 / n_in, rel=0.02)
    balanced = initial_weights(MODEL, ns.init.Balanced(), np.arange(50), 0)
    q = ns.simulate(MODEL, DATA, init=ns.init.Given(balanced), h=0.01, n_steps=1, seeds=50).charge_initial
    assert float(np.abs(q.sel(component=q.component_charge.isin(["D1", "D2"]))).max()) < 1e-13


# ---------------------------------------------------------------- studies reach everything

STUDY = """
name = "structured"
t_end = 0.5
save_every = 0.25
[model]
widths = [4, 5, 3, 2]
[data]
n_points = 16
noise = 0.1
[seeds]
count = 3
[methods.gf-gl2]
dynamics = "gf"
method = "gl2"
step_sizes = [0.125, 0.0625, 0.03125]
solve_tol = 1e-13
[methods.mom-verlet]
dynamics = "momentum"
method = "verlet"
tau = 0.5
velocity = "gradient"
step_sizes = [0.125, 0.0625, 0.03125]
[methods.hb]
dynamics = "heavy_ball"
tau = 0.5
velocity = 0.5
step_sizes = [0.125, 0.0625, 0.03125]
"""


def test_study_with_implicit_and_momentum_blocks(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(STUDY)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-figures"]) == 0
    ds = ns.load(out)
    v = ds.verdict
    assert set(v.sel(scheme="gf-gl2", charge=["D1", "D2"]).values.ravel()) == {CONSERVED}
    assert set(v.sel(scheme="mom-verlet", charge=["D1", "D2"]).values.ravel()) == {BROKEN}
    assert set(v.sel(scheme="mom-verlet", charge=["J1", "J2"]).values.ravel()) == {CONSERVED}
    assert set(v.sel(scheme="hb", charge=["J1", "J2"]).values.ravel()) == {CONSERVED}
    assert list(ds.method_order.values) == [4, 2, 1]


@pytest.mark.parametrize("table,key", [
    ('dynamics = "gf"\nmethod = "verlet"', "methods.x.method"),
    ('dynamics = "momentum"\nmethod = "verlet"', "methods.x.tau"),
    ('dynamics = "gf"\nmethod = "rk4"\ntau = 0.5', "methods.x.tau"),
    ('dynamics = "gf"\nmethod = "dopri5"', "methods.x.method"),
    ('dynamics = "gf"\nmethod = "gl2"\nsolve_tol = -1.0', "methods.x.solve_tol"),
    ('dynamics = "momentum"\nmethod = "rk4"\ntau = 0.5\nvelocity = "up"', "methods.x.velocity"),
])
def test_study_method_tables_are_checked_like_the_api(tmp_path, table, key):
    from noether_sim.config import load_config

    cfg = tmp_path / "s.toml"
    cfg.write_text(STUDY.split("[methods.gf-gl2]")[0] + f"[methods.x]\n{table}\nstep_sizes = [0.125, 0.0625, 0.03125]\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(cfg)
