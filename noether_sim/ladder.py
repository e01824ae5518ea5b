"""Step-size ladders: run one configuration at h, h/2, h/4, …, fit each charge's drift order,
extrapolate the charge to h → 0 and judge it (theory.md §3, "Any explicit method of order p").

For every seed and charge group, with q_j the final charge vector at step size h_j (h decreasing):

    fitted order   slope of log|q_j − q_{j+1}| against log h_j (least squares over the ladder);
                   NaN where the differences are at the round-off floor (nothing to fit)
    extrapolated   Richardson q* = q_m + (q_m − q_{m−1}) / (r^p − 1) from the two finest step sizes,
    drift          with p the fitted order rounded to an integer (a charge can converge faster than
                   the method's order, e.g. order 3 for Heun); the method's order where nothing was
                   fitted or the fit is lower. d* = |q* − q_law(T)|
    uncertainty    u = |q*(finest pair) − q*(next pair)|: how much the extrapolation still moves
    floor          round-off floor of the finest run (ε·√steps·scale)

Verdict per seed: "broken by the flow" if d* > 5·max(u, floor) (the extrapolated drift stands
clear of its error); "conserved by the flow" if d* ≤ 5·max(u, floor) and max(u, floor) ≤ 1e-6 ×
scale (the ladder resolves the charge well enough to tell); otherwise "inconclusive". Seeds that
failed (diverged) at any step size are excluded and counted.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ._validate import fail
from .ensemble import check_memory
from .simulate import execute, plan
from .stochastic import analyse_stochastic_ladder, is_stochastic_ladder, rung_options, summarise_stochastic

CONSERVED, BROKEN, INCONCLUSIVE = "conserved by the flow", "broken by the flow", "inconclusive"
EXCLUDED, NO_SUCH = "excluded (failed at some step size)", "no such charge in this dynamics"
MIN_RUNGS = 3  # the extrapolation uses the two finest pairs, its uncertainty the next
VERDICT_FACTOR = 5.0  # d* must exceed this many uncertainties to count as broken
RESOLUTION = 1e-6  # uncertainty relative to the charge scale below which "conserved" is decidable


def run_ladder(model, data, *, step_sizes, progress: bool = False, memory_limit=None, **kwargs) -> xr.Dataset:
    """``simulate`` at each step size (largest first); results stacked along a new dimension ``h``.

    Every rung runs to the same end time with the same save grid, and every rung is validated before
    any runs: a ladder that could not be compared rung by rung is refused with a ConfigError.
    Default save grid: about 32 records, each a whole number of steps of the largest step size.
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
    plans = [plan(model, data, h=float(h), memory_limit=memory_limit, **kwargs, **extra)
             for h, extra in zip(hs, per_rung)]
    if plans[0].resolved.adaptive:
        fail("method", plans[0].resolved.method, "a ladder needs a fixed-step method (an adaptive method chooses "
                                                 "its own steps); see `noether-sim list`")
    for p, h in zip(plans[1:], hs[1:]):
        if len(p.times) != len(plans[0].times) or np.any(np.abs(p.times - plans[0].times) > 1e-12 * p.t_end):
            fail("step_sizes", list(hs), f"every rung must share one save grid (h = {h:g} differs)")
    check_memory({"rungs": sum(sum(p.memory.values()) for p in plans)}, memory_limit, "run_ladder()")
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
    charges of gradient flow) get the verdict "no such charge".
    """
    if "h" not in ladder.dims or ladder.sizes["h"] < MIN_RUNGS:
        fail("ladder", dict(ladder.sizes), f"needs a dimension 'h' with at least {MIN_RUNGS} step sizes")
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

    def norm(x, mask):  # Frobenius norm over one group's components
        return np.sqrt(np.sum(x[..., mask] ** 2, axis=-1))

    r = hs[:-1] / hs[1:]
    scale = ladder.scale.isel(h=-1, time=-1).transpose("seed", "charge").values
    floor = ladder.roundoff_floor.isel(h=-1).transpose("seed", "charge").values

    shape = (len(ladder.seed), len(names))
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
        pk = p_used[:, k][None, :, None]
        q_star = q[1:] + (q[1:] - q[:-1]) / (r[:, None, None] ** pk - 1.0)  # (m−1, S, nq)
        d_star[:, k] = norm(q_star[-1] - q_law, mask)
        unc[:, k] = norm(q_star[-1] - q_star[-2], mask)
        d_fine[:, k] = norm(q[-1] - q_law, mask)

    noise = np.maximum(unc, floor)
    verdict = np.where(d_star > VERDICT_FACTOR * noise, BROKEN,
                       np.where(noise <= RESOLUTION * np.maximum(scale, np.finfo(float).tiny), CONSERVED, INCONCLUSIVE))
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
            "verdict": (("seed", "charge"), verdict.astype(object).astype(str)),
            "included": ("seed", ok),
        },
        coords={"seed": ladder.seed.values, "charge": names},
        attrs={"method_order": p, "t_end": T, "step_sizes": json.dumps([float(h) for h in hs])},
    )




def summarise_verdicts(analysis: xr.Dataset) -> list[dict]:
    """One row per charge: medians over included seeds, verdict counts and the overall verdict."""
    if analysis.attrs.get("stochastic"):
        return summarise_stochastic(analysis)
    rows = []
    inc = analysis.included.values
    for k, name in enumerate(analysis.charge.values):
        verdicts = analysis.verdict.values[inc, k]
        counts = {v: int(np.sum(verdicts == v)) for v in (CONSERVED, BROKEN, INCONCLUSIVE)}
        if len(verdicts) == 0:
            overall = "no seed to judge"
        elif np.all(verdicts == NO_SUCH):
            overall = NO_SUCH
        elif len(set(verdicts)) == 1:  # every seed agrees (ensemble verdicts in expectation too)
            overall = str(verdicts[0])
        elif max(counts.values()) == len(verdicts):
            overall = max(counts, key=counts.get)
        else:
            overall = "mixed: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)

        def med(var):
            vals = analysis[var].values[inc, k]
            return float(np.nanmedian(vals)) if np.any(np.isfinite(vals)) else float("nan")

        rows.append({
            "charge": str(name), "verdict": overall, "fitted_order": med("fitted_order"),
            "extrapolated_drift": med("extrapolated_drift"), "uncertainty": med("uncertainty"),
            "roundoff_floor": med("roundoff_floor"), "finest_drift": med("finest_drift"),
            "scale": med("scale"), "seeds_judged": int(inc.sum()), "seeds_excluded": int((~inc).sum()),
            **{f"n_{v.split()[0]}": n for v, n in counts.items()},
        })
    return rows
