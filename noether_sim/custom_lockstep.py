"""A CustomModel with a function vectorised over seeds (``vectorised=True``), stepped in lockstep.

``loss_grad(Theta, X, Y) -> (losses, gradients)`` takes Θ of shape (S, P). For the runs where every seed
takes the same steps — gradient flow by an explicit Runge–Kutta tableau at a fixed step, and gradient
descent (Euler's tableau, its exact law tracked), deterministic, without the energy record — the seeds of a
round advance together: each stage is ONE call of the user's function on the stage points of all live seeds,
and the stage sums are NumPy operations on (S, P) arrays. At each save time one more call gives the loss
and gradient at every live seed's state, and the driver's own recording (``record._record``, through
``kernels.custom_fast.record_staged``) writes the records: the result is the same Dataset, field for field.

The arithmetic is the driver's, in NumPy: K_i = −∇L(x_i) − λx_i, x_i = θ + Σ_m (h·A[i, m]) K_m in
increasing m (zero weights skipped), θ' = θ + Σ_m (h·b[m]) K_m; NumPy rounds each product and sum where the
compiled driver fuses them (FMA), so results agree with the compiled path to round-off, not bit for bit
(tests/test_custom_vectorised.py). A seed that leaves the divergence bound stops as in the driver (its
status, time and last good state; no records after it) and the others go on.

Every other run (adaptive steps, Gauss–Legendre, splittings, heavy ball and Nesterov, the adaptive
optimizers, minibatches, noise, the energy record) keeps the row-at-a-time route of ``plain_python``: the
kernels call the function on one row (S = 1) per gradient, through numba's object mode.
"""

from __future__ import annotations

import os

import numpy as np

from .kernels import STATUS_DIVERGED, STATUS_OK
from .kernels.custom import BASE
from .kernels.custom_fast import (accumulate_gd_law_rows, algorithm_law_rows, algorithm_run,
                                  fixed_explicit_gradient_run, mark_unrecorded_rows, record_staged, staged_address)
from .kernels.fields import DYN_MOMENTUM
from .kernels.layout import MODEL_CUSTOM


def lockstep_runs(model, kind, scheme, args) -> bool:
    """Does this driver call of a vectorised CustomModel run in lockstep (see the module docstring)?
    ``NOETHER_SIM_LOCKSTEP=0`` switches it off (every run then takes the row-at-a-time route)."""
    if os.environ.get("NOETHER_SIM_LOCKSTEP", "1") == "0":
        return False
    return getattr(model, "vectorised", False) and kind == MODEL_CUSTOM and (
        fixed_explicit_gradient_run(kind, scheme, args) or algorithm_run(kind, scheme, args))


def integrate_lockstep(model, seed_lo, seed_hi, st, save_times, first, last, md, method, cfg, refs, rec):
    """Advance seeds ``seed_lo`` … ``seed_hi − 1`` through ``save_times[first:last]`` in lockstep, with the
    driver's arguments (kernels/driver.py) and the same effect on them. A seed that overflows is reported by
    its status (diverged), not by NumPy's warnings."""
    with np.errstate(over="ignore", invalid="ignore"):
        if cfg.dyn == DYN_MOMENTUM:
            _algorithm_lockstep(model, seed_lo, seed_hi, st, save_times, first, last, md, cfg, refs, rec)
        else:
            _integrate_lockstep(model, seed_lo, seed_hi, st, save_times, first, last, md, method, cfg, refs, rec)


def _integrate_lockstep(model, seed_lo, seed_hi, st, save_times, first, last, md, method, cfg, refs, rec):
    from .custom import _call_batch

    f, P = model.batch_function, cfg.n_params
    a, b = md.data_a, md.data_b
    h, lam, bound = cfg.h, cfg.weight_decay, cfg.divergence_bound
    A, bw = np.asarray(method.A), np.asarray(method.b)
    n_stages = len(bw)
    stage_w = [[(m, h * A[i, m]) for m in range(n_stages) if h * A[i, m] != 0.0] for i in range(n_stages)]
    final_w = [(m, h * bw[m]) for m in range(n_stages) if h * bw[m] != 0.0]
    staged = md.ints.copy()
    staged[BASE] = staged_address()
    n = seed_hi - seed_lo
    seeds = np.arange(seed_lo, seed_hi)

    def field(x):
        """K = −∇L(x) − λx of the rows x, one call."""
        return -_call_batch(f, x, a, b, P)[1] - lam * x

    live = st.status[seed_lo:seed_hi] == STATUS_OK
    if not live.all():
        mark_unrecorded_rows(seeds[~live], first, last, refs, rec)
    idx = np.flatnonzero(live)  # the live seeds, relative to seed_lo
    y = st.y[seed_lo:seed_hi, :P][idx].copy()
    t = st.t[seed_lo:seed_hi][idx].copy()
    n_grad = np.zeros(n, np.int64)
    n_accepted = np.zeros(n, np.int64)
    K = np.empty((n_stages, len(idx), P))
    cached = False
    for js in range(first, last):
        if not len(idx):
            break
        t_end = save_times[js]
        steps_left = int(np.round((t_end - t[0]) / h))  # live seeds share their time (fixed steps from one grid)
        while steps_left > 0:
            for i in range(1 if cached else 0, n_stages):
                x = y
                if i > 0:
                    x = y.copy()
                    for m, w in stage_w[i]:
                        x += w * K[m]
                K[i] = field(x)
            n_grad[idx] += n_stages - (1 if cached else 0)
            new = y.copy()
            for m, w in final_w:
                new += w * K[m]
            if cfg.track_gd_law:  # gradient descent: g = −K[0] − λθ at the step's start, the driver's law
                rows = np.zeros(n, np.bool_)
                rows[idx] = True
                G = np.zeros((n, P))
                G[idx] = -K[0] - lam * y
                accumulate_gd_law_rows(seed_lo, rows, st.predicted, G, h, lam, md.ints, md.floats, refs.group_off,
                                       refs.group_degree)
            ok = np.all(np.abs(new) <= bound, axis=1)  # NaN compares False
            if not ok.all():  # these seeds stop at their last good state, as in the driver
                gone = idx[~ok]
                st.status[seed_lo + gone] = STATUS_DIVERGED
                st.t_diverged[seed_lo + gone] = t[~ok] + h
                st.y[seed_lo + gone, :P] = y[~ok]
                st.t[seed_lo + gone] = t[~ok]
                mark_unrecorded_rows(seed_lo + gone, js, last, refs, rec)
                idx, y, new, t, K = idx[ok], y[ok], new[ok], t[ok], K[:, ok]
                if not len(idx):
                    break
            y = new
            t = t + h
            steps_left -= 1
            n_accepted[idx] += 1
            if cfg.fsal:  # the last stage was evaluated at the new y (A[-1] = b)
                K[0] = K[n_stages - 1]
            cached = cfg.fsal
        if not len(idx):
            break
        t[:] = t_end
        losses, grads = _call_batch(f, y, a, b, P)
        rows = np.zeros(n, np.bool_)
        rows[idx] = True
        ys = np.zeros((n, P))
        ys[idx] = y
        ts = np.zeros(n)
        ts[idx] = t
        L = np.zeros(n)
        L[idx] = losses
        G = np.zeros((n, P))
        G[idx] = grads
        record_staged(seed_lo, seed_hi, js, False, ys, ts, rows, L, G, staged, st, md, cfg, refs, rec)
    st.y[seed_lo + idx, :P] = y
    st.t[seed_lo + idx] = t
    st.n_grad[seed_lo:seed_hi] += n_grad
    st.n_accepted[seed_lo:seed_hi] += n_accepted


def _algorithm_lockstep(model, seed_lo, seed_hi, st, save_times, first, last, md, cfg, refs, rec):
    """Heavy ball / Nesterov (``fields.momentum_algorithm_step``) on the states [θ_k, θ_{k−1}(, a)] of the live
    seeds, one call of the user's function per step; the discrete law's accumulator a by the driver's
    ``_algorithm_law``."""
    from .custom import _call_batch

    f, P = model.batch_function, cfg.n_params
    a, b = md.data_a, md.data_b
    h, lam, bound, eta, beta = cfg.h, cfg.weight_decay, cfg.divergence_bound, cfg.eta, cfg.beta
    staged = md.ints.copy()
    staged[BASE] = staged_address()
    n = seed_hi - seed_lo
    seeds = np.arange(seed_lo, seed_hi)
    live = st.status[seed_lo:seed_hi] == STATUS_OK
    if not live.all():
        mark_unrecorded_rows(seeds[~live], first, last, refs, rec)
    idx = np.flatnonzero(live)
    y = np.ascontiguousarray(st.y[seed_lo:seed_hi][idx])
    t = st.t[seed_lo:seed_hi][idx].copy()
    n_steps = np.zeros(n, np.int64)
    for js in range(first, last):
        if not len(idx):
            break
        t_end = save_times[js]
        steps_left = int(np.round((t_end - t[0]) / h))
        while steps_left > 0:
            theta, prev = y[:, :P], y[:, P:2 * P]
            look = theta + beta * (theta - prev) if cfg.nesterov else theta
            g = _call_batch(f, np.ascontiguousarray(look), a, b, P)[1]
            new = y.copy()
            new[:, P:2 * P] = theta
            if cfg.nesterov:
                new[:, :P] = look - eta * (g + lam * look)
            else:
                new[:, :P] = theta + beta * (theta - prev) - eta * (g + lam * theta)
            if cfg.track_law:
                algorithm_law_rows(0, np.ones(len(idx), np.bool_), y, new, cfg, refs.group_off, refs.group_degree,
                                   md.ints, md.floats)
            n_steps[idx] += 1  # one gradient per step (counted for the diverging step too, as the driver does)
            ok = np.all(np.abs(new) <= bound, axis=1)
            if not ok.all():
                gone = idx[~ok]
                st.status[seed_lo + gone] = STATUS_DIVERGED
                st.t_diverged[seed_lo + gone] = t[~ok] + h
                st.y[seed_lo + gone] = y[~ok]
                st.t[seed_lo + gone] = t[~ok]
                st.n_grad[seed_lo + gone] += n_steps[gone]
                st.n_accepted[seed_lo + gone] += n_steps[gone] - 1
                n_steps[gone] = 0
                mark_unrecorded_rows(seed_lo + gone, js, last, refs, rec)
                idx, y, new, t = idx[ok], y[ok], new[ok], t[ok]
                if not len(idx):
                    break
            y = np.ascontiguousarray(new)
            t = t + h
            steps_left -= 1
        if not len(idx):
            break
        t[:] = t_end
        losses, grads = _call_batch(f, np.ascontiguousarray(y[:, :P]), a, b, P)
        rows = np.zeros(n, np.bool_)
        rows[idx] = True
        ys = np.zeros((n, y.shape[1]))
        ys[idx] = y
        ts = np.zeros(n)
        ts[idx] = t
        L = np.zeros(n)
        L[idx] = losses
        G = np.zeros((n, P))
        G[idx] = grads
        record_staged(seed_lo, seed_hi, js, True, ys, ts, rows, L, G, staged, st, md, cfg, refs, rec)
    st.y[seed_lo + idx] = y
    st.t[seed_lo + idx] = t
    st.n_grad[seed_lo + idx] += n_steps[idx]
    st.n_accepted[seed_lo + idx] += n_steps[idx]
