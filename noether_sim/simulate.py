"""simulate(): the one entry point from Python objects to the kernels, for every dynamics and method.

``plan(...)`` validates every argument and estimates the memory a run needs, before any work;
``execute(plan)`` draws the initial weights, allocates, runs the compiled driver chunk by chunk (progress,
interruptible between chunks) and labels the result: an ``xarray.Dataset`` with the same variables
(``VARIABLES``) whatever the dynamics and method; what does not apply is NaN (or 0 for counters).
"""

from __future__ import annotations

import json
import numbers
import time as _time
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from . import _validate as v
from .data import TrainingData
from .dynamics import (MOMENTUM_DYNAMICS, OPTION_DEFAULTS, Resolved, check_options, heavy_ball_from_flow,
                       initial_velocity, resolve, step_and_time_constant)
from .dynamics import LANGEVIN_METHODS, OPTIMIZERS, optimizer_state_labels, optimizer_state_size
from ._threads import off_main_thread
from ._xr import numpy_only
from .ensemble import (EPS, check_memory, check_whole_steps, compile_notice, initial_weights, over_seed_ranges,
                       progress_bar, provenance, save_grid, seed_ids, SeedRange)
from .init import Gaussian, Given, to_config
from .laws import limit_flow
from .layer_lr import check_bias_lr, check_layer_lr, param_scale, scaled_data, weighted_constants
from .teleport import check_teleport_run, run_with_teleports
from .models import ChargeGroup
from .stochastic import SAMPLING_CODES, batch_factor, expectation_factors, noise_rates, seed_statistics
from .stats import check_keep, execute_stats
from .kernels import STATUS_DIVERGED, STATUS_NAMES, STATUS_OK
from .kernels.bundles import (ChargeRefs, GradientFlowSettings, Method, ModelData, MomentumSettings, Records,
                              SeedState)
from .kernels.entries import ensemble_charges, ensemble_extras, ensemble_loss_grad, ensemble_state_charges, integrate
from .kernels.record import SCHEME_ALGORITHM, SCHEME_IMPLICIT, SCHEME_OPTIMIZER, state_size
from .kernels.fields import DYN_MOMENTUM
from .kernels.layout import MODEL_MLP, MODEL_RESIDUAL

VARIABLES = {
    "loss": "training loss L(θ(t))",
    "drift": "|q(t) − q_law(t)| (Frobenius) per charge; q_law is the charge's exact law (coordinate charge_law)",
    "drift_max": "largest entry of |q(t) − q_law(t)|",
    "predicted": "gradient descent (also minibatch; Langevin with its noise terms): |q_pred(t) − q_law(t)|, the "
                 "drift its exact one-step law predicts; a stochastic momentum splitting run (underdamped Langevin, "
                 "minibatches): |q_pred(t) − q_law(t)| of its exact per-sub-step law, model and isometric charges",
    "residual": "gradient descent (also minibatch; Langevin; stochastic momentum splittings): |q(t) − q_pred(t)|, "
                "drift the exact law does not explain (round-off)",
    "law_residual": "momentum dynamics, every model charge q (balance D, rescale r, scale S, translation T): "
                    "momentum flow |I(t) − I(0)|, I = τq̇ + q + 2λ∫q(θ)dt − 2τ∫q(θ̇)dt, the integrated exact law "
                    "τq̈ + q̇ + 2λq = 2τq(θ̇) (quadratic q; linear q: τq̈ + q̇ + λq = 0); heavy ball and Nesterov "
                    "|J(t) − J(0)|, J = q(θ_k) − βq(θ_{k−1}) + a_k their exact discrete analogue (noether_sim.laws)",
    "scale": "size of the terms that cancel in q (|W_{i+1}|² + |W_i|² + |b_i|² for D_i): round-off reference",
    "roundoff_floor": "ε·√(steps)·max_t scale: drift below this is round-off, not physics",
    "charge_initial": "every charge component at t = 0",
    "charge_final": "every charge component at the last save time",
    "law_factor": "q_law(T) = law_factor · q(0): each component's exact law at the last save time",
    "law_initial": "momentum dynamics: the law invariant (I or J, see law_residual) at t = 0, per model-charge component",
    "law_final": "momentum dynamics: the law invariant at the last save time",
    "theta_initial": "parameters at t = 0",
    "theta_final": "parameters at the last save time",
    "velocity_initial": "momentum dynamics: θ̇ at t = 0",
    "velocity_final": "momentum dynamics: θ̇ at the last save time (heavy ball / Nesterov: (θ_k − θ_{k−1})/h)",
    "status": "0 ok, 1 diverged, 2 step size underflow, 3 step budget exceeded, 4 implicit solve failed",
    "diverged": "the seed's parameters became non-finite or exceeded divergence_bound",
    "t_diverged": "time at which the seed diverged (NaN if it did not)",
    "n_grad_evals": "gradient evaluations spent integrating",
    "n_accepted": "accepted steps",
    "n_rejected": "rejected steps (adaptive methods; 0 otherwise)",
    "n_solve_iters": "implicit methods: fixed-point sweeps over all steps (0 otherwise)",
    "max_solve_iters": "implicit methods: most sweeps any accepted (sub)step needed (0 otherwise)",
    "solve_residual": "implicit methods: largest final fixed-point residual of any (sub)step (NaN otherwise)",
    "n_retried_steps": "implicit methods: steps whose solve failed at h and were redone as 2, 4, … substeps",
    "charge_watch": "full charge vector of the watched seeds at every save time (model charges, data-symmetry "
                    "charges and energy, isometric charges: coordinate component_charge)",
    "predicted_watch": "gradient descent (and stochastic momentum splittings): the exact law's prediction of "
                       "charge_watch",
    "ntk_change": "track_ntk: |Θ(t) − Θ(0)|_F/|Θ(0)|_F of the watched seeds' empirical NTK Θ = JJᵀ on the "
                  "training inputs (NaN otherwise)",
    "ntk_eigenvalues": "track_ntk: the largest eigenvalues of Θ(t), descending (coordinate ntk_rank)",
    "ntk_alignment": "track_ntk: uncentred kernel-target alignment yᵀΘy/(|Θ|_F|y|²) with the targets y",
    "drift_discretisation": "minibatch gd with split_drift: |Σ_k η²q(Ḡ_k)| (decayed like the charge), the "
                            "expected drift's discretisation part, Ḡ the full-batch gradient",
    "drift_noise": "minibatch gd with split_drift: |Σ_k η²c_B·q_Σ,k|, the expected drift's minibatch-noise part "
                   "(q_Σ = mean of q(G_j − Ḡ) over per-sample gradients, c_B = (N − B)/(B(N − 1)))",
    "drift_discretisation_final": "signed per component: the accumulated discretisation part at the last save time",
    "drift_noise_final": "signed per component: the accumulated minibatch-noise part at the last save time",
    "charge_mean": "stochastic runs: seed mean of every charge component (ok watched seeds; every seed by default)",
    "charge_mean_se": "stochastic runs: Monte-Carlo standard error of charge_mean (sd/√seeds)",
    "expectation_law": "stochastic runs: seed mean of the expectation law E[q(t) | q(0)] (theory.md §6: "
                       "e^(-2λt)q(0) + (T/λ)c(1 − e^(-2λt)) for quadratic charges, e^(-λt)q(0) for linear ones)",
    "mean_deviation": "stochastic runs: seed mean of q(t) − E[q(t) | q(0)], the drift the expectation law does "
                      "not explain",
    "mean_deviation_se": "stochastic runs: Monte-Carlo standard error of mean_deviation",
}


@dataclass
class Plan:
    """Everything a run needs, validated; no work done yet."""

    model: object
    data: TrainingData
    resolved: Resolved
    options: dict
    h: float | None
    tau: float | None
    t_end: float
    times: np.ndarray
    ids: np.ndarray
    watch: np.ndarray
    init: object
    root_seed: int
    weight_decay: float
    divergence_bound: float
    description: str
    track_law: bool
    track_energy: bool = False
    track_ntk: bool = False
    ntk_top: int = 4
    memory: dict = field(default_factory=dict)
    layer_lr: tuple | None = None
    bias_lr: tuple | None = None  # the biases' own multipliers (layer_lr.py); None: each with its layer
    keep: object = None  # None: per-seed records; a stats.Stats: streaming statistics (stats.py)


def plan(model, data, *, dynamics="gf", method=None, h=None, t_end=None, n_steps=None, save_every=None,
         save_times=None, seeds=1, root_seed=0, init=None, weight_decay=0.0, watch_seeds=(),
         divergence_bound=1e8, memory_limit=None, description="", track_ntk=False, ntk_top=4, layer_lr=None,
         keep="seeds", bias_lr=None, **options) -> Plan:
    """Validate a ``simulate`` call and estimate its memory; ConfigError naming the first bad argument."""
    keep = check_keep(keep)
    resolved = resolve(dynamics, method)
    options = check_options(resolved, options)
    track_energy = bool(options.get("track_energy", False))
    if not isinstance(data, TrainingData):
        v.fail("data", data, "must be a noether_sim.data.TrainingData (see data.synthetic_regression, data.from_arrays)")
    if not hasattr(model, "charge_groups"):
        v.fail("model", model, "must be a noether_sim model (DeepLinear, mlp.MLP, SelfAttention, CustomModel)")
    custom = getattr(model, "kind", None) == "custom"
    if custom:  # the user's function: compiled and checked (gradient vs finite differences) before any work
        _check_custom(model, data, options, track_ntk, layer_lr if bias_lr is None else bias_lr)
    else:
        data.check_fits(model)
        if getattr(model, "user_charges", None):  # model.with_charges: claimed laws checked (noether_sim.charges)
            model.check(data, layer_lr=layer_lr)
    batch_size = options.get("batch_size")
    if batch_size is not None and batch_size > data.n_points:
        v.fail("batch_size", batch_size, f"must be <= the number of data points N = {data.n_points}")
    if batch_size is not None and track_energy:
        v.fail("track_energy", True, "the energy identity is that of the full-batch loss; a minibatch run "
                                     "(batch_size) cannot track it")
    h, tau = step_and_time_constant(resolved, h, options)
    if h is not None:
        h = v.positive("h", h)
    elif not resolved.adaptive:
        v.fail("h", h, f"a step size (learning rate for gradient descent) > 0 is required for method {resolved.method!r}")
    if n_steps is not None:
        if t_end is not None:
            v.fail("n_steps", n_steps, "give either t_end or n_steps, not both")
        n_steps = v.positive_int("n_steps", n_steps)
        if h is None:
            v.fail("h", h, "n_steps needs a step size h")
        t_end = n_steps * h
    if t_end is None:
        v.fail("t_end", t_end, "an end time > 0 (or n_steps) is required")
    t_end = v.positive("t_end", t_end)
    weight_decay = v.non_negative("weight_decay", weight_decay)
    divergence_bound = v.positive("divergence_bound", divergence_bound)
    root_seed = v.positive_int("root_seed", root_seed, minimum=0)
    if root_seed >= 2 ** 63:
        v.fail("root_seed", root_seed, "must be < 2^63")
    times = save_grid(t_end, save_every, save_times, None if resolved.adaptive else h)
    if not resolved.adaptive:
        check_whole_steps(times, h, save_every, save_times)
    ntk, ntk_top = _check_ntk(track_ntk, ntk_top, model, data, watch_seeds)
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool) and seeds >= 1:
        # refuse an absurd ensemble before even listing its seed ids
        held = int(seeds) if keep is None else min(int(seeds), keep.chunk)  # stats: one chunk at a time
        check_memory(memory_needed(model, resolved, bool(options.get("track_law")), held, len(times),
                                   len(np.atleast_1d(watch_seeds)), _extra_groups(data, track_energy), ntk),
                     memory_limit)
    ids = seed_ids(seeds, lazy=keep is not None)  # statistics: a SeedRange, listed chunk by chunk
    given = np.atleast_1d(np.asarray(watch_seeds, dtype=object))
    if given.ndim != 1 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in given):
        v.fail("watch_seeds", list(given.ravel()), "must be integer seed ids (e.g. [0, 3])")
    watch = given.astype(np.int64)
    if is_stochastic(options) and len(watch) == 0:
        watch = np.asarray(ids, dtype=np.int64)  # seed means and their standard errors need every seed's charges
    missing = watch[~(ids.contains(watch) if isinstance(ids, SeedRange) else np.isin(watch, ids))]
    if len(missing):
        v.fail("watch_seeds", watch.tolist(), f"every watched seed must be among the seeds run (missing {missing.tolist()[:5]})")
    init = (getattr(model, "default_init", None) or Gaussian()) if init is None else init
    if not hasattr(init, "rows") and not isinstance(init, Given):
        v.fail("init", init, "must be an initialisation from noether_sim.init (Gaussian, Orthogonal, Balanced, Given)")
    if not isinstance(description, str):
        v.fail("description", description, "must be a string")
    track_law = bool(options.get("track_law", False))
    layer_lr = check_layer_lr(layer_lr, model, data, resolved.dynamics, weight_decay, bias_lr)
    bias_lr = None if layer_lr is None else check_bias_lr(bias_lr, layer_lr, model)
    if layer_lr is not None and track_ntk:  # the kernels record φ = θ/√m, not θ
        v.fail("layer_lr", list(layer_lr), "does not combine with track_ntk")
    p = Plan(model, data, resolved, options, h, tau, t_end, times, ids, watch, init, root_seed, weight_decay,
             divergence_bound, description, track_law, track_energy, bool(track_ntk), ntk_top,
             layer_lr=layer_lr, bias_lr=bias_lr, keep=keep)
    held = len(ids) if keep is None else min(len(ids), keep.chunk)
    p.memory = memory_needed(model, resolved, track_law, held, len(times), len(watch),
                             _extra_groups(data, track_energy), ntk)
    check_memory(p.memory, memory_limit)
    return p


def _check_custom(model, data, options, track_ntk, layer_lr):
    """What a CustomModel run cannot do, then the model's own contract check (noether_sim.custom)."""
    if data.symmetry_names:
        v.fail("data", data, "data-symmetry charges (data.augment) are defined for the built-in networks' first "
                             "layer; give a CustomModel the symmetry's charge itself (Charge.quadratic)")
    if track_ntk:
        v.fail("track_ntk", track_ntk, "is not available for a CustomModel (the NTK needs the network's outputs)")
    if layer_lr is not None:
        v.fail("layer_lr", layer_lr, "needs layers; a CustomModel has none")
    if model.prepare is not None and options.get("batch_size") is not None:
        v.fail("batch_size", options.get("batch_size"), "minibatches need the data points; this CustomModel "
                                                          "reads prepare(X, Y) instead")
    model.check(data)


def _check_ntk(track_ntk, ntk_top, model, data, watch_seeds):
    """Validate the NTK options: (the NTK's side n_out·N when tracked, else None; ntk_top)."""
    if not isinstance(track_ntk, (bool, np.bool_)):
        v.fail("track_ntk", track_ntk, "must be True or False")
    ntk_top = v.positive_int("ntk_top", ntk_top)
    if not track_ntk:
        return None, ntk_top
    if getattr(model, "kind", "") == "attention":
        v.fail("track_ntk", track_ntk, "is implemented for deep linear networks and MLPs, not SelfAttention")
    if len(np.atleast_1d(watch_seeds)) == 0:
        v.fail("track_ntk", track_ntk, "needs watch_seeds: the NTK is recorded for the watched seeds")
    if getattr(model, "kind", "") == "lora":
        v.fail("track_ntk", track_ntk, "is not available for low-rank adapters yet")
    if getattr(model, "kind", "") == "residual_mlp":
        v.fail("track_ntk", track_ntk, "is not available for stacked residual blocks (ResidualMLP) yet")
    if model.n_layers < 2:
        v.fail("track_ntk", track_ntk, f"needs a hidden layer (widths {list(model.widths)}): a one-layer "
                                       "linear model's NTK does not change")
    side = data.n_out * data.n_points
    if ntk_top > side:
        v.fail("ntk_top", ntk_top, f"must be <= the NTK's size n_out·N = {side}")
    return side, ntk_top
def is_stochastic(options) -> bool:
    """Does a run draw per-step randomness (a minibatch smaller than the data, or Langevin noise)?"""
    return options.get("batch_size") is not None or options.get("temperature") is not None


def _isometric_groups(model, resolved) -> list:
    """Isometric charges exist where there is a velocity: under the momentum dynamics."""
    return model.isometric_groups() if resolved.dyn == DYN_MOMENTUM else []


def _extra_groups(data, track_energy) -> list:
    """Quantities recorded beside the model's charges (kernels/extras.py): one data-symmetry charge per
    generator of the training data's symmetry group (``data.augment``), then the energy if tracked. Their
    components follow the model's charges (offsets start at 0 here, after the model's in the run)."""
    groups = [ChargeGroup(f"data_{name}", m, (), 2, f"⟨θ̇_1, W_1K⟩ for the generator K of the data symmetry "
                          f"'{name}': zero along gradient flow and descent where the loss is invariant, "
                          "e^(-t/τ)·c(0) under momentum") for m, name in enumerate(data.symmetry_names)]
    if track_energy:
        groups.append(ChargeGroup("energy", len(groups), (), 0, "E = L + λ|θ|²/2 (+ τ|p|²/2 under momentum) "
                                  "+ ∫₀ᵗ|θ̇|²ds: constant along the flow (time symmetry)"))
    return groups


def _sizes(model, resolved, track_law, extras=()):
    P = model.n_params
    nq = model.n_charges
    iso = _isometric_groups(model, resolved)
    nj = sum(g.size for g in iso)
    nx = len(extras)
    n_groups = len(model.charge_groups) + nx + len(iso)
    track_energy = any(g.name == "energy" for g in extras)
    n_state = state_size(resolved.dyn, resolved.scheme == SCHEME_ALGORITHM, P, nq, track_law) + int(track_energy)
    n_state += optimizer_state_size(resolved, P)
    return P, nq, nj, nx, n_groups, n_state


def memory_needed(model, resolved, track_law, n_seeds, n_saves, n_watched, extras=(), ntk_side=None) -> dict:
    """Bytes a run holds at once, by part (float64 and int64 alike: 8 bytes). ``ntk_side``: n_out·N
    when the NTK is tracked (the watched seeds' θ at every save time, and a few NTKs at once)."""
    P, nq, nj, nx, n_groups, n_state = _sizes(model, resolved, track_law, extras)
    S, T, W = float(n_seeds), float(n_saves), float(n_watched)
    comp = nq + nj + nx
    return {
        # the state, initial and final θ and velocity, their labelled copies
        "state": 8.0 * S * (n_state + 6 * P),
        "records": 8.0 * S * T * (1 + 7 * n_groups),
        "charges": 8.0 * S * (3 * nq + 8 * comp + 20),
        "watched seeds": 8.0 * W * T * comp * 2,
        **({"NTK": 8.0 * (W * T * P + 4.0 * ntk_side ** 2 + ntk_side * P)} if ntk_side else {}),
    }


def simulate(model, data: TrainingData, *, dynamics: str = "gf", method: str | None = None,
             h: float | None = None, t_end: float | None = None, n_steps: int | None = None,
             save_every: float | None = None, save_times=None, seeds=1, root_seed: int = 0, init=None,
             weight_decay: float = 0.0, tau: float | None = None, beta: float | None = None,
             learning_rate: float | None = None, velocity=None, track_law: bool | None = None,
             rtol: float | None = None, atol: float | None = None, max_steps: int | None = None,
             solve_tol: float | None = None, max_solve_iters: int | None = None, max_halvings: int | None = None,
             track_energy: bool | None = None, batch_size: int | None = None, sampling: str | None = None,
             temperature: float | None = None, noise_substeps: int | None = None, split_drift: bool | None = None,
             watch_seeds=(), track_ntk: bool = False, ntk_top: int = 4,
             divergence_bound: float = 1e8, memory_limit: float | None = None,
             progress: bool = False, description: str = "",
             beta1: float | None = None, beta2: float | None = None, eps: float | None = None,
             layer_lr=None, keep="seeds", teleport_every: float | None = None, teleport=None,
             bias_lr=None) -> xr.Dataset:
    """Integrate an ensemble of networks and record loss and charges at the save times.

    Every dynamics with every method that applies (``noether-sim list``); options that only some take are
    refused by name where they do not apply. Before any work the call validates every argument and
    estimates the memory it needs.

    Parameters
    ----------
    model : DeepLinear or MLP
        The network (``noether_sim.DeepLinear``, ``noether_sim.mlp.MLP``).
    data : TrainingData
        One data set, shared by every seed (``noether_sim.data``).
    dynamics : {"gf", "gd", "momentum", "heavy_ball", "nesterov", "adam", "adamw", "rmsprop", "sign", "lion"}
        Gradient flow, gradient descent (learning rate h), momentum flow ``τθ̈ + θ̇ = −∇L − λθ``, heavy
        ball or Nesterov, or an adaptive optimizer (learning rate h; see beta1, beta2, eps).
    method : str, optional
        gf: any explicit method (rk4 default; dopri5 adaptive) or gl1/gl2/gl3 (implicit); gd: euler
        (implied); momentum: any of those or a splitting (verlet default, symplectic_euler, yoshida4);
        heavy_ball / nesterov: none.
    h : float, optional
        Step size (learning rate for gd); for the adaptive dopri5 an optional first step.
    t_end : float, optional
        End time; or ``n_steps``.
    n_steps : int, optional
        Number of fixed steps of size h.
    save_every, save_times : float or sequence of float, optional
        When to record (t = 0 is always recorded); fixed steps must land on them.
    seeds : int or sequence of int
        Number of seeds, or a list of seed ids; seed i starts from weights keyed by (root_seed, i), the
        same whether it runs alone or among 10^6.
    root_seed : int
        The root of every seed's random numbers.
    init : initialisation, optional
        ``init.Gaussian()`` by default; ``init.Orthogonal``, ``init.Balanced``, ``init.Given``.
    weight_decay : float
        λ ≥ 0 in the dynamics.
    tau : float, optional
        Momentum dynamics: the time constant (friction 1/τ); heavy_ball / nesterov take (h, tau) or
        (learning_rate, beta), related by ``β = e^{−h/τ}``, ``η = h²/τ``.
    beta, learning_rate : float, optional
        Heavy ball and Nesterov: momentum and learning rate.
    velocity : {"zero", "gradient"}, float or ndarray, optional
        Momentum dynamics: θ̇(0) = 0 (default), ``−∇L − λθ``, a scale σ, or an array.
    track_law : bool, optional
        Momentum dynamics: check the model charges' exact law (default True). Momentum flow by a method:
        integrate ∫q(θ), ∫q(θ̇) so that ``I = τq̇ + q + 2λ∫q(θ) − 2τ∫q(θ̇)`` stays constant; heavy ball /
        Nesterov: the discrete invariant ``J = q(θ_k) − βq(θ_{k−1}) + a_k`` of their exact one-step law
        (``noether_sim.laws``); its change is ``law_residual``.
    rtol, atol, max_steps : optional
        Adaptive methods: tolerances and step budget per seed.
    solve_tol, max_solve_iters, max_halvings : optional
        Implicit methods: relative fixed-point tolerance, sweeps per attempt, and how often a failing
        step is halved before the seed is flagged.
    track_ntk : bool, optional
        Record, for the watched seeds at every save time, the empirical NTK Θ = JJᵀ of the network outputs
        on the training inputs (rows: output c, point j; no 1/N factor): ``ntk_change``
        ``‖Θ(t) − Θ(0)‖_F/‖Θ(0)‖_F``, ``ntk_eigenvalues`` its ``ntk_top`` largest eigenvalues and
        ``ntk_alignment`` the uncentred kernel-target alignment ``yᵀΘy/(‖Θ‖_F‖y‖²)`` (diagnostics.ntk_along).
        θ is recorded by the kernels; Θ is computed afterwards in NumPy, costing
        O((n_out·N)²·P + (n_out·N)³) per watched seed and save time.
    ntk_top : int, optional
        How many of the NTK's largest eigenvalues to keep (default 4).
    track_energy : bool, optional
        A Runge–Kutta method: record the energy ``E = L + λ‖θ‖²/2 (+ τ‖p‖²/2) + ∫‖θ̇‖²`` as a charge with
        law E(0), integrating ∫‖θ̇‖² with the run's own method (default False).
    watch_seeds : sequence of int
        Seed ids whose full charge vectors are kept at every save time.
    divergence_bound : float
        A seed with some ``abs(θ_j)`` above this (or non-finite) is stopped, flagged with its time and
        excluded from statistics.
    memory_limit : float, optional
        Bytes a call may allocate (default: the memory available now); larger calls are refused before
        any work, saying how to split them.
    progress : bool
        Show a progress bar.
    description : str
        Stored in the result's attributes.

    beta1, beta2, eps : float, optional
        The optimizers (adam, adamw, rmsprop, sign, lion; learning rate h or ``learning_rate``), named and
        defaulted as in PyTorch (optax for Lion): adam, adamw (0.9, 0.999, 1e-8), rmsprop (beta2 =
        PyTorch's alpha, 0.99; eps 1e-8), lion (0.9, 0.99); sign takes none. λ = weight_decay is L2 in the
        gradient for adam and rmsprop, decoupled (θ ← θ − ηλθ) for adamw, sign and lion (update formulas:
        kernels/optimizers.py). The per-seed state (moments, step count) is ``optimizer_state_final``;
        the charges are compared with their gradient-flow law, which these steps do not keep
        (``laws.limit_flow`` names the flow they converge to as h → 0; docs/guide/optimizers.md).
    layer_lr : sequence of float, optional
        gf, gd, langevin and the momentum dynamics: step multipliers (m_1, …, m_L), ``θ̇_i = −m_i∇_{θ_i}L``
        (momentum: the force on layer i times m_i; heavy ball: its learning rate; langevin: noise
        ``√(2ηm_iT)`` in layer i). The balance and rescale charges become the weighted
        ``C_i = W_{i+1}ᵀW_{i+1}/m_{i+1} − W_iW_iᵀ/m_i − b_ib_iᵀ/m_{b_i}`` (r: ``(‖w_in‖²/m_in + b²/m_b) −
        α‖w_out‖²/m_out``) with gradient descent's exact law; degree-1 activations (biases: MLPs); weight
        decay λ acts at the base rate, ``θ̇_i = −m_i∇_{θ_i}L − λθ_i`` (noether_sim/layer_lr.py).
    bias_lr : float or sequence of float, optional
        An MLP's bias multipliers m_{b_i}, one per layer (one number: the same for every layer's bias);
        absolute, like ``layer_lr`` (not relative to it). None: each bias with its layer's multiplier.

    batch_size : int, optional
        gd, heavy_ball, nesterov, langevin, the optimizers and momentum by a splitting method (every kick of a
        step uses the step's batch): minibatch gradients of B points per step and seed (B = N is the
        full batch), drawn from the counter-based generator per (root_seed, seed id, step);
        ``minibatch_indices`` replays them.
    sampling : {"uniform", "epoch"}, optional
        With ``batch_size``: B distinct points per step (default), or the next B of a per-epoch shuffle.
    temperature : float, optional
        langevin: T >= 0 of ``dθ = −(∇L + λθ)dt + √(2T)dW`` (method ``euler_maruyama``, weak order 1, or
        ``stochastic_heun``, weak order 2; noise per seed and step). momentum with a splitting method:
        underdamped Langevin ``τθ̈ + θ̇ = −∇L − λθ + √(2T)Ẇ``, each damp sub-step the exact
        Ornstein–Uhlenbeck step ``p ← e^{−s/τ}p + √((T/τ)(1 − e^{−2s/τ}))ξ`` (Verlet: OBABO; verlet or
        symplectic_euler, whose damp steps run forward in time). A stochastic splitting run records the
        splitting's exact per-trajectory law as ``predicted`` / ``residual`` (docs/guide/stochastic.md).
    noise_substeps : int, optional
        langevin: each step's noise is the normalised sum of this many finer steps' draws (coupled ladders).
        momentum with a temperature: each OU sub-step's noise is the normalised OU-weighted sum of this many
        finer OU steps' draws (equal damp weights needed: verlet, symplectic_euler).
    split_drift : bool, optional
        gd with a batch_size: on the watched seeds, accumulate the drift's expected parts, the
        discretisation ``η²q(Ḡ)`` and the minibatch noise ``η²c_B·q_Σ`` (per-sample gradients: N + 1
        gradients per step), into ``drift_discretisation`` and ``drift_noise``.
    teleport_every : float, optional
        gf and gd: every this much time, move each seed along its symmetry orbit with ``noether_sim.teleport``
        (same loss; ‖∇L‖ raised, or the charges balanced) and run on from there. The result joins the
        segments: ``drift`` and the laws are measured from the charges just after the last teleport, and
        ``teleport_time``, ``teleport_loss_before``/``_after``, ``teleport_grad_norm_before``/``_after`` and
        ``teleport_charge_before``/``_after`` (seed, teleport[, component]) record each event.
    teleport : dict, optional
        With ``teleport_every``: ``teleport``'s options (objective, steps, lr, target).
    keep : {"seeds", "stats"} or Stats, optional
        "seeds" (default): per-seed records; "stats" or ``Stats(bins=, range=, scale=, chunk=)``: seeds run
        in chunks and only their statistics per save time and charge are kept (count, mean, var, min, max,
        histogram: ``<name>_mean`` …), so memory does not grow with the number of seeds
        (noether_sim/stats.py, docs/guide/stats.md).
    Returns
    -------
    xarray.Dataset
        Dimensions ``seed``, ``time``, ``charge``; the variables of every run (``loss``, ``drift``,
        ``scale``, ``roundoff_floor``, ``status``, …; docs/guide/models.md lists them) and the full
        configuration and versions in its attributes. Data with a symmetry group (``data.augment``) add
        one charge per generator K, ``c = ⟨θ̇_1, W_1K⟩`` (law 0 under gradient flow and descent,
        ``e^{−t/τ}c(0)`` under momentum); ``ds.attrs["data_symmetry_exact"]`` says whether the loss is
        exactly invariant for this model (1), only approximately (0), or −1 (none). A stochastic run
        watches every seed unless ``watch_seeds`` says otherwise, and reports seed means (``charge_mean``,
        ``mean_deviation`` from the expectation law) with their standard errors.

    Raises
    ------
    ConfigError
        Any invalid argument or combination, named with its value and what is allowed, before any work.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> data = ns.data.synthetic_regression(4, 2, 16, seed=0)
    >>> ds = ns.simulate(model, data, method="gl2", h=0.1, t_end=1.0, save_every=0.5, seeds=4)
    >>> dict(ds.sizes)["seed"], ds.time.values.tolist()
    (4, [0.0, 0.5, 1.0])
    >>> bool(ds.drift.max() < 1e-12)          # Gauss–Legendre keeps the balance charge D1
    True
    """
    if teleport_every is not None or teleport is not None:  # segments with teleports between (teleport.py)
        kwargs = {k: v_ for k, v_ in locals().items() if k not in ("model", "data", "teleport_every", "teleport",
                                                                   "progress")}
        every, options = check_teleport_run(teleport_every, teleport, model, kwargs)
        plan(model, data, **kwargs)  # the whole call, before any work
        return run_with_teleports(simulate, Given, model, data, kwargs, every, options)
    p = plan(model, data, dynamics=dynamics, method=method, h=h, t_end=t_end, n_steps=n_steps, save_every=save_every,
             save_times=save_times, seeds=seeds, root_seed=root_seed, init=init, weight_decay=weight_decay,
             watch_seeds=watch_seeds, divergence_bound=divergence_bound, memory_limit=memory_limit,
             description=description, track_ntk=track_ntk, ntk_top=ntk_top, tau=tau, beta=beta,
             learning_rate=learning_rate, velocity=velocity, track_law=track_law, rtol=rtol, atol=atol,
             max_steps=max_steps, solve_tol=solve_tol, max_solve_iters=max_solve_iters, max_halvings=max_halvings, track_energy=track_energy,
             beta1=beta1, beta2=beta2, eps=eps, layer_lr=layer_lr, bias_lr=bias_lr,
             batch_size=batch_size, sampling=sampling, temperature=temperature, noise_substeps=noise_substeps,
             split_drift=split_drift, keep=keep)
    return execute(p, progress=progress)


def execute(p: Plan, progress: bool = False) -> xr.Dataset:
    """Run a validated plan (see ``plan``) and label its result (saying so when kernels compile)."""
    if p.keep is not None:  # streaming statistics: this function per chunk of seeds, folded
        return execute_stats(p, execute, progress)
    r = p.resolved
    what = r.dynamics if r.method == r.dynamics else f"{r.dynamics}/{r.method}"  # heavy_ball: its own method
    with compile_notice(f"{p.model.kind} models under {what}"):
        return _execute(p, progress)


def _execute(p: Plan, progress: bool) -> xr.Dataset:
    model, r, opts = p.model, p.resolved, p.options
    extras = _extra_groups(p.data, p.track_energy)
    P, nq, nj, nx, n_groups, n_state = _sizes(p.model, p.resolved, p.track_law, extras)
    algorithm = r.scheme == SCHEME_ALGORITHM
    momentum = r.dyn == DYN_MOMENTUM
    n_seeds, n_saves = len(p.ids), len(p.times)
    # layer-wise rates run as the plain dynamics in φ = θ/√m on inputs scaled by Π√m_i (layer_lr.py)
    run_data = p.data if p.layer_lr is None else scaled_data(p.data, p.layer_lr, model)
    ints, floats = model.descriptor(), model.constants(run_data)
    if p.layer_lr is not None:  # biases with rates of their own: the MLP kernel's bias factors (layer_lr.py)
        floats = weighted_constants(model, floats, p.layer_lr, p.bias_lr)
    kind = int(ints[0])  # compile-time literal in the kernels: one specialisation per model kind
    data_a, data_b = model.kernel_data(run_data)
    h = p.h if p.h is not None else 0.0
    tau = p.tau if p.tau is not None else np.nan
    eta, beta = heavy_ball_from_flow(h, tau) if momentum and p.h is not None else (np.nan, np.nan)

    # ---- initial state ----
    theta = np.array(initial_weights(model, p.init, p.ids, p.root_seed), dtype=np.float64, order="C")
    if theta.shape != (n_seeds, P):
        raise AssertionError(f"initialisation returned shape {theta.shape}, expected {(n_seeds, P)}")
    velocity = None
    scale = None if p.layer_lr is None else param_scale(model, p.layer_lr, p.bias_lr)  # φ = θ/scale (layer_lr.py)
    theta_run = theta if scale is None else theta / scale
    if momentum:
        v_opt = opts.get("velocity")
        grad_of = lambda th: ensemble_loss_grad(kind, th, ints, floats, data_a, data_b)[1]  # noqa: E731
        if scale is not None and isinstance(v_opt, str) and v_opt == "gradient":  # −M∇L(θ) = scale·(−∇_φL̃)
            velocity = scale * initial_velocity(v_opt, model, theta_run, p.ids, p.root_seed, p.weight_decay, grad_of)
        else:
            velocity = initial_velocity(v_opt, model, theta, p.ids, p.root_seed, p.weight_decay, grad_of)
    vel_run = velocity if scale is None or velocity is None else velocity / scale
    y = np.zeros((n_seeds, n_state))
    y[:, :P] = theta_run
    if algorithm:
        y[:, P:2 * P] = theta_run - h * vel_run  # θ_{−1}: then (θ_0 − θ_{−1})/h is the initial velocity
    elif momentum:
        y[:, P:2 * P] = vel_run

    tableau, splitting = r.tableau, r.splitting
    if r.scheme == SCHEME_OPTIMIZER:  # the optimizer as data: op code, (β₁, β₂, ε) (kernels/optimizers.py)
        method = Method(np.zeros((1, 1)), np.zeros(1), np.zeros(1), np.array([OPTIMIZERS[r.dynamics].code], np.int64),
                        np.array([float(opts.get(k) or 0.0) for k in ("beta1", "beta2", "eps")]))
    elif tableau is not None:
        b_err = tableau.b_err if tableau.b_err is not None else tableau.b
        code = list(LANGEVIN_METHODS).index(r.method) if r.dynamics == "langevin" else 0  # driver._add_noise
        method = Method(tableau.A, tableau.b, b_err, np.array([code], np.int64), np.zeros(1))
    else:
        ops, weights = splitting.op_codes() if splitting is not None else (np.zeros(1, np.int64), np.zeros(1))
        method = Method(np.zeros((1, 1)), np.zeros(1), np.zeros(1), ops, weights)
    settings = MomentumSettings if momentum else GradientFlowSettings  # the dynamics, as a type (bundles.py)
    cfg = settings(
        dyn=int(r.dyn), n_params=int(P), track_law=bool(p.track_law), track_gd_law=r.dynamics == "gd" or r.method == "euler_maruyama" or _splitting_law(r, opts, p.data.n_points),
        nesterov=r.dynamics == "nesterov", fsal=bool(tableau is not None and tableau.fsal),
        error_order=int(tableau.error_order or tableau.order) if tableau is not None else 1,
        max_steps=int(opts.get("max_steps", 0)), max_solve_iters=int(opts.get("max_solve_iters", 0)),
        max_halvings=int(opts.get("max_halvings", 0)), h=float(h), rtol=float(opts.get("rtol", 0.0)),
        atol=float(opts.get("atol", 0.0)), weight_decay=float(p.weight_decay), tau=float(tau if momentum else 1.0),
        eta=float(eta), beta=float(beta), divergence_bound=float(p.divergence_bound),
        solve_tol=float(opts.get("solve_tol", 0.0)), energy_slot=n_state - 1 if p.track_energy else -1,
        batch_size=_kernel_batch_size(p), sampling=SAMPLING_CODES[opts.get("sampling") or "uniform"],
        temperature=float(opts.get("temperature") or 0.0), root_seed=int(p.root_seed),
        noise_substeps=int(opts.get("noise_substeps") or 1), split_drift=bool(opts.get("split_drift", False)),
        batch_factor=batch_factor(p.data.n_points, opts.get("batch_size") or p.data.n_points))
    # momentum with no randomness to draw (T = 0, no batch or B = N) runs the deterministic kernel: bit for bit
    # the run without those options
    random_free = momentum and not _momentum_draws(opts, p.data.n_points)
    model_data = ModelData(ints, floats, data_a, data_b,
                           *_points(kind, model, run_data, {} if random_free else p.options))  # layer_lr: scaled
    groups, iso = model.charge_groups, _isometric_groups(model, r)
    group_off = np.array([g.offset for g in groups] + [nq], dtype=np.int64)
    group_degree = np.array([g.degree for g in groups], dtype=np.int64)
    q0, j0, i0 = _by_seeds(n_seeds, lambda lo, hi: ensemble_state_charges(kind, y[lo:hi], algorithm, cfg, group_off,
                                                                           group_degree, ints, floats))
    j0 = np.ascontiguousarray(j0[:, :nj]) if momentum else np.zeros((n_seeds, nj))

    gens = np.ascontiguousarray(p.data.symmetry_generators, dtype=np.float64)
    x0 = _by_seeds(n_seeds, lambda lo, hi: ensemble_extras(kind, y[lo:hi], algorithm, cfg, gens, nx, ints, floats,
                                                           data_a, data_b))

    watch_slot = np.full(n_seeds, -1, np.int64)
    row_of = {int(sid): row for row, sid in enumerate(p.ids)}
    for slot, sid in enumerate(p.watch):
        watch_slot[row_of[int(sid)]] = slot
    refs = ChargeRefs(group_off, group_degree, np.array([g.offset - nq for g in iso] + [nj], dtype=np.int64), q0, j0, i0, watch_slot,
                      gens, x0)
    pred0 = _splitting_law_start(kind, y, P, q0, j0, group_off, group_degree, ints, floats) \
        if _splitting_law(r, opts, p.data.n_points) else q0.copy()
    st = SeedState(y, np.zeros(n_seeds), np.full(n_seeds, h), pred0, np.zeros(n_seeds, np.int64),
                   np.full(n_seeds, np.nan), *(np.zeros(n_seeds, np.int64) for _ in range(5)), np.zeros(n_seeds),
                   np.zeros(n_seeds, np.int64), np.ascontiguousarray(p.ids, dtype=np.int64),
                   np.zeros((n_seeds, 2 * nq if cfg.split_drift else 0)))
    rec = Records(np.empty((n_seeds, n_saves)), *(np.empty((n_seeds, n_saves, n_groups)) for _ in range(6)),
                  np.empty((len(p.watch), n_saves, nq + nx + nj)), np.empty((len(p.watch), n_saves, nq + nx + nj)),
                  np.empty((len(p.watch) if p.track_ntk else 0, n_saves, P)),
                  *(np.full((n_seeds, n_saves, n_groups) if cfg.split_drift else (0, 0, 0), np.nan) for _ in range(2)))

    # ---- run, one chunk of save times at a time (progress), each in rounds of seeds short enough that
    # Ctrl-C, honoured between kernel calls, stops a run of any size within about a second ----
    chunks = np.array_split(np.arange(n_saves), min(n_saves, 200))
    started = _time.perf_counter()
    bar = progress_bar(progress, p.t_end, f"{r.dynamics}/{r.method}")
    batch = _Batch(n_seeds)
    try:
        for chunk in chunks:
            lo = 0
            while lo < n_seeds:
                hi = min(n_seeds, lo + batch.size)
                t0 = _time.perf_counter()
                # (each seed's arithmetic is independent of the range it runs in: same bits in any rounds)
                over_seed_ranges(hi - lo, lambda a, b, lo=lo: integrate(
                    kind, r.scheme, lo + a, lo + b, st, p.times, chunk[0], chunk[-1] + 1, model_data, method,
                    cfg, refs, rec))
                batch.took(hi - lo, _time.perf_counter() - t0)
                lo = hi
            if bar is not None:
                bar.update(p.times[chunk[-1]] - bar.n)
                bar.set_postfix(failed=int(np.sum(st.status != STATUS_OK)), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    elapsed = _time.perf_counter() - started
    with numpy_only():  # NumPy arrays only: xarray need not import dask to check (_xr.py)
        return _label(p, st, rec, refs, theta, velocity, cfg, kind, ints, floats, data_a, data_b, eta, beta, elapsed)


# the longest a round of kernel calls should last: the slowest Ctrl-C can take to be honoured
ROUND_SECONDS = 0.25


class _Batch:
    """Seeds per round of kernel calls: starts small and adapts to the time a round takes, so that a
    round lasts about ``ROUND_SECONDS`` (long enough that the threads' start and join cost little)."""

    def __init__(self, n_seeds: int):
        import numba

        self.n_seeds = n_seeds
        self.size = min(n_seeds, 4 * numba.get_num_threads())

    def took(self, seeds: int, seconds: float):
        if seeds < self.size:  # the last round of a chunk: fewer seeds, says nothing new
            return
        if seconds > ROUND_SECONDS:
            self.size = max(1, int(self.size * ROUND_SECONDS / seconds))
        elif seconds < ROUND_SECONDS / 2:
            self.size = min(self.n_seeds, 2 * self.size)


def _by_seeds(n_seeds: int, call):
    """``call(lo, hi)`` (an array, or a tuple of arrays, of rows per seed) over all seeds, in rounds as
    short as the integration's (Ctrl-C is honoured between them), written into arrays for every seed."""
    batch, out, lo = _Batch(n_seeds), None, 0
    while lo < n_seeds:
        hi = min(n_seeds, lo + batch.size)
        t0 = _time.perf_counter()
        part = off_main_thread(call, lo, hi)  # Ctrl-C reaches this thread as KeyboardInterrupt
        batch.took(hi - lo, _time.perf_counter() - t0)
        parts = part if isinstance(part, tuple) else (part,)
        if out is None:
            if hi == n_seeds:
                return part
            out = tuple(np.empty((n_seeds, *a.shape[1:]), dtype=a.dtype) for a in parts)
        for o, a in zip(out, parts):
            o[lo:hi] = a
        lo = hi
    return out if isinstance(part, tuple) else out[0]
def _momentum_draws(opts, n_points) -> bool:
    """Does a momentum run draw randomness per step (a temperature > 0, or a batch smaller than the data)?"""
    B = opts.get("batch_size")
    return (opts.get("temperature") or 0.0) > 0.0 or (B is not None and B < n_points)


def _splitting_law(r, opts, n_points) -> bool:
    """Does the run track the splitting's exact per-trajectory law (a momentum splitting run that draws
    noise or minibatches; kernels/splitting.py ``_law_kick``)?"""
    return r.dyn == DYN_MOMENTUM and r.splitting is not None and _momentum_draws(opts, n_points)


def _splitting_law_start(kind, y, P, q0, j0, group_off, group_degree, ints, floats):
    """The law's predictions at t = 0, per seed: [Q(q), V = B(q, p) (linear charges: Q(p)), J(q, p)];
    B by polarisation, B(q, p) = (Q(q + p) − Q(q − p))/4."""
    nq = q0.shape[1]
    q, p = y[:, :P], y[:, P:2 * P]
    plus = ensemble_charges(kind, np.ascontiguousarray(q + p), ints, floats, nq)
    minus = ensemble_charges(kind, np.ascontiguousarray(q - p), ints, floats, nq)
    linear = ensemble_charges(kind, np.ascontiguousarray(p), ints, floats, nq)
    degree = np.repeat(group_degree, np.diff(group_off))
    v0 = np.where(degree[None, :] == 2, 0.25 * (plus - minus), linear)
    return np.ascontiguousarray(np.concatenate([q0, v0, j0], axis=1))


def _kernel_batch_size(p) -> int:
    """B for the kernels; 0 (the precomputed full-batch data) when the batch is every point."""
    B = p.options.get("batch_size")
    return 0 if B is None or B == p.data.n_points else int(B)


def _points(kind, model, data, options):
    """The data points as rows for per-step batches: (N × n_a) inputs, augmented as the model reads them
    (deep linear with biases: [x; 1]), and (N × n_L) targets; (0 × n) without a batch_size. 2-D points
    make the kernels compile the stochastic code (driver.py); a deterministic run passes 1-D stand-ins."""
    if not is_stochastic(options):
        return np.zeros(0), np.zeros(0)
    aug = kind not in (MODEL_MLP, MODEL_RESIDUAL) and model.bias  # deep linear moments of x̃ = [x; 1]
    X = np.vstack([data.X, np.ones((1, data.n_points))]) if aug else np.asarray(data.X, dtype=float)
    if options.get("batch_size") is None:
        return np.zeros((0, X.shape[0])), np.zeros((0, data.Y.shape[0]))
    return np.ascontiguousarray(X.T, dtype=float), np.ascontiguousarray(np.asarray(data.Y, dtype=float).T)


def _nan(shape):
    """A read-only all-NaN array of ``shape`` that takes no memory (variables that do not apply)."""
    return np.broadcast_to(np.float64(np.nan), shape)


def _masked(ok, x):
    """x where the seed's status is ok, NaN elsewhere; x itself (no copy) when every seed is ok."""
    return x if ok.all() else np.where(ok, x, np.nan)


def _join(*parts):
    """The columns of every part, in order (the one part itself when the others have none)."""
    parts = [a for a in parts if a.shape[1]] or parts[:1]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _label(p, st, rec, refs, theta, velocity, cfg, kind, ints, floats, data_a, data_b, eta, beta,
           elapsed) -> xr.Dataset:
    model, r = p.model, p.resolved
    extras = _extra_groups(p.data, p.track_energy)
    P, nq, nj, nx, n_groups, n_state = _sizes(p.model, p.resolved, p.track_law, extras)
    algorithm = r.scheme == SCHEME_ALGORITHM
    momentum = r.dyn == DYN_MOMENTUM
    n_seeds = len(p.ids)
    status = st.status
    ok = status[:, None] == STATUS_OK
    n = len(st.y)
    qf, jf, i_f = _by_seeds(n, lambda lo, hi: ensemble_state_charges(kind, st.y[lo:hi], algorithm, cfg, refs.group_off,
                                                                     refs.group_degree, ints, floats))
    xf = _by_seeds(n, lambda lo, hi: ensemble_extras(kind, st.y[lo:hi], algorithm, cfg, refs.gens, nx, ints, floats,
                                                     data_a, data_b))
    jf = jf[:, :nj] if momentum else _nan((n_seeds, nj))
    j0 = refs.j0 if momentum else _nan((n_seeds, nj))
    groups, iso = model.charge_groups, _isometric_groups(model, r)
    all_groups = groups + extras + iso
    T = float(p.times[-1])
    degree = np.concatenate([[g.degree] * g.size for g in groups]) if groups else np.zeros(0)
    # q_law(T) = law_factor · q(0): e^{−dλT} under gradient flow and descent, 1 for the model's charges
    # under momentum (which breaks them: their drift is their change), e^{−T/τ} for isometric charges
    # under every dynamics; data-symmetry charges 0 under gradient flow and descent, e^{−T/τ} under
    # momentum; the energy 1
    decay = np.exp(-T / p.tau) if momentum else np.nan
    law_factor = np.concatenate([np.ones(nq) if momentum else np.exp(-degree * p.weight_decay * T),
                                 [(decay if momentum else 0.0) if g.name != "energy" else 1.0 for g in extras],
                                 np.full(nj, decay)])
    scale = rec.scale
    floor = EPS * np.sqrt(np.maximum(st.n_accepted, 1))[:, None] * np.nanmax(
        np.where(np.isfinite(scale), scale, np.nan), axis=1, initial=0.0)
    if algorithm:
        vel_final = (st.y[:, :P] - st.y[:, P:2 * P]) / p.h
    elif momentum:
        vel_final = st.y[:, P:2 * P]
    else:
        vel_final = _nan((n_seeds, P))
    nan_iso = _nan((n_seeds, nx + nj))
    law_on = momentum and p.track_law
    comp_group = np.concatenate([[g.name] * g.size for g in all_groups]) if all_groups else np.array([], str)
    comp_degree = np.concatenate([[g.degree] * g.size for g in all_groups]) if all_groups else np.array([], int)
    if momentum:  # momentum breaks the model's charges: their "drift" is their change from q(0)
        kept = ("law_residual: J = q(θ_k) − βq(θ_{k−1}) + a_k constant" if algorithm else
                "law_residual: I = τq̇ + q + 2λ∫q − 2τ∫q(θ̇) constant") if p.track_law else "not tracked"
        laws = [f"moves: drift = q(t) − q(0); its law {kept}"] * len(groups)
    else:
        laws = [("constant (a function charge: no decay law)" if g.degree == 0 else f"e^(-{g.degree}λt)·q(0)")
                if p.weight_decay else "constant" for g in groups]
    laws += [("constant: E(0)" if g.name == "energy" else "e^(-t/τ)·c(0)" if momentum else "zero: ⟨θ̇_1, W_1K⟩ = 0")
             for g in extras]
    laws += ["e^(-t/τ)·J(0)"] * len(iso)
    implicit = r.scheme == SCHEME_IMPLICIT
    W, n_saves = len(p.watch), len(p.times)
    if p.track_ntk:
        from .ntk import ntk_along

        along = [ntk_along(model, rec.theta_watch[slot], p.data.X, p.data.Y, p.ntk_top) for slot in range(W)]
        ntk_change = np.array([a["change"] for a in along]).reshape(W, n_saves)
        ntk_eig = np.array([a["eigenvalues"] for a in along]).reshape(W, n_saves, p.ntk_top)
        ntk_align = np.array([a["alignment"] for a in along]).reshape(W, n_saves)
    else:
        ntk_change, ntk_eig, ntk_align = _nan((W, n_saves)), _nan((W, n_saves, p.ntk_top)), _nan((W, n_saves))
    stats = _stochastic_statistics(p, rec, refs, st, kind, ints, floats, nq, nx + nj)
    ds = xr.Dataset(
        {
            "loss": (("seed", "time"), rec.loss),
            "drift": (("seed", "time", "charge"), rec.drift),
            "drift_max": (("seed", "time", "charge"), rec.drift_max),
            "predicted": (("seed", "time", "charge"), rec.predicted),
            "residual": (("seed", "time", "charge"), rec.residual),
            "law_residual": (("seed", "time", "charge"), rec.law),
            "scale": (("seed", "time", "charge"), scale),
            "roundoff_floor": (("seed", "charge"), floor),
            "charge_initial": (("seed", "component"), _join(refs.q0, refs.x0, j0)),
            "charge_final": (("seed", "component"), _masked(ok, _join(qf, xf, jf))),
            "law_factor": ("component", law_factor),
            "law_initial": (("seed", "component"), _join(refs.i0, nan_iso) if law_on else _nan((n_seeds, nq + nx + nj))),
            "law_final": (("seed", "component"), _masked(ok, _join(i_f, nan_iso)) if law_on else _nan((n_seeds, nq + nx + nj))),
            "theta_initial": (("seed", "param"), theta),
            "theta_final": (("seed", "param"), _masked(ok, st.y[:, :P])),
            "velocity_initial": (("seed", "param"), velocity if velocity is not None else _nan((n_seeds, P))),
            "velocity_final": (("seed", "param"), _masked(ok, vel_final)),
            "status": ("seed", status),
            "diverged": ("seed", status == STATUS_DIVERGED),
            "t_diverged": ("seed", st.t_diverged),
            "n_grad_evals": ("seed", st.n_grad),
            "n_accepted": ("seed", st.n_accepted),
            "n_rejected": ("seed", st.n_rejected),
            "n_solve_iters": ("seed", st.n_solve_iters),
            "max_solve_iters": ("seed", st.max_solve_iters),
            "solve_residual": ("seed", st.solve_residual if implicit else np.full(n_seeds, np.nan)),
            "n_retried_steps": ("seed", st.n_retried),
            "charge_watch": (("watched_seed", "time", "component"), rec.watch),
            "predicted_watch": (("watched_seed", "time", "component"), rec.predicted_watch),
            "ntk_change": (("watched_seed", "time"), ntk_change),
            "ntk_eigenvalues": (("watched_seed", "time", "ntk_rank"), ntk_eig),
            "ntk_alignment": (("watched_seed", "time"), ntk_align),
            **{name: (("time", "component"), x) for name, x in stats.items()},
            **_split_variables(p, st, rec, n_seeds, n_groups, nq + nx + nj),
        },
        coords={
            "seed": p.ids, "time": p.times, "charge": [g.name for g in all_groups],
            "charge_degree": ("charge", [g.degree for g in all_groups]),
            "charge_kind": ("charge", ["model"] * len(groups) + ["energy" if g.name == "energy" else "data"
                                                                   for g in extras] + ["isometric"] * len(iso)),
            "charge_law": ("charge", laws),
            "component": np.arange(nq + nx + nj), "component_charge": ("component", comp_group),
            "component_degree": ("component", comp_degree),
            "watched_seed": p.watch, "param": np.arange(P), "ntk_rank": np.arange(p.ntk_top),
        },
    )
    for name, text in VARIABLES.items():
        ds[name].attrs["description"] = text
    ds["time"].attrs.update(units="time (dimensionless, t = k·h for gradient descent and heavy ball)")
    config = {
        "model": model.to_config(), "data": p.data.to_config(), "init": to_config(p.init),
        "dynamics": r.dynamics, "method": r.method, "h": p.h, "t_end": p.t_end, "weight_decay": p.weight_decay,
        "root_seed": int(p.root_seed), "n_seeds": n_seeds, "divergence_bound": p.divergence_bound,
        **({"layer_lr": list(p.layer_lr)} if p.layer_lr is not None else {}),
        **({"bias_lr": list(p.bias_lr)} if p.bias_lr is not None else {}),
        **{k: (val if isinstance(val, (str, float, int, bool, type(None))) else "array") for k, val in p.options.items()},
        "tau": p.tau, "track_ntk": p.track_ntk, "ntk_top": p.ntk_top,
    }
    if r.scheme == SCHEME_ALGORITHM:
        config.update(learning_rate=eta, beta=beta)
    if p.options.get("batch_size") is not None:
        config.update(n_points=int(p.data.n_points))
    ds.attrs.update(provenance())
    ds.attrs.update(
        config=json.dumps(config), dynamics=r.dynamics, method=r.method, method_order=r.order,
        h=p.h if p.h is not None else np.nan, tau=p.tau if p.tau is not None else np.nan,
        learning_rate=eta if momentum else (p.h if r.dynamics in ("gd", "langevin") else np.nan),
        beta=beta if momentum else np.nan, t_end=p.t_end, weight_decay=p.weight_decay,
        charge_shapes=json.dumps({g.name: list(g.shape) for g in all_groups}),
        charge_descriptions=json.dumps({g.name: g.description for g in all_groups}),
        status_names=json.dumps({str(k): val for k, val in STATUS_NAMES.items()}),
        n_diverged=int(np.sum(status == STATUS_DIVERGED)), n_failed=int(np.sum(status != STATUS_OK)),
        wall_seconds=elapsed, description=p.description, track_ntk=int(p.track_ntk),
        stochastic=int(is_stochastic(p.options)),
        temperature=float(p.options.get("temperature") or 0.0), batch_size=int(p.options.get("batch_size") or 0),
        data_symmetry=json.dumps(list(p.data.symmetry_names)),
        data_symmetry_exact=int(p.data.symmetry_exact_for(model)) if p.data.symmetry_names else -1,
    )
    if r.scheme == SCHEME_OPTIMIZER:
        ds = _label_optimizer(ds, p, st, ok)
    if p.layer_lr is not None:  # back from φ to θ = √m φ; the charges are φ's: the weighted ones
        for name in ("theta_final", "velocity_final"):
            ds[name] = ds[name] * param_scale(model, p.layer_lr, p.bias_lr)
            ds[name].attrs["description"] = VARIABLES[name]
        ds.attrs["layer_lr"] = json.dumps(list(p.layer_lr))
        if p.bias_lr is not None:
            ds.attrs["bias_lr"] = json.dumps(list(p.bias_lr))
        ds.attrs["charge_descriptions"] = json.dumps({
            k: text + " — weighted by the layer rates: each layer's term divided by its multiplier m_i"
            for k, text in json.loads(ds.attrs["charge_descriptions"]).items()})
    return ds


def _label_optimizer(ds, p, st, ok):
    """An optimizer run: its per-seed state at the end, its hyperparameters and its limit flow."""
    r, P = p.resolved, p.model.n_params
    parts, params = optimizer_state_labels(r, P)
    ds["optimizer_state_final"] = (("seed", "optimizer_state"), _masked(ok, st.y[:, P:P + len(parts)]))
    ds["optimizer_state_final"].attrs["description"] = (
        "the optimizer's per-seed state at the last save time: moments m, v (per parameter) and the step "
        "count used for bias correction")
    ds = ds.assign_coords(optimizer_state_part=("optimizer_state", parts),
                          optimizer_state_param=("optimizer_state", params))
    ds.attrs.update(learning_rate=p.h, optimizer=r.dynamics, limit_flow=limit_flow(r.dynamics, _kernel_batch_size(p)),
                    **{k: float(p.options[k]) if p.options.get(k) is not None else np.nan
                       for k in ("beta1", "beta2", "eps")})
    return ds


def _split_variables(p, st, rec, n_seeds, n_groups, n_comp) -> dict:
    """The drift's expected parts (minibatch gd with split_drift; NaN elsewhere and on unwatched seeds)."""
    on = bool(p.options.get("split_drift"))
    nq = st.split.shape[1] // 2
    out = {}
    for k, name in enumerate(("discretisation", "noise")):
        series = getattr(rec, name) if on else _nan((n_seeds, len(p.times), n_groups))
        out[f"drift_{name}"] = (("seed", "time", "charge"), series)
        final = _nan((n_seeds, n_comp))
        if on:
            final = np.full((n_seeds, n_comp), np.nan)
            final[:, :nq] = st.split[:, k * nq:(k + 1) * nq]
            final[~np.isin(p.ids, p.watch), :] = np.nan
        out[f"drift_{name}_final"] = (("seed", "component"), final)
    return out


def _stochastic_statistics(p, rec, refs, st, kind, ints, floats, nq, n_other) -> dict:
    """Seed means and standard errors over the watched ok seeds (stochastic.py), per model-charge
    component, and under underdamped Langevin (momentum with a temperature) per isometric component too
    (their law E[J(t)] = e^{−t/τ}J(0); the model's charges have no closed-form law there: NaN); NaN for
    the other components and for deterministic runs."""
    n_saves = len(p.times)
    names = ("charge_mean", "charge_mean_se", "expectation_law", "mean_deviation", "mean_deviation_se")
    if not is_stochastic(p.options) or len(p.watch) == 0:
        return {name: _nan((n_saves, nq + n_other)) for name in names}
    groups = p.model.charge_groups
    degree = np.concatenate([[g.degree] * g.size for g in groups]) if groups else np.zeros(0, int)
    T = float(p.options.get("temperature") or 0.0)
    rows = np.searchsorted(p.ids, p.watch) if np.all(np.diff(p.ids) > 0) else \
        np.array([int(np.flatnonzero(p.ids == w)[0]) for w in p.watch])
    ok = st.status[rows] == STATUS_OK
    if p.resolved.dyn == DYN_MOMENTUM:
        nj = refs.j0.shape[1]
        nan = np.full((n_saves, nq), np.nan)
        out = seed_statistics(rec.watch[:, :, :nq], refs.q0[rows], ok, nan, nan)[:5]
        decay = np.repeat(np.exp(-np.asarray(p.times, dtype=float) / p.tau)[:, None], nj, axis=1)
        iso = seed_statistics(rec.watch[:, :, nq + n_other - nj:], refs.j0[rows], ok, decay, np.zeros_like(decay))[:5]
        pad = np.full((n_saves, n_other - nj), np.nan)
        return {name: np.concatenate([x, pad, j], axis=1) for name, x, j in zip(names, out, iso)}
    rate = noise_rates(kind, ints, floats, p.model.n_params, nq, ensemble_charges) if T > 0 else np.zeros(nq)
    a, b = expectation_factors(p.times, degree, rate, p.weight_decay, T)
    out = seed_statistics(rec.watch[:, :, :nq], refs.q0[rows], ok, a, b)[:5]
    pad = np.full((n_saves, n_other), np.nan)
    return {name: np.concatenate([x, pad], axis=1) for name, x in zip(names, out)}


def charge_matrix(ds: xr.Dataset, name: str, variable: str = "charge_watch") -> xr.DataArray:
    """The full matrix of charge group ``name`` for the watched seeds: (watched_seed, time, row, col).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``simulate`` result run with ``watch_seeds``.
    name : str
        A matrix charge group, e.g. ``"D1"``.
    variable : str
        ``"charge_watch"`` (the charge) or ``"predicted_watch"`` (gradient descent's exact one-step law).

    Returns
    -------
    xarray.DataArray

    Raises
    ------
    ConfigError
        An unknown charge or variable, or a run without watched seeds.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> ds = ns.simulate(model, ns.data.synthetic_regression(4, 2, 8), h=0.1, n_steps=2, seeds=2, watch_seeds=[1])
    >>> D1 = ns.charge_matrix(ds, "D1")
    >>> D1.shape, bool(np.allclose(D1[0, 0], D1[0, 0].T))     # symmetric 3 × 3 at every save time
    ((1, 3, 3, 3), True)
    """
    shapes = json.loads(ds.attrs["charge_shapes"])
    if name not in shapes:
        v.fail("name", name, f"must be one of the run's charges: {', '.join(shapes)}")
    comp = ds[variable].sel(component=ds.component_charge == name)
    shape = shapes[name]
    arr = comp.values.reshape(comp.shape[:-1] + tuple(shape))
    dims = comp.dims[:-1] + tuple(f"{name}_{ax}" for ax in ("row", "col")[: len(shape)])
    return xr.DataArray(arr, dims=dims, coords={d: comp[d] for d in comp.dims[:-1]}, name=name)


__all__ = ["simulate", "plan", "execute", "charge_matrix", "VARIABLES", "MOMENTUM_DYNAMICS", "OPTION_DEFAULTS"]
