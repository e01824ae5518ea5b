"""Ensemble driver for structure-preserving integration (issue 5): implicit Runge–Kutta on gradient
flow, and explicit RK, implicit RK, splittings, heavy ball and Nesterov on momentum flow.

Same contract as ``driver.py``: a GIL-free loop over a range of seeds, every seed owns its state, status and counters
(caller-owned arrays), fixed steps landing exactly on the save times, one chunk of save times per call.

Recorded at each save time, per charge group (balance groups D_i first, then isometric groups J_i):

    drift      D: |D(t) − D_law(t)|, D_law = e^{−2λt} D(0) under gradient flow, D(0) under momentum
                  (momentum breaks D: this is its change);  J: |J(t) − e^{−t/τ} J(0)|
    drift_max  largest entry of the same difference
    law        D under momentum: |I(t) − I(0)|, I = τḊ + D + 2λ∫D(q) − 2τ∫D(p) (the integrated exact
               law τD̈ + Ḋ + 2λD = 2τD(p)); NaN for J, for gradient flow and for the discrete algorithms
    scale      size of the terms that cancel (round-off reference)

A fixed step whose stage equations do not converge is retried as 2, 4, … 2^max_halvings substeps from
the same start (so it still lands on the save times); if none converges the seed stops with
STATUS_SOLVE_FAILED and its remaining records are NaN.
"""

import numpy as np
from numba import njit

from .layout import MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE, MODEL_MLP

from . import STATUS_DIVERGED, STATUS_OK, STATUS_SOLVE_FAILED
from .explicit import within_bound
from .implicit import implicit_step
from .models import (charge_scales, charges, isometric_charges, isometric_scales, loss_grad, n_isometric,
                     work_size)
from .momentum import (DYN_GF, DYN_MOMENTUM, SCHEME_EXPLICIT, SCHEME_HEAVY_BALL, SCHEME_IMPLICIT,
                       SCHEME_NESTEROV, SCHEME_SPLITTING, explicit_system_step, momentum_algorithm_step)
from .splitting import splitting_step

# method_ints fields
SI_SCHEME, SI_DYN, SI_TRACK_LAW, SI_MAX_ITER, SI_MAX_HALVINGS, SI_N_PARAMS = 0, 1, 2, 3, 4, 5
# method_floats fields
SF_STEP, SF_TAU, SF_WEIGHT_DECAY, SF_BOUND, SF_SOLVE_TOL, SF_ETA, SF_BETA = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True)
def state_size(dyn, scheme, P, nq, track):
    if dyn == DYN_GF:
        return P
    if scheme == SCHEME_HEAVY_BALL or scheme == SCHEME_NESTEROV:
        return 2 * P
    return 2 * P + (2 * nq if track else 0)


@njit(cache=True)
def _velocity(y, scheme, P, h, pv):
    if scheme == SCHEME_HEAVY_BALL or scheme == SCHEME_NESTEROV:
        for j in range(P):
            pv[j] = (y[j] - y[P + j]) / h
    else:
        for j in range(P):
            pv[j] = y[P + j]


@njit(cache=True)
def state_charges(kind, y, dyn, scheme, P, nq, h, tau, lam, track, ints, floats, qv, jv, iv, pv, tmp, qa, qb):
    """D(q) into qv; for momentum also J(q, p) into jv and the law invariant I into iv (NaN if untracked)."""
    charges(kind, y[:P], qv, ints, floats)
    if dyn == DYN_GF:
        return
    _velocity(y, scheme, P, h, pv)
    isometric_charges(kind, y[:P], pv, jv, ints, floats)
    if track and scheme != SCHEME_HEAVY_BALL and scheme != SCHEME_NESTEROV:
        for j in range(P):
            tmp[j] = y[j] + pv[j]
        charges(kind, tmp, qa, ints, floats)
        for j in range(P):
            tmp[j] = y[j] - pv[j]
        charges(kind, tmp, qb, ints, floats)
        for k in range(nq):
            ddot = 0.5 * (qa[k] - qb[k])
            iv[k] = tau * ddot + qv[k] + 2.0 * lam * y[2 * P + nq + k] - 2.0 * tau * y[2 * P + k]
    else:
        for k in range(nq):
            iv[k] = np.nan


@njit(cache=True, inline="always")
def _ensemble_state_charges(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """(D, J, I) of every seed's state (initial and final values)."""
    (y, dyn, scheme, P, nq, h, tau, lam, track, ints, floats) = args
    n = y.shape[0]
    nj = n_isometric(kind, ints)
    D = np.empty((n, nq))
    J = np.empty((n, nj))
    I = np.empty((n, nq))
    for s in range(n):
        pv = np.empty(P)
        tmp = np.empty(P)
        qa = np.empty(nq)
        qb = np.empty(nq)
        state_charges(kind, y[s], dyn, scheme, P, nq, h, tau, lam, track, ints, floats, D[s], J[s], I[s],
                      pv, tmp, qa, qb)
    return D, J, I


@njit(cache=True)
def _record(kind, s, js, y, t, dyn, scheme, P, nq, nj, h, tau, lam, track, ints, floats, data_a, data_b, work,
            g, pv, tmp, qv, jv, iv, qa, qb, scales, jscales, q0, j0, i0, group_off, group_degree, iso_off,
            watch_slot, out_loss, out_drift, out_drift_max, out_law, out_scale, q_watch):
    out_loss[s, js] = loss_grad(kind, y[:P], g, ints, floats, data_a, data_b, work)
    state_charges(kind, y, dyn, scheme, P, nq, h, tau, lam, track, ints, floats, qv, jv, iv, pv, tmp, qa, qb)
    charge_scales(kind, y[:P], scales, ints, floats)
    n_groups = group_degree.shape[0]
    momentum = dyn == DYN_MOMENTUM
    for grp in range(n_groups):
        decay = 1.0 if momentum else np.exp(-group_degree[grp] * lam * t)
        d2 = 0.0
        dmax = 0.0
        r2 = 0.0
        for k in range(group_off[grp], group_off[grp + 1]):
            d = qv[k] - decay * q0[s, k]
            d2 += d * d
            dmax = max(dmax, abs(d))
            if momentum:
                r = iv[k] - i0[s, k]
                r2 += r * r
        out_drift[s, js, grp] = np.sqrt(d2)
        out_drift_max[s, js, grp] = dmax
        out_law[s, js, grp] = np.sqrt(r2) if momentum else np.nan  # NaN propagates when untracked
        out_scale[s, js, grp] = scales[grp]
    if momentum:
        isometric_scales(kind, y[:P], pv, jscales, ints, floats)
        decay = np.exp(-t / tau)
        for grp in range(iso_off.shape[0] - 1):
            d2 = 0.0
            dmax = 0.0
            for k in range(iso_off[grp], iso_off[grp + 1]):
                d = jv[k] - decay * j0[s, k]
                d2 += d * d
                dmax = max(dmax, abs(d))
            out_drift[s, js, n_groups + grp] = np.sqrt(d2)
            out_drift_max[s, js, n_groups + grp] = dmax
            out_law[s, js, n_groups + grp] = np.nan
            out_scale[s, js, n_groups + grp] = jscales[grp]
    slot = watch_slot[s]
    if slot >= 0:
        for k in range(nq):
            q_watch[slot, js, k] = qv[k]
        if momentum:
            for k in range(nj):
                q_watch[slot, js, nq + k] = jv[k]


@njit(cache=True)
def _mark_unrecorded(s, first, last, out_loss, out_drift, out_drift_max, out_law, out_scale, watch_slot, q_watch):
    for js in range(first, last):
        out_loss[s, js] = np.nan
        out_drift[s, js, :] = np.nan
        out_drift_max[s, js, :] = np.nan
        out_law[s, js, :] = np.nan
        out_scale[s, js, :] = np.nan
        if watch_slot[s] >= 0:
            q_watch[watch_slot[s], js, :] = np.nan


@njit(cache=True, nogil=True, inline="always")
def _integrate_structured(kind, args):  # inlined into each per-kind entry (saves a compile level)
    (seed_lo, seed_hi, y, t_now, status, t_diverged, n_grad, n_steps_done, n_iters, max_iters, max_resid,
     n_retried, save_times, first, last, ints, floats, data_a, data_b, A, b, ops, weights, method_ints,
     method_floats, group_off, group_degree, iso_off, q0, j0, i0, watch_slot, out_loss, out_drift,
     out_drift_max, out_law, out_scale, q_watch) = args
    n_seeds, n_state = y.shape
    scheme = method_ints[SI_SCHEME]
    dyn = method_ints[SI_DYN]
    track = method_ints[SI_TRACK_LAW] != 0
    max_iter = method_ints[SI_MAX_ITER]
    max_halvings = method_ints[SI_MAX_HALVINGS]
    P = method_ints[SI_N_PARAMS]
    h = method_floats[SF_STEP]
    tau = method_floats[SF_TAU]
    lam = method_floats[SF_WEIGHT_DECAY]
    bound = method_floats[SF_BOUND]
    tol = method_floats[SF_SOLVE_TOL]
    eta = method_floats[SF_ETA]
    beta = method_floats[SF_BETA]
    nq = q0.shape[1]
    nj = j0.shape[1]
    n_stages = b.shape[0]
    n_groups = group_degree.shape[0]
    n_iso_groups = iso_off.shape[0] - 1
    wsize = work_size(kind, ints, data_a)

    for s in range(seed_lo, seed_hi):  # the API runs disjoint seed ranges on threads (see driver.py)
        if status[s] != STATUS_OK:
            _mark_unrecorded(s, first, last, out_loss, out_drift, out_drift_max, out_law, out_scale,
                             watch_slot, q_watch)
            continue
        ys = y[s].copy()
        new = np.empty(n_state)
        start = np.empty(n_state)
        K = np.empty((n_stages, n_state))
        K_new = np.empty((n_stages, n_state))
        stage = np.empty(n_state)
        work = np.empty(wsize)
        g = np.empty(P)
        grad = np.empty(P)
        look = np.empty(P)
        pv = np.empty(P)
        tmp = np.empty(P)
        qv = np.empty(nq)
        jv = np.empty(nj)
        iv = np.empty(nq)
        qa = np.empty(nq)
        qb = np.empty(nq)
        qc = np.empty(nq)
        scales = np.empty(n_groups)
        jscales = np.empty(max(n_iso_groups, 1))
        result = np.empty(3)
        grad_valid = False
        t = t_now[s]

        for js in range(first, last):
            t_end = save_times[js]
            n_steps = int(np.round((t_end - t) / h))
            for _ in range(n_steps):
                if scheme == SCHEME_EXPLICIT:
                    explicit_system_step(kind, ys, h, A, b, K, stage, new, dyn, P, nq, tau, lam, track,
                                         ints, floats, data_a, data_b, work)
                    n_grad[s] += n_stages
                elif scheme == SCHEME_IMPLICIT:
                    # one step of h, else 2, 4, … substeps of h/n from the same start
                    n_sub = 1
                    solved = False
                    while n_sub <= (1 << max_halvings):
                        for j in range(n_state):
                            start[j] = ys[j]
                        solved = True
                        for _sub in range(n_sub):
                            ok = implicit_step(kind, start, h / n_sub, A, b, K, K_new, stage, new, tol, max_iter,
                                               dyn, P, nq, tau, lam, track, ints, floats, data_a, data_b,
                                               work, result)
                            n_grad[s] += int(result[2])
                            n_iters[s] += int(result[0])
                            if not ok:
                                solved = False
                                break
                            max_iters[s] = max(max_iters[s], int(result[0]))
                            max_resid[s] = max(max_resid[s], result[1])
                            for j in range(n_state):
                                start[j] = new[j]
                        if solved:
                            break
                        n_sub *= 2
                    if not solved:
                        status[s] = STATUS_SOLVE_FAILED
                        max_resid[s] = max(max_resid[s], result[1])
                        break
                    if n_sub > 1:
                        n_retried[s] += 1
                elif scheme == SCHEME_SPLITTING:
                    for j in range(n_state):
                        new[j] = ys[j]
                    evals, grad_valid = splitting_step(kind, new, h, ops, weights, P, nq, tau, lam, track, grad,
                                                       grad_valid, tmp, qa, qb, qc,
                                                       ints, floats, data_a, data_b, work)
                    n_grad[s] += evals
                else:
                    for j in range(n_state):
                        new[j] = ys[j]
                    momentum_algorithm_step(kind, new, eta, beta, lam, scheme == SCHEME_NESTEROV, P, grad, look,
                                            ints, floats, data_a, data_b, work)
                    n_grad[s] += 1
                if not within_bound(new, bound):
                    status[s] = STATUS_DIVERGED
                    t_diverged[s] = t + h
                    break
                for j in range(n_state):
                    ys[j] = new[j]
                t += h
                n_steps_done[s] += 1
            if status[s] != STATUS_OK:
                _mark_unrecorded(s, js, last, out_loss, out_drift, out_drift_max, out_law, out_scale,
                                 watch_slot, q_watch)
                break
            t = t_end
            _record(kind, s, js, ys, t, dyn, scheme, P, nq, nj, h, tau, lam, track, ints, floats, data_a, data_b,
                    work, g, pv, tmp, qv, jv, iv, qa, qb, scales, jscales, q0, j0, i0, group_off,
                    group_degree, iso_off, watch_slot, out_loss, out_drift, out_drift_max, out_law,
                    out_scale, q_watch)

        y[s, :] = ys
        t_now[s] = t


# ---- entries: one compiled function per model kind, where the kind is a constant (models.py) ----

@njit(cache=True)
def _ensemble_state_charges_deep_linear(*args):
    return _ensemble_state_charges(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_state_charges_deep_linear_input_side(*args):
    return _ensemble_state_charges(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_state_charges_mlp(*args):
    return _ensemble_state_charges(MODEL_MLP, args)


_ENSEMBLE_STATE_CHARGES = {
    MODEL_DEEP_LINEAR: _ensemble_state_charges_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_state_charges_deep_linear_input_side,
    MODEL_MLP: _ensemble_state_charges_mlp,
}


def ensemble_state_charges(kind, *args):
    """Run ``_ensemble_state_charges`` compiled for model ``kind`` (a plain int from the Python side)."""
    return _ENSEMBLE_STATE_CHARGES[kind](*args)


@njit(cache=True, nogil=True)
def _integrate_structured_deep_linear(*args):
    return _integrate_structured(MODEL_DEEP_LINEAR, args)


@njit(cache=True, nogil=True)
def _integrate_structured_deep_linear_input_side(*args):
    return _integrate_structured(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True, nogil=True)
def _integrate_structured_mlp(*args):
    return _integrate_structured(MODEL_MLP, args)


_INTEGRATE_STRUCTURED = {
    MODEL_DEEP_LINEAR: _integrate_structured_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _integrate_structured_deep_linear_input_side,
    MODEL_MLP: _integrate_structured_mlp,
}


def integrate_structured(kind, *args):
    """Run ``_integrate_structured`` compiled for model ``kind`` (a plain int from the Python side)."""
    return _INTEGRATE_STRUCTURED[kind](*args)
