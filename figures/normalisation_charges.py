"""
Layer normalisation: the scale charge N under gradient flow and gradient descent
================================================================================

A ReLU network 4-8-2 whose first hidden layer is layer-normalised (no ε, no gain:
``ns.MLP((4, 8, 2), normalisation="layer", bias=True)``; 64 teacher points; theory.md §2 item 4,
docs/guide/architectures.md). (W_1, b_1) enters only through its direction, so N = ‖W_1‖² + ‖b_1‖² is
conserved by gradient flow (⟨θ_1, g_1⟩ = 0) and grows by exactly η²(‖G_1‖² + ‖g_{b_1}‖²) per gradient-descent
step. Left: N(t) − N(0) against time, median over 8 seeds: gradient descent's growth, the sum of its η²‖g‖²
terms (markers), the residual of that law (dashed, round-off), and gradient flow by RK4 and by
Gauss–Legendre (gl2, conserving quadratic charges exactly). Right: gradient descent's growth at the end
time against η: slope 1 (η² per step × T/η steps), so it vanishes with η — conserved by the flow.

Run::

    python figures/normalisation_charges.py [--out DIR]     (default DIR: figures/architectures)
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

import noether_sim as ns

H, T_END, SEEDS = 0.02, 2.0, 8


def draw():
    model = ns.MLP((4, 8, 2), activation="relu", bias=True, normalisation="layer")
    data = ns.teacher_regression(ns.MLP((4, 8, 2), activation="relu", bias=True), 64, noise=0.05, seed=0)
    run = dict(t_end=T_END, save_every=T_END / 20, seeds=SEEDS, init=ns.init.Gaussian(bias_scale=0.3))
    gd = ns.simulate(model, data, dynamics="gd", h=H, **run)
    flows = {"gradient flow (RK4)": ns.simulate(model, data, dynamics="gf", method="rk4", h=H, **run),
             "gradient flow (Gauss–Legendre, gl2)": ns.simulate(model, data, dynamics="gf", method="gl2", h=H, **run)}
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    t = gd.time.values[1:]
    grow = gd.drift.sel(charge="N").median("seed").values[1:]
    pred = gd.predicted.sel(charge="N").median("seed").values[1:]
    ax.loglog(t, grow, color="C1", label="gradient descent: N(t) − N(0)", gid="gd:drift")
    ax.loglog(t[::2], np.abs(pred[::2]), "o", color="C1", ms=4, mfc="none",
              label="gradient descent: Σ η²(‖G_1‖² + ‖g_b1‖²)", gid="gd:predicted")
    ax.loglog(t, np.maximum(gd.residual.sel(charge="N").median("seed").values[1:], 1e-17), color="C1", ls="--",
              label="gradient descent: residual of its exact law", gid="gd:residual")
    for (name, ds), c in zip(flows.items(), ("C0", "C2")):
        ax.loglog(t, np.maximum(ds.drift.sel(charge="N").median("seed").values[1:], 1e-17), color=c,
                  label=f"{name}: |N(t) − N(0)|", gid=f"{name}:drift")
    floor = np.sqrt(t / H) * np.finfo(float).eps * gd.scale.sel(charge="N").median("seed").values[1:]
    ax.loglog(t, floor, color="0.5", lw=0.8, ls=":", label="round-off √steps·ε·scale")
    ax.set_title("N = ‖W_1‖² + ‖b_1‖² of the layer-normalised layer", fontsize=10)
    ax.set_xlabel("time t (learning rate × steps)")
    ax.set_ylabel("median over seeds")
    ax.legend(fontsize=7, loc="center right")
    etas = [H * 2.0 ** -k for k in range(4)]
    ends = [float(ns.simulate(model, data, dynamics="gd", h=eta, **{**run, "save_every": T_END})
                  .drift.sel(charge="N").isel(time=-1).median("seed")) for eta in etas]
    ax2.loglog(etas, ends, "o-", color="C1", label=f"gradient descent: N(T) − N(0), T = {T_END:g}", gid="gd:ladder")
    ax2.loglog(etas, ends[0] * np.array(etas) / etas[0], color="0.5", ls=":", label="slope 1")
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xticks(etas, [f"{eta:g}" for eta in etas])
    ax2.set_xlabel("learning rate η")
    ax2.set_title("gradient descent's growth vanishes as η → 0", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle("Layer normalisation before a ReLU: the scale charge N")
    return fig


fig = draw()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "architectures"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "normalisation_charges.png"
    fig.savefig(path, dpi=130)
    print(path)
