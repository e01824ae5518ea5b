"""Step-size control of the embedded pairs: the error norm, the starting step, the step factor.

Standard choices (Hairer, Nørsett & Wanner, Solving ODEs I, II.4): the step changes by the factor
SAFETY · err^(−1/(q+1)) for an error estimate of order q, clipped to [MIN_FACTOR, MAX_FACTOR].
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .fields import field

SAFETY = 0.9  # aim a little below the tolerance, so the next step is likely accepted
MAX_FACTOR = 5.0  # largest growth of the step after an accepted step
MIN_FACTOR = 0.2  # largest shrink after a rejected step
MIN_RELATIVE_STEP = 1e-14  # a step below this × max(1, |t|) cannot advance t: step underflow


@njit(cache=True)
def step_factor(err, error_order, accepted):
    """Factor for the next step size from the scaled error norm ``err`` of this attempt."""
    if accepted:
        return MAX_FACTOR if err == 0.0 else min(MAX_FACTOR, SAFETY * err ** (-1.0 / (error_order + 1)))
    if not np.isfinite(err):
        return MIN_FACTOR
    return max(MIN_FACTOR, SAFETY * err ** (-1.0 / (error_order + 1)))


@njit(cache=True, fastmath=FASTMATH)
def error_norm(theta, new, h, b, b_err, K, rtol, atol):
    """RMS over parameters of h Σ (b_i − b̂_i) K_i scaled by atol + rtol·max(|θ|, |θ_new|)."""
    P = theta.shape[0]
    total = 0.0
    for j in range(P):
        e = 0.0
        for i in range(K.shape[0]):
            e += (b[i] - b_err[i]) * K[i, j]
        scale = atol + rtol * max(abs(theta[j]), abs(new[j]))
        r = h * e / scale
        total += r * r
    return np.sqrt(total / P)



@njit(cache=True)
def initial_step(kind, theta, f0, order, rtol, atol, t_span, cfg, nq, ints, floats, data_a, data_b, work, trial, f1):
    """Hairer–Nørsett–Wanner's starting step (Solving ODEs I, II.4), per seed; also fills f0 = f(θ)."""
    n = theta.shape[0]
    d0 = 0.0
    d1 = 0.0
    h0 = 0.0
    for r in range(2):  # r = 0: f0 = f(θ); r = 1: f1 = f(θ + h0 f0) (one call site, see rk_stages)
        x = theta if r == 0 else trial
        out = f0 if r == 0 else f1
        field(cfg, kind, x, out, nq, ints, floats, data_a, data_b, work)
        if r == 0:
            for j in range(n):
                sc = atol + rtol * abs(theta[j])
                d0 += (theta[j] / sc) ** 2
                d1 += (f0[j] / sc) ** 2
            d0 = np.sqrt(d0 / n)
            d1 = np.sqrt(d1 / n)
            h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
            h0 = min(h0, t_span)
            for j in range(n):
                trial[j] = theta[j] + h0 * f0[j]
    d2 = 0.0
    for j in range(n):
        sc = atol + rtol * abs(theta[j])
        d2 += ((f1[j] - f0[j]) / sc) ** 2
    d2 = np.sqrt(d2 / n) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, t_span)
