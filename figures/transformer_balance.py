"""
Claim (b) on a transformer block
================================

Głuch & Urbanke's claim (b), "balance", on a transformer block (``ns.SelfAttention(..., mlp_hidden=4)``:
two-head causal attention with its residual, then a residual ReLU MLP; loss on the last token; 6 teacher
sequences, 16 seeds, b_1 drawn N(0, 3²)). Its charges are QK<h>, VO<h> per head and the MLP's per-neuron
rescale charges r. Left: RK4 at t = 0.25 keeps every charge, its drift from the law falling with the step
like h⁴ (seed median), with weight decay λ = 0.05 measured from e^{−2λt}q(0). Middle: weight decay breaks
the charges, and the break is the law: ‖q(t) − q(0)‖ against ‖q(0)‖(1 − e^{−2λt}) (seed 0, every
component). Right: gradient descent (η = 1/32, λ = 0.05) moves them, and its exact one-step law
(1 − ηλ)²q + η²q(g) explains the move to round-off (the residual, dotted).

Run::

    python figures/transformer_balance.py [--out DIR]     (default DIR: figures/transformer)
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import noether_sim as ns
from noether_sim import init
from noether_sim.ladder import run_ladder

LAM, SEEDS, T_END = 0.05, 16, 0.25
STEPS = [0.025, 0.0125, 0.00625, 0.003125]
CHARGES = {"QK0": "C0", "VO0": "C1", "QK1": "C2", "VO1": "C4", "r": "C3"}


def problem():
    model = ns.SelfAttention(6, heads=2, tokens=4, causal=True, readout="last", mlp_hidden=4)
    return model, ns.data.sequences(model, 6, noise=0.05, seed=3)


def draw():
    model, data = problem()
    start = init.Gaussian(scale=1.0, bias_scale=3.0)
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_rk, ax_wd, ax_gd = fig.subplots(1, 3)

    anchor = 0.0
    for lam, style in ((0.0, "o-"), (LAM, "s--")):
        ladder = run_ladder(model, data, step_sizes=STEPS, method="rk4", t_end=T_END, save_every=T_END,
                            seeds=SEEDS, init=start, weight_decay=lam)
        for charge, colour in CHARGES.items():
            med = ladder.drift.sel(charge=charge).isel(time=-1).median("seed").values
            ax_rk.loglog(STEPS, med, style, color=colour, ms=4, label=f"{charge}, λ = {lam:g}")
            anchor = max(anchor, med[0])
    h = np.array(STEPS)
    ax_rk.loglog(h, 2 * anchor * (h / h[0]) ** 4, color="0.4", lw=1.0, ls=":", label="∝ h⁴")
    ax_rk.set_xlabel("RK4 step h")
    ax_rk.set_ylabel(f"|q(T) − q_law(T)|_F at T = {T_END:g}, seed median")
    ax_rk.set_title("RK4: every charge kept, drift → 0 like h⁴\n(law q(0), or e^(−2λt)q(0) with weight decay)",
                    fontsize="medium")
    ax_rk.legend(fontsize=6, ncol=2)

    t_end = 2.0
    wd = ns.simulate(model, data, method="rk4", h=0.00625, t_end=t_end, save_every=t_end / 16, seeds=1,
                     init=start, weight_decay=LAM, watch_seeds=[0])
    q = wd.charge_watch.isel(watched_seed=0).values  # (time, component)
    t = wd.time.values
    broke = np.abs(q - q[0])
    law = np.abs(q[0])[None, :] * (1 - np.exp(-2 * LAM * t))[:, None]
    owner = wd.component_charge.values
    for charge, colour in CHARGES.items():
        cols = owner == charge
        ax_wd.plot(law[1:, cols].ravel(), broke[1:, cols].ravel(), ".", color=colour, ms=3, label=charge)
    top = law.max()
    ax_wd.plot([0, top], [0, top], color="0.4", lw=0.8, label="equality")
    ax_wd.set_xlabel("|q(0)|(1 − e^(−2λt)), the law's break")
    ax_wd.set_ylabel("|q(t) − q(0)|, measured (RK4, h = 1/160)")
    ax_wd.set_title(f"weight decay λ = {LAM:g} breaks every component as e^(−2λt),\n"
                    f"largest departure from the law {np.abs(q - q[0] * np.exp(-2 * LAM * t)[:, None]).max():.1e}",
                    fontsize="medium")
    ax_wd.legend(fontsize=7)

    gd = ns.simulate(model, data, dynamics="gd", h=1 / 32, t_end=t_end, save_every=t_end / 32, seeds=SEEDS,
                     init=start, weight_decay=LAM)
    t = gd.time.values
    for charge, colour in CHARGES.items():
        for var, style in (("drift", "o"), ("predicted", "-"), ("residual", ":")):
            y = gd[var].sel(charge=charge).median("seed").values
            ax_gd.semilogy(t[1:], np.maximum(y[1:], 1e-18), style, color=colour, ms=3)
        ax_gd.plot([], [], "s", color=colour, label=charge)
    for var, style in (("drift", "o"), ("predicted", "-"), ("residual", ":")):
        ax_gd.plot([], [], style, color="k", label={"drift": "measured drift", "predicted": "exact one-step law",
                                                   "residual": "residual (round-off)"}[var])
    ax_gd.set_xlabel("time t = kη")
    ax_gd.set_ylabel("|q(t) − e^(−2λt)q(0)|_F, seed median")
    ax_gd.set_title(f"gradient descent, η = 1/32, λ = {LAM:g}: drift = law + round-off\n"
                    f"largest residual {float(gd.residual.max()):.1e}", fontsize="medium")
    ax_gd.legend(fontsize=6, ncol=2)
    fig.suptitle("Claim (b) on a transformer block: attention (2 heads, causal) + residual ReLU MLP (4 neurons), "
                 "last-token readout")
    return fig


fig = draw()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "transformer"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transformer_balance.png"
    fig.savefig(path, dpi=120)
    print(path)
