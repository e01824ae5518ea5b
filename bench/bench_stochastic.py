"""Stochastic training beside full-batch gradient descent on the reference problem (bench/README.md):
deep linear 10-16-16-5, N = 64, 1024 seeds, 1000 steps of h = 0.01, records every 10 steps.

    full-batch gd        dynamics="gd"
    SGD, B = N/4         dynamics="gd", batch_size=16 (uniform, and epoch)
    Langevin             dynamics="langevin", temperature=0.01 (full batch, and B = 16)

Each timed end to end (validation, allocation, integration, result), best of 3 after a warm-up run that
compiles. Prints seed-steps/s and the ratio to full-batch gd. Run: .venv/bin/python bench/bench_stochastic.py
"""

import os
import time

import numpy as np

import noether_sim as ns

SEEDS, STEPS, H = 1024, 1000, 0.01
CASES = {
    "full-batch gd": dict(dynamics="gd"),
    "SGD B=16 uniform": dict(dynamics="gd", batch_size=16),
    "SGD B=16 epoch": dict(dynamics="gd", batch_size=16, sampling="epoch"),
    "Langevin full batch": dict(dynamics="langevin", temperature=0.01),
    "Langevin B=16": dict(dynamics="langevin", temperature=0.01, batch_size=16),
}


def main():
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
    theta0 = ns.simulate(model, data, dynamics="gd", h=H, n_steps=1, seeds=SEEDS).theta_initial.values
    init = ns.init.Given(theta0)
    results = {}
    for name, kw in CASES.items():
        # watch_seeds=[0]: the default watches every seed of a stochastic run (seed means); timed here
        # as the integration a researcher would run, with one seed's full charges kept like gd's
        run = dict(h=H, n_steps=STEPS, save_every=10 * H, seeds=SEEDS, init=init, watch_seeds=[0], **kw)
        ns.simulate(model, data, **{**run, "seeds": 8, "init": ns.init.Given(theta0[:8])})  # compile
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            ds = ns.simulate(model, data, **run)
            best = min(best, time.perf_counter() - t0)
        assert not ds.diverged.any()
        results[name] = SEEDS * STEPS / best
    base = results["full-batch gd"]
    print(f"load average {os.getloadavg()[0]:.2f}; {SEEDS} seeds × {STEPS} steps, best of 3")
    print(f"{'case':<22} {'seed-steps/s':>14} {'÷ full-batch gd':>16}")
    for name, rate in results.items():
        print(f"{name:<22} {rate:>14.3e} {base / rate:>16.2f}")


if __name__ == "__main__":
    main()
