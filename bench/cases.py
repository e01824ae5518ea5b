"""The benchmark cases: ours and every baseline, each with the problem size it is timed on.

Shared by the pytest-benchmark suite (test_bench_engine.py) and the report (report.py), so both time
the same thing. Baselines that are too slow for the full reference problem are timed on the same
1024 seeds over fewer steps (still recording every 10 steps) and compared as seed-steps per second.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import baselines
from .problem import REFERENCE, Problem, backprop_gradient_flops, ours_result, run_flops, run_ours

# the small problem every baseline must reproduce ours on (agreement checks)
AGREEMENT = REFERENCE.with_(n_seeds=8, n_steps=200)


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    group: str  # "ours", "a" (what a researcher would write), "b" (our algorithm in NumPy) or
    # "c" (our algorithm, the moments, in JAX / PyTorch with autodiff: the same-algorithm baselines)
    timed: Problem  # the problem it is timed on
    prepare: Callable  # prepare(problem) -> run(theta0) -> result dict; compiles / warms up
    needs: str | None = None  # optional module it needs (jax, torch)

    def available(self) -> bool:
        return self.needs is None or importlib.util.find_spec(self.needs) is not None

    def flops(self, problem: Problem) -> float:
        """The FLOPs its own algorithm executes on ``problem``."""
        if self.group == "a":
            return run_flops(problem, backprop_gradient_flops(problem.widths, problem.n_points))
        return run_flops(problem)


def _prepare_ours(problem):
    # compile (or load from the cache) on a tiny run of the same configuration: one specialisation
    run_ours(problem.with_(n_seeds=2, n_steps=problem.record_every), problem.theta0()[:2])
    return lambda theta0: ours_result(run_ours(problem, theta0))


def _prepare_plain(fn):
    return lambda problem: (lambda theta0: fn(problem, theta0))


def _prepare_warm(fn):
    """Run once on one record interval first (PyTorch's first calls pay one-off set-up costs)."""
    def prepare(problem):
        fn(problem.with_(n_steps=problem.record_every), problem.theta0())
        return lambda theta0: fn(problem, theta0)
    return prepare


CASES = [
    Case("ours", "noether_sim.simulate (numba, moments)", "ours", REFERENCE, _prepare_ours),
    Case("numpy_moments", "(b) NumPy, our algorithm (moments)", "b", REFERENCE.with_(n_steps=100),
         _prepare_plain(baselines.run_numpy_moments)),
    Case("numpy_backprop", "(a) NumPy, backprop over N points", "a", REFERENCE.with_(n_steps=50),
         _prepare_plain(baselines.run_numpy_backprop)),
    Case("jax_autodiff", "(a) JAX jit+vmap+scan, autodiff", "a", REFERENCE.with_(n_steps=100),
         baselines.jax_runner, needs="jax"),
    Case("torch_autograd", "(a) PyTorch batched matmul, autograd", "a", REFERENCE.with_(n_steps=10),
         _prepare_warm(baselines.run_torch_autograd), needs="torch"),
    Case("jax_moments", "(c) JAX jit+vmap+scan, moments, autodiff", "c", REFERENCE.with_(n_steps=200),
         baselines.jax_moments_runner, needs="jax"),
    Case("torch_moments", "(c) PyTorch batched @, moments, autograd", "c", REFERENCE.with_(n_steps=30),
         _prepare_warm(baselines.run_torch_moments), needs="torch"),
]
CASE = {c.name: c for c in CASES}


def best_time(fn, budget_s: float = 10.0, max_repeats: int = 3) -> tuple[float, int, float]:
    """Best wall time of fn() over up to ``max_repeats`` calls, stopping once ``budget_s`` is spent
    (at least one call), its run count, and the CPU seconds (all threads) of that best call.
    The machine is shared, so the minimum is the least-disturbed estimate; CPU ÷ wall shows how many
    cores the call actually got."""
    best, cpu, n, spent = np.inf, np.nan, 0, 0.0
    while n < max_repeats and (n == 0 or spent + best <= budget_s):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if dt < best:
            best, cpu = dt, dc
        n, spent = n + 1, spent + dt
    return best, n, cpu


def measure(case: Case, budget_s: float = 10.0) -> dict:
    """Prepare (compile, warm up) and time one case on its timed problem."""
    problem = case.timed
    theta0 = problem.theta0()
    t0 = time.perf_counter()
    run = case.prepare(problem)
    prepare_s = time.perf_counter() - t0
    seconds, repeats, cpu = best_time(lambda: run(theta0), budget_s)
    return {"name": case.name, "label": case.label, "group": case.group, "seeds": problem.n_seeds,
            "steps": problem.n_steps, "seconds": seconds, "repeats": repeats, "prepare_s": prepare_s,
            "cores_used": cpu / seconds,
            "seed_steps_per_s": problem.seed_steps() / seconds,
            "gflops": case.flops(problem) / seconds / 1e9}
