"""
Attention charges under gradient flow, gradient descent and Adam
================================================================

The QK and VO charges of one head of a two-head causal self-attention layer (d_model 8, 6 tokens,
64 teacher sequences; theory.md §8): their change ‖Q(t) − Q(0)‖_F against time, median over 8 seeds.
Gradient flow (RK4) moves them only by its truncation error; gradient descent moves them by its exact
one-step law (η² per step), and what that law does not explain (its residual, dashed) is round-off;
Adam's coordinate-wise preconditioner breaks the GL(d_k) and GL(d_v) symmetries, so its charges move
by O(1) at the same learning rate.

Run::

    python figures/attention_charges.py [--out DIR]     (default DIR: figures/attention)
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import noether_sim as ns

H, T_END, SEEDS = 0.01, 2.0, 8


def draw():
    model = ns.SelfAttention(8, heads=2, tokens=6, causal=True)
    data = ns.data.sequences(model, 64, noise=0.05, seed=0)
    run = dict(h=H, t_end=T_END, save_every=T_END / 40, seeds=SEEDS)
    runs = {"gradient flow (RK4)": ns.simulate(model, data, dynamics="gf", method="rk4", **run),
            "gradient descent": ns.simulate(model, data, dynamics="gd", **run),
            "Adam": ns.simulate(model, data, dynamics="adam", **run)}
    colours = {"gradient flow (RK4)": "C0", "gradient descent": "C1", "Adam": "C3"}
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, charge in zip(axes, ["QK0", "VO0"]):
        for name, ds in runs.items():
            t = ds.time.values[1:]
            drift = ds.drift.sel(charge=charge).median("seed").values[1:]
            ax.loglog(t, drift, color=colours[name], label=f"{name}: |Q(t) − Q(0)|", gid=f"{name}:drift")
            if name == "gradient descent":
                res = ds.residual.sel(charge=charge).median("seed").values[1:]
                ax.loglog(t, np.maximum(res, 1e-17), color=colours[name], ls="--",
                          label="gradient descent: residual of its exact law", gid=f"{name}:residual")
        floor = (np.sqrt(ds.time.values[1:] / H) * np.finfo(float).eps
                 * runs["gradient descent"].scale.sel(charge=charge).median("seed").values[1:])
        ax.loglog(ds.time.values[1:], floor, color="0.5", lw=0.8, ls=":", label="round-off √steps·ε·scale")
        ax.set_title({"QK0": "QK₀ = W_QW_Qᵀ − W_KW_Kᵀ (head 0)", "VO0": "VO₀ = W_VW_Vᵀ − W_OᵀW_O (head 0)"}[charge])
        ax.set_xlabel("time t (learning rate × steps)")
    axes[0].set_ylabel("median over seeds of |Q(t) − Q(0)|_F")
    axes[0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.14))
    fig.suptitle(f"Self-attention charges: d_model 8, 2 heads, 6 tokens, causal; h = η = {H}")
    return fig


fig = draw()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "attention"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "attention_charges.png"
    fig.savefig(path, dpi=130)
    print(path)
