"""CustomModel throughput against the built-in deep linear kernel (issue 20).

The reference problem of bench/README.md, smaller (deep linear 10-16-16-5 without biases, N = 64,
classic RK4, h = 0.01, a save every 10 steps) run from the same θ₀ by every path, each warm (compiled
and cached first):

    built-in         ns.DeepLinear((10, 16, 16, 5)): its kernel on the seed-interleaved fast path (lanes.py)
    built-in/driver  the same with NOETHER_SIM_LANES=0: the general per-seed driver
    custom kernel    a CustomModel whose loss_grad calls the package's own deep linear gradient kernel
                     (kernels/linear.py) with the descriptor compiled in as constants: the built-in's
                     arithmetic through the custom path, on the custom fast path (kernels/custom_fast.py)
    custom kernel/general  the same with NOETHER_SIM_CUSTOM_FAST=0: through the general driver
    custom lanes     the custom kernel model with a lane function too (``loss_grad_lanes``, the lane contract):
                     it calls the package's seed-interleaved deep linear gradient (kernels/lanes.py
                     ``lane_gradient_field``, as a user importing it would), 8 seeds per call, on the custom
                     fast path's lane loop
    custom @         a CustomModel whose loss_grad a user writes with @ on the second moments (prepare)
    custom loops     the same gradient written with loops (no temporaries but its own)

The paths are interleaved: each round runs every path once, in the same process, and the table gives
the median over the rounds of the wall time and of the kernels' CPU time (``time.thread_time`` summed
over the kernel calls on the pool's threads: what the machine's other load inflates least). The load
average is printed before and after.

Usage: .venv/bin/python bench/custom_model.py [n_seeds] [n_steps] [rounds] [paths]   (defaults 256, 500, 5, all;
paths: comma-separated names, e.g. "built-in,custom lanes,custom kernel")
"""
import importlib
import os
import sys
import threading
import time

import numba
import numpy as np

import noether_sim as ns
from noether_sim.kernels.lanes import lane_gradient_field
from noether_sim.kernels.lanes_gemm import LANES
from noether_sim.kernels.linear import linear_loss_grad_output_side as _builtin_grad

N0, N1, N2, N3 = 10, 16, 16, 5
O2 = N1 * N0
O3 = O2 + N2 * N1
P = O3 + N3 * N2


def moments(X, Y):
    """(Σxx, [Σyx | tr(YYᵀ)/N]) computed once: a step's cost no longer grows with N."""
    N = X.shape[1]
    return X @ X.T / N, np.hstack([Y @ X.T / N, np.full((Y.shape[0], 1), np.sum(Y * Y) / N)])


@numba.njit(cache=True)
def loss_grad_matmul(theta, A, B, grad):
    W1 = theta[:O2].reshape((N1, N0))
    W2 = theta[O2:O3].reshape((N2, N1))
    W3 = theta[O3:].reshape((N3, N2))
    Syx = B[:, :N0]
    M2 = W2 @ W1
    M3 = W3 @ M2
    MS = M3 @ A
    E = MS - Syx
    G2 = W3.T @ E
    grad[O3:] = (E @ M2.T).ravel()
    grad[O2:O3] = (G2 @ W1.T).ravel()
    grad[:O2] = (W2.T @ G2).ravel()
    return 0.5 * np.sum(MS * M3) - np.sum(M3 * Syx) + 0.5 * B[0, N0]


@numba.njit(cache=True, inline="always")
def _mm(a, b, out):  # out = a @ b
    n, k = a.shape
    m = b.shape[1]
    for i in range(n):
        for j in range(m):
            out[i, j] = 0.0
        for p in range(k):
            aip = a[i, p]
            for j in range(m):
                out[i, j] += aip * b[p, j]


@numba.njit(cache=True)
def loss_grad_loops(theta, A, B, grad):
    W1 = theta[:O2].reshape((N1, N0))
    W2 = theta[O2:O3].reshape((N2, N1))
    W3 = theta[O3:].reshape((N3, N2))
    M2 = np.empty((N2, N0))
    M3 = np.empty((N3, N0))
    E = np.empty((N3, N0))
    G2 = np.empty((N2, N0))
    _mm(W2, W1, M2)
    _mm(W3, M2, M3)
    _mm(M3, A, E)
    loss = 0.5 * B[0, N0]
    for i in range(N3):
        for j in range(N0):
            loss += (0.5 * E[i, j] - B[i, j]) * M3[i, j]
            E[i, j] -= B[i, j]
    _mm(W3.T, E, G2)
    g3 = grad[O3:].reshape((N3, N2))
    _mm(E, M2.T, g3)
    g2 = grad[O2:O3].reshape((N2, N1))
    _mm(G2, W1.T, g2)
    g1 = grad[:O2].reshape((N1, N0))
    _mm(W2.T, G2, g1)
    return loss


INTS = np.zeros(1, np.int64)  # set in main() before the first call compiles it (then frozen as constants)
FLOATS = np.zeros(1)
WORK = 1


@numba.njit  # not cached: its constants are the run's data
def loss_grad_kernel(theta, A, B, grad):
    return _builtin_grad(theta, grad, INTS, FLOATS, A, B, np.empty(WORK))


@numba.njit  # not cached: its constants are the run's data
def loss_grad_lanes_kernel(theta, A, B, grad):
    """The lane contract: theta, grad (P, 8), column l one seed; the built-in lane gradient writes −∇L − 0·θ."""
    g = grad.reshape(grad.size)
    lane_gradient_field(theta.reshape(theta.size), g, INTS, 0.0, A, B, np.empty(WORK * LANES))
    for j in range(g.size):
        g[j] = -g[j]


def loss_grad_numpy(theta, A, B, grad):
    """loss_grad_matmul in plain NumPy (the plain_python=True path)."""
    W1 = theta[:O2].reshape(N1, N0)
    W2 = theta[O2:O3].reshape(N2, N1)
    W3 = theta[O3:].reshape(N3, N2)
    Syx = B[:, :N0]
    M2 = W2 @ W1
    M3 = W3 @ M2
    MS = M3 @ A
    E = MS - Syx
    G2 = W3.T @ E
    grad[O3:] = (E @ M2.T).ravel()
    grad[O2:O3] = (G2 @ W1.T).ravel()
    grad[:O2] = (W2.T @ G2).ravel()
    return 0.5 * np.sum(MS * M3) - np.sum(M3 * Syx) + 0.5 * B[0, N0]


_CPU = [0.0]
_LOCK = threading.Lock()


def _timed_integrate(integrate):
    """simulate's kernel call, its thread's CPU time added to _CPU."""
    def call(*args):
        t0 = time.thread_time()
        try:
            return integrate(*args)
        finally:
            with _LOCK:
                _CPU[0] += time.thread_time() - t0
    return call


def run(model, data, theta0, n_steps, env=None):
    """(wall seconds, kernel CPU seconds, result) of one run, with the environment flags ``env`` set."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        _CPU[0] = 0.0
        t = time.perf_counter()
        ds = ns.simulate(model, data, method="rk4", h=0.01, n_steps=n_steps, save_every=0.01 * 10, seeds=len(theta0),
                         init=ns.init.Given(theta0), progress=False)
        return time.perf_counter() - t, _CPU[0], ds
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interleaved(paths, data, theta0, n_steps, rounds):
    """{name: (median wall, median CPU, result)} over ``rounds`` rounds, each running every path once."""
    times = {name: [] for name in paths}
    last = {}
    for _ in range(rounds):
        for name, (model, env) in paths.items():
            wall, cpu, ds = run(model, data, theta0, n_steps, env)
            times[name].append((wall, cpu))
            last[name] = ds
    return {name: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v])), last[name])
            for name, v in times.items()}


def main():
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    global INTS, FLOATS, WORK
    sim = importlib.import_module("noether_sim.simulate")
    sim.integrate = _timed_integrate(sim.integrate)
    data = ns.data.synthetic_regression(N0, N3, 64, noise=0.1, seed=0)
    builtin = ns.DeepLinear((N0, N1, N2, N3))
    from noether_sim.kernels.linear import linear_work_size

    INTS, FLOATS = builtin.descriptor(), builtin.constants(data)
    WORK = int(linear_work_size(INTS))
    theta0 = ns.init.Gaussian().rows(builtin, 0, np.arange(n_seeds))
    kernel = ns.CustomModel(P, loss_grad_kernel, prepare=lambda X, Y: builtin.kernel_data(ns.data.from_arrays(X, Y)),
                            name="dl_kernel")
    lanes = ns.CustomModel(P, loss_grad_kernel, prepare=lambda X, Y: builtin.kernel_data(ns.data.from_arrays(X, Y)),
                           name="dl_lanes", loss_grad_lanes=loss_grad_lanes_kernel)
    paths = {"built-in": (builtin, None),
             "built-in/driver": (builtin, {"NOETHER_SIM_LANES": "0"}),
             "custom kernel": (kernel, None),
             "custom kernel/general": (kernel, {"NOETHER_SIM_CUSTOM_FAST": "0"}),
             "custom lanes": (lanes, None),
             "custom @": (ns.CustomModel(P, loss_grad_matmul, prepare=moments, name="dl_matmul"), None),
             "custom loops": (ns.CustomModel(P, loss_grad_loops, prepare=moments, name="dl_loops"), None)}
    if len(sys.argv) > 4:
        paths = {k: paths[k] for k in sys.argv[4].split(",")}
    for name, (model, env) in paths.items():
        run(model, data, theta0[:2], 20, env)  # warm: compile (or load) every kernel
    load0 = os.getloadavg()
    rows = interleaved(paths, data, theta0, n_steps, rounds)
    load1 = os.getloadavg()
    ref = rows["built-in"][2].theta_final.values
    print(f"deep linear 10-16-16-5, N=64, RK4 h=0.01, {n_seeds} seeds × {n_steps} steps, save every 10 steps, "
          f"{numba.get_num_threads()} threads, median of {rounds} interleaved rounds; "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    print(f"{'path':<22}{'wall s':>8}{'seed-steps/s':>14}{'× built-in':>12}{'× driver':>10}"
          f"{'CPU s':>8}{'CPU × b-in':>12}{'CPU × drv':>11}{'max|Δθ|':>10}")
    b_wall, b_cpu = rows["built-in"][:2]
    d_wall, d_cpu = rows["built-in/driver"][:2] if "built-in/driver" in rows else (np.nan, np.nan)
    for name, (sec, cpu, ds) in rows.items():
        dev = float(np.max(np.abs(ds.theta_final.values - ref)))
        print(f"{name:<22}{sec:8.3f}{n_seeds * n_steps / sec:14.3g}{sec / b_wall:12.2f}{sec / d_wall:10.2f}"
              f"{cpu:8.3f}{cpu / b_cpu:12.2f}{cpu / d_cpu:11.2f}{dev:10.1e}")
    if len(sys.argv) > 4:
        return
    # the plain-Python path, on fewer seed-steps (it is slow), against the compiled @ path on the same
    small = {"compiled @": (paths["custom @"][0], None),
             "plain NumPy": (ns.CustomModel(P, loss_grad_numpy, prepare=moments, plain_python=True, name="dl_numpy"),
                             None)}
    s_seeds, s_steps = 16, 100
    res = interleaved(small, data, theta0[:s_seeds], s_steps, 2)
    print(f"\nplain_python=True, {s_seeds} seeds × {s_steps} steps")
    for name, (sec, cpu, ds) in res.items():
        dev = float(np.max(np.abs(ds.theta_final.values - res["compiled @"][2].theta_final.values)))
        print(f"{name:<18}{sec:9.3f}{s_seeds * s_steps / sec:14.3g}{sec / res['compiled @'][0]:12.1f}× compiled"
              f"{dev:10.1e}")


if __name__ == "__main__":
    main()
