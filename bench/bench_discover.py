"""What a discovery costs against the number of parameters P (plain script, prints a Markdown table).

    .venv/bin/python bench/bench_discover.py [gradient|momentum|both]
    .venv/bin/python bench/bench_discover.py large     # the reference 10-16-16-5 (P = 496), max_depth 6

For each model: P, the count found, the bracket depth it needed, and the wall time of ``ns.discover``
(2 generic points, default settings) split into its stages: Lie-algebra rank (fields and brackets by
jets), linear laws, quadratic laws (full search up to 1200 unknowns, P ≤ 48; layer-Gram above), catalogue check
(polarisation of the package's charge kernel; its first call compiles that kernel, so a warm-up run
of each model kind comes first and is not timed).
"""

import sys
import time

import noether_sim as ns
from noether_sim.mlp import MLP

MODELS = [
    ("2-layer linear", ns.DeepLinear((3, 3, 3))),
    ("3-layer linear", ns.DeepLinear((4, 4, 4, 4))),  # P = 48: the largest full quadratic search
    ("2-layer linear", ns.DeepLinear((5, 5, 5))),
    ("2-layer linear", ns.DeepLinear((6, 5, 6))),
    ("2-layer linear", ns.DeepLinear((7, 7, 7))),
    ("2-layer linear", ns.DeepLinear((10, 10, 10))),
    ("3-layer linear", ns.DeepLinear((6, 8, 8, 4))),
    ("3-layer linear", ns.DeepLinear((7, 8, 8, 5), bias=True)),
    ("ReLU", MLP((5, 5, 5), activation="relu")),
    ("ReLU", MLP((7, 7, 7), activation="relu")),
    ("ReLU", MLP((10, 10, 10), activation="relu")),
    ("ReLU softmax, bias", MLP((8, 10, 8, 4), activation="relu", loss="softmax_ce", bias=True)),
    ("tanh", MLP((10, 10, 10), activation="tanh")),
    ("GELU, bias", MLP((9, 9, 9, 9), activation="gelu", bias=True)),
]


def large():
    model = ns.DeepLinear((10, 16, 16, 5))
    ns.discover(ns.DeepLinear((2, 2, 1)), points=1)
    t0 = time.perf_counter()
    r = ns.discover(model, points=1, max_depth=6)
    total = time.perf_counter() - t0
    print(f"P = {model.n_params}: {r.message}; rank by depth {list(r.points[0].rank_by_depth)}; "
          f"catalogue complete: {r.catalogue.complete}; stages {r.settings['seconds_by_stage']}; total {total:.1f} s")


def main(which="both"):
    if which == "large":
        return large()
    flows = ("gradient", "momentum") if which == "both" else (which,)
    ns.discover(ns.DeepLinear((2, 2, 1)), points=1)  # compile the charge kernels once (not timed)
    ns.discover(MLP((2, 2, 1)), points=1)
    print("| model | widths | P | flow | laws | depth | lie (s) | linear (s) | quadratic (s) | catalogue (s) | total (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model in MODELS:
        for flow in flows:
            t0 = time.perf_counter()
            r = ns.discover(model, flow=flow)
            total = time.perf_counter() - t0
            st = r.settings["seconds_by_stage"]
            depth = max(p.depth for p in r.points)
            print(f"| {name} | {list(model.widths)} | {model.n_params} | {flow} | "
                  f"{'?' if r.count is None else r.count} | {depth} | {st['lie']:.2f} | {st['linear']:.2f} | "
                  f"{st['quadratic']:.2f} ({r.quadratic.structure}) | {st['catalogue']:.2f} | {total:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
