"""Adaptive optimizers as dynamics (adam, adamw, rmsprop, sign, lion): each run through simulate()
against a plain NumPy implementation of the textbook update (PyTorch / optax conventions), their
state in the result, bad input refused before any work, and the ladder naming the flow it converges to."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import ConfigError
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.mlp import MLP, teacher_regression
from noether_sim.simulate import plan

from reference import loss_and_grad

N_STEPS = 40
LR = 0.02
LAM = 0.03


def numpy_optimizer(name, theta, grad_of, lr, n_steps, lam, beta1=None, beta2=None, eps=None):
    """The update rules as the PyTorch / optax documentation writes them, one parameter vector at a time.
    Returns the final θ and the state (m, v, step) where the optimizer has one."""
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, n_steps + 1):
        g = grad_of(theta)
        if name in ("adam", "adamw"):
            if name == "adam":
                g = g + lam * theta
            else:
                theta = theta - lr * lam * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** t)
            v_hat = v / (1 - beta2 ** t)
            theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        elif name == "rmsprop":
            g = g + lam * theta
            v = beta2 * v + (1 - beta2) * g * g
            theta = theta - lr * g / (np.sqrt(v) + eps)
        elif name == "sign":
            theta = theta - lr * (np.sign(g) + lam * theta)
        elif name == "lion":
            c = beta1 * m + (1 - beta1) * g
            theta = theta - lr * (np.sign(c) + lam * theta)
            m = beta2 * m + (1 - beta2) * g
    return theta, m, v, n_steps


OPTIONS = {"adam": dict(beta1=0.8, beta2=0.95, eps=1e-3), "adamw": dict(beta1=0.85, beta2=0.99, eps=1e-6),
           "rmsprop": dict(beta2=0.9, eps=1e-4), "sign": {}, "lion": dict(beta1=0.7, beta2=0.9)}


def _check_against_numpy(name, model, data, grad_of, seeds=2):
    ds = ns.simulate(model, data, dynamics=name, learning_rate=LR, n_steps=N_STEPS, save_every=LR * 10,
                     seeds=seeds, weight_decay=LAM, **OPTIONS[name])
    assert (ds.status.values == 0).all()
    state = ds.optimizer_state_final
    for s in range(seeds):
        theta0 = ds.theta_initial.values[s]
        theta, m, v, k = numpy_optimizer(name, theta0, grad_of, LR, N_STEPS, LAM, **OPTIONS[name])
        scale = np.max(np.abs(theta))
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * scale
        # the parameters moved far beyond that tolerance: the comparison can fail
        assert np.max(np.abs(theta - theta0)) > 1e-3 * scale
        parts = state.optimizer_state_part.values
        want = {"m": m, "v": v}
        for part in ("m", "v"):
            if part in parts:
                got = state.values[s, parts == part]
                assert np.max(np.abs(got - want[part])) <= 1e-12 * np.max(np.abs(want[part]))
        if "step" in parts:
            assert state.values[s, parts == "step"][0] == k
    return ds


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sign", "lion"])
def test_optimizer_matches_numpy_deep_linear(name):
    model = ns.DeepLinear((3, 4, 2), bias=True)
    data = ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=2)
    ds = _check_against_numpy(name, model, data, lambda th: loss_and_grad(model, data, th)[1])
    assert ds.attrs["optimizer"] == name and ds.attrs["learning_rate"] == LR
    assert ds.n_grad_evals.values[0] == N_STEPS


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sign", "lion"])
def test_optimizer_matches_numpy_relu_mlp(name):
    model = MLP((3, 5, 1), activation="relu", bias=True)
    data = teacher_regression(MLP((3, 5, 1), activation="relu"), 12, noise=0.1, seed=3)
    ints, floats = model.descriptor(), model.constants(data)
    a, b = model.kernel_data(data)

    def grad_of(theta):  # the model's gradient (itself checked against finite differences in test_mlp.py)
        return ensemble_loss_grad(int(ints[0]), np.ascontiguousarray(theta[None]), ints, floats, a, b)[1][0]

    _check_against_numpy(name, model, data, grad_of)


@pytest.mark.parametrize("kwargs,name", [
    (dict(dynamics="adam", beta1=1.0), "beta1"),
    (dict(dynamics="adam", beta2=-0.1), "beta2"),
    (dict(dynamics="lion", beta2=1.5), "beta2"),
    (dict(dynamics="rmsprop", eps=0.0), "eps"),
    (dict(dynamics="adamw", eps=-1e-8), "eps"),
    (dict(dynamics="sign", beta1=0.9), "beta1"),  # sign descent takes no moments
    (dict(dynamics="lion", eps=1e-8), "eps"),  # Lion has no ε
    (dict(dynamics="rmsprop", beta1=0.9), "beta1"),
    (dict(dynamics="adam", tau=1.0), "tau"),
    (dict(dynamics="adam", beta=0.9), "beta"),
    (dict(dynamics="adam", method="rk4"), "method"),
    (dict(dynamics="gd", beta1=0.9), "beta1"),
    (dict(dynamics="adam", h=0.01, learning_rate=0.02), "learning_rate"),
])
def test_bad_optimizer_options_refused_by_name(kwargs, name):
    model = ns.DeepLinear((3, 4, 2))
    data = ns.data.synthetic_regression(3, 2, 16)
    kwargs = {"h": 0.01, **kwargs} if "learning_rate" not in kwargs else kwargs
    with pytest.raises(ConfigError, match=name):
        plan(model, data, n_steps=10, **kwargs)


def test_ladder_verdict_names_the_limit_flow():
    """Sign descent's ladder in η converges to the sign flow, which moves the balance charge by O(1):
    the verdict is 'broken by the flow' and names that flow; gradient descent's names gradient flow."""
    model = ns.DeepLinear((3, 4, 2))
    data = ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=1)
    steps = [2.0 ** -k for k in range(7, 11)]
    an = ns.analyse_ladder(ns.run_ladder(model, data, dynamics="sign", step_sizes=steps, t_end=1.0, seeds=2))
    assert an.attrs["limit_flow"].startswith("sign flow")
    (row,) = ns.summarise_verdicts(an)
    assert row["verdict"] == ns.laws.BROKEN and row["limit_flow"] == an.attrs["limit_flow"]
    # far from a discretisation effect: the extrapolated change is a sizeable part of the charge's scale
    assert (an.extrapolated_drift.values > 0.05 * an.scale.values).all()
    gd = ns.analyse_ladder(ns.run_ladder(model, data, dynamics="gd", step_sizes=steps, t_end=1.0, seeds=2))
    assert ns.summarise_verdicts(gd)[0]["limit_flow"].startswith("gradient flow")
    single = ns.judge(ns.simulate(model, data, dynamics="adam", h=0.01, n_steps=10))
    assert single.attrs["limit_flow"].startswith("sign-like flow")
    assert (single.verdict.values == ns.laws.NEEDS_LADDER).all()


def test_study_with_optimizers_names_their_limit_flow(tmp_path):
    """Optimizers as study methods (a real Zarr store): beta1/beta2 keys accepted, each scheme carries its
    limit flow, and the printed summary names it beside the verdict."""
    from noether_sim.tables import format_summary

    cfg = {"name": "opt", "t_end": 0.25, "save_every": 0.0625,
           "model": {"kind": "deep_linear", "widths": [3, 4, 2]},
           "data": {"kind": "synthetic_regression", "n_points": 16}, "seeds": {"count": 2},
           "methods": {"gd": {"dynamics": "gd", "step_sizes": [2 ** -6, 2 ** -7, 2 ** -8]},
                       "adam": {"dynamics": "adam", "step_sizes": [2 ** -6, 2 ** -7, 2 ** -8],
                                "beta1": 0.5, "beta2": 0.9}}}
    ds = ns.run_study(cfg, tmp_path / "store")
    assert list(ds.limit_flow.values) == [ns.laws.limit_flow("gd"), ns.laws.limit_flow("adam")]
    text = format_summary(ds)
    assert "(limit: sign-like flow" in text and "(limit: gradient flow" not in text


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sign", "lion"])
@pytest.mark.parametrize("net", ["deep linear", "relu"])
def test_optimizer_with_minibatches_matches_numpy(name, net):
    """batch_size: each step's gradient is that of the B points ``minibatch_indices`` replays for (seed,
    step); the rest of the update is the optimizer's, as in the full-batch test."""
    if net == "deep linear":
        model = ns.DeepLinear((3, 4, 2), bias=True)
        data = ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=2)
    else:
        model = MLP((3, 5, 1), activation="relu", bias=True)
        data = teacher_regression(MLP((3, 5, 1), activation="relu"), 16, noise=0.1, seed=3)
    B, seeds = 5, 2
    ds = ns.simulate(model, data, dynamics=name, learning_rate=LR, n_steps=N_STEPS, save_every=LR * 10,
                     seeds=seeds, weight_decay=LAM, batch_size=B, **OPTIONS[name])
    assert (ds.status.values == 0).all() and ds.attrs["batch_size"] == B
    full = ns.simulate(model, data, dynamics=name, learning_rate=LR, n_steps=N_STEPS, seeds=seeds,
                       weight_decay=LAM, **OPTIONS[name])
    for s in range(seeds):
        step = [0]

        def grad_of(theta):
            idx = ns.minibatch_indices(data.n_points, B, s, step[0])
            step[0] += 1
            sub = ns.data.from_arrays(data.X[:, idx], data.Y[:, idx])
            if net == "deep linear":
                return loss_and_grad(model, sub, theta)[1]
            a, b = model.kernel_data(sub)  # the MLP's gradient (checked by finite differences in test_mlp.py)
            return ensemble_loss_grad(int(model.descriptor()[0]), np.ascontiguousarray(theta[None]),
                                      model.descriptor(), model.constants(sub), a, b)[1][0]

        theta0 = ds.theta_initial.values[s]
        theta, m, v, k = numpy_optimizer(name, theta0, grad_of, LR, N_STEPS, LAM, **OPTIONS[name])
        scale = np.max(np.abs(theta))
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * scale
        # minibatches change the path: the comparison with the full-batch run can fail
        assert np.max(np.abs(full.theta_final.values[s] - theta)) > 1e-4 * scale
