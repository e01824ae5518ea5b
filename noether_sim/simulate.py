"""simulate(): validate, draw initial weights, allocate, run the compiled driver chunk by chunk, label.

The one entry point from Python objects to the kernels. Everything it returns is an
``xarray.Dataset`` whose variables are documented in ``VARIABLES`` below.
"""

from __future__ import annotations

import functools
import json
import numbers
import time as _time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from .kernels import STATUS_DIVERGED, STATUS_NAMES, STATUS_OK
from .kernels.driver import ensemble_charges, integrate_saves

from . import _validate as v
from .data import TrainingData
from .init import Balanced, Gaussian, Given, to_config
from .methods import get_any_method
from .random import seed_rng

DYNAMICS = {
    "gf": "gradient flow θ̇ = −∇L − λθ, integrated by an explicit Runge–Kutta method",
    "gd": "gradient descent θ ← θ − η(∇L + λθ) (explicit Euler with h = η, time t = kη)",
}

VARIABLES = {
    "loss": "training loss L(θ(t))",
    "drift": "|q(t) − q_law(t)| (Frobenius), q_law = e^{−dλt} q(0) the flow's exact law, d the charge degree",
    "drift_max": "largest entry of |q(t) − q_law(t)|",
    "predicted": "gradient descent: |q_pred(t) − q_law(t)|, the discretisation drift its exact one-step law predicts",
    "residual": "gradient descent: |q(t) − q_pred(t)|, drift the exact law does not explain (round-off)",
    "scale": "size of the terms that cancel in q (|W_{i+1}|² + |W_i|² + |b_i|² for D_i): round-off reference",
    "roundoff_floor": "ε·√(steps)·max_t scale: drift below this is round-off, not physics",
    "charge_initial": "every charge component at t = 0",
    "charge_final": "every charge component at the last save time",
    "theta_final": "parameters at the last save time",
    "status": "0 ok, 1 diverged, 2 step size underflow, 3 step budget exceeded",
    "t_diverged": "time at which the seed diverged (NaN if it did not)",
    "n_grad_evals": "gradient evaluations spent integrating",
    "n_accepted": "accepted steps",
    "n_rejected": "rejected steps (adaptive methods)",
    "charge_watch": "full charge vector of the watched seeds at every save time",
    "predicted_watch": "gradient descent: the exact law's prediction of charge_watch",
}

EPS = np.finfo(np.float64).eps


def _save_grid(t_end, save_every, save_times, fixed_step):
    if save_times is not None:
        times = v.finite_array("save_times", np.atleast_1d(save_times), 1)
        if np.any(times <= 0) or np.any(times > t_end * (1 + 1e-12)):
            bad = times[(times <= 0) | (times > t_end * (1 + 1e-12))][0]
            v.fail("save_times", float(bad), f"every save time must lie in (0, t_end = {t_end}]")
        if np.any(np.diff(times) <= 0):
            v.fail("save_times", list(times), "must be strictly increasing")
        return np.concatenate([[0.0], times])
    if save_every is None:  # about 100 records; for fixed steps, every whole number of steps
        save_every = t_end / 100 if fixed_step is None else fixed_step * max(1, round(t_end / fixed_step) // 100)
    save_every = v.positive("save_every", save_every)
    if save_every > t_end * (1 + 1e-12):
        v.fail("save_every", save_every, f"must be <= t_end = {t_end}")
    n = int(np.floor(t_end / save_every * (1 + 1e-12)))
    times = save_every * np.arange(n + 1)
    if t_end - times[-1] > 1e-12 * t_end:
        times = np.append(times, t_end)
    times[-1] = min(times[-1], t_end)
    return times


def _seed_ids(seeds):
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return np.arange(v.positive_int("seeds", seeds), dtype=np.int64)
    ids = np.asarray(seeds)
    if ids.ndim != 1 or len(ids) == 0 or ids.dtype.kind not in "iu" or np.any(ids < 0) or len(set(ids)) != len(ids):
        v.fail("seeds", seeds, "must be a number of seeds >= 1 or a non-empty list of distinct seed ids >= 0")
    return ids.astype(np.int64)


def initial_weights(model, init, seed_ids, root_seed):
    """One row per seed; seed i's row depends only on (root_seed, i)."""
    if isinstance(init, Given):
        return init.rows(model, len(seed_ids))
    return np.stack([init.draw(model, seed_rng(root_seed, int(i))) for i in seed_ids])


def simulate(model, data: TrainingData, *, dynamics: str = "gf", method: str | None = None,
             h: float | None = None, t_end: float | None = None, n_steps: int | None = None,
             save_every: float | None = None, save_times=None, seeds=1, root_seed: int = 0,
             init=None, weight_decay: float = 0.0, rtol: float = 1e-8, atol: float = 1e-10,
             watch_seeds=(), divergence_bound: float = 1e8, max_steps: int = 10_000_000,
             progress: bool = False, description: str = "", **structured) -> xr.Dataset:
    """Integrate an ensemble of networks and record loss and charges at the save times.

    dynamics  "gf" (gradient flow, any explicit method) or "gd" (gradient descent, learning rate h)
    method    explicit method name (see ``methods.EXPLICIT_METHODS``); "gd" implies "euler"
    h         step size (learning rate for "gd"); for the adaptive "dopri5" an optional first step
    t_end     end time; or ``n_steps`` fixed steps of size h
    save_every / save_times   when to record (t = 0 is always recorded); fixed-step methods need
              save times that are whole multiples of h
    seeds     number of seeds, or a list of seed ids; ``root_seed`` seeds the random initialisation
    init      initialisation (``init.Gaussian`` by default), ``watch_seeds`` seed ids whose full charge
              matrices are kept; a seed whose parameters leave |θ_j| <= divergence_bound (or become
              non-finite) is stopped, flagged and excluded from statistics.

    Momentum dynamics ("momentum", "heavy_ball", "nesterov"), implicit methods ("gl1", "gl2", "gl3") and
    splittings ("symplectic_euler", "verlet", "yoshida4") run through ``momentum.simulate_structured``,
    which also takes its own keyword arguments (tau, beta, learning_rate, velocity, solve_tol, …).
    """
    # ---- structure-preserving integration and momentum (issue 5): its own entry point ----
    from .momentum import MOMENTUM_DYNAMICS, simulate_structured
    from .methods import IMPLICIT_METHODS, SPLITTING_METHODS

    if dynamics in MOMENTUM_DYNAMICS or (isinstance(method, str) and (method in IMPLICIT_METHODS
                                                                      or method in SPLITTING_METHODS)):
        return simulate_structured(model, data, dynamics=dynamics, method=method, h=h, t_end=t_end,
                                   n_steps=n_steps, save_every=save_every, save_times=save_times, seeds=seeds,
                                   root_seed=root_seed, init=init, weight_decay=weight_decay,
                                   watch_seeds=watch_seeds, divergence_bound=divergence_bound,
                                   progress=progress, description=description, **structured)
    if structured:
        name = next(iter(structured))
        v.fail(name, structured[name], "is not an argument of simulate() for this dynamics/method (momentum "
                                       "dynamics and implicit or splitting methods take tau, beta, velocity, …)")
    # ---- validate everything before any work ----
    if dynamics not in DYNAMICS:
        v.fail("dynamics", dynamics, f"must be one of {', '.join([*DYNAMICS, *MOMENTUM_DYNAMICS])}")
    if dynamics == "gd":
        if method not in (None, "euler"):
            v.fail("method", method, "gradient descent is explicit Euler; leave method unset or use 'euler'")
        method = "euler"
    tableau = get_any_method(method or "rk4")
    if not isinstance(data, TrainingData):
        v.fail("data", data, "must be a noether_sim.data.TrainingData (see data.synthetic_regression, data.from_arrays)")
    data.check_fits(model)
    if h is not None:
        h = v.positive("h", h)
    elif not tableau.adaptive:
        v.fail("h", h, f"a step size (learning rate for gradient descent) > 0 is required for method {tableau.name!r}")
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
    rtol = v.positive("rtol", rtol)
    atol = v.positive("atol", atol)
    divergence_bound = v.positive("divergence_bound", divergence_bound)
    max_steps = v.positive_int("max_steps", max_steps)
    times = _save_grid(t_end, save_every, save_times, None if tableau.adaptive else h)
    if not tableau.adaptive:
        steps = np.diff(times) / h
        if np.any(np.abs(steps - np.round(steps)) > 1e-9 * np.maximum(steps, 1)) or np.any(np.round(steps) < 1):
            v.fail("save_times" if save_times is not None else "save_every",
                   list(times[1:]) if save_times is not None else save_every,
                   f"with a fixed step h = {h}, t_end = {t_end} and every interval between save times "
                   f"must be a whole number >= 1 of steps")
    ids = _seed_ids(seeds)
    watch = np.atleast_1d(np.asarray(watch_seeds, dtype=np.int64))
    missing = np.setdiff1d(watch, ids)
    if len(missing):
        v.fail("watch_seeds", watch.tolist(), f"every watched seed must be among the seeds run (missing {missing.tolist()})")
    init = Gaussian() if init is None else init
    if not hasattr(init, "draw") and not isinstance(init, Given):
        v.fail("init", init, "must be an initialisation from noether_sim.init (Gaussian, Orthogonal, Balanced, Given)")

    # ---- lay out and allocate ----
    theta = np.array(initial_weights(model, init, ids, root_seed), dtype=np.float64, order="C")  # own copy
    n_seeds, n_saves = len(ids), len(times)
    groups = model.charge_groups
    group_off = np.array([g.offset for g in groups] + [model.n_charges], dtype=np.int64)
    group_degree = np.array([g.degree for g in groups], dtype=np.int64)
    ints, floats = model.descriptor(), model.constants(data)
    model_kind = int(ints[0])  # compile-time literal in the kernels: one specialisation per model kind
    data_a, data_b = model.kernel_data(data)
    nq, n_groups = model.n_charges, len(groups)

    theta_initial = theta.copy()
    q0 = ensemble_charges(model_kind, theta, ints, floats, nq)
    pred = q0.copy()
    t_now = np.zeros(n_seeds)
    h_next = np.full(n_seeds, h if h is not None else 0.0)
    status = np.zeros(n_seeds, np.int64)
    t_div = np.full(n_seeds, np.nan)
    n_grad, n_acc, n_rej = (np.zeros(n_seeds, np.int64) for _ in range(3))
    watch_slot = np.full(n_seeds, -1, np.int64)
    row_of = {int(sid): row for row, sid in enumerate(ids)}
    for slot, sid in enumerate(watch):
        watch_slot[row_of[int(sid)]] = slot
    out = {name: np.empty((n_seeds, n_saves, n_groups)) for name in
           ("drift", "drift_max", "predicted", "residual", "scale")}
    loss = np.empty((n_seeds, n_saves))
    q_watch = np.empty((len(watch), n_saves, nq))
    pred_watch = np.empty((len(watch), n_saves, nq))
    method_ints = np.array([tableau.adaptive, tableau.fsal, tableau.error_order or tableau.order,
                            max_steps, dynamics == "gd"], dtype=np.int64)
    method_floats = np.array([h or 0.0, rtol, atol, weight_decay, divergence_bound])
    b_err = tableau.b_err if tableau.b_err is not None else tableau.b

    # ---- run, one chunk of save times per kernel call (progress, interruptible between chunks) ----
    chunks = np.array_split(np.arange(n_saves), min(n_saves, 200))
    started = _time.perf_counter()
    bar = _progress_bar(progress, t_end, f"{dynamics}/{tableau.name}")
    try:
        for chunk in chunks:
            _over_seed_ranges(n_seeds, lambda lo, hi: integrate_saves(
                model_kind, tableau.adaptive, lo, hi, theta, t_now, h_next, pred, q0, status, t_div, n_grad, n_acc, n_rej,
                times, chunk[0], chunk[-1] + 1, ints, floats, data_a, data_b,
                tableau.A, tableau.b, b_err, method_ints, method_floats, group_off, group_degree, watch_slot,
                loss, out["drift"], out["drift_max"], out["predicted"], out["residual"], out["scale"],
                q_watch, pred_watch))
            if bar is not None:
                bar.update(times[chunk[-1]] - bar.n)
                bar.set_postfix(diverged=int(np.sum(status == STATUS_DIVERGED)), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    elapsed = _time.perf_counter() - started

    # ---- label ----
    q_final = ensemble_charges(model_kind, theta, ints, floats, nq)
    steps_taken = np.maximum(n_acc, 1)
    floor = EPS * np.sqrt(steps_taken)[:, None] * np.nanmax(np.where(np.isfinite(out["scale"]), out["scale"], np.nan),
                                                            axis=1, initial=0.0)
    component_group = np.concatenate([[g.name] * g.size for g in groups]) if groups else np.array([], str)
    component_degree = np.concatenate([[g.degree] * g.size for g in groups]) if groups else np.array([], int)
    ds = xr.Dataset(
        {
            "loss": (("seed", "time"), loss),
            **{name: (("seed", "time", "charge"), arr) for name, arr in out.items()},
            "roundoff_floor": (("seed", "charge"), floor),
            "charge_initial": (("seed", "component"), q0),
            "charge_final": (("seed", "component"), np.where(status[:, None] == STATUS_OK, q_final, np.nan)),
            "theta_initial": (("seed", "param"), theta_initial),
            "theta_final": (("seed", "param"), np.where(status[:, None] == STATUS_OK, theta, np.nan)),
            "status": ("seed", status),
            "diverged": ("seed", status == STATUS_DIVERGED),
            "t_diverged": ("seed", t_div),
            "n_grad_evals": ("seed", n_grad),
            "n_accepted": ("seed", n_acc),
            "n_rejected": ("seed", n_rej),
            "charge_watch": (("watched_seed", "time", "component"), q_watch),
            "predicted_watch": (("watched_seed", "time", "component"), pred_watch),
        },
        coords={
            "seed": ids, "time": times, "charge": [g.name for g in groups],
            "component": np.arange(nq), "component_charge": ("component", component_group),
            "component_degree": ("component", component_degree),
            "watched_seed": watch, "param": np.arange(model.n_params),
            "charge_degree": ("charge", group_degree),
        },
    )
    for name, text in VARIABLES.items():
        if name in ds:
            ds[name].attrs["description"] = text
    ds["time"].attrs.update(units="time (dimensionless, t = k·η for gradient descent)")
    config = {
        "model": model.to_config(), "data": data.to_config(), "init": to_config(init),
        "dynamics": dynamics, "method": tableau.name, "h": h, "t_end": t_end,
        "weight_decay": weight_decay, "rtol": rtol, "atol": atol, "root_seed": int(root_seed),
        "n_seeds": n_seeds, "divergence_bound": divergence_bound, "max_steps": max_steps,
    }
    ds.attrs.update(_provenance())
    ds.attrs.update(
        config=json.dumps(config), dynamics=dynamics, method=tableau.name, method_order=tableau.order,
        h=h if h is not None else np.nan, t_end=t_end, weight_decay=weight_decay,
        charge_shapes=json.dumps({g.name: list(g.shape) for g in groups}),
        charge_descriptions=json.dumps({g.name: g.description for g in groups}),
        status_names=json.dumps({str(k): val for k, val in STATUS_NAMES.items()}),
        n_diverged=int(np.sum(status == STATUS_DIVERGED)), n_failed=int(np.sum(status != STATUS_OK)),
        wall_seconds=elapsed, description=description,
    )
    return ds


def _over_seed_ranges(n_seeds, run_range):
    """Run ``run_range(lo, hi)`` over disjoint seed ranges on ``numba.get_num_threads()`` threads.

    The kernels release the GIL; ranges are a few per thread so uneven seeds (adaptive steps,
    divergence) balance out. A seed's arithmetic does not depend on its range: results are
    bit-identical for any thread count.
    """
    import numba

    threads = numba.get_num_threads()
    if threads == 1 or n_seeds == 1:
        run_range(0, n_seeds)
        return
    edges = np.linspace(0, n_seeds, min(n_seeds, 4 * threads) + 1).astype(int)
    pool = _thread_pool(threads)
    for future in [pool.submit(run_range, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]:
        future.result()


@functools.lru_cache(maxsize=None)
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process (a run calls the kernels once per chunk)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="noether_sim")


def _progress_bar(progress, total, label):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="t", leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}{postfix}]")


def _provenance() -> dict:
    import numba

    from . import __version__

    return {"noether_sim_version": __version__, "numba_version": numba.__version__, "numpy_version": np.__version__,
            "xarray_version": xr.__version__}


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
