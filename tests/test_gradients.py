"""Hand-written gradients (through data moments) against central finite differences and against an
independent back-propagation over the data points."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.kernels.entries import ensemble_loss_grad
from reference import loss_and_grad

WIDTHS = {1: (5, 3), 2: (5, 4, 3), 3: (5, 4, 6, 3), 4: (4, 5, 3, 6, 2), 5: (3, 4, 5, 4, 3, 2)}


def kernel_loss_grad(model, data, theta):
    a, b = model.kernel_data(data)
    loss, grad = ensemble_loss_grad(int(model.descriptor()[0]), theta[None, :].copy(), model.descriptor(), model.constants(data), a, b)
    return loss[0], grad[0]


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("depth", sorted(WIDTHS))
def test_gradient_matches_central_differences(depth, bias):
    widths = WIDTHS[depth]
    model = ns.DeepLinear(widths, bias=bias)
    data = ns.data.synthetic_regression(widths[0], widths[-1], 17, noise=0.3, seed=depth)
    theta = ns.init.Gaussian(scale=1.0, bias_scale=0.5).draw(model, np.random.default_rng(depth))
    loss, grad = kernel_loss_grad(model, data, theta)

    # Central differences of the independent data-point loss; step ~ ε^(1/3) balances truncation
    # (O(step²)) against cancellation (O(ε/step)), giving ~1e-10 absolute accuracy here.
    step = 1e-5
    fd = np.empty_like(theta)
    for k in range(len(theta)):
        e = np.zeros_like(theta)
        e[k] = step
        fd[k] = (loss_and_grad(model, data, theta + e)[0] - loss_and_grad(model, data, theta - e)[0]) / (2 * step)
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) < 1e-6
    assert loss == pytest.approx(loss_and_grad(model, data, theta)[0], rel=1e-12)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_gradient_matches_backprop_over_data_points(bias):
    """Same numbers as the obvious per-data-point backward pass, to round-off."""
    model = ns.DeepLinear((6, 7, 5, 4), bias=bias)
    data = ns.data.synthetic_regression(6, 4, 40, noise=0.2, seed=3)
    theta = ns.init.Gaussian(bias_scale=0.3).draw(model, np.random.default_rng(0))
    loss, grad = kernel_loss_grad(model, data, theta)
    ref_loss, ref_grad = loss_and_grad(model, data, theta)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-12 * np.abs(ref_grad).max())


@pytest.mark.parametrize("widths,kind", [((10, 16, 16, 5), "MODEL_DEEP_LINEAR"),
                                         ((2, 8, 8, 16), "MODEL_DEEP_LINEAR_INPUT_SIDE")])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_both_orders_of_the_matrix_chain(widths, kind, bias):
    """The model compiles the cheaper order of the gradient's matrix chain (output side when n_L is
    small, input side for wide outputs); each matches the per-point backward pass to round-off."""
    from noether_sim.kernels import layout

    model = ns.DeepLinear(widths, bias=bias)
    assert model.descriptor()[0] == getattr(layout, kind)
    data = ns.data.synthetic_regression(widths[0], widths[-1], 30, noise=0.2, seed=4)
    theta = ns.init.Gaussian(bias_scale=0.3).draw(model, np.random.default_rng(1))
    loss, grad = kernel_loss_grad(model, data, theta)
    ref_loss, ref_grad = loss_and_grad(model, data, theta)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-12 * np.abs(ref_grad).max())
    ds = ns.simulate(model, data, method="rk4", h=0.01, n_steps=20, save_every=0.1, seeds=2)
    assert not ds.diverged.any() and np.isfinite(ds.drift).all()
