"""Benchmark: ensembles of two-layer ReLU networks under gradient flow (RK4), engine vs baselines.

Reference problem (issue 4): 20-64-1 ReLU network with biases, N = 256 shared teacher data points,
1024 seeds, RK4, h = 0.01, float64, all 64 rescale charges of every seed recorded every 10 steps.
The full 1000-step run takes minutes per implementation on a 2-core machine, so the timed runs take
BENCH_STEPS steps (default 20, env NOETHER_BENCH_STEPS) and report throughput in seed-steps per second,
which does not depend on the number of steps. Every baseline computes the same numbers (same initial
weights, same RK4, same charges at the same save times) and is checked against the engine.

Run:  .venv/bin/python -m pytest bench/test_bench_mlp.py --benchmark-only -q
  or  .venv/bin/python bench/test_bench_mlp.py          (prints the table of docs/performance/mlp.md)
  or  .venv/bin/python bench/test_bench_mlp.py --cpu [engine numpy torch jax peak]
      (single-threaded CPU time, time.process_time(), min over repetitions: the per-thread comparison
       that a shared, loaded machine still measures fairly)
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__" and "--cpu" in sys.argv:  # one thread everywhere, set before any import
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import numpy as np
import pytest

from noether_sim import init, simulate
from noether_sim.mlp import MLP, teacher_regression

N_IN, WIDTH, N_POINTS, SEEDS, H, SAVE_EVERY_STEPS = 20, 64, 256, 1024, 0.01, 10
BENCH_STEPS = int(os.environ.get("NOETHER_BENCH_STEPS", "20"))
FLOP_PER_GRAD = 2 * 2 * WIDTH * N_IN * N_POINTS + 6 * WIDTH * N_POINTS  # two GEMMs + elementwise


def problem(seeds=SEEDS):
    model = MLP((N_IN, WIDTH, 1), activation="relu", bias=True)
    data = teacher_regression(MLP((N_IN, 16, 1), activation="relu", bias=True), N_POINTS, noise=0.1, seed=0)
    theta0 = np.stack([init.Gaussian(bias_scale=0.1).draw(model, np.random.default_rng(s)) for s in range(seeds)])
    return model, data, theta0


def engine(model, data, theta0, n_steps):
    """Charges of every seed at every save time (seed, save, 64), from the compiled engine."""
    ids = np.arange(len(theta0))
    ds = simulate(model, data, method="rk4", h=H, n_steps=n_steps, save_every=SAVE_EVERY_STEPS * H,
                  seeds=len(theta0), init=init.Given(theta0), watch_seeds=ids)
    return ds.charge_watch.values


# ---------------------------------------------------------------- NumPy baseline

def _split(theta):
    S = theta.shape[0]
    W1 = theta[:, : WIDTH * N_IN].reshape(S, WIDTH, N_IN)
    b1 = theta[:, WIDTH * N_IN: WIDTH * (N_IN + 1)]
    W2 = theta[:, WIDTH * (N_IN + 1): WIDTH * (N_IN + 2)]
    b2 = theta[:, WIDTH * (N_IN + 2):]
    return W1, b1, W2, b2


def numpy_field(theta, X, Y):
    """−∇L for every row, batched: one large GEMM for each of W_1 X and Δ Xᵀ over all seeds."""
    S = theta.shape[0]
    W1, b1, W2, b2 = _split(theta)
    Z = (W1.reshape(S * WIDTH, N_IN) @ X).reshape(S, WIDTH, N_POINTS)
    Z += b1[:, :, None]
    Hd = np.maximum(Z, 0.0)
    f = np.matmul(W2[:, None, :], Hd)[:, 0, :] + b2
    E = (f - Y) / N_POINTS
    gW2 = np.matmul(Hd, E[:, :, None])[:, :, 0]
    D = (Z > 0) * W2[:, :, None] * E[:, None, :]
    gW1 = (D.reshape(S * WIDTH, N_POINTS) @ X.T).reshape(S, WIDTH * N_IN)
    return -np.concatenate([gW1, D.sum(axis=2), gW2, E.sum(axis=1, keepdims=True)], axis=1)


def numpy_charges(theta):
    W1, b1, W2, _ = _split(theta)
    return np.sum(W1 * W1, axis=2) + b1 * b1 - W2 * W2


def rk4_run(field, charges, theta, n_steps, X, Y):
    out = [charges(theta)]
    for n in range(1, n_steps + 1):
        k1 = field(theta, X, Y)
        k2 = field(theta + 0.5 * H * k1, X, Y)
        k3 = field(theta + 0.5 * H * k2, X, Y)
        k4 = field(theta + H * k3, X, Y)
        theta = theta + (H / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        if n % SAVE_EVERY_STEPS == 0:
            out.append(charges(theta))
    return np.stack(out, axis=1)


def numpy_baseline(model, data, theta0, n_steps):
    return rk4_run(numpy_field, numpy_charges, theta0.copy(), n_steps, data.X, data.Y[0])


# ---------------------------------------------------------------- PyTorch / JAX baselines (same algorithm)

def torch_baseline(model, data, theta0, n_steps):
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    X, Y = torch.from_numpy(data.X), torch.from_numpy(data.Y[0])

    def field(theta, X, Y):
        S = theta.shape[0]
        W1 = theta[:, : WIDTH * N_IN].reshape(S, WIDTH, N_IN)
        b1 = theta[:, WIDTH * N_IN: WIDTH * (N_IN + 1)]
        W2 = theta[:, WIDTH * (N_IN + 1): WIDTH * (N_IN + 2)]
        b2 = theta[:, WIDTH * (N_IN + 2):]
        Z = (W1.reshape(S * WIDTH, N_IN) @ X).reshape(S, WIDTH, N_POINTS) + b1[:, :, None]
        Hd = torch.clamp_min(Z, 0.0)
        f = torch.bmm(W2[:, None, :], Hd)[:, 0, :] + b2
        E = (f - Y) / N_POINTS
        gW2 = torch.bmm(Hd, E[:, :, None])[:, :, 0]
        D = (Z > 0) * W2[:, :, None] * E[:, None, :]
        gW1 = (D.reshape(S * WIDTH, N_POINTS) @ X.T).reshape(S, WIDTH * N_IN)
        return -torch.cat([gW1, D.sum(dim=2), gW2, E.sum(dim=1, keepdim=True)], dim=1)

    def charges(theta):
        S = theta.shape[0]
        W1 = theta[:, : WIDTH * N_IN].reshape(S, WIDTH, N_IN)
        b1 = theta[:, WIDTH * N_IN: WIDTH * (N_IN + 1)]
        W2 = theta[:, WIDTH * (N_IN + 1): WIDTH * (N_IN + 2)]
        return (torch.sum(W1 * W1, dim=2) + b1 * b1 - W2 * W2).numpy().copy()

    with torch.no_grad():
        return rk4_run(field, charges, torch.from_numpy(theta0.copy()), n_steps, X, Y)


def jax_baseline(model, data, theta0, n_steps):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    X, Y = jnp.asarray(data.X), jnp.asarray(data.Y[0])

    def field(theta):
        S = theta.shape[0]
        W1 = theta[:, : WIDTH * N_IN].reshape(S, WIDTH, N_IN)
        b1 = theta[:, WIDTH * N_IN: WIDTH * (N_IN + 1)]
        W2 = theta[:, WIDTH * (N_IN + 1): WIDTH * (N_IN + 2)]
        b2 = theta[:, WIDTH * (N_IN + 2):]
        Z = (W1.reshape(S * WIDTH, N_IN) @ X).reshape(S, WIDTH, N_POINTS) + b1[:, :, None]
        Hd = jnp.maximum(Z, 0.0)
        f = jnp.einsum("sk,skn->sn", W2, Hd) + b2
        E = (f - Y) / N_POINTS
        gW2 = jnp.einsum("skn,sn->sk", Hd, E)
        D = (Z > 0) * W2[:, :, None] * E[:, None, :]
        gW1 = (D.reshape(S * WIDTH, N_POINTS) @ X.T).reshape(S, WIDTH * N_IN)
        return -jnp.concatenate([gW1, D.sum(axis=2), gW2, E.sum(axis=1, keepdims=True)], axis=1)

    @jax.jit
    def chunk(theta):  # SAVE_EVERY_STEPS RK4 steps, fused
        def step(th, _):
            k1 = field(th)
            k2 = field(th + 0.5 * H * k1)
            k3 = field(th + 0.5 * H * k2)
            k4 = field(th + H * k3)
            return th + (H / 6) * (k1 + 2 * k2 + 2 * k3 + k4), None
        return jax.lax.scan(step, theta, None, length=SAVE_EVERY_STEPS)[0]

    theta = jnp.asarray(theta0)
    out = [numpy_charges(np.asarray(theta))]
    for _ in range(n_steps // SAVE_EVERY_STEPS):
        theta = chunk(theta)
        out.append(numpy_charges(np.asarray(theta)))
    return np.stack(out, axis=1)


BASELINES = {"numpy": numpy_baseline, "torch": torch_baseline, "jax": jax_baseline}


def available(name):
    try:
        __import__({"numpy": "numpy", "torch": "torch", "jax": "jax"}[name])
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------- pytest-benchmark entry points

@pytest.fixture(scope="module")
def ref():
    model, data, theta0 = problem()
    engine(model, data, theta0[:2], SAVE_EVERY_STEPS)  # compile (cached) outside the timing
    expected = engine(model, data, theta0, BENCH_STEPS)
    return model, data, theta0, expected


def test_bench_engine(benchmark, ref):
    model, data, theta0, expected = ref
    q = benchmark.pedantic(engine, args=(model, data, theta0, BENCH_STEPS), rounds=2, iterations=1)
    np.testing.assert_array_equal(q, expected)  # bit-reproducible
    benchmark.extra_info["seed_steps_per_s"] = SEEDS * BENCH_STEPS / benchmark.stats["mean"]


@pytest.mark.parametrize("name", list(BASELINES))
def test_bench_baseline(benchmark, ref, name):
    if not available(name):
        pytest.skip(f"{name} not importable")
    model, data, theta0, expected = ref
    if name == "jax":
        BASELINES[name](model, data, theta0, SAVE_EVERY_STEPS)  # compile outside the timing
    q = benchmark.pedantic(BASELINES[name], args=(model, data, theta0, BENCH_STEPS), rounds=1, iterations=1)
    # same numbers: differences are round-off of a different summation order, ε·√steps·|charge terms|
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-11 * scale)
    benchmark.extra_info["seed_steps_per_s"] = SEEDS * BENCH_STEPS / benchmark.stats["mean"]


# ---------------------------------------------------------------- plain script: the README table

def main():
    model, data, theta0 = problem()
    t = time.perf_counter()
    engine(model, data, theta0[:2], SAVE_EVERY_STEPS)
    print(f"engine first call (compile or cache load): {time.perf_counter() - t:.1f} s")
    rows = []
    t = time.perf_counter()
    expected = engine(model, data, theta0, BENCH_STEPS)
    rows.append(("engine (numba)", time.perf_counter() - t, 0.0))
    for name, fn in BASELINES.items():
        if not available(name):
            continue
        if name == "jax":
            fn(model, data, theta0, SAVE_EVERY_STEPS)
        t = time.perf_counter()
        q = fn(model, data, theta0, BENCH_STEPS)
        rows.append((name, time.perf_counter() - t, float(np.max(np.abs(q - expected)) / np.max(np.abs(expected)))))
    print(f"{SEEDS} seeds x {BENCH_STEPS} RK4 steps, 20-64-1 ReLU+bias, N={N_POINTS}, cpus={os.cpu_count()}")
    print("| implementation | wall s | seed-steps/s | GFLOP/s | max rel. diff vs engine |")
    print("|---|---|---|---|---|")
    for name, wall, diff in rows:
        rate = SEEDS * BENCH_STEPS / wall
        print(f"| {name} | {wall:.2f} | {rate:.0f} | {rate * 4 * FLOP_PER_GRAD / 1e9:.1f} | {diff:.1e} |")


def _cpu_seconds(fn, repeats):
    """Min over repeats of the process CPU time of fn() (one thread, so CPU time = one core's work)."""
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def cpu_main(names):
    """Single-threaded CPU-time table: engine on ENGINE_SEEDS seeds (per-seed cost does not depend on
    the batch), baselines on all 1024 seeds (their GEMM shapes do), BENCH_STEPS steps each."""
    import numba

    numba.set_num_threads(1)
    model, data, theta0 = problem()
    engine_seeds = int(os.environ.get("NOETHER_BENCH_ENGINE_SEEDS", "256"))
    repeats = int(os.environ.get("NOETHER_BENCH_REPEATS", "3"))
    t = time.process_time()
    engine(model, data, theta0[:2], SAVE_EVERY_STEPS)
    print(f"engine first call (compile or cache load): {time.process_time() - t:.1f} s CPU")
    expected = engine(model, data, theta0[:engine_seeds], BENCH_STEPS)
    print(f"1 thread, process CPU time, min of {repeats} (engine) / 1 (baselines), {BENCH_STEPS} RK4 steps")
    print("| implementation | seeds | CPU s | seed-steps/s | GFLOP/s | max rel. diff vs engine |")
    print("|---|---|---|---|---|---|")

    def row(name, seeds, sec, diff):
        rate = seeds * BENCH_STEPS / sec
        print(f"| {name} | {seeds} | {sec:.2f} | {rate:.0f} | {rate * 4 * FLOP_PER_GRAD / 1e9:.1f} | {diff} |",
              flush=True)

    for name in names:
        if name == "engine":
            sec = _cpu_seconds(lambda: engine(model, data, theta0[:engine_seeds], BENCH_STEPS), repeats)
            row("engine (numba)", engine_seeds, sec, "0")
        elif name == "peak":
            a = np.random.default_rng(0).standard_normal((4096, 4096))
            sec = _cpu_seconds(lambda: a @ a, 2)
            print(f"float64 peak: 4096^2 numpy matmul {sec:.2f} s CPU = {2 * 4096 ** 3 / sec / 1e9:.1f} GFLOP/s")
        elif available(name):
            fn = BASELINES[name]
            if name == "jax":
                fn(model, data, theta0, SAVE_EVERY_STEPS)  # compile outside the timing
            out = {}
            sec = _cpu_seconds(lambda: out.setdefault("q", fn(model, data, theta0, BENCH_STEPS)), 1)
            ref = out["q"][:engine_seeds]
            row(name, SEEDS, sec, f"{np.max(np.abs(ref - expected)) / np.max(np.abs(expected)):.1e}")


if __name__ == "__main__":
    if "--cpu" in sys.argv:
        cpu_main([a for a in sys.argv[1:] if a != "--cpu"] or ["engine", "numpy", "torch", "jax", "peak"])
    else:
        main()
