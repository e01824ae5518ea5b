"""A/B of the seed-interleaved fast path against the general driver, alternating in one process.

    .venv/bin/python bench/ab_lanes.py [--rounds 3] [--seeds 1024] [--steps 1000] [--threads 2] [--verlet]

Runs the reference problem (10-16-16-5, N = 64, RK4 h = 0.01, 1000 steps, a record every 10 steps)
with NOETHER_SIM_LANES=0 (the general driver) and =1 (the fast path), alternating, and prints the best
wall time of each, seed-steps/s, the cores each run got, and whether every recorded number is
bit-identical between the two. ``--verlet``: momentum flow (τ = 0.5, zero initial velocity) by conformal
Störmer–Verlet with ``track_law=False`` instead of RK4 gradient flow (the splitting fast path).
"""

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402

import noether_sim  # noqa: E402
from bench.problem import REFERENCE, run_ours  # noqa: E402


def run_verlet(problem, theta0):
    return noether_sim.simulate(problem.model, problem.data, dynamics="momentum", tau=0.5, method="verlet",
                                track_law=False, h=problem.h, n_steps=problem.n_steps, save_every=problem.save_every,
                                seeds=theta0.shape[0], init=noether_sim.init.Given(theta0))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--verlet", action="store_true", help="momentum flow by Störmer–Verlet (track_law=False)")
    args = ap.parse_args(argv)
    run = run_verlet if args.verlet else run_ours
    numba.set_num_threads(args.threads)
    problem = REFERENCE.with_(n_seeds=args.seeds, n_steps=args.steps)
    theta0 = problem.theta0()
    small = problem.with_(n_seeds=16, n_steps=problem.record_every)
    best = {"0": (np.inf, 0.0), "1": (np.inf, 0.0)}
    results = {}
    for mode in ("0", "1"):  # compile both outside the timing
        os.environ["NOETHER_SIM_LANES"] = mode
        run(small, theta0[:16])
    for _ in range(args.rounds):
        for mode in ("0", "1"):
            os.environ["NOETHER_SIM_LANES"] = mode
            c0, t0 = time.process_time(), time.perf_counter()
            ds = run(problem, theta0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if wall < best[mode][0]:
                best[mode] = (wall, cpu)
            results[mode] = ds
    os.environ.pop("NOETHER_SIM_LANES")
    same = all(np.array_equal(results["0"][v].values, results["1"][v].values, equal_nan=True)
               for v in results["0"].data_vars if results["0"][v].dtype.kind == "f")
    print(f"reference problem{' (momentum, Verlet)' if args.verlet else ''} {args.seeds} seeds x {args.steps} steps, {args.threads} threads, best of "
          f"{args.rounds}, load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| driver | best wall s | seed-steps/s | cores used |")
    print("|---|---|---|---|")
    for mode, label in (("0", "general driver (NOETHER_SIM_LANES=0)"), ("1", "seed-interleaved fast path")):
        wall, cpu = best[mode]
        print(f"| {label} | {wall:.3f} | {problem.seed_steps() / wall:,.0f} | {cpu / wall:.2f} |")
    print(f"\nspeed-up {best['0'][0] / best['1'][0]:.2f}×; every recorded number bit-identical: {same}")


if __name__ == "__main__":
    main()
