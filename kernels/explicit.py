"""Arithmetic shared by the steppers: stage sums of a Runge–Kutta tableau and the divergence check.

The vector fields are autonomous (fields.py), so a tableau's nodes c only matter for its consistency
(checked in the API's tests).
"""

from numba import njit

from . import FASTMATH


@njit(cache=True, fastmath=FASTMATH)
def combine(theta, h, weights, K, out):
    """out = θ + h Σ_i weights[i] K[i]."""
    P = theta.shape[0]
    for j in range(P):
        out[j] = theta[j]
    for i in range(K.shape[0]):
        w = h * weights[i]
        if w != 0.0:
            for j in range(P):
                out[j] += w * K[i, j]


@njit(cache=True)
def within_bound(theta, bound):
    """False if any parameter is non-finite or larger than ``bound`` in magnitude."""
    outside = 0  # counted without an early exit, so the loop vectorises (it runs every step)
    for j in range(theta.shape[0]):
        outside += 0 if abs(theta[j]) <= bound else 1  # NaN compares False
    return outside == 0
