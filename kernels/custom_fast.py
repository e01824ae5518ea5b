"""A fast path of the driver for a user's model (MODEL_CUSTOM): fixed explicit steps of gradient flow and
gradient descent, one seed at a time, in one compiled loop.

The user's ``loss_grad`` is scalar code for one θ, so its seeds cannot share vector lanes as the built-in
deep linear kernel's do (lanes.py) — unless the user also gives the lane contract's function
(``CustomModel(..., loss_grad_lanes=f)``: ∇L of LANES = 8 seeds per call, θ[p, l] interleaved as in
lanes.py); then ``_advance_custom_lanes`` steps blocks of 8 seeds in that layout (see below). Without it,
what this path removes is the general driver's cost around each gradient:

    - a Runge–Kutta stage sum θ + h Σ_m A[i, m] K[m] in one pass over θ (``explicit.combine`` makes one pass
      per nonzero weight), the step's final sum likewise, with the divergence check in the same pass;
    - no copy of the new state into the old (the two buffers swap);
    - the scratch arrays (stages, the recording's work space) allocated once per call, not once per seed
      and call; the step's weights h·A[i, m] and their nonzero pattern computed once per call.

Everything else is the driver's own code: the vector field (``fields.field``: the user's gradient through
its wrapper's address, then −g − λθ), gradient descent's exact law (``driver._accumulate_gd_law``), the
recording (``record._record``) and what happens to a seed that leaves the divergence bound (status,
time, no records after it). Bit-identity with the general driver: the sums accumulate in the same order
as ``combine`` (y, then + w·K[m] for each nonzero w in increasing m, each a fused multiply-add as
``combine``'s FMA-contracted loop makes it); ``_stage_sum`` is compiled with FMA contraction only (no
reassociation, so the order is kept) and the loop that calls it with no fastmath flags at all (flags
there changed the recording's exp() in the last bit). tests/test_custom_model.py checks every record, θ
and counter against the general driver bit for bit.

What it runs (``custom_fast_applicable`` decides, and declines anything it does not know): a custom model,
an explicit tableau at a fixed step, gradient flow (any weight decay) or gradient descent (its exact law
tracked), deterministic (no minibatches, no noise), no energy record. Set ``NOETHER_SIM_CUSTOM_FAST=0`` to
switch it off (the general driver then runs these calls: the bench's comparison).

The lane loop (a model with a lane function; ``NOETHER_SIM_CUSTOM_LANES=0`` switches it off): one save time
per kernel call. The running seeds at one time are packed 8 to a block (the last block padded by repeating
its last seed, computed and discarded), each stage is one call of the user's lane function on the block,
the field −g − λθ and the stage sums (``lanes_gemm.lane_combine``: ``combine``'s arithmetic) are vector
passes over the block, and gradient descent's law is accumulated per seed from the de-interleaved gradient.
Each advanced seed is then recorded by the driver's ``_record`` (its loss and gradient by the per-seed
``loss_grad``). A block that leaves the divergence bound during the interval is not written back: its
seeds run that interval on the per-seed loop from the same state, which records the divergence as always;
so is a seed not running or at another time. The results agree with the per-seed path to the round-off
of the two user functions' different summation orders (tests/test_custom_lanes.py), bit for bit when the
lane function does the per-seed function's arithmetic (bench/custom_model.py). FSAL tableaux across
several saves of a call are declined (the per-seed loop carries the last stage over a save).
"""

import os

import numpy as np
from numba import carray, cfunc, njit

from . import FASTMATH, STATUS_DIVERGED, STATUS_OK
from .bundles import ChargeRefs, GradientFlowSettings, Method, ModelData, MomentumSettings, Records, SeedState
from .driver import _accumulate_gd_law, _algorithm_law
from .fields import DYN_GF, DYN_MOMENTUM, field
from .custom import USER_SIGNATURE, _call_address, lanes_address
from .lanes_gemm import LANES, lane_combine
from .layout import MODEL_CUSTOM
from .record import SCHEME_ALGORITHM, SCHEME_EXPLICIT, _mark_unrecorded, _record, new_work

_SETTINGS_KNOWN = {
    "dyn", "n_params", "track_law", "track_gd_law", "nesterov", "fsal", "error_order", "max_steps",
    "max_solve_iters", "max_halvings", "h", "rtol", "atol", "weight_decay", "tau", "eta", "beta",
    "divergence_bound", "solve_tol", "energy_slot", "batch_size", "sampling", "temperature", "root_seed",
    "noise_substeps", "split_drift", "batch_factor"}
_KNOWN = {ModelData: set(ModelData._fields), Method: set(Method._fields), SeedState: set(SeedState._fields),
          Records: set(Records._fields), ChargeRefs: set(ChargeRefs._fields), GradientFlowSettings: _SETTINGS_KNOWN}


def custom_fast_applicable(kind, scheme, args) -> bool:
    """Can the custom fast path run this driver call (``entries.integrate``'s arguments)?"""
    if os.environ.get("NOETHER_SIM_CUSTOM_FAST", "1") == "0":
        return False
    return fixed_explicit_gradient_run(kind, scheme, args)


def fixed_explicit_gradient_run(kind, scheme, args) -> bool:
    """Is this driver call a custom model's deterministic gradient flow or descent by an explicit tableau at
    a fixed step, with no energy record (what this path, and noether_sim.custom_lockstep, run)?"""
    if kind != MODEL_CUSTOM or scheme != SCHEME_EXPLICIT or len(args) != 11:
        return False
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    for bundle in (st, model, method, cfg, refs, rec):  # a field added later: decline until it is known here
        if _KNOWN.get(type(bundle)) != set(bundle._fields):
            return False
    if cfg.dyn != DYN_GF or cfg.energy_slot >= 0 or cfg.batch_size != 0 or cfg.temperature != 0.0 or cfg.split_drift:
        return False
    if not (cfg.h > 0.0 and np.isfinite(cfg.h)) or model.points_x.ndim != 1:  # deterministic runs only
        return False
    if st.y.ndim != 2 or st.y.shape[1] != cfg.n_params or st.split.shape[1] != 0:
        return False
    A, b = method.A, method.b
    if A.ndim != 2 or A.shape != (b.shape[0], b.shape[0]) or np.any(np.triu(A) != 0.0):
        return False
    return True


def algorithm_run(kind, scheme, args) -> bool:
    """Is this driver call a custom model's deterministic heavy ball or Nesterov run with no energy record
    (what noether_sim.custom_lockstep also steps in lockstep)?"""
    if kind != MODEL_CUSTOM or scheme != SCHEME_ALGORITHM or len(args) != 11:
        return False
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    for bundle in (st, model, refs, rec):
        if _KNOWN.get(type(bundle)) != set(bundle._fields):
            return False
    if type(cfg) is not MomentumSettings or set(cfg._fields) != _SETTINGS_KNOWN or cfg.dyn != DYN_MOMENTUM:
        return False
    if cfg.energy_slot >= 0 or cfg.batch_size != 0 or cfg.temperature != 0.0 or cfg.split_drift or cfg.track_gd_law:
        return False
    return model.points_x.ndim == 1 and st.split.shape[1] == 0 and refs.iso_off.shape[0] == 1


def custom_fast_integrate(args):
    """Run ``args`` (a driver call) on the fast path: LANES seeds at a time where the model has a lane function
    (``CustomModel(..., loss_grad_lanes=f)``), else one seed at a time."""
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    addr = lanes_address(model.ints) if os.environ.get("NOETHER_SIM_CUSTOM_LANES", "1") != "0" else 0
    # FSAL across the saves of one call: the per-seed loop reuses the last stage over a save, this one
    # (a save per kernel call) would evaluate it again: same numbers, one more gradient counted. Declined.
    if addr == 0 or (cfg.fsal and last - first > 1) or method.b.shape[0] > 16:
        _advance_custom(*args)
        return
    _lanes_integrate(args, addr)


def _lanes_integrate(args, addr):
    """One save time at a time: the seeds advance in blocks of LANES by the user's lane function
    (``_advance_custom_lanes``), each advanced seed is recorded by the driver's own ``_record``
    (``_record_custom_seeds``), and the seeds it hands back (not running, another time, or a block that
    left the divergence bound during the interval) run this interval on the per-seed loop from the
    state they had at its start."""
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    n = seed_hi - seed_lo
    for js in range(first, last):
        redo = np.zeros(n, np.bool_)
        _advance_custom_lanes(seed_lo, seed_hi, st.y, st.t, st.status, st.n_grad, st.n_accepted, st.predicted,
                              save_times[js], addr, model.ints, model.floats, model.data_a, model.data_b, method.A,
                              method.b, cfg.weight_decay, cfg.h, cfg.fsal, cfg.divergence_bound, cfg.track_gd_law,
                              refs.group_off, refs.group_degree, redo)
        _record_custom_seeds(seed_lo, seed_hi, js, st, model, cfg, refs, rec, redo)
        if redo.any():
            idx = np.flatnonzero(redo)
            starts = idx[np.r_[True, np.diff(idx) > 1]]
            ends = idx[np.r_[np.diff(idx) > 1, True]] + 1
            for lo, hi in zip(starts, ends):
                _advance_custom(seed_lo + int(lo), seed_lo + int(hi), st, save_times, js, js + 1, *args[6:])


@njit(cache=True, fastmath=FASTMATH)
def _lane_field(x, out, lam):
    """out = −g − λx from the lane gradient g in ``out`` (``fields._gradient_flow_field``'s loop, its flags)."""
    for j in range(out.shape[0]):
        out[j] = -out[j] - lam * x[j]


@njit(cache=True, nogil=True)
def _advance_custom_lanes(seed_lo, seed_hi, ys, ts, status, n_grads, n_accepted, predicted, t_end, addr, ints, floats,
                          data_a, data_b, A, b, lam, h, fsal, bound, track_gd_law, group_off, group_degree, redo):
    """``_advance_custom``'s steps up to ``t_end`` for LANES seeds at a time, θ interleaved θ[p·LANES + l]
    (kernels/lanes.py's layout), the gradient by the user's lane function at ``addr`` (one call per stage
    for the block), the stage sums ``lanes_gemm.lane_combine`` (``explicit.combine``'s arithmetic). The
    running seeds at the block's time are packed into blocks (a seed not running or at another time is
    flagged in ``redo``); a block whose state leaves the divergence bound is flagged whole, its seeds'
    state, counters and law untouched (the per-seed loop then runs them)."""
    P = ys.shape[1]
    PL = P * LANES
    n_stages = b.shape[0]
    nq = predicted.shape[1]
    y = np.empty(PL)
    new = np.empty(PL)
    stage = np.empty(PL)
    K = np.empty((n_stages, PL))
    g = np.empty(P)
    qg = np.empty(max(nq, 1))
    pred = np.empty((LANES, nq))
    lane_seed = np.empty(LANES, np.int64)
    a0, a1, b0, b1 = data_a.shape[0], data_a.shape[1], data_b.shape[0], data_b.shape[1]
    s = seed_lo
    while s < seed_hi:
        n_in = 0  # pack the next LANES running seeds at the time of the first
        t = 0.0
        while s < seed_hi and n_in < LANES:
            if status[s] != STATUS_OK or (n_in > 0 and ts[s] != t):
                redo[s - seed_lo] = True
            else:
                if n_in == 0:
                    t = ts[s]
                lane_seed[n_in] = s
                n_in += 1
            s += 1
        if n_in == 0:
            break
        for l in range(LANES):  # gather; lanes past n_in repeat its last seed (computed, discarded)
            r = lane_seed[min(l, n_in - 1)]
            for e in range(P):
                y[e * LANES + l] = ys[r, e]
            if track_gd_law:
                for k in range(nq):
                    pred[l, k] = predicted[r, k]
        n_steps_done = 0
        n_grad = 0
        usable = True
        cached = False
        steps_left = int(np.round((t_end - t) / h))
        while steps_left > 0:
            first_stage = 1 if cached else 0
            for i in range(first_stage, n_stages):
                x = y
                if i > 0:
                    lane_combine(y, h, A[i], K, stage, np.inf)
                    x = stage
                ki = K[i]
                _call_address(addr, x.ctypes.data, data_a.ctypes.data, data_b.ctypes.data, ki.ctypes.data, P, a0, a1,
                              b0, b1)
                _lane_field(x, ki, lam)
            n_grad += n_stages - first_stage
            outside = lane_combine(y, h, b, K, new, bound)
            if outside != 0:
                usable = False
                break
            if track_gd_law:  # gradient descent: g = −K[0] − λθ at the step's start, per seed
                for l in range(n_in):
                    for j in range(P):
                        g[j] = -K[0, j * LANES + l] - lam * y[j * LANES + l]
                    _accumulate_gd_law(MODEL_CUSTOM, pred[l], g, qg[:nq], h, lam, ints, floats, group_off,
                                       group_degree)
            y, new = new, y
            t += h
            steps_left -= 1
            n_steps_done += 1
            if fsal:
                for j in range(PL):
                    K[0, j] = K[n_stages - 1, j]
            cached = fsal
        for l in range(n_in):
            r = lane_seed[l]
            if not usable:
                redo[r - seed_lo] = True
                continue
            for e in range(P):  # scatter
                ys[r, e] = y[e * LANES + l]
            if track_gd_law:
                for k in range(nq):
                    predicted[r, k] = pred[l, k]
            ts[r] = t_end
            n_grads[r] += n_grad
            n_accepted[r] += n_steps_done


@njit(cache=True, nogil=True)
def _record_custom_seeds(seed_lo, seed_hi, js, st, model, cfg, refs, rec, redo):
    """Record save ``js`` of every seed of the range not flagged in ``redo``, with the driver's ``_record``
    (its loss and gradient by the per-seed ``loss_grad``: the records of the per-seed path, given the state)."""
    w = _new_work_inline(MODEL_CUSTOM, model, cfg, refs, 1, 1)
    for s in range(seed_lo, seed_hi):
        if not redo[s - seed_lo]:
            _record(MODEL_CUSTOM, False, s, js, st.y[s], st.t[s], model, cfg, refs, rec, w, st.predicted[s])


_new_work_inline = njit(cache=True, inline="always")(new_work.py_func)


@njit(cache=True, fastmath={"contract"})
def _stage_sum(y, hw, hm, n, K, out, bound):
    """out = y + Σ_e hw[e]·K[hm[e]], each term a fused multiply-add in increasing e (the order and
    arithmetic of ``explicit.combine``; FMA contraction only, no reassociation), in one vectorised pass
    for up to 4 terms; returns the number of entries outside ±bound or not finite."""
    P = y.shape[0]
    outside = 0
    if n == 0:
        for j in range(P):
            out[j] = y[j]
    elif n == 1:
        w0, k0 = hw[0], K[hm[0]]
        for j in range(P):
            out[j] = y[j] + w0 * k0[j]
    elif n == 2:
        w0, k0, w1, k1 = hw[0], K[hm[0]], hw[1], K[hm[1]]
        for j in range(P):
            out[j] = (y[j] + w0 * k0[j]) + w1 * k1[j]
    elif n == 3:
        w0, k0, w1, k1, w2, k2 = hw[0], K[hm[0]], hw[1], K[hm[1]], hw[2], K[hm[2]]
        for j in range(P):
            out[j] = ((y[j] + w0 * k0[j]) + w1 * k1[j]) + w2 * k2[j]
    elif n == 4:
        w0, k0, w1, k1, w2, k2, w3, k3 = hw[0], K[hm[0]], hw[1], K[hm[1]], hw[2], K[hm[2]], hw[3], K[hm[3]]
        for j in range(P):
            out[j] = (((y[j] + w0 * k0[j]) + w1 * k1[j]) + w2 * k2[j]) + w3 * k3[j]
    else:  # more terms: term by term, as combine
        for j in range(P):
            out[j] = y[j]
        for e in range(n):
            w, k = hw[e], K[hm[e]]
            for j in range(P):
                out[j] += w * k[j]
    if bound < np.inf:
        for j in range(P):
            outside += 0 if abs(out[j]) <= bound else 1  # NaN compares False
    return outside


@njit(cache=True, nogil=True)
def _advance_custom(seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec):
    """``driver._integrate_seed`` for the runs ``custom_fast_applicable`` accepts, seeds ``seed_lo`` …
    ``seed_hi − 1`` through ``save_times[first:last]``."""
    P = cfg.n_params
    nq = refs.q0.shape[1]
    A, b = method.A, method.b
    n_stages = b.shape[0]
    h = cfg.h
    lam = cfg.weight_decay
    bound = cfg.divergence_bound
    track_gd_law = cfg.track_gd_law
    ints, floats, data_a, data_b = model.ints, model.floats, model.data_a, model.data_b
    group_off, group_degree = refs.group_off, refs.group_degree
    # the nonzero weights h·A[i, m] of each stage (in increasing m) and h·b[m], as combine skips zeros
    hw = np.zeros((n_stages + 1, n_stages))
    hm = np.zeros((n_stages + 1, n_stages), np.int64)
    nnz = np.zeros(n_stages + 1, np.int64)
    for i in range(n_stages + 1):
        for m in range(n_stages):
            w = h * (b[m] if i == n_stages else A[i, m])
            if w != 0.0:
                hw[i, nnz[i]] = w
                hm[i, nnz[i]] = m
                nnz[i] += 1
    K = np.empty((n_stages, P))
    stage = np.empty(P)
    ya = np.empty(P)
    yb = np.empty(P)
    g = np.empty(P)
    qg = np.empty(nq)
    w = _new_work_inline(MODEL_CUSTOM, model, cfg, refs, 1, 1)  # the recording's scratch (and the field's)
    work = w.work
    for s in range(seed_lo, seed_hi):
        if st.status[s] != STATUS_OK:
            _mark_unrecorded(s, first, last, refs, rec)
            continue
        y, new = ya, yb
        for j in range(P):
            y[j] = st.y[s, j]
        pred = st.predicted[s]
        t = st.t[s]
        n_grad = 0
        n_accepted = 0
        cached = False
        for js in range(first, last):
            t_end = save_times[js]
            steps_left = int(np.round((t_end - t) / h))
            while steps_left > 0:
                for i in range(1 if cached else 0, n_stages):
                    x = y
                    if i > 0:
                        _stage_sum(y, hw[i], hm[i], nnz[i], K, stage, np.inf)
                        x = stage
                    field(cfg, MODEL_CUSTOM, x, K[i], nq, ints, floats, data_a, data_b, work)
                n_grad += n_stages - (1 if cached else 0)
                outside = _stage_sum(y, hw[n_stages], hm[n_stages], nnz[n_stages], K, new, bound)
                if track_gd_law:  # gradient descent: g = −K[0] − λθ at the step's start
                    for j in range(P):
                        g[j] = -K[0, j] - lam * y[j]
                    _accumulate_gd_law(MODEL_CUSTOM, pred, g, qg, h, lam, ints, floats, group_off, group_degree)
                if outside != 0:
                    st.status[s] = STATUS_DIVERGED
                    st.t_diverged[s] = t + h
                    break
                y, new = new, y
                t += h
                steps_left -= 1
                n_accepted += 1
                if cfg.fsal:  # the last stage was evaluated at the new y, bit for bit (A[-1] = b)
                    for j in range(P):
                        K[0, j] = K[n_stages - 1, j]
                cached = cfg.fsal
            if st.status[s] != STATUS_OK:
                _mark_unrecorded(s, js, last, refs, rec)
                break
            t = t_end
            _record(MODEL_CUSTOM, False, s, js, y, t, model, cfg, refs, rec, w, pred)
        for j in range(P):
            st.y[s, j] = y[j]
        st.t[s] = t
        st.n_grad[s] += n_grad
        st.n_accepted[s] += n_accepted


# ---- recording for seeds stepped elsewhere (noether_sim.custom_lockstep: a vectorised user function
# called once per stage for a block of seeds): the driver's own ``_record``, with the loss and gradient at
# each seed's state computed beforehand by one vectorised call and handed to ``_record``'s gradient call
# through a "staged" wrapper that returns them ----

def _staged(p_theta, p_a, p_b, p_grad, n_p, a0, a1, b0, b1):
    """A gradient call that returns the loss staged in A[0, 0] and the gradient staged in B[0, :P]."""
    b = carray(p_b, (b0, b1))
    g = carray(p_grad, (n_p,))
    for j in range(n_p):
        g[j] = b[0, j]
    return carray(p_a, (a0, a1))[0, 0]


_STAGED = []


def staged_address() -> int:
    """The address of the staged gradient wrapper (compiled once per process, cached on disk)."""
    if not _STAGED:
        _STAGED.append(cfunc(USER_SIGNATURE, cache=True)(_staged))
    return _STAGED[0].address


@njit(cache=True)
def record_staged(lo, hi, js, algorithm, ys, ts, live, losses, grads, staged, st, model, cfg, refs, rec):
    """``record._record`` of save ``js`` for every live seed s = lo + i (``live[i]``) at the state ys[i], t = ts[i]
    (``algorithm``: heavy ball / Nesterov's state [θ_k, θ_{k−1}, a]),
    its loss and gradient there being losses[i] and grads[i] (``staged``: the descriptor with the staged
    wrapper's address)."""
    P = cfg.n_params
    w = _new_work_inline(MODEL_CUSTOM, model, cfg, refs, 1, 1)
    a = np.empty((1, 1))
    b = np.empty((1, P))
    for i in range(hi - lo):
        if not live[i]:
            continue
        a[0, 0] = losses[i]
        for j in range(P):
            b[0, j] = grads[i, j]
        md = ModelData(staged, model.floats, a, b, model.points_x, model.points_y)
        _record(MODEL_CUSTOM, algorithm, lo + i, js, ys[i], ts[i], md, cfg, refs, rec, w, st.predicted[lo + i])


@njit(cache=True)
def accumulate_gd_law_rows(lo, live, pred, G, h, lam, ints, floats, group_off, group_degree):
    """Gradient descent's exact law (``driver._accumulate_gd_law``) for every live seed lo + i with its
    step's gradient G[i] (g = ∇L + λθ, as the driver forms it)."""
    qg = np.empty(pred.shape[1])
    for i in range(live.shape[0]):
        if live[i]:
            _accumulate_gd_law(MODEL_CUSTOM, pred[lo + i], G[i], qg, h, lam, ints, floats, group_off, group_degree)


@njit(cache=True)
def mark_unrecorded_rows(seeds, first, last, refs, rec):
    """``record._mark_unrecorded`` for each seed of ``seeds``."""
    for s in seeds:
        _mark_unrecorded(s, first, last, refs, rec)


@njit(cache=True)
def algorithm_law_rows(lo, live, ys, news, cfg, group_off, group_degree, ints, floats):
    """Heavy ball's / Nesterov's discrete law (``driver._algorithm_law``) for every live row i: the
    accumulator of news[i] = [θ_{k+1}, θ_k, a] advanced from ys[i] = [θ_k, θ_{k−1}, a]."""
    P = cfg.n_params
    nq = group_off[group_off.shape[0] - 1]
    tmp = np.empty(P)
    q_k, q_prev, k_k, k_next = np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq)
    for i in range(live.shape[0]):
        if live[i]:
            _algorithm_law(MODEL_CUSTOM, ys[i], news[i], cfg, group_off, group_degree, ints, floats, tmp, q_k, q_prev,
                           k_k, k_next)
