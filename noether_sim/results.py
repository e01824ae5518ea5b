"""A study in memory: finished blocks assembled into ONE ``xarray.Dataset``, its ladder verdicts and summary.

Layout (see also store.py for the files): every per-block variable gains the leading dimensions
``scheme`` (a method table's label; not "method", which ``Dataset.sel`` reads as its interpolation
keyword) and ``step`` (the rung of that method's ladder, 0 = largest step size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .kernels import STATUS_OK
from .dynamics import resolve
from .ladder import BROKEN, CONSERVED, INCONCLUSIVE, NO_SUCH, analyse_ladder, summarise_verdicts
from .store import COMPLETE_FILE, SHARED_VARS, IncompleteStoreError, block_status, describe_blocks, read_blocks, read_study

BLOCK_DIMS = ("scheme", "step")  # not "method": Dataset.sel(method=...) is xarray's interpolation keyword
NOT_ANALYSED = "not analysed (fewer than 3 finished step sizes)"


def load(path, allow_partial: bool = False) -> xr.Dataset:
    """The study saved at ``path`` as one Dataset, exactly as ``noether-sim run`` made it.

    An interrupted store raises ``IncompleteStoreError`` naming what is finished and what is missing;
    with ``allow_partial=True`` it loads the finished blocks only (``attrs["complete"]`` is False).
    """
    path = Path(path)
    meta = read_study(path)
    done, missing = block_status(path)
    complete = (path / COMPLETE_FILE).exists() and not missing
    if not complete and not allow_partial:
        raise IncompleteStoreError(
            f"study store {str(path)!r} is incomplete (interrupted, or still being written): "
            f"{len(done)} of {len(done) + len(missing)} (method, step size) blocks are finished "
            f"[{describe_blocks(done)}]; missing [{describe_blocks(missing)}]. "
            f"Load the finished blocks with noether_sim.load(path, allow_partial=True), or rerun the study.")
    blocks = read_blocks(path, done)
    return assemble(blocks, meta["config"], meta["provenance"], missing=[(lb, k) for lb, k, _ in missing])



def _fill_value(dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return ""


def assemble(blocks: dict, cfg: dict, provenance: dict, missing=()) -> xr.Dataset:
    """One Dataset from {(label, k): block}; see store.py for the layout. Ladder analysis included."""
    labels = list(cfg["methods"])
    n_steps = max(len(m["step_sizes"]) for m in cfg["methods"].values())
    present = [lb for lb in labels if any((lb, k) in blocks for k in range(n_steps))]
    if not blocks:
        raise ValueError("no finished block to assemble")
    # momentum blocks add isometric charges after the model's: the widest block's charges (and
    # components) extend every other block's, which are padded with NaN
    first = max(blocks.values(), key=lambda b: b.sizes.get("component", 0))
    # variables identical in every block (same seeds, same initialisation) are kept once
    shared = [v for v in SHARED_VARS if v in first]
    for key, b in blocks.items():
        for v in shared:
            if not np.array_equal(b[v].values, first[v].values):
                raise ValueError(f"block {key}: {v} differs from the other blocks (not one study?)")
    per_block = [v for v in first.data_vars if v not in shared]

    shape_mk = (len(present), n_steps)
    data_vars = {}
    for v in per_block:
        proto = first[v]
        arr = np.full(shape_mk + proto.shape, _fill_value(proto.dtype), dtype=proto.dtype)
        for i, lb in enumerate(present):
            for k in range(n_steps):
                if (lb, k) in blocks:
                    val = blocks[(lb, k)][v].values
                    arr[i, k][tuple(slice(0, n) for n in val.shape)] = val
        data_vars[v] = (BLOCK_DIMS + proto.dims, arr, proto.attrs)
    for v in shared:
        data_vars[v] = (first[v].dims, first[v].values, first[v].attrs)
    h = np.full(shape_mk, np.nan)
    wall = np.full(shape_mk, np.nan)
    for i, lb in enumerate(present):
        for k, hk in enumerate(cfg["methods"][lb]["step_sizes"]):
            if (lb, k) in blocks:
                h[i, k] = hk
                wall[i, k] = blocks[(lb, k)].attrs["wall_seconds"]
    data_vars["wall_seconds"] = (BLOCK_DIMS, wall, {"description": "wall-clock seconds of each block's integration"})

    coords = {name: c for name, c in first.coords.items()}
    coords.update({
        "scheme": present, "step": np.arange(n_steps),
        "h": (BLOCK_DIMS, h, {"description": "step size (learning rate for gradient descent)",
                              "units": "time (dimensionless)"}),
        "dynamics": ("scheme", [cfg["methods"][lb]["dynamics"] for lb in present]),
        "integrator": ("scheme", [cfg["methods"][lb]["method"] for lb in present]),
        "method_order": ("scheme", [resolve(cfg["methods"][lb]["dynamics"], cfg["methods"][lb]["method"]).order
                                    for lb in present]),
    })
    ds = xr.Dataset(data_vars, coords=coords)
    ds["time"].attrs.update(first["time"].attrs)

    # ---- ladder analysis, per method over its finished rungs ----
    S, C = ds.sizes["seed"], ds.sizes["charge"]
    fitted, d_star, unc = (np.full((len(present), S, C), np.nan) for _ in range(3))
    verdict = np.full((len(present), S, C), NOT_ANALYSED, dtype=object)
    included = np.zeros((len(present), S), bool)
    for i, lb in enumerate(present):
        ks = [k for k in range(n_steps) if (lb, k) in blocks]
        if len(ks) < 3 or ks != list(range(len(ks))):
            continue
        ladder = xr.concat([blocks[(lb, k)] for k in ks],
                           dim=xr.DataArray(np.array([cfg["methods"][lb]["step_sizes"][k] for k in ks]), dims="h"),
                           data_vars="all", coords="minimal", compat="override", join="override",
                           combine_attrs="override")
        an = analyse_ladder(ladder)
        c = an.sizes["charge"]  # the block's charges come first (see above)
        fitted[i, :, :c], d_star[i, :, :c], unc[i, :, :c] = (an.fitted_order.values, an.extrapolated_drift.values,
                                                            an.uncertainty.values)
        verdict[i] = NO_SUCH
        verdict[i, :, :c] = an.verdict.values
        included[i] = an.included.values
    ds["fitted_order"] = (("scheme", "seed", "charge"), fitted,
                          {"description": "slope of log|q(h_j) − q(h_{j+1})| against log h over the ladder"})
    ds["extrapolated_drift"] = (("scheme", "seed", "charge"), d_star,
                                {"description": "|q* − q_law(T)|, q* the Richardson extrapolation to h → 0"})
    ds["extrapolation_uncertainty"] = (("scheme", "seed", "charge"), unc,
                                       {"description": "how much q* moves between the two finest step-size pairs"})
    ds["verdict"] = (("scheme", "seed", "charge"), verdict.astype(str),
                     {"description": f"{CONSERVED!r}, {BROKEN!r} or {INCONCLUSIVE!r} (see noether_sim.ladder)"})
    ds["ladder_included"] = (("scheme", "seed"), included,
                             {"description": "the seed finished every step size of the ladder (judged)"})

    finished = sorted(blocks, key=lambda key: (labels.index(key[0]), key[1]))
    ds.attrs.update({
        **provenance,
        "study_name": cfg["name"], "study_description": cfg["description"],
        "study_config": json.dumps(cfg),
        "complete": not missing,
        "finished_blocks": json.dumps([[lb, int(k)] for lb, k in finished]),
        "missing_blocks": json.dumps([[lb, int(k)] for lb, k in missing]),
        **{a: first.attrs[a] for a in ("charge_shapes", "charge_descriptions", "status_names", "t_end",
                                        "weight_decay") if a in first.attrs},
    })
    return ds


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
    """A step size as 2^-k when it is a power of two (the usual ladder), else in %g."""
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
                       "roundoff_floor": _q(fin.roundoff_floor.sel(charge=c).values[ok], 0.5)},
            ))
    return rows


def _q(x, q):
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if len(x) else float("nan")


def format_summary(ds: xr.Dataset) -> str:
    rows = summary_rows(ds)
    head = (f"study {ds.attrs['study_name']!r}: {ds.sizes['seed']} seeds, t_end = {ds.attrs['t_end']:g}, "
            f"{ds.sizes['time']} save times; drift = |q(T) − q_law(T)|_F (q_law = q(0) without weight decay) at the finest step size, over seeds")
    cols = ["method", "charge", "h finest", "drift med", "drift p95", "predicted", "residual",
            "order", "h→0 drift", "diverged", "verdict"]

    def f(x):
        return "—" if not np.isfinite(x) else f"{x:.2e}"

    table = [[r.method, r.charge, h_text(r.h_finest), f(r.drift_median), f(r.drift_p95), f(r.predicted_median),
              f(r.residual_median), "—" if not np.isfinite(r.fitted_order) else f"{r.fitted_order:.2f}",
              f(r.extrapolated_drift), f"{r.diverged}/{r.seeds}", r.verdict] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines = [head, "", "  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(t, widths)).rstrip() for t in table]
    lines += ["", "predicted / residual: gradient descent's exact one-step law (theory.md §3), medians; "
                  "order: fitted slope of the charge against h; h→0 drift: Richardson extrapolation, median."]
    if not ds.attrs.get("complete", True):
        missing = json.loads(ds.attrs["missing_blocks"])
        lines.insert(0, f"INCOMPLETE STUDY: {len(missing)} (method, step size) blocks missing: "
                        + ", ".join(f"{lb} step {k}" for lb, k in missing))
    return "\n".join(lines)
