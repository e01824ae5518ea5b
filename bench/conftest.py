"""Fixtures shared by the benchmark suites. Run with ``python -m pytest bench -q`` (the default
``testpaths`` is tests/, so the benchmarks never run unless asked for)."""

import pytest

from .cases import AGREEMENT
from .problem import ours_result, run_ours


@pytest.fixture(scope="session")
def agreement_reference():
    """Our engine on the agreement problem: (problem, theta0, result, charge scale per save)."""
    problem = AGREEMENT
    theta0 = problem.theta0()
    ds = run_ours(problem, theta0)
    assert int(ds.n_failed) == 0
    return problem, theta0, ours_result(ds), ds.scale.values


# filled by test_bench_engine.py, printed after the run (pytest-benchmark's own table shows seconds only)
SUMMARY: dict = {}


def pytest_terminal_summary(terminalreporter):
    if not SUMMARY:
        return
    tr = terminalreporter
    tr.section("engine throughput summary (targets reported, not asserted)")
    peak = SUMMARY.get("peak", {}).get("gflops")
    ours = SUMMARY.get("ours")
    for name, r in SUMMARY.items():
        if "seed_steps_per_s" not in r:
            continue
        ratio = f"ours ÷ it {ours['seed_steps_per_s'] / r['seed_steps_per_s']:6.2f}×" if ours and r is not ours else ""
        pct = f"{100 * r['gflops'] / peak:5.1f} % of peak" if peak else ""
        tr.write_line(f"{name:16s} {r['seeds']:5d} seeds × {r['steps']:4d} steps  "
                      f"{r['seed_steps_per_s']:12,.0f} seed-steps/s  {r['gflops']:6.2f} GFLOP/s {pct}  {ratio}")
    if peak:
        tr.write_line(f"float64 peak (4096² matmul): {peak:.1f} GFLOP/s")
    if "start" in SUMMARY:
        st = SUMMARY["start"]
        tr.write_line(f"cold start {st['cold_first_result_s']:.1f} s (target ≤ 20 s), "
                      f"warm start {st['warm_first_result_s']:.2f} s (target ≤ 2 s)")
