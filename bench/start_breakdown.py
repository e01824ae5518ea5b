"""Where a warm start goes: a new interpreter imports noether_sim and runs 64 seeds of the reference
configuration for 10 steps, on the filled kernel cache.

    .venv/bin/python bench/start_breakdown.py [--repeats 3]

Prints, per phase, the best of the repeats: interpreter start-up to its first line, numpy + numba,
xarray, the rest of noether_sim, the first simulate() call (which loads the cached kernels), and the
whole process from launch to exit, measured by the parent. Run it once before (or after a cold
start) so that the kernel cache and the bytecode caches are filled.
"""

import argparse
import json
import os
import subprocess
import sys
import time

_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy, numba
t1 = time.perf_counter()
import xarray
t2 = time.perf_counter()
import noether_sim
t3 = time.perf_counter()
m = noether_sim.DeepLinear((10, 16, 16, 5))
d = noether_sim.data.synthetic_regression(10, 5, 64, noise=0.1)
noether_sim.simulate(m, d, method="rk4", h=0.01, n_steps=10, save_every=0.1, seeds=64)
t4 = time.perf_counter()
print(json.dumps({"numpy + numba": t1 - t0, "xarray": t2 - t1, "noether_sim (rest)": t3 - t2,
                  "first simulate (64 seeds)": t4 - t3, "in script": t4 - t0}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.repeats + 1):  # the first run fills caches; not counted
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True,
                             env=os.environ)
        total = time.perf_counter() - t0
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["whole process (launch to exit)"] = total
        r["interpreter start-up and exit"] = total - r["in script"]
        runs.append(r)
    runs = runs[1:]
    best = min(runs, key=lambda r: r["whole process (launch to exit)"])
    print(f"warm start, best of {args.repeats} (load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}):\n")
    print("| phase | seconds |")
    print("|---|---|")
    for k in ("interpreter start-up and exit", "numpy + numba", "xarray", "noether_sim (rest)",
              "first simulate (64 seeds)", "whole process (launch to exit)"):
        print(f"| {k} | {best[k]:.3f} |")


if __name__ == "__main__":
    main()
