"""The ensemble driver: seeds integrated independently between save times, a range of seeds per call.

``integrate_saves`` advances every live seed from its current time through save times
``save_times[first:last]`` and records, at each, the loss and per charge group:

    drift      |q(t) − q_law(t)|_F     q_law = e^{−dλt} q(0), the flow's exact law (d = group degree)
    drift_max  max_k |q_k(t) − q_law,k(t)|
    predicted  |q_pred(t) − q_law(t)|_F  gradient descent only: the closed-form discretisation part
    residual   |q(t) − q_pred(t)|_F      gradient descent only: what the exact law does not explain
    scale      size of the terms that cancel in q (the round-off reference)

q_pred is gradient descent's exact one-step law (theory.md §3) accumulated step by step:
q_pred ← (1 − hλ)^d q_pred + h² q(g) (d = 2) or (1 − hλ) q_pred − h q(g) (d = 1), with g = ∇L
(the loss gradient alone) at the step's start, which explicit Euler already evaluates as K[0].

All per-seed state lives in caller-owned arrays, so calls can be chained chunk by chunk, and
disjoint seed ranges can run concurrently on threads (the kernels release the GIL).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .layout import MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE, MODEL_MLP

from . import FASTMATH, STATUS_DIVERGED, STATUS_MAX_STEPS, STATUS_OK, STATUS_STEP_UNDERFLOW
from .explicit import combine, error_norm, initial_step, rk_stages, within_bound
from .models import charge_scales, charges, loss_grad, work_size

# method_ints fields
MI_ADAPTIVE, MI_FSAL, MI_ERROR_ORDER, MI_MAX_STEPS, MI_TRACK_GD_LAW = 0, 1, 2, 3, 4  # MI_ADAPTIVE: see the entries
# method_floats fields
MF_STEP, MF_RTOL, MF_ATOL, MF_WEIGHT_DECAY, MF_DIVERGENCE_BOUND = 0, 1, 2, 3, 4


@njit(cache=True, fastmath=FASTMATH)
def _accumulate_gd_law(kind, pred, g, qg, h, weight_decay, ints, floats, group_off, group_degree):
    charges(kind, g, qg, ints, floats)
    # (1 − hλ)^d q = q − c_d q with c_1 = hλ, c_2 = hλ(2 − hλ): computing the small decrement c_d
    # rather than the factor fl(1 − hλ) avoids a systematic ε/2 per step, which over k steps would
    # grow like k·ε (linearly) instead of round-off's √k·ε.
    c1 = h * weight_decay
    c2 = c1 * (2.0 - c1)
    for grp in range(group_degree.shape[0]):
        for k in range(group_off[grp], group_off[grp + 1]):
            if group_degree[grp] == 2:
                pred[k] = (pred[k] - c2 * pred[k]) + h * h * qg[k]
            else:
                pred[k] = (pred[k] - c1 * pred[k]) - h * qg[k]


@njit(cache=True, fastmath=FASTMATH)
def _record(kind, s, js, theta, t, ints, floats, data_a, data_b, work, g, q, scales, q0, pred,
            track_law, weight_decay, group_off, group_degree, watch_slot,
            out_loss, out_drift, out_drift_max, out_pred, out_resid, out_scale, q_watch, pred_watch):
    out_loss[s, js] = loss_grad(kind, theta, g, ints, floats, data_a, data_b, work)
    charges(kind, theta, q, ints, floats)
    charge_scales(kind, theta, scales, ints, floats)
    for grp in range(group_degree.shape[0]):
        decay = np.exp(-group_degree[grp] * weight_decay * t)
        drift2 = 0.0
        dmax = 0.0
        pred2 = 0.0
        res2 = 0.0
        for k in range(group_off[grp], group_off[grp + 1]):
            law = decay * q0[s, k]
            d = q[k] - law
            drift2 += d * d
            dmax = max(dmax, abs(d))
            if track_law:
                p = pred[k] - law
                pred2 += p * p
                r = q[k] - pred[k]
                res2 += r * r
        out_drift[s, js, grp] = np.sqrt(drift2)
        out_drift_max[s, js, grp] = dmax
        out_pred[s, js, grp] = np.sqrt(pred2) if track_law else np.nan
        out_resid[s, js, grp] = np.sqrt(res2) if track_law else np.nan
        out_scale[s, js, grp] = scales[grp]
    slot = watch_slot[s]
    if slot >= 0:
        for k in range(q.shape[0]):
            q_watch[slot, js, k] = q[k]
            pred_watch[slot, js, k] = pred[k] if track_law else np.nan


# Step control exists only in adaptive specialisations: these overloads select on the literal
# ``adaptive`` while typing, so a fixed-step run never compiles the starting-step estimate (which
# evaluates the gradient: one more inlined copy of the gradient kernel) or the error norm. Measured on
# the reference run, with the input-side chain order also left out: cold start 25.2 s -> 17.3 s.

def _first_step(kind, adaptive, theta, f0, order, rtol, atol, t_span, ints, floats, data_a, data_b, work,
                weight_decay, trial, f1):
    """Adaptive: Hairer's starting step (explicit.initial_step). Fixed steps never call it."""


def _step_error(adaptive, theta, new, h, b, b_err, K, rtol, atol):
    """Adaptive: the embedded pair's scaled error norm. Fixed steps: 0 (every step is accepted)."""


@overload(_first_step, prefer_literal=True, jit_options={"cache": True})
def _ol_first_step(kind, adaptive, theta, f0, order, rtol, atol, t_span, ints, floats, data_a, data_b, work,
                   weight_decay, trial, f1):
    if isinstance(adaptive, types.BooleanLiteral) and not adaptive.literal_value:
        return (lambda kind, adaptive, theta, f0, order, rtol, atol, t_span, ints, floats, data_a, data_b, work,
                weight_decay, trial, f1: 0.0)
    return (lambda kind, adaptive, theta, f0, order, rtol, atol, t_span, ints, floats, data_a, data_b, work,
            weight_decay, trial, f1: initial_step(kind, theta, f0, order, rtol, atol, t_span, ints, floats,
                                                 data_a, data_b, work, weight_decay, trial, f1))


@overload(_step_error, prefer_literal=True, jit_options={"cache": True})
def _ol_step_error(adaptive, theta, new, h, b, b_err, K, rtol, atol):
    if isinstance(adaptive, types.BooleanLiteral) and not adaptive.literal_value:
        return lambda adaptive, theta, new, h, b, b_err, K, rtol, atol: 0.0
    return lambda adaptive, theta, new, h, b, b_err, K, rtol, atol: error_norm(theta, new, h, b, b_err, K, rtol, atol)


@njit(cache=True)
def _mark_unrecorded(s, first, last, out_loss, out_drift, out_drift_max, out_pred, out_resid,
                     out_scale, watch_slot, q_watch, pred_watch):
    for js in range(first, last):
        out_loss[s, js] = np.nan
        out_drift[s, js, :] = np.nan
        out_drift_max[s, js, :] = np.nan
        out_pred[s, js, :] = np.nan
        out_resid[s, js, :] = np.nan
        out_scale[s, js, :] = np.nan
        if watch_slot[s] >= 0:
            q_watch[watch_slot[s], js, :] = np.nan
            pred_watch[watch_slot[s], js, :] = np.nan


@njit(cache=True)
def _integrate_seed(kind, adaptive, s, theta, t_now, h_next, pred, q0, status, t_diverged, n_grad,
                    n_accepted, n_rejected,
                    save_times, first, last,
                    ints, floats, data_a, data_b,
                    A, b, b_err, method_ints, method_floats,
                    group_off, group_degree, watch_slot,
                    out_loss, out_drift, out_drift_max, out_pred, out_resid, out_scale,
                    q_watch, pred_watch):
    n_seeds, P = theta.shape
    n_stages = b.shape[0]
    nq = q0.shape[1]
    n_groups = group_degree.shape[0]
    fsal = method_ints[MI_FSAL] != 0
    err_order = method_ints[MI_ERROR_ORDER]
    max_steps = method_ints[MI_MAX_STEPS]
    track_law = method_ints[MI_TRACK_GD_LAW] != 0
    h_fixed = method_floats[MF_STEP]
    rtol = method_floats[MF_RTOL]
    atol = method_floats[MF_ATOL]
    lam = method_floats[MF_WEIGHT_DECAY]
    bound = method_floats[MF_DIVERGENCE_BOUND]
    wsize = work_size(kind, ints, data_a)

    if status[s] != STATUS_OK:
        _mark_unrecorded(s, first, last, out_loss, out_drift, out_drift_max, out_pred, out_resid,
                         out_scale, watch_slot, q_watch, pred_watch)
        return
    th = theta[s].copy()
    K = np.empty((n_stages, P))
    stage = np.empty(P)
    new = np.empty(P)
    g = np.empty(P)
    work = np.empty(wsize)
    q = np.empty(nq)
    qg = np.empty(nq)
    scales = np.empty(n_groups)
    sp = pred[s]
    t = t_now[s]
    h = h_next[s]
    k0_valid = False

    for js in range(first, last):
        t_end = save_times[js]
        if adaptive and h <= 0.0 and t_end > t:  # first step of this seed: choose it
            n_grad[s] += 2
            h = _first_step(kind, adaptive, th, K[0], err_order, rtol, atol, t_end - t, ints, floats,
                            data_a, data_b, work, lam, stage, new)
            k0_valid = True
        # One step loop for fixed and adaptive steps: a single call site of the stepper, so the
        # gradient kernel is inlined (and optimised by LLVM) once — compile time.
        steps_left = 0 if adaptive else int(np.round((t_end - t) / h_fixed))
        while (t < t_end) if adaptive else (steps_left > 0):
            h_try = h_fixed
            if adaptive:
                if n_accepted[s] + n_rejected[s] >= max_steps:
                    status[s] = STATUS_MAX_STEPS
                    break
                h_try = min(h, t_end - t)
                if h_try < 1e-14 * max(1.0, abs(t)):
                    status[s] = STATUS_STEP_UNDERFLOW
                    break
            first_stage = 1 if k0_valid else 0
            rk_stages(kind, th, h_try, A, K, stage, first_stage, ints, floats, data_a, data_b, work, lam)
            n_grad[s] += n_stages - first_stage
            if track_law:  # gradient descent: K[0] = −∇L − λθ at the step's start
                for j in range(P):
                    g[j] = -K[0, j] - lam * th[j]
                _accumulate_gd_law(kind, sp, g, qg, h_try, lam, ints, floats, group_off, group_degree)
            combine(th, h_try, b, K, new)
            err = _step_error(adaptive, th, new, h_try, b, b_err, K, rtol, atol)
            if err <= 1.0:
                if not within_bound(new, bound):
                    status[s] = STATUS_DIVERGED
                    t_diverged[s] = t + h_try
                    break
                th[:] = new
                if adaptive:
                    t = t_end if h_try == t_end - t else t + h_try
                else:
                    t += h_fixed
                    steps_left -= 1
                n_accepted[s] += 1
                if fsal:  # the last stage was evaluated at the new θ, bit for bit (A[-1] = b)
                    K[0, :] = K[n_stages - 1]
                k0_valid = fsal
                factor = 5.0 if err == 0.0 else min(5.0, 0.9 * err ** (-1.0 / (err_order + 1)))
            else:
                n_rejected[s] += 1
                k0_valid = True  # θ unchanged, so K[0] = f(θ) is still good
                factor = max(0.2, 0.9 * err ** (-1.0 / (err_order + 1))) if np.isfinite(err) else 0.2
            if adaptive:
                h = h_try * factor
        if status[s] != STATUS_OK:
            _mark_unrecorded(s, js, last, out_loss, out_drift, out_drift_max, out_pred, out_resid,
                             out_scale, watch_slot, q_watch, pred_watch)
            break
        t = t_end
        _record(kind, s, js, th, t, ints, floats, data_a, data_b, work, g, q, scales, q0, sp,
                track_law, lam, group_off, group_degree, watch_slot,
                out_loss, out_drift, out_drift_max, out_pred, out_resid, out_scale, q_watch, pred_watch)

    theta[s, :] = th
    t_now[s] = t
    h_next[s] = h


@njit(cache=True, nogil=True, inline="always")
def _integrate_saves(kind, adaptive, args):  # inlined into each entry (saves a compile level)
    """Advance seeds seed_lo … seed_hi − 1 through save_times[first:last]; see the module docstring.

    Serial and GIL-free: the API runs disjoint seed ranges on a thread pool. (A numba ``prange``
    here measured twice the compile time — 27 s against 13 s of CPU for the reference run — for
    the same run time, and compile time is part of performance.)
    ``kind`` and ``adaptive`` are compile-time constants (see the entries below): one specialisation per
    model kind and step control, each compiling only the code it runs.
    """
    (seed_lo, seed_hi, theta, t_now, h_next, pred, q0, status, t_diverged, n_grad, n_accepted, n_rejected,
     save_times, first, last, ints, floats, data_a, data_b, A, b, b_err, method_ints, method_floats,
     group_off, group_degree, watch_slot, out_loss, out_drift, out_drift_max, out_pred, out_resid, out_scale,
     q_watch, pred_watch) = args
    for s in range(seed_lo, seed_hi):
        _integrate_seed(kind, adaptive, s, theta, t_now, h_next, pred, q0, status, t_diverged, n_grad,
                        n_accepted, n_rejected,
                        save_times, first, last,
                        ints, floats, data_a, data_b,
                        A, b, b_err, method_ints, method_floats,
                        group_off, group_degree, watch_slot,
                        out_loss, out_drift, out_drift_max, out_pred, out_resid, out_scale,
                        q_watch, pred_watch)


@njit(cache=True, inline="always")
def _ensemble_charges(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """q(θ) for every row: initial charges, final charges."""
    (theta, ints, floats, nq) = args
    out = np.empty((theta.shape[0], nq))
    for s in range(theta.shape[0]):
        charges(kind, theta[s], out[s], ints, floats)
    return out


@njit(cache=True, inline="always")
def _ensemble_loss_grad(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """Loss and gradient of every row (used by tests and baselines)."""
    (theta, ints, floats, data_a, data_b) = args
    n_seeds, P = theta.shape
    loss = np.empty(n_seeds)
    grad = np.empty((n_seeds, P))
    wsize = work_size(kind, ints, data_a)
    for s in range(n_seeds):
        work = np.empty(wsize)
        loss[s] = loss_grad(kind, theta[s], grad[s], ints, floats, data_a, data_b, work)
    return loss, grad


# ---- entries: one compiled function per model kind, where the kind is a constant (models.py) ----

@njit(cache=True, nogil=True)
def _integrate_saves_deep_linear(*args):
    return _integrate_saves(MODEL_DEEP_LINEAR, False, args)


@njit(cache=True, nogil=True)
def _integrate_saves_deep_linear_input_side(*args):
    return _integrate_saves(MODEL_DEEP_LINEAR_INPUT_SIDE, False, args)


@njit(cache=True, nogil=True)
def _integrate_saves_mlp(*args):
    return _integrate_saves(MODEL_MLP, False, args)


@njit(cache=True, nogil=True)
def _integrate_saves_adaptive_deep_linear(*args):
    return _integrate_saves(MODEL_DEEP_LINEAR, True, args)


@njit(cache=True, nogil=True)
def _integrate_saves_adaptive_deep_linear_input_side(*args):
    return _integrate_saves(MODEL_DEEP_LINEAR_INPUT_SIDE, True, args)


@njit(cache=True, nogil=True)
def _integrate_saves_adaptive_mlp(*args):
    return _integrate_saves(MODEL_MLP, True, args)


_INTEGRATE_SAVES = {
    (False, MODEL_DEEP_LINEAR): _integrate_saves_deep_linear,
    (False, MODEL_DEEP_LINEAR_INPUT_SIDE): _integrate_saves_deep_linear_input_side,
    (False, MODEL_MLP): _integrate_saves_mlp,
    (True, MODEL_DEEP_LINEAR): _integrate_saves_adaptive_deep_linear,
    (True, MODEL_DEEP_LINEAR_INPUT_SIDE): _integrate_saves_adaptive_deep_linear_input_side,
    (True, MODEL_MLP): _integrate_saves_adaptive_mlp,
}


def integrate_saves(kind, adaptive, *args):
    """Run ``_integrate_saves`` compiled for model ``kind`` and (fixed or adaptive) step control."""
    return _INTEGRATE_SAVES[(bool(adaptive), kind)](*args)


@njit(cache=True)
def _ensemble_charges_deep_linear(*args):
    return _ensemble_charges(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_charges_deep_linear_input_side(*args):
    return _ensemble_charges(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_charges_mlp(*args):
    return _ensemble_charges(MODEL_MLP, args)


_ENSEMBLE_CHARGES = {
    MODEL_DEEP_LINEAR: _ensemble_charges_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_charges_deep_linear_input_side,
    MODEL_MLP: _ensemble_charges_mlp,
}


def ensemble_charges(kind, *args):
    """Run ``_ensemble_charges`` compiled for model ``kind`` (a plain int from the Python side)."""
    return _ENSEMBLE_CHARGES[kind](*args)


@njit(cache=True)
def _ensemble_loss_grad_deep_linear(*args):
    return _ensemble_loss_grad(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_loss_grad_deep_linear_input_side(*args):
    return _ensemble_loss_grad(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_loss_grad_mlp(*args):
    return _ensemble_loss_grad(MODEL_MLP, args)


_ENSEMBLE_LOSS_GRAD = {
    MODEL_DEEP_LINEAR: _ensemble_loss_grad_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_loss_grad_deep_linear_input_side,
    MODEL_MLP: _ensemble_loss_grad_mlp,
}


def ensemble_loss_grad(kind, *args):
    """Run ``_ensemble_loss_grad`` compiled for model ``kind`` (a plain int from the Python side)."""
    return _ENSEMBLE_LOSS_GRAD[kind](*args)
