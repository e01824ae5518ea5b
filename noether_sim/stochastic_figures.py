"""Figures of stochastic training (theory.md §6), each drawn from runs it makes itself (a few seconds):

    langevin_balance   tr D₁(t) − tr D₁(0) under Langevin dynamics: seed mean with its ±2 SE band and the
                       5–95 % seed band, the expectation law 2T(n₂ − n₀)n₁t drawn over it, for a
                       width-matched and a width-mismatched network
    sgd_drift_split    minibatch gradient descent: the seed-mean drift |D₁(T) − D₁(0)| against the learning
                       rate for several batch sizes, beside its expected parts, the discretisation
                       η²Σq(Ḡ) and the minibatch noise η²c_BΣq_Σ (``split_drift``)

``python figures/stochastic.py [--out DIR]`` writes both as PNG.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .data import synthetic_regression
from .models import DeepLinear
from .simulate import simulate


def _trace_change(ds, n):
    diag = np.arange(n) * n + np.arange(n)
    q = ds.charge_watch.values[:, :, diag].sum(-1)
    return q - ds.charge_initial.values[:, diag].sum(-1)[:, None]


def langevin_balance(temperature: float = 0.05, h: float = 1e-3, t_end: float = 2.0, seeds: int = 400) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, widths in zip(axes, ((4, 6, 4), (4, 6, 1))):
        model = DeepLinear(widths)
        data = synthetic_regression(widths[0], widths[-1], 32, noise=0.1, seed=1)
        ds = simulate(model, data, dynamics="langevin", temperature=temperature, h=h, t_end=t_end,
                      save_every=t_end / 40, seeds=seeds)
        n = widths[1]
        change = _trace_change(ds, n)
        t = ds.time.values
        mean = change.mean(0)
        se = change.std(0, ddof=1) / np.sqrt(seeds)
        lo, hi = np.quantile(change, [0.05, 0.95], axis=0)
        ax.fill_between(t, lo, hi, color="C0", alpha=0.12, lw=0, label="5–95 % of seeds")
        ax.fill_between(t, mean - 2 * se, mean + 2 * se, color="C0", alpha=0.45, lw=0, label="seed mean ± 2 SE")
        ax.plot(t, mean, color="C0", lw=1.5)
        c = widths[2] - widths[0]
        ax.plot(t, 2 * temperature * c * n * t, "k--", lw=1.2,
                label=f"expectation law 2T(n₂ − n₀)n₁t = {2 * temperature * c * n:g}·t")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(f"widths {'-'.join(map(str, widths))}: n₂ − n₀ = {c}"
                     + (" (matched)" if c == 0 else " (mismatched)"))
        ax.set_xlabel("time t")
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("tr D₁(t) − tr D₁(0)")
    fig.suptitle(f"Balance under Langevin dynamics (T = {temperature:g}, Euler–Maruyama h = {h:g}, {seeds} seeds)")
    return fig


def sgd_drift_split(batch_sizes=(2, 8, 32), rates=(0.04, 0.02, 0.01, 0.005), t_end: float = 0.64,
                    seeds: int = 32) -> Figure:
    model = DeepLinear((10, 16, 16, 5))
    data = synthetic_regression(10, 5, 64, noise=0.1, seed=0)
    fig = Figure(figsize=(6.5, 4.8), layout="constrained")
    ax = fig.subplots()
    rates = np.asarray(rates, dtype=float)
    for i, B in enumerate(batch_sizes):
        drift, disc, noise = [], [], []
        for eta in rates:
            ds = simulate(model, data, dynamics="gd", h=float(eta), t_end=t_end, save_every=t_end, seeds=seeds,
                          batch_size=B, split_drift=True)
            fin = ds.isel(time=-1).sel(charge="D1")
            drift.append(float(fin.drift.mean()))
            disc.append(float(fin.drift_discretisation.mean()))
            noise.append(float(fin.drift_noise.mean()))
        color = f"C{i}"
        ax.loglog(rates, drift, "o-", color=color, label=f"B = {B}: drift |D₁(T) − D₁(0)|")
        ax.loglog(rates, disc, "s--", color=color, alpha=0.6, mfc="none", label=f"B = {B}: discretisation part")
        ax.loglog(rates, noise, "^:", color=color, alpha=0.8, label=f"B = {B}: minibatch-noise part")
    ax.loglog(rates, rates * (drift[0] / rates[0]), color="0.5", lw=0.8, label="slope 1 (O(η) at fixed B)")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(f"seed mean at T = {t_end:g} ({seeds} seeds)")
    ax.set_title("SGD drift of the balance charge D₁ (10-16-16-5, N = 64):\nboth parts vanish as η → 0 at fixed B")
    ax.legend(fontsize=7, ncol=1)
    return fig


FIGURES = {"langevin_balance": langevin_balance, "sgd_drift_split": sgd_drift_split}
