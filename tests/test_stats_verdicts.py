"""Ladder verdicts from statistics (keep="stats"): analyse_ladder on a statistics ladder judges seed means
with standard errors (ladder.analyse_stats_ladder); studies with keep="stats" get the verdicts too."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.ladder import analyse_stats_ladder
from noether_sim.laws import BASIS_LAW, BROKEN, CONSERVED

MODEL = ns.DeepLinear((4, 3, 2))
DATA = ns.data.synthetic_regression(4, 2, 16, seed=0)
STEPS = [0.1, 0.05, 0.025]


@pytest.fixture(scope="module")
def gl2():
    kw = dict(method="gl2", step_sizes=STEPS, t_end=0.5, seeds=16)
    return ns.run_ladder(MODEL, DATA, keep="stats", **kw), ns.run_ladder(MODEL, DATA, **kw)


def test_a_conserved_charge_is_conserved_from_means_as_seed_by_seed(gl2):
    stats, seeds = gl2
    a = ns.analyse_ladder(stats)
    assert a.attrs["stats"] and a.verdict.values.tolist() == [CONSERVED]
    assert ns.summarise_verdicts(ns.analyse_ladder(seeds))[0]["verdict"] == CONSERVED
    row = ns.summarise_verdicts(a)[0]
    assert row["verdict"] == CONSERVED and row["seeds_judged"] == 16 and row["seeds_excluded"] == 0


def test_the_finest_mean_drift_is_the_seed_mean_of_the_per_seed_analysis(gl2):
    stats, seeds = gl2
    a, b = ns.analyse_ladder(stats), ns.analyse_ladder(seeds)
    np.testing.assert_allclose(a.finest_drift.values, b.finest_drift.mean("seed").values, rtol=1e-12)
    sd = b.finest_drift.std("seed", ddof=1).values / np.sqrt(16)
    np.testing.assert_allclose(a.finest_standard_error.values, sd, rtol=1e-10)


def test_a_drift_that_does_not_vanish_with_h_is_broken_and_the_check_can_fail(gl2):
    stats, _ = gl2
    moved = stats.copy()
    # every seed's drift shifted by the same 1e-3 at every step size: the mean extrapolates to 1e-3,
    # tens of thousands of standard errors (the variance is unchanged) away from zero
    moved["drift_mean"] = stats.drift_mean + 1e-3
    a = analyse_stats_ladder(moved)
    assert a.verdict.values.tolist() == [BROKEN]
    np.testing.assert_allclose(a.extrapolated_drift.values, 1e-3, rtol=1e-6)


def test_gradient_descent_rests_on_its_exact_law():
    lad = ns.run_ladder(MODEL, DATA, dynamics="gd", step_sizes=STEPS, t_end=0.5, seeds=8, keep="stats")
    a = ns.analyse_ladder(lad)
    assert a.verdict.values.tolist() == [CONSERVED] and a.basis.values.tolist() == [BASIS_LAW]


def test_a_statistics_ladder_needs_three_rungs(gl2):
    with pytest.raises(ns.ConfigError, match="at least 3 step sizes"):
        ns.analyse_ladder(gl2[0].isel(h=[0, 1]))


def test_a_statistics_study_has_ladder_verdicts(tmp_path):
    from noether_sim.tables import summary_rows

    cfg = {"name": "s", "t_end": 0.5, "save_every": 0.5, "model": {"widths": [4, 3, 2]},
           "data": {"n_points": 16}, "seeds": {"count": 8}, "record": {"keep": "stats"},
           "methods": {"gl2": {"dynamics": "gf", "method": "gl2", "step_sizes": STEPS}}}
    rows = summary_rows(ns.run_study(cfg, tmp_path / "s"))
    assert [(r.method, r.verdict) for r in rows] == [("gl2", CONSERVED)]
    assert np.isfinite(rows[0].extrapolated_drift) and np.isfinite(rows[0].extra["standard_error"])
