"""Adaptive optimizers against gradient descent on the reference problem (deep linear 10-16-16-5, N = 64):
seed-steps per second of a warm run (second call, compiled), 1000 steps, charges recorded every 10 steps.
Gradient descent is timed on the seed-interleaved fast path (lanes.py) and on the general driver
(NOETHER_SIM_LANES=0), which is the path the optimizers take. Rows are timed in interleaved rounds, best
of ``--reps``, so that a shared machine's load falls on every row alike.

    python bench/optimizers.py [--seeds 1024] [--steps 1000] [--reps 5]
"""

import argparse
import os
import time

import noether_sim as ns


def timed(dynamics, seeds, steps):
    """Seed-steps/s of one warm run (best of 3) — kept for ``--only``."""
    model, data = _problem()
    kw = dict(dynamics=dynamics, h=0.01, n_steps=steps, save_every=0.1, seeds=seeds)
    ns.simulate(model, data, **{**kw, "n_steps": 10, "seeds": 8})  # compile / load the cache
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ns.simulate(model, data, **kw)
        best = min(best, time.perf_counter() - t0)
    return seeds * steps / best


def _problem():
    return ns.DeepLinear((10, 16, 16, 5)), ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)


def interleaved(seeds, steps, reps):
    """Seed-steps/s of every row, best of ``reps`` rounds that take each row in turn: on a shared machine
    the load then weighs on every row alike. The fast path is switched per call (NOETHER_SIM_LANES is read
    when a run is dispatched)."""
    model, data = _problem()
    rows = [("gd (fast path)", "gd", "1"), ("gd (driver)", "gd", "0")] + [(d, d, "0") for d in OPTIMIZERS]
    best = {name: float("inf") for name, _, _ in rows}
    for name, dyn, lanes in rows:  # compile / load the cache
        os.environ["NOETHER_SIM_LANES"] = lanes
        ns.simulate(model, data, dynamics=dyn, h=0.01, n_steps=10, seeds=8)
    for _ in range(reps):
        for name, dyn, lanes in rows:
            os.environ["NOETHER_SIM_LANES"] = lanes
            t0 = time.perf_counter()
            ns.simulate(model, data, dynamics=dyn, h=0.01, n_steps=steps, save_every=0.1, seeds=seeds)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: seeds * steps / t for name, t in best.items()}


OPTIMIZERS = ("adam", "adamw", "rmsprop", "sign", "lion")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    if args.only:
        print(timed(args.only, args.seeds, args.steps))
        return
    rates = interleaved(args.seeds, args.steps, args.reps)
    gd_driver = rates["gd (driver)"]
    print("| dynamics | seed-steps/s | cost per step vs gd (driver) |\n|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.3g} | {gd_driver / r:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
