"""Teleportation along the symmetry orbit (theory.md §7; noether_sim/teleport.py).

Oracles: the loss of the moved weights from the package's plain NumPy forward pass (not the kernels);
the ascent direction against central finite differences of |∇L|² along the orbit; the balance charges
recomputed in NumPy from the moved weights; and a teleported run against a plain run from the same weights.
Round-off bound for the loss: the group elements have condition number at most e^{2·steps·lr} (≈ 7.4 for
the defaults), and L is a sum of O(P) products, so |ΔL| ≤ 200ε·L is a loose bound (measured ≤ 4e-15 relative).
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import ConfigError
from noether_sim.mlp import MLP
from noether_sim.teleport import _algebra_gradient, _apply_linear, _apply_rescale, _sym_exp

EPS = np.finfo(float).eps


def _numpy_loss(model, data, theta):
    """(1/2N)Σ|f − y|² from the plain NumPy forward pass (squared loss)."""
    r = model.forward(theta, data.X) - data.Y
    return 0.5 * np.sum(r * r) / data.n_points


def _grad_norm2(model, data, theta):
    from noether_sim.teleport import _loss_grad
    _, g = _loss_grad(model, data, np.atleast_2d(theta))
    return np.sum(g * g, axis=1)


CASES = {
    "deep linear, bias": (ns.DeepLinear((3, 4, 4, 2), bias=True), lambda: ns.data.synthetic_regression(3, 2, 16, seed=1)),
    "relu, bias": (MLP((3, 5, 4, 1), bias=True), lambda: ns.teacher_regression(MLP((3, 5, 1)), 16, noise=0.1, seed=3)),
    "leaky_relu": (MLP((3, 5, 1), activation="leaky_relu"), lambda: ns.teacher_regression(MLP((3, 5, 1)), 16, seed=3)),
    "relu_pow 2": (MLP((3, 5, 1), activation="relu_pow", power=2.0),
                   lambda: ns.teacher_regression(MLP((3, 5, 1)), 16, seed=3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_grad_norm_teleport_keeps_the_loss_and_raises_the_gradient(case):
    model, make = CASES[case]
    data = make()
    theta = ns.init.Gaussian(bias_scale=0.3).rows(model, 0, np.arange(6))
    out = ns.teleport(model, data, theta, objective="grad_norm", steps=10)
    assert out.theta.shape == theta.shape and not np.allclose(out.theta, theta)
    for s in range(6):
        before, after = _numpy_loss(model, data, theta[s]), _numpy_loss(model, data, out.theta[s])
        assert abs(after - before) <= 200 * EPS * before
    assert np.allclose(out.loss_after, out.loss_before, rtol=200 * EPS, atol=0)
    assert np.all(out.grad_norm_after > out.grad_norm_before)
    assert np.allclose(out.grad_norm_after ** 2, _grad_norm2(model, data, out.theta), rtol=1e-14)


def test_teleport_can_fail_to_raise_nothing_when_steps_are_refused():
    """The property above is not vacuous: a step against the ascent direction lowers |∇L|."""
    model, make = CASES["deep linear, bias"]
    data = make()
    theta = ns.init.Gaussian(bias_scale=0.3).rows(model, 0, [0])
    from noether_sim.teleport import _loss_grad
    _, g = _loss_grad(model, data, theta)
    M = _algebra_gradient(model, g)
    G = [_sym_exp(-0.05 * m / np.linalg.norm(m)) for m in M]
    Ginv = [_sym_exp(0.05 * m / np.linalg.norm(m)) for m in M]
    down = _apply_linear(model, theta, G, Ginv)
    assert _grad_norm2(model, data, down)[0] < _grad_norm2(model, data, theta)[0]


@pytest.mark.parametrize("case", ["deep linear, bias", "relu, bias", "relu_pow 2"])
def test_ascent_direction_against_finite_differences(case):
    """d/ds |∇L(e^{sX}·θ)|² = 2⟨X, M⟩ for a random generator X of each hidden layer."""
    model, make = CASES[case]
    data = make()
    theta = ns.init.Gaussian(bias_scale=0.3).rows(model, 0, [2])
    from noether_sim.teleport import _loss_grad
    _, g = _loss_grad(model, data, theta)
    M = _algebra_gradient(model, g)
    rng = np.random.default_rng(0)
    hid = model.widths[1:-1]
    for i in range(len(hid)):
        if model.kind == "mlp":
            X = rng.standard_normal((1, hid[i]))
            def moved(s):
                u = [np.zeros((1, n)) for n in hid]
                u[i] = s * X
                return _apply_rescale(model, theta, u)
        else:
            X = rng.standard_normal((1, hid[i], hid[i]))
            X = X + np.swapaxes(X, 1, 2)
            def moved(s):
                G = [np.broadcast_to(np.eye(n), (1, n, n)).copy() for n in hid]
                Ginv = [x.copy() for x in G]
                G[i], Ginv[i] = _sym_exp(s * X), _sym_exp(s * X, -1.0)
                return _apply_linear(model, theta, G, Ginv)
        d = 1e-5
        fd = (_grad_norm2(model, data, moved(d))[0] - _grad_norm2(model, data, moved(-d))[0]) / (2 * d)
        exact = 2 * np.sum(X * M[i])
        assert abs(fd - exact) <= 1e-6 * max(1.0, abs(exact))


def _balance(model, theta):
    out = []
    for i, ((W, b), (W2, _)) in enumerate(zip(model.unflatten(theta)[:-1], model.unflatten(theta)[1:]), start=1):
        if model.kind == "mlp":
            out.append(np.sum(W * W, axis=-1) + (0 if b is None else b * b) - model.degree * np.sum(W2 * W2, axis=-2))
        else:
            out.append(W2.T @ W2 - W @ W.T - (0 if b is None else np.outer(b, b)))
    return out


@pytest.mark.parametrize("model,data,target", [
    (ns.DeepLinear((3, 3, 3, 3), bias=True), ns.data.synthetic_regression(3, 3, 16, seed=1), 0.0),
    (ns.DeepLinear((3, 3, 3, 3)), ns.data.synthetic_regression(3, 3, 16, seed=1), 0.5),
    (ns.DeepLinear((4, 3, 2)), ns.data.synthetic_regression(4, 2, 16, seed=1), -0.5),
    (MLP((3, 5, 4, 1), bias=True), ns.teacher_regression(MLP((3, 5, 1)), 16, seed=3), 0.0),
    (MLP((3, 5, 1), activation="relu_pow", power=2.0), ns.teacher_regression(MLP((3, 5, 1)), 16, seed=3), -0.2),
])
def test_balance_target_reached_with_the_loss_kept(model, data, target):
    theta = ns.init.Gaussian(bias_scale=0.3).rows(model, 0, np.arange(4))
    out = ns.teleport(model, data, theta, objective="balance", target=target)
    assert np.all(out.residual < 1e-12)
    for s in range(4):
        before = [q for q in _balance(model, theta[s])]
        for q, q0 in zip(_balance(model, out.theta[s]), before):
            want = target * (np.eye(len(q)) if q.ndim == 2 else np.ones(len(q)))
            assert np.max(np.abs(q - want)) <= 1e-11 * (1 + np.max(np.abs(q0)))
            assert np.max(np.abs(q0 - want)) > 1e-2  # it was not balanced before: the test can fail
        before, after = _numpy_loss(model, data, theta[s]), _numpy_loss(model, data, out.theta[s])
        assert abs(after - before) <= 1e-12 * before


def test_unreachable_target_names_the_reachable_range():
    model, data = ns.DeepLinear((4, 3, 2)), ns.data.synthetic_regression(4, 2, 16, seed=1)
    theta = ns.init.Gaussian().rows(model, 0, [0, 1])
    with pytest.raises(ns.ConfigError, match=r"target=0.0 .*reachable range is only targets < 0"):
        ns.teleport(model, data, theta, objective="balance", target=0.0)
    with pytest.raises(ns.ConfigError, match=r"reachable range is only targets < 0"):
        ns.teleport(model, data, theta, objective="balance", target=1.0)
    wide = ns.DeepLinear((3, 4, 2))
    with pytest.raises(ns.ConfigError, match="no value at all"):
        ns.teleport(wide, ns.data.synthetic_regression(3, 2, 16), ns.init.Gaussian().rows(wide, 0, [0]),
                    objective="balance")


@pytest.mark.parametrize("kwargs,name", [
    ({"objective": "sharpness"}, "objective"), ({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"),
    ({"target": 1.0}, "target"), ({"objective": "balance", "target": float("nan")}, "target"),
])
def test_bad_options_refused(kwargs, name):
    model, data = ns.DeepLinear((3, 3, 3)), ns.data.synthetic_regression(3, 3, 16)
    with pytest.raises(ns.ConfigError, match=rf"^{name}="):
        ns.teleport(model, data, np.ones(model.n_params), **kwargs)


def test_models_without_an_orbit_refused():
    data = ns.teacher_regression(MLP((3, 5, 1)), 16, seed=3)
    tanh = MLP((3, 5, 1), activation="tanh")
    with pytest.raises(ns.ConfigError, match="activation='tanh'"):
        ns.teleport(tanh, data, np.ones(tanh.n_params))
    # a LoRA model has widths and charge groups like a deep linear net, but not its orbit: refused by kind
    lora = ns.LoRA(ns.DeepLinear((3, 5, 1)), 1)
    with pytest.raises(ns.ConfigError, match="^model='LoRA' is invalid.*'lora' model is not supported"):
        ns.teleport(lora, data, np.ones(lora.n_params))
    with pytest.raises(ns.ConfigError, match="'lora' model is not supported"):
        ns.simulate(lora, data, dynamics="gd", h=0.01, n_steps=4, teleport_every=0.02)
    with pytest.raises(ns.ConfigError, match="teleport_every"):
        ns.simulate(ns.DeepLinear((3, 3, 1)), data, dynamics="adam", h=0.01, n_steps=4, teleport_every=0.02)
    with pytest.raises(ns.ConfigError, match="teleport_every"):
        ns.simulate(ns.DeepLinear((3, 3, 1)), data, dynamics="gd", h=0.01, n_steps=4, teleport_every=0.015)
    with pytest.raises(ns.ConfigError, match="^teleport="):
        ns.simulate(ns.DeepLinear((3, 3, 1)), data, dynamics="gd", h=0.01, n_steps=4, teleport_every=0.02,
                    teleport={"stepz": 3})


def test_teleport_events_in_a_run():
    """Segments between teleports are plain runs; the events record a loss that does not jump while the
    charges do; the joined result is the segments' records."""
    model, data = ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 16, seed=1)
    kw = dict(dynamics="gd", h=0.05, save_every=0.25, seeds=4, watch_seeds=[1])
    ds = ns.simulate(model, data, n_steps=40, teleport_every=0.5, teleport={"steps": 5}, **kw)
    assert ds.teleport_time.values.tolist() == [0.5, 1.0, 1.5]
    assert np.allclose(ds.time.values, np.arange(9) * 0.25)
    # the first segment is the plain run, bit for bit
    plain = ns.simulate(model, data, n_steps=10, **kw)
    assert np.array_equal(ds.loss.values[:, :3], plain.loss.values)
    # loss at each teleport: equal before and after to round-off, and the record before is the joined loss
    assert np.allclose(ds.teleport_loss_after, ds.teleport_loss_before, rtol=200 * EPS, atol=0)
    assert np.array_equal(ds.teleport_loss_before.values[:, 0], ds.loss.sel(time=0.5).values)
    assert np.all(ds.teleport_grad_norm_after > ds.teleport_grad_norm_before)
    jump = np.abs(ds.teleport_charge_after - ds.teleport_charge_before).max("component")
    assert np.all(jump > 1e-3)  # the charges jump
    # after the teleport: a plain run from the teleported weights
    moved = ns.teleport(model, data, plain.theta_final.values, steps=5).theta
    again = ns.simulate(model, data, n_steps=10, init=ns.init.Given(moved), **kw)
    # (the joined record at t = 0.5 is the loss just before the jump; the run from the moved weights
    # starts with the loss just after it, equal to round-off)
    assert np.array_equal(ds.loss.values[:, 3:5], again.loss.values[:, 1:])
    assert np.array_equal(ds.drift.values[:, 3:5], again.drift.values[:, 1:])  # drift from the charge after the jump
    assert ds.n_grad_evals.values.tolist() == [40] * 4
    assert ds.attrs["n_teleports"] == 3 and ds.attrs["teleport_every"] == 0.5


def test_teleported_initialisation():
    model, data = ns.DeepLinear((3, 3, 3)), ns.data.synthetic_regression(3, 3, 16, seed=1)
    ds = ns.simulate(model, data, init=ns.init.Teleported(data, objective="balance"), h=0.1, n_steps=1, seeds=3)
    assert float(abs(ds.charge_initial).max()) < 1e-12
    base = ns.simulate(model, data, h=0.1, n_steps=1, seeds=3)
    assert np.allclose(ds.loss.values[:, 0], base.loss.values[:, 0], rtol=1e-13, atol=0)
    assert float(abs(base.charge_initial).max()) > 1e-2
    with pytest.raises(ns.ConfigError, match="^objective="):
        ns.init.Teleported(data, objective="x")


def _teleport_study_toml(tmp_path, extra=""):
    path = tmp_path / "s.toml"
    path.write_text(f'''
name = "teleport-ladder"
t_end = 0.5
save_every = 0.125
[model]
widths = [3, 4, 2]
[data]
n_points = 16
[seeds]
count = 3
[methods.gd]
dynamics = "gd"
step_sizes = [0.0625, 0.03125, 0.015625]
teleport_every = 0.25
[methods.gd.teleport]
steps = 5
{extra}''')
    return path


def test_teleport_every_in_a_study(tmp_path):
    """A method table's teleport_every and [teleport] table reach simulate: each block is the direct run with
    the same teleports (the charges jump, recorded over time), and the verdicts come from the last segment."""
    from noether_sim.builders import build_data, build_init, build_model
    from noether_sim.config import load_config

    cfg = load_config(_teleport_study_toml(tmp_path), [])
    assert cfg["methods"]["gd"]["teleport_every"] == 0.25 and cfg["methods"]["gd"]["teleport"] == {"steps": 5}
    ds = ns.run_study(cfg, tmp_path / "out").load()
    direct = ns.simulate(build_model(cfg), build_data(cfg), init=build_init(cfg), dynamics="gd", h=0.015625,
                         t_end=0.5, save_every=0.125, seeds=3, teleport_every=0.25, teleport={"steps": 5})
    np.testing.assert_array_equal(ds.charge_final.sel(scheme="gd").isel(step=-1).values, direct.charge_final.values)
    np.testing.assert_array_equal(ds.loss.sel(scheme="gd").isel(step=-1).values, direct.loss.values)
    assert direct.attrs["n_teleports"] == 1
    # the teleport moved the charges by far more than descent's η² terms do in a whole segment ...
    jump = np.abs(direct.teleport_charge_after.values - direct.teleport_charge_before.values).max()
    assert jump > 10 * np.abs(direct.drift.values).max()
    # ... and the law, measured after the last teleport, holds: exact-law verdicts
    assert set(ds.verdict.sel(scheme="gd").values.ravel()) == {ns.laws.CONSERVED}


@pytest.mark.parametrize("extra, key", [
    ('[methods.hb]\ndynamics = "adam"\nstep_sizes = [0.0625, 0.03125, 0.015625]\n'
     'teleport_every = 0.25\n', "teleport_every"),
    ('[methods.t]\ndynamics = "gd"\nstep_sizes = [0.0625, 0.03125, 0.015625]\n[methods.t.teleport]\nsteps = 5\n',
     "teleport"),
    ('[methods.t]\ndynamics = "gd"\nstep_sizes = [0.0625, 0.03125, 0.015625]\nteleport_every = 0.25\n'
     '[methods.t.teleport]\nsteps = 5\nspeed = 2\n', "teleport"),
    ('[methods.t]\ndynamics = "gd"\nstep_sizes = [0.0625, 0.03125, 0.015625]\nteleport_every = -1.0\n',
     "teleport_every"),
])
def test_bad_teleport_keys_in_a_study_are_refused(tmp_path, extra, key):
    from noether_sim.config import load_config

    with pytest.raises(ConfigError, match=key):
        cfg = load_config(_teleport_study_toml(tmp_path, extra), [])
        ns.run_study(cfg, tmp_path / "out")


def test_teleport_under_momentum_pushes_the_velocity_forward():
    """Under momentum each teleport moves θ by the group element g and the velocity as a tangent vector,
    v ↦ g·v (the action is linear in θ). That keeps L(θ + εv) for every ε, so the loss and its rate ⟨∇L, v⟩:
    checked to round-off, against the velocity left as it was (which changes the rate), and the joined run
    against segments run and teleported by hand."""
    from noether_sim.teleport import _loss_grad, teleport

    model, data = ns.DeepLinear((3, 4, 5, 2)), ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=1)
    kw = dict(dynamics="momentum", method="verlet", h=0.02, tau=0.5, save_every=0.2, seeds=3, velocity="gradient")
    joined = ns.simulate(model, data, t_end=0.8, teleport_every=0.4, **kw)
    first = ns.simulate(model, data, t_end=0.4, **kw)
    res = teleport(model, data, first.theta_final.values)
    v0 = first.velocity_final.values
    v1 = res.move(v0)
    np.testing.assert_allclose(res.move(first.theta_final.values), res.theta, rtol=0, atol=1e-13)
    second = ns.simulate(model, data, t_end=0.4, **dict(kw, velocity=v1), init=ns.init.Given(res.theta))
    np.testing.assert_array_equal(joined.theta_final.values, second.theta_final.values)
    np.testing.assert_array_equal(joined.velocity_final.values, second.velocity_final.values)
    th0 = first.theta_final.values
    for eps in (0.1, 1.0):
        a = _loss_grad(model, data, th0 + eps * v0)[0]
        b = _loss_grad(model, data, res.theta + eps * v1)[0]
        np.testing.assert_allclose(b, a, rtol=1e-12)
    rate = lambda th, v: np.sum(_loss_grad(model, data, th)[1] * v, axis=1)  # noqa: E731
    np.testing.assert_allclose(rate(res.theta, v1), rate(th0, v0), rtol=1e-10)
    # the check can fail: keeping the old velocity at the new θ changes the loss's rate by far more
    assert np.max(np.abs(rate(res.theta, v0) - rate(th0, v0))) > 1e-4 * np.max(np.abs(rate(th0, v0)))
    assert np.all(res.grad_norm_after > res.grad_norm_before)


@pytest.mark.parametrize("kwargs, name", [
    (dict(dynamics="adam", h=0.01), "teleport_every"),
    (dict(dynamics="gd", h=0.01, keep="stats"), "keep"),
    (dict(dynamics="heavy_ball", learning_rate=0.01, beta=0.9), "learning_rate"),
])
def test_teleport_every_refusals(kwargs, name):
    model, data = ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 16, seed=1)
    with pytest.raises(ConfigError, match=rf"^{name}="):
        ns.simulate(model, data, n_steps=20, seeds=2, teleport_every=0.1, **kwargs)


def test_run_ladder_with_teleports():
    """run_ladder takes teleport_every/teleport like simulate: each rung is that simulate call, the events
    stack along h, and the ladder's verdicts (from the last segment) are exact-law ones."""
    model, data = ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 16, seed=1)
    hs = [0.0625, 0.03125, 0.015625]
    lad = ns.run_ladder(model, data, dynamics="gd", step_sizes=hs, t_end=0.5, save_every=0.125, seeds=3,
                        teleport_every=0.25, teleport={"steps": 5})
    one = ns.simulate(model, data, dynamics="gd", h=hs[-1], t_end=0.5, save_every=0.125, seeds=3,
                      teleport_every=0.25, teleport={"steps": 5})
    np.testing.assert_array_equal(lad.charge_final.isel(h=-1).values, one.charge_final.values)
    np.testing.assert_array_equal(lad.teleport_charge_after.isel(h=-1).values, one.teleport_charge_after.values)
    assert set(ns.analyse_ladder(lad).verdict.values.ravel()) == {ns.laws.CONSERVED}
    with pytest.raises(ConfigError, match="^teleport_every="):
        ns.run_ladder(model, data, dynamics="adam", step_sizes=hs, t_end=0.5, seeds=2, teleport_every=0.25)
