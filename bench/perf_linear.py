"""Single-thread CPU-time micro-benchmark of the deep-linear gradient and the RK4 engine (issue: perf-linear).

Times are process_time (CPU seconds of this process), min over repeats: the machine is shared, so
wall-clock is meaningless. Usage: .venv/bin/python bench/perf_linear.py [grad|sim|peak|all]
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the peak is measured per core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numba
import numpy as np
from numba import njit

import noether_sim as ns
from noether_sim.kernels.layout import MODEL_DEEP_LINEAR
from noether_sim.kernels.models import loss_grad, work_size

numba.set_num_threads(1)


@njit  # not cached: numba's cache would not see edits to the kernels it inlines
def _grad_loop(theta, ints, floats, a, b, n):
    P = theta.shape[1]
    g = np.empty(P)
    work = np.empty(work_size(MODEL_DEEP_LINEAR, ints, a))
    s = 0.0
    for i in range(n):
        s += loss_grad(MODEL_DEEP_LINEAR, theta[i % theta.shape[0]], g, ints, floats, a, b, work)
        s += g[i % P]
    return s


def problem():
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
    return model, data


def grad_flops(widths):
    """Multiply-adds of the chain order the kernel picks (no biases)."""
    n = list(widths)
    L = len(n) - 1
    na, nL = n[0], n[L]
    old = (sum(n[i] * n[i - 1] * na for i in range(2, L + 1))  # forward M_i
           + nL * na * na  # T
           + sum(n[i] * n[i - 1] * na for i in range(2, L + 1))  # G_i, i >= 2
           + sum(n[i] * n[i - 1] * na for i in range(2, L + 1)))  # Δ_{i-1}
    new = (sum(nL * n[i + 1] * n[i] for i in range(1, L - 1))  # R_i
           + nL * n[1] * n[0]  # Ã = R_1 W_1
           + nL * na * na  # T
           + sum(nL * n[i] * n[i - 1] for i in range(1, L))  # F_{i+1}
           + sum(nL * n[i] * n[i - 1] for i in range(1, L)))  # G_i, i < L
    return old, new


def grad_time(reps=5, n=20000):
    model, data = problem()
    theta = np.ascontiguousarray(ns.simulate(model, data, method="rk4", h=0.01, n_steps=1, save_every=0.01,
                                             seeds=8).theta_initial.values)
    ints, floats = model.descriptor(), model.constants(data)
    a, b = model.kernel_data(data)
    _grad_loop(theta, ints, floats, a, b, 10)
    best = 1e9
    for _ in range(reps):
        t0 = time.process_time()
        _grad_loop(theta, ints, floats, a, b, n)
        best = min(best, time.process_time() - t0)
    return best / n


def sim_time(reps=3, seeds=128, steps=1000):
    model, data = problem()
    ns.simulate(model, data, method="rk4", h=0.01, n_steps=10, save_every=0.1, seeds=2, progress=False)
    best = 1e9
    for _ in range(reps):
        t0 = time.process_time()
        ns.simulate(model, data, method="rk4", h=0.01, n_steps=steps, save_every=0.1, seeds=seeds,
                    progress=False)
        best = min(best, time.process_time() - t0)
    return best / (seeds * steps)


def peak(reps=3, n=4096):
    x = np.random.default_rng(0).standard_normal((n, n))
    x @ x
    best = 1e9
    for _ in range(reps):
        t0 = time.process_time()
        x @ x
        best = min(best, time.process_time() - t0)
    return 2 * n ** 3 / best


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    old, new = grad_flops((10, 16, 16, 5))
    print(f"multiply-adds per gradient: old order {old}, output-side order {new}")
    if what in ("peak", "all"):
        p = peak()
        print(f"numpy 4096^2 matmul, 1 thread: {p / 1e9:.1f} GFLOP/s per core ({2 * p / 1e9:.1f} machine)")
    if what in ("grad", "all"):
        t = grad_time()
        print(f"gradient: {t * 1e6:.3f} us CPU  ({2 * old / t / 1e9:.2f} GFLOP/s old-order flops, "
              f"{2 * new / t / 1e9:.2f} GFLOP/s output-side flops)")
    if what in ("sim", "all"):
        t = sim_time()
        print(f"RK4 seed-step (simulate, 128 seeds x 1000 steps, 1 thread): {t * 1e6:.3f} us CPU "
              f"-> {1 / t:.0f} seed-steps/s per core")
