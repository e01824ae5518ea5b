"""The one ensemble driver: every dynamics and every method, seeds integrated independently between
save times, a range of seeds per call (the compiled entry per model kind and scheme: entries.py).

``integrate(kind, scheme, seed_lo, seed_hi, state, save_times, first, last, model, method, settings,
refs, records)`` advances every live seed of the range from its current time through
``save_times[first:last]``. Its arguments are the named bundles of bundles.py. Three things are known
while compiling, so a run compiles only the code it uses: the model ``kind`` (models.py), the dynamics
(the settings' type, bundles.py) and the ``scheme``, the kind of step:

    SCHEME_EXPLICIT   any explicit tableau at a fixed step (gradient flow, descent, momentum flow)
    SCHEME_ADAPTIVE   an explicit embedded pair with per-seed step control (step_control.py)
    SCHEME_IMPLICIT   any implicit tableau (Gauss–Legendre), stage equations by fixed point (implicit.py)
    SCHEME_SPLITTING  damp/kick/drift splittings of momentum flow (splitting.py)
    SCHEME_ALGORITHM  heavy ball or Nesterov on y = [θ_k, θ_{k−1}] (fields.py)
    SCHEME_OPTIMIZER  an adaptive optimizer (Adam, AdamW, RMSProp, sign descent, Lion) on y = [θ, its state]
                      (optimizers.py); its op code and β₁, β₂, ε are the method's data

The vector field (fields.py) depends on ``settings.dyn``: gradient flow, or momentum flow with state
[q, p, z, w]. Recorded at each save time, per charge group (the model's groups, then the extra
quantities of extras.py when ``refs.x0`` has columns, one group each, then the isometric groups under
momentum dynamics):

    drift       |q(t) − q_law(t)|_F. Model charges: q_law = e^{−dλt} q(0) (d = degree) under gradient
                flow and descent; under momentum, which breaks them, q_law = q(0) (this is their change).
                Isometric charges J: q_law = e^{−t/τ} J(0). Data-symmetry charges c: q_law = 0 under
                gradient flow and descent, e^{−t/τ} c(0) under momentum; the energy: q_law = E(0).
    drift_max   max_k |q_k(t) − q_law,k(t)|
    predicted   gradient descent: |q_pred(t) − q_law(t)|_F, the discretisation drift of the exact one-step law
    residual    gradient descent: |q(t) − q_pred(t)|_F, what that law does not explain (round-off)
    law         momentum dynamics with the law tracked: |I(t) − I(0)| of momentum flow (fields.py), or
                heavy ball / Nesterov: |J(t) − J(0)| of their discrete law (``_algorithm_law``)
    scale       size of the terms that cancel in q (the round-off reference)

Quantities that do not apply are NaN. q_pred is gradient descent's exact one-step law (theory.md §3)
accumulated step by step: q_pred ← (1 − hλ)^d q_pred + h² q(g) (d = 2) or (1 − hλ) q_pred − h q(g)
(d = 1), with g = ∇L at the step's start, which explicit Euler already evaluates as K[0].

Stochastic dynamics (stochastic.py) run through the same loop: a minibatch run computes each step's
gradient on its batch (drawn by root seed, seed id and step), so the exact law above holds with g_B; a
Langevin run (Euler's tableau) adds √(2hT)ξ after the step and accumulates the law with its noise terms
(``_accumulate_noisy_law``), or with ``method.ops[0]`` = 1 takes the stochastic Heun corrector
(``_add_noise``); under momentum with a temperature the splitting's damp steps are exact
Ornstein–Uhlenbeck steps (splitting.py), and a stochastic splitting run (noise or minibatches) accumulates its
exact per-sub-step law into ``predicted`` inside the step (splitting._law_kick: predictions [Q̂, V̂, Ĵ]);
``split_drift`` accumulates the expected drift's parts (``_accumulate_split``).

A fixed implicit step whose stage equations do not converge is retried as 2, 4, … 2^max_halvings
substeps from the same start (so it still lands on the save times); if none converges the seed stops
with STATUS_SOLVE_FAILED. All per-seed state lives in caller-owned arrays, so calls can be chained
chunk by chunk and disjoint seed ranges can run concurrently on threads (the kernels release the GIL).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import FASTMATH, STATUS_DIVERGED, STATUS_MAX_STEPS, STATUS_OK, STATUS_SOLVE_FAILED, STATUS_STEP_UNDERFLOW
from .bundles import ModelData
from .explicit import combine, within_bound
from .fields import DYN_MOMENTUM, momentum_algorithm_step, rk_stages
from .implicit import implicit_step
from .layout import MODEL_ATTENTION, MODEL_CUSTOM, MODEL_LORA, MODEL_MLP, MODEL_RESIDUAL
from .models import charges, charges_cross, loss_grad
from .optimizers import optimizer_step
from .record import (SCHEME_ADAPTIVE, SCHEME_ALGORITHM, SCHEME_EXPLICIT, SCHEME_IMPLICIT, SCHEME_OPTIMIZER,
                     SCHEME_SPLITTING, _mark_unrecorded, _record, new_work)
from .splitting import splitting_step
from .stochastic import (MINIBATCH_STREAM, NOISE_STREAM, batch_indices, gather_batch, gaussian_noise,
                         linear_batch_moments, new_batch_arrays, stream_key)
from .step_control import MIN_RELATIVE_STEP, error_norm, initial_step, step_factor


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
            elif group_degree[grp] == 1:
                pred[k] = (pred[k] - c1 * pred[k]) - h * qg[k]
            else:  # a user's function charge (degree 0): no exact law
                pred[k] = np.nan


@njit(cache=True, fastmath=FASTMATH)
def _accumulate_noisy_law(kind, pred, y, g, noise, U, qa, qc, h, weight_decay, ints, floats, group_off,
                          group_degree):
    """The exact one-step law with injected noise N (theory.md §6): θ' = (1 − hλ)θ + U, U = −h g + N,
    q(θ') = (1 − hλ)² q(θ) + 2(1 − hλ) B(θ, N) + q(U) for q(θ) = B(θ, θ) (the gradient term drops by
    symmetry; B from ``charges_cross``: one evaluation for deep linear models); linear charges:
    q(θ') = (1 − hλ) q(θ) + q(U)."""
    P = g.shape[0]
    for j in range(P):
        U[j] = noise[j] - h * g[j]
    charges(kind, U, qc, ints, floats)
    charges_cross(kind, y, noise, qa, ints, floats)
    c1 = h * weight_decay
    c2 = c1 * (2.0 - c1)
    for grp in range(group_degree.shape[0]):
        for k in range(group_off[grp], group_off[grp + 1]):
            if group_degree[grp] == 2:
                cross = 2.0 * qa[k]
                pred[k] = (pred[k] - c2 * pred[k]) + (cross - c1 * cross) + qc[k]
            elif group_degree[grp] == 1:
                pred[k] = (pred[k] - c1 * pred[k]) + qc[k]
            else:
                pred[k] = np.nan


@njit(cache=True, fastmath=FASTMATH)
def _accumulate_split(kind, y, split, model, one_a, one_b, one_floats, one_idx, mlp, gbar, dev, qa, qb, qc, work,
                      h, weight_decay, c_batch, group_off, group_degree):
    """The expected one-step drift of a minibatch step, split (theory.md §6): h²q(Ḡ) (discretisation of the
    flow, into split[:nq]) and h²c_B·q_Σ, q_Σ = (1/N)Σ_j q(G_j − Ḡ) over the per-sample gradients G_j
    (minibatch noise, into split[nq:]); with weight decay both decay like the charge. Linear charges:
    −h q(Ḡ) and 0."""
    nq = qa.shape[0]
    ints = model.ints
    loss_grad(kind, y, gbar, ints, model.floats, model.data_a, model.data_b, work)
    charges(kind, gbar, qa, ints, model.floats)
    for k in range(nq):
        qb[k] = 0.0
    N = model.points_x.shape[0]
    for j in range(N):
        one_idx[0] = j
        if mlp:
            gather_batch(model.points_x, model.points_y, one_idx, 1, one_a, one_b)
        else:
            linear_batch_moments(model.points_x, model.points_y, one_idx, 1, one_a, one_b, one_floats)
        loss_grad(kind, y, dev, ints, one_floats, one_a, one_b, work)
        for i in range(dev.shape[0]):
            dev[i] -= gbar[i]
        charges(kind, dev, qc, ints, model.floats)
        for k in range(nq):
            qb[k] += qc[k] / N
    c1 = h * weight_decay
    c2 = c1 * (2.0 - c1)
    for grp in range(group_degree.shape[0]):
        for k in range(group_off[grp], group_off[grp + 1]):
            if group_degree[grp] == 2:
                split[k] = (split[k] - c2 * split[k]) + h * h * qa[k]
                split[nq + k] = (split[nq + k] - c2 * split[nq + k]) + h * h * c_batch * qb[k]
            elif group_degree[grp] == 1:
                split[k] = (split[k] - c1 * split[k]) - h * qa[k]
                split[nq + k] = split[nq + k] - c1 * split[nq + k]
            else:
                split[k] = np.nan
                split[nq + k] = np.nan


# ---- one step attempt per scheme, from y into new. Each returns (error norm, cache valid, gradient evaluations):
# err <= 1 accepts the attempt (fixed steps return 0), err = inf means the step failed for good
# (implicit solve); "cache valid" says whether, once accepted, the field at the new state is already
# known (FSAL tableaus: their last stage, copied to K[0] by the driver; splittings: w.grad). These are
# the bodies of the overload of ``_attempt`` below, which picks one while typing: a run compiles one. ----

def _attempt_explicit(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                      model, method, cfg, st, w, pred, refs, sx, step):
    first_stage = 1 if cached else 0
    rk_stages(kind, y, h, A, K, stage, first_stage, cfg, refs.q0.shape[1], ints, floats, data_a, data_b, work)
    combine(y, h, b, K, new)
    return 0.0, cfg.fsal, K.shape[0] - first_stage


def _attempt_adaptive(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                      model, method, cfg, st, w, pred, refs, sx, step):
    first_stage = 1 if cached else 0
    rk_stages(kind, y, h, A, K, stage, first_stage, cfg, refs.q0.shape[1], ints, floats, data_a, data_b, work)
    combine(y, h, b, K, new)
    return error_norm(y, new, h, b, method.b_err, K, cfg.rtol, cfg.atol), cfg.fsal, K.shape[0] - first_stage


def _attempt_implicit(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                      model, method, cfg, st, w, pred, refs, sx, step):
    # one step of h, else 2, 4, … substeps of h/n from the same start
    n_state = y.shape[0]
    nq = refs.q0.shape[1]
    n_sub = 1
    evals = 0
    while n_sub <= (1 << cfg.max_halvings):
        for j in range(n_state):
            w.start[j] = y[j]
        solved = True
        for _sub in range(n_sub):
            ok = implicit_step(kind, w.start, h / n_sub, A, b, K, w.K_new, stage, new, cfg.solve_tol,
                               cfg.max_solve_iters, cfg, nq, ints, floats, data_a, data_b, work, w.result)
            evals += int(w.result[2])
            st.n_solve_iters[s] += int(w.result[0])
            if not ok:
                solved = False
                break
            st.max_solve_iters[s] = max(st.max_solve_iters[s], int(w.result[0]))
            st.solve_residual[s] = max(st.solve_residual[s], w.result[1])
            for j in range(n_state):
                w.start[j] = w.new[j]
        if solved:
            if n_sub > 1:
                st.n_retried[s] += 1
            return 0.0, False, evals
        n_sub *= 2
    st.solve_residual[s] = max(st.solve_residual[s], w.result[1])
    return np.inf, False, evals


def _attempt_splitting(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                       model, method, cfg, st, w, pred, refs, sx, step):
    for j in range(y.shape[0]):
        w.new[j] = y[j]
    # a minibatch run draws a batch per step, so the last kick's gradient (the previous batch's) is not reused
    evals, cached = splitting_step(kind, w.new, h, method.ops, method.weights, cfg.n_params, refs.q0.shape[1],
                                   cfg.tau, cfg.weight_decay, cfg.track_law, w.grad, cached and cfg.batch_size <= 0,
                                   w.tmp, w.qa, w.qb, w.qc, model.ints, floats, data_a, data_b, w.work,
                                   _ou_noise(sx, cfg, step, pred, refs, w))
    return 0.0, cached, evals


def _attempt_algorithm(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                       model, method, cfg, st, w, pred, refs, sx, step):
    for j in range(y.shape[0]):
        w.new[j] = y[j]
    momentum_algorithm_step(kind, w.new, cfg.eta, cfg.beta, cfg.weight_decay, cfg.nesterov, cfg.n_params, w.grad,
                            w.look, ints, floats, data_a, data_b, work)
    if cfg.track_law:
        _algorithm_law(kind, y, w.new, cfg, refs.group_off, refs.group_degree, ints, floats, w.tmp, w.qa, w.qb,
                       w.qc, w.qg)
    return 0.0, False, 1


@njit(cache=True, fastmath=FASTMATH)
def _algorithm_law(kind, y, new, cfg, group_off, group_degree, ints, floats, tmp, q_k, q_prev, k_k, k_next):
    """Advance the accumulator a of heavy ball's / Nesterov's exact discrete law (y = [θ_k, θ_{k−1}, a],
    new = [θ_{k+1}, θ_k, a]).

    For a charge q of the model's symmetry, with v_k = θ_k − θ_{k−1}, Q_k = q(θ_k), K_k = q(v_k) and
    β, η, λ of the step, the symmetry (q's bilinear form B has B(θ, ∇L(θ)) = 0) makes the change of a
    quadratic charge a function of charges of states and increments alone (theory.md §3 and §6):

        heavy ball  ΔQ_{k+1} − βΔQ_k = βK_k + K_{k+1} − 2ηλQ_k
        Nesterov    ΔQ_{k+1} − βΔQ_k = (1 − 2ηλ)(β + β²)K_k + q(u_k) − 2ηλQ_k − 2ηλβΔQ_k,
                    u_k = θ_{k+1} − θ_k − βv_k (the plain gradient step from the look-ahead point)

    and of a linear charge ΔL_{k+1} − βΔL_k = −ηλL_k (heavy ball), −ηλL_k − ηλβΔL_k (Nesterov).
    So J_k = q(θ_k) − βq(θ_{k−1}) + a_k is constant when a accumulates minus the right-hand sides:
    |J(t) − J(0)| is the law's residual, round-off where the symmetry holds, the discrete analogue of
    momentum flow's τQ̈ + Q̇ + 2λQ = 2τQ(θ̇)."""
    P = cfg.n_params
    beta = cfg.beta
    el = cfg.eta * cfg.weight_decay
    nq = q_k.shape[0]
    charges(kind, y[:P], q_k, ints, floats)
    charges(kind, y[P:2 * P], q_prev, ints, floats)
    for j in range(P):
        tmp[j] = y[j] - y[P + j]
    charges(kind, tmp, k_k, ints, floats)
    for j in range(P):  # heavy ball: v_{k+1}; Nesterov: u_k = v_{k+1} − βv_k
        tmp[j] = (new[j] - y[j]) - (beta * (y[j] - y[P + j]) if cfg.nesterov else 0.0)
    charges(kind, tmp, k_next, ints, floats)
    for grp in range(group_degree.shape[0]):
        quadratic = group_degree[grp] == 2
        for k in range(group_off[grp], min(group_off[grp + 1], nq)):
            dq = q_k[k] - q_prev[k]
            if quadratic:
                rhs = 2.0 * el * q_k[k]
                if cfg.nesterov:
                    rhs += 2.0 * el * beta * dq - (1.0 - 2.0 * el) * (beta + beta * beta) * k_k[k] - k_next[k]
                else:
                    rhs -= beta * k_k[k] + k_next[k]
            elif group_degree[grp] == 1:
                rhs = el * q_k[k] + (el * beta * dq if cfg.nesterov else 0.0)
            else:  # a user's function charge (degree 0): no discrete law (0 keeps the state finite;
                rhs = 0.0  # the recorded invariant is NaN, record.py)
            new[2 * P + k] = y[2 * P + k] + rhs


def _attempt_optimizer(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                       model, method, cfg, st, w, pred, refs, sx, step):
    # the learning rate is the step h; op code and (β₁, β₂, ε) are the method's data (optimizers.py)
    for j in range(y.shape[0]):
        w.new[j] = y[j]
    optimizer_step(kind, w.new, method.ops[0], h, method.weights[0], method.weights[1], method.weights[2],
                   cfg.weight_decay, cfg.n_params, w.grad, ints, floats, data_a, data_b, work)
    return 0.0, False, 1


_ATTEMPTS = {SCHEME_EXPLICIT: _attempt_explicit, SCHEME_ADAPTIVE: _attempt_adaptive,
             SCHEME_IMPLICIT: _attempt_implicit, SCHEME_SPLITTING: _attempt_splitting,
             SCHEME_ALGORITHM: _attempt_algorithm, SCHEME_OPTIMIZER: _attempt_optimizer}


def _attempt(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
             model, method, cfg, st, w, pred, refs, sx, step):
    """One step attempt of ``scheme`` from y into w.new (stand-in: the overload replaces it).

    The arrays every step uses come unpacked (once per seed, not per step: taking an array out of a
    named bundle costs a reference-count update, measurable at this step rate); the bundles carry
    the rest."""


@overload(_attempt, prefer_literal=True, jit_options={"cache": True, "fastmath": FASTMATH})
def _ol_attempt(scheme, kind, s, y, h, cached, K, stage, new, work, ints, floats, data_a, data_b, A, b,
                model, method, cfg, st, w, pred, refs, sx, step):
    if not isinstance(scheme, types.IntegerLiteral):
        raise TypeError("the scheme must be a compile-time constant")
    return _ATTEMPTS[scheme.literal_value]


def _first_step(scheme, kind, y, model, cfg, w, t_span, nq):
    """Adaptive: Hairer's starting step (step_control.initial_step), which also fills K[0]. Others: 0."""


@overload(_first_step, prefer_literal=True, jit_options={"cache": True})
def _ol_first_step(scheme, kind, y, model, cfg, w, t_span, nq):
    if isinstance(scheme, types.IntegerLiteral) and scheme.literal_value != SCHEME_ADAPTIVE:
        return lambda scheme, kind, y, model, cfg, w, t_span, nq: 0.0
    return lambda scheme, kind, y, model, cfg, w, t_span, nq: initial_step(
        kind, y, w.K[0], cfg.error_order, cfg.rtol, cfg.atol, t_span, cfg, nq, model.ints, model.floats,
        model.data_a, model.data_b, w.work, w.stage, w.new)


# ---- stochastic dynamics (stochastic.py), behind overloads on the model data's type: a run whose
# ``points_x`` is 2-D (minibatches or noise) compiles them, any other compiles no-ops ----

def _is_stochastic(model_type):
    if not isinstance(model_type, types.BaseNamedTuple):
        return False
    return model_type.types[ModelData._fields.index("points_x")].ndim == 2


def _stochastic_setup(kind, s, model, cfg, st, refs, data_a, data_b, floats):
    """This seed's minibatch scratch, keys and noise buffer (stand-in: the overload replaces it)."""


def _stochastic_setup_impl(kind, s, model, cfg, st, refs, data_a, data_b, floats):
    mlp = (kind == MODEL_MLP or kind == MODEL_LORA or kind == MODEL_CUSTOM or kind == MODEL_ATTENTION
           or kind == MODEL_RESIDUAL)  # models that read the data points (a batch of them)
    perm, swaps, held, idx, batch_a, batch_b, batch_floats = new_batch_arrays(
        model.points_x, model.points_y, cfg.batch_size, mlp, data_a, data_b, floats)
    one = new_batch_arrays(model.points_x[:0], model.points_y[:0], 1, mlp, data_a, data_b, floats)
    noisy = cfg.temperature > 0.0
    return (perm, swaps, held, idx, batch_a, batch_b, batch_floats,
            stream_key(cfg.root_seed, MINIBATCH_STREAM, st.seed_id[s]),
            stream_key(cfg.root_seed, NOISE_STREAM, st.seed_id[s]),
            np.empty(cfg.n_params if noisy else 0), np.sqrt(2.0 * cfg.h * cfg.temperature),
            cfg.split_drift and refs.watch_slot[s] >= 0, one[3], one[4], one[5], one[6], mlp, noisy)


@overload(_stochastic_setup, prefer_literal=True, jit_options={"cache": True})
def _ol_stochastic_setup(kind, s, model, cfg, st, refs, data_a, data_b, floats):
    if _is_stochastic(model):
        return _stochastic_setup_impl
    return lambda kind, s, model, cfg, st, refs, data_a, data_b, floats: 0


def _step_data(kind, sx, s, st, y, step, model, cfg, floats, data_a, data_b, w, work, h, lam, group_off,
               group_degree):
    """(floats, data_a, data_b) of this step: the minibatch's, drawn by (root seed, seed id, step), or the
    full data; first accumulates the expected drift's parts where tracked (stand-in: the overload)."""


def _step_data_impl(kind, sx, s, st, y, step, model, cfg, floats, data_a, data_b, w, work, h, lam, group_off,
                    group_degree):
    (perm, swaps, held, idx, batch_a, batch_b, batch_floats, batch_key, noise_key, noise, noise_scale, split,
     one_idx, one_a, one_b, one_floats, mlp, noisy) = sx
    if split:  # the expected drift's two parts at θ_k (before the step)
        _accumulate_split(kind, y, st.split[s], model, one_a, one_b, one_floats, one_idx, mlp, w.look, w.tmp,
                          w.qa, w.qb, w.qc, work, h, lam, cfg.batch_factor, group_off, group_degree)
    if cfg.batch_size <= 0:
        return floats, data_a, data_b
    batch_indices(batch_key, cfg.sampling, step, cfg.batch_size, perm, swaps, held, idx)
    if mlp:
        gather_batch(model.points_x, model.points_y, idx, cfg.batch_size, batch_a, batch_b)
    else:
        linear_batch_moments(model.points_x, model.points_y, idx, cfg.batch_size, batch_a, batch_b, batch_floats)
    return batch_floats, batch_a, batch_b


@overload(_step_data, prefer_literal=True, inline="always", jit_options={"cache": True})
def _ol_step_data(kind, sx, s, st, y, step, model, cfg, floats, data_a, data_b, w, work, h, lam, group_off,
                  group_degree):
    if _is_stochastic(model):
        return _step_data_impl
    return (lambda kind, sx, s, st, y, step, model, cfg, floats, data_a, data_b, w, work, h, lam, group_off,
            group_degree: (floats, data_a, data_b))


def _add_noise(kind, sx, y, new, K, h, method, cfg, step, ints, floats, data_a, data_b, w, work):
    """Overdamped Langevin: new += √(2hT) ξ of this step (Euler–Maruyama, ``method.ops[0]`` = 0), or the
    stochastic Heun step (``method.ops[0]`` = 1) from the Euler predictor in ``new``; returns the
    gradient evaluations it made (stand-in: the overload replaces it)."""


LANGEVIN_EULER_MARUYAMA, LANGEVIN_STOCHASTIC_HEUN = 0, 1


def _add_noise_impl(kind, sx, y, new, K, h, method, cfg, step, ints, floats, data_a, data_b, w, work):
    noise, noisy = sx[9], sx[17]
    if not noisy or cfg.dyn == DYN_MOMENTUM:  # underdamped: the noise is in the splitting's damp steps
        return 0
    gaussian_noise(sx[8], step, cfg.noise_substeps, sx[10], noise)
    P = noise.shape[0]
    if method.ops[0] != LANGEVIN_STOCHASTIC_HEUN:
        for j in range(P):
            new[j] += noise[j]
        return 0
    # Kloeden & Platen's explicit weak order-2 scheme for additive noise (their (15.1.1) with a constant
    # diffusion): ȳ = y + h a(y) + ΔW, y' = y + (h/2)(a(y) + a(ȳ)) + ΔW, a = −∇L − λθ, ΔW = √(2hT) ξ;
    # ``new`` holds the Euler predictor y + h a(y) and K[0] = a(y)
    lam = cfg.weight_decay
    bar = w.tmp
    for j in range(P):
        bar[j] = new[j] + noise[j]
    loss_grad(kind, bar, w.pv, ints, floats, data_a, data_b, work)
    for j in range(P):
        new[j] = y[j] + 0.5 * h * (K[0, j] - w.pv[j] - lam * bar[j]) + noise[j]
    return 1


@overload(_add_noise, prefer_literal=True, inline="always", jit_options={"cache": True})
def _ol_add_noise(kind, sx, y, new, K, h, method, cfg, step, ints, floats, data_a, data_b, w, work):
    if isinstance(sx, types.BaseTuple):
        return _add_noise_impl
    return lambda kind, sx, y, new, K, h, method, cfg, step, ints, floats, data_a, data_b, w, work: 0


def _ou_noise(sx, cfg, step, pred, refs, w):
    """Stochastic momentum runs (underdamped Langevin, minibatches): what the splitting's damp steps need to
    become exact Ornstein–Uhlenbeck steps (noise key, buffer, temperature, step, the rung's noise substeps)
    and what its per-trajectory law accumulates into (the seed's predictions, charge groups, a buffer for
    the isometric charges; splitting._law_kick), or 0 for a deterministic run (stand-in: the overload)."""


@overload(_ou_noise, prefer_literal=True, inline="always", jit_options={"cache": True})
def _ol_ou_noise(sx, cfg, step, pred, refs, w):
    if isinstance(sx, types.BaseTuple):
        return lambda sx, cfg, step, pred, refs, w: (sx[8], sx[9], cfg.temperature if sx[17] else 0.0, step,
                                                     cfg.noise_substeps, pred, refs.group_off, refs.group_degree,
                                                     w.jv)
    return lambda sx, cfg, step, pred, refs, w: 0


def _noisy_law(kind, sx, pred, y, g, w, h, lam, ints, floats, group_off, group_degree):
    """Accumulate the exact law with the noise term when there is noise; False otherwise (stand-in)."""


def _noisy_law_impl(kind, sx, pred, y, g, w, h, lam, ints, floats, group_off, group_degree):
    if not sx[17]:
        return False
    _accumulate_noisy_law(kind, pred, y, g, sx[9], w.look, w.qa, w.qc, h, lam, ints, floats, group_off,
                          group_degree)
    return True


@overload(_noisy_law, prefer_literal=True, inline="always", jit_options={"cache": True})
def _ol_noisy_law(kind, sx, pred, y, g, w, h, lam, ints, floats, group_off, group_degree):
    if isinstance(sx, types.BaseTuple):
        return _noisy_law_impl
    return lambda kind, sx, pred, y, g, w, h, lam, ints, floats, group_off, group_degree: False


def _record_split(sx, s, js, st, refs, rec):
    """|accumulated discretisation part| and |accumulated noise part| per model-charge group, where
    tracked (stand-in: the overload replaces it)."""


def _record_split_impl(sx, s, js, st, refs, rec):
    if not sx[11]:
        return
    split = st.split[s]
    nq = refs.q0.shape[1]
    for grp in range(refs.group_degree.shape[0]):
        a2 = 0.0
        b2 = 0.0
        for k in range(refs.group_off[grp], refs.group_off[grp + 1]):
            a2 += split[k] * split[k]
            b2 += split[nq + k] * split[nq + k]
        rec.discretisation[s, js, grp] = np.sqrt(a2)
        rec.noise[s, js, grp] = np.sqrt(b2)


@overload(_record_split, prefer_literal=True, jit_options={"cache": True})
def _ol_record_split(sx, s, js, st, refs, rec):
    if isinstance(sx, types.BaseTuple):
        return _record_split_impl
    return lambda sx, s, js, st, refs, rec: None


@njit(cache=True)
def _integrate_seed(kind, scheme, s, st, save_times, first, last, model, method, cfg, refs, rec):
    if st.status[s] != STATUS_OK:
        _mark_unrecorded(s, first, last, refs, rec)
        return
    adaptive = scheme == SCHEME_ADAPTIVE
    algorithm = scheme == SCHEME_ALGORITHM
    n_state = st.y.shape[1]
    P = cfg.n_params
    nq = refs.q0.shape[1]
    w = new_work(kind, model, cfg, refs, method.b.shape[0], n_state)
    y = st.y[s].copy()
    K, stage, new, work, g, qg = w.K, w.stage, w.new, w.work, w.g, w.qg
    group_off, group_degree = refs.group_off, refs.group_degree
    track_gd_law = cfg.track_gd_law
    lam = cfg.weight_decay
    n_grad = 0  # counters kept in locals in the step loop, added to the caller's arrays after it
    n_accepted = 0
    n_rejected = 0
    ints, floats, data_a, data_b = model.ints, model.floats, model.data_a, model.data_b
    A, b = method.A, method.b
    pred = st.predicted[s]
    t = st.t[s]
    h = st.h_next[s]
    cached = False
    # stochastic dynamics (stochastic.py): this seed's minibatch scratch, keys and noise buffer; only a
    # stochastic run (2-D points in the model data) compiles them
    sx = _stochastic_setup(kind, s, model, cfg, st, refs, data_a, data_b, floats)

    for js in range(first, last):
        t_end = save_times[js]
        if adaptive and h <= 0.0 and t_end > t:  # first step of this seed: choose it
            n_grad += 2
            h = _first_step(scheme, kind, y, model, cfg, w, t_end - t, nq)
            cached = True
        # One step loop for fixed and adaptive steps: a single call site of the stepper, so the
        # gradient kernel is inlined (and optimised by LLVM) once — compile time.
        steps_left = 0 if adaptive else int(np.round((t_end - t) / cfg.h))
        while (t < t_end) if adaptive else (steps_left > 0):
            h_try = cfg.h
            if adaptive:
                if st.n_accepted[s] + st.n_rejected[s] + n_accepted + n_rejected >= cfg.max_steps:
                    st.status[s] = STATUS_MAX_STEPS
                    break
                h_try = min(h, t_end - t)
                if h_try < MIN_RELATIVE_STEP * max(1.0, abs(t)):
                    st.status[s] = STATUS_STEP_UNDERFLOW
                    break
            step_floats, step_a, step_b = _step_data(kind, sx, s, st, y, st.n_accepted[s] + n_accepted, model, cfg,
                                                     floats, data_a, data_b, w, work, h_try, lam, group_off,
                                                     group_degree)
            step = st.n_accepted[s] + n_accepted
            err, cached_after, evals = _attempt(scheme, kind, s, y, h_try, cached, K, stage, new, work, ints,
                                                step_floats, step_a, step_b, A, b, model, method, cfg, st, w, pred,
                                                refs, sx, step)
            n_grad += evals
            # overdamped Langevin: + √(2hT) ξ (Euler–Maruyama), or the stochastic Heun corrector
            n_grad += _add_noise(kind, sx, y, new, K, h_try, method, cfg, step, ints, step_floats, step_a, step_b, w,
                                 work)
            # gradient descent: K[0] = −∇L − λθ at the step's start (the batch's gradient); a stochastic
            # splitting run accumulates its law inside the step (splitting._law_kick)
            if track_gd_law and scheme != SCHEME_SPLITTING:
                for j in range(P):
                    g[j] = -K[0, j] - lam * y[j]
                if not _noisy_law(kind, sx, pred, y, g, w, h_try, lam, ints, floats, group_off, group_degree):
                    _accumulate_gd_law(kind, pred, g, qg, h_try, lam, ints, floats, group_off, group_degree)
            if err == np.inf and not adaptive:
                st.status[s] = STATUS_SOLVE_FAILED
                break
            if err <= 1.0:
                if not within_bound(new, cfg.divergence_bound):
                    st.status[s] = STATUS_DIVERGED
                    st.t_diverged[s] = t + h_try
                    break
                y[:] = new
                if adaptive:
                    t = t_end if h_try == t_end - t else t + h_try
                else:
                    t += h_try
                    steps_left -= 1
                n_accepted += 1
                if cfg.fsal:  # the last stage was evaluated at the new y, bit for bit (A[-1] = b)
                    K[0, :] = K[K.shape[0] - 1]
                cached = cached_after
            else:
                n_rejected += 1
                cached = True  # y unchanged, so K[0] = f(y) is still good
            if adaptive:
                h = h_try * step_factor(err, cfg.error_order, err <= 1.0)
        if st.status[s] != STATUS_OK:
            _mark_unrecorded(s, js, last, refs, rec)
            break
        t = t_end
        _record(kind, algorithm, s, js, y, t, model, cfg, refs, rec, w, pred)
        _record_split(sx, s, js, st, refs, rec)

    st.y[s, :] = y
    st.t[s] = t
    st.h_next[s] = h
    st.n_grad[s] += n_grad
    st.n_accepted[s] += n_accepted
    st.n_rejected[s] += n_rejected
