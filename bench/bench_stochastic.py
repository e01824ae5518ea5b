"""Stochastic training beside full-batch gradient descent on the reference problem (bench/README.md):
deep linear 10-16-16-5, N = 64, 1024 seeds, 1000 steps of h = 0.01, records every 10 steps.

    full-batch gd        dynamics="gd"
    SGD, B = N/4         dynamics="gd", batch_size=16 (uniform, and epoch)
    Langevin             dynamics="langevin", temperature=0.01 (full batch, and B = 16)
    Langevin, Heun       method="stochastic_heun" (weak order 2: two gradients per step)
    underdamped          dynamics="momentum", tau=0.5, temperature=0.01 beside deterministic momentum

Each timed end to end (validation, allocation, integration, result), best of 3 rounds after a warm-up run
that compiles; the rounds interleave the cases, so a change of the machine's load hits all of them alike.
Prints seed-steps/s and the ratio to full-batch gd. Run: .venv/bin/python bench/bench_stochastic.py
[seeds [steps]] (defaults 1024 1000).
"""

import os
import sys
import time

import numpy as np

import noether_sim as ns

SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
H = 0.01
CASES = {
    "full-batch gd": dict(dynamics="gd"),
    "SGD B=16 uniform": dict(dynamics="gd", batch_size=16),
    "SGD B=16 epoch": dict(dynamics="gd", batch_size=16, sampling="epoch"),
    "Langevin full batch": dict(dynamics="langevin", temperature=0.01),
    "Langevin B=16": dict(dynamics="langevin", temperature=0.01, batch_size=16),
    "Langevin Heun": dict(dynamics="langevin", temperature=0.01, method="stochastic_heun"),
    "momentum": dict(dynamics="momentum", tau=0.5),
    "underdamped": dict(dynamics="momentum", tau=0.5, temperature=0.01),
}


def main():
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
    theta0 = ns.simulate(model, data, dynamics="gd", h=H, n_steps=1, seeds=SEEDS).theta_initial.values
    init = ns.init.Given(theta0)
    runs = {}
    for name, kw in CASES.items():
        # watch_seeds=[0]: the default watches every seed of a stochastic run (seed means); timed here
        # as the integration a researcher would run, with one seed's full charges kept like gd's
        runs[name] = dict(h=H, n_steps=STEPS, save_every=10 * H, seeds=SEEDS, init=init, watch_seeds=[0], **kw)
        ns.simulate(model, data, **{**runs[name], "seeds": 8, "init": ns.init.Given(theta0[:8])})  # compile
    best = {name: np.inf for name in CASES}
    for _ in range(3):
        for name, run in runs.items():
            t0 = time.perf_counter()
            ds = ns.simulate(model, data, **run)
            best[name] = min(best[name], time.perf_counter() - t0)
            assert not ds.diverged.any()
    results = {name: SEEDS * STEPS / t for name, t in best.items()}
    base = results["full-batch gd"]
    print(f"load average {os.getloadavg()[0]:.2f}; {SEEDS} seeds × {STEPS} steps, best of 3")
    print(f"{'case':<22} {'seed-steps/s':>14} {'÷ full-batch gd':>16}")
    for name, rate in results.items():
        print(f"{name:<22} {rate:>14.3e} {base / rate:>16.2f}")


if __name__ == "__main__":
    main()
