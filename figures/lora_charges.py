"""
Low-rank adapter charge under gradient flow, gradient descent and Adam
======================================================================

A rank-2 adapter W₀ + BA on the first layer of a frozen tanh network 6-8-3 (``ns.LoRA``; 64 teacher
points; theory.md §8, docs/guide/architectures.md). GL(2) between B and A gives the charge
D1 = BᵀB − AAᵀ (2 × 2). Left: from a Gaussian start, median over 8 seeds of ‖D1(t) − D1(0)‖_F: gradient
flow (RK4) moves it only by its truncation error, gradient descent by its exact one-step law (η² per
step; the dashed residual is round-off), Adam's preconditioner breaks the symmetry. Right: the usual start
B = 0 puts D1(0) = −A₀A₀ᵀ, and gradient flow keeps it there while the loss falls (dotted, right axis):
‖D1(t) + A₀A₀ᵀ‖_F relative to ‖A₀A₀ᵀ‖_F.

Run::

    python figures/lora_charges.py [--out DIR]     (default DIR: figures/architectures)
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import noether_sim as ns

H, T_END, SEEDS = 0.01, 2.0, 8
COLOURS = {"gradient flow (RK4)": "C0", "gradient descent": "C1", "Adam": "C3"}


def draw():
    base = ns.MLP((6, 8, 3), activation="tanh", bias=True)
    model = ns.LoRA(base, rank=2, layers=(1,))
    data = ns.teacher_regression(base, 64, noise=0.05, seed=0)
    run = dict(h=H, t_end=T_END, save_every=T_END / 40, seeds=SEEDS)
    dyn = {"gradient flow (RK4)": dict(dynamics="gf", method="rk4"), "gradient descent": dict(dynamics="gd"),
           "Adam": dict(dynamics="adam")}
    gauss = {k: ns.simulate(model, data, **kw, **run) for k, kw in dyn.items()}
    usual = {k: ns.simulate(model, data, init=model.usual_start(), **kw, **run) for k, kw in dyn.items()}
    # the usual start's D1(0) is −A₀A₀ᵀ: read A₀ off the initial rows and check
    theta0 = model.usual_start().rows(model, 0, list(range(SEEDS)))
    A0 = np.stack([model.unflatten(th)[0][0] for th in theta0])
    ref = np.linalg.norm(A0 @ np.swapaxes(A0, 1, 2), axis=(1, 2))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    for name, ds in gauss.items():
        t = ds.time.values[1:]
        ax.loglog(t, np.maximum(ds.drift.sel(charge="D1").median("seed").values[1:], 1e-17), color=COLOURS[name],
                  label=f"{name}: ‖D1(t) − D1(0)‖", gid=f"gauss:{name}:drift")
        if name == "gradient descent":
            ax.loglog(t, np.maximum(ds.residual.sel(charge="D1").median("seed").values[1:], 1e-17), ls="--",
                      color=COLOURS[name], label="gradient descent: residual of its exact law",
                      gid="gauss:gradient descent:residual")
    ax.set_title("Gaussian start: D1 = B1ᵀB1 − A1A1ᵀ", fontsize=10)
    ax.set_xlabel("time t (learning rate × steps)")
    ax.set_ylabel("median over seeds")
    ax.legend(fontsize=7, loc="center left")
    twin = ax2.twinx()
    for name, ds in usual.items():
        t = ds.time.values[1:]
        rel = (ds.drift.sel(charge="D1").values[:, 1:] / ref[:, None])
        ax2.loglog(t, np.maximum(np.median(rel, axis=0), 1e-17), color=COLOURS[name],
                   label=f"{name}: ‖D1(t) + A₀A₀ᵀ‖ / ‖A₀A₀ᵀ‖", gid=f"usual:{name}:drift")
        twin.semilogx(t, ds.loss.median("seed").values[1:] / ds.loss.median("seed").values[0], color=COLOURS[name],
                      ls=":", lw=1, gid=f"usual:{name}:loss")
    twin.set_ylabel("loss(t) / loss(0), dotted")
    twin.set_ylim(0, 1.05)
    ax2.set_title("usual start B = 0: D1 stays at −A₀A₀ᵀ under gradient flow", fontsize=10)
    ax2.set_xlabel("time t (learning rate × steps)")
    ax2.legend(fontsize=7, loc="center left")
    fig.suptitle(f"Rank-2 adapter on layer 1 of a frozen tanh network 6-8-3; h = η = {H}")
    return fig


fig = draw()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "architectures"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "lora_charges.png"
    fig.savefig(path, dpi=130)
    print(path)
