"""Adaptive optimizers against gradient descent on the reference problem (deep linear 10-16-16-5, N = 64):
seed-steps per second of a warm run (second call, compiled), 1000 steps, charges recorded every 10 steps.
Gradient descent is timed on the seed-interleaved fast path (lanes.py) and on the general driver
(NOETHER_SIM_LANES=0 in a child process), which is the path the optimizers take.

    python bench/optimizers.py [--seeds 1024] [--steps 1000]
"""

import argparse
import os
import subprocess
import sys
import time

import noether_sim as ns


def timed(dynamics, seeds, steps):
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
    kw = dict(dynamics=dynamics, h=0.01, n_steps=steps, save_every=0.1, seeds=seeds)
    ns.simulate(model, data, **{**kw, "n_steps": 10, "seeds": 8})  # compile / load the cache
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ns.simulate(model, data, **kw)
        best = min(best, time.perf_counter() - t0)
    return seeds * steps / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    if args.only:
        print(timed(args.only, args.seeds, args.steps))
        return
    gd_driver = float(subprocess.run([sys.executable, __file__, "--only", "gd", "--seeds", str(args.seeds),
                                      "--steps", str(args.steps)], env={**os.environ, "NOETHER_SIM_LANES": "0"},
                                     capture_output=True, text=True, check=True).stdout)
    gd = timed("gd", args.seeds, args.steps)
    print(f"| dynamics | seed-steps/s | cost per step vs gd (driver) |\n|---|---|---|")
    print(f"| gd (fast path) | {gd:.3g} | {gd_driver / gd:.2f}× |")
    print(f"| gd (driver) | {gd_driver:.3g} | 1.00× |")
    for dyn in ("adam", "adamw", "rmsprop", "sign", "lion"):
        r = timed(dyn, args.seeds, args.steps)
        print(f"| {dyn} | {r:.3g} | {gd_driver / r:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
