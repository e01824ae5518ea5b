"""One generic explicit Runge–Kutta stepper: any tableau, fixed step or embedded-pair adaptive.

The vector field is gradient flow with weight decay, f(θ) = −∇L(θ) − λθ. It is autonomous, so the
nodes c only matter for the tableau's consistency (checked in the API's tests).
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .models import loss_grad


@njit(cache=True, fastmath=FASTMATH)
def vector_field(kind, theta, out, ints, floats, data_a, data_b, work, weight_decay):
    """out = −∇L(θ) − λθ; returns L(θ)."""
    loss = loss_grad(kind, theta, out, ints, floats, data_a, data_b, work)
    for j in range(theta.shape[0]):
        out[j] = -out[j] - weight_decay * theta[j]
    return loss


@njit(cache=True, fastmath=FASTMATH)
def rk_stages(kind, theta, h, A, K, stage, first_stage, ints, floats, data_a, data_b, work, weight_decay):
    """Fill K[i] = f(θ + h Σ_j A[i, j] K[j]) for i ≥ first_stage (K[0] may be reused, FSAL)."""
    n_stages = K.shape[0]
    P = theta.shape[0]
    for i in range(first_stage, n_stages):
        x = theta
        if i > 0:
            combine(theta, h, A[i], K, stage)  # A[i, m] = 0 for m >= i (explicit), so those are skipped
            x = stage
        # one call site: the gradient kernel is inlined once here (compile time), not once per branch
        vector_field(kind, x, K[i], ints, floats, data_a, data_b, work, weight_decay)


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
def within_bound(theta, bound):
    """False if any parameter is non-finite or larger than ``bound`` in magnitude."""
    outside = 0  # counted without an early exit, so the loop vectorises (it runs every step)
    for j in range(theta.shape[0]):
        outside += 0 if abs(theta[j]) <= bound else 1  # NaN compares False
    return outside == 0


@njit(cache=True)
def initial_step(kind, theta, f0, order, rtol, atol, t_span, ints, floats, data_a, data_b, work,
                 weight_decay, trial, f1):
    """Hairer–Nørsett–Wanner's starting step (Solving ODEs I, II.4), per seed; also fills f0 = f(θ)."""
    P = theta.shape[0]
    d0 = 0.0
    d1 = 0.0
    h0 = 0.0
    for r in range(2):  # r = 0: f0 = f(θ); r = 1: f1 = f(θ + h0 f0) (one call site, see rk_stages)
        x = theta if r == 0 else trial
        out = f0 if r == 0 else f1
        vector_field(kind, x, out, ints, floats, data_a, data_b, work, weight_decay)
        if r == 0:
            for j in range(P):
                sc = atol + rtol * abs(theta[j])
                d0 += (theta[j] / sc) ** 2
                d1 += (f0[j] / sc) ** 2
            d0 = np.sqrt(d0 / P)
            d1 = np.sqrt(d1 / P)
            h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
            h0 = min(h0, t_span)
            for j in range(P):
                trial[j] = theta[j] + h0 * f0[j]
    d2 = 0.0
    for j in range(P):
        sc = atol + rtol * abs(theta[j])
        d2 += ((f1[j] - f0[j]) / sc) ** 2
    d2 = np.sqrt(d2 / P) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, t_span)
