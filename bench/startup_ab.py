"""Warm reference run, this checkout against another one, alternated (A, B, A, B, …) so both see the same load.

    .venv/bin/python bench/startup_ab.py OTHER_CHECKOUT [--pairs 9]

OTHER_CHECKOUT: a copy of another version (e.g. ``git archive <commit> | tar -x -C DIR`` and
``ln -s ../kernels DIR/noether_sim/kernels``), run with ``PYTHONPATH=DIR`` from DIR, its own kernel cache
filled by a first uncounted run. Each run is a new interpreter timed from launch to exit by this parent
(wall, and CPU seconds of the child: user + system, all threads); medians are printed, with the load.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUN = r"""
import noether_sim as ns
m = ns.DeepLinear((10, 16, 16, 5)); d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
ns.simulate(m, d, method="rk4", h=0.01, n_steps=100, save_every=0.1, seeds=1024)
"""


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("other")
    ap.add_argument("--pairs", type=int, default=9)
    a = ap.parse_args(argv)
    env0 = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    here = str(Path(__file__).resolve().parent.parent)
    other = str(Path(a.other).resolve())
    variants = {"this checkout": (here, env0), "other": (other, dict(env0, PYTHONPATH=other))}
    for cwd, env in variants.values():  # fill the .pyc files and kernel caches
        subprocess.run([sys.executable, "-c", RUN], cwd=cwd, env=env, check=True, capture_output=True)
    res = {k: [] for k in variants}
    for _ in range(a.pairs):
        for k, (cwd, env) in variants.items():
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-c", RUN], cwd=cwd, env=env, check=True, capture_output=True)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res[k].append((time.perf_counter() - t0, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                           os.getloadavg()[0]))
    med = statistics.median
    for k, xs in res.items():
        print(f"{k:14s} wall median {med(x[0] for x in xs):.2f} s, CPU median {med(x[1] for x in xs):.3f} s "
              f"(CPU runs {' '.join(f'{x[1]:.2f}' for x in xs)}), load {min(x[2] for x in xs):.1f}–{max(x[2] for x in xs):.1f}")


if __name__ == "__main__":
    main()
