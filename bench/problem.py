"""The reference problem of issue 2, FLOP counts of our algorithm, and the machine's float64 peak.

Reference: widths 10-16-16-5 deep linear network (no biases), N = 64 data points shared by all seeds,
1024 seeds, classic RK4, h = 0.01, 1000 steps, float64, loss and both balance charges recorded every
10 steps. Everything that runs it (ours and every baseline) starts from the same initial weights:
the rows ``simulate()`` itself draws by default (Gaussian init, root seed 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

import noether_sim
from noether_sim.init import Gaussian, Given
from noether_sim.ensemble import initial_weights

# RK4 weights and the stage coefficients of the classic tableau (c = 0, ½, ½, 1).
RK4_STAGE_A = (0.5, 0.5, 1.0)
RK4_B = (1 / 6, 1 / 3, 1 / 3, 1 / 6)


@dataclass(frozen=True)
class Problem:
    widths: tuple = (10, 16, 16, 5)
    n_points: int = 64
    noise: float = 0.1
    n_seeds: int = 1024
    h: float = 0.01
    n_steps: int = 1000
    record_every: int = 10  # steps between recordings (save_every = record_every · h)

    def with_(self, **changes) -> "Problem":
        return replace(self, **changes)

    @property
    def model(self):
        return noether_sim.DeepLinear(self.widths)

    @property
    def data(self):
        return noether_sim.data.synthetic_regression(self.widths[0], self.widths[-1], self.n_points,
                                                     noise=self.noise)

    @property
    def save_every(self) -> float:
        return self.record_every * self.h

    @property
    def n_saves(self) -> int:
        return self.n_steps // self.record_every + 1

    def theta0(self) -> np.ndarray:
        """The initial rows simulate() draws by default for seeds 0 … n_seeds − 1 (a fresh copy)."""
        return _initial_rows(self.widths, self.n_seeds).copy()

    def seed_steps(self) -> int:
        return self.n_seeds * self.n_steps


REFERENCE = Problem()


@lru_cache(maxsize=8)
def _initial_rows(widths, n_seeds):
    # drawing seed by seed costs ~1 ms per seed, so the benchmarks draw once and reuse the rows
    return initial_weights(noether_sim.DeepLinear(widths), Gaussian(), np.arange(n_seeds), 0)


def run_ours(problem: Problem, theta0: np.ndarray | None = None):
    """Our engine on the problem; with ``theta0`` the rows are passed in (no random draws timed)."""
    if problem.n_steps % problem.record_every:
        raise ValueError("n_steps must be a multiple of record_every")
    init = Given(theta0) if theta0 is not None else None
    return noether_sim.simulate(problem.model, problem.data, method="rk4", h=problem.h,
                                n_steps=problem.n_steps, save_every=problem.save_every,
                                seeds=problem.n_seeds, init=init)


def ours_result(ds) -> dict:
    """The numbers every baseline must reproduce, from a simulate() dataset."""
    balance = ds.charge_kind == "model"  # the D_i; the isometric J_i are NaN under gradient flow
    return {"theta": ds.theta_final.values, "loss": ds.loss.values, "drift": ds.drift.sel(charge=balance).values}


# ---------------------------------------------------------------- FLOP counts

def gradient_flops(widths) -> int:
    """FLOPs of one loss + gradient evaluation of our algorithm (kernels/linear.py, no biases).

    The kernel runs the cheaper of two orders of the matrix chain (``_chain_costs``, which counts
    multiply-adds): products from the input side (M_i = W_i M_{i−1}, then G_i = Δ_i M_{i−1}ᵀ and
    Δ_{i−1} = W_iᵀΔ_i) or from the output side (R_i = W_L … W_{i+1}, Φ_i = E M_{i−1}ᵀ, G_i = R_iᵀ Φ_i),
    which wins for 10-16-16-5 (6,740 against 10,580 multiply-adds). Both include T = ÃΣxx. Plus the
    loss and E = T − Σyx (5 n_L n_0) and the vector field's negation (P).
    """
    from noether_sim.kernels.linear import _chain_costs

    n0, L = widths[0], len(widths) - 1
    ints = noether_sim.DeepLinear(tuple(widths)).descriptor()
    multiply_adds = min(_chain_costs(ints))
    return 2 * multiply_adds + 5 * widths[L] * n0 + n_params(widths)


def n_params(widths) -> int:
    return sum(widths[i] * widths[i - 1] for i in range(1, len(widths)))


def charge_flops(widths) -> int:
    """D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ for every hidden layer, plus the drift norm."""
    flops = 0
    for i in range(1, len(widths) - 1):
        n = widths[i]
        flops += 2 * n * n * (widths[i + 1] + widths[i - 1]) + 4 * n * n
    return flops


def backprop_gradient_flops(widths, n_points: int) -> int:
    """FLOPs of one gradient by a forward pass over the N points and backprop (baselines (a)):
    H_i = W_i H_{i−1} (2N n_i n_{i−1}), G_i = Δ_i H_{i−1}ᵀ (same), Δ_{i−1} = W_iᵀΔ_i for i ≥ 2 (same),
    the residual, the loss and Δ_L = R/N (4 N n_L)."""
    L = len(widths) - 1
    flops = 4 * n_points * widths[L]
    for i in range(1, L + 1):
        flops += (6 if i >= 2 else 4) * n_points * widths[i] * widths[i - 1]
    return flops


def run_flops(problem: "Problem", gradient=None) -> float:
    """FLOPs of a whole run, all seeds: RK4 steps (4 gradients, the stage sums 3 × 2P, the update 4 × 2P) plus
    one recording (a gradient for the loss, the charges) at every save time, t = 0 included."""
    widths = problem.widths
    grad = gradient_flops(widths) if gradient is None else gradient
    P = n_params(widths)
    per_step = 4 * grad + 3 * 2 * P + 4 * 2 * P
    return problem.n_seeds * (problem.n_steps * per_step + problem.n_saves * (grad + charge_flops(widths)))


# ---------------------------------------------------------------- the machine

def measured_peak_gflops(n: int = 4096, repeats: int = 3) -> float:
    """Best float64 GFLOP/s of an n × n NumPy matrix product (the machine's practical peak)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    a @ b  # warm up (thread pool, pages)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def blas_info() -> str:
    """The BLAS behind NumPy (the peak measurement's kernel)."""
    try:
        from threadpoolctl import threadpool_info

        info = [f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')}, {d.get('num_threads')} threads)"
                for d in threadpool_info() if d.get("user_api") == "blas"]
        if info:
            return "; ".join(info)
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "?").strip()
    cores = fields.get("CPU(s)", "?").strip()
    flags = fields.get("Flags", "")
    simd = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "SSE")
    return f"{name} (family {fields.get('CPU family', '?').strip()}, model {fields.get('Model', '?').strip()}), {cores} cores, {simd}"


# ---------------------------------------------------------------- cold and warm start

_START_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import noether_sim
t_import = time.perf_counter() - t0
m = noether_sim.DeepLinear((10, 16, 16, 5))
d = noether_sim.data.synthetic_regression(10, 5, 64, noise=0.1)
# the reference run's configuration on 2 seeds × 10 steps: the same (single) kernel specialisation
noether_sim.simulate(m, d, method="rk4", h=0.01, n_steps=10, save_every=0.1, seeds=2)
t_first = time.perf_counter() - t0
print(json.dumps({"import": t_import, "first_result": t_first}))
"""


def start_times(cache_dir: str) -> dict:
    """A fresh interpreter with NUMBA_CACHE_DIR=cache_dir imports noether_sim and runs the reference
    configuration on 2 seeds × 10 steps. Returns seconds from launching the interpreter (the parent's
    clock, so Python's own start-up counts) to the end of the import and to the first result.

    With an empty cache_dir this is the cold start (every kernel compiled); run again with the same
    cache_dir it is the warm start (every kernel loaded from the cache)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _START_SCRIPT], env=env, capture_output=True, text=True,
                         check=True)
    total = time.perf_counter() - t0
    inner = json.loads(out.stdout.strip().splitlines()[-1])
    startup = total - inner["first_result"]  # interpreter start-up before our first line
    return {"import": startup + inner["import"], "first_result": total}
