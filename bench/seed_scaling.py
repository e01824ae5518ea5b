"""Throughput against the number of seeds per call, on 1 and 2 threads (reference network, RK4).

    .venv/bin/python bench/seed_scaling.py [--sizes 1000 10000 100000 1000000] [--steps 100]

For each size, one simulate() call of the reference configuration (10-16-16-5, N = 64, RK4 h = 0.01,
a record every 10 steps) from given initial rows, timed end to end (wall) and in the integration
loop alone (the result's ``wall_seconds`` attribute, which leaves out validation, the initial and final
charges and building the xarray result). 10^6 seeds run fewer steps (``--big-steps``) so that the
call stays within a minute; its state alone is 4 GB. Prints a markdown table.
"""

import argparse
import gc
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402

from bench.problem import REFERENCE, run_ours  # noqa: E402


def one(n_seeds, steps, threads, theta0):
    numba.set_num_threads(threads)
    problem = REFERENCE.with_(n_seeds=n_seeds, n_steps=steps)
    c0, t0 = time.process_time(), time.perf_counter()
    ds = run_ours(problem, theta0)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    loop = float(ds.attrs.get("wall_seconds", np.nan))
    del ds
    gc.collect()
    return {"wall": wall, "loop": loop, "cores": cpu / wall, "rate": problem.seed_steps() / wall,
            "loop_rate": problem.seed_steps() / loop}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--big-steps", type=int, default=20, help="steps for sizes ≥ 10^6")
    args = ap.parse_args(argv)
    max_threads = numba.config.NUMBA_NUM_THREADS
    run_ours(REFERENCE.with_(n_seeds=16, n_steps=10), REFERENCE.with_(n_seeds=16).theta0())  # compile
    rows = []
    for n in args.sizes:
        steps = args.big_steps if n >= 1_000_000 else args.steps
        theta0 = REFERENCE.with_(n_seeds=n).theta0()
        res = {t: one(n, steps, t, theta0) for t in (1, 2) if t <= max_threads}
        rows.append((n, steps, res))
        print(f"{n} seeds x {steps} steps: " + ", ".join(
            f"{t}T {r['rate']:,.0f}/s (loop {r['loop_rate']:,.0f}/s, {r['cores']:.2f} cores)" for t, r in res.items()),
            file=sys.stderr, flush=True)
        del theta0
        gc.collect()
    print(f"load average at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| seeds per call | steps | 1 thread: seed-steps/s (loop only) | 2 threads: seed-steps/s (loop only) "
          "| cores used (2 T) | 2 T ÷ 1 T (loop only) |")
    print("|---|---|---|---|---|---|")
    for n, steps, res in rows:
        one_t, two_t = res.get(1), res.get(2)
        cells = [f"{r['rate']:,.0f} ({r['loop_rate']:,.0f})" if r else "—" for r in (one_t, two_t)]
        ratio = (f"{two_t['rate'] / one_t['rate']:.2f}× ({two_t['loop_rate'] / one_t['loop_rate']:.2f}×)"
                 if one_t and two_t else "—")
        print(f"| {n:,} | {steps} | {cells[0]} | {cells[1]} | {two_t['cores']:.2f} | {ratio} |" if two_t else
              f"| {n:,} | {steps} | {cells[0]} | — | — | — |")


if __name__ == "__main__":
    main()
