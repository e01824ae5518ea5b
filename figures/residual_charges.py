"""
Stacked residual blocks: rescale and stream charges under gradient flow, gradient descent and Adam
===================================================================================================

Three residual ReLU blocks s ← s + W2_k ReLU(W1_k s + b1_k) + b2_k on a width-4 stream between an input and
an output projection (``ns.ResidualMLP(5, 4, 6, 3, 2, bias=True)``, 64 teacher points; theory.md §8,
docs/guide/architectures.md). Left: block 1's per-neuron rescale charges r1; right: the stream's GL(4)
balance C = W_outᵀW_out + Σ W1_kᵀW1_k − W_inW_inᵀ − b_inb_inᵀ − Σ (W2_kW2_kᵀ + b2_kb2_kᵀ), a charge for any
activation. Median over 8 seeds of ‖Q(t) − Q(0)‖ (Frobenius). Gradient flow (RK4) moves them only by its
truncation error; gradient descent by its exact one-step law (η² per step), whose residual (dashed) is
round-off; Adam's coordinate-wise preconditioner breaks both symmetries.

Run::

    python figures/residual_charges.py [--out DIR]     (default DIR: figures/architectures)
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import noether_sim as ns

H, T_END, SEEDS = 0.01, 2.0, 8
COLOURS = {"gradient flow (RK4)": "C0", "gradient descent": "C1", "Adam": "C3"}
TITLES = {"r1": "r1: ‖w1_in‖² + b1² − ‖w2_out‖² (block 1's neurons)",
          "C": "C: the stream's GL(4) balance (any activation)"}


def draw_drifts(runs, charges, titles, h, suptitle):
    """One panel per charge: each run's median drift, gradient descent's law residual, the round-off floor."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(charges), sharey=True)
    for ax, charge in zip(axes, charges):
        for name, ds in runs.items():
            t = ds.time.values[1:]
            drift = ds.drift.sel(charge=charge).median("seed").values[1:]
            ax.loglog(t, np.maximum(drift, 1e-17), color=COLOURS[name], label=f"{name}: |Q(t) − Q(0)|",
                      gid=f"{name}:drift")
            if name == "gradient descent":
                res = ds.residual.sel(charge=charge).median("seed").values[1:]
                ax.loglog(t, np.maximum(res, 1e-17), color=COLOURS[name], ls="--",
                          label="gradient descent: residual of its exact law", gid=f"{name}:residual")
        gd = runs["gradient descent"]
        floor = (np.sqrt(gd.time.values[1:] / h) * np.finfo(float).eps
                 * gd.scale.sel(charge=charge).median("seed").values[1:])
        ax.loglog(gd.time.values[1:], floor, color="0.5", lw=0.8, ls=":", label="round-off √steps·ε·scale")
        ax.set_title(titles[charge], fontsize=10)
        ax.set_xlabel("time t (learning rate × steps)")
    axes[0].set_ylabel("median over seeds of |Q(t) − Q(0)|_F")
    axes[0].legend(fontsize=7, loc="center left")
    fig.suptitle(suptitle)
    return fig


def draw():
    model = ns.ResidualMLP(5, width=4, hidden=6, blocks=3, d_out=2, bias=True, activation="relu")
    data = ns.teacher_regression(ns.MLP((5, 6, 2), activation="relu", bias=True), 64, noise=0.05, seed=0)
    run = dict(h=H, t_end=T_END, save_every=T_END / 40, seeds=SEEDS, init=ns.init.Gaussian(scale=0.7, bias_scale=0.3))
    runs = {"gradient flow (RK4)": ns.simulate(model, data, dynamics="gf", method="rk4", **run),
            "gradient descent": ns.simulate(model, data, dynamics="gd", **run),
            "Adam": ns.simulate(model, data, dynamics="adam", **run)}
    return draw_drifts(runs, ["r1", "C"], TITLES, H, f"Three residual ReLU blocks (stream 4, hidden 6) with "
                                                     f"projections 5 → 4 → 2; h = η = {H}")


fig = draw()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "architectures"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "residual_charges.png"
    fig.savefig(path, dpi=130)
    print(path)
