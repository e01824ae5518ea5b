"""
Teleportation: loss against time, and the charges jumping while the loss does not
=================================================================================

An ensemble of deep linear networks trained by gradient descent, once plainly and once teleported along
its GL(n) symmetry orbit every ``EVERY`` time units (``simulate(..., teleport_every=EVERY)``, ‖∇L‖ raised by
``noether_sim.teleport``). Left: median loss (and the 25–75 % band) over the seeds. Right, one seed: the
balance charge D1's entries jump at every teleport while its loss, drawn on the same time axis, is
continuous (its relative change at the jumps is printed).

Run:  python figures/teleportation.py [--out docs/guide/teleportation.png] [--seeds 64]
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import noether_sim as ns  # noqa: E402

MODEL = ns.DeepLinear((6, 8, 8, 3))
DATA = ns.data.synthetic_regression(6, 3, 64, noise=0.05, seed=2)
INIT = ns.init.Gaussian(scale=0.5)
H, T_END, EVERY, SAVE = 0.02, 4.0, 0.5, 0.1
TELEPORT = {"objective": "grad_norm", "steps": 10, "lr": 0.03}


def runs(seeds):
    kw = dict(dynamics="gd", h=H, t_end=T_END, save_every=SAVE, seeds=seeds, init=INIT, watch_seeds=[0])
    plain = ns.simulate(MODEL, DATA, **kw)
    moved = ns.simulate(MODEL, DATA, teleport_every=EVERY, teleport=TELEPORT, **kw)
    return plain, moved


def draw(plain, moved):
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ds, label, colour in ((plain, "gradient descent", "C0"), (moved, f"teleported every {EVERY:g}", "C3")):
        q = ds.loss.quantile([0.25, 0.5, 0.75], dim="seed").values
        ax.plot(ds.time, q[1], color=colour, label=label, gid=label)
        ax.fill_between(ds.time, q[0], q[2], color=colour, alpha=0.2)
    for t in moved.teleport_time.values:
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    ax.set(yscale="log", xlabel="time t = kη", ylabel="training loss (median, 25–75 %)",
           title=f"{moved.sizes['seed']} seeds, deep linear {'-'.join(map(str, MODEL.widths))}")
    ax.legend()

    # one seed's D1 entries through the jumps: the record before each teleport, then the value after it
    comp = moved.component_charge.values == "D1"
    t_rec, q_rec = moved.time.values, moved.charge_watch.sel(watched_seed=0).values[:, comp]
    ts, qs = [], []
    for k, t in enumerate(t_rec):
        ts.append(t)
        qs.append(q_rec[k])
        hit = np.isclose(moved.teleport_time.values, t)
        if hit.any():
            ts.append(t)
            qs.append(moved.teleport_charge_after.sel(seed=0).values[np.argmax(hit)][comp])
    bx.plot(ts, np.array(qs), color="0.4", lw=0.8)
    bx.set(xlabel="time", ylabel="entries of the balance charge D1 (seed 0)")
    cx = bx.twinx()
    cx.plot(moved.time, moved.loss.sel(seed=0), color="C3", lw=2, label="loss (seed 0)")
    cx.set(yscale="log", ylabel="loss (seed 0)")
    cx.legend(loc="upper right")
    bx.set_title("charges jump at each teleport, the loss does not")
    fig.tight_layout()
    return fig


def summary(plain, moved):
    rel = np.abs(moved.teleport_loss_after - moved.teleport_loss_before) / moved.teleport_loss_before
    jump = np.abs(moved.teleport_charge_after - moved.teleport_charge_before).max("component")
    gain = moved.teleport_grad_norm_after / moved.teleport_grad_norm_before
    lp, lm = plain.loss.isel(time=-1), moved.loss.isel(time=-1)
    absd = np.abs(moved.teleport_loss_after - moved.teleport_loss_before)
    return (f"diverged seeds: plain {plain.attrs['n_diverged']}, teleported {moved.attrs['n_diverged']}\n"
            f"final loss, median over seeds: plain {float(lp.median()):.3e}, teleported {float(lm.median()):.3e} "
            f"(teleported lower for {int((lm < lp).sum())}/{lp.size} seeds)\n"
            f"at the {moved.sizes['teleport']} teleports: loss change ≤ {float(rel.max()):.1e} relative, "
            f"≤ {float(absd.max()):.1e} absolute; "
            f"|∇L| × {float(gain.median()):.2f} (median; min {float(gain.min()):.2f}); "
            f"largest D1 entry jump {float(jump.median()):.3f} (median), ≥ {float(jump.min()):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/guide/teleportation.png")
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--lr", type=float, default=TELEPORT["lr"], help="teleport's ascent step length")
    args = parser.parse_args()
    TELEPORT["lr"] = args.lr
    plain, moved = runs(args.seeds)
    draw(plain, moved).savefig(args.out, dpi=120)
    print(summary(plain, moved))
    print(args.out)
    sys.exit(0)
