"""A seed-interleaved fast path of the driver: blocks of ``LANES`` seeds, one seed per vector lane.

Inside a block every seed's state is stored interleaved, ``[param][lane]`` (element e of seed l at
``e·LANES + l``), so each small matrix product of the gradient becomes an elementwise vector FMA
across the block's seeds (``lanes_gemm.py``) and every Runge–Kutta stage sum is one long vectorised
loop. The public layout stays ``(seed, param)``: a block is gathered at the start of a driver call
and scattered back at its end.

What it runs: deep linear networks without biases (gradient by products from the output side),
gradient flow (weight decay allowed), any explicit Runge–Kutta tableau at a fixed step; and momentum
flow by a damp/kick/drift splitting (``_advance_lanes_split``: deterministic, full batch,
``track_law=False``, one save per driver call), the lane gradient reused between kicks. Everything
else goes to the general driver; ``lanes_applicable`` is the one place that decides, and it declines
whatever it does not know (an unknown field in a bundle, a setting outside the table below).

Bit-identity: every lane performs exactly the arithmetic of the per-seed driver, in the same order
(the products accumulate like ``gemm.gemm``, the stage sums are ``explicit.combine``'s fused
multiply-adds in the same order, the field's −g − λθ the same single rounding), so a seed's numbers
do not depend on the block it shares, the batch size or the thread count. Recording calls the driver's own ``_record`` (record.py) on the seed's row. A block
in which any seed is not running (status), disagrees in time, or leaves the divergence bound during
the call is not written back: the caller re-runs its seeds with the general driver from the same
state, which handles every such event (the fast path only ever commits ordinary steps).

Set ``NOETHER_SIM_LANES=0`` to switch the fast path off.
"""

import os

import numpy as np
from numba import njit

from . import FASTMATH, STATUS_OK
from .bundles import ChargeRefs, GradientFlowSettings, Method, ModelData, MomentumSettings, Records, SeedState
from .record import SCHEME_EXPLICIT, SCHEME_SPLITTING, _record, new_work
from .fields import DYN_GF, DYN_MOMENTUM
from .splitting import OP_DAMP, OP_DRIFT, OP_KICK
from .lanes_gemm import LANES, lane_combine, lane_gemm, lane_gemm_field, lane_gemm_shared
from .layout import MODEL_DEEP_LINEAR, n_layers, weight_offset, widest_layer, width
from .linear import _r_offset, linear_work_size


def _any(v):
    return True


# Every field the fast path knows, with the values it handles. A field not listed here (added to a
# bundle later) makes it decline, so new features fall back to the general driver until listed.
_SETTINGS_OK = {
    "dyn": lambda v: v == DYN_GF, "n_params": _any, "track_law": _any, "track_gd_law": lambda v: not v,
    "nesterov": lambda v: not v, "fsal": _any, "error_order": _any, "max_steps": _any, "max_solve_iters": _any,
    "max_halvings": _any, "h": lambda v: v > 0.0 and np.isfinite(v), "rtol": _any, "atol": _any,
    "weight_decay": lambda v: np.isfinite(v), "tau": _any, "eta": _any, "beta": _any, "divergence_bound": _any,
    "solve_tol": _any,
    "energy_slot": lambda v: v < 0,  # an energy record is not produced here
    "batch_size": lambda v: v == 0, "sampling": _any, "temperature": lambda v: v == 0.0, "root_seed": _any,
    "noise_substeps": _any, "split_drift": lambda v: not v, "batch_factor": _any,  # full-batch, noise-free only
}
# Momentum flow by a splitting (damp, kick, drift: verlet, symplectic Euler, Yoshida), deterministic, full
# batch, without the balance-law integrals (track_law=False: the state is [q, p]).
_SPLIT_SETTINGS_OK = dict(_SETTINGS_OK, dyn=lambda v: v == DYN_MOMENTUM, track_law=lambda v: not v,
                          fsal=lambda v: not v, tau=lambda v: v > 0.0 and np.isfinite(v))
_REFS_OK = {
    "group_off": _any, "group_degree": _any, "iso_off": _any, "q0": _any, "j0": _any, "i0": _any,
    "watch_slot": _any,
    "gens": lambda v: v.shape[0] == 0,  # generator charges are not evaluated here
    "x0": _any,
}
_KNOWN = {ModelData: set(ModelData._fields), Method: set(Method._fields), SeedState: set(SeedState._fields),
          Records: set(Records._fields)}


def _fields_ok(bundle, table):
    for name, value in zip(bundle._fields, bundle):
        check = table.get(name)
        if check is None or not check(value):
            return False
    return True


def lanes_applicable(kind, scheme, args) -> bool:
    """Can the seed-interleaved fast path run this driver call (``entries.integrate``'s arguments)?"""
    if os.environ.get("NOETHER_SIM_LANES", "1") == "0":
        return False
    if kind != MODEL_DEEP_LINEAR or scheme not in (SCHEME_EXPLICIT, SCHEME_SPLITTING) or len(args) != 11:
        return False
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    if scheme == SCHEME_SPLITTING:
        if type(cfg) is not MomentumSettings or not _fields_ok(cfg, _SPLIT_SETTINGS_OK):
            return False
    elif type(cfg) is not GradientFlowSettings or not _fields_ok(cfg, _SETTINGS_OK):
        return False
    if type(refs) is not ChargeRefs or not _fields_ok(refs, _REFS_OK):
        return False
    for bundle in (model, method, st, rec):
        if _KNOWN.get(type(bundle)) != set(bundle._fields):
            return False
    ints = model.ints
    if ints[0] != MODEL_DEEP_LINEAR or ints[2] != 0 or ints[1] < 2:  # no biases, at least two layers
        return False
    n0, nL = int(ints[3]), int(ints[3 + ints[1]])
    if model.data_a.shape != (n0, n0) or model.data_b.shape != (nL, n0):
        return False
    if not all(a.dtype == np.float64 and a.flags.c_contiguous for a in (st.y, model.data_a, model.data_b)):
        return False
    if scheme == SCHEME_SPLITTING:
        # the general driver carries the last kick's gradient across the saves of one call (recomputed at
        # the start of each call): one save per call here keeps the gradient counts identical
        ops = method.ops
        return (st.y.ndim == 2 and st.y.shape[1] == 2 * cfg.n_params and last - first == 1 and ops.ndim == 1
                and ops.shape == method.weights.shape and bool(np.all((ops >= OP_DAMP) & (ops <= OP_DRIFT))))
    if st.y.ndim != 2 or st.y.shape[1] != cfg.n_params:
        return False
    A, b = method.A, method.b
    if A.ndim != 2 or A.shape != (b.shape[0], b.shape[0]) or b.shape[0] > 16 or np.any(np.triu(A) != 0.0):
        return False
    if cfg.fsal and last - first > 1:  # the general driver reuses the FSAL stage across the saves of a call
        return False
    return True


def lanes_integrate(args, general):
    """Run ``args`` (a driver call) on the fast path; seeds it hands back go to ``general`` (the driver entry).

    One save time at a time: the blocks advance (``_advance_lanes``), then every advanced seed is
    recorded by the driver's own ``_record`` (``_record_seeds``). Two entries rather than one, so that
    neither compiles the other's code (a cold start compiles each once)."""
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    n = seed_hi - seed_lo
    split = type(cfg) is MomentumSettings
    for js in range(first, last):
        redo = np.zeros(n, np.bool_)
        if split:
            _advance_lanes_split(seed_lo, seed_hi, st.y, st.t, st.status, st.n_grad, st.n_accepted, save_times[js],
                                 model.ints, model.data_a, model.data_b, method.ops, method.weights, cfg.n_params,
                                 cfg.tau, cfg.weight_decay, cfg.h, cfg.divergence_bound, redo)
        else:
            _advance_lanes(seed_lo, seed_hi, st.y, st.t, st.status, st.n_grad, st.n_accepted, save_times[js],
                           model.ints, model.data_a, model.data_b, method.A, method.b, cfg.weight_decay, cfg.h,
                           cfg.fsal, cfg.divergence_bound, redo)
        _record_seeds(seed_lo, seed_hi, js, st, model, cfg, refs, rec, redo)
        if redo.any():
            idx = np.flatnonzero(redo)
            starts = idx[np.r_[True, np.diff(idx) > 1]]
            ends = idx[np.r_[np.diff(idx) > 1, True]] + 1
            for lo, hi in zip(starts, ends):
                general(seed_lo + int(lo), seed_lo + int(hi), st, save_times, js, js + 1, *args[6:])


@njit(cache=True, inline="always")
def lane_gradient_field(theta, out, ints, lam, sxx, syx, work):
    """out = −∇L(θ) − λθ for a block of interleaved seeds (deep linear, no biases, L ≥ 2), products
    from the output side exactly as ``linear.linear_loss_grad_output_side`` (the loss is not needed
    by a step). Transposed operands are read through strides instead of being copied, and each block
    of the gradient is stored as the field's −g − λθ straight from the registers.

    Inlined into ``_advance_lanes`` (one call site), with the products (``lanes_gemm``): the fast path's
    step is one compiled function. No fastmath flags: the arithmetic is the products' explicit fused
    multiply-adds and one subtraction per entry of E, which no flag could change, and a flag would reach
    the inlined products' IR."""
    L = n_layers(ints)
    n0 = width(ints, 0)
    na = n0
    nL = width(ints, L)
    widest = widest_layer(ints)

    for i in range(L - 2, 0, -1):  # R_i = R_{i+1} W_{i+1}; R_{L−1} = W_L in θ
        ni, nn = width(ints, i), width(ints, i + 1)
        prev = theta if i + 1 == L - 1 else work
        lane_gemm(work, _r_offset(ints, i), ni, 1, prev, _r_offset(ints, i + 1), nn, 1,
                  theta, weight_offset(ints, i + 1), ni, 1, nL, ni, nn)
    pos = _r_offset(ints, L - 2) + nL * width(ints, L - 2) if L >= 3 else 0

    a_off = pos  # Ã = R_1 W_1
    pos += nL * na
    n1 = width(ints, 1)
    r1 = theta if L == 2 else work
    lane_gemm(work, a_off, na, 1, r1, _r_offset(ints, 1), n1, 1, theta, weight_offset(ints, 1), n0, 1, nL, n0, n1)

    e_off = pos  # T = Ã Σxx, then E = T − Σyx in place
    pos += nL * na
    lane_gemm_shared(work, e_off, na, 1, work, a_off, na, 1, sxx.reshape(na * na), 0, na, 1, nL, na, na)
    for r in range(nL):
        for c in range(na):
            y = syx[r, c]
            base = (e_off + r * na + c) * LANES
            for l in range(LANES):
                work[base + l] = work[base + l] - y

    # Φ_1 = E[:, :n0]ᵀ is read in place (strides); Φ_{i+1} = W_i Φ_i; G_i = R_iᵀ Φ_iᵀ; G_L = Φ_Lᵀ.
    phi, phi_rs, phi_cs = e_off, 1, na
    spare = (pos, pos + widest * nL)
    for i in range(1, L):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        wo = weight_offset(ints, i)
        ri = theta if i == L - 1 else work
        ro = _r_offset(ints, i)
        lane_gemm_field(out, wo, nprev, 1, ri, ro, 1, ni, work, phi, phi_cs, phi_rs, ni, nprev, nL, theta, lam)
        if i + 1 == L:  # Φ_L, written transposed straight into G_L
            lane_gemm_field(out, weight_offset(ints, L), 1, ni, theta, wo, nprev, 1, work, phi, phi_rs, phi_cs,
                            ni, nL, nprev, theta, lam)
        else:
            nxt = spare[i % 2]
            lane_gemm(work, nxt, nL, 1, theta, wo, nprev, 1, work, phi, phi_rs, phi_cs, ni, nL, nprev)
            phi, phi_rs, phi_cs = nxt, nL, 1


@njit(cache=True, nogil=True)
def _advance_lanes(seed_lo, seed_hi, ys, ts, status, n_grads, n_accepted, t_end, ints, sxx, syx, A, b, lam, h, fsal,
                   bound, redo):
    """``driver._integrate_seed``'s fixed explicit steps up to ``t_end``, a block of seeds at a time, on the
    SeedState arrays (plain arguments: they compile and dispatch faster than the bundles). Seeds of a
    block it cannot advance are flagged in ``redo`` and their state left untouched."""
    P = ys.shape[1]
    PL = P * LANES
    n_stages = b.shape[0]
    y = np.empty(PL)
    new = np.empty(PL)
    stage = np.empty(PL)
    K = np.empty((n_stages, PL))
    work = np.empty(linear_work_size(ints) * LANES)
    for blo in range(seed_lo, seed_hi, LANES):
        bhi = min(blo + LANES, seed_hi)
        t = ts[blo]
        usable = True
        for s in range(blo, bhi):
            if status[s] != STATUS_OK or ts[s] != t:
                usable = False
        if not usable:
            for s in range(blo, bhi):
                redo[s - seed_lo] = True
            continue
        for l in range(LANES):  # gather; lanes past the range repeat its last seed (computed, discarded)
            s = min(blo + l, bhi - 1)
            for e in range(P):
                y[e * LANES + l] = ys[s, e]
        n_steps_done = 0
        n_grad = 0
        cached = False
        steps_left = int(np.round((t_end - t) / h))
        while steps_left > 0:
            first_stage = 1 if cached else 0
            for i in range(first_stage, n_stages):
                x = y
                if i > 0:
                    lane_combine(y, h, A[i], K, stage, np.inf)
                    x = stage
                lane_gradient_field(x, K[i], ints, lam, sxx, syx, work)  # one call site: compiled once
            outside = lane_combine(y, h, b, K, new, bound)
            n_grad += n_stages - first_stage
            if outside != 0:
                usable = False
                break
            y, new = new, y
            t += h
            steps_left -= 1
            n_steps_done += 1
            if fsal:  # (a loop: a slice assignment compiles a shape check and its message)
                for j in range(PL):
                    K[0, j] = K[n_stages - 1, j]
            cached = fsal
        if not usable:
            for s in range(blo, bhi):
                redo[s - seed_lo] = True
            continue
        for l in range(bhi - blo):  # scatter
            s = blo + l
            for e in range(P):
                ys[s, e] = y[e * LANES + l]
            ts[s] = t_end
            n_grads[s] += n_grad
            n_accepted[s] += n_steps_done


@njit(cache=True, fastmath=FASTMATH)
def _lane_damp(p, e):
    """p ← e·p (``splitting._damp_plain``; its flags, its loop)."""
    for j in range(p.shape[0]):
        p[j] *= e


@njit(cache=True)
def _lane_kick(p, c, field):
    """p ← p − c·(∇L + λq) with field = −(∇L + λq) as the lane gradient stores it: fl(∇L + λq) is
    −fl(−∇L − λq) bit for bit (round to nearest is symmetric), so fl(c·field) = −fl(c·g). No flags:
    ``splitting_step``'s compiled kick rounds the product and the difference separately (LLVM does not
    contract it there; measured: contracting it here changed the last bits), and so must this loop."""
    for j in range(p.shape[0]):
        p[j] += c * field[j]


@njit(cache=True, fastmath=FASTMATH)
def _lane_drift(q, p, s):
    """q ← q + s·p (``splitting_step``'s drift, same flags)."""
    for j in range(q.shape[0]):
        q[j] += s * p[j]


@njit(cache=True, fastmath=FASTMATH)
def _lane_outside(y, bound):
    """Entries of y outside ±bound or not finite (``explicit.within_bound``'s test)."""
    outside = 0
    for j in range(y.shape[0]):
        outside += 0 if abs(y[j]) <= bound else 1
    return outside


@njit(cache=True, nogil=True)
def _advance_lanes_split(seed_lo, seed_hi, ys, ts, status, n_grads, n_accepted, t_end, ints, sxx, syx, ops, weights,
                         P, tau, lam, h, bound, redo):
    """``driver._integrate_seed``'s splitting steps of momentum flow (``splitting.splitting_step``, no law
    integrals, no noise) up to ``t_end``, a block of seeds at a time; y = [q, p] per seed. The gradient is
    reused between kicks while q has not moved, and recomputed at the start of the call, as there.
    Seeds of a block it cannot advance are flagged in ``redo`` and their state left untouched."""
    PL = P * LANES
    y = np.empty(2 * PL)
    new = np.empty(2 * PL)
    field = np.empty(PL)
    work = np.empty(linear_work_size(ints) * LANES)
    for blo in range(seed_lo, seed_hi, LANES):
        bhi = min(blo + LANES, seed_hi)
        t = ts[blo]
        usable = True
        for s in range(blo, bhi):
            if status[s] != STATUS_OK or ts[s] != t:
                usable = False
        if not usable:
            for s in range(blo, bhi):
                redo[s - seed_lo] = True
            continue
        for l in range(LANES):  # gather: q then p, each interleaved
            s = min(blo + l, bhi - 1)
            for e in range(2 * P):
                y[e * LANES + l] = ys[s, e]
        n_steps_done = 0
        n_grad = 0
        cached = False
        steps_left = int(np.round((t_end - t) / h))
        while steps_left > 0:
            for j in range(2 * PL):
                new[j] = y[j]
            q = new[:PL]
            p = new[PL:]
            for k in range(ops.shape[0]):
                sub = h * weights[k]
                op = ops[k]
                if op == OP_DAMP:
                    _lane_damp(p, np.exp(-sub / tau))
                elif op == OP_KICK:
                    if not cached:
                        lane_gradient_field(q, field, ints, lam, sxx, syx, work)  # one call site
                        n_grad += 1
                        cached = True
                    _lane_kick(p, sub / tau, field)
                else:
                    _lane_drift(q, p, sub)
                    cached = False
            if _lane_outside(new, bound) != 0:
                usable = False
                break
            y, new = new, y
            t += h
            steps_left -= 1
            n_steps_done += 1
        if not usable:
            for s in range(blo, bhi):
                redo[s - seed_lo] = True
            continue
        for l in range(bhi - blo):  # scatter
            s = blo + l
            for e in range(2 * P):
                ys[s, e] = y[e * LANES + l]
            ts[s] = t_end
            n_grads[s] += n_grad
            n_accepted[s] += n_steps_done


# The driver's own recording code (record.py), inlined into ``_record_seeds`` (numba's untyped IR) rather
# than called: the same source and arithmetic (neither has fastmath flags), without a compiled function of
# its own that LLVM would optimise and emit a second time inside ``_record_seeds`` (cold start).
_record_inline = njit(cache=True, inline="always")(_record.py_func)
_new_work_inline = njit(cache=True, inline="always")(new_work.py_func)


@njit(cache=True, nogil=True)
def _record_seeds(seed_lo, seed_hi, js, st, model, cfg, refs, rec, redo):
    """Record save ``js`` of every seed of the range not flagged in ``redo``, with the driver's ``_record``."""
    w = _new_work_inline(MODEL_DEEP_LINEAR, model, cfg, refs, 1, 1)
    for s in range(seed_lo, seed_hi):
        if not redo[s - seed_lo]:
            _record_inline(MODEL_DEEP_LINEAR, False, s, js, st.y[s], st.t[s], model, cfg, refs, rec, w,
                           st.predicted[s])
