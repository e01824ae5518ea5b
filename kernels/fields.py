"""The vector fields every stepper integrates, on one seed's state row ``y``, and the discrete
momentum algorithms (heavy ball, Nesterov).

State rows (float64):

    gradient flow / descent (DYN_GF)  y = θ  or [θ, e]           f(y) = −∇L(θ) − λθ,  ė = |θ̇|²
    momentum flow (DYN_MOMENTUM)      y = [q, p] or [q, p, z, w] q̇ = p
                                      (then e, if tracked)       ṗ = −(∇L(q) + λq + p)/τ
                                                                 ż = D(p),  ẇ = D(q),  ė = |p|²
    heavy ball / Nesterov             y = [θ_k, θ_{k−1}]         velocity (θ_k − θ_{k−1})/h

z and w (length nq, present only when the balance law is tracked) are the integrals ∫D(p)dt and
∫D(q)dt of the model's quadratic charges, so that the integrated exact law of theory.md §2,

    I(t) = τ Ḋ(t) + D(t) + 2λ w(t) − 2τ z(t),   Ḋ = (D(q + p) − D(q − p))/2,

is a constant of the flow (τD̈ + Ḋ + 2λD = 2τD(p), from θ̇ᵀSθ̇ = 2D(θ̇)); for a linear charge L
(softmax translation) the law is τL̈ + L̇ + λL = 0 and I = τL̇ + L + λw. I is a quadratic function
of the augmented state, so Gauss–Legendre methods keep it to the solve tolerance, like D under GF.

e (the last entry, at ``cfg.energy_slot``, present only when the energy is tracked) is the dissipated
∫|θ̇|² of the energy identity (extras.py), integrated by the run's own method.
"""

from numba import njit
from numba.extending import overload

from . import FASTMATH
from .bundles import is_momentum
from .explicit import combine
from .models import charges, loss_grad

DYN_GF, DYN_MOMENTUM = 0, 1


def _gradient_flow_field(cfg, kind, y, out, nq, ints, floats, data_a, data_b, work):
    """out = −∇L(θ) − λθ; returns L(θ)."""
    loss = loss_grad(kind, y, out, ints, floats, data_a, data_b, work)
    lam = cfg.weight_decay
    P = cfg.n_params
    for j in range(P):
        out[j] = -out[j] - lam * y[j]
    if cfg.energy_slot >= 0:
        rate = 0.0
        for j in range(P):
            rate += out[j] * out[j]
        out[cfg.energy_slot] = rate
    return loss


def _momentum_field(cfg, kind, y, out, nq, ints, floats, data_a, data_b, work):
    """out = f(y) for momentum flow on y = [q, p, z, w] (see the module docstring); returns L(q)."""
    P = cfg.n_params
    loss = loss_grad(kind, y[:P], out[P:2 * P], ints, floats, data_a, data_b, work)  # ∇L into the ṗ slot
    inv_tau = 1.0 / cfg.tau
    lam = cfg.weight_decay
    for j in range(P):
        out[P + j] = -(out[P + j] + lam * y[j] + y[P + j]) * inv_tau
        out[j] = y[P + j]
    if cfg.track_law:
        charges(kind, y[P:2 * P], out[2 * P:2 * P + nq], ints, floats)
        charges(kind, y[:P], out[2 * P + nq:2 * P + 2 * nq], ints, floats)
    if cfg.energy_slot >= 0:
        rate = 0.0
        for j in range(P):
            rate += y[P + j] * y[P + j]
        out[cfg.energy_slot] = rate
    return loss


def field(cfg, kind, y, out, nq, ints, floats, data_a, data_b, work):
    """out = f(y) for the run's dynamics; returns L at the position (stand-in: the overload replaces it)."""


@overload(field, prefer_literal=True, jit_options={"cache": True, "fastmath": FASTMATH})
def _ol_field(cfg, kind, y, out, nq, ints, floats, data_a, data_b, work):
    # selected by the settings' type: a gradient-flow run never compiles the momentum field. Each body
    # is the overload's implementation itself (no extra call level) with one call site of the gradient.
    return _momentum_field if is_momentum(cfg) else _gradient_flow_field


@njit(cache=True, fastmath=FASTMATH)
def rk_stages(kind, y, h, A, K, stage, first_stage, cfg, nq, ints, floats, data_a, data_b, work):
    """Fill K[i] = f(y + h Σ_j A[i, j] K[j]) for i ≥ first_stage (K[0] may be reused: FSAL)."""
    for i in range(first_stage, K.shape[0]):
        x = y
        if i > 0:
            combine(y, h, A[i], K, stage)  # explicit: A[i, m] = 0 for m >= i, skipped
            x = stage
        field(cfg, kind, x, K[i], nq, ints, floats, data_a, data_b, work)


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
