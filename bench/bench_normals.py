"""Normals for Langevin noise, per normal: the driver's two-pass ziggurat (``gaussian_noise``), the same
ziggurat one normal at a time (``normal``), and Box–Muller on the counter-based uniforms (what the
driver used before). 4000 draws of P = 496 normals (the reference network's parameter count), best of 3.
Run: .venv/bin/python bench/bench_normals.py
"""

import math
import os
import time

import numpy as np
from numba import njit

from noether_sim.kernels.counter_rng import _uniform
from noether_sim.kernels.stochastic import gaussian_noise, normal

P, DRAWS = 496, 4000


@njit(cache=True)
def _two_pass(key, n, out):
    s = 0.0
    for k in range(n):
        gaussian_noise(key, k, 1, 1.0, out)
        s += out[0]
    return s


@njit(cache=True)
def _one_by_one(key, n, out):
    s = 0.0
    for k in range(n):
        for j in range(out.shape[0]):
            out[j] = normal(key, k * out.shape[0] + j)
        s += out[0]
    return s


@njit(cache=True)
def _box_muller(key, n, out):
    s = 0.0
    P = out.shape[0]
    for k in range(n):
        base = k * P
        for j in range(0, P, 2):
            rho = math.sqrt(-2.0 * math.log(_uniform(key, base + j)))
            phi = 2.0 * math.pi * _uniform(key, base + j + 1)
            out[j] = rho * math.cos(phi)
            if j + 1 < P:
                out[j + 1] = rho * math.sin(phi)
        s += out[0]
    return s


def main():
    key = np.uint64(0x1234_5678_9ABC_DEF0)  # a uint64, as inside the kernels
    out = np.empty(P)
    print(f"load average {os.getloadavg()[0]:.2f}; {DRAWS} draws of {P} normals, best of 3")
    for name, fn in (("two-pass ziggurat (driver)", _two_pass), ("ziggurat one by one", _one_by_one),
                     ("Box–Muller", _box_muller)):
        fn(key, 2, out)
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            fn(key, DRAWS, out)
            best = min(best, time.perf_counter() - t0)
        print(f"{name:<28} {best / DRAWS / P * 1e9:6.2f} ns per normal")


if __name__ == "__main__":
    main()
