"""pytest-benchmark suite for the ensemble engine (issue 2): ours against every baseline.

    .venv/bin/python -m pytest bench -q

Each throughput benchmark records seeds, steps, seed-steps/s and GFLOP/s in ``extra_info`` (see
``--benchmark-json``); ``python bench/report.py`` prints the same measurements as tables with the
ratios. Targets (≥ 10× the best baseline (a), ≥ 3× baseline (b), ≥ 25 % of peak, cold start ≤ 20 s,
warm start ≤ 2 s) are reported, never asserted: performance goals live in benchmarks.

Agreement tests assert that every baseline computes the same numbers as simulate() on a small
problem (8 seeds × 200 RK4 steps of the reference configuration):
    final weights and loss   relative difference ≤ 1e-10
    charge drift             |Δdrift| ≤ 1e-12 × scale, scale = |W_{i+1}|² + |W_i|² (≈ 30 here)
The drift is a difference of O(scale) terms, so two correct float64 implementations differ in it by
round-off of size ε·scale·√steps ≈ 3e-15·scale after 200 steps; 1e-12 leaves a factor ~300 for the
different summation orders, and is still ~1e-4 of the drift RK4 builds up here (~1e-7), so a
baseline that got the charge or the RK4 weights wrong fails.
"""

import tempfile

import numpy as np
import pytest

from . import baselines
from .cases import CASE, CASES
from .conftest import SUMMARY
from .problem import measured_peak_gflops, start_times

THETA_LOSS_RTOL = 1e-10
DRIFT_OVER_SCALE = 1e-12

AGREE = {
    "numpy_moments": lambda p: (lambda th: baselines.run_numpy_moments(p, th)),
    "numpy_backprop": lambda p: (lambda th: baselines.run_numpy_backprop(p, th)),
    "jax_autodiff": baselines.jax_runner,
    "torch_autograd": lambda p: (lambda th: baselines.run_torch_autograd(p, th)),
    "jax_moments": baselines.jax_moments_runner,
    "torch_moments": lambda p: (lambda th: baselines.run_torch_moments(p, th)),
}


@pytest.mark.parametrize("name", list(AGREE))
def test_baseline_agrees_with_simulate(name, agreement_reference):
    if CASE[name].needs:
        pytest.importorskip(CASE[name].needs)
    problem, theta0, ours, scale = agreement_reference
    other = AGREE[name](problem)(theta0)
    assert other["theta"].shape == ours["theta"].shape
    assert other["loss"].shape == ours["loss"].shape and other["drift"].shape == ours["drift"].shape
    gap = baselines.agreement(ours, other, scale)
    assert gap["theta_rel"] <= THETA_LOSS_RTOL, gap
    assert gap["loss_rel"] <= THETA_LOSS_RTOL, gap
    assert gap["drift_over_scale"] <= DRIFT_OVER_SCALE, gap
    # the drift is resolved (far above round-off), so the comparison above is not vacuous
    assert np.min(ours["drift"][:, -1] / scale[:, -1]) > 100 * DRIFT_OVER_SCALE


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_throughput(benchmark, name):
    case = CASE[name]
    if case.needs:
        pytest.importorskip(case.needs)
    problem = case.timed
    theta0 = problem.theta0()
    run = case.prepare(problem)  # compile / warm up outside the timing
    benchmark.group = "engine throughput: 10-16-16-5, N=64, RK4 h=0.01, record every 10 steps"
    result = benchmark.pedantic(run, args=(theta0,), rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(
        seeds=problem.n_seeds, steps=problem.n_steps, label=case.label,
        seed_steps_per_s=problem.seed_steps() / seconds, gflops=case.flops(problem) / seconds / 1e9)
    SUMMARY[name] = dict(benchmark.extra_info, group=case.group)
    assert np.all(np.isfinite(result["loss"])) and np.all(np.isfinite(result["theta"]))


def test_peak_matmul(benchmark):
    """The machine's float64 peak: a 4096 × 4096 NumPy matrix product."""
    n = 4096
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    benchmark.group = "machine peak"
    benchmark.pedantic(lambda: a @ b, rounds=2, iterations=1, warmup_rounds=1)
    benchmark.extra_info["gflops"] = 2 * n ** 3 / benchmark.stats.stats.min / 1e9
    SUMMARY["peak"] = dict(benchmark.extra_info)


def test_cold_and_warm_start(benchmark):
    """Cold: a new process with an empty NUMBA_CACHE_DIR to the first result of the reference
    configuration; warm: new processes on the filled cache (what is timed)."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = start_times(cache)
        benchmark.group = "start-up (new process, seconds to first result)"
        benchmark.pedantic(start_times, args=(cache,), rounds=2, iterations=1)
        benchmark.extra_info.update(cold_first_result_s=cold["first_result"], cold_import_s=cold["import"],
                                    warm_first_result_s=benchmark.stats.stats.min)
        SUMMARY["start"] = dict(benchmark.extra_info)


def test_measured_peak_is_sane():
    # guards the GFLOP/s denominator: a 2-core machine with FMA does 1–500 GFLOP/s in float64
    assert 1.0 < measured_peak_gflops(n=1024, repeats=1) < 500.0
