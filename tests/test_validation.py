"""Every invalid input raises a clear error — naming the parameter, its value and what is allowed —
before any work is done."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim._validate import ConfigError

MODEL = ns.DeepLinear((3, 4, 2))
DATA = ns.data.synthetic_regression(3, 2, 10, seed=0)
GOOD = dict(method="rk4", h=0.1, t_end=1.0, save_every=0.5, seeds=2)


def run(**overrides):
    kw = {**GOOD, **overrides}
    return ns.simulate(kw.pop("model", MODEL), kw.pop("data", DATA), **kw)


def test_good_input_runs():
    assert run().sizes["seed"] == 2


@pytest.mark.parametrize("h", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_step(h):
    with pytest.raises(ConfigError, match=r"h=.* must be a finite number > 0"):
        run(h=h)


@pytest.mark.parametrize("t_end", [0.0, -1.0])
def test_non_positive_end_time(t_end):
    with pytest.raises(ConfigError, match=r"t_end=.* must be a finite number > 0"):
        run(t_end=t_end)


def test_negative_weight_decay():
    with pytest.raises(ConfigError, match=r"weight_decay=-0.1 is invalid: must be a finite number >= 0"):
        run(weight_decay=-0.1)


@pytest.mark.parametrize("widths,name", [((3, 0, 2), r"widths\[1\]=0"), ((3,), "widths=")])
def test_widths_below_one(widths, name):
    with pytest.raises(ConfigError, match=name):
        ns.DeepLinear(widths)


def test_data_with_mismatched_point_counts():
    with pytest.raises(ConfigError, match=r"Y=.*must have as many columns \(data points\) as X, 10, got 9"):
        ns.TrainingData(np.ones((3, 10)), np.ones((2, 9)))


def test_data_that_does_not_fit_the_model():
    with pytest.raises(ConfigError, match="inputs have 5 features but the model's input width is 3"):
        run(data=ns.data.synthetic_regression(5, 2, 10))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data(bad):
    X = np.ones((3, 10))
    X[1, 4] = bad
    with pytest.raises(ConfigError, match="X=.*must contain only finite numbers"):
        ns.TrainingData(X, np.ones((2, 10)))


@pytest.mark.parametrize("seeds", [0, [], -3])
def test_zero_seeds(seeds):
    with pytest.raises(ConfigError, match="seeds=.*must be a number of seeds >= 1|seeds=.*must be an integer >= 1"):
        run(seeds=seeds)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="method='rk5' is invalid: .*one of euler, heun, .*rk4.*gl2"):
        run(method="rk5")


@pytest.mark.parametrize("save_times", [[0.5, 1.5], [-0.5, 0.5], [0.0]])
def test_save_times_outside_the_run(save_times):
    with pytest.raises(ConfigError, match=r"save_times=.* must lie in \(0, t_end = 1.0\]"):
        run(save_every=None, save_times=save_times)


def test_save_times_not_on_the_step_grid():
    with pytest.raises(ConfigError, match="save_times=.*whole number >= 1 of steps"):
        run(save_every=None, save_times=[0.55, 1.0])


def test_unknown_dynamics():
    with pytest.raises(ConfigError, match="dynamics='sgd' is invalid: must be one of gf, gd"):
        run(dynamics="sgd")


def test_gradient_descent_rejects_other_methods():
    with pytest.raises(ConfigError, match="method='rk4' is invalid: gradient descent is explicit Euler"):
        run(dynamics="gd")


def test_watched_seed_must_be_run():
    with pytest.raises(ConfigError, match="watch_seeds=.*missing \\[5\\]"):
        run(watch_seeds=[5])


def test_given_weights_of_the_wrong_shape():
    with pytest.raises(ConfigError, match=r"init.theta=.*must have shape \(20,\) or \(2, 20\)"):
        run(init=ns.init.Given(np.zeros(7)))


def test_errors_come_before_any_work(monkeypatch):
    """Validation runs before the kernel: a bad last argument never reaches it."""
    import sys

    sim = sys.modules["noether_sim.simulate"]  # the module (the package attribute is the function)

    def boom(*a, **k):
        raise AssertionError("kernel called")

    monkeypatch.setattr(sim, "integrate", boom)
    with pytest.raises(ConfigError):
        run(method="dopri5", max_steps=0)


def test_sample_major_arrays_are_refused_with_the_transpose_advice():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))  # (points, features), as sklearn
    with pytest.raises(ns.ConfigError, match=r"X looks like \(points, features\).*pass X\.T and Y\.T"):
        ns.data.from_arrays(X, Y)
    data = ns.data.from_arrays(X.T, Y.T)
    assert (data.n_in, data.n_out, data.n_points) == (4, 2, 30)
    assert ns.data.from_arrays(X.T, Y[:, 0]).n_out == 1  # a 1-D Y is one output


def test_arrays_that_fit_both_ways_are_caught_at_first_use_with_a_model():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))  # 6 points of 3 features, or 3 of 6
    data = ns.data.from_arrays(X, Y)  # undecidable alone: read as 3 points of 6 features
    with pytest.raises(ns.ConfigError, match=r"X looks like \(points, features\): pass X\.T"):
        ns.simulate(ns.DeepLinear((3, 4, 3)), data, dynamics="gd", h=0.1, n_steps=1)
    ns.simulate(ns.DeepLinear((3, 4, 3)), ns.data.from_arrays(X.T, Y.T), dynamics="gd", h=0.1, n_steps=1)
