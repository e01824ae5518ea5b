"""Figures of a study (a Dataset from ``noether_sim.load`` or ``run_study``).

Each figure function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state,
Agg rendering), one panel per charge where it plots charges. Statistics are over the seeds that
finished every step size of the method (diverged seeds excluded), at each method's finest step size
unless the figure is about step size. ``FIGURES`` maps figure names to functions; ``save_figures``
writes each as PNG and PDF.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .tables import finest_step, h_text, ok_seeds

BAND = (0.05, 0.95)
TIME_LABEL = "time t (dimensionless; t = kη for gradient descent)"


def _colors(ds):
    cycle = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    return {str(s): cycle[i % len(cycle)] for i, s in enumerate(ds.scheme.values)}


def _styles(ds):
    """Line styles per method, so that methods whose curves coincide (the loss) all stay visible."""
    cycle = ["-", "--", ":", "-."]
    return {str(s): cycle[i % len(cycle)] for i, s in enumerate(ds.scheme.values)}


def _charge_title(ds, charge):
    descr = json.loads(ds.attrs.get("charge_descriptions", "{}")).get(str(charge), "")
    return f"{charge}: {descr}" if descr else str(charge)


def _panels(ds, n, title, width=6.0, height=4.2):
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    fig.suptitle(title)
    return fig, axes


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, 5 %, 95 %) over axis 0 (seeds), ignoring NaN.

    Parameters
    ----------
    values : numpy.ndarray
        Values with seeds along axis 0 (NaN where a seed has none).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        The median, 5 % and 95 % quantiles over the seeds, each of shape ``values.shape[1:]``.

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.plots import seed_band
    >>> med, lo, hi = seed_band(np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]]))
    >>> med.tolist(), bool((lo <= med).all() and (med <= hi).all())
    ([2.0, 20.0], True)
    """
    return (np.nanmedian(values, axis=0), np.nanquantile(values, BAND[0], axis=0),
            np.nanquantile(values, BAND[1], axis=0))


def finest_series(ds: xr.Dataset, scheme: str, var: str, charge=None) -> tuple[np.ndarray, float]:
    """(seed × time values of ``var`` at the scheme's finest step size over its included seeds, that h).

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).
    scheme : str
        A method of its method table.
    var : str
        A variable with dimensions (seed, time, ...), e.g. "drift" or "loss".
    charge : str, optional
        The charge to select, for variables that have one.

    Returns
    -------
    (numpy.ndarray, float)
        The values (included seeds × time) and the finest step size h.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> values, h = plots.finest_series(ds, "gd", "drift", charge="D1")
    >>> values.shape, h                                          # 4 seeds, 3 save times
    ((4, 3), 0.0125)
    """
    k = finest_step(ds, scheme)
    da = ds[var].sel(scheme=scheme).isel(step=k)
    if charge is not None:
        da = da.sel(charge=charge)
    return da.transpose("seed", ...).values[ok_seeds(ds, scheme)], float(ds.h.sel(scheme=scheme).values[k])


def _n_seeds_text(ds):
    return f"median and {BAND[0]:.0%}–{BAND[1]:.0%} band over {ds.sizes['seed']} seeds"


def drift_vs_time(ds: xr.Dataset) -> Figure:
    """Charge drift ``|q(t) − q_law(t)|`` against time, per method at its finest step size.

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per charge: the median drift and its 5–95 % band over seeds, one colour per method.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.drift_vs_time(ds)
    >>> len(fig.axes), fig.axes[0].get_yscale()
    (1, 'log')
    """
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"], f"Charge drift against time ({_n_seeds_text(ds)})")
    t = ds.time.values[1:]  # t = 0: drift is exactly zero, off a log axis
    for ax, charge in zip(axes, ds.charge.values):
        for s in ds.scheme.values:
            vals, h = finest_series(ds, s, "drift", charge)
            if not np.any(np.isfinite(vals)):
                continue  # a charge this method's dynamics does not have (J under gradient flow)
            med, lo, hi = seed_band(vals[:, 1:])
            ax.plot(t, med, color=colors[str(s)], label=f"{s} (h = {h_text(h)})", gid=f"median:{s}")
            ax.fill_between(t, lo, hi, color=colors[str(s)], alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(f"drift |{charge}(t) − {charge}_law(t)|_F (dimensionless)")
        ax.set_title(_charge_title(ds, charge), fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def fitted_slope(h: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log h over the points with y > 0.

    Parameters
    ----------
    h : numpy.ndarray
        Step sizes (> 0).
    y : numpy.ndarray
        Values at those step sizes; NaN, infinite and non-positive ones are left out.

    Returns
    -------
    float
        The slope, or NaN when fewer than two points are usable.

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.plots import fitted_slope
    >>> h = np.array([0.1, 0.05, 0.025])
    >>> round(fitted_slope(h, 3.0 * h ** 2), 9), fitted_slope(h, np.array([1.0, 0.0, np.nan]))
    (2.0, nan)
    """
    use = np.isfinite(h) & np.isfinite(y) & (y > 0)
    if use.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(h[use]), np.log(y[use]), 1)[0])


def drift_vs_step(ds: xr.Dataset) -> Figure:
    """Median final drift against step size (log-log), with the fitted slope (the observed order).

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per charge, a line per method, labelled with its fitted slope.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.drift_vs_step(ds)
    >>> len(fig.axes), fig.axes[0].get_xscale(), fig.axes[0].get_yscale()
    (1, 'log', 'log')
    """
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"],
                        f"Final charge drift against step size at t = {float(ds.time.values[-1]):g} "
                        f"(median over {ds.sizes['seed']} seeds)")
    above = []
    for ax, charge in zip(axes, ds.charge.values):
        for s in ds.scheme.values:
            h = ds.h.sel(scheme=s).values
            done = np.isfinite(h)
            final = ds.drift.sel(scheme=s, charge=charge).isel(time=-1).transpose("step", "seed").values
            if not np.any(np.isfinite(final)):
                continue  # a charge this method's dynamics does not have
            med = np.array([np.nanmedian(final[k, ok_seeds(ds, s)]) for k in np.flatnonzero(done)])
            slope = fitted_slope(h[done], med)
            order = int(ds.method_order.sel(scheme=s))
            ax.plot(h[done], med, "o-", color=colors[str(s)], gid=f"median:{s}",
                    label=f"{s} (order {order}): fitted slope {slope:.2f}")
            ax.annotate(f"slope {slope:.2f}", (h[done][-1], med[-1]), textcoords="offset points",
                        xytext=(4, -10), fontsize="small", color=colors[str(s)], gid=f"slope:{s}")
            if slope > order + 0.5 and str(s) not in above:
                above.append(str(s))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step size h (dimensionless time; learning rate η for gradient descent)")
        ax.set_ylabel(f"final drift |{charge}(T) − {charge}_law(T)|_F (dimensionless)")
        ax.set_title(_charge_title(ds, charge), fontsize="medium")
        ax.legend(fontsize="small")
    if above:  # below the panels, so that it covers no curve
        fig.supxlabel(f"{', '.join(above)}: fitted slope above the method's order. The order only bounds a charge's "
                      "drift from above: the leading error term can cancel in the charge\n(Heun changes a quadratic "
                      "charge ½θᵀSθ by (h²/8)(k₂−k₁)ᵀS(k₂−k₁) = O(h⁴) per step, k its stages). docs/theory.md, "
                      "'What integrators do to charges'.", fontsize="small")
    return fig


def loss_vs_time(ds: xr.Dataset) -> Figure:
    """Training loss against time, per method at its finest step size.

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).

    Returns
    -------
    matplotlib.figure.Figure
        One panel: the median loss and its 5–95 % band over seeds, one line per method.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.loss_vs_time(ds)
    >>> len(fig.axes)
    1
    """
    colors, styles = _colors(ds), _styles(ds)
    fig, axes = _panels(ds, 1, f"Training loss against time ({_n_seeds_text(ds)})", width=7.0)
    ax = axes[0]
    t = ds.time.values
    for s in ds.scheme.values:
        vals, h = finest_series(ds, s, "loss")
        med, lo, hi = seed_band(vals)
        ax.plot(t, med, color=colors[str(s)], linestyle=styles[str(s)], linewidth=2,
                label=f"{s} (h = {h_text(h)})", gid=f"median:{s}")
        ax.fill_between(t, lo, hi, color=colors[str(s)], alpha=0.1, linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("training loss L = (1/2N) Σ|f(x) − y|² (dimensionless)")
    ax.legend(fontsize="small")
    return fig


def drift_histogram(ds: xr.Dataset, bins: int = 40) -> Figure:
    """Histogram over seeds of the final drift at each method's finest step size (log-spaced bins).

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).
    bins : int, optional
        Number of histogram bins, default 40.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per charge, one histogram per method.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.drift_histogram(ds, bins=10)
    >>> len(fig.axes), fig.axes[0].get_xscale()
    (1, 'log')
    """
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"],
                        f"Final charge drift over seeds at t = {float(ds.time.values[-1]):g} (finest step sizes)")
    for ax, charge in zip(axes, ds.charge.values):
        finals = {str(s): finest_series(ds, s, "drift", charge) for s in ds.scheme.values}
        finals = {s: (v, h) for s, (v, h) in finals.items() if np.any(np.isfinite(v))}  # charges it has
        positive = np.concatenate([v[:, -1][v[:, -1] > 0] for v, _ in finals.values()])
        lo, hi = (np.log10(positive.min()), np.log10(positive.max())) if len(positive) else (-16.0, 0.0)
        edges = histogram_edges(lo, hi, bins)
        for s, (v, h) in finals.items():
            final = v[:, -1]
            counts, _ = np.histogram(final[final > 0], bins=edges)
            zeros = int(np.sum(final == 0))
            ax.stairs(counts, edges, color=colors[s], gid=f"hist:{s}",
                      label=f"{s} (h = {h_text(h)})" + (f", {zeros} seeds exactly 0" if zeros else ""))
        ax.set_xscale("log")
        ax.set_xlabel(f"final drift |{charge}(T) − {charge}_law(T)|_F (dimensionless)")
        ax.set_ylabel("number of seeds")
        ax.set_title(_charge_title(ds, charge), fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def histogram_edges(log_lo: float, log_hi: float, bins: int) -> np.ndarray:
    """Bin edges, equal in log10, from 10^log_lo to 10^log_hi widened by 1 % of the span each side
    (by half a decade each side when the span is empty).

    Parameters
    ----------
    log_lo, log_hi : float
        log10 of the smallest and largest value to bin.
    bins : int
        Number of bins.

    Returns
    -------
    numpy.ndarray
        The ``bins + 1`` edges, increasing.

    Examples
    --------
    >>> from noether_sim.plots import histogram_edges
    >>> edges = histogram_edges(-3.0, 1.0, 4)
    >>> len(edges), bool(edges[0] < 1e-3 and edges[-1] > 10.0)
    (5, True)
    """
    if log_hi - log_lo < 1e-9:
        log_lo, log_hi = log_lo - 0.5, log_hi + 0.5
    pad = 0.01 * (log_hi - log_lo)
    return 10.0 ** np.linspace(log_lo - pad, log_hi + pad, bins + 1)


def has_ntk(ds: xr.Dataset) -> bool:
    """Did the study record the watched seeds' NTK (``record.track_ntk``)?

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).

    Returns
    -------
    bool
        True when it holds finite NTK records (``ntk_change``) of at least one watched seed.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> plots.has_ntk(ds)                                        # record.track_ntk was not set
    False
    """
    return "ntk_change" in ds and ds.sizes.get("watched_seed", 0) > 0 and bool(np.isfinite(ds.ntk_change).any())


def ntk_vs_time(ds: xr.Dataset) -> Figure:
    """The watched seeds' empirical NTK against time, per method at its finest step size: relative change
    ``|Θ(t) − Θ(0)|_F / |Θ(0)|_F``, largest eigenvalue, and alignment with the labels (``track_ntk``).

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``) that tracked the NTK (``record.track_ntk`` with ``record.watch_seeds``).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels: relative change, largest eigenvalue and label alignment against time.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> cfg["record"] = {"watch_seeds": [0, 1], "track_ntk": True}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "ntk"))
    >>> plots.has_ntk(ds), len(plots.ntk_vs_time(ds).axes)
    (True, 3)
    """
    colors, styles = _colors(ds), _styles(ds)  # styles: methods whose curves coincide stay visible
    n_watched = ds.sizes["watched_seed"]
    fig, axes = _panels(ds, 3, f"Empirical NTK Θ = JJᵀ of the watched seeds (median over {n_watched}; "
                               "each method at its finest step size)", width=5.0)
    t = ds.time.values
    for s in ds.scheme.values:
        k = finest_step(ds, s)
        w = ds.sel(scheme=s).isel(step=k)
        label = f"{s} (h = {h_text(float(ds.h.sel(scheme=s).values[k]))})"
        for ax, da in zip(axes, (w.ntk_change, w.ntk_eigenvalues.isel(ntk_rank=0), w.ntk_alignment)):
            vals = da.transpose("watched_seed", "time").values
            if np.any(np.isfinite(vals)):
                ax.plot(t, np.nanmedian(vals, axis=0), marker="o", ms=3, linestyle=styles[str(s)], linewidth=2,
                        color=colors[str(s)], label=label, gid=f"median:{s}")
    for ax, ylabel, title in zip(axes, ("|Θ(t) − Θ(0)|_F / |Θ(0)|_F", "largest eigenvalue of Θ(t)",
                                        "yᵀΘy / (|Θ|_F |y|²)"),
                                 ("relative change of the NTK", "top eigenvalue", "alignment with the labels y")):
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
    return fig


FIGURES = {
    "drift_vs_time": drift_vs_time,
    "drift_vs_step": drift_vs_step,
    "loss_vs_time": loss_vs_time,
    "drift_histogram": drift_histogram,
}
NTK_FIGURES = {"ntk_vs_time": ntk_vs_time}  # drawn by save_figures when the study tracked the NTK


# ---- sweeps: figures across the swept keys ----

def _sweep_axes(ds):
    from .results import sweep_dims

    return sweep_dims(ds)


def _over_dim(da: xr.DataArray, dim: str, reduce) -> np.ndarray:
    """``reduce`` (a NaN-ignoring statistic) over every dimension but ``dim``: one value per swept value."""
    other = [d for d in da.dims if d != dim]
    vals = da.transpose(dim, *other).values.reshape(da.sizes[dim], -1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-padding slice (a charge a point lacks)
        return np.array([reduce(v) for v in vals])


def _sweep_figure(ds, var, ylabel, title, log):
    dims = _sweep_axes(ds)
    colors = _colors(ds)
    charges = list(ds.charge.values)
    fig = Figure(figsize=(5.5 * len(charges), 3.8 * len(dims)), layout="constrained")
    axes = fig.subplots(len(dims), len(charges), squeeze=False)
    others = ", ".join(dims)
    fig.suptitle(f"{title}\n(median over seeds and over the other swept keys of {others})")
    for r, dim in enumerate(dims):
        labels = [str(v) for v in ds[dim].values]
        x = np.arange(len(labels))
        for c, charge in enumerate(charges):
            ax = axes[r, c]
            for s in ds.scheme.values:
                da = ds[var].sel(scheme=s, charge=charge)
                y = _over_dim(da, dim, np.nanmedian)
                ax.plot(x, y, "o-", color=colors[str(s)], label=str(s), gid=f"median:{s}")
                if var == "fitted_order":
                    ax.axhline(int(ds.method_order.sel(scheme=s)), color=colors[str(s)], linestyle=":", linewidth=1)
            ax.set_xticks(x, labels)
            ax.set_xlabel(dim)
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            ax.set_title(_charge_title(ds, charge), fontsize="medium")
            ax.legend(fontsize="small")
    return fig


def sweep_drift(ds: xr.Dataset) -> Figure:
    """Extrapolated h → 0 drift of each charge against each swept value, per method.

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``) with a sweep.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per charge (and swept key), a line per method.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> cfg["sweep"] = {"init.scale": [0.5, 1.0]}                # two sweep points
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.sweep_drift(ds)
    >>> fig.axes[0].get_xlabel()
    'init.scale'
    """
    return _sweep_figure(ds, "extrapolated_drift", "h → 0 drift d* = |q* − q_law(T)|",
                         "Extrapolated (h → 0) charge drift across the sweep", log=True)


def sweep_order(ds: xr.Dataset) -> Figure:
    """Fitted order of each charge's drift against each swept value (dotted: the method's order).

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``) with a sweep.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per charge (and swept key), a line per method.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> cfg["sweep"] = {"init.scale": [0.5, 1.0]}                # two sweep points
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.sweep_order(ds)
    >>> fig.axes[0].get_xlabel()
    'init.scale'
    """
    return _sweep_figure(ds, "fitted_order", "fitted order (slope of drift against h)",
                         "Fitted drift order across the sweep", log=False)


def sweep_verdicts(ds: xr.Dataset) -> Figure:
    """Verdict map over the first two swept keys (one row if one key): per method and charge, the fraction
    of DECIDED seeds (conserved or broken) whose charge is conserved by the flow, with the majority verdict
    and how many seeds were decided written in each cell. A cell with no decided seed is grey and says
    "inconclusive": it is not "0 % conserved".

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``) with a sweep.

    Returns
    -------
    matplotlib.figure.Figure
        One map per method and charge, and a colour bar.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> cfg["sweep"] = {"init.scale": [0.5, 1.0]}                # two sweep points
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.sweep_verdicts(ds)
    >>> len(fig.axes), fig.axes[0].get_ylabel()                  # one map and its colour bar
    (2, 'init.scale')
    """
    from .ladder import BROKEN, CONSERVED, INCONCLUSIVE

    dims = _sweep_axes(ds)
    d0, d1 = (dims + [None])[:2]
    schemes, charges = list(ds.scheme.values), list(ds.charge.values)
    fig = Figure(figsize=(max(4.2 * len(charges), 5.0) + 1.5, 3.2 * len(schemes)), layout="constrained")
    axes = fig.subplots(len(schemes), len(charges), squeeze=False)
    rest = [d for d in dims if d not in (d0, d1)]
    fig.suptitle("Verdict map: fraction of decided seeds conserved by the flow\n"
                 + (f"(over seeds and {', '.join(rest)}); " if rest else "(over seeds); ")
                 + "grey: no seed decided (inconclusive)", fontsize="medium")
    import matplotlib

    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="lightgrey")
    short = {CONSERVED: "conserved", BROKEN: "broken", INCONCLUSIVE: "inconcl."}
    for i, s in enumerate(schemes):
        for j, charge in enumerate(charges):
            ax = axes[i, j]
            v = ds.verdict.sel(scheme=s, charge=charge)
            v = v.transpose(d0, *([d1] if d1 else []), ...)
            n0, n1 = v.sizes[d0], (v.sizes[d1] if d1 else 1)
            vals = v.values.reshape(n0, n1, -1)
            frac = np.full((n0, n1), np.nan)
            for a in range(n0):
                for b in range(n1):
                    judged = [x for x in vals[a, b] if x in short]
                    decided = [x for x in judged if x != INCONCLUSIVE]
                    if decided:
                        frac[a, b] = np.mean([x == CONSERVED for x in decided])
                    if judged:
                        top = max(short, key=judged.count)
                        n_dec = len(decided)
                        text = short[top] + (f"\n{n_dec} of {len(judged)} decided" if 0 < n_dec < len(judged) else "")
                        ax.text(b, a, text, ha="center", va="center", fontsize="small", gid=f"cell:{a}:{b}")
            im = ax.imshow(np.ma.masked_invalid(frac), vmin=0, vmax=1, cmap=cmap, aspect="auto",
                           gid=f"map:{s}:{charge}")
            ax.set_yticks(range(n0), [str(x) for x in ds[d0].values])
            ax.set_ylabel(d0)
            if d1:
                ax.set_xticks(range(n1), [str(x) for x in ds[d1].values])
                ax.set_xlabel(d1)
            else:
                ax.set_xticks([])
            ax.set_title(f"{s}, {charge}", fontsize="medium")
    fig.colorbar(im, ax=axes, shrink=0.6, label="fraction of decided seeds conserved by the flow")
    return fig


def sweep_drift_vs_step(ds: xr.Dataset) -> Figure:
    """Median final drift against step size (log-log), one line per sweep point: rows are methods,
    columns charges. Step size is the x axis, the swept settings the legend.

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``) with a sweep.

    Returns
    -------
    matplotlib.figure.Figure
        Rows are methods, columns charges; one line per finished sweep point.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> cfg["sweep"] = {"init.scale": [0.5, 1.0]}                # two sweep points
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> fig = plots.sweep_drift_vs_step(ds)
    >>> len(fig.axes[0].get_lines())                             # one line per sweep point
    2
    """
    from .results import sweep_point
    from .tables import describe_point

    layout = json.loads(ds.attrs["sweep"])
    finished = {q for q, _, _ in json.loads(ds.attrs["finished_blocks"])}
    schemes, charges = list(ds.scheme.values), list(ds.charge.values)
    fig = Figure(figsize=(5.5 * len(charges) + 3.0, 4.0 * len(schemes)), layout="constrained")
    axes = fig.subplots(len(schemes), len(charges), squeeze=False)
    fig.suptitle(f"Final charge drift at t = T against step size, one line per sweep point (median over seeds)")
    for p in range(len(layout["index"])):
        if p not in finished:
            continue
        sub, label = sweep_point(ds, p), describe_point(ds, p)
        for i, s in enumerate(schemes):
            if s not in sub.scheme.values:
                continue
            h = sub.h.sel(scheme=s).values
            done = np.flatnonzero(np.isfinite(h))
            ok = ok_seeds(sub, s)
            for j, charge in enumerate(charges):
                if charge not in sub.charge.values:
                    continue
                final = sub.drift.sel(scheme=s, charge=charge).isel(time=-1).transpose("step", "seed").values
                med = np.array([np.nanmedian(final[k, ok]) if np.any(np.isfinite(final[k, ok])) else np.nan
                                for k in done])
                if np.any(np.isfinite(med)):
                    axes[i, j].plot(h[done], med, marker="o", color=f"C{p % 10}", linestyle=("-", "--", ":")[p // 10 % 3],
                                    label=label, gid=f"point:{p}:{s}:{charge}")
    for i, s in enumerate(schemes):
        for j, charge in enumerate(charges):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("step size h (learning rate η for gradient descent)")
            ax.set_ylabel(f"final drift of {charge}")
            ax.set_title(f"{s}, {_charge_title(ds, charge)}", fontsize="medium")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[i, -1].get_legend_handles_labels()
        if handles:
            axes[i, -1].legend(handles, labels, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


SWEEP_FIGURES = {
    "sweep_drift": sweep_drift,
    "sweep_drift_vs_step": sweep_drift_vs_step,
    "sweep_order": sweep_order,
    "sweep_verdicts": sweep_verdicts,
}


def save_figure(ds: xr.Dataset, name: str, out_dir, formats=("png", "pdf")) -> list[Path]:
    """Draw the figure ``name`` of ``ds`` and write it into ``out_dir`` in each of ``formats``.

    Parameters
    ----------
    ds : xarray.Dataset
        A study (``run_study`` or ``load``).
    name : str
        A key of ``FIGURES``, ``SWEEP_FIGURES`` or ``NTK_FIGURES``.
    out_dir : str or pathlib.Path
        The folder, created if needed.
    formats : sequence of str, optional
        File formats matplotlib writes, default ("png", "pdf").

    Returns
    -------
    list of pathlib.Path
        The files written, ``out_dir/<name>.<format>``.

    Raises
    ------
    KeyError
        An unknown figure ``name``.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> [p.name for p in plots.save_figure(ds, "loss_vs_time", tempfile.mkdtemp(), formats=("png",))]
    ['loss_vs_time.png']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = {**FIGURES, **SWEEP_FIGURES, **NTK_FIGURES}[name](ds)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def save_figures(ds: xr.Dataset, out_dir, names=None) -> list[Path]:
    """Write every figure (or ``names``) as PNG and PDF into ``out_dir``; returns the paths.

    A sweep gets the figures across its swept keys (``SWEEP_FIGURES``); a single study the others, and
    ``NTK_FIGURES`` when it tracked the NTK.

    Parameters
    ----------
    ds : xarray.Dataset
        A study or sweep (``run_study`` or ``load``).
    out_dir : str or pathlib.Path
        The folder, created if needed.
    names : sequence of str, optional
        Figures to draw (keys of ``FIGURES``, ``SWEEP_FIGURES``, ``NTK_FIGURES``); default all that apply.

    Returns
    -------
    list of pathlib.Path
        The files written, a PNG and a PDF per figure.

    Raises
    ------
    KeyError
        An unknown figure name in ``names``.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> sorted(p.name for p in plots.save_figures(ds, tempfile.mkdtemp()) if p.suffix == ".png")
    ['drift_histogram.png', 'drift_vs_step.png', 'drift_vs_time.png', 'loss_vs_time.png']
    """
    from .results import with_analysis

    ds = with_analysis(ds)  # the ladder analysis once, not once per figure
    default = SWEEP_FIGURES if _sweep_axes(ds) else [*FIGURES, *(NTK_FIGURES if has_ntk(ds) else ())]
    return [p for name in (names or default) for p in save_figure(ds, name, out_dir)]


def figure_script_main(name: str, argv=None) -> int:
    """Entry point of the thin scripts in figures/: regenerate one figure from a saved store.

    Parameters
    ----------
    name : str
        The figure to draw (a key of ``FIGURES``, ``SWEEP_FIGURES`` or ``NTK_FIGURES``).
    argv : list of str, optional
        The command line's arguments (default ``sys.argv[1:]``): ``STORE [--out DIR] [--partial]``.

    Returns
    -------
    int
        0, the exit status, once the PNG and PDF paths are printed.

    Raises
    ------
    SystemExit
        Arguments argparse does not accept.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim import plots
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> store = os.path.join(tempfile.mkdtemp(), "tiny")
    >>> _ = ns.run_study(cfg, store)
    >>> plots.figure_script_main("loss_vs_time", [store, "--out", tempfile.mkdtemp()])  # doctest: +ELLIPSIS
    /.../loss_vs_time.png
    /.../loss_vs_time.pdf
    0
    """
    import argparse

    from .results import load

    parser = argparse.ArgumentParser(description=f"Draw the {name!r} figure of a saved noether_sim study.")
    parser.add_argument("store", help="path of the study store (made by `noether-sim run`)")
    parser.add_argument("--out", default=None, help="folder for the PNG and PDF (default: STORE/figures)")
    parser.add_argument("--partial", action="store_true", help="draw from the finished blocks of an interrupted store")
    args = parser.parse_args(argv)
    ds = load(args.store, allow_partial=args.partial)
    for path in save_figure(ds, name, args.out or Path(args.store) / "figures"):
        print(path)
    return 0
