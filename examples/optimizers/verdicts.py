"""Which charges each adaptive optimizer keeps: a ladder in the learning rate η at fixed β's for every
optimizer (and gradient descent beside them), on a deep linear network (balance D1) and a ReLU MLP
(per-neuron rescale r1). Prints the Markdown table of docs/guide/optimizers.md.

    python examples/optimizers/verdicts.py [--seeds 4] [--t-end 1.0]
"""

import argparse

import numpy as np

import noether_sim as ns
from noether_sim.mlp import MLP, teacher_regression

RUNS = [  # (dynamics, options): PyTorch's defaults, and shorter moment memories (β₂ = 0.9)
    ("gd", {}),
    ("adam", {}), ("adam", {"beta1": 0.5, "beta2": 0.9}),
    ("adamw", {"beta1": 0.5, "beta2": 0.9}),
    ("rmsprop", {}), ("rmsprop", {"beta2": 0.9}),
    ("sign", {}),
    ("lion", {}), ("lion", {"beta1": 0.5, "beta2": 0.9}),
]


def problems():
    yield "deep linear 3-4-2", ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=1)
    yield ("ReLU MLP 3-5-1", MLP((3, 5, 1), activation="relu", bias=True),
           teacher_regression(MLP((3, 5, 1), activation="relu"), 16, noise=0.1, seed=3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--t-end", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--coarsest", type=int, default=7, help="largest η = 2^-coarsest")
    ap.add_argument("--finest", type=int, default=12, help="smallest η = 2^-finest")
    args = ap.parse_args()
    steps = [2.0 ** -k for k in range(args.coarsest, args.finest + 1)]
    print(f"ladder η = 2^-{args.coarsest} … 2^-{args.finest}, t_end = {args.t_end}, {args.seeds} seeds, "
          f"λ = {args.weight_decay}; medians over seeds\n")
    print("| model | optimizer | options | charge | verdict | limit flow | fitted order | d* | uncertainty "
          f"| drift at η = 2^-{args.finest} | drift at η = 2^-{args.coarsest} | scale |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, model, data in problems():
        for dyn, opts in RUNS:
            lad = ns.run_ladder(model, data, dynamics=dyn, step_sizes=steps, t_end=args.t_end, seeds=args.seeds,
                                weight_decay=args.weight_decay, **opts)
            an = ns.analyse_ladder(lad)
            coarse = float(np.median(lad.drift.isel(h=0, time=-1, charge=0).values))
            for row in ns.summarise_verdicts(an)[:1]:
                o = ", ".join(f"{k}={v:g}" for k, v in opts.items()) or "defaults"
                print(f"| {label} | {dyn} | {o} | {row['charge']} | {row['verdict']} | {row['limit_flow']} "
                      f"| {row['fitted_order']:.2f} | {row['extrapolated_drift']:.3g} | {row['uncertainty']:.2g} "
                      f"| {row['finest_drift']:.3g} | {coarse:.3g} | {row['scale']:.3g} |", flush=True)


if __name__ == "__main__":
    main()
