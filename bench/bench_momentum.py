"""Cost of Gauss–Legendre (fixed-point solve) against RK4 on the reference problem, and the component
costs that decide fixed point vs simplified Newton. Usage:

    .venv/bin/python bench/bench_momentum.py [n_seeds=1024] [n_steps=1000]

Reference problem: DeepLinear 10-16-16-5, synthetic regression N = 64 (noise 0.1, seed 0), Gaussian init,
h = 0.01. Each method runs once to compile (not timed), then once timed.
"""

import sys
import time

import numpy as np

import noether_sim as ns
from noether_sim.kernels.entries import ensemble_loss_grad

n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
model = ns.DeepLinear((10, 16, 16, 5))
data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
h = 0.01
rows = []
for dynamics, method, extra in [("gf", "rk4", {}), ("gf", "gl1", {}), ("gf", "gl2", {}), ("gf", "gl3", {}),
                                ("momentum", "rk4", dict(tau=0.5, velocity=0.1)),
                                ("momentum", "verlet", dict(tau=0.5, velocity=0.1)),
                                ("momentum", "gl2", dict(tau=0.5, velocity=0.1))]:
    kw = dict(dynamics=dynamics, method=method, h=h, n_steps=n_steps, save_every=h * n_steps / 10, **extra)
    ns.simulate(model, data, seeds=2, **{**kw, "n_steps": 10, "save_every": h * 10})  # compile / load cache
    t0 = time.perf_counter()
    ds = ns.simulate(model, data, seeds=n_seeds, **kw)
    wall = time.perf_counter() - t0
    steps = float(ds.n_steps.sum()) if "n_steps" in ds else float(ds.n_accepted.sum())
    iters = float(ds.n_solve_iters.sum()) / steps if "n_solve_iters" in ds and method.startswith("gl") else np.nan
    bal = ds.drift_max.sel(charge=[c for c in ds.charge.values if c.startswith("D")])
    rows.append((dynamics, method, wall, steps / wall, float(ds.n_grad_evals.sum()) / steps, iters,
                 int(ds.n_retried_steps.sum()) if "n_retried_steps" in ds else 0, float(bal.isel(time=-1).max())))
    print(f"{dynamics:9s} {method:7s} wall {wall:8.2f} s  {steps / wall:11.4g} seed-steps/s  "
          f"grads/step {rows[-1][4]:6.2f}  sweeps/step {iters:6.2f}  retried {rows[-1][6]}  "
          f"max |ΔD| at T {rows[-1][7]:.3g}", flush=True)
base = rows[0][3]
for r in rows[1:4]:
    print(f"{r[1]} throughput relative to rk4 (gradient flow): {r[3] / base:.3f}")

# Simplified Newton would need, per seed, the Jacobian of the vector field (P gradient evaluations by
# differences, or more) and an LU of the (sP × sP) iteration matrix; time those pieces.
P = model.n_params
ints, floats = model.descriptor(), model.constants(data)
da, db = model.kernel_data(data)
theta = np.random.default_rng(0).standard_normal((P, P)) * 0.3
ensemble_loss_grad(int(ints[0]), theta, ints, floats, da, db)
t0 = time.perf_counter()
ensemble_loss_grad(int(ints[0]), theta, ints, floats, da, db)
t_grad = (time.perf_counter() - t0) / P
print(f"one gradient evaluation: {t_grad * 1e6:.2f} µs (batched over {P} rows); P = {P}")
for s in (1, 2, 3):
    M = np.eye(s * P) + 0.01 * np.random.default_rng(1).standard_normal((s * P, s * P))
    import scipy.linalg as sl
    t0 = time.perf_counter()
    lu = sl.lu_factor(M)
    t_lu = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        sl.lu_solve(lu, np.ones(s * P))
    t_solve = (time.perf_counter() - t0) / 10
    print(f"gl{s}: Newton setup per Jacobian = {P} gradients ({P * t_grad * 1e3:.2f} ms) + LU of "
          f"{s * P}² ({t_lu * 1e3:.2f} ms); each Newton iteration ≥ {s} gradients + a solve ({t_solve * 1e6:.1f} µs)"
          f" vs a fixed-point sweep = {s} gradients ({s * t_grad * 1e6:.1f} µs)")
