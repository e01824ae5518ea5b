"""CustomModel with a NumPy function vectorised over seeds (``vectorised=True``) against the compiled path
(issue 20, item 5), one run.

The deep linear reference 3-4-2 of examples/custom_models/deep_linear_reference.py (N = 16 points, gradient
descent h = 0.05) from the same θ₀, each path warm and timed twice (the faster kept):

    compiled     its numba.njit loss_grad (the CustomModel fast path)
    vectorised   ``loss_grad_vectorised`` (plain NumPy over (S, P) rows), ``vectorised=True``: called one
                 row at a time from the kernels (the engine integrates each seed on its own)
    one call     the vectorised function called once on all S rows per step, a bare NumPy loop with no
                 engine at all: what batching over seeds would be worth (an upper bound for that path)

Usage: .venv/bin/python bench/custom_vectorised.py [n_seeds] [n_steps]   (defaults 64, 200)
"""
import pathlib
import sys
import time

import numpy as np

import noether_sim as ns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402


def timed(f):
    best = None
    for _ in range(2):
        t0 = time.perf_counter()
        out = f()
        sec = time.perf_counter() - t0
        best = (sec, out) if best is None or sec < best[0] else best
    return best


def main():
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    data = ns.data.synthetic_regression(ref.N0, ref.N2, 16, noise=0.1, seed=3)
    theta0 = np.random.default_rng(0).standard_normal((n_seeds, ref.P)) * 0.7
    h = 0.05
    run = dict(dynamics="gd", h=h, n_steps=n_steps, seeds=n_seeds, init=ns.init.Given(theta0), progress=False,
               save_every=h * n_steps)
    fast = ref.model()
    vec = ns.CustomModel(ref.P, ref.loss_grad_vectorised, vectorised=True, charges=fast.charges)
    for m in (fast, vec):
        ns.simulate(m, data, **dict(run, n_steps=2, save_every=None))  # warm: compile, check
    rows = {"compiled": timed(lambda: ns.simulate(fast, data, **run).theta_final.values),
            "vectorised": timed(lambda: ns.simulate(vec, data, **run).theta_final.values)}
    X, Y = np.asarray(data.X), np.asarray(data.Y)

    def bare():
        th = theta0.copy()
        for _ in range(n_steps):
            th -= h * ref.loss_grad_vectorised(th, X, Y)[1]
        return th

    rows["one call"] = timed(bare)
    print(f"deep linear 3-4-2, N=16, GD h={h}, {n_seeds} seeds × {n_steps} steps")
    print(f"{'path':<12}{'seconds':>9}{'seed-steps/s':>14}{'× compiled':>12}{'max|Δθ|':>10}")
    for name, (sec, th) in rows.items():
        print(f"{name:<12}{sec:9.3f}{n_seeds * n_steps / sec:14.3g}{sec / rows['compiled'][0]:12.1f}"
              f"{float(np.max(np.abs(th - rows['compiled'][1]))):10.1e}")


if __name__ == "__main__":
    main()
