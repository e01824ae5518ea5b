"""One generic splitting stepper for momentum flow: any sequence of exact sub-flows (damp, kick,
drift; see ``noether_sim.methods.SPLITTING_METHODS``) with weights, on y = [q, p, z, w].

The balance-law integrals z = ∫D(p)dt, w = ∫D(q)dt (ż = D(p), ẇ = D(q)) belong to the drift part of
the split vector field (each piece of the augmented field must appear in exactly one sub-flow), where
they integrate exactly: z += s D(p) (p fixed) and w by Simpson's rule (exact for the quadratic D along
q + σp). So the law residual measures the splitting error alone.

The gradient is reused between sub-steps while q has not moved (between a kick and the next kick
with only damps in between), so Störmer–Verlet costs one gradient per step, Yoshida's composition three.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .models import charges, loss_grad

OP_DAMP, OP_KICK, OP_DRIFT = 0, 1, 2


@njit(cache=True, fastmath=FASTMATH)
def _simpson_add(acc, x, v, s, buf, qa, qb, qc, nq, ints, floats):
    """acc += ∫_0^s D(x + σv) dσ, exact for the quadratic D (Simpson)."""
    charges(x, qa, ints, floats)
    for j in range(x.shape[0]):
        buf[j] = x[j] + 0.5 * s * v[j]
    charges(buf, qb, ints, floats)
    for j in range(x.shape[0]):
        buf[j] = x[j] + s * v[j]
    charges(buf, qc, ints, floats)
    for k in range(nq):
        acc[k] += s / 6.0 * (qa[k] + 4.0 * qb[k] + qc[k])


@njit(cache=True, fastmath=FASTMATH)
def splitting_step(y, h, ops, weights, P, nq, tau, lam, track, grad, grad_valid, buf, qa, qb, qc,
                   ints, floats, data_a, data_b, work):
    """Advance y in place by one step; returns (gradient evaluations, grad_valid after the step).

    ``grad`` holds ∇L(q) + λq when ``grad_valid`` is true on entry (carried between steps by the driver).
    """
    q = y[:P]
    p = y[P:2 * P]
    z = y[2 * P:2 * P + nq]
    w = y[2 * P + nq:2 * P + 2 * nq]
    evals = 0
    for k in range(ops.shape[0]):
        s = h * weights[k]
        op = ops[k]
        if op == OP_DAMP:
            e = np.exp(-s / tau)
            for j in range(P):
                p[j] *= e
        elif op == OP_KICK:
            if not grad_valid:
                loss_grad(q, grad, ints, floats, data_a, data_b, work)
                for j in range(P):
                    grad[j] += lam * q[j]
                evals += 1
                grad_valid = True
            c = s / tau
            for j in range(P):
                p[j] -= c * grad[j]
        else:  # OP_DRIFT
            if track:
                _simpson_add(w, q, p, s, buf, qa, qb, qc, nq, ints, floats)
                charges(p, qa, ints, floats)
                for m in range(nq):
                    z[m] += s * qa[m]
            for j in range(P):
                q[j] += s * p[j]
            grad_valid = False
    return evals, grad_valid
