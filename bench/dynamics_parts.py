"""Where a dynamics' time goes: steps against records, on one thread (process CPU time, best of 3).

    .venv/bin/python bench/dynamics_parts.py CASE [THREADS=1] [SEEDS=256]

CASE is one of bench/roofline_dynamics.py's cases (mlp_rk4, gl2, verlet, verlet_general, gd, langevin16).
Runs ``simulate()`` end to end for 100 and 300 steps with a record every 10 steps, and 300 steps with a
record at the end only; the difference of the last two is the records' cost (29 records of every seed),
the last one the steps' cost (plus one record and the per-call set-up).
"""

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402

from bench.roofline_dynamics import run_ours, setup, theta0_for  # noqa: E402


def main(argv):
    case = argv[0]
    numba.set_num_threads(int(argv[1]) if len(argv) > 1 else 1)
    seeds = int(argv[2]) if len(argv) > 2 else 256
    model, data, kw = setup(case)
    theta0 = theta0_for(model, seeds)
    run_ours(case, model, data, kw, theta0[:8], 20)  # compile / load the cache
    times = {}
    for steps, every in ((100, 10), (300, 10), (300, 300)):
        k = dict(kw, save_every=every * kw["h"])
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            run_ours(case, model, data, k, theta0, steps)
            best = min(best, time.process_time() - t0)
        times[steps, every] = best
        print(f"{case}: {seeds} seeds × {steps} steps, a record every {every} steps: {best:.3f} CPU s, "
              f"{best / (seeds * steps) * 1e6:.2f} µs per seed-step", flush=True)
    per_record = (times[300, 10] - times[300, 300]) / (seeds * 29)
    print(f"{case}: one record of one seed ≈ {per_record * 1e6:.1f} µs; steps alone ≈ "
          f"{times[300, 300] / (seeds * 300) * 1e6:.2f} µs per seed-step")


if __name__ == "__main__":
    main(sys.argv[1:])
