"""The compiled entry points of the driver: one function per (model kind, scheme) and per helper.

numba compiles and caches a function per module-level definition, and ``kind`` and ``scheme`` must be
compile-time literals for the model dispatch (models.py) to pick one model's code; so each pair gets a
two-line entry that passes them as constants, and the tables below map (kind, scheme) to it. The
integration itself is ``driver._integrate_seed``. Adding a model kind: one entry per scheme and one per
ensemble helper here, and its kernels in models.py.
"""

import os

import numpy as np
from numba import njit

from .driver import _integrate_seed
from .extras import extra_values
from .fields import DYN_MOMENTUM
from .layout import (MODEL_ATTENTION, MODEL_CUSTOM, MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE, MODEL_LORA, MODEL_MLP,
                     MODEL_RESIDUAL)
from .models import charges, loss_grad, n_isometric, work_size
from .record import (SCHEME_ADAPTIVE, SCHEME_ALGORITHM, SCHEME_EXPLICIT, SCHEME_IMPLICIT, SCHEME_OPTIMIZER,
                     SCHEME_SPLITTING, _velocity, state_charges)


# record.state_charges inlined into the per-kind entries below (same source, neither has fastmath flags):
# no compiled function of its own for LLVM to optimise and emit again inside each entry (cold start)
_state_charges_inline = njit(cache=True, inline="always")(state_charges.py_func)


@njit(cache=True, nogil=True, inline="always")
def _integrate(kind, scheme, args):  # inlined into each entry (saves a compile level)
    """Advance seeds seed_lo … seed_hi − 1 through save_times[first:last]; see the module docstring.

    Serial and GIL-free: the API runs disjoint seed ranges on a thread pool. (A numba ``prange``
    here doubled the compile time for the same run time, and compile time is part of performance.)
    """
    (seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec) = args
    for s in range(seed_lo, seed_hi):
        _integrate_seed(kind, scheme, s, st, save_times, first, last, model, method, cfg, refs, rec)


@njit(cache=True, inline="always")
def _ensemble_state_charges(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """(q, J, I) of every seed's state (initial and final values)."""
    (y, algorithm, cfg, group_off, group_degree, ints, floats) = args
    n = y.shape[0]
    P = cfg.n_params
    nq = group_off[group_off.shape[0] - 1]
    nj = n_isometric(kind, ints)
    q = np.empty((n, nq))
    J = np.full((n, nj), np.nan)
    I = np.full((n, nq), np.nan)
    for s in range(n):
        _state_charges_inline(kind, y[s], algorithm, cfg, group_off, group_degree, ints, floats, q[s], J[s], I[s],
                              np.empty(P), np.empty(P), np.empty(nq), np.empty(nq))
    return q, J, I


@njit(cache=True, inline="always")
def _ensemble_extras(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """The extra quantities (data-symmetry charges, energy; extras.py) of every seed's state."""
    (y, algorithm, cfg, gens, nx, ints, floats, data_a, data_b) = args
    n = y.shape[0]
    P = cfg.n_params
    momentum = cfg.dyn == DYN_MOMENTUM
    out = np.empty((n, nx))
    work = np.empty(work_size(kind, ints, data_a))
    g = np.empty(P)
    pv = np.empty(P)
    for s in range(n):
        loss = loss_grad(kind, y[s, :P], g, ints, floats, data_a, data_b, work)
        if momentum:
            _velocity(y[s], algorithm, P, cfg.h, pv)
        extra_values(cfg, momentum, y[s], loss, g, pv, gens, ints, out[s])
    return out


@njit(cache=True, inline="always")
def _ensemble_charges(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """q(θ) for every row."""
    (theta, ints, floats, nq) = args
    out = np.empty((theta.shape[0], nq))
    for s in range(theta.shape[0]):
        charges(kind, theta[s], out[s], ints, floats)
    return out


@njit(cache=True, inline="always")
def _ensemble_loss_grad(kind, args):  # inlined into each per-kind entry (saves a compile level)
    """Loss and gradient of every row (initial velocities, tests, baselines)."""
    (theta, ints, floats, data_a, data_b) = args
    n_seeds, P = theta.shape
    loss = np.empty(n_seeds)
    grad = np.empty((n_seeds, P))
    wsize = work_size(kind, ints, data_a)
    for s in range(n_seeds):
        work = np.empty(wsize)
        loss[s] = loss_grad(kind, theta[s], grad[s], ints, floats, data_a, data_b, work)
    return loss, grad


# ---- entries: one compiled function per (model kind, scheme), both constants (see models.py) ----

@njit(cache=True, nogil=True)
def _integrate_deep_linear_explicit(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_adaptive(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_implicit(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_splitting(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_algorithm(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_optimizer(*args):
    return _integrate(MODEL_DEEP_LINEAR, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_explicit(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_adaptive(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_implicit(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_splitting(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_algorithm(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_deep_linear_input_side_optimizer(*args):
    return _integrate(MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_explicit(*args):
    return _integrate(MODEL_MLP, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_adaptive(*args):
    return _integrate(MODEL_MLP, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_implicit(*args):
    return _integrate(MODEL_MLP, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_splitting(*args):
    return _integrate(MODEL_MLP, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_algorithm(*args):
    return _integrate(MODEL_MLP, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_mlp_optimizer(*args):
    return _integrate(MODEL_MLP, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_custom_explicit(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_custom_adaptive(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_custom_implicit(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_custom_splitting(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_custom_algorithm(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_custom_optimizer(*args):
    return _integrate(MODEL_CUSTOM, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_attention_explicit(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_attention_adaptive(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_attention_implicit(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_attention_splitting(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_attention_algorithm(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_attention_optimizer(*args):
    return _integrate(MODEL_ATTENTION, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_lora_explicit(*args):
    return _integrate(MODEL_LORA, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_lora_adaptive(*args):
    return _integrate(MODEL_LORA, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_lora_implicit(*args):
    return _integrate(MODEL_LORA, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_lora_splitting(*args):
    return _integrate(MODEL_LORA, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_lora_algorithm(*args):
    return _integrate(MODEL_LORA, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_lora_optimizer(*args):
    return _integrate(MODEL_LORA, SCHEME_OPTIMIZER, args)


@njit(cache=True, nogil=True)
def _integrate_residual_explicit(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_EXPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_residual_adaptive(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_ADAPTIVE, args)


@njit(cache=True, nogil=True)
def _integrate_residual_implicit(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_IMPLICIT, args)


@njit(cache=True, nogil=True)
def _integrate_residual_splitting(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_SPLITTING, args)


@njit(cache=True, nogil=True)
def _integrate_residual_algorithm(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_ALGORITHM, args)


@njit(cache=True, nogil=True)
def _integrate_residual_optimizer(*args):
    return _integrate(MODEL_RESIDUAL, SCHEME_OPTIMIZER, args)


_INTEGRATE = {
    (MODEL_DEEP_LINEAR, SCHEME_EXPLICIT): _integrate_deep_linear_explicit,
    (MODEL_DEEP_LINEAR, SCHEME_ADAPTIVE): _integrate_deep_linear_adaptive,
    (MODEL_DEEP_LINEAR, SCHEME_IMPLICIT): _integrate_deep_linear_implicit,
    (MODEL_DEEP_LINEAR, SCHEME_SPLITTING): _integrate_deep_linear_splitting,
    (MODEL_DEEP_LINEAR, SCHEME_ALGORITHM): _integrate_deep_linear_algorithm,
    (MODEL_DEEP_LINEAR, SCHEME_OPTIMIZER): _integrate_deep_linear_optimizer,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_EXPLICIT): _integrate_deep_linear_input_side_explicit,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_ADAPTIVE): _integrate_deep_linear_input_side_adaptive,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_IMPLICIT): _integrate_deep_linear_input_side_implicit,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_SPLITTING): _integrate_deep_linear_input_side_splitting,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_ALGORITHM): _integrate_deep_linear_input_side_algorithm,
    (MODEL_DEEP_LINEAR_INPUT_SIDE, SCHEME_OPTIMIZER): _integrate_deep_linear_input_side_optimizer,
    (MODEL_MLP, SCHEME_EXPLICIT): _integrate_mlp_explicit,
    (MODEL_MLP, SCHEME_ADAPTIVE): _integrate_mlp_adaptive,
    (MODEL_MLP, SCHEME_IMPLICIT): _integrate_mlp_implicit,
    (MODEL_MLP, SCHEME_SPLITTING): _integrate_mlp_splitting,
    (MODEL_MLP, SCHEME_ALGORITHM): _integrate_mlp_algorithm,
    (MODEL_MLP, SCHEME_OPTIMIZER): _integrate_mlp_optimizer,
    (MODEL_CUSTOM, SCHEME_EXPLICIT): _integrate_custom_explicit,
    (MODEL_CUSTOM, SCHEME_ADAPTIVE): _integrate_custom_adaptive,
    (MODEL_CUSTOM, SCHEME_IMPLICIT): _integrate_custom_implicit,
    (MODEL_CUSTOM, SCHEME_SPLITTING): _integrate_custom_splitting,
    (MODEL_CUSTOM, SCHEME_ALGORITHM): _integrate_custom_algorithm,
    (MODEL_CUSTOM, SCHEME_OPTIMIZER): _integrate_custom_optimizer,
    (MODEL_ATTENTION, SCHEME_EXPLICIT): _integrate_attention_explicit,
    (MODEL_ATTENTION, SCHEME_ADAPTIVE): _integrate_attention_adaptive,
    (MODEL_ATTENTION, SCHEME_IMPLICIT): _integrate_attention_implicit,
    (MODEL_ATTENTION, SCHEME_SPLITTING): _integrate_attention_splitting,
    (MODEL_ATTENTION, SCHEME_ALGORITHM): _integrate_attention_algorithm,
    (MODEL_ATTENTION, SCHEME_OPTIMIZER): _integrate_attention_optimizer,
    (MODEL_LORA, SCHEME_EXPLICIT): _integrate_lora_explicit,
    (MODEL_LORA, SCHEME_ADAPTIVE): _integrate_lora_adaptive,
    (MODEL_LORA, SCHEME_IMPLICIT): _integrate_lora_implicit,
    (MODEL_LORA, SCHEME_SPLITTING): _integrate_lora_splitting,
    (MODEL_LORA, SCHEME_ALGORITHM): _integrate_lora_algorithm,
    (MODEL_LORA, SCHEME_OPTIMIZER): _integrate_lora_optimizer,
    (MODEL_RESIDUAL, SCHEME_EXPLICIT): _integrate_residual_explicit,
    (MODEL_RESIDUAL, SCHEME_ADAPTIVE): _integrate_residual_adaptive,
    (MODEL_RESIDUAL, SCHEME_IMPLICIT): _integrate_residual_implicit,
    (MODEL_RESIDUAL, SCHEME_SPLITTING): _integrate_residual_splitting,
    (MODEL_RESIDUAL, SCHEME_ALGORITHM): _integrate_residual_algorithm,
    (MODEL_RESIDUAL, SCHEME_OPTIMIZER): _integrate_residual_optimizer,
}


def integrate(kind, scheme, *args):
    """Run ``_integrate`` compiled for model ``kind`` and ``scheme`` (plain ints from the Python side),
    or the seed-interleaved fast path (lanes.py) or the custom model's (custom_fast.py) where it applies."""
    general = _INTEGRATE[(kind, scheme)]
    # lanes.lanes_applicable decides; this gate only keeps other runs from importing (and compiling) it
    if (kind == MODEL_DEEP_LINEAR and scheme in (SCHEME_EXPLICIT, SCHEME_SPLITTING)
            and os.environ.get("NOETHER_SIM_LANES") != "0"):
        from .lanes import lanes_applicable, lanes_integrate

        if lanes_applicable(kind, scheme, args):
            return lanes_integrate(args, general)
    if kind == MODEL_CUSTOM and scheme == SCHEME_EXPLICIT and os.environ.get("NOETHER_SIM_CUSTOM_FAST") != "0":
        from .custom_fast import custom_fast_applicable, custom_fast_integrate

        if custom_fast_applicable(kind, scheme, args):
            return custom_fast_integrate(args)
    return general(*args)


@njit(cache=True)
def _ensemble_state_charges_deep_linear(*args):
    return _ensemble_state_charges(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_state_charges_deep_linear_input_side(*args):
    return _ensemble_state_charges(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_state_charges_mlp(*args):
    return _ensemble_state_charges(MODEL_MLP, args)


@njit(cache=True)
def _ensemble_state_charges_custom(*args):
    return _ensemble_state_charges(MODEL_CUSTOM, args)


@njit(cache=True)
def _ensemble_state_charges_attention(*args):
    return _ensemble_state_charges(MODEL_ATTENTION, args)


@njit(cache=True)
def _ensemble_state_charges_lora(*args):
    return _ensemble_state_charges(MODEL_LORA, args)


@njit(cache=True)
def _ensemble_state_charges_residual(*args):
    return _ensemble_state_charges(MODEL_RESIDUAL, args)


_ENSEMBLE_STATE_CHARGES = {
    MODEL_DEEP_LINEAR: _ensemble_state_charges_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_state_charges_deep_linear_input_side,
    MODEL_MLP: _ensemble_state_charges_mlp,
    MODEL_CUSTOM: _ensemble_state_charges_custom,
    MODEL_ATTENTION: _ensemble_state_charges_attention,
    MODEL_LORA: _ensemble_state_charges_lora,
    MODEL_RESIDUAL: _ensemble_state_charges_residual,
}


def ensemble_state_charges(kind, *args):
    """(q, J, I) per seed, compiled for model ``kind``: ``(y, algorithm, settings, nq, ints, floats)``."""
    return _ENSEMBLE_STATE_CHARGES[kind](*args)


@njit(cache=True)
def _ensemble_extras_deep_linear(*args):
    return _ensemble_extras(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_extras_deep_linear_input_side(*args):
    return _ensemble_extras(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_extras_mlp(*args):
    return _ensemble_extras(MODEL_MLP, args)


@njit(cache=True)
def _ensemble_extras_custom(*args):
    return _ensemble_extras(MODEL_CUSTOM, args)


@njit(cache=True)
def _ensemble_extras_attention(*args):
    return _ensemble_extras(MODEL_ATTENTION, args)


@njit(cache=True)
def _ensemble_extras_lora(*args):
    return _ensemble_extras(MODEL_LORA, args)


@njit(cache=True)
def _ensemble_extras_residual(*args):
    return _ensemble_extras(MODEL_RESIDUAL, args)


_ENSEMBLE_EXTRAS = {
    MODEL_DEEP_LINEAR: _ensemble_extras_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_extras_deep_linear_input_side,
    MODEL_MLP: _ensemble_extras_mlp,
    MODEL_CUSTOM: _ensemble_extras_custom,
    MODEL_ATTENTION: _ensemble_extras_attention,
    MODEL_LORA: _ensemble_extras_lora,
    MODEL_RESIDUAL: _ensemble_extras_residual,
}


def ensemble_extras(kind, *args):
    """Extra quantities per seed, compiled for model ``kind``:
    ``(y, algorithm, settings, gens, nx, ints, floats, data_a, data_b)``. With none to record (``nx`` 0,
    most runs) the empty result is made here: nothing is compiled or loaded for it."""
    if args[4] == 0:
        return np.empty((args[0].shape[0], 0))
    return _ENSEMBLE_EXTRAS[kind](*args)


@njit(cache=True)
def _ensemble_charges_deep_linear(*args):
    return _ensemble_charges(MODEL_DEEP_LINEAR, args)


@njit(cache=True)
def _ensemble_charges_deep_linear_input_side(*args):
    return _ensemble_charges(MODEL_DEEP_LINEAR_INPUT_SIDE, args)


@njit(cache=True)
def _ensemble_charges_mlp(*args):
    return _ensemble_charges(MODEL_MLP, args)


@njit(cache=True)
def _ensemble_charges_custom(*args):
    return _ensemble_charges(MODEL_CUSTOM, args)


@njit(cache=True)
def _ensemble_charges_attention(*args):
    return _ensemble_charges(MODEL_ATTENTION, args)


@njit(cache=True)
def _ensemble_charges_lora(*args):
    return _ensemble_charges(MODEL_LORA, args)


@njit(cache=True)
def _ensemble_charges_residual(*args):
    return _ensemble_charges(MODEL_RESIDUAL, args)


_ENSEMBLE_CHARGES = {
    MODEL_DEEP_LINEAR: _ensemble_charges_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_charges_deep_linear_input_side,
    MODEL_MLP: _ensemble_charges_mlp,
    MODEL_CUSTOM: _ensemble_charges_custom,
    MODEL_ATTENTION: _ensemble_charges_attention,
    MODEL_LORA: _ensemble_charges_lora,
    MODEL_RESIDUAL: _ensemble_charges_residual,
}


def ensemble_charges(kind, *args):
    """The model's charges of every row, compiled for model ``kind``: ``(theta, ints, floats, nq)``."""
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


@njit(cache=True)
def _ensemble_loss_grad_custom(*args):
    return _ensemble_loss_grad(MODEL_CUSTOM, args)


@njit(cache=True)
def _ensemble_loss_grad_attention(*args):
    return _ensemble_loss_grad(MODEL_ATTENTION, args)


@njit(cache=True)
def _ensemble_loss_grad_lora(*args):
    return _ensemble_loss_grad(MODEL_LORA, args)


@njit(cache=True)
def _ensemble_loss_grad_residual(*args):
    return _ensemble_loss_grad(MODEL_RESIDUAL, args)


_ENSEMBLE_LOSS_GRAD = {
    MODEL_DEEP_LINEAR: _ensemble_loss_grad_deep_linear,
    MODEL_DEEP_LINEAR_INPUT_SIDE: _ensemble_loss_grad_deep_linear_input_side,
    MODEL_MLP: _ensemble_loss_grad_mlp,
    MODEL_CUSTOM: _ensemble_loss_grad_custom,
    MODEL_ATTENTION: _ensemble_loss_grad_attention,
    MODEL_LORA: _ensemble_loss_grad_lora,
    MODEL_RESIDUAL: _ensemble_loss_grad_residual,
}


def ensemble_loss_grad(kind, *args):
    """Loss and gradient of every row, compiled for model ``kind``: ``(theta, ints, floats, data_a, data_b)``."""
    return _ENSEMBLE_LOSS_GRAD[kind](*args)
