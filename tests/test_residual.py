"""Residual MLP blocks f(x) = x + W_2σ(W_1x + b_1) + b_2 (issue 22, item 3): the skip has no parameters,
so the hidden neurons' rescale charges |w_in|² + b² − α|w_out|² stay, with gradient descent's exact law.

Oracles: central finite differences; an independent NumPy back-propagation written here; the exact GD law.
"""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import init
from noether_sim._validate import ConfigError
from noether_sim.kernels.entries import ensemble_loss_grad
from noether_sim.mlp import MLP


def data_for(d, n=12, seed=5):
    rng = np.random.default_rng(seed)
    return ns.data.from_arrays(rng.standard_normal((d, n)), rng.standard_normal((d, n)))


@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
def test_gradient_matches_numpy_backprop_and_finite_differences(activation):
    model = MLP((4, 6, 4), activation=activation, bias=True, residual=True)
    data = data_for(4)
    theta = np.random.default_rng(1).standard_normal(model.n_params)
    ints = model.descriptor()
    loss, g = ensemble_loss_grad(int(ints[0]), theta[None], ints, model.constants(data), *model.kernel_data(data))
    (W1, b1), (W2, b2) = model.unflatten(theta)
    X, Y, N = data.X, data.Y, data.X.shape[1]
    z = W1 @ X + b1[:, None]
    h = model.act(z)
    f = X + W2 @ h + b2[:, None]  # the skip
    e = (f - Y) / N
    assert np.isclose(loss[0], 0.5 * N * (e * e).sum(), rtol=1e-13)
    d1 = (W2.T @ e) * model.act_derivative(z)
    ref = model.flatten([(d1 @ X.T, d1.sum(1)), (e @ h.T, e.sum(1))])
    assert np.allclose(g[0], ref, rtol=1e-12, atol=1e-14)
    eps = 1e-6
    fd = np.array([(model.loss_value(theta + eps * u, data) - model.loss_value(theta - eps * u, data)) / (2 * eps)
                   for u in np.eye(model.n_params)])
    assert np.abs(fd - g[0]).max() < 1e-6


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_gradient_descent_exact_law_of_the_block_rescale_charges(weight_decay):
    model = MLP((4, 6, 6, 4), activation="relu", bias=True, residual=True)
    ds = ns.simulate(model, data_for(4), dynamics="gd", h=0.05, n_steps=3000, save_every=25.0, seeds=3,
                     init=init.Gaussian(scale=0.7, bias_scale=0.5), weight_decay=weight_decay)
    assert np.all(ds.status.values == 0)
    for name in ("r1", "r2"):
        resid = ds.residual.sel(charge=name).values
        floor = ds.roundoff_floor.sel(charge=name).values[:, None]
        assert np.all(resid <= 10 * floor), (name, resid.max(), floor.max())
        assert np.max(ds.predicted.sel(charge=name).values) > 1e3 * np.max(floor)


def test_the_skip_changes_the_function():
    plain, res = MLP((3, 5, 3), residual=False), MLP((3, 5, 3), residual=True)
    theta = np.random.default_rng(2).standard_normal(plain.n_params)
    X = np.random.default_rng(3).standard_normal((3, 6))
    assert np.allclose(res.forward(theta, X), plain.forward(theta, X) + X, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kwargs", [dict(widths=(3, 5, 2)), dict(widths=(3, 5, 3), loss="softmax_ce")])
def test_invalid_residual_blocks_are_named(kwargs):
    with pytest.raises(ConfigError, match=r"^residual="):
        MLP(residual=True, **kwargs)
