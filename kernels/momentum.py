"""First-order systems for structure-preserving integration (issue 5), and the discrete momentum
algorithms.

State rows ``y`` (one per seed, float64):

    gradient flow (DYN_GF)         y = θ                                   f(y) = −∇L(θ) − λθ
    momentum flow (DYN_MOMENTUM)   y = [q, p, z, w]                        q̇ = p
                                                                           ṗ = −(∇L(q) + λq + p)/τ
                                                                           ż = D(p),  ẇ = D(q)

z and w (length nq, present only when the balance law is tracked) are the integrals ∫D(p)dt and
∫D(q)dt of the model's quadratic charges, so that the integrated exact law of theory.md §2,

    I(t) = τ Ḋ(t) + D(t) + 2λ w(t) − 2τ z(t),   Ḋ = (D(q + p) − D(q − p))/2,

is a constant of the flow (τD̈ + Ḋ + 2λD = 2τD(p), from θ̇ᵀSθ̇ = 2D(θ̇)). I is a quadratic function
of the augmented state, so Gauss–Legendre methods keep it to the solve tolerance, like D under GF.

Heavy ball and Nesterov store y = [θ_k, θ_{k−1}]; their velocity is (θ_k − θ_{k−1})/h.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .explicit import combine
from .models import charges, loss_grad

DYN_GF, DYN_MOMENTUM = 0, 1
SCHEME_EXPLICIT, SCHEME_IMPLICIT, SCHEME_SPLITTING, SCHEME_HEAVY_BALL, SCHEME_NESTEROV = 0, 1, 2, 3, 4


@njit(cache=True, fastmath=FASTMATH)
def system_field(kind, y, out, dyn, P, nq, tau, lam, track, ints, floats, data_a, data_b, work):
    """out = f(y) for the system ``dyn`` (see the module docstring); returns L at the position."""
    if dyn == DYN_GF:
        loss = loss_grad(kind, y[:P], out[:P], ints, floats, data_a, data_b, work)
        for j in range(P):
            out[j] = -out[j] - lam * y[j]
        return loss
    loss = loss_grad(kind, y[:P], out[P:2 * P], ints, floats, data_a, data_b, work)  # ∇L into the ṗ slot
    inv_tau = 1.0 / tau
    for j in range(P):
        out[P + j] = -(out[P + j] + lam * y[j] + y[P + j]) * inv_tau
        out[j] = y[P + j]
    if track:
        charges(kind, y[P:2 * P], out[2 * P:2 * P + nq], ints, floats)
        charges(kind, y[:P], out[2 * P + nq:2 * P + 2 * nq], ints, floats)
    return loss


@njit(cache=True, fastmath=FASTMATH)
def explicit_system_step(kind, y, h, A, b, K, stage, new, dyn, P, nq, tau, lam, track,
                         ints, floats, data_a, data_b, work):
    """One step of any explicit tableau on the system: new = y + h Σ b_i K_i."""
    for i in range(b.shape[0]):
        combine(y, h, A[i], K, stage)  # explicit: A[i, m] = 0 for m >= i, skipped
        system_field(kind, stage, K[i], dyn, P, nq, tau, lam, track, ints, floats, data_a, data_b, work)
    combine(y, h, b, K, new)


@njit(cache=True, fastmath=FASTMATH)
def momentum_algorithm_step(kind, y, eta, beta, lam, nesterov, P, grad, look, ints, floats, data_a, data_b, work):
    """Heavy ball θ_{k+1} = θ_k + β(θ_k − θ_{k−1}) − η(∇L(θ_k) + λθ_k), or Nesterov (gradient at the
    look-ahead point θ_k + β(θ_k − θ_{k−1})), in place on y = [θ_k, θ_{k−1}]."""
    for j in range(P):
        look[j] = y[j] + beta * (y[j] - y[P + j]) if nesterov else y[j]
    loss_grad(kind, look, grad, ints, floats, data_a, data_b, work)
    for j in range(P):
        if nesterov:
            new = look[j] - eta * (grad[j] + lam * look[j])
        else:
            new = y[j] + beta * (y[j] - y[P + j]) - eta * (grad[j] + lam * y[j])
        y[P + j] = y[j]
        y[j] = new
