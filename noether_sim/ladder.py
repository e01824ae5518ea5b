"""Step-size ladders: run one configuration at h, h/2, h/4, …, fit each charge's drift order,
extrapolate the charge to h → 0 and judge it (theory.md §3, "Any explicit method of order p").

For every seed and charge group, with q_j the final charge vector at step size h_j (h decreasing):

    fitted order   slope of log|q_j − q_{j+1}| against log h_j (least squares over the ladder);
                   NaN where the differences are at the round-off floor (nothing to fit)
    extrapolated   repeated Richardson extrapolation over every rung: the error of a one-step method
    drift          expands in h^p, h^(p+1), …, and level l of the tableau removes h^(p+l−1) between
                   neighbouring rungs (q_j + (q_j − q_{j−1}) / (r^(p+l−1) − 1)); p is the fitted
                   order rounded to an integer (a charge can converge faster than the method's
                   order, e.g. order 3 for Heun), or the method's order where nothing was fitted or
                   the fit is lower. d* = |q* − q_law(T)| with q* the top level (all m rungs)
    uncertainty    u = how much the extrapolation still moves: the larger of |q* − q*'| (q*' the
                   level below, one power fewer removed) and |q* − q*''| (q*'' the same level one
                   rung coarser, where there is one). A level beyond the first is used only where
                   the ladder shows the power it removes (``_richardson``)
    floor          round-off floor of the finest run (ε·√steps·scale)

Verdict per seed: "broken by the flow" if d* > 5·max(u, floor) (the extrapolated drift stands
clear of its error); "conserved by the flow" if d* ≤ 5·max(u, floor) and max(u, floor) ≤ 1e-6 ×
scale (the ladder resolves the charge well enough to tell); otherwise "inconclusive". Seeds that
failed (diverged) at any step size are excluded and counted.

Exact laws come first (noether_sim.laws): where the step of the dynamics has an exact discrete law
for a charge (gradient descent's one-step law, heavy ball's decay of isometric charges, …) and its
residual is within a few round-off floors at every rung, the drift is the step's alone and the
charge is "conserved by the flow" (``basis`` "exact law"), with d* the law's residual and u the
floor. The model's charges under momentum move by a law of their own; ``law_verdict`` says whether
it holds (exactly, for heavy ball and Nesterov; to h → 0 by the same extrapolation of the law's
invariant, for momentum flow by a method).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ._validate import fail
from .ensemble import check_memory
from .simulate import execute, plan
from .stochastic import analyse_stochastic_ladder, is_stochastic_ladder, rung_options, summarise_stochastic

from .laws import (BASIS_LADDER, BASIS_LAW, BROKEN, CONSERVED, EXCLUDED, INCONCLUSIVE, LAW_FAILS, LAW_HOLDS_EXACTLY,
                   LAW_HOLDS_FLOW, NO_LAW, NO_SUCH, law_holds, limit_flow, step_law)

MIN_RUNGS = 3  # the extrapolation uses the two finest pairs, its uncertainty the next
VERDICT_FACTOR = 5.0  # d* must exceed this many uncertainties to count as broken
RESOLUTION = 1e-6  # uncertainty relative to the charge scale below which "conserved" is decidable
SHAPE_SLACK = 0.25  # a ladder shows the power h^e where each difference is r^e times the next, to this fraction


def run_ladder(model, data, *, step_sizes, progress: bool = False, memory_limit=None, **kwargs) -> xr.Dataset:
    """``simulate`` at each step size (largest first); results stacked along a new dimension ``h``.

    Every rung runs to the same end time with the same save grid, and every rung is validated before
    any runs: a ladder that could not be compared rung by rung is refused with a ConfigError.
    Default save grid: about 32 records, each a whole number of steps of the largest step size.

    Parameters
    ----------
    model, data
        As for ``simulate``.
    step_sizes : sequence of float
        At least three distinct step sizes > 0 (sorted largest first); every save interval must be a
        whole number of steps of each.
    progress : bool
        Show a progress bar over the rungs.
    memory_limit : float, optional
        Bytes one rung may allocate (``simulate``'s check, made for every rung before the first runs).
    **kwargs
        Any other ``simulate`` keyword (``dynamics``, ``method``, ``t_end``, ``seeds``, ``tau``, …), the
        same for every rung; ``h``, ``n_steps`` and ``learning_rate`` are refused, and so are adaptive
        methods. With ``teleport_every`` (and ``teleport``) every rung is ``simulate`` with those teleports,
        its events stacked along ``h``.

    Returns
    -------
    xarray.Dataset
        ``simulate``'s result for each rung, stacked along ``h`` (largest first).

    Raises
    ------
    ConfigError
        Fewer than three step sizes, a per-rung option, an adaptive method, or any rung ``simulate``
        would refuse.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> data = ns.data.synthetic_regression(4, 2, 16, seed=0)
    >>> ladder = ns.run_ladder(model, data, method="rk4", step_sizes=[0.1, 0.05, 0.025], t_end=0.5, seeds=4)
    >>> ladder.h.values.tolist(), ladder.sizes["seed"]
    ([0.1, 0.05, 0.025], 4)
    """
    for name in ("h", "n_steps", "learning_rate"):
        if kwargs.get(name) is not None:
            fail(name, kwargs[name], "a ladder takes its step sizes from step_sizes and one end time t_end "
                                     "for every rung")
    try:
        hs = np.asarray(step_sizes, dtype=float)
    except (TypeError, ValueError):
        fail("step_sizes", step_sizes, f"must be at least {MIN_RUNGS} distinct step sizes > 0")
    if hs.ndim != 1 or len(hs) < MIN_RUNGS or np.any(~np.isfinite(hs)) or np.any(hs <= 0) or len(set(hs)) != len(hs):
        fail("step_sizes", step_sizes, f"must be at least {MIN_RUNGS} distinct step sizes > 0 (the extrapolation "
                                       f"to h → 0 and its uncertainty need three)")
    hs = np.sort(hs)[::-1]
    if kwargs.get("save_every") is None and kwargs.get("save_times") is None and kwargs.get("t_end") is not None:
        t_end = kwargs["t_end"]
        if isinstance(t_end, (int, float)) and t_end > 0:
            kwargs["save_every"] = float(hs[0] * max(1, round(t_end / hs[0]) // 32))
    kwargs, per_rung = rung_options(kwargs, hs)  # coupled Langevin rungs (stochastic.py)
    tele = {k: kwargs.pop(k) for k in ("teleport_every", "teleport") if kwargs.get(k) is not None}
    if tele:  # every rung a run with teleports (teleport.py), checked as simulate checks it
        from .teleport import check_teleport_run

        check_teleport_run(tele.get("teleport_every"), tele.get("teleport"), model, dict(kwargs, h=float(hs[0])))
    plans = [plan(model, data, h=float(h), memory_limit=memory_limit, **kwargs, **extra)
             for h, extra in zip(hs, per_rung)]
    if plans[0].resolved.adaptive:
        fail("method", plans[0].resolved.method, "a ladder needs a fixed-step method (an adaptive method chooses "
                                                 "its own steps); see `noether-sim list`")
    for p, h in zip(plans[1:], hs[1:]):
        if len(p.times) != len(plans[0].times) or np.any(np.abs(p.times - plans[0].times) > 1e-12 * p.t_end):
            fail("step_sizes", list(hs), f"every rung must share one save grid (h = {h:g} differs)")
    check_memory({"rungs": sum(sum(p.memory.values()) for p in plans)}, memory_limit, "run_ladder()")
    if tele:
        from .simulate import simulate

        runs = [simulate(model, data, h=float(h), memory_limit=memory_limit, progress=progress, **kwargs, **extra,
                         **tele) for h, extra in zip(hs, per_rung)]
    else:
        runs = [execute(p, progress=progress) for p in plans]
    return stack_runs(runs, hs)


def stack_runs(runs, hs) -> xr.Dataset:
    """Stack runs at different step sizes (same save times, same seeds) along ``h``."""
    ds = xr.concat(runs, dim=xr.DataArray(np.asarray(hs, float), dims="h", name="h"), data_vars="all",
                   coords="minimal", compat="override", join="override", combine_attrs="drop_conflicts")
    ds.attrs["step_sizes"] = json.dumps([float(h) for h in hs])
    ds["wall_seconds"] = ("h", [r.attrs["wall_seconds"] for r in runs])
    return ds


def analyse_ladder(ladder: xr.Dataset, order: int | None = None) -> xr.Dataset:
    """Per seed and charge: fitted order, extrapolated drift, uncertainty, floor, verdict; see module doc.

    Each charge is compared with its own exact law at the end time (``law_factor`` · q(0)): the flow's
    law for gradient flow and descent, e^{−t/τ}J(0) for isometric charges under momentum, and q(0) for
    the model's charges under momentum (which breaks them). Charges with no value in this run (isometric
    charges of gradient flow) get the verdict "no such charge". The rule is in docs/guide/verdicts.md.

    Where the dynamics has an exact discrete law for a charge (``laws.step_law``: gradient descent's
    one-step law, heavy ball's conformal symplectic decay, …) and that law holds to round-off at every
    step size, the verdict rests on it (``basis`` = "exact law"); otherwise on the extrapolation
    (``basis`` = "ladder"). A replacement law (momentum's law for the model's charges) is judged
    separately: ``law_verdict``.

    Parameters
    ----------
    ladder : xarray.Dataset
        A ``run_ladder`` result (a dimension ``h`` with at least three step sizes).
    order : int, optional
        The order assumed by the extrapolation (default: the method's order, ``ladder.attrs["method_order"]``).

    Returns
    -------
    xarray.Dataset
        Over ``seed`` and ``charge``: ``fitted_order``, ``extrapolated_drift``, ``uncertainty``,
        ``roundoff_floor``, ``finest_drift``, ``scale``, ``verdict``, ``basis``, ``law_verdict``,
        ``law_residual`` (the exact law's residual at the finest rung, where the step has one) and
        ``included`` (False for seeds that failed on some rung, left out of the statistics and counted);
        the coordinates ``charge_law`` and ``step_law`` name the laws used.

    Raises
    ------
    ConfigError
        A dataset without a ladder dimension ``h`` of at least three step sizes.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> data = ns.data.synthetic_regression(4, 2, 16, seed=0)
    >>> ladder = ns.run_ladder(model, data, method="gl2", step_sizes=[0.1, 0.05, 0.025], t_end=0.5, seeds=4)
    >>> ns.analyse_ladder(ladder).verdict.values.tolist()
    [['conserved by the flow'], ['conserved by the flow'], ['conserved by the flow'], ['conserved by the flow']]
    """
    if "h" not in ladder.dims or ladder.sizes["h"] < MIN_RUNGS:
        fail("ladder", dict(ladder.sizes), f"needs a dimension 'h' with at least {MIN_RUNGS} step sizes")
    if "seed" not in ladder.dims:
        if is_stochastic_ladder(ladder) or "drift_mean" not in ladder:
            fail("ladder", dict(ladder.sizes), "a stochastic ladder's analysis is per seed: it needs keep=\"seeds\" "
                                               "(this one kept statistics only)")
        return analyse_stats_ladder(ladder, order)
    if is_stochastic_ladder(ladder):  # verdicts in expectation (stochastic.py)
        return analyse_stochastic_ladder(ladder, order)
    ladder = ladder.sortby("h", ascending=False)
    p = int(order if order is not None else ladder.attrs["method_order"])
    hs = ladder.h.values
    T = float(ladder.time.values[-1])
    q = ladder.charge_final.transpose("h", "seed", "component").values  # (m, S, nq)
    q_law = (ladder.charge_initial * ladder.law_factor).isel(h=-1).transpose("seed", "component").values
    ok = np.all(ladder.status.transpose("h", "seed").values == 0, axis=0)
    names = list(ladder.charge.values)
    members = [ladder.component_charge.values == name for name in names]
    scale = ladder.scale.isel(h=-1, time=-1).transpose("seed", "charge").values
    floors = ladder.roundoff_floor.transpose("h", "seed", "charge").values  # (m, S, C)
    floor = floors[-1]

    fitted, p_used, d_star, unc, d_fine = _extrapolate(q, q_law, hs, p, members, floor)
    noise = np.maximum(unc, floor)
    verdict = _judge(d_star, noise, scale)
    basis = np.full(verdict.shape, BASIS_LADDER, dtype=object)

    # exact discrete laws: where one holds at every step size, it decides (the drift is the step's)
    dynamics, method = ladder.attrs.get("dynamics", ""), ladder.attrs.get("method", "")
    kinds = ladder.charge_kind.values if "charge_kind" in ladder.coords else ["model"] * len(names)
    law_verdict = np.full(verdict.shape, NO_LAW, dtype=object)
    law_residual = np.full(verdict.shape, np.nan)
    step_laws = []
    degrees = ladder.charge_degree.values if "charge_degree" in ladder.coords else [2] * len(names)
    for k, kind in enumerate(kinds):
        law = step_law(dynamics, method, str(kind), int(degrees[k]))
        step_laws.append(law.text if law else "none: the ladder decides")
        if law is None or law.variable not in ladder:
            continue
        res = ladder[law.variable].isel(time=-1).transpose("h", "seed", "charge").values[:, :, k]
        law_residual[:, k] = res[-1]
        holds, fails = law_holds(res, floors[:, :, k])
        if law.replaces_charge_law:  # the charge moves; its law is what the symmetry keeps
            law_verdict[:, k] = np.where(holds, LAW_HOLDS_EXACTLY, np.where(fails, LAW_FAILS, INCONCLUSIVE))
            continue
        verdict[holds, k] = CONSERVED
        basis[holds, k] = BASIS_LAW
        d_star[holds, k] = res[-1, holds]
        unc[holds, k] = floor[holds, k]
    # momentum flow by a method: the integrated law I (law_final against law_initial), extrapolated like q
    if "law_final" in ladder and step_law(dynamics, method, "model") is None:
        i_f = ladder.law_final.transpose("h", "seed", "component").values
        i_0 = ladder.law_initial.isel(h=-1).transpose("seed", "component").values
        if np.any(np.isfinite(i_0)):
            _, _, li_star, li_unc, _ = _extrapolate(i_f, i_0, hs, p, members, floor)
            judged = _judge(li_star, np.maximum(li_unc, floor), scale)
            tracked = np.isfinite(li_star)
            law_verdict = np.where(tracked, np.where(judged == CONSERVED, LAW_HOLDS_FLOW,
                                                     np.where(judged == BROKEN, LAW_FAILS, INCONCLUSIVE)),
                                   law_verdict).astype(object)

    verdict = np.where(ok[:, None] & np.isfinite(d_star), verdict, EXCLUDED).astype(object)
    no_value = np.array([np.all(np.isnan(q_law[:, m])) if m.any() else True for m in members])
    verdict[:, no_value] = NO_SUCH
    return xr.Dataset(
        {
            "fitted_order": (("seed", "charge"), fitted),
            "extrapolation_order": (("seed", "charge"), p_used),
            "extrapolated_drift": (("seed", "charge"), d_star),
            "uncertainty": (("seed", "charge"), unc),
            "roundoff_floor": (("seed", "charge"), floor),
            "finest_drift": (("seed", "charge"), d_fine),
            "scale": (("seed", "charge"), scale),
            "verdict": (("seed", "charge"), verdict.astype(str)),
            "basis": (("seed", "charge"), basis.astype(str)),
            "law_verdict": (("seed", "charge"), law_verdict.astype(str)),
            "law_residual": (("seed", "charge"), law_residual),
            "included": ("seed", ok),
        },
        coords={"seed": ladder.seed.values, "charge": names, "step_law": ("charge", step_laws),
                **({"charge_law": ("charge", ladder.charge_law.values)} if "charge_law" in ladder.coords else {})},
        attrs={"method_order": p, "t_end": T, "step_sizes": json.dumps([float(h) for h in hs]),
               "dynamics": dynamics, "method": method,
               "limit_flow": limit_flow(dynamics, int(ladder.attrs.get("batch_size", 0) or 0))},
    )


def analyse_stats_ladder(ladder: xr.Dataset, order: int | None = None) -> xr.Dataset:
    """Per charge: verdicts of a statistics ladder (``run_ladder(..., keep="stats")``) from seed means
    and their standard errors; ``analyse_ladder`` calls it for such ladders.

    The record extrapolated is the seeds' mean drift d̄(h) = mean over seeds of ‖q(T) − q_law(T)‖ at the
    last save time (``stats.extrapolate_means``: Richardson over the two finest rungs, with the method's
    order; a bound on the standard error SE of d̄* that holds whatever the correlation between rungs;
    the uncertainty u = how far d̄* moves one rung coarser). A conserved charge has every seed's drift
    → 0, so d̄* → 0; a broken one d̄* → the mean of the seeds' limits, > 0. The verdict is the
    per-seed rule with the noise max(u, SE, floor) (floor: the seeds' mean round-off floor at the finest
    rung): "broken by the flow" if d̄* > 5 · noise (it stands 5 standard errors and 5 uncertainties
    clear of zero), "conserved by the flow" if not and noise ≤ 1e-6 × the mean charge scale,
    otherwise "inconclusive". Where the step has an exact law (``laws.step_law``), it decides when the
    largest residual over the seeds stays within a few of the seeds' mean round-off floor at every rung
    (``basis`` "exact law"; a seed-by-seed check needs keep="seeds"). Seeds that failed are not in the
    statistics (``<name>_count``) and are counted in ``seeds_excluded``.

    Parameters
    ----------
    ladder : xarray.Dataset
        A statistics ladder with at least 3 step sizes.
    order : int, optional
        The extrapolation's order; default the method's.

    Returns
    -------
    xarray.Dataset
        Over ``charge``: ``fitted_order``, ``extrapolated_drift``, ``standard_error``, ``uncertainty``,
        ``roundoff_floor``, ``finest_drift``, ``finest_standard_error``, ``scale``, ``verdict``, ``basis``,
        ``law_verdict``, ``law_residual``, ``seeds_judged``, ``seeds_excluded``; ``attrs["stats"]`` is True.

    Raises
    ------
    ConfigError
        Not a statistics ladder of at least 3 step sizes.

    Examples
    --------
    >>> import noether_sim as ns
    >>> ladder = ns.run_ladder(ns.DeepLinear((4, 3, 2)), ns.data.synthetic_regression(4, 2, 16, seed=0), method="gl2",
    ...                        step_sizes=[0.1, 0.05, 0.025], t_end=0.5, seeds=16, keep="stats")
    >>> ns.analyse_ladder(ladder).verdict.values.tolist()
    ['conserved by the flow']
    """
    from .stats import extrapolate_means

    if "h" not in ladder.dims or ladder.sizes["h"] < MIN_RUNGS or "drift_mean" not in ladder:
        fail("ladder", dict(ladder.sizes), f"must be a statistics ladder (keep=\"stats\") with at least {MIN_RUNGS} "
                                           "step sizes")
    ladder = ladder.sortby("h", ascending=False)
    ex = extrapolate_means(ladder, order)
    names = [str(c) for c in ladder.charge.values]
    last = ladder.isel(time=-1)
    d_star = np.abs(ex.extrapolated.transpose("charge").values)
    se = ex.standard_error.transpose("charge").values
    unc = ex.uncertainty.transpose("charge").values
    floors = ladder.roundoff_floor_mean.transpose("h", "charge").values
    floor = floors[-1]
    scale = last.scale_mean.isel(h=-1).transpose("charge").values
    noise = np.fmax(np.fmax(unc, se), floor)
    verdict = _judge(d_star, noise, scale)
    basis = np.full(len(names), BASIS_LADDER, dtype=object)
    law_verdict = np.full(len(names), NO_LAW, dtype=object)
    law_residual = np.full(len(names), np.nan)
    dynamics, method = ladder.attrs.get("dynamics", ""), ladder.attrs.get("method", "")
    kinds = ladder.charge_kind.values if "charge_kind" in ladder.coords else ["model"] * len(names)
    step_laws = []
    for k, kind in enumerate(kinds):
        law = step_law(dynamics, method, str(kind))
        step_laws.append(law.text if law else "none: the ladder decides")
        var = None if law is None else f"{law.variable}_max"
        if var is None or var not in ladder:
            continue
        res = last[var].transpose("h", "charge").values[:, k]
        law_residual[k] = res[-1]
        holds, fails = (x[0] for x in law_holds(res[:, None], floors[:, k, None]))
        if law.replaces_charge_law:
            law_verdict[k] = LAW_HOLDS_EXACTLY if holds else (LAW_FAILS if fails else INCONCLUSIVE)
        elif holds:
            verdict[k], basis[k], d_star[k], unc[k], se[k] = CONSERVED, BASIS_LAW, res[-1], floor[k], floor[k]
    counted = last.drift_count.transpose("h", "charge").values.min(axis=0)
    n_seeds = int(ladder.attrs.get("n_seeds", counted.max(initial=0)))
    verdict = np.where(counted > 1, verdict, np.where(np.isnan(scale), NO_SUCH, EXCLUDED)).astype(object)
    verdict[~np.isfinite(d_star) & (counted > 1)] = NO_SUCH
    return xr.Dataset(
        {"fitted_order": ("charge", ex.fitted_order.transpose("charge").values),
         "extrapolated_drift": ("charge", d_star), "standard_error": ("charge", se), "uncertainty": ("charge", unc),
         "roundoff_floor": ("charge", floor), "finest_drift": ("charge", ex.finest.transpose("charge").values),
         "finest_standard_error": ("charge", ex.finest_standard_error.transpose("charge").values),
         "scale": ("charge", scale), "verdict": ("charge", verdict.astype(str)), "basis": ("charge", basis.astype(str)),
         "law_verdict": ("charge", law_verdict.astype(str)), "law_residual": ("charge", law_residual),
         "seeds_judged": ("charge", counted.astype(int)), "seeds_excluded": ("charge", n_seeds - counted.astype(int))},
        coords={"charge": names, "step_law": ("charge", step_laws),
                **({"charge_law": ("charge", ladder.charge_law.values)} if "charge_law" in ladder.coords else {})},
        attrs={"method_order": int(ex.attrs["method_order"]), "t_end": float(ladder.time.values[-1]),
               "step_sizes": ex.attrs["step_sizes"], "dynamics": dynamics, "method": method,
               "limit_flow": limit_flow(dynamics), "stats": True},
    )


def _judge(d_star, noise, scale):
    """The ladder's verdict from the extrapolated drift d* and its noise max(uncertainty, floor)."""
    return np.where(d_star > VERDICT_FACTOR * noise, BROKEN,
                    np.where(noise <= RESOLUTION * np.maximum(scale, np.finfo(float).tiny), CONSERVED,
                             INCONCLUSIVE)).astype(object)


def _extrapolate(q, q_law, hs, p, members, floor):
    """Per seed and charge group, from the final values q (m, S, nq) at step sizes hs (decreasing): the
    fitted order, the leading order used, the extrapolated drift |q* − q_law|, its uncertainty and the
    finest drift (module docstring)."""
    def norm(x, mask):  # Frobenius norm over one group's components
        return np.sqrt(np.sum(x[..., mask] ** 2, axis=-1))

    shape = (q.shape[1], len(members))
    fitted, p_used, d_star, unc, d_fine = (np.full(shape, np.nan) for _ in range(5))
    x = np.log(hs[:-1])
    for k, mask in enumerate(members):
        diffs = norm(q[1:] - q[:-1], mask)  # (m−1, S)
        resolved = diffs > 10 * floor[None, :, k]
        for s in range(shape[0]):
            use = resolved[:, s]
            if use.sum() >= 2:
                fitted[s, k] = np.polyfit(x[use], np.log(diffs[use, s]), 1)[0]
        p_used[:, k] = np.where(np.isfinite(fitted[:, k]), np.maximum(p, np.round(fitted[:, k])), p)
        best, unc[:, k] = _richardson(q[..., mask], hs, p_used[:, k])
        d_star[:, k] = np.sqrt(np.sum((best - q_law[:, mask]) ** 2, axis=-1))
        d_fine[:, k] = norm(q[-1] - q_law, mask)
    return fitted, p_used, d_star, unc, d_fine


def _richardson(q, hs, p):
    """Repeated Richardson extrapolation of q (m, S, n) at step sizes hs (decreasing) to h → 0, assuming
    the error expands in the powers p, p + 1, … of h (as a one-step method's global error does; p per
    seed): level l eliminates h^(p+l−1) between neighbouring rungs.

    A level is used only where the ladder shows the power it removes: every difference of the level below
    must be r^(p+l−1) times the next finer one, as a vector, to within ``SHAPE_SLACK`` of its size, and
    so must every level below that. The top level rests on the checks below it (the level under it has a
    single difference: nothing is left to check it with). A ladder that is not in its
    asymptotic regime (kinks of a ReLU flow, round-off) keeps level 1, one Richardson step from the two
    finest rungs. Returns, per seed, the chosen level at the finest rung, and its uncertainty: the
    larger of its distances to the level below there and to the same level one rung coarser."""
    levels = [q]
    e = np.asarray(p, float)[None, :, None]
    for lev in range(1, len(hs)):
        prev = levels[-1]
        r = (hs[lev - 1:-1] / hs[lev:])[:, None, None]
        levels.append(prev[1:] + (prev[1:] - prev[:-1]) / (r ** (e + lev - 1) - 1.0))
    # check l: every difference of level l is r^(p+l) times the next finer one (the same vector, shrunk
    # at the power level l + 1 removes), to within SHAPE_SLACK of its size
    m, p = len(hs), np.asarray(p, float)
    passed = np.zeros(q.shape[1], dtype=int)  # consecutive checks passed from level 0
    going = np.ones(q.shape[1], dtype=bool)
    for lev in range(m - 2):
        diffs = np.diff(levels[lev], axis=0)  # (m − lev − 1, S, n), coarse to fine
        r = (hs[lev:-2] / hs[lev + 1:-1])[:, None, None]
        mismatch = np.sqrt(np.sum((diffs[:-1] - r ** (p[None, :, None] + lev) * diffs[1:]) ** 2, axis=-1))
        size = np.sqrt(np.sum(diffs[:-1] ** 2, axis=-1))
        with np.errstate(invalid="ignore"):
            going &= np.all(mismatch <= SHAPE_SLACK * size, axis=0)
        passed += going
    use = np.where(passed == m - 2, m - 1, np.maximum(passed, 1))
    S = q.shape[1]
    best = np.stack([levels[use[s]][-1, s] for s in range(S)])
    # how much the extrapolation still moves: against the level below at the finest rung, and against
    # the same level one rung coarser where there is one
    below = np.stack([levels[use[s] - 1][-1, s] for s in range(S)])
    coarser = np.stack([levels[use[s]][-2, s] if use[s] < m - 1 else levels[use[s]][-1, s] for s in range(S)])
    moved = np.maximum(np.sqrt(np.sum((best - below) ** 2, axis=-1)), np.sqrt(np.sum((best - coarser) ** 2, axis=-1)))
    return best, moved


def summarise_verdicts(analysis: xr.Dataset) -> list[dict]:
    """One row per charge: medians over included seeds, verdict counts and the overall verdict, with what
    it rests on (``basis``: "exact law" or "ladder") and, for charges that move by a replacement law
    (the model's charges under momentum), that law's overall verdict (``law_verdict``). ``limit_flow``
    names the flow the verdict is about (the sign-like flow for Adam, not gradient flow; laws.py).

    Parameters
    ----------
    analysis : xarray.Dataset
        An ``analyse_ladder`` result, or a single run's ``judge`` result.

    Returns
    -------
    list of dict
        Per charge: ``charge``, ``verdict`` (one verdict when every judged seed agrees, else ``"mixed: …"``
        with the counts), the medians ``fitted_order``, ``extrapolated_drift``, ``uncertainty``,
        ``roundoff_floor``, ``finest_drift``, ``scale``, ``law_residual``, then ``basis``, ``law_verdict``,
        ``law`` (the charge's law), ``step_law`` (the step's exact law, if any), ``seeds_judged``,
        ``seeds_excluded`` and the count of each verdict (``n_conserved``, ``n_broken``, ``n_inconclusive``).

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> data = ns.data.synthetic_regression(4, 2, 16, seed=0)
    >>> ladder = ns.run_ladder(model, data, method="gl2", step_sizes=[0.1, 0.05, 0.025], t_end=0.5, seeds=4)
    >>> [(row["charge"], row["verdict"]) for row in ns.summarise_verdicts(ns.analyse_ladder(ladder))]
    [('D1', 'conserved by the flow')]
    """
    if analysis.attrs.get("stochastic"):
        return summarise_stochastic(analysis)
    if analysis.attrs.get("stats"):  # a statistics ladder: one verdict per charge, from means (no medians)
        return [{"charge": str(c), "verdict": str(analysis.verdict.values[k]),
                 **{key: float(analysis[key].values[k]) for key in (
                     "fitted_order", "extrapolated_drift", "standard_error", "uncertainty", "roundoff_floor",
                     "finest_drift", "scale", "law_residual")},
                 "basis": str(analysis.basis.values[k]), "law_verdict": str(analysis.law_verdict.values[k]),
                 "law": str(analysis.charge_law.values[k]) if "charge_law" in analysis.coords else "",
                 "step_law": str(analysis.step_law.values[k]), "limit_flow": analysis.attrs.get("limit_flow", ""),
                 "seeds_judged": int(analysis.seeds_judged.values[k]),
                 "seeds_excluded": int(analysis.seeds_excluded.values[k])}
                for k, c in enumerate(analysis.charge.values)]
    rows = []
    inc = analysis.included.values
    for k, name in enumerate(analysis.charge.values):
        verdicts = analysis.verdict.values[inc, k]
        counts = {v: int(np.sum(verdicts == v)) for v in (CONSERVED, BROKEN, INCONCLUSIVE)}
        rows.append({
            "charge": str(name), "verdict": _overall(verdicts, counts),
            **{key: _median(analysis, var, inc, k) for key, var in (
                ("fitted_order", "fitted_order"), ("extrapolated_drift", "extrapolated_drift"),
                ("uncertainty", "uncertainty"), ("roundoff_floor", "roundoff_floor"),
                ("finest_drift", "finest_drift"), ("scale", "scale"), ("law_residual", "law_residual"))},
            "basis": _majority(analysis, "basis", inc, k),
            "law_verdict": _majority(analysis, "law_verdict", inc, k),
            "law": str(analysis.charge_law.values[k]) if "charge_law" in analysis.coords else "",
            "step_law": str(analysis.step_law.values[k]) if "step_law" in analysis.coords else "",
            "limit_flow": analysis.attrs.get("limit_flow", ""),
            "seeds_judged": int(inc.sum()), "seeds_excluded": int((~inc).sum()),
            **{f"n_{v.split()[0]}": n for v, n in counts.items()},
        })
    return rows


def _overall(verdicts, counts) -> str:
    if len(verdicts) == 0:
        return "no seed to judge"
    if np.all(verdicts == NO_SUCH):
        return NO_SUCH
    if max(counts.values()) == len(verdicts):
        return max(counts, key=counts.get)
    if len(set(verdicts)) == 1:
        return str(verdicts[0])
    return "mixed: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def _median(analysis, var, inc, k) -> float:
    if var not in analysis:
        return float("nan")
    vals = analysis[var].values[inc, k]
    return float(np.nanmedian(vals)) if np.any(np.isfinite(vals)) else float("nan")


def _majority(analysis, var, inc, k) -> str:
    """The one value every included seed has, or "a: n, b: m" when they differ ("" if absent)."""
    if var not in analysis:
        return ""
    vals, n = np.unique(analysis[var].values[inc, k].astype(str), return_counts=True)
    if len(vals) == 1:
        return str(vals[0])
    return ", ".join(f"{v}: {c}" for v, c in zip(vals, n))
