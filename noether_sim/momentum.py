"""Structure-preserving integration (issue 5): Gauss–Legendre on gradient flow, and momentum flow
τθ̈ + θ̇ = −∇L − λθ by explicit RK, Gauss–Legendre, conformal symplectic splittings, heavy ball and Nesterov.

``simulate_structured`` validates, draws, allocates, dispatches ``kernels/driver_momentum.py`` chunk by
chunk and labels the result as an ``xarray.Dataset`` like ``simulate`` (variables in ``VARIABLES``).
``simulate(..., dynamics="momentum" | "heavy_ball" | "nesterov")`` and ``simulate(..., method="gl2")``
forward here.

Heavy ball is conformal symplectic Euler (theory.md §4): β = e^{−h/τ}, η = h²/τ; see
``heavy_ball_from_flow`` and ``flow_from_heavy_ball``.
"""

from __future__ import annotations

import json
import numbers
import time as _time

import numpy as np
import xarray as xr

from . import _validate as v
from .data import TrainingData
from .init import Gaussian, Given, to_config
from .kernels import STATUS_DIVERGED, STATUS_NAMES, STATUS_OK
from .kernels.driver_momentum import ensemble_state_charges, integrate_structured, state_size
from .kernels.momentum import (DYN_GF, DYN_MOMENTUM, SCHEME_EXPLICIT, SCHEME_HEAVY_BALL, SCHEME_IMPLICIT,
                               SCHEME_NESTEROV, SCHEME_SPLITTING)
from .kernels.driver import ensemble_loss_grad
from .methods import EXPLICIT_METHODS, IMPLICIT_METHODS, SPLITTING_METHODS
from .models import ChargeGroup
from .simulate import EPS, _over_seed_ranges, _progress_bar, _provenance, _save_grid, _seed_ids, initial_weights

STRUCTURED_DYNAMICS = {
    "gf": "gradient flow θ̇ = −∇L − λθ by an implicit Gauss–Legendre method (gl1, gl2, gl3)",
    "momentum": "momentum flow τθ̈ + θ̇ = −∇L − λθ as q̇ = p, ṗ = −(∇L(q) + λq + p)/τ, by an explicit RK "
                "method, a Gauss–Legendre method or a conformal symplectic splitting",
    "heavy_ball": "θ_{k+1} = θ_k + β(θ_k − θ_{k−1}) − η(∇L(θ_k) + λθ_k), time t = k·h",
    "nesterov": "θ_{k+1} = y_k − η(∇L(y_k) + λy_k), y_k = θ_k + β(θ_k − θ_{k−1}), time t = k·h",
}
MOMENTUM_DYNAMICS = ("momentum", "heavy_ball", "nesterov")

VARIABLES = {
    "loss": "training loss L(θ(t))",
    "drift": "balance D: |D(t) − D_law(t)| (Frobenius), D_law = e^{−2λt}D(0) under gradient flow and D(0) under "
             "momentum (which breaks D: then this is its change); isometric J: |J(t) − e^{−t/τ}J(0)|",
    "drift_max": "largest entry of the difference in drift",
    "law_residual": "momentum flow, balance D: |I(t) − I(0)|, I = τḊ + D + 2λ∫D(q)dt − 2τ∫D(p)dt, the integrated "
                    "exact law τD̈ + Ḋ + 2λD = 2τD(p); NaN for J, gradient flow and heavy ball / Nesterov",
    "scale": "size of the terms that cancel in the charge: round-off reference",
    "roundoff_floor": "ε·√(steps)·max_t scale: drift below this is round-off, not physics",
    "charge_initial": "every charge component (D, then J) at t = 0",
    "charge_final": "every charge component at the last save time",
    "law_initial": "the law invariant I at t = 0 (momentum flow, per balance component)",
    "law_final": "the law invariant I at the last save time",
    "theta_initial": "parameters at t = 0",
    "theta_final": "parameters at the last save time",
    "velocity_initial": "θ̇ at t = 0 (momentum dynamics)",
    "velocity_final": "θ̇ at the last save time (heavy ball / Nesterov: (θ_k − θ_{k−1})/h)",
    "status": "0 ok, 1 diverged, 4 implicit solve failed (see status_names)",
    "t_diverged": "time at which the seed diverged (NaN if it did not)",
    "n_grad_evals": "gradient evaluations spent integrating",
    "n_steps": "steps taken (substeps of a retried implicit step count once)",
    "n_solve_iters": "implicit methods: fixed-point sweeps over all steps (each sweep = s gradient evaluations)",
    "max_solve_iters": "implicit methods: most sweeps any accepted (sub)step needed",
    "solve_residual": "implicit methods: largest final fixed-point residual of any (sub)step, relative to max(1, |y|)",
    "n_retried_steps": "implicit methods: steps whose solve failed at h and were redone as 2, 4, … substeps",
    "charge_watch": "full charge vector (D, then J) of the watched seeds at every save time",
}

_VELOCITY_KEY = 2  # SeedSequence spawn key of initial velocities (random.py uses 0: init, 1: data)


def heavy_ball_from_flow(h: float, tau: float) -> tuple[float, float]:
    """(learning rate η, momentum β) of the heavy ball that is conformal symplectic Euler with step h on
    momentum flow with time constant τ: β = e^{−h/τ}, η = h²/τ (theory.md §4)."""
    h, tau = v.positive("h", h), v.positive("tau", tau)
    return h * h / tau, float(np.exp(-h / tau))


def flow_from_heavy_ball(learning_rate: float, beta: float) -> tuple[float, float]:
    """(h, τ) of heavy ball (η, β), 0 < β < 1: h/τ = −ln β and η = h²/τ give h = η/(−ln β), τ = h/(−ln β)."""
    eta = v.positive("learning_rate", learning_rate)
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not (0.0 < beta < 1.0):
        v.fail("beta", beta, "must be a number with 0 < beta < 1")
    rate = -np.log(beta)
    return eta / rate, eta / rate ** 2


def isometric_groups(model, offset: int = 0) -> list[ChargeGroup]:
    """The momentum (isometric) charge groups the kernels compute for ``model`` (J_i per hidden layer)."""
    if getattr(model, "kind", None) != "deep_linear":
        return []
    groups, pos = [], offset
    for i in range(1, model.n_layers):
        n = model.widths[i]
        bias = " + b_i p_{b_i}ᵀ" if model.bias else ""
        groups.append(ChargeGroup(f"J{i}", pos, (n, n), 2,
                                  f"isometric charge: antisymmetric part of W_{i}P_{i}ᵀ{bias} − P_{i + 1}ᵀW_{i + 1} "
                                  f"(hidden layer {i}); exact law e^(−t/τ)J(0)"))
        pos += n * n
    return groups


def _initial_velocity(velocity, model, data, theta, ids, root_seed, weight_decay):
    n_seeds, P = theta.shape
    if velocity is None or (isinstance(velocity, str) and velocity == "zero"):
        return np.zeros_like(theta)
    if isinstance(velocity, str) and velocity == "gradient":  # the gradient-flow velocity −∇L − λθ
        ints, floats = model.descriptor(), model.constants(data)
        _, grad = ensemble_loss_grad(theta, ints, floats, *model.kernel_data(data))
        return -(grad + weight_decay * theta)
    if isinstance(velocity, numbers.Real) and not isinstance(velocity, bool):
        scale = v.non_negative("velocity", velocity)
        return np.stack([scale * np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(_VELOCITY_KEY, int(i))))
                         .standard_normal(P) for i in ids])
    if isinstance(velocity, str):
        v.fail("velocity", velocity, "must be 'zero', 'gradient', a scale >= 0 (Gaussian entries) or an array")
    arr = v.finite_array("velocity", velocity, np.ndim(velocity) if np.ndim(velocity) in (1, 2) else 1)
    if arr.shape[-1] != P or (arr.ndim == 2 and arr.shape[0] != n_seeds):
        v.fail("velocity", arr, f"must have shape ({P},) or ({n_seeds}, {P})")
    return np.ascontiguousarray(np.broadcast_to(arr, theta.shape), dtype=float).copy()


def simulate_structured(model, data: TrainingData, *, dynamics: str = "momentum", method: str | None = None,
                        h: float | None = None, tau: float | None = None, beta: float | None = None,
                        learning_rate: float | None = None, t_end: float | None = None,
                        n_steps: int | None = None, save_every: float | None = None, save_times=None,
                        seeds=1, root_seed: int = 0, init=None, velocity=None, weight_decay: float = 0.0,
                        track_law: bool = True, solve_tol: float = 1e-14, max_solve_iters: int = 100,
                        max_halvings: int = 6, watch_seeds=(), divergence_bound: float = 1e8,
                        progress: bool = False, description: str = "") -> xr.Dataset:
    """Integrate an ensemble with a structure-preserving method or a momentum dynamics.

    dynamics  "gf" (implicit method only), "momentum" (flow), "heavy_ball" or "nesterov" (algorithms)
    method    gf: gl1 | gl2 | gl3;  momentum: any fixed-step explicit method (rk4, …), gl1–gl3, or a
              splitting: symplectic_euler | verlet | yoshida4 (default verlet);  heavy_ball/nesterov: none
    h, tau    step size and momentum time constant; heavy ball / Nesterov take (h, tau) or
              (learning_rate, beta), related by β = e^{−h/τ}, η = h²/τ
    velocity  initial θ̇: None/"zero", "gradient" (−∇L − λθ), a scale σ (N(0, σ²) entries, drawn per seed
              from (root_seed, seed id)), or an array (n_params,) / (n_seeds, n_params)
    track_law integrate ∫D(q), ∫D(p) along with the state to evaluate the balance law residual
    solve_tol, max_solve_iters, max_halvings   implicit solve: relative fixed-point tolerance, sweeps per
              attempt, and how often a failing step is halved (2^max_halvings substeps) before the
              seed is flagged "implicit solve failed"
    Other arguments as in ``simulate``.
    """
    # ---- validate everything before any work ----
    if dynamics not in STRUCTURED_DYNAMICS:
        v.fail("dynamics", dynamics, f"must be one of {', '.join(STRUCTURED_DYNAMICS)}")
    if not isinstance(data, TrainingData):
        v.fail("data", data, "must be a noether_sim.data.TrainingData (see data.synthetic_regression, data.from_arrays)")
    data.check_fits(model)
    tableau = splitting = None
    if dynamics == "gf":
        if method not in IMPLICIT_METHODS:
            v.fail("method", method, f"gradient flow here takes an implicit method ({', '.join(IMPLICIT_METHODS)}); "
                                     f"explicit methods run through simulate()")
        tableau, scheme = IMPLICIT_METHODS[method], SCHEME_IMPLICIT
    elif dynamics == "momentum":
        method = "verlet" if method is None else method
        if method in SPLITTING_METHODS:
            splitting, scheme = SPLITTING_METHODS[method], SCHEME_SPLITTING
        elif method in IMPLICIT_METHODS:
            tableau, scheme = IMPLICIT_METHODS[method], SCHEME_IMPLICIT
        elif method in EXPLICIT_METHODS and not EXPLICIT_METHODS[method].adaptive:
            tableau, scheme = EXPLICIT_METHODS[method], SCHEME_EXPLICIT
        else:
            known = [m for m, t in EXPLICIT_METHODS.items() if not t.adaptive] + [*IMPLICIT_METHODS, *SPLITTING_METHODS]
            v.fail("method", method, f"momentum flow takes a fixed-step method: one of {', '.join(known)}")
    else:
        if method is not None:
            v.fail("method", method, f"{dynamics} is its own algorithm; leave method unset")
        scheme = SCHEME_HEAVY_BALL if dynamics == "heavy_ball" else SCHEME_NESTEROV
    dyn = DYN_GF if dynamics == "gf" else DYN_MOMENTUM

    if dynamics in ("heavy_ball", "nesterov") and (learning_rate is not None or beta is not None):
        if learning_rate is None or beta is None or h is not None or tau is not None:
            v.fail("learning_rate" if learning_rate is None else "beta" if beta is None else "h" if h is not None else "tau",
                   learning_rate if learning_rate is None else beta if beta is None else h if h is not None else tau,
                   "give either (h, tau) or (learning_rate, beta), not a mix")
        h, tau = flow_from_heavy_ball(learning_rate, beta)
    elif learning_rate is not None or beta is not None:
        v.fail("learning_rate" if learning_rate is not None else "beta",
               learning_rate if learning_rate is not None else beta,
               "only heavy_ball and nesterov take (learning_rate, beta); momentum flow takes tau")
    if h is None:
        v.fail("h", h, "a step size > 0 is required")
    h = v.positive("h", h)
    if dyn == DYN_MOMENTUM:
        if tau is None:
            v.fail("tau", tau, "momentum dynamics need the time constant tau > 0 (friction 1/tau)")
        tau = v.positive("tau", tau)
    elif tau is not None:
        v.fail("tau", tau, "gradient flow has no time constant; use dynamics='momentum'")
    if n_steps is not None:
        if t_end is not None:
            v.fail("n_steps", n_steps, "give either t_end or n_steps, not both")
        t_end = v.positive_int("n_steps", n_steps) * h
    if t_end is None:
        v.fail("t_end", t_end, "an end time > 0 (or n_steps) is required")
    t_end = v.positive("t_end", t_end)
    weight_decay = v.non_negative("weight_decay", weight_decay)
    solve_tol = v.positive("solve_tol", solve_tol)
    max_solve_iters = v.positive_int("max_solve_iters", max_solve_iters)
    max_halvings = v.positive_int("max_halvings", max_halvings, minimum=0)
    if max_halvings > 20:
        v.fail("max_halvings", max_halvings, "must be <= 20")
    divergence_bound = v.positive("divergence_bound", divergence_bound)
    if not isinstance(track_law, bool):
        v.fail("track_law", track_law, "must be True or False")
    if dyn == DYN_GF and velocity is not None:
        v.fail("velocity", velocity, "gradient flow has no velocity state; use dynamics='momentum'")
    times = _save_grid(t_end, save_every, save_times, h)
    steps = np.diff(times) / h
    if np.any(np.abs(steps - np.round(steps)) > 1e-9 * np.maximum(steps, 1)) or np.any(np.round(steps) < 1):
        v.fail("save_times", list(times[1:]), f"with a fixed step h = {h}, every interval between save times "
                                              f"(and t_end) must be a whole number >= 1 of steps")
    ids = _seed_ids(seeds)
    watch = np.atleast_1d(np.asarray(watch_seeds, dtype=np.int64))
    missing = np.setdiff1d(watch, ids)
    if len(missing):
        v.fail("watch_seeds", list(watch), f"every watched seed must be among the seeds run (missing {list(missing)})")
    init = Gaussian() if init is None else init
    if not hasattr(init, "draw") and not isinstance(init, Given):
        v.fail("init", init, "must be an initialisation from noether_sim.init (Gaussian, Orthogonal, Balanced, Given)")

    # ---- lay out and allocate ----
    theta = np.array(initial_weights(model, init, ids, root_seed), dtype=np.float64, order="C")
    n_seeds, n_saves, P = len(ids), len(times), model.n_params
    mom = _initial_velocity(velocity, model, data, theta, ids, root_seed, weight_decay) if dyn == DYN_MOMENTUM else None
    groups = model.charge_groups
    iso = isometric_groups(model, offset=model.n_charges) if dyn == DYN_MOMENTUM else []
    nq, nj = model.n_charges, sum(g.size for g in iso)
    group_off = np.array([g.offset for g in groups] + [nq], dtype=np.int64)
    group_degree = np.array([g.degree for g in groups], dtype=np.int64)
    iso_off = np.array([g.offset - nq for g in iso] + [nj], dtype=np.int64)
    ints, floats = model.descriptor(), model.constants(data)
    data_a, data_b = model.kernel_data(data)
    track = bool(track_law) and scheme in (SCHEME_EXPLICIT, SCHEME_IMPLICIT, SCHEME_SPLITTING) and dyn == DYN_MOMENTUM
    n_state = state_size(dyn, scheme, P, nq, track)
    y = np.zeros((n_seeds, n_state))
    y[:, :P] = theta
    if scheme in (SCHEME_HEAVY_BALL, SCHEME_NESTEROV):
        y[:, P:] = theta - h * mom  # θ_{−1}: then (θ_0 − θ_{−1})/h is the initial velocity
    elif dyn == DYN_MOMENTUM:
        y[:, P:2 * P] = mom
    eta, beta_used = heavy_ball_from_flow(h, tau) if dyn == DYN_MOMENTUM else (np.nan, np.nan)
    q0, j0, i0 = ensemble_state_charges(y, dyn, scheme, P, nq, h, tau or 1.0, weight_decay, track, ints, floats)
    j0 = np.ascontiguousarray(j0[:, :nj])  # gradient flow records no isometric charges

    if tableau is not None:
        A, b = tableau.A, tableau.b
    else:
        A, b = np.zeros((1, 1)), np.zeros(1)
    ops, weights = splitting.op_codes() if splitting is not None else (np.zeros(1, np.int64), np.zeros(1))
    method_ints = np.array([scheme, dyn, track, max_solve_iters, max_halvings, P], dtype=np.int64)
    method_floats = np.array([h, tau or 1.0, weight_decay, divergence_bound, solve_tol, eta, beta_used])
    t_now = np.zeros(n_seeds)
    status = np.zeros(n_seeds, np.int64)
    t_div = np.full(n_seeds, np.nan)
    n_grad, n_done, n_iters, max_iters, n_retried = (np.zeros(n_seeds, np.int64) for _ in range(5))
    max_resid = np.zeros(n_seeds)
    watch_slot = np.full(n_seeds, -1, np.int64)
    row_of = {int(sid): row for row, sid in enumerate(ids)}
    for slot, sid in enumerate(watch):
        watch_slot[row_of[int(sid)]] = slot
    n_charge_groups = len(groups) + len(iso)
    out = {name: np.empty((n_seeds, n_saves, n_charge_groups)) for name in
           ("drift", "drift_max", "law_residual", "scale")}
    loss = np.empty((n_seeds, n_saves))
    q_watch = np.empty((len(watch), n_saves, nq + nj))

    # ---- run, one chunk of save times per kernel call ----
    chunks = np.array_split(np.arange(n_saves), min(n_saves, 200))
    label = f"{dynamics}/{method or dynamics}"
    started = _time.perf_counter()
    bar = _progress_bar(progress, t_end, label)
    try:
        for chunk in chunks:
            _over_seed_ranges(n_seeds, lambda lo, hi: integrate_structured(
                lo, hi, y, t_now, status, t_div, n_grad, n_done, n_iters, max_iters, max_resid, n_retried,
                times, chunk[0], chunk[-1] + 1, ints, floats, data_a, data_b,
                A, b, ops, weights, method_ints, method_floats,
                group_off, group_degree, iso_off, q0, j0, i0, watch_slot,
                loss, out["drift"], out["drift_max"], out["law_residual"], out["scale"], q_watch))
            if bar is not None:
                bar.update(times[chunk[-1]] - bar.n)
                bar.set_postfix(failed=int(np.sum(status != STATUS_OK)), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    elapsed = _time.perf_counter() - started

    # ---- label ----
    qf, jf, i_f = ensemble_state_charges(y, dyn, scheme, P, nq, h, tau or 1.0, weight_decay, track, ints, floats)
    jf = jf[:, :nj]
    ok = status[:, None] == STATUS_OK
    floor = EPS * np.sqrt(np.maximum(n_done, 1))[:, None] * np.nanmax(
        np.where(np.isfinite(out["scale"]), out["scale"], np.nan), axis=1, initial=0.0)
    all_groups = groups + iso
    component_group = np.concatenate([[g.name] * g.size for g in all_groups]) if all_groups else np.array([], str)
    if scheme in (SCHEME_HEAVY_BALL, SCHEME_NESTEROV):
        vel_final = (y[:, :P] - y[:, P:2 * P]) / h
    elif dyn == DYN_MOMENTUM:
        vel_final = y[:, P:2 * P]
    else:
        vel_final = np.full((n_seeds, P), np.nan)
    ds = xr.Dataset(
        {
            "loss": (("seed", "time"), loss),
            **{name: (("seed", "time", "charge"), arr) for name, arr in out.items()},
            "roundoff_floor": (("seed", "charge"), floor),
            "charge_initial": (("seed", "component"), np.concatenate([q0, j0], axis=1)),
            "charge_final": (("seed", "component"), np.where(ok, np.concatenate([qf, jf], axis=1), np.nan)),
            "law_initial": (("seed", "balance_component"), i0),
            "law_final": (("seed", "balance_component"), np.where(ok, i_f, np.nan)),
            "theta_initial": (("seed", "param"), theta),
            "theta_final": (("seed", "param"), np.where(ok, y[:, :P], np.nan)),
            "velocity_initial": (("seed", "param"), mom if mom is not None else np.full((n_seeds, P), np.nan)),
            "velocity_final": (("seed", "param"), np.where(ok, vel_final, np.nan)),
            "status": ("seed", status),
            "diverged": ("seed", status == STATUS_DIVERGED),
            "t_diverged": ("seed", t_div),
            "n_grad_evals": ("seed", n_grad),
            "n_steps": ("seed", n_done),
            "n_solve_iters": ("seed", n_iters),
            "max_solve_iters": ("seed", max_iters),
            "solve_residual": ("seed", max_resid),
            "n_retried_steps": ("seed", n_retried),
            "charge_watch": (("watched_seed", "time", "component"), q_watch),
        },
        coords={
            "seed": ids, "time": times, "charge": [g.name for g in all_groups],
            "charge_kind": ("charge", ["balance"] * len(groups) + ["isometric"] * len(iso)),
            "component": np.arange(nq + nj), "component_charge": ("component", component_group),
            "balance_component": np.arange(nq), "watched_seed": watch, "param": np.arange(P),
        },
    )
    for name, text in VARIABLES.items():
        if name in ds:
            ds[name].attrs["description"] = text
    method_name = method if method is not None else dynamics
    config = {
        "model": model.to_config(), "data": data.to_config(), "init": to_config(init), "dynamics": dynamics,
        "method": method_name, "h": h, "tau": tau, "t_end": t_end, "weight_decay": weight_decay,
        "learning_rate": eta, "beta": beta_used, "velocity": velocity if isinstance(velocity, (str, float, int, type(None)))
        else "array", "track_law": track, "solve_tol": solve_tol, "max_solve_iters": max_solve_iters,
        "max_halvings": max_halvings, "root_seed": int(root_seed), "n_seeds": n_seeds,
        "divergence_bound": divergence_bound,
    }
    ds.attrs.update(_provenance())
    ds.attrs.update(
        config=json.dumps(config), dynamics=dynamics, method=method_name,
        method_order=(tableau or splitting).order if (tableau or splitting) else 1,
        h=h, tau=tau if tau is not None else np.nan, learning_rate=eta, beta=beta_used, t_end=t_end,
        weight_decay=weight_decay,
        charge_shapes=json.dumps({g.name: list(g.shape) for g in all_groups}),
        charge_descriptions=json.dumps({g.name: g.description for g in all_groups}),
        status_names=json.dumps({str(k): val for k, val in STATUS_NAMES.items()}),
        n_diverged=int(np.sum(status == STATUS_DIVERGED)), n_failed=int(np.sum(status != STATUS_OK)),
        wall_seconds=elapsed, description=description,
    )
    return ds
