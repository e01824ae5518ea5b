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
