"""The balance-charge kernel is the bilinear kernel at (θ, θ): bit for bit what the former stand-alone
loop computed (kept here as the oracle), exactly symmetric, and equal to a NumPy evaluation."""

import numpy as np
import pytest
from numba import njit

import noether_sim as ns
from noether_sim.kernels import FASTMATH
from noether_sim.kernels.gemm import gemm
from noether_sim.kernels.layout import bias_offset, n_layers, weight_offset, widest_layer, width
from noether_sim.kernels.linear import linear_charges


@njit(fastmath=FASTMATH)
def former_linear_charges(theta, q, ints):
    """The stand-alone loop linear_charges was before it became linear_charges_cross(θ, θ)."""
    L = n_layers(ints)
    widest = widest_layer(ints)
    neg_t = np.empty(widest * widest)
    pos = 0
    for i in range(1, L):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        nnext = width(ints, i + 1)
        wi = weight_offset(ints, i)
        wn = weight_offset(ints, i + 1)
        gemm(q, pos, ni, theta, wn, 1, ni, theta, wn, ni, ni, ni, nnext, 0)
        for a in range(ni):
            for c in range(nprev):
                neg_t[c * ni + a] = -theta[wi + a * nprev + c]
        gemm(q, pos, ni, theta, wi, nprev, 1, neg_t, 0, ni, ni, ni, nprev, 1)
        if ints[2] != 0:
            bo = bias_offset(ints, i)
            for a in range(ni):
                for b in range(ni):
                    q[pos + a * ni + b] -= theta[bo + a] * theta[bo + b]
        pos += ni * ni


@pytest.mark.parametrize("widths", [(3, 4, 2), (4, 6, 5, 3), (10, 16, 16, 5), (7, 33, 2, 9, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_balance_kernel_is_bit_identical_to_the_former_loop_and_symmetric(widths, bias):
    model = ns.DeepLinear(widths, bias=bias)
    ints = model.descriptor()
    nq = sum(g.size for g in model.charge_groups)
    rng = np.random.default_rng(len(widths) + bias)
    for scale in (1e-3, 1.0, 1e3):
        theta = scale * rng.standard_normal(model.n_params)
        new, old = np.empty(nq), np.empty(nq)
        linear_charges(theta, new, ints)
        former_linear_charges(theta, old, ints)
        assert np.array_equal(new, old)
        pos = 0
        for i in range(1, len(widths) - 1):
            n = widths[i]
            block = new[pos:pos + n * n].reshape(n, n)
            assert np.array_equal(block, block.T)
            pos += n * n


def test_balance_kernel_agrees_with_numpy():
    widths = (4, 6, 5, 3)
    model = ns.DeepLinear(widths, bias=False)
    theta = np.random.default_rng(3).standard_normal(model.n_params)
    q = np.empty(sum(g.size for g in model.charge_groups))
    linear_charges(theta, q, model.descriptor())
    Ws, off = [], 0
    for a, b in zip(widths[:-1], widths[1:]):
        Ws.append(theta[off:off + a * b].reshape(b, a))
        off += a * b
    expected = np.concatenate([(Ws[i + 1].T @ Ws[i + 1] - Ws[i] @ Ws[i].T).ravel() for i in range(len(Ws) - 1)])
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
