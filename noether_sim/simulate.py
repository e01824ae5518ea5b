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
from .ensemble import (EPS, check_memory, check_whole_steps, initial_weights, over_seed_ranges, progress_bar,
                       provenance, save_grid, seed_ids)
from .init import Gaussian, Given, to_config
from .models import ChargeGroup
from .stats import check_keep, execute_stats
from .kernels import STATUS_DIVERGED, STATUS_NAMES, STATUS_OK
from .kernels.bundles import (ChargeRefs, GradientFlowSettings, Method, ModelData, MomentumSettings, Records,
                              SeedState)
from .kernels.driver import (SCHEME_ALGORITHM, SCHEME_IMPLICIT, ensemble_extras, ensemble_loss_grad,
                             ensemble_state_charges, integrate, state_size)
from .kernels.fields import DYN_MOMENTUM

VARIABLES = {
    "loss": "training loss L(θ(t))",
    "drift": "|q(t) − q_law(t)| (Frobenius) per charge; q_law is the charge's exact law (coordinate charge_law)",
    "drift_max": "largest entry of |q(t) − q_law(t)|",
    "predicted": "gradient descent: |q_pred(t) − q_law(t)|, the discretisation drift its exact one-step law predicts",
    "residual": "gradient descent: |q(t) − q_pred(t)|, drift the exact law does not explain (round-off)",
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
    "predicted_watch": "gradient descent: the exact law's prediction of charge_watch",
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
    memory: dict = field(default_factory=dict)
    keep: object = None  # None: per-seed records; a stats.Stats: streaming statistics (stats.py)


def plan(model, data, *, dynamics="gf", method=None, h=None, t_end=None, n_steps=None, save_every=None,
         save_times=None, seeds=1, root_seed=0, init=None, weight_decay=0.0, watch_seeds=(),
         divergence_bound=1e8, memory_limit=None, description="", keep="seeds", **options) -> Plan:
    """Validate a ``simulate`` call and estimate its memory; ConfigError naming the first bad argument."""
    keep = check_keep(keep)
    resolved = resolve(dynamics, method)
    options = check_options(resolved, options)
    track_energy = bool(options.get("track_energy", False))
    if not isinstance(data, TrainingData):
        v.fail("data", data, "must be a noether_sim.data.TrainingData (see data.synthetic_regression, data.from_arrays)")
    if not hasattr(model, "charge_groups"):
        v.fail("model", model, "must be a noether_sim model (DeepLinear, mlp.MLP)")
    data.check_fits(model)
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
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool) and seeds >= 1:
        # refuse an absurd ensemble before even listing its seed ids
        held = int(seeds) if keep is None else min(int(seeds), keep.chunk)  # stats: one chunk at a time
        check_memory(memory_needed(model, resolved, bool(options.get("track_law")), held, len(times),
                                   len(np.atleast_1d(watch_seeds)), _extra_groups(data, track_energy)),
                     memory_limit)
    ids = seed_ids(seeds)
    watch = np.atleast_1d(np.asarray(watch_seeds, dtype=np.int64))
    missing = watch[~np.isin(watch, ids)]
    if len(missing):
        v.fail("watch_seeds", watch.tolist(), f"every watched seed must be among the seeds run (missing {missing.tolist()[:5]})")
    init = Gaussian() if init is None else init
    if not hasattr(init, "rows") and not isinstance(init, Given):
        v.fail("init", init, "must be an initialisation from noether_sim.init (Gaussian, Orthogonal, Balanced, Given)")
    if not isinstance(description, str):
        v.fail("description", description, "must be a string")
    track_law = bool(options.get("track_law", False))
    p = Plan(model, data, resolved, options, h, tau, t_end, times, ids, watch, init, root_seed, weight_decay,
             divergence_bound, description, track_law, track_energy, keep=keep)
    held = len(ids) if keep is None else min(len(ids), keep.chunk)
    p.memory = memory_needed(model, resolved, track_law, held, len(times), len(watch),
                             _extra_groups(data, track_energy))
    check_memory(p.memory, memory_limit)
    return p


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
    return P, nq, nj, nx, n_groups, n_state


def memory_needed(model, resolved, track_law, n_seeds, n_saves, n_watched, extras=()) -> dict:
    """Bytes a run holds at once, by part (float64 and int64 alike: 8 bytes)."""
    P, nq, nj, nx, n_groups, n_state = _sizes(model, resolved, track_law, extras)
    S, T, W = float(n_seeds), float(n_saves), float(n_watched)
    comp = nq + nj + nx
    return {
        # the state, initial and final θ and velocity, their labelled copies
        "state": 8.0 * S * (n_state + 6 * P),
        "records": 8.0 * S * T * (1 + 7 * n_groups),
        "charges": 8.0 * S * (3 * nq + 8 * comp + 20),
        "watched seeds": 8.0 * W * T * comp * 2,
    }


def simulate(model, data: TrainingData, *, dynamics: str = "gf", method: str | None = None,
             h: float | None = None, t_end: float | None = None, n_steps: int | None = None,
             save_every: float | None = None, save_times=None, seeds=1, root_seed: int = 0, init=None,
             weight_decay: float = 0.0, tau: float | None = None, beta: float | None = None,
             learning_rate: float | None = None, velocity=None, track_law: bool | None = None,
             rtol: float | None = None, atol: float | None = None, max_steps: int | None = None,
             solve_tol: float | None = None, max_solve_iters: int | None = None, max_halvings: int | None = None,
             track_energy: bool | None = None, watch_seeds=(), divergence_bound: float = 1e8, memory_limit: float | None = None,
             progress: bool = False, description: str = "", keep="seeds") -> xr.Dataset:
    """Integrate an ensemble of networks and record loss and charges at the save times.

    dynamics  "gf" gradient flow, "gd" gradient descent (learning rate h), "momentum" momentum flow
              τθ̈ + θ̇ = −∇L − λθ, "heavy_ball" or "nesterov" (``noether-sim list`` shows them all)
    method    gf: any explicit method (rk4 default; dopri5 adaptive) or gl1/gl2/gl3 (implicit);
              gd: euler (implied); momentum: any of those or a splitting (verlet default,
              symplectic_euler, yoshida4); heavy_ball / nesterov: none
    h         step size (learning rate for gd); for the adaptive dopri5 an optional first step
    t_end     end time; or ``n_steps`` fixed steps of size h
    save_every / save_times   when to record (t = 0 is always recorded); fixed steps must land on them
    seeds     number of seeds, or a list of seed ids; seed i starts from weights keyed by (root_seed, i)
    init      initialisation (``init.Gaussian()`` by default); ``watch_seeds``: seed ids whose full
              charge vectors are kept at every save time
    weight_decay   λ ≥ 0 in the dynamics above
    divergence_bound   a seed with |θ_j| above this (or non-finite) is stopped, flagged with its time
              and excluded from statistics
    memory_limit   bytes a call may allocate (default: the memory available now); larger calls are
              refused before any work

    Options that only some dynamics or methods take (any other combination is a ConfigError):
    tau       momentum dynamics: the time constant (friction 1/τ); heavy_ball / nesterov take (h, tau)
              or (learning_rate, beta), related by β = e^{−h/τ}, η = h²/τ
    velocity  momentum dynamics: θ̇(0) = "zero" (default), "gradient" (−∇L − λθ), a scale σ, or an array
    track_law momentum dynamics: check the model charges' exact law (default True). Momentum flow by a
              method: integrate ∫q(q), ∫q(p) so that I = τq̇ + q + 2λ∫q(q) − 2τ∫q(p) stays constant;
              heavy ball / Nesterov: the discrete invariant J = q(θ_k) − βq(θ_{k−1}) + a_k of their
              exact one-step law (kernels/driver.py ``_algorithm_law``); its change is ``law_residual``
    track_energy  a Runge–Kutta method: record the energy E = L + λ|θ|²/2 (+ τ|p|²/2) + ∫|θ̇|² as a charge
              with law E(0) (time symmetry), integrating ∫|θ̇|² with the run's own method (default False)

    Data with a symmetry group (``data.augment``) adds one charge per generator K, c = ⟨θ̇_1, W_1K⟩:
    law 0 under gradient flow and descent, e^{−t/τ}c(0) under momentum. ``ds.attrs["data_symmetry_exact"]``
    says whether the loss is exactly invariant for this model (1), only approximately (0), or −1 (none).
    rtol, atol, max_steps   adaptive methods: tolerances and step budget per seed
    solve_tol, max_solve_iters, max_halvings   implicit methods: relative fixed-point tolerance, sweeps
              per attempt, and how often a failing step is halved before the seed is flagged
    keep      "seeds" (default): per-seed records; "stats" or ``stats.Stats(bins=, range=, scale=, chunk=)``:
              seeds run in chunks and only their statistics per save time and charge are kept
              (count, mean, var, min, max, histogram: ``<name>_mean`` …), so memory does not grow with
              the number of seeds (noether_sim/stats.py, docs/guide/stats.md)
    """
    p = plan(model, data, dynamics=dynamics, method=method, h=h, t_end=t_end, n_steps=n_steps, save_every=save_every,
             save_times=save_times, seeds=seeds, root_seed=root_seed, init=init, weight_decay=weight_decay,
             watch_seeds=watch_seeds, divergence_bound=divergence_bound, memory_limit=memory_limit,
             description=description, tau=tau, beta=beta, learning_rate=learning_rate, velocity=velocity,
             track_law=track_law, rtol=rtol, atol=atol, max_steps=max_steps, solve_tol=solve_tol,
             max_solve_iters=max_solve_iters, max_halvings=max_halvings, track_energy=track_energy, keep=keep)
    return execute(p, progress=progress)


def execute(p: Plan, progress: bool = False) -> xr.Dataset:
    """Run a validated plan (see ``plan``) and label its result."""
    if p.keep is not None:  # streaming statistics: this function per chunk of seeds, folded
        return execute_stats(p, progress)
    model, r, opts = p.model, p.resolved, p.options
    extras = _extra_groups(p.data, p.track_energy)
    P, nq, nj, nx, n_groups, n_state = _sizes(p.model, p.resolved, p.track_law, extras)
    algorithm = r.scheme == SCHEME_ALGORITHM
    momentum = r.dyn == DYN_MOMENTUM
    n_seeds, n_saves = len(p.ids), len(p.times)
    ints, floats = model.descriptor(), model.constants(p.data)
    kind = int(ints[0])  # compile-time literal in the kernels: one specialisation per model kind
    data_a, data_b = model.kernel_data(p.data)
    h = p.h if p.h is not None else 0.0
    tau = p.tau if p.tau is not None else np.nan
    eta, beta = heavy_ball_from_flow(h, tau) if momentum and p.h is not None else (np.nan, np.nan)

    # ---- initial state ----
    theta = np.array(initial_weights(model, p.init, p.ids, p.root_seed), dtype=np.float64, order="C")
    if theta.shape != (n_seeds, P):
        raise AssertionError(f"initialisation returned shape {theta.shape}, expected {(n_seeds, P)}")
    velocity = None
    if momentum:
        velocity = initial_velocity(opts.get("velocity"), model, theta, p.ids, p.root_seed, p.weight_decay,
                                    lambda th: ensemble_loss_grad(kind, th, ints, floats, data_a, data_b)[1])
    y = np.zeros((n_seeds, n_state))
    y[:, :P] = theta
    if algorithm:
        y[:, P:2 * P] = theta - h * velocity  # θ_{−1}: then (θ_0 − θ_{−1})/h is the initial velocity
    elif momentum:
        y[:, P:2 * P] = velocity

    tableau, splitting = r.tableau, r.splitting
    if tableau is not None:
        b_err = tableau.b_err if tableau.b_err is not None else tableau.b
        method = Method(tableau.A, tableau.b, b_err, np.zeros(1, np.int64), np.zeros(1))
    else:
        ops, weights = splitting.op_codes() if splitting is not None else (np.zeros(1, np.int64), np.zeros(1))
        method = Method(np.zeros((1, 1)), np.zeros(1), np.zeros(1), ops, weights)
    settings = MomentumSettings if momentum else GradientFlowSettings  # the dynamics, as a type (bundles.py)
    cfg = settings(
        dyn=int(r.dyn), n_params=int(P), track_law=bool(p.track_law), track_gd_law=r.dynamics == "gd",
        nesterov=r.dynamics == "nesterov", fsal=bool(tableau is not None and tableau.fsal),
        error_order=int(tableau.error_order or tableau.order) if tableau is not None else 1,
        max_steps=int(opts.get("max_steps", 0)), max_solve_iters=int(opts.get("max_solve_iters", 0)),
        max_halvings=int(opts.get("max_halvings", 0)), h=float(h), rtol=float(opts.get("rtol", 0.0)),
        atol=float(opts.get("atol", 0.0)), weight_decay=float(p.weight_decay), tau=float(tau if momentum else 1.0),
        eta=float(eta), beta=float(beta), divergence_bound=float(p.divergence_bound),
        solve_tol=float(opts.get("solve_tol", 0.0)), energy_slot=n_state - 1 if p.track_energy else -1)
    model_data = ModelData(ints, floats, data_a, data_b)
    groups, iso = model.charge_groups, _isometric_groups(model, r)
    group_off = np.array([g.offset for g in groups] + [nq], dtype=np.int64)
    group_degree = np.array([g.degree for g in groups], dtype=np.int64)
    q0, j0, i0 = ensemble_state_charges(kind, y, algorithm, cfg, group_off, group_degree, ints, floats)
    j0 = np.ascontiguousarray(j0[:, :nj]) if momentum else np.zeros((n_seeds, nj))

    gens = np.ascontiguousarray(p.data.symmetry_generators, dtype=np.float64)
    x0 = ensemble_extras(kind, y, algorithm, cfg, gens, nx, ints, floats, data_a, data_b)

    watch_slot = np.full(n_seeds, -1, np.int64)
    row_of = {int(sid): row for row, sid in enumerate(p.ids)}
    for slot, sid in enumerate(p.watch):
        watch_slot[row_of[int(sid)]] = slot
    refs = ChargeRefs(group_off, group_degree, np.array([g.offset - nq for g in iso] + [nj], dtype=np.int64), q0, j0, i0, watch_slot,
                      gens, x0)
    st = SeedState(y, np.zeros(n_seeds), np.full(n_seeds, h), q0.copy(), np.zeros(n_seeds, np.int64),
                   np.full(n_seeds, np.nan), *(np.zeros(n_seeds, np.int64) for _ in range(5)), np.zeros(n_seeds),
                   np.zeros(n_seeds, np.int64))
    rec = Records(np.empty((n_seeds, n_saves)), *(np.empty((n_seeds, n_saves, n_groups)) for _ in range(6)),
                  np.empty((len(p.watch), n_saves, nq + nx + nj)), np.empty((len(p.watch), n_saves, nq + nx + nj)))

    # ---- run, one chunk of save times per kernel call (progress, interruptible between chunks) ----
    chunks = np.array_split(np.arange(n_saves), min(n_saves, 200))
    started = _time.perf_counter()
    bar = progress_bar(progress, p.t_end, f"{r.dynamics}/{r.method}")
    try:
        for chunk in chunks:
            over_seed_ranges(n_seeds, lambda lo, hi: integrate(
                kind, r.scheme, lo, hi, st, p.times, chunk[0], chunk[-1] + 1, model_data, method, cfg, refs, rec))
            if bar is not None:
                bar.update(p.times[chunk[-1]] - bar.n)
                bar.set_postfix(failed=int(np.sum(st.status != STATUS_OK)), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    elapsed = _time.perf_counter() - started
    return _label(p, st, rec, refs, theta, velocity, cfg, kind, ints, floats, data_a, data_b, eta, beta, elapsed)


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
    qf, jf, i_f = ensemble_state_charges(kind, st.y, algorithm, cfg, refs.group_off, refs.group_degree, ints, floats)
    xf = ensemble_extras(kind, st.y, algorithm, cfg, refs.gens, nx, ints, floats, data_a, data_b)
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
        laws = [f"e^(-{g.degree}λt)·q(0)" if p.weight_decay else "constant" for g in groups]
    laws += [("constant: E(0)" if g.name == "energy" else "e^(-t/τ)·c(0)" if momentum else "zero: ⟨θ̇_1, W_1K⟩ = 0")
             for g in extras]
    laws += ["e^(-t/τ)·J(0)"] * len(iso)
    implicit = r.scheme == SCHEME_IMPLICIT
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
        },
        coords={
            "seed": p.ids, "time": p.times, "charge": [g.name for g in all_groups],
            "charge_degree": ("charge", [g.degree for g in all_groups]),
            "charge_kind": ("charge", ["model"] * len(groups) + ["energy" if g.name == "energy" else "data"
                                                                   for g in extras] + ["isometric"] * len(iso)),
            "charge_law": ("charge", laws),
            "component": np.arange(nq + nx + nj), "component_charge": ("component", comp_group),
            "component_degree": ("component", comp_degree),
            "watched_seed": p.watch, "param": np.arange(P),
        },
    )
    for name, text in VARIABLES.items():
        ds[name].attrs["description"] = text
    ds["time"].attrs.update(units="time (dimensionless, t = k·h for gradient descent and heavy ball)")
    config = {
        "model": model.to_config(), "data": p.data.to_config(), "init": to_config(p.init),
        "dynamics": r.dynamics, "method": r.method, "h": p.h, "t_end": p.t_end, "weight_decay": p.weight_decay,
        "root_seed": int(p.root_seed), "n_seeds": n_seeds, "divergence_bound": p.divergence_bound,
        **{k: (val if isinstance(val, (str, float, int, bool, type(None))) else "array") for k, val in p.options.items()},
        "tau": p.tau,
    }
    if r.scheme == SCHEME_ALGORITHM:
        config.update(learning_rate=eta, beta=beta)
    ds.attrs.update(provenance())
    ds.attrs.update(
        config=json.dumps(config), dynamics=r.dynamics, method=r.method, method_order=r.order,
        h=p.h if p.h is not None else np.nan, tau=p.tau if p.tau is not None else np.nan,
        learning_rate=eta if momentum else (p.h if r.dynamics == "gd" else np.nan),
        beta=beta if momentum else np.nan, t_end=p.t_end, weight_decay=p.weight_decay,
        charge_shapes=json.dumps({g.name: list(g.shape) for g in all_groups}),
        charge_descriptions=json.dumps({g.name: g.description for g in all_groups}),
        status_names=json.dumps({str(k): val for k, val in STATUS_NAMES.items()}),
        n_diverged=int(np.sum(status == STATUS_DIVERGED)), n_failed=int(np.sum(status != STATUS_OK)),
        wall_seconds=elapsed, description=p.description,
        data_symmetry=json.dumps(list(p.data.symmetry_names)),
        data_symmetry_exact=int(p.data.symmetry_exact_for(model)) if p.data.symmetry_names else -1,
    )
    return ds


def charge_matrix(ds: xr.Dataset, name: str, variable: str = "charge_watch") -> xr.DataArray:
    """The full matrix of charge group ``name`` for the watched seeds: (watched_seed, time, row, col)."""
    shapes = json.loads(ds.attrs["charge_shapes"])
    if name not in shapes:
        v.fail("name", name, f"must be one of the run's charges: {', '.join(shapes)}")
    comp = ds[variable].sel(component=ds.component_charge == name)
    shape = shapes[name]
    arr = comp.values.reshape(comp.shape[:-1] + tuple(shape))
    dims = comp.dims[:-1] + tuple(f"{name}_{ax}" for ax in ("row", "col")[: len(shape)])
    return xr.DataArray(arr, dims=dims, coords={d: comp[d] for d in comp.dims[:-1]}, name=name)


__all__ = ["simulate", "plan", "execute", "charge_matrix", "VARIABLES", "MOMENTUM_DYNAMICS", "OPTION_DEFAULTS"]
