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
noise stream (kernels/stochastic.py), so a seed's path does not depend on how seeds are batched. On a
coupled ladder's rung (``noise_substeps`` = r) that draw is the normalised OU-weighted sum of the finest
rung's r draws over the same interval (stochastic.ou_noise; needs equal damp weights, checked in Python).
A stochastic run (noise or minibatches: one batch per step, used by every kick of the step) also
accumulates the splitting's exact per-trajectory law of the charges (``_law_kick``).

The gradient is reused between sub-steps while q has not moved (between a kick and the next kick
with only damps in between), so Störmer–Verlet costs one gradient per step, Yoshida's composition three.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import FASTMATH
from .models import charges, charges_cross, isometric_charges, loss_grad
from .stochastic import ou_noise

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


def _damp(ou, kind, q, p, s, tau, m, n_damps, qa, qb, ints, floats):
    """p ← e^{−s/τ}p, or the exact Ornstein–Uhlenbeck step when ``ou`` carries noise (stand-in: the
    overload replaces it; a deterministic run compiles no noise code)."""


def _damp_plain(ou, kind, q, p, s, tau, m, n_damps, qa, qb, ints, floats):
    e = np.exp(-s / tau)
    for j in range(p.shape[0]):
        p[j] *= e


def _damp_ou(ou, kind, q, p, s, tau, m, n_damps, qa, qb, ints, floats):
    key, noise, temperature, step, substeps, pred, group_off, group_degree, jbuf = ou
    e = np.exp(-s / tau)
    noisy = temperature > 0.0
    if not noisy:
        for j in range(p.shape[0]):
            p[j] *= e
    else:
        sigma = np.sqrt(temperature / tau * -np.expm1(-2.0 * s / tau))
        # a coupled ladder's rung: the normalised, OU-weighted sum of the finest rung's draws (ou_noise)
        ou_noise(key, step * n_damps + m, substeps, np.exp(-s / (substeps * tau)), sigma, noise)
        for j in range(p.shape[0]):
            p[j] = e * p[j] + noise[j]
    # the per-trajectory law (``_law_kick``): V ← e·V + B(q, n), q(n) for linear charges; J ← e·J + J(q, n)
    nq = group_off[group_off.shape[0] - 1]
    if noisy:
        charges_cross(kind, q, noise, qa, ints, floats)
        charges(kind, noise, qb, ints, floats)
    for grp in range(group_degree.shape[0]):
        for k in range(group_off[grp], group_off[grp + 1]):
            v = e * pred[nq + k]
            if noisy:
                v += qa[k] if group_degree[grp] == 2 else qb[k]
            pred[nq + k] = v
    nj = pred.shape[0] - 2 * nq
    if nj > 0:
        if noisy:
            isometric_charges(kind, q, noise, jbuf, ints, floats)
        for k in range(nj):
            pred[2 * nq + k] = e * pred[2 * nq + k] + (jbuf[k] if noisy else 0.0)


@overload(_damp, inline="always", jit_options={"cache": True})
def _ol_damp(ou, kind, q, p, s, tau, m, n_damps, qa, qb, ints, floats):
    return _damp_ou if isinstance(ou, types.BaseTuple) else _damp_plain


def _law_kick(ou, kind, q, c, lam, ints, floats):
    """Stochastic momentum runs (minibatches, noise): the exact per-trajectory law of the splitting.

    ``pred`` = ou[5] holds, per seed, [Q̂ (nq), V̂ (nq), Ĵ (nj)]: the predictions of the model charges
    Q(q) = B(q, q) (linear ones: Q(q) = ⟨v, q⟩), of their velocity parts V = B(q, p) (linear: Q(p)) and of
    the isometric charges J(q, p) (linear in p). Each sub-step changes them by an exact identity in which
    the loss gradient drops out by symmetry (B(q, ∇L_B) = 0, J(q, ∇L_B) = 0 for every minibatch loss):

        kick  p ← p − c(∇L_B + λq)   Q unchanged;  V −= cλQ;  J −= cλJ(q, q)  (0 for rotations)
        drift q ← q + sp             Q += 2sV + s²Q(p), V += sQ(p) (linear: Q += sV);  J unchanged
        OU    p ← ep + n             Q unchanged;  V ← eV + B(q, n) (linear: Q(n));  J ← eJ + J(q, n)

    so |Q − Q̂| and |J − Ĵ| stay at round-off for every seed (the ``residual``), while Q̂ − Q(0) and
    Ĵ − e^{−t/τ}J(0) (the ``predicted``) carry the splitting's and the noise's part of the change.
    Deterministic runs compile none of it (stand-in: the overload replaces it)."""


def _law_kick_on(ou, kind, q, c, lam, ints, floats):
    if lam == 0.0:
        return
    pred, group_off, jbuf = ou[5], ou[6], ou[8]
    nq = group_off[group_off.shape[0] - 1]
    for k in range(nq):
        pred[nq + k] -= c * lam * pred[k]
    nj = pred.shape[0] - 2 * nq
    if nj > 0:
        isometric_charges(kind, q, q, jbuf, ints, floats)
        for k in range(nj):
            pred[2 * nq + k] -= c * lam * jbuf[k]


@overload(_law_kick, inline="always", jit_options={"cache": True})
def _ol_law_kick(ou, kind, q, c, lam, ints, floats):
    if isinstance(ou, types.BaseTuple):
        return _law_kick_on
    return lambda ou, kind, q, c, lam, ints, floats: None


def _law_drift(ou, kind, p, s, qa, ints, floats):
    """The drift's part of ``_law_kick``'s law (stand-in: the overload replaces it)."""


def _law_drift_on(ou, kind, p, s, qa, ints, floats):
    pred, group_off, group_degree = ou[5], ou[6], ou[7]
    nq = group_off[group_off.shape[0] - 1]
    charges(kind, p, qa, ints, floats)
    for grp in range(group_degree.shape[0]):
        for k in range(group_off[grp], group_off[grp + 1]):
            if group_degree[grp] == 2:
                pred[k] += 2.0 * s * pred[nq + k] + s * s * qa[k]
                pred[nq + k] += s * qa[k]
            else:
                pred[k] += s * pred[nq + k]


@overload(_law_drift, inline="always", jit_options={"cache": True})
def _ol_law_drift(ou, kind, p, s, qa, ints, floats):
    if isinstance(ou, types.BaseTuple):
        return _law_drift_on
    return lambda ou, kind, p, s, qa, ints, floats: None


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
            _damp(ou, kind, q, p, s, tau, damp_index, n_damps, qa, qb, ints, floats)
            damp_index += 1
        elif op == OP_KICK:
            if not grad_valid:
                loss_grad(kind, q, grad, ints, floats, data_a, data_b, work)
                for j in range(P):
                    grad[j] += lam * q[j]
                evals += 1
                grad_valid = True
            c = s / tau
            _law_kick(ou, kind, q, c, lam, ints, floats)
            for j in range(P):
                p[j] -= c * grad[j]
        else:  # OP_DRIFT
            _law_drift(ou, kind, p, s, qa, ints, floats)
            if track:
                _simpson_add(kind, w, q, p, s, buf, qa, qb, qc, nq, ints, floats)
                charges(kind, p, qa, ints, floats)
                for m in range(nq):
                    z[m] += s * qa[m]
            for j in range(P):
                q[j] += s * p[j]
            grad_valid = False
    return evals, grad_valid
