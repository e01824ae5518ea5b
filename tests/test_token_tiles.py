"""The attention kernel's token-product register tiles and vector exp (kernels/token_tiles.py).

Oracles: the same strided products summed in NumPy (every tile shape, ragged lane counts that take
the masked path, zero-length reductions); ``numpy.exp`` to 1 ulp over the double range, and the edges
(underflow, overflow, ±inf, NaN). The chunked attention gradient is checked against an independent
NumPy backward in tests/test_attention.py (N below, at and above the chunk size).
"""

import numpy as np
import pytest

from noether_sim.kernels.token_tiles import exp_rows, exp_shifted_sum, token_product


def _reference(C, c, A, a, B, b, m, p, K, scale):
    out = C.copy()
    for i in range(m):
        for j in range(p):
            acc = np.zeros(C.shape[1])
            for k in range(K):
                acc += A[a[0] + i * a[1] + k * a[2]] * B[b[0] + j * b[1] + k * b[2]]
            out[c[0] + i * c[1] + j * c[2]] = scale * acc
    return out


@pytest.mark.parametrize("n", [1, 7, 8, 13, 32, 40])
@pytest.mark.parametrize("m, p, K", [(8, 8, 8), (5, 6, 3), (1, 8, 8), (3, 1, 5), (4, 4, 0), (9, 7, 2)])
def test_token_product_matches_numpy_for_every_tile_shape_and_ragged_lanes(n, m, p, K):
    rng = np.random.default_rng(n * 100 + m * 10 + p)
    A, B, C = (rng.standard_normal((120, n)) for _ in range(3))
    a, b, c = (1, 1, m), (3, max(K, 1), 1), (2, p + 1, 1)  # transposed reads on A, row-major B, padded C
    expected = _reference(C, c, A, a, B, b, m, p, K, 0.5)
    token_product(C, *c, A, *a, B, *b, m, p, K, 0.5)
    np.testing.assert_allclose(C, expected, rtol=1e-14, atol=1e-14)


def test_token_product_leaves_rows_it_does_not_own():
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((64, 11)), rng.standard_normal((64, 11))
    C = np.full((64, 11), 7.0)
    token_product(C, 5, 8, 2, A, 0, 8, 1, B, 0, 8, 1, 4, 3, 8, 1.0)  # rows 5 + 8i + 2j, i < 4, j < 3
    owned = {5 + 8 * i + 2 * j for i in range(4) for j in range(3)}
    untouched = [r for r in range(64) if r not in owned]
    assert np.all(C[untouched] == 7.0)
    assert not np.any(C[sorted(owned)] == 7.0)


def test_exp_is_within_one_ulp_over_the_double_range():
    rng = np.random.default_rng(0)
    x = np.r_[np.linspace(-707.9, 709.78, 400_001), rng.standard_normal(10_000) * 5, -rng.random(10_000) * 40,
              -1e-300, 0.0, -0.0, 1e-300, 1e-17, -1e-17]
    y = np.empty_like(x)
    exp_rows(y, x)
    ulp = np.abs(y - np.exp(x)) / np.spacing(np.exp(x))
    assert ulp.max() <= 1.0
    # the check can fail: a 2-ulp perturbation is seen
    assert (np.abs(y * (1 + 4e-16) - np.exp(x)) / np.spacing(np.exp(x))).max() > 1.0


def test_exp_edges():
    x = np.array([-708.5, -800.0, -np.inf, np.nan, 709.79, 1e4, np.inf, 0.0])
    y = np.empty_like(x)
    exp_rows(y, x)
    assert np.all(y[:3] == 0.0)  # math.exp is < 3.3e-308 (subnormal) or 0 there
    assert np.isnan(y[3])
    assert np.all(np.isposinf(y[4:7]))
    assert y[7] == 1.0


def test_exp_shifted_sum_is_one_softmax_pass():
    rng = np.random.default_rng(1)
    row, m = rng.standard_normal(37), rng.standard_normal(37) + 2
    tot = np.full(37, 0.25)
    expected_row = np.exp(row - m)
    exp_shifted_sum(row, m, tot)
    np.testing.assert_allclose(row, expected_row, rtol=3e-16, atol=0)
    np.testing.assert_allclose(tot, 0.25 + expected_row, rtol=3e-16, atol=0)
