"""A study in memory: finished blocks assembled into ONE ``xarray.Dataset``, its ladder verdicts and summary.

Layout (see also store.py for the files): every per-block variable gains the leading dimensions
``scheme`` (a method table's label; not "method", which ``Dataset.sel`` reads as its interpolation
keyword) and ``step`` (the rung of that method's ladder, 0 = largest step size).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .kernels import STATUS_OK
from .dynamics import resolve
from .stochastic import per_seed_view
from .ladder import BROKEN, CONSERVED, EXCLUDED, INCONCLUSIVE, NO_SUCH, analyse_ladder, summarise_verdicts
from .laws import limit_flow
from .laws import NO_LAW
from .store import (COMPLETE_FILE, SHARED_VARS, DamagedStoreError, IncompleteStoreError, block_name, block_status,
                    damaged_blocks, describe_blocks, describe_damage, initial_name, open_component, read_study,
                    study_blocks, verify_store)

BLOCK_DIMS = ("scheme", "step")  # not "method": Dataset.sel(method=...) is xarray's interpolation keyword
NOT_ANALYSED = "not analysed (fewer than 3 finished step sizes)"


def load(path, allow_partial: bool = False, verify: bool = True) -> xr.Dataset:
    """The study (or sweep) saved at ``path`` as one Dataset, its arrays backed lazily by Dask.

    Every finished block's files are checked against the inventory and checksums recorded when it was
    written (``verify=False`` checks only that every file is there with its size, which reads no data).
    A damaged block raises ``DamagedStoreError`` naming it; an interrupted store raises
    ``IncompleteStoreError`` naming what is finished and what is missing. With ``allow_partial=True``
    both load what is intact, with a warning for damaged blocks (``attrs["complete"]`` is then False and
    ``attrs["missing_blocks"]`` lists what is not there).

    Parameters
    ----------
    path : str or pathlib.Path
        The store's directory (the ``out`` of ``run_study``).
    allow_partial : bool, optional
        Load whatever is intact instead of raising for a damaged or incomplete store. Default False.
    verify : bool, optional
        Check every finished block's checksums (True, default) or only that its files are there with
        their sizes (False).

    Returns
    -------
    xarray.Dataset
        The study with leading dimensions ``scheme`` (the method table's labels) and ``step`` (0 = the
        largest step size), its ladder analysis (``verdict``, ``fitted_order``, ...) computed lazily.

    Raises
    ------
    noether_sim.store.NotAStoreError
        ``path`` holds no study store.
    noether_sim.store.DamagedStoreError
        A finished block's files are missing or changed (unless ``allow_partial``).
    noether_sim.store.IncompleteStoreError
        The store is not complete: interrupted or still being written (unless ``allow_partial``).

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> out = os.path.join(tempfile.mkdtemp(), "tiny")
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 2},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> _ = ns.run_study(cfg, out)
    >>> ds = ns.load(out)
    >>> ds.attrs["complete"], ds.scheme.values.tolist(), ds.sizes["step"], ds.sizes["seed"]
    (True, ['gd'], 3, 2)

    As if the run had been interrupted before its last block finished:

    >>> os.remove(os.path.join(out, "COMPLETE")); os.remove(os.path.join(out, "blocks", "gd__h2.done"))
    >>> ns.load(out)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim.store.IncompleteStoreError: study store '...' is incomplete (...): 2 of 3 (method, step size) blocks are finished ...
    >>> partial = ns.load(out, allow_partial=True)
    >>> partial.attrs["complete"], partial.attrs["missing_blocks"]     # (scheme, step) of what is missing
    (False, '[["gd", 2]]')
    """
    path = Path(path)
    meta = read_study(path)
    done, missing = block_status(path)
    damaged = verify_store(path, full=verify, blocks=done)
    # (a block missing from a store marked complete is damage too: verify_store names it)
    bad = damaged_blocks(path, damaged, study_blocks(meta))
    if bad:
        text = (f"study store {str(path)!r} is damaged: {len(bad)} finished blocks have missing or changed files "
                f"[{describe_blocks(bad)}] ({describe_damage(damaged)})")
        if not allow_partial:
            raise DamagedStoreError(text + ". Load the intact blocks with noether_sim.load(path, allow_partial=True), "
                                           "or rerun the study into the same --out to recompute them.", damaged)
        warnings.warn(text + "; they are left out", stacklevel=2)
        done = [b for b in done if b not in bad]
        missing = [b for b in study_blocks(meta) if b not in done]
    complete = (path / COMPLETE_FILE).exists() and not missing
    if not complete and not allow_partial:
        raise IncompleteStoreError(
            f"study store {str(path)!r} is incomplete (interrupted, or still being written): "
            f"{len(done)} of {len(done) + len(missing)} (method, step size) blocks are finished "
            f"[{describe_blocks(done)}]; missing [{describe_blocks(missing)}]. "
            f"Load the finished blocks with noether_sim.load(path, allow_partial=True), or rerun the study.")
    initial = {}
    blocks = {}
    for p, label, k, _ in done:
        if p not in initial:
            initial[p] = open_component(path, initial_name(p))
        blocks[(p, label, k)] = open_component(path, block_name(label, k, p)).assign(
            {v: initial[p][v] for v in initial[p].data_vars})
    missing_keys = [(p, lb, k) for p, lb, k, _ in missing]
    if meta.get("points") is None:
        return assemble({(lb, k): b for (_, lb, k), b in blocks.items()}, meta["config"], meta["provenance"],
                        missing=[(lb, k) for _, lb, k in missing_keys])
    return assemble_sweep(blocks, meta, missing=missing_keys)


ANALYSIS_VARS = ("fitted_order", "extrapolated_drift", "extrapolation_uncertainty", "verdict", "ladder_included",
                 "verdict_basis", "law_verdict")
N_ANALYSIS = len(ANALYSIS_VARS)
# one fixed width, so that a verdict array has the same dtype however it was computed (eagerly or by Dask)
VERDICT_DTYPE = np.dtype(f"<U{max(len(v) for v in (CONSERVED, BROKEN, INCONCLUSIVE, NOT_ANALYSED, NO_SUCH, EXCLUDED))}")


def _analysis_shapes(S, C):
    return [((S, C), np.float64)] * 3 + [((S, C), VERDICT_DTYPE), ((S,), np.bool_)] + [((S, C), VERDICT_DTYPE)] * 2


def _not_analysed(S, C):
    return [np.full((S, C), np.nan), np.full((S, C), np.nan), np.full((S, C), np.nan),
            np.full((S, C), NOT_ANALYSED, dtype=VERDICT_DTYPE), np.zeros(S, bool),
            np.full((S, C), "", dtype=VERDICT_DTYPE), np.full((S, C), "", dtype=VERDICT_DTYPE)]


def _ladder_analysis(ladder: xr.Dataset, n_charges: int) -> list:
    """The ladder verdicts of one method (``analyse_ladder``) as arrays (seed, charge) and (seed,), padded
    to the study's ``n_charges`` charges (a gradient-flow method has no isometric charges: NO_SUCH)."""
    an = analyse_ladder(ladder)
    if an.attrs.get("stochastic"):  # verdicts in expectation: one per charge, shown on every seed
        an = per_seed_view(an)
    S, c = an.sizes["seed"], an.sizes["charge"]
    out = []
    for name, fill, dtype in (("fitted_order", np.nan, np.float64), ("extrapolated_drift", np.nan, np.float64),
                              ("uncertainty", np.nan, np.float64), ("verdict", NO_SUCH, VERDICT_DTYPE)):
        arr = np.full((S, n_charges), fill, dtype=dtype)
        arr[:, :c] = an[name].values  # blocks are widened to the study's charges (_widen_blocks)
        out.append(arr)
    out.append(an.included.values.astype(bool))
    for name, absent in (("basis", "seed means"), ("law_verdict", "")):  # a stochastic ladder judges seed means
        arr = np.full((S, n_charges), "", dtype=VERDICT_DTYPE)
        arr[:, :c] = an[name].values if name in an else absent
        out.append(arr)
    return out


def with_analysis(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its ladder analysis computed (one pass over the inputs, however many variables use it)."""
    names = [v for v in ANALYSIS_VARS if v in ds]
    if not names or all(ds[v].chunks is None for v in names):
        return ds
    return ds.assign(ds[names].compute().data_vars)


def _fill_value(dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return ""


def _filler(block: xr.Dataset) -> xr.Dataset:
    """A stand-in for a missing block: the same layout, padded (NaN, -1, False, "")."""
    return xr.Dataset({v: xr.full_like(block[v], _fill_value(block[v].dtype)) for v in block.data_vars},
                      attrs=block.attrs)


def assemble(blocks: dict, cfg: dict, provenance: dict, missing=()) -> xr.Dataset:
    """One Dataset from {(label, k): block}; see store.py for the layout. Ladder analysis included.

    Blocks may be in memory or backed by Dask (``load``): stacking keeps them lazy; only the few
    variables the ladder analysis needs (final charges, status, scale, floor) are read.
    """
    labels = list(cfg["methods"])
    n_steps = max(len(m["step_sizes"]) for m in cfg["methods"].values())
    present = [lb for lb in labels if any((lb, k) in blocks for k in range(n_steps))]
    return _assemble_point(blocks, cfg, provenance, missing, present, n_steps)


def _component_keys(labels) -> list:
    """(charge, index within the charge) of every component: its identity whatever the block's layout."""
    seen = {}
    keys = []
    for name in labels:
        keys.append((str(name), seen.get(name, 0)))
        seen[name] = seen.get(name, 0) + 1
    return keys


CHARGE_COORDS = ("charge_degree", "charge_kind", "charge_law")
COMPONENT_COORDS = ("component_charge", "component_degree")


def _widen_blocks(blocks: dict) -> dict:
    """Every block on the union of the blocks' charges and components, matched by name: a method's
    dynamics decides which charges it has (isometric charges under momentum only, the energy where it is
    tracked), so blocks of one study differ in charges; what a block lacks is padded with NaN."""
    layouts = {key: (tuple(map(str, b.charge.values)), tuple(map(str, b.component_charge.values)))
               for key, b in blocks.items()}
    if len(set(layouts.values())) == 1:
        return blocks
    charges, charge_info, comp_keys, comp_info = [], {}, [], {}
    for b in blocks.values():
        for i, c in enumerate(map(str, b.charge.values)):
            if c not in charge_info:
                charges.append(c)
                charge_info[c] = {n: b[n].values[i] for n in CHARGE_COORDS if n in b.coords}
        for j, key in enumerate(_component_keys(b.component_charge.values)):
            if key not in comp_info:
                comp_info[key] = {n: b[n].values[j] for n in COMPONENT_COORDS if n in b.coords}
    # in the single-run order (simulate._label): the model's charges, the data charges and the energy,
    # then the isometric ones, whichever block listed them first
    rank = {"model": 0, "data": 1, "energy": 2, "isometric": 3}
    charges.sort(key=lambda c: rank.get(str(charge_info[c].get("charge_kind", "")), 4))
    comp_keys = sorted(comp_info, key=lambda k: (charges.index(k[0]), k[1]))
    position = {k: i for i, k in enumerate(comp_keys)}
    union_coords = {n: ("charge", [charge_info[c][n] for c in charges]) for n in CHARGE_COORDS}
    union_coords.update({n: ("component", [comp_info[k][n] for k in comp_keys]) for n in COMPONENT_COORDS})
    sizes = {"charge": len(charges), "component": len(comp_keys)}
    out = {}
    for key, b in blocks.items():
        b = b.drop_vars([n for n in CHARGE_COORDS + COMPONENT_COORDS if n in b.coords])
        b = b.assign_coords(component=[position[k] for k in _component_keys(blocks[key].component_charge.values)])
        empty = [v for v in b.data_vars if b[v].size == 0]  # (Dask cannot reindex an empty array)
        wide = b.drop_vars(empty).reindex(charge=charges, component=np.arange(len(comp_keys)))
        wide = wide.assign({v: (b[v].dims, np.zeros([sizes.get(d, n) for d, n in b[v].sizes.items()], b[v].dtype),
                                b[v].attrs) for v in empty})
        out[key] = wide.assign_coords(union_coords)
    return out


def _assemble_point(blocks, cfg, provenance, missing, present, n_steps) -> xr.Dataset:
    if not blocks:
        raise ValueError("no finished block to assemble")
    labels = list(cfg["methods"])
    blocks = _widen_blocks(blocks)
    first = next(iter(blocks.values()))
    # variables identical in every block (same seeds, same initialisation) are kept once
    shared = [v for v in SHARED_VARS if v in first]
    per_block = [v for v in first.data_vars if v not in shared]
    proto = _filler(first[per_block])
    rows = []
    for lb in present:
        rung = [blocks[(lb, k)][per_block] if (lb, k) in blocks else proto for k in range(n_steps)]
        rows.append(xr.concat(rung, dim="step", data_vars="all", coords="minimal", compat="override",
                              join="override", combine_attrs="override"))
    stacked = xr.concat(rows, dim="scheme", data_vars="all", coords="minimal", compat="override",
                        join="override", combine_attrs="override")
    data_vars = {v: (BLOCK_DIMS + first[v].dims, stacked[v].transpose(*BLOCK_DIMS, *first[v].dims).data,
                     first[v].attrs) for v in per_block}
    for v in shared:
        data_vars[v] = (first[v].dims, first[v].data, first[v].attrs)
    shape_mk = (len(present), n_steps)
    h = np.full(shape_mk, np.nan)
    wall = np.full(shape_mk, np.nan)
    for i, lb in enumerate(present):
        for k, hk in enumerate(cfg["methods"][lb]["step_sizes"]):
            if (lb, k) in blocks:
                h[i, k] = hk
                wall[i, k] = blocks[(lb, k)].attrs["wall_seconds"]
    data_vars["wall_seconds"] = (BLOCK_DIMS, wall, {"description": "wall-clock seconds of each block's integration"})

    coords = {name: c.variable for name, c in first.coords.items()}
    coords.update({
        "scheme": present, "step": np.arange(n_steps),
        "h": (BLOCK_DIMS, h, {"description": "step size (learning rate for gradient descent)",
                              "units": "time (dimensionless)"}),
        "dynamics": ("scheme", [cfg["methods"][lb]["dynamics"] for lb in present]),
        "integrator": ("scheme", [cfg["methods"][lb]["method"] for lb in present]),
        "method_order": ("scheme", [resolve(cfg["methods"][lb]["dynamics"], cfg["methods"][lb]["method"]).order
                                    for lb in present]),
        "limit_flow": ("scheme", [limit_flow(cfg["methods"][lb]["dynamics"]) for lb in present],
                       {"description": "the flow the ladder converges to as h → 0: what 'the flow' of a verdict is"}),
    })
    ds = xr.Dataset(data_vars, coords=coords)
    ds["time"].attrs.update(first["time"].attrs)

    if "seed" not in ds.dims:  # statistics only (keep="stats"): the per-seed ladder analysis does not apply
        return _study_attrs(ds, blocks, cfg, provenance, missing, labels, first)
    # ---- ladder analysis, per method over its finished rungs ----
    # Over blocks backed by Dask (``load``) the analysis is a Dask task per method, run when its result
    # is first asked for: opening a store reads no data. ``with_analysis(ds)`` computes all of it in one pass.
    S, C = ds.sizes["seed"], ds.sizes["charge"]
    needed = [v for v in ("charge_final", "charge_initial", "law_factor", "status", "scale", "roundoff_floor",
                          "drift", "residual", "law_residual", "law_initial", "law_final", "expectation_law")
              if v in first]
    lazy = first["loss"].chunks is not None
    parts = []
    for lb in present:
        ks = [k for k in range(n_steps) if (lb, k) in blocks]
        if len(ks) < 3 or ks != list(range(len(ks))):
            parts.append(_not_analysed(S, C))
            continue
        ladder = xr.concat([blocks[(lb, k)][needed] for k in ks],
                           dim=xr.DataArray(np.array([cfg["methods"][lb]["step_sizes"][k] for k in ks]), dims="h"),
                           data_vars="all", coords="minimal", compat="override", join="override",
                           combine_attrs="override")
        if lazy:
            import dask
            import dask.array as da

            res = dask.delayed(_ladder_analysis, nout=N_ANALYSIS, pure=True)(ladder, C)
            parts.append([da.from_delayed(r, shape, dtype=dt) for r, (shape, dt) in zip(res, _analysis_shapes(S, C))])
        else:
            parts.append(_ladder_analysis(ladder.load(), C))
    if lazy:
        import dask.array as da

        stack = [da.stack([da.asarray(p[j]) for p in parts]) for j in range(N_ANALYSIS)]
    else:
        stack = [np.stack([p[j] for p in parts]) for j in range(N_ANALYSIS)]
    ds["fitted_order"] = (("scheme", "seed", "charge"), stack[0],
                          {"description": "slope of log|q(h_j) − q(h_{j+1})| against log h over the ladder"})
    ds["extrapolated_drift"] = (("scheme", "seed", "charge"), stack[1],
                                {"description": "|q* − q_law(T)|, q* the Richardson extrapolation to h → 0"})
    ds["extrapolation_uncertainty"] = (("scheme", "seed", "charge"), stack[2],
                                       {"description": "how much q* moves between the two finest step-size pairs"})
    ds["verdict"] = (("scheme", "seed", "charge"), stack[3],
                     {"description": f"{CONSERVED!r}, {BROKEN!r} or {INCONCLUSIVE!r} (see noether_sim.ladder)"})
    ds["ladder_included"] = (("scheme", "seed"), stack[4],
                             {"description": "the seed finished every step size of the ladder (judged)"})
    ds["verdict_basis"] = (("scheme", "seed", "charge"), stack[5],
                           {"description": "what the verdict rests on: 'exact law' (the step's exact law holds "
                                           "to round-off at every step size) or 'ladder' (the extrapolation)"})
    ds["law_verdict"] = (("scheme", "seed", "charge"), stack[6],
                         {"description": "the model's charges under momentum: whether the law that replaces "
                                         "their conservation holds (see noether_sim.laws)"})

    return _study_attrs(ds, blocks, cfg, provenance, missing, labels, first)


def _study_attrs(ds, blocks, cfg, provenance, missing, labels, first) -> xr.Dataset:
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


def assemble_sweep(blocks: dict, meta: dict, missing=()) -> xr.Dataset:
    """One Dataset from the blocks {(point, label, k): block} of a sweep: one dimension per sweep axis
    (named as its key; see sweep.py), then the layout of a single study. Points differ in shape where
    their settings do (widths: charges and parameters; seeds.count: seeds); the union is kept and
    padded like a missing block. A point with no finished block is all padding."""
    points, layout = meta["points"], meta["sweep"]
    labels = list(dict.fromkeys(lb for cfg in points for lb in cfg["methods"]))
    n_steps = max(len(m["step_sizes"]) for cfg in points for m in cfg["methods"].values())
    present = [lb for lb in labels if any(key[1] == lb for key in blocks)]
    per_point = []
    for p, cfg in enumerate(points):
        pb = {(lb, k): b for (q, lb, k), b in blocks.items() if q == p}
        pm = [(lb, k) for q, lb, k in missing if q == p]
        per_point.append(_assemble_point(pb, cfg, meta["provenance"], pm, present, n_steps) if pb else None)
    template = next((d for d in per_point if d is not None), None)
    if template is None:
        raise ValueError("no finished block to assemble")
    fills = {v: _fill_value(template[v].dtype) for v in template.data_vars}
    dims = [d["name"] for d in layout["dims"]]
    shape = tuple(len(d["values"][d["keys"][0]]) for d in layout["dims"])
    grid = np.empty(shape, dtype=object)
    for p, ix in enumerate(layout["index"]):
        d = per_point[p] if per_point[p] is not None else _filler(template)
        # empty arrays (no watched seeds) in memory: Dask cannot pick chunks for padding a size-0 array
        d = d.drop_attrs(deep=False)
        # labels (component_charge, …) that differ between points become padded object arrays along the
        # sweep dimensions, which Dask cannot chunk: they are small, so they are combined in memory
        d = d.assign_coords({c: d[c].load() for c in d.coords if d[c].dtype.kind in "OUS" and c not in d.dims})
        grid[tuple(ix)] = d.assign({v: d[v].load() for v in d.data_vars if d[v].size == 0})
    ds = xr.combine_nested(grid.tolist(), concat_dim=dims, data_vars="all", coords="different", compat="equals",
                           join="outer", fill_value=fills, combine_attrs="drop")
    ds = ds.transpose(*dims, *BLOCK_DIMS, ...)  # sweep axes first, in the order written, then the study's
    from .sweep import coordinate

    for d in layout["dims"]:
        for key in d["keys"]:
            ds = ds.assign_coords({key: (d["name"], coordinate(d["values"][key]))})
    finished = sorted(blocks)
    first = next(iter(blocks.values()))
    ds.attrs.update({
        **meta["provenance"],
        "study_name": meta["config"]["name"], "study_description": meta["config"].get("description", ""),
        "study_config": json.dumps(meta["config"]), "sweep": json.dumps(layout),
        "point_configs": json.dumps(points),
        "complete": not missing,
        "finished_blocks": json.dumps([[p, lb, int(k)] for p, lb, k in finished]),
        "missing_blocks": json.dumps([[p, lb, int(k)] for p, lb, k in missing]),
        **{a: first.attrs[a] for a in ("status_names",) if a in first.attrs},
    })
    return ds


def sweep_dims(ds: xr.Dataset) -> list[str]:
    """The sweep's dimensions of a loaded study (empty for a study without a sweep)."""
    if "sweep" not in ds.attrs:
        return []
    return [d["name"] for d in json.loads(ds.attrs["sweep"])["dims"]]


def sweep_point(ds: xr.Dataset, p: int) -> xr.Dataset:
    """Point ``p`` of a loaded sweep as a single study's Dataset (what ``format_summary`` and the
    per-study figures take): its padding of other points' shapes removed, its own attributes restored."""
    layout = json.loads(ds.attrs["sweep"])
    cfg = json.loads(ds.attrs["point_configs"])[p]
    sub = ds.isel({d["name"]: i for d, i in zip(layout["dims"], layout["index"][p])})
    # trim the padding other points' shapes put in (their charges, parameters, seeds, save times)
    real = {
        "charge": np.isfinite(sub.scale.isel(time=0)).any(("scheme", "step", "seed")),
        "component": np.isfinite(sub.charge_initial).any([d for d in sub.charge_initial.dims if d != "component"]),
        "param": np.isfinite(sub.theta_initial).any("seed"),
        "seed": np.isfinite(sub.theta_initial).any("param"),
        "time": np.isfinite(sub.loss).any(("scheme", "step", "seed")),
    } if "seed" in ds.dims else {  # statistics only (keep="stats"): no seeds or parameters
        "charge": np.isfinite(sub.scale_mean.isel(time=0)).any(("scheme", "step")),
        "component": np.isfinite(sub.charge_initial_mean).any(("scheme", "step")),
        "time": np.isfinite(sub.loss_mean).any(("scheme", "step")),
    }
    sub = sub.isel({d: np.flatnonzero(m.values) for d, m in real.items()})
    finished = [[lb, k] for q, lb, k in json.loads(ds.attrs["finished_blocks"]) if q == p]
    missing = [[lb, k] for q, lb, k in json.loads(ds.attrs["missing_blocks"]) if q == p]
    sub.attrs = {**ds.attrs, "study_config": json.dumps(cfg), "complete": not missing,
                      "finished_blocks": json.dumps(finished), "missing_blocks": json.dumps(missing),
                      "t_end": cfg["t_end"], "weight_decay": cfg["weight_decay"], "sweep_point": p}
    return sub


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
