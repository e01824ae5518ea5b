"""The named bundles the driver takes (numba types each namedtuple field by field).

The dynamics is part of the settings' *type*: ``GradientFlowSettings`` or ``MomentumSettings`` (same
fields). Overloads that select on it (``fields.field``, the momentum parts of the recording) compile
only the code of the run's dynamics, as the model kind and the scheme do for theirs.
"""

from collections import namedtuple

from numba import types

ModelData = namedtuple("ModelData", ["ints", "floats", "data_a", "data_b", "points_x", "points_y"])
"""The model descriptor and constants (models.py, layout.py) and its data (moments, or the points); for
minibatches also the points as rows (points_x: N × n_a, augmented inputs with biases; points_y: N × n_L),
else (0, n_a) and (0, n_L) arrays."""

Method = namedtuple("Method", ["A", "b", "b_err", "ops", "weights"])
"""A tableau (A, b; b_err the embedded weights, = b without a pair) or a splitting (op codes, weights)."""

_SETTINGS = ["dyn", "n_params", "track_law", "track_gd_law", "nesterov", "fsal", "error_order", "max_steps",
             "max_solve_iters", "max_halvings", "h", "rtol", "atol", "weight_decay", "tau", "eta", "beta",
             "divergence_bound", "solve_tol", "energy_slot", "batch_size", "sampling", "temperature", "root_seed",
             "noise_substeps", "split_drift", "batch_factor"]
GradientFlowSettings = namedtuple("GradientFlowSettings", _SETTINGS)
MomentumSettings = namedtuple("MomentumSettings", _SETTINGS)
"""Scalars: the dynamics (DYN_*), what to track, step control and implicit-solve limits, constants;
``energy_slot`` is the state entry holding ∫|θ̇|² (−1 when the energy is not tracked, extras.py).
Stochastic dynamics (stochastic.py): ``batch_size`` B (0: the full batch), ``sampling`` (SAMPLING_*),
``temperature`` T of the Langevin noise √(2hT)ξ per step (0: none), ``root_seed`` their key, and
``noise_substeps`` r (a coupled ladder's rung: each step's ξ sums r fine steps' draws); ``split_drift``:
accumulate, on the watched seeds, the drift's expected parts h²q(Ḡ) and h²c_B·q_Σ with c_B = ``batch_factor``."""

SeedState = namedtuple("SeedState", [
    "y", "t", "h_next", "predicted", "status", "t_diverged", "n_grad", "n_accepted", "n_rejected",
    "n_solve_iters", "max_solve_iters", "solve_residual", "n_retried", "seed_id", "split"])
"""Per seed: state row, time, next adaptive step, the GD law's q_pred (a stochastic momentum splitting run:
[Q̂, V̂, Ĵ], 2·nq + nj entries, splitting._law_kick), status and counters, and the seed
id that keys its per-step randomness; ``split`` (seed, 2·nq; (seed, 0) when not tracked) the accumulated
discretisation and minibatch-noise parts of the drift, signed, per charge component."""

ChargeRefs = namedtuple("ChargeRefs", ["group_off", "group_degree", "iso_off", "q0", "j0", "i0", "watch_slot",
                                       "gens", "x0"])
"""Charge group offsets and degrees, the initial charges (q, isometric J, law invariant I) per seed,
each seed's slot among the watched seeds (−1 if not watched), the data's symmetry generators
(m, n_0, n_0) and the initial extra quantities (data-symmetry charges, energy; extras.py) per seed."""

Records = namedtuple("Records", ["loss", "drift", "drift_max", "predicted", "residual", "law", "scale",
                                 "watch", "predicted_watch", "theta_watch", "discretisation", "noise"])
"""Outputs (seed, save, group), the watched seeds' full charge vectors (slot, save, component) and their
parameters θ (slot, save, param; an empty first axis when θ is not recorded); ``discretisation`` and
``noise`` (seed, save, group): |split part| per group where tracked, else (0, 0, 0)."""


def is_momentum(cfg_type) -> bool:
    """While typing: do these settings (a numba type) describe momentum dynamics?"""
    return isinstance(cfg_type, types.BaseNamedTuple) and cfg_type.instance_class is MomentumSettings
