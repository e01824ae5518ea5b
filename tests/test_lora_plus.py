"""LoRA+ (layer_lr on ns.LoRA: rates m_A, m_B of their own for each adapter's factors): descent against
NumPy descent with the independent back-propagation of test_lora, the weighted adapter charge
BᵀB/m_B − AAᵀ/m_A with gradient descent's exact law to round-off (a one-step NumPy check that fails for the
unweighted charge), conserved by Gauss–Legendre flow where the unweighted charge moves, rates of 1
bit-identical to plain adapters, and bad rates refused by name."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError

from test_lora import MODELS, data_for, numpy_grad

PLUS = (1.0, 8.0)  # LoRA+: η_B = 8 η_A


def _m(model, rates):
    full = np.tile(rates, len(model.layers)) if len(rates) == 2 else np.asarray(rates)
    return np.concatenate([[full[i]] * int(np.prod(model.weight_shape(i + 1))) for i in range(model.n_layers)])


def _D(model, theta, rates):
    full = np.tile(rates, len(model.layers)) if len(rates) == 2 else np.asarray(rates)
    f = model.unflatten(theta)
    return [f[2 * j + 1][0].T @ f[2 * j + 1][0] / full[2 * j + 1] - f[2 * j][0] @ f[2 * j][0].T / full[2 * j]
            for j in range(len(model.layers))]


@pytest.mark.parametrize("name", ["mlp_tanh_all", "deep_linear"])
def test_lora_plus_descent_matches_numpy_and_its_exact_law(name):
    model = MODELS[name]()
    data = data_for(model)
    eta, n = 0.05, 20
    ds = ns.simulate(model, data, dynamics="gd", h=eta, n_steps=n, save_every=eta * 10, seeds=2, layer_lr=PLUS,
                     init=init.Gaussian(scale=0.7))
    m = _m(model, PLUS)
    for s in range(2):
        theta = ds.theta_initial.values[s].copy()
        for _ in range(n):
            g = numpy_grad(model, data, theta)
            new = theta - eta * m * g
            gf = model.unflatten(g)
            for rates, holds in ((PLUS, True), ((1.0, 1.0), False)):
                before, after = _D(model, theta, rates), _D(model, new, rates)
                ma, mb = (rates[0], rates[1])
                for j in range(len(model.layers)):
                    GA, GB = gf[2 * j][0], gf[2 * j + 1][0]
                    law = before[j] + eta ** 2 * (PLUS[1] ** 2 / mb * GB.T @ GB - PLUS[0] ** 2 / ma * GA @ GA.T)
                    res = np.abs(after[j] - law).max()
                    assert (res <= 1e-14 * 100 * max(1.0, np.abs(before[j]).max())) if holds else res > 1e-5
            theta = new
        assert np.max(np.abs(ds.theta_final.values[s] - theta)) <= 1e-12 * np.max(np.abs(theta))
        want = np.concatenate([d.ravel() for d in _D(model, theta, PLUS)])
        assert np.max(np.abs(ds.charge_final.values[s][:want.size] - want)) <= 1e-12 * np.max(np.abs(want))
    rows = ns.summarise_verdicts(ns.judge(ds))
    assert {(r["verdict"], r["basis"]) for r in rows} == {(ns.laws.CONSERVED, ns.laws.BASIS_LAW)}


def test_lora_plus_flow_conserves_the_weighted_charge():
    model = MODELS["mlp_tanh_all"]()
    data = data_for(model)
    rates = (0.5, 4.0, 1.0, 16.0, 2.0, 2.0)  # one pair per adapter
    ds = ns.simulate(model, data, method="gl2", h=0.1, t_end=2.0, save_every=1.0, seeds=2, layer_lr=rates,
                     init=init.Gaussian(scale=0.7))
    assert np.all(ds.status.values == 0)
    for g in model.charge_groups:
        assert np.max(ds.drift_max.sel(charge=g.name).values) <= 1e-10
    # the unweighted charge moves along the same path (so the test can fail)
    plain = [_D(model, ds[v].values[0], (1.0, 1.0)) for v in ("theta_initial", "theta_final")]
    assert max(np.abs(a - b).max() for a, b in zip(*plain)) > 1e-3


def test_lora_plus_rates_of_one_are_bit_identical():
    model = MODELS["deep_linear"]()
    data = data_for(model)
    kw = dict(dynamics="gd", h=0.05, n_steps=10, save_every=0.25, seeds=2, init=init.Gaussian(scale=0.7))
    a, b = ns.simulate(model, data, **kw), ns.simulate(model, data, layer_lr=(1, 1), **kw)
    for name in a.data_vars:
        if name != "wall_seconds":
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.parametrize("kwargs, name, why", [
    (dict(layer_lr=(1.0, 2.0, 3.0)), "layer_lr", "(m_A, m_B) for every adapter or 4"),
    (dict(layer_lr=(1.0, 0.0)), "layer_lr", "finite and > 0"),
    (dict(layer_lr=(1.0, 2.0), bias_lr=2.0), "bias_lr", "does not apply to low-rank adapters"),
    (dict(layer_lr=(1.0, 2.0), dynamics="adam"), "layer_lr", "not to dynamics='adam'"),
])
def test_bad_lora_plus_rates_refused(kwargs, name, why):
    model = MODELS["deep_linear"]()
    with pytest.raises(ConfigError, match=rf"^{name}=") as info:
        ns.simulate(model, data_for(model), **{"dynamics": "gd", "h": 0.05, "n_steps": 10, **kwargs})
    assert why in str(info.value)
