"""CustomModel throughput against the built-in deep linear kernel (issue 20), one run.

The reference problem of bench/README.md, smaller (deep linear 10-16-16-5 without biases, N = 64,
classic RK4, h = 0.01) run three ways from the same θ₀, each warm (compiled and cached first):

    built-in     ns.DeepLinear((10, 16, 16, 5)): its kernel, and the seed-interleaved fast path (lanes)
    built-in/driver  the same with NOETHER_SIM_LANES=0: the general driver the custom model also runs in
    custom @     a CustomModel whose loss_grad a user writes with @ on the second moments (prepare)
    custom loops the same gradient written with loops (no temporaries but its own)
    custom kernel    a CustomModel whose loss_grad calls the package's own deep linear gradient kernel
                     (kernels/linear.py): the same arithmetic as the built-in, so the difference is what
                     the CustomModel path itself costs (the indirect call, no inlining, a work buffer per call)

Each path is timed twice; the table shows the faster (the machine is shared).

Usage: .venv/bin/python bench/custom_model.py [n_seeds] [n_steps]   (defaults 256, 500)
"""
import os
import sys
import time

import numba
import numpy as np

import noether_sim as ns
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


def run(model, data, theta0, n_steps):
    t = time.perf_counter()
    ds = ns.simulate(model, data, method="rk4", h=0.01, n_steps=n_steps, save_every=0.01 * 10, seeds=len(theta0),
                     init=ns.init.Given(theta0))
    return time.perf_counter() - t, ds


def main():
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    global INTS, FLOATS, WORK
    data = ns.data.synthetic_regression(N0, N3, 64, noise=0.1, seed=0)
    builtin = ns.DeepLinear((N0, N1, N2, N3))
    from noether_sim.kernels.linear import linear_work_size

    INTS, FLOATS = builtin.descriptor(), builtin.constants(data)
    WORK = int(linear_work_size(INTS))
    theta0 = ns.init.Gaussian().rows(builtin, 0, np.arange(n_seeds))
    models = {"custom @": ns.CustomModel(P, loss_grad_matmul, prepare=moments, name="dl_matmul"),
              "custom loops": ns.CustomModel(P, loss_grad_loops, prepare=moments, name="dl_loops"),
              "custom kernel": ns.CustomModel(P, loss_grad_kernel, prepare=lambda X, Y: builtin.kernel_data(ns.data.from_arrays(X, Y)),
                                            name="dl_kernel"),
              "built-in": builtin}
    rows = {}
    for name, model in models.items():
        run(model, data, theta0[:2], 20)  # warm: compile (or load) every kernel
    for name, model in models.items():
        rows[name] = min((run(model, data, theta0, n_steps) for _ in range(2)), key=lambda r: r[0])
    os.environ["NOETHER_SIM_LANES"] = "0"
    run(builtin, data, theta0[:2], 20)
    rows["built-in/driver"] = min((run(builtin, data, theta0, n_steps) for _ in range(2)), key=lambda r: r[0])
    ref = rows["built-in"][1].theta_final.values
    print(f"deep linear 10-16-16-5, N=64, RK4 h=0.01, {n_seeds} seeds × {n_steps} steps, "
          f"{numba.get_num_threads()} threads")
    print(f"{'path':<18}{'seconds':>9}{'seed-steps/s':>14}{'× built-in':>12}{'× driver':>10}{'max|Δθ|':>10}")
    for name, (sec, ds) in rows.items():
        dev = float(np.max(np.abs(ds.theta_final.values - ref)))
        print(f"{name:<18}{sec:9.3f}{n_seeds * n_steps / sec:14.3g}{sec / rows['built-in'][0]:12.2f}"
              f"{sec / rows['built-in/driver'][0]:10.2f}{dev:10.1e}")
    # the plain-Python path, on fewer seed-steps (it is slow), against the compiled @ path on the same
    small = {"compiled @": models["custom @"],
             "plain NumPy": ns.CustomModel(P, loss_grad_numpy, prepare=moments, plain_python=True, name="dl_numpy")}
    s_seeds, s_steps = 16, 100
    res = {name: min((run(m, data, theta0[:s_seeds], s_steps) for _ in range(2)), key=lambda r: r[0])
           for name, m in small.items()}
    print(f"\nplain_python=True, {s_seeds} seeds × {s_steps} steps")
    for name, (sec, ds) in res.items():
        dev = float(np.max(np.abs(ds.theta_final.values - res["compiled @"][1].theta_final.values)))
        print(f"{name:<18}{sec:9.3f}{s_seeds * s_steps / sec:14.3g}{sec / res['compiled @'][0]:12.1f}× compiled"
              f"{dev:10.1e}")


if __name__ == "__main__":
    main()
