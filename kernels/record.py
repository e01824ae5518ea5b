"""What the driver records at a save time, and the scratch arrays a seed's integration works in.

Shared by the general driver (driver.py) and its seed-interleaved fast path (lanes.py), which records
a seed with exactly the same code: both import from here, and neither from the other at import time.
The ``SCHEME_*`` constants name the kinds of step (driver.py's docstring); the recorded quantities
(drift, drift_max, predicted, residual, law, scale) are described there too.
"""

from collections import namedtuple

import numpy as np
from numba import njit
from numba.extending import overload

from .bundles import is_momentum
from .extras import extra_scales, extra_values
from .fields import DYN_MOMENTUM
from .models import charge_scales, charges, isometric_charges, isometric_scales, loss_grad, work_size

SCHEME_EXPLICIT, SCHEME_ADAPTIVE, SCHEME_IMPLICIT, SCHEME_SPLITTING, SCHEME_ALGORITHM = 0, 1, 2, 3, 4
SCHEME_OPTIMIZER = 5  # an adaptive optimizer (optimizers.py)

_Work = namedtuple("_Work", ["K", "K_new", "stage", "new", "start", "work", "g", "grad", "look", "pv", "tmp",
                             "q", "qg", "jv", "iv", "qa", "qb", "qc", "scales", "jscales", "result", "xv", "xscales"])


@njit(cache=True)
def state_size(dyn, algorithm, P, nq, track):
    if dyn != DYN_MOMENTUM:
        return P
    if not track:
        return 2 * P
    return 2 * P + nq if algorithm else 2 * P + 2 * nq


@njit(cache=True)
def _velocity(y, algorithm, P, h, pv):
    if algorithm:
        for j in range(P):
            pv[j] = (y[j] - y[P + j]) / h
    else:
        for j in range(P):
            pv[j] = y[P + j]


@njit(cache=True)
def state_charges(kind, y, algorithm, cfg, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa, qb):
    """q(θ) into qv; under momentum also J(q, p) into jv and the law invariant I into iv (NaN if untracked):
    momentum flow's I (fields.py), or for heavy ball / Nesterov the discrete invariant of
    ``driver._algorithm_law``."""
    charges(kind, y[:cfg.n_params], qv, ints, floats)
    _momentum_charges(cfg, kind, y, algorithm, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa, qb)


def _momentum_charges(cfg, kind, y, algorithm, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa, qb):
    """Momentum dynamics: J(q, p) and the law invariant I. Gradient flow: nothing (stand-in for the overload)."""


def _momentum_charges_impl(cfg, kind, y, algorithm, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa,
                           qb):
    P = cfg.n_params
    nq = group_off[group_off.shape[0] - 1]
    _velocity(y, algorithm, P, cfg.h, pv)
    isometric_charges(kind, y[:P], pv, jv, ints, floats)
    if cfg.track_law and not algorithm:
        for j in range(P):
            tmp[j] = y[j] + pv[j]
        charges(kind, tmp, qa, ints, floats)
        for j in range(P):
            tmp[j] = y[j] - pv[j]
        charges(kind, tmp, qb, ints, floats)
        # quadratic q: τq̈ + q̇ + 2λq = 2τq(p); linear q (q(p) = q̇): τq̈ + q̇ + λq = 0
        for grp in range(group_degree.shape[0]):
            quadratic = group_degree[grp] == 2
            for k in range(group_off[grp], group_off[grp + 1]):
                qdot = 0.5 * (qa[k] - qb[k])
                if quadratic:
                    iv[k] = cfg.tau * qdot + qv[k] + 2.0 * cfg.weight_decay * y[2 * P + nq + k] - 2.0 * cfg.tau * y[2 * P + k]
                elif group_degree[grp] == 1:
                    iv[k] = cfg.tau * qdot + qv[k] + cfg.weight_decay * y[2 * P + nq + k]
                else:  # a user's function charge (degree 0): no law
                    iv[k] = np.nan
    elif cfg.track_law:  # heavy ball / Nesterov on y = [θ_k, θ_{k−1}, a]: J = q(θ_k) − β q(θ_{k−1}) + a
        charges(kind, y[P:2 * P], qa, ints, floats)
        for grp in range(group_degree.shape[0]):
            for k in range(group_off[grp], group_off[grp + 1]):
                iv[k] = qv[k] - cfg.beta * qa[k] + y[2 * P + k] if group_degree[grp] != 0 else np.nan
    else:
        for k in range(nq):
            iv[k] = np.nan


@overload(_momentum_charges, prefer_literal=True, jit_options={"cache": True})
def _ol_momentum_charges(cfg, kind, y, algorithm, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa, qb):
    if is_momentum(cfg):
        return _momentum_charges_impl
    return lambda cfg, kind, y, algorithm, group_off, group_degree, ints, floats, qv, jv, iv, pv, tmp, qa, qb: None


@njit(cache=True)
def _record(kind, algorithm, s, js, y, t, model, cfg, refs, rec, w, pred):
    P = cfg.n_params
    ints, floats = model.ints, model.floats
    nq = refs.q0.shape[1]
    momentum = cfg.dyn == DYN_MOMENTUM
    rec.loss[s, js] = loss_grad(kind, y[:P], w.g, ints, floats, model.data_a, model.data_b, w.work)
    state_charges(kind, y, algorithm, cfg, refs.group_off, refs.group_degree, ints, floats, w.q, w.jv, w.iv, w.pv,
                  w.tmp, w.qa, w.qb)
    charge_scales(kind, y[:P], w.scales, ints, floats)
    group_off, group_degree = refs.group_off, refs.group_degree
    n_groups = group_degree.shape[0]
    law_tracked = momentum and cfg.track_law
    for grp in range(n_groups):
        decay = 1.0 if momentum else np.exp(-group_degree[grp] * cfg.weight_decay * t)
        drift2 = 0.0
        dmax = 0.0
        pred2 = 0.0
        res2 = 0.0
        law2 = 0.0
        for k in range(group_off[grp], group_off[grp + 1]):
            law = decay * refs.q0[s, k]
            d = w.q[k] - law
            drift2 += d * d
            dmax = max(dmax, abs(d))
            if cfg.track_gd_law:
                p = pred[k] - law
                pred2 += p * p
                r = w.q[k] - pred[k]
                res2 += r * r
            if law_tracked:
                r = w.iv[k] - refs.i0[s, k]
                law2 += r * r
        rec.drift[s, js, grp] = np.sqrt(drift2)
        rec.drift_max[s, js, grp] = dmax
        rec.predicted[s, js, grp] = np.sqrt(pred2) if cfg.track_gd_law else np.nan
        rec.residual[s, js, grp] = np.sqrt(res2) if cfg.track_gd_law else np.nan
        rec.law[s, js, grp] = np.sqrt(law2) if law_tracked else np.nan
        rec.scale[s, js, grp] = w.scales[grp]
    # columns: the model's charges, the extra quantities, then the isometric charges (momentum only), so
    # that a gradient-flow run's columns are a prefix of a momentum run's on the same model and data
    nx = refs.x0.shape[1]
    if nx > 0:
        _record_extras(cfg, momentum, s, js, y, t, n_groups, refs, rec, w, ints)
    _record_isometric(cfg, kind, s, js, y, t, n_groups + nx, refs, rec, w, ints, floats, pred)
    slot = refs.watch_slot[s]
    if slot >= 0:
        for k in range(nq):
            rec.watch[slot, js, k] = w.q[k]
            rec.predicted_watch[slot, js, k] = pred[k] if cfg.track_gd_law else np.nan
        for k in range(nx):
            rec.watch[slot, js, nq + k] = w.xv[k]
            rec.predicted_watch[slot, js, nq + k] = np.nan
        nj = refs.j0.shape[1]
        for k in range(nj):
            rec.watch[slot, js, nq + nx + k] = w.jv[k] if momentum else np.nan
            # a stochastic momentum run's law predicts J too (splitting._law_kick: pred = [Q̂, V̂, Ĵ])
            rec.predicted_watch[slot, js, nq + nx + k] = pred[2 * nq + k] if momentum and cfg.track_gd_law else np.nan
        if rec.theta_watch.shape[0] > 0:
            for k in range(cfg.n_params):
                rec.theta_watch[slot, js, k] = y[k]


@njit(cache=True)
def _record_extras(cfg, momentum, s, js, y, t, col0, refs, rec, w, ints):
    """Drift of the data-symmetry charges (law 0 under gradient flow and descent, e^{−t/τ}c(0) under
    momentum) and of the energy (law E(0)) from their laws; one group each (extras.py)."""
    extra_values(cfg, momentum, y, rec.loss[s, js], w.g, w.pv, refs.gens, ints, w.xv)
    extra_scales(cfg, momentum, y, rec.loss[s, js], w.g, w.pv, refs.gens, ints, w.xscales)
    m = refs.gens.shape[0]
    decay = np.exp(-t / cfg.tau) if momentum else 0.0
    for k in range(refs.x0.shape[1]):
        d = w.xv[k] - refs.x0[s, k] * (decay if k < m else 1.0)
        col = col0 + k
        rec.drift[s, js, col] = abs(d)
        rec.drift_max[s, js, col] = abs(d)
        rec.predicted[s, js, col] = np.nan
        rec.residual[s, js, col] = np.nan
        rec.law[s, js, col] = np.nan
        rec.scale[s, js, col] = w.xscales[k]


def _record_isometric(cfg, kind, s, js, y, t, col0, refs, rec, w, ints, floats, pred):
    """Momentum dynamics: drift of the isometric charges J from e^{−t/τ}J(0), into the group columns
    from ``col0`` on; a stochastic splitting run (``cfg.track_gd_law``) also its exact law's prediction Ĵ
    (pred[2nq:]): predicted |Ĵ − e^{−t/τ}J(0)|, residual |J − Ĵ|. Gradient flow: nothing."""


def _record_isometric_impl(cfg, kind, s, js, y, t, col0, refs, rec, w, ints, floats, pred):
    isometric_scales(kind, y[:cfg.n_params], w.pv, w.jscales, ints, floats)
    nq = refs.q0.shape[1]
    decay = np.exp(-t / cfg.tau)
    iso_off = refs.iso_off
    for grp in range(iso_off.shape[0] - 1):
        d2 = 0.0
        dmax = 0.0
        p2 = 0.0
        r2 = 0.0
        for k in range(iso_off[grp], iso_off[grp + 1]):
            d = w.jv[k] - decay * refs.j0[s, k]
            d2 += d * d
            dmax = max(dmax, abs(d))
            if cfg.track_gd_law:
                jp = pred[nq + nq + k]
                p2 += (jp - decay * refs.j0[s, k]) ** 2
                r2 += (w.jv[k] - jp) ** 2
        col = col0 + grp
        rec.drift[s, js, col] = np.sqrt(d2)
        rec.drift_max[s, js, col] = dmax
        rec.predicted[s, js, col] = np.sqrt(p2) if cfg.track_gd_law else np.nan
        rec.residual[s, js, col] = np.sqrt(r2) if cfg.track_gd_law else np.nan
        rec.law[s, js, col] = np.nan
        rec.scale[s, js, col] = w.jscales[grp]


@overload(_record_isometric, prefer_literal=True, jit_options={"cache": True})
def _ol_record_isometric(cfg, kind, s, js, y, t, col0, refs, rec, w, ints, floats, pred):
    if is_momentum(cfg):
        return _record_isometric_impl
    return lambda cfg, kind, s, js, y, t, col0, refs, rec, w, ints, floats, pred: None


@njit(cache=True)
def _mark_unrecorded(s, first, last, refs, rec):
    for js in range(first, last):
        rec.loss[s, js] = np.nan
        rec.drift[s, js, :] = np.nan
        rec.drift_max[s, js, :] = np.nan
        rec.predicted[s, js, :] = np.nan
        rec.residual[s, js, :] = np.nan
        rec.law[s, js, :] = np.nan
        rec.scale[s, js, :] = np.nan
        slot = refs.watch_slot[s]
        if slot >= 0:
            rec.watch[slot, js, :] = np.nan
            rec.predicted_watch[slot, js, :] = np.nan
            if rec.theta_watch.shape[0] > 0:
                rec.theta_watch[slot, js, :] = np.nan


@njit(cache=True)
def new_work(kind, model, cfg, refs, n_stages, n_state):
    """One seed's scratch arrays (``_Work``): stage arrays for ``n_stages`` stages of ``n_state`` entries
    (1 and 1 where only ``_record`` uses it), the rest sized by the model and the recorded charges."""
    P = cfg.n_params
    nq = refs.q0.shape[1]
    nx = max(refs.x0.shape[1], 1)
    return _Work(np.empty((n_stages, n_state)), np.empty((n_stages, n_state)), np.empty(n_state), np.empty(n_state),
                 np.empty(n_state), np.empty(work_size(kind, model.ints, model.data_a)), np.empty(P), np.empty(P),
                 np.empty(P), np.empty(P), np.empty(P), np.empty(nq), np.empty(nq), np.empty(max(refs.j0.shape[1], 1)),
                 np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq), np.empty(refs.group_degree.shape[0]),
                 np.empty(max(refs.iso_off.shape[0] - 1, 1)), np.empty(3), np.empty(nx), np.empty(nx))
