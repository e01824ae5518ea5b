"""One generic splitting stepper for momentum flow: any sequence of exact sub-flows (damp, kick,
drift; see ``noether_sim.methods.SPLITTING_METHODS``) with weights, on y = [q, p, z, w].

The balance-law integrals z = ∫D(p)dt, w = ∫D(q)dt (ż = D(p), ẇ = D(q)) belong to the drift part of
the split vector field (each piece of the augmented field must appear in exactly one sub-flow), where
they integrate exactly: z += s D(p) (p fixed) and w by Simpson's rule (exact for the quadratic D along
q + σp). So the law residual measures the splitting error alone.

Underdamped Langevin (momentum flow with temperature T, τq̈ + q̇ = −∇L − λq + √(2T)Ẇ, i.e.
dp = −(∇L + λq + p)dt/τ + (√(2T)/τ)dW): every damp sub-step becomes the exact Ornstein–Uhlenbeck flow of
dp = −p dt/τ + (√(2T)/τ)dW over its time s, p ← e^{−s/τ}p + √((T/τ)(1 − e^{−2s/τ})) ξ (stationary
variance T/τ per coordinate: the Gibbs law ∝ exp(−(τ|p|²/2 + L + λ|q|²/2)/T)). Verlet becomes OBABO
(a BAOAB-type splitting). The m-th damp of step k draws ξ as draw k·(damps per step) + m of the seed's
noise stream (kernels/stochastic.py), so a seed's path does not depend on how seeds are batched.

The gradient is reused between sub-steps while q has not moved (between a kick and the next kick
with only damps in between), so Störmer–Verlet costs one gradient per step, Yoshida's composition three.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import FASTMATH
from .models import charges, loss_grad
from .stochastic import gaussian_noise

OP_DAMP, OP_KICK, OP_DRIFT = 0, 1, 2


@njit(cache=True, fastmath=FASTMATH)
def _simpson_add(kind, acc, x, v, s, buf, qa, qb, qc, nq, ints, floats):
    """acc += ∫_0^s D(x + σv) dσ, exact for the quadratic D (Simpson)."""
    charges(kind, x, qa, ints, floats)
    for j in range(x.shape[0]):
        buf[j] = x[j] + 0.5 * s * v[j]
    charges(kind, buf, qb, ints, floats)
    for j in range(x.shape[0]):
        buf[j] = x[j] + s * v[j]
    charges(kind, buf, qc, ints, floats)
    for k in range(nq):
        acc[k] += s / 6.0 * (qa[k] + 4.0 * qb[k] + qc[k])


def _damp(ou, p, s, tau, m, n_damps):
    """p ← e^{−s/τ}p, or the exact Ornstein–Uhlenbeck step when ``ou`` carries noise (stand-in: the
    overload replaces it; a deterministic run compiles no noise code)."""


def _damp_plain(ou, p, s, tau, m, n_damps):
    e = np.exp(-s / tau)
    for j in range(p.shape[0]):
        p[j] *= e


def _damp_ou(ou, p, s, tau, m, n_damps):
    key, noise, temperature, step = ou
    e = np.exp(-s / tau)
    if temperature <= 0.0:
        for j in range(p.shape[0]):
            p[j] *= e
        return
    sigma = np.sqrt(temperature / tau * -np.expm1(-2.0 * s / tau))
    gaussian_noise(key, step * n_damps + m, 1, sigma, noise)
    for j in range(p.shape[0]):
        p[j] = e * p[j] + noise[j]


@overload(_damp, inline="always", jit_options={"cache": True})
def _ol_damp(ou, p, s, tau, m, n_damps):
    return _damp_ou if isinstance(ou, types.BaseTuple) else _damp_plain


@njit(cache=True, fastmath=FASTMATH)
def splitting_step(kind, y, h, ops, weights, P, nq, tau, lam, track, grad, grad_valid, buf, qa, qb, qc,
                   ints, floats, data_a, data_b, work, ou):
    """Advance y in place by one step; returns (gradient evaluations, grad_valid after the step).

    ``grad`` holds ∇L(q) + λq when ``grad_valid`` is true on entry (carried between steps by the driver).
    """
    q = y[:P]
    p = y[P:2 * P]
    z = y[2 * P:2 * P + nq]
    w = y[2 * P + nq:2 * P + 2 * nq]
    evals = 0
    n_damps = 0
    for k in range(ops.shape[0]):
        n_damps += ops[k] == OP_DAMP
    damp_index = 0
    for k in range(ops.shape[0]):
        s = h * weights[k]
        op = ops[k]
        if op == OP_DAMP:
            _damp(ou, p, s, tau, damp_index, n_damps)
            damp_index += 1
        elif op == OP_KICK:
            if not grad_valid:
                loss_grad(kind, q, grad, ints, floats, data_a, data_b, work)
                for j in range(P):
                    grad[j] += lam * q[j]
                evals += 1
                grad_valid = True
            c = s / tau
            for j in range(P):
                p[j] -= c * grad[j]
        else:  # OP_DRIFT
            if track:
                _simpson_add(kind, w, q, p, s, buf, qa, qb, qc, nq, ints, floats)
                charges(kind, p, qa, ints, floats)
                for m in range(nq):
                    z[m] += s * qa[m]
            for j in range(P):
                q[j] += s * p[j]
            grad_valid = False
    return evals, grad_valid
