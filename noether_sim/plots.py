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

from .results import finest_step, h_text, ok_seeds

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
    """(median, 5 %, 95 %) over axis 0 (seeds), ignoring NaN."""
    return (np.nanmedian(values, axis=0), np.nanquantile(values, BAND[0], axis=0),
            np.nanquantile(values, BAND[1], axis=0))


def finest_series(ds: xr.Dataset, scheme: str, var: str, charge=None) -> tuple[np.ndarray, float]:
    """(seed × time values of ``var`` at the scheme's finest step size over its included seeds, that h)."""
    k = finest_step(ds, scheme)
    da = ds[var].sel(scheme=scheme).isel(step=k)
    if charge is not None:
        da = da.sel(charge=charge)
    return da.transpose("seed", ...).values[ok_seeds(ds, scheme)], float(ds.h.sel(scheme=scheme).values[k])


def _n_seeds_text(ds):
    return f"median and {BAND[0]:.0%}–{BAND[1]:.0%} band over {ds.sizes['seed']} seeds"


def drift_vs_time(ds: xr.Dataset) -> Figure:
    """Charge drift |q(t) − q_law(t)| against time, per method at its finest step size."""
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"], f"Charge drift against time ({_n_seeds_text(ds)})")
    t = ds.time.values[1:]  # t = 0: drift is exactly zero, off a log axis
    for ax, charge in zip(axes, ds.charge.values):
        for s in ds.scheme.values:
            vals, h = finest_series(ds, s, "drift", charge)
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
    """Least-squares slope of log y against log h over the points with y > 0."""
    use = np.isfinite(h) & np.isfinite(y) & (y > 0)
    if use.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(h[use]), np.log(y[use]), 1)[0])


def drift_vs_step(ds: xr.Dataset) -> Figure:
    """Median final drift against step size (log-log), with the fitted slope (the observed order)."""
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"],
                        f"Final charge drift against step size at t = {float(ds.time.values[-1]):g} "
                        f"(median over {ds.sizes['seed']} seeds)")
    for ax, charge in zip(axes, ds.charge.values):
        for s in ds.scheme.values:
            h = ds.h.sel(scheme=s).values
            done = np.isfinite(h)
            final = ds.drift.sel(scheme=s, charge=charge).isel(time=-1).transpose("step", "seed").values
            med = np.array([np.nanmedian(final[k, ok_seeds(ds, s)]) for k in np.flatnonzero(done)])
            slope = fitted_slope(h[done], med)
            order = int(ds.method_order.sel(scheme=s))
            ax.plot(h[done], med, "o-", color=colors[str(s)], gid=f"median:{s}",
                    label=f"{s} (order {order}): fitted slope {slope:.2f}")
            ax.annotate(f"slope {slope:.2f}", (h[done][-1], med[-1]), textcoords="offset points",
                        xytext=(4, -10), fontsize="small", color=colors[str(s)], gid=f"slope:{s}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step size h (dimensionless time; learning rate η for gradient descent)")
        ax.set_ylabel(f"final drift |{charge}(T) − {charge}_law(T)|_F (dimensionless)")
        ax.set_title(_charge_title(ds, charge), fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def loss_vs_time(ds: xr.Dataset) -> Figure:
    """Training loss against time, per method at its finest step size."""
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
    """Histogram over seeds of the final drift at each method's finest step size (log-spaced bins)."""
    colors = _colors(ds)
    fig, axes = _panels(ds, ds.sizes["charge"],
                        f"Final charge drift over seeds at t = {float(ds.time.values[-1]):g} (finest step sizes)")
    for ax, charge in zip(axes, ds.charge.values):
        finals = {str(s): finest_series(ds, s, "drift", charge) for s in ds.scheme.values}
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
    if log_hi - log_lo < 1e-9:
        log_lo, log_hi = log_lo - 0.5, log_hi + 0.5
    pad = 0.01 * (log_hi - log_lo)
    return 10.0 ** np.linspace(log_lo - pad, log_hi + pad, bins + 1)


FIGURES = {
    "drift_vs_time": drift_vs_time,
    "drift_vs_step": drift_vs_step,
    "loss_vs_time": loss_vs_time,
    "drift_histogram": drift_histogram,
}


def save_figure(ds: xr.Dataset, name: str, out_dir, formats=("png", "pdf")) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = FIGURES[name](ds)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def save_figures(ds: xr.Dataset, out_dir, names=None) -> list[Path]:
    """Write every figure (or ``names``) as PNG and PDF into ``out_dir``; returns the paths."""
    return [p for name in (names or FIGURES) for p in save_figure(ds, name, out_dir)]


def figure_script_main(name: str, argv=None) -> int:
    """Entry point of the thin scripts in figures/: regenerate one figure from a saved store."""
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
