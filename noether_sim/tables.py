"""What a study says, in rows and text: the summary rows behind the printed verdict table, the
table written by ``noether-sim table`` (CSV or JSON), and the printed summary of a study or a sweep.

results.py assembles and analyses a study; this module only reads what it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .kernels import STATUS_OK
from .ladder import analyse_ladder, summarise_verdicts
from .laws import NO_LAW
from .results import NOT_ANALYSED, sweep_dims, sweep_point, with_analysis


# ---- summary ----

@dataclass
class SummaryRow:
    method: str
    charge: str
    h_finest: float
    drift_median: float
    drift_p95: float
    predicted_median: float
    residual_median: float
    fitted_order: float
    extrapolated_drift: float
    verdict: str
    diverged: int
    seeds: int
    extra: dict = field(default_factory=dict)


def h_text(h: float) -> str:
    """A step size as 2^-k when it is a power of two (the usual ladder), else in %g.

    Examples
    --------
    >>> h_text(0.125), h_text(0.3)
    ('2^-3', '0.3')
    """
    k = np.log2(h)
    return f"2^{int(round(k))}" if h > 0 and abs(k - round(k)) < 1e-12 else f"{h:g}"


def finest_step(ds: xr.Dataset, method: str) -> int:
    """Index of the smallest finished step size of ``method``."""
    hs = ds.h.sel(scheme=method).values
    return int(np.nanargmin(np.where(np.isfinite(hs), hs, np.nan)))


def ok_seeds(ds: xr.Dataset, method: str) -> np.ndarray:
    """Seeds that finished every finished step size of ``method`` (diverged seeds excluded)."""
    st = ds.status.sel(scheme=method).values  # (step, seed); -1 pads unfinished rungs
    return np.all((st == STATUS_OK) | (st == -1), axis=0)


def summary_rows(ds: xr.Dataset) -> list[SummaryRow]:
    if "seed" not in ds.dims:  # statistics only (keep="stats")
        from .stats import summary_rows as stats_rows

        return stats_rows(ds, SummaryRow, finest_step, NOT_ANALYSED, analyse=analyse_ladder)
    ds = with_analysis(ds)
    rows = []
    for lb in ds.scheme.values:
        k = finest_step(ds, lb)
        ok = ok_seeds(ds, lb)
        st = ds.status.sel(scheme=lb).values
        diverged = int(np.sum(np.any(st == 1, axis=0)))
        fin = ds.sel(scheme=lb).isel(step=k, time=-1)
        an = ds.sel(scheme=lb)
        verdicts = {}
        analysed = an.verdict.values[0, 0] != NOT_ANALYSED if ds.sizes["seed"] else False
        if analysed:
            sub = xr.Dataset({"verdict": an.verdict, "included": an.ladder_included,
                              "basis": an.verdict_basis, "law_verdict": an.law_verdict,
                              **{name: an[name] for name in ("fitted_order", "extrapolated_drift")},
                              "uncertainty": an.extrapolation_uncertainty,
                              "roundoff_floor": fin.roundoff_floor, "finest_drift": fin.drift,
                              "scale": fin.scale})
            verdicts = {r["charge"]: r for r in summarise_verdicts(sub)}
        for c in ds.charge.values:
            if not np.any(np.isfinite(fin.drift.sel(charge=c).values)):
                continue  # a charge this dynamics does not have (isometric charges of gradient flow)
            drift = fin.drift.sel(charge=c).values[ok]
            pred = fin.predicted.sel(charge=c).values[ok]
            res = fin.residual.sel(charge=c).values[ok]
            v = verdicts.get(str(c))
            rows.append(SummaryRow(
                method=str(lb), charge=str(c), h_finest=float(ds.h.sel(scheme=lb).values[k]),
                drift_median=_q(drift, 0.5), drift_p95=_q(drift, 0.95),
                predicted_median=_q(pred, 0.5), residual_median=_q(res, 0.5),
                fitted_order=v["fitted_order"] if v else np.nan,
                extrapolated_drift=v["extrapolated_drift"] if v else np.nan,
                verdict=v["verdict"] if v else NOT_ANALYSED, diverged=diverged, seeds=int(ds.sizes["seed"]),
                extra={"uncertainty": v["uncertainty"] if v else np.nan,
                       "basis": v["basis"] if v else "", "law_verdict": v["law_verdict"] if v else "",
                       "limit_flow": str(ds.limit_flow.sel(scheme=lb).values) if "limit_flow" in ds.coords else "",
                       "roundoff_floor": _q(fin.roundoff_floor.sel(charge=c).values[ok], 0.5)},
            ))
    return rows


def by_step_size(ds: xr.Dataset, method: str) -> xr.Dataset:
    """The blocks of ``method`` (a scheme label) with the step size as a dimension ``h`` in place of the
    rung index ``step``: an axis like the swept keys, so ``by_step_size(ds, "gd").sel(h=2**-9)`` or
    ``.drift.isel(time=-1).median("seed").plot(x="h")`` work as for any swept key. Rungs a method does not
    have (padding of a shorter ladder) are dropped. A sweep whose points give ``method`` different step sizes
    has no single h axis: refused (select a point first, ``sweep_point``)."""
    from ._validate import fail

    if method not in ds.scheme.values:
        fail("method", method, f"must be one of the study's methods: {', '.join(map(str, ds.scheme.values))}")
    sub = ds.sel(scheme=method)
    h = sub.h.transpose("step", ...).values.reshape(sub.sizes["step"], -1)
    rows = []
    for k, row in enumerate(h):
        vals = np.unique(row[np.isfinite(row)])
        if len(vals) > 1:
            fail("method", method, f"its step sizes differ between sweep points (rung {k}: "
                                   f"{', '.join(f'{x:g}' for x in vals)}); take one point with sweep_point first")
        rows.append(vals[0] if len(vals) else np.nan)
    rows = np.array(rows)
    keep = np.flatnonzero(np.isfinite(rows))
    sub = sub.drop_vars("h").isel(step=keep).assign_coords(h=("step", rows[keep]))
    return sub.swap_dims(step="h")


TABLE_COLUMNS = ["method", "step", "h", "charge", "seeds", "diverged", "drift_median", "drift_p05", "drift_p95",
                 "predicted_median", "residual_median", "roundoff_floor_median", "fitted_order",
                 "extrapolated_drift", "verdict"]
"""Columns of ``table_rows`` (a sweep's rows start with its swept keys)."""


def _study_table(ds: xr.Dataset) -> list[dict]:
    verdicts = {(r.method, r.charge): r for r in summary_rows(ds)}
    rows = []
    for lb in ds.scheme.values:
        hs = ds.h.sel(scheme=lb).values
        ok = ok_seeds(ds, lb)
        st = ds.status.sel(scheme=lb).values
        for k in np.flatnonzero(np.isfinite(hs)):
            fin = ds.sel(scheme=lb).isel(step=k, time=-1)
            for c in ds.charge.values:
                drift = fin.drift.sel(charge=c).values[ok]
                if not np.any(np.isfinite(drift)):
                    continue  # a charge this dynamics does not have
                v = verdicts.get((str(lb), str(c)))
                rows.append({
                    "method": str(lb), "step": int(k), "h": float(hs[k]), "charge": str(c),
                    "seeds": int(ds.sizes["seed"]), "diverged": int(np.sum(st[k] == 1)),
                    "drift_median": _q(drift, 0.5), "drift_p05": _q(drift, 0.05), "drift_p95": _q(drift, 0.95),
                    "predicted_median": _q(fin.predicted.sel(charge=c).values[ok], 0.5),
                    "residual_median": _q(fin.residual.sel(charge=c).values[ok], 0.5),
                    "roundoff_floor_median": _q(fin.roundoff_floor.sel(charge=c).values[ok], 0.5),
                    # the ladder's: one value per method and charge, repeated on each of its step sizes
                    "fitted_order": v.fitted_order if v else np.nan,
                    "extrapolated_drift": v.extrapolated_drift if v else np.nan,
                    "verdict": v.verdict if v else NOT_ANALYSED,
                })
    return rows


def table_rows(ds: xr.Dataset) -> list[dict]:
    """One row per (sweep point,) method, step size and charge, EVERY step size of the ladder (not only the
    finest): final-time drift statistics over the seeds that finished (``TABLE_COLUMNS``), and the ladder's
    fitted order, h → 0 drift and verdict. A sweep's rows start with its swept keys, so the step size h is
    one more column beside them. What ``noether-sim table`` writes as CSV or JSON."""
    ds = with_analysis(ds)
    if not sweep_dims(ds):
        return _study_table(ds)
    from .sweep import value_label

    layout = json.loads(ds.attrs["sweep"])
    finished = {q for q, _, _ in json.loads(ds.attrs["finished_blocks"])}
    rows = []
    for p, ix in enumerate(layout["index"]):
        if p not in finished:
            continue
        keys = {key: value_label(d["values"][key][i]) for d, i in zip(layout["dims"], ix) for key in d["keys"]}
        rows += [{**keys, **row} for row in _study_table(sweep_point(ds, p))]
    return rows


def write_table(ds: xr.Dataset, out, fmt: str = "csv") -> None:
    """``table_rows`` as CSV (a header line, then one line per row; NaN as empty) or JSON (a list of
    objects; NaN as null) into ``out``, a path or an open text file."""
    import csv
    import io

    rows = table_rows(ds)
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt={fmt!r} is invalid: must be 'csv' or 'json'")

    def clean(x):
        return None if isinstance(x, float) and not np.isfinite(x) else x

    buf = io.StringIO()
    if fmt == "json":
        json.dump([{k: clean(x) for k, x in r.items()} for r in rows], buf, indent=1)
        buf.write("\n")
    else:
        cols = list(rows[0]) if rows else TABLE_COLUMNS
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if clean(x) is None else (repr(x) if isinstance(x, float) else x)
                             for k, x in r.items()})
    if hasattr(out, "write"):
        out.write(buf.getvalue())
    else:
        Path(out).write_text(buf.getvalue())


def _q(x, q):
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if len(x) else float("nan")


def _basis_text(extra: dict) -> str:
    basis, law = extra.get("basis", ""), extra.get("law_verdict", "")
    if law and law != NO_LAW:
        return f"{basis}; law {law}" if basis else f"law {law}"
    return basis


def _verdict_text(row) -> str:
    """The verdict, naming its flow where that is not gradient or momentum flow (the optimizers)."""
    flow = row.extra.get("limit_flow", "")
    if flow and not flow.startswith(("gradient flow", "momentum flow")) and row.verdict != NOT_ANALYSED:
        return f"{row.verdict} (limit: {flow})"
    return row.verdict


def format_summary(ds: xr.Dataset) -> str:
    """The verdict table of one study (what ``noether-sim run`` and ``report`` print).

    Parameters
    ----------
    ds : xarray.Dataset
        A study, as ``ns.run_study`` or ``ns.load`` return it (one point of a sweep: ``sweep_point``).

    Returns
    -------
    str
        A header line, one row per (method, charge) with the drift at the finest step size, the exact
        law's prediction and residual, the fitted order, the extrapolated drift, diverged seeds, the
        verdict and how it was reached, and a legend.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.125, 0.0625, 0.03125]}}}
    >>> text = format_summary(ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny")))
    >>> text.splitlines()[0].startswith("study 'tiny': 4 seeds")
    True
    """
    rows = summary_rows(ds)
    n_seeds = ds.sizes["seed"] if "seed" in ds.dims else rows[0].seeds if rows else 0
    kept = "" if "seed" in ds.dims else ' (keep="stats": medians and p95 from histograms, verdicts from seed means)'
    head = (f"study {ds.attrs['study_name']!r}: {n_seeds} seeds{kept}, t_end = {ds.attrs['t_end']:g}, "
            f"{ds.sizes['time']} save times; drift = |q(T) − q_law(T)|_F (q_law = q(0) without weight decay) at the finest step size, over seeds")
    cols = ["method", "charge", "h finest", "drift med", "drift p95", "predicted", "residual",
            "order", "h→0 drift", "diverged (any h)", "verdict", "basis"]

    def f(x):
        return "—" if not np.isfinite(x) else f"{x:.2e}"

    table = [[r.method, r.charge, h_text(r.h_finest), f(r.drift_median), f(r.drift_p95), f(r.predicted_median),
              f(r.residual_median), "—" if not np.isfinite(r.fitted_order) else f"{r.fitted_order:.2f}",
              f(r.extrapolated_drift), f"{r.diverged}/{r.seeds}", _verdict_text(r), _basis_text(r.extra)] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines = [head, "", "  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(t, widths)).rstrip() for t in table]
    lines += ["", "predicted / residual: gradient descent's exact one-step law (docs/theory.md, 'What integrators "
                  "do to charges'), medians; "
                  "order: fitted slope of the charge against h; h→0 drift: Richardson extrapolation, median; "
                  "diverged (any h): seeds that diverged at one step size or more (left out of the drifts).",
              "basis: 'exact law' = the step's exact law holds to round-off at every step size, so the drift is "
              "the step's and the flow conserves the charge; 'ladder' = the verdict of the extrapolation to h → 0; "
              "'law ...' = the law that replaces conservation under momentum (docs/guide/verdicts.md)."]
    if not ds.attrs.get("complete", True):
        missing = json.loads(ds.attrs["missing_blocks"])
        lines.insert(0, f"INCOMPLETE STUDY: {len(missing)} (method, step size) blocks missing: "
                        + ", ".join(f"{lb} step {k}" for lb, k in missing))
    return "\n".join(lines)


def describe_point(ds: xr.Dataset, p: int) -> str:
    from .sweep import value_label

    layout = json.loads(ds.attrs["sweep"])
    return ", ".join(f"{key}={value_label(d['values'][key][i])}"
                     for d, i in zip(layout["dims"], layout["index"][p]) for key in d["keys"])


def format_any_summary(ds: xr.Dataset) -> str:
    """The summary table of a study, or of every point of a sweep (verdicts per point)."""
    ds = with_analysis(ds)
    if not sweep_dims(ds):
        return format_summary(ds)
    layout = json.loads(ds.attrs["sweep"])
    finished = {q for q, _, _ in json.loads(ds.attrs["finished_blocks"])}
    parts = [f"sweep {ds.attrs['study_name']!r}: {len(layout['index'])} points over "
             + " × ".join(f"{d['name']} ({len(d['values'][d['keys'][0]])})" for d in layout["dims"])]
    if not ds.attrs.get("complete", True):
        parts.append(f"INCOMPLETE SWEEP: {len(json.loads(ds.attrs['missing_blocks']))} blocks missing")
    for p in range(len(layout["index"])):
        parts.append("")
        parts.append(f"=== point {p}: {describe_point(ds, p)} ===")
        if p not in finished:
            parts.append("no finished block")
            continue
        parts.append(format_summary(sweep_point(ds, p)))
    return "\n".join(parts)
