"""The seed-interleaved fast path (kernels/lanes.py): bit-identical to the general driver for every
seed count and thread count, taken only where it applies, and out of the way of everything else."""

from collections import namedtuple

import numba
import numpy as np
import pytest

import noether_sim as ns
from noether_sim.kernels import lanes
from noether_sim.kernels.bundles import GradientFlowSettings, MomentumSettings

RUN = dict(method="rk4", h=0.05, n_steps=40, save_every=0.5)


def _all_equal(a, b):
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert np.array_equal(x, y), name


@pytest.fixture
def counted(monkeypatch):
    """Counts the calls that took the fast path."""
    calls = []
    inner = lanes._advance_lanes

    def wrapped(*args):
        calls.append(args[1] - args[0])
        return inner(*args)

    monkeypatch.setattr(lanes, "_advance_lanes", wrapped)
    split = lanes._advance_lanes_split

    def wrapped_split(*args):
        calls.append(args[1] - args[0])
        return split(*args)

    monkeypatch.setattr(lanes, "_advance_lanes_split", wrapped_split)
    return calls


def _both(monkeypatch, *args, **kw):
    monkeypatch.setenv("NOETHER_SIM_LANES", "1")
    fast = ns.simulate(*args, **kw)
    monkeypatch.setenv("NOETHER_SIM_LANES", "0")
    slow = ns.simulate(*args, **kw)
    monkeypatch.delenv("NOETHER_SIM_LANES")
    return fast, slow


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seeds", [1, 7, 8, 13, 64])
def test_fast_path_is_bit_identical_to_the_general_driver(reference_problem, monkeypatch, counted, seeds, threads):
    model, data = reference_problem
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        fast, slow = _both(monkeypatch, model, data, seeds=seeds, watch_seeds=[0], **RUN)
    finally:
        numba.set_num_threads(before)
    assert counted, "the fast path was not taken"
    _all_equal(fast, slow)


def test_seed_results_do_not_depend_on_the_block_they_share(reference_problem, monkeypatch, counted):
    model, data = reference_problem
    batch = ns.simulate(model, data, seeds=29, **RUN)
    for ids in ([3], [27, 28], [0, 9, 17, 25]):
        alone = ns.simulate(model, data, seeds=ids, **RUN)
        for name in ("loss", "drift", "theta_final", "charge_final", "n_grad_evals"):
            assert np.array_equal(batch[name].sel(seed=ids).values, alone[name].values), name
    assert counted


@pytest.mark.parametrize("widths, method, decay", [
    ((4, 6, 5, 3), "rk4", 0.0), ((4, 6, 3), "heun", 0.1), ((3, 5, 4, 6, 2), "rk38", 0.0),
    ((10, 16, 16, 5), "dp5", 0.05), ((10, 16, 16, 5), "euler", 0.0), ((10, 16, 16, 5), "rk3", 0.0)])
def test_other_networks_tableaus_and_weight_decay_are_bit_identical(widths, method, decay, monkeypatch, counted):
    model = ns.DeepLinear(widths)
    data = ns.data.synthetic_regression(widths[0], widths[-1], 20, noise=0.1, seed=2)
    fast, slow = _both(monkeypatch, model, data, seeds=11, method=method, h=0.02, n_steps=30, save_every=0.2,
                       weight_decay=decay)
    assert counted
    _all_equal(fast, slow)


def test_diverging_seeds_fall_back_and_match(reference_problem, monkeypatch, counted):
    """A block in which a seed leaves the divergence bound is re-run by the general driver."""
    model, data = reference_problem
    theta = ns.simulate(model, data, seeds=20, n_steps=1, h=0.01).theta_initial.values
    theta[[3, 17]] *= 6.0
    kw = dict(seeds=20, method="rk4", h=0.1, n_steps=60, save_every=1.0, init=ns.init.Given(theta),
              divergence_bound=1e4)
    fast, slow = _both(monkeypatch, model, data, **kw)
    assert fast.diverged.values.sum() >= 1
    _all_equal(fast, slow)


MOMENTUM = dict(dynamics="momentum", tau=0.5, track_law=False, h=0.05, n_steps=40, save_every=0.5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seeds", [1, 8, 13])
def test_momentum_splitting_fast_path_is_bit_identical(reference_problem, monkeypatch, counted, seeds, threads):
    """Momentum flow by conformal Störmer–Verlet (track_law=False) on the fast path: every variable of the
    result, the gradient counts included, equal to the general driver's."""
    model, data = reference_problem
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        fast, slow = _both(monkeypatch, model, data, seeds=seeds, watch_seeds=[0], method="verlet",
                           velocity=0.1, **MOMENTUM)
    finally:
        numba.set_num_threads(before)
    assert counted, "the fast path was not taken"
    _all_equal(fast, slow)
    # one gradient per step plus one at the start of each save interval (the driver's count, kept)
    assert fast.n_grad_evals.values[0] == 40 + 4


@pytest.mark.parametrize("widths, method, decay", [
    ((4, 6, 5, 3), "symplectic_euler", 0.0), ((10, 16, 16, 5), "yoshida4", 0.05), ((3, 5, 4, 6, 2), "verlet", 0.1)])
def test_other_splittings_and_weight_decay_are_bit_identical(widths, method, decay, monkeypatch, counted):
    model = ns.DeepLinear(widths)
    data = ns.data.synthetic_regression(widths[0], widths[-1], 20, noise=0.1, seed=2)
    fast, slow = _both(monkeypatch, model, data, seeds=11, method=method, weight_decay=decay,
                       **{**MOMENTUM, "h": 0.02, "n_steps": 30, "save_every": 0.2})
    assert counted
    _all_equal(fast, slow)


def test_momentum_diverging_seeds_fall_back_and_match(reference_problem, monkeypatch, counted):
    model, data = reference_problem
    theta = ns.simulate(model, data, seeds=20, n_steps=1, h=0.01).theta_initial.values
    theta[[3, 17]] *= 6.0
    kw = dict(MOMENTUM, seeds=20, method="verlet", h=0.1, n_steps=60, save_every=1.0, init=ns.init.Given(theta),
              divergence_bound=1e4)
    fast, slow = _both(monkeypatch, model, data, **kw)
    assert fast.diverged.values.sum() >= 1 and counted
    _all_equal(fast, slow)


def _args(model, data, **kw):
    """The arguments of the first driver call simulate() makes, captured."""
    from noether_sim.kernels import entries

    seen = []
    original = entries._INTEGRATE.copy()
    try:
        for key, fn in original.items():
            entries._INTEGRATE[key] = (lambda f: (lambda *a: (seen.append(a), f(*a))[1]))(fn)
        import os
        os.environ["NOETHER_SIM_LANES"] = "0"
        ns.simulate(model, data, **kw)
    finally:
        entries._INTEGRATE.update(original)
        os.environ.pop("NOETHER_SIM_LANES", None)
    return seen[0]


def _kind(model):
    return int(model.descriptor()[0])


def test_applicability_accepts_the_reference_problem(reference_problem):
    model, data = reference_problem
    args = _args(model, data, seeds=4, **RUN)
    assert lanes.lanes_applicable(_kind(model), 0, args)


def test_applicability_declines_what_it_does_not_know(reference_problem, monkeypatch):
    model, data = reference_problem
    args = list(_args(model, data, seeds=4, **RUN))
    kind = _kind(model)
    cfg, refs = args[8], args[9]

    def with_cfg(**extra):
        T = namedtuple("GradientFlowSettings", cfg._fields + tuple(extra))
        return T(*cfg, *extra.values())

    # an unknown field in the settings or the refs, even a harmless-looking one
    a = list(args)
    a[8] = with_cfg(some_new_option=0)
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    R = namedtuple("ChargeRefs", refs._fields + ("unknown",))
    a = list(args)
    a[9] = R(*refs, None)
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    # fields the fast path knows, with values it does not handle
    a = list(args)
    a[8] = GradientFlowSettings(**{**cfg._asdict(), "track_gd_law": True})
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    a[8] = MomentumSettings(**cfg._asdict())
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    # energy records and data-symmetry charges (settings field energy_slot, refs fields gens and x0)
    a = list(args)
    a[8] = cfg._replace(energy_slot=cfg.n_params)
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    a = list(args)
    a[9] = refs._replace(gens=np.zeros((1, 10, 10)), x0=np.zeros((4, 1)))
    assert not lanes.lanes_applicable(kind, 0, tuple(a))
    assert cfg.energy_slot == -1 and refs.gens.shape[0] == 0  # what a plain run hands it: taken
    # other schemes and model kinds
    for scheme in (1, 2, 3, 4):
        assert not lanes.lanes_applicable(kind, scheme, tuple(args))
    assert not lanes.lanes_applicable(1, 0, tuple(args))
    assert not lanes.lanes_applicable(2, 0, tuple(args))
    # switched off
    monkeypatch.setenv("NOETHER_SIM_LANES", "0")
    assert not lanes.lanes_applicable(kind, 0, tuple(args))


@pytest.mark.parametrize("case", ["bias", "momentum", "adaptive", "implicit", "mlp", "gd", "input_side",
                                  "verlet_law", "verlet_noise", "verlet_batch", "verlet_bias"])
def test_fast_path_is_not_taken_where_it_does_not_apply(case, monkeypatch, counted):
    widths = (4, 6, 3)
    model = ns.DeepLinear(widths)
    data = ns.data.synthetic_regression(4, 3, 20, noise=0.1, seed=1)
    kw = dict(seeds=3, method="rk4", h=0.05, n_steps=4, save_every=0.1)
    if case == "bias":
        model = ns.DeepLinear(widths, bias=True)
    elif case == "momentum":
        kw.update(dynamics="momentum", tau=1.0)
    elif case == "adaptive":
        kw = dict(seeds=3, method="dopri5", t_end=0.2, save_every=0.1)
    elif case == "implicit":
        kw.update(method="gl2")
    elif case == "mlp":
        from noether_sim.mlp import MLP

        model = MLP(widths, activation="tanh")
    elif case == "gd":
        kw.pop("method")
        kw.update(dynamics="gd")
    elif case.startswith("verlet"):  # the splitting fast path: no law integrals, no noise, full batch, no bias
        kw.update(dynamics="momentum", tau=1.0, method="verlet", track_law=False)
        if case == "verlet_law":
            kw["track_law"] = True
        elif case == "verlet_noise":
            kw["temperature"] = 0.01
        elif case == "verlet_batch":
            kw["batch_size"] = 5
        else:
            model = ns.DeepLinear(widths, bias=True)
    elif case == "input_side":
        model = ns.DeepLinear((2, 8, 8, 40))
        data = ns.data.synthetic_regression(2, 40, 20, noise=0.1, seed=1)
        assert _kind(model) == 2
    ns.simulate(model, data, **kw)
    assert not counted
