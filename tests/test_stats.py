"""Streaming ensemble statistics (keep="stats"): the fold against NumPy over the per-seed run of the same
seeds, its bit-identity claim (any chunk size that is a multiple of FOLD_BLOCK, any thread count), failed
seeds excluded and counted, histograms, and bad input."""

import json

import numba
import numpy as np
import pytest

import noether_sim as ns
from noether_sim.stats import DIVERGED_LISTED, FOLD_BLOCK, Stats, quantile

EPS = np.finfo(float).eps
MODEL = ns.DeepLinear((3, 4, 2))
DATA = ns.data.synthetic_regression(3, 2, 16, noise=0.1)
N = 600  # two full fold blocks and a partial one
CALM = dict(method="rk4", h=0.05, n_steps=40, save_every=0.2, seeds=N)
# large steps from large weights: a few seeds diverge, at several different save times
WILD = dict(method="rk4", h=0.3, n_steps=20, save_every=0.3, seeds=N, init=ns.init.Gaussian(scale=1.5))


@pytest.fixture(scope="module")
def calm():
    return ns.simulate(MODEL, DATA, **CALM), ns.simulate(MODEL, DATA, keep="stats", **CALM)


@pytest.fixture(scope="module")
def wild():
    return ns.simulate(MODEL, DATA, **WILD), ns.simulate(MODEL, DATA, keep=Stats(chunk=FOLD_BLOCK), **WILD)


def _sum_bound(n):
    """Round-off bound (relative to Σ|x| / n) of the fold's mean: the longest chain of sequential additions
    is one fold block plus one merge per block, each adding at most one ε of the running sum."""
    return (FOLD_BLOCK + n // FOLD_BLOCK + 2) * EPS


def _compare(st, name, x, counted):
    """Fold of ``name`` against NumPy over the per-seed values x (seed first) where ``counted``."""
    xm = np.where(counted, x, np.nan)
    n = counted.sum(axis=0)
    assert np.array_equal(st[f"{name}_count"].values, n)
    mean = np.nanmean(xm, axis=0)
    var = np.nanvar(xm, axis=0, ddof=1)
    scale = np.nanmean(np.abs(xm), axis=0)
    np.testing.assert_array_less(np.abs(st[f"{name}_mean"].values - mean), _sum_bound(N) * scale + 1e-300)
    # the variance: the same bound on the centred squares, amplified by the conditioning 1 + mean²/var
    cond = 1 + np.divide(mean ** 2, var, out=np.zeros_like(var), where=var > 0)
    np.testing.assert_array_less(np.abs(st[f"{name}_var"].values - var), 4 * _sum_bound(N) * cond * (var + 1e-300))
    assert np.array_equal(st[f"{name}_min"].values, np.nanmin(xm, axis=0), equal_nan=True)
    assert np.array_equal(st[f"{name}_max"].values, np.nanmax(xm, axis=0), equal_nan=True)


def test_stats_equal_numpy_over_the_per_seed_run(calm):
    per, st = calm
    assert st.attrs["n_seeds"] == N and "seed" not in st.dims
    for name in ("loss", "drift", "drift_max", "charge_initial", "charge_final", "roundoff_floor"):
        x = per[name].values
        _compare(st, name, x, np.isfinite(x))
    # a variable that does not apply (gradient descent's prediction under gradient flow) rests on no value
    assert (st.predicted_count.values == 0).all() and np.isnan(st.predicted_mean.values).all()
    # the test can fail: the mean is many bounds away from a neighbouring statistic
    assert np.abs(st.loss_mean.values[-1] - np.median(per.loss.values[:, -1])) > 1e3 * _sum_bound(N) * st.loss_mean.values[-1]


def test_bit_identical_for_every_chunk_size_and_thread_count(calm):
    """The claim: one fold order (fold blocks of FOLD_BLOCK seeds, merged in seed order), so chunk sizes that
    are multiples of FOLD_BLOCK and thread counts give the same bits. Not claimed: another seed order, or
    NumPy's own summation (test above: equal to round-off)."""
    _, ref = calm
    threads = numba.get_num_threads()
    runs = []
    try:
        for chunk, t in ((FOLD_BLOCK, 1), (2 * FOLD_BLOCK, 2), (4 * FOLD_BLOCK, 1)):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            runs.append(ns.simulate(MODEL, DATA, keep=Stats(chunk=chunk), **CALM))
    finally:
        numba.set_num_threads(threads)
    for ds in runs:
        for name in ref.data_vars:
            assert np.array_equal(ds[name].values, ref[name].values, equal_nan=True), name
    with pytest.raises(ns.ConfigError, match="keep.chunk"):
        Stats(chunk=FOLD_BLOCK + 1)


def test_histogram_counts_every_counted_seed_in_its_bin(calm):
    per, st = calm
    for name in ("loss", "drift", "drift_max"):
        assert np.array_equal(st[f"{name}_hist"].values.sum(axis=-1), st[f"{name}_count"].values), name
    # bin by bin against a direct count: bin_lower ≤ x < bin_upper
    x = per.loss.values[:, -1]
    lower, upper = st.bin_lower.values, st.bin_upper.values
    direct = ((x[:, None] >= lower) & (x[:, None] < upper)).sum(axis=0)
    assert np.array_equal(st.loss_hist.values[-1], direct) and direct.max() > 1
    # the drift at t = 0 is exactly 0: below the log range, in the first bin
    assert st.drift_hist.values[0, :, 0].tolist() == [N] * st.sizes["charge"]
    # quantiles from the histogram: within the bin width (log10) of NumPy's over the per-seed values
    width = np.log10(upper[1] / lower[1])
    for q in (0.1, 0.5, 0.9):
        est = quantile(st, "loss", q).values[-1]
        assert abs(np.log10(est) - np.log10(np.quantile(x, q))) <= width, q


def test_failed_seeds_are_excluded_and_counted(wild):
    per, st = wild
    t_div = per.t_diverged.values
    diverged = np.isfinite(t_div)
    times = per.time.values
    assert 0 < diverged.sum() < N and len(np.unique(t_div[diverged])) >= 2  # divergence at several save times
    failed_by = (per.status.values != 0)[:, None] & ~np.isfinite(per.loss.values)
    assert np.array_equal(st.n_failed.values, failed_by.sum(axis=0))
    assert np.array_equal(st.n_diverged.values, (t_div[:, None] <= times[None, :] + 1e-12).sum(axis=0))
    assert np.array_equal(st.loss_count.values, N - st.n_failed.values)
    running = ~failed_by
    _compare(st, "loss", per.loss.values, running)
    _compare(st, "drift", per.drift.values, running[:, :, None] & np.isfinite(per.drift.values))
    _compare(st, "charge_final", per.charge_final.values, np.isfinite(per.charge_final.values))
    assert st.attrs["n_diverged"] == diverged.sum() == st.n_diverged.values[-1]
    assert st.attrs["n_failed"] == int((per.status.values != 0).sum())
    assert st.attrs["t_diverged_first"] == t_div[diverged].min()
    by = st.attrs["t_diverged_median_by"]
    k = int(np.searchsorted(times, by))
    assert np.median(t_div[diverged]) <= by and (t_div[diverged] <= by).sum() > diverged.sum() // 2
    assert (t_div[diverged] <= times[k - 1]).sum() <= diverged.sum() // 2
    assert np.array_equal(st.loss_hist.values.sum(axis=-1), st.loss_count.values)
    # no per-seed divergence record: the first DIVERGED_LISTED diverged seeds by id, with their times
    rows = np.flatnonzero(diverged)[:DIVERGED_LISTED]
    assert diverged.sum() > DIVERGED_LISTED  # the list is cut: the check that it keeps the first ones can fail
    assert json.loads(st.attrs["diverged_seeds"]) == per.seed.values[rows].tolist()
    assert json.loads(st.attrs["diverged_times"]) == t_div[rows].tolist()
    assert "n_diverged" in st.attrs["diverged_note"]


def test_bit_identical_across_chunkings_and_threads_with_failures(wild):
    """The same claim where seeds diverge (masks, counts, the listed diverged seeds), and with a chunk
    size that does not divide the number of seeds."""
    _, ref = wild
    threads = numba.get_num_threads()
    try:
        for chunk, t in ((3 * FOLD_BLOCK, 2), (16 * FOLD_BLOCK, 1)):
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            ds = ns.simulate(MODEL, DATA, keep=Stats(chunk=chunk), **WILD)
            for name in ref.data_vars:
                assert np.array_equal(ds[name].values, ref[name].values, equal_nan=True), (chunk, name)
            for key in ("diverged_seeds", "diverged_times", "n_diverged", "n_failed", "status_counts",
                        "t_diverged_first"):
                assert ds.attrs[key] == ref.attrs[key], key
    finally:
        numba.set_num_threads(threads)


def test_watched_seeds_and_ladder_in_stats_mode():
    kw = dict(CALM, watch_seeds=[5, 300])
    per = ns.simulate(MODEL, DATA, **kw)
    st = ns.simulate(MODEL, DATA, keep=Stats(chunk=FOLD_BLOCK), **kw)
    assert np.array_equal(st.charge_watch.values, per.charge_watch.values)
    lad = ns.run_ladder(MODEL, DATA, step_sizes=[0.1, 0.05, 0.025], t_end=1.0, seeds=300, keep="stats")
    assert lad.sizes["h"] == 3 and (lad.loss_count.values == 300).all()
    # the RK4 drift shrinks with h (order 4 at most: 16× per halving)
    drift = lad.drift_mean.isel(time=-1, charge=0).values
    assert drift[0] > drift[1] > drift[2] > 0
    an = ns.analyse_ladder(lad)  # verdicts from the means (tests/test_stats_verdicts.py)
    assert an.attrs["stats"] and an.sizes == {"charge": 1} and int(an.seeds_judged[0]) == 300


@pytest.mark.parametrize("keep, match", [
    ("everything", "keep="), ({"bins": 0}, "keep.bins"), ({"bin": 3}, "keep="),
    ({"range": (np.nan, 1.0)}, "keep.range"), ({"range": (1.0, np.inf)}, "keep.range"),
    ({"range": (1.0, 1.0)}, "keep.range"), ({"range": (2.0, 1.0)}, "keep.range"),
    ({"range": (0.0, 1.0)}, "keep.range"), ({"scale": "sqrt"}, "keep.scale"), ({"chunk": 0}, "keep.chunk"),
])
def test_bad_keep_is_refused_before_any_work(keep, match):
    with pytest.raises(ns.ConfigError, match=match):
        ns.simulate(MODEL, DATA, keep=keep, **CALM)


def test_stats_mode_holds_one_chunk(calm):
    """The memory check counts one chunk, not the ensemble, and the plan lists no seed ids (a SeedRange)."""
    from noether_sim.ensemble import SeedRange
    from noether_sim.simulate import plan

    p = plan(MODEL, DATA, method="rk4", h=0.05, n_steps=40, seeds=10 ** 7, keep="stats", memory_limit=2 ** 30,
             watch_seeds=[10 ** 7 - 1])
    assert sum(p.memory.values()) < 2 ** 27
    assert isinstance(p.ids, SeedRange) and len(p.ids) == 10 ** 7 and p.ids[-2:].tolist() == [10 ** 7 - 2, 10 ** 7 - 1]
    with pytest.raises(ns.ConfigError, match="watch_seeds"):
        plan(MODEL, DATA, method="rk4", h=0.05, n_steps=40, seeds=10 ** 7, keep="stats", watch_seeds=[10 ** 7])
    # per-seed mode still lists its ids; a list of ids stays a list in stats mode
    assert isinstance(plan(MODEL, DATA, method="rk4", h=0.05, n_steps=40, seeds=8).ids, np.ndarray)
    assert isinstance(plan(MODEL, DATA, method="rk4", h=0.05, n_steps=40, seeds=[3, 1], keep="stats").ids, np.ndarray)
    with pytest.raises(ns.ConfigError, match="memory_limit"):
        plan(MODEL, DATA, method="rk4", h=0.05, n_steps=40, seeds=10 ** 7, memory_limit=2 ** 30)


def test_study_and_sweep_keep_stats_into_a_store(tmp_path):
    from noether_sim.config import parse_config as parse
    from noether_sim.tables import format_summary

    keep = {"bins": 16, "range": [1e-18, 1.0], "chunk": FOLD_BLOCK}
    cfg = {"name": "s", "t_end": 0.0625, "save_every": 0.015625, "model": {"widths": [3, 4, 2]},
           "data": {"n_points": 16, "noise": 0.1}, "seeds": {"count": 300}, "record": {"keep": keep},
           "methods": {"rk4": {"dynamics": "gf", "method": "rk4", "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8]}}}
    ds = ns.run_study({**cfg, "sweep": {"init.scale": [0.5, 1.0]}}, tmp_path / "sweep")
    assert "seed" not in ds.dims and ds.sizes["init.scale"] == 2
    # a block read back from the store: the bits of the same run by simulate()
    direct = ns.simulate(MODEL, ns.data.synthetic_regression(3, 2, 16, noise=0.1), method="rk4", h=2.0 ** -7,
                         t_end=0.0625, save_every=0.015625, seeds=300, init=ns.init.Gaussian(scale=0.5), keep=keep)
    block = ds.sel({"init.scale": 0.5, "scheme": "rk4"}).isel(step=1)
    for name in ("drift_mean", "drift_var", "drift_hist", "loss_mean", "charge_final_mean", "n_failed"):
        assert np.array_equal(block[name].values, direct[name].values, equal_nan=True), name
    text = format_summary(ns.run_study(cfg, tmp_path / "study"))
    assert "300 seeds" in text and 'keep="stats"' in text
    with pytest.raises(ns.ConfigError, match="record.keep"):
        parse({**cfg, "record": {"keep": "all"}})
    with pytest.raises(ns.ConfigError, match="record.keep.bins"):
        parse({**cfg, "record": {"keep": {"bins": 0}}})


def test_cli_runs_and_reports_a_stats_sweep(tmp_path, capsys):
    from noether_sim.cli import main

    toml = tmp_path / "s.toml"
    toml.write_text('name = "st"\nt_end = 0.0625\nsave_every = 0.015625\n[model]\nwidths = [3, 4, 2]\n'
                    '[data]\nn_points = 16\nnoise = 0.1\n[seeds]\ncount = 300\n[record]\nkeep = "stats"\n'
                    '[methods.rk4]\ndynamics = "gf"\nmethod = "rk4"\nstep_sizes = [0.015625, 0.0078125, 0.00390625]\n'
                    '[sweep]\n"init.scale" = [0.5, 1.0]\n')
    assert main(["run", str(toml), "--out", str(tmp_path / "out")]) == 0
    assert main(["report", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("300 seeds") >= 4 and "statistics only" in out


def test_extrapolated_mean_drift_of_a_stats_ladder():
    """Richardson on the seed means is the mean of the seeds' own extrapolations (it is linear); its
    standard-error bound holds whatever the correlation between rungs (same seeds at every rung)."""
    from noether_sim.stats import extrapolate_means

    kw = dict(step_sizes=[0.2, 0.1, 0.05, 0.025], t_end=1.0, seeds=N)
    ex = extrapolate_means(ns.run_ladder(MODEL, DATA, keep="stats", **kw))
    per = ns.run_ladder(MODEL, DATA, **kw).sortby("h", ascending=False)
    d = per.drift.isel(time=-1).transpose("h", "seed", "charge").values
    own = d[-1] + (d[-1] - d[-2]) / (2.0 ** 4 - 1)  # each seed's extrapolation, RK4 (order 4), r = 2
    scale = np.abs(d[-2:]).mean(axis=1).max(axis=0)
    np.testing.assert_array_less(np.abs(ex.extrapolated.values - own.mean(axis=0)), 4 * _sum_bound(N) * scale)
    assert (ex.standard_error.values >= own.std(axis=0, ddof=1) / np.sqrt(N)).all()
    # the balance charge is conserved by the flow: the extrapolated mean drift is 0 within its errors,
    # while the finest rung's mean drift stands many standard errors from 0
    assert (np.abs(ex.extrapolated.values) <= 3 * ex.standard_error.values + ex.uncertainty.values).all()
    assert (ex.finest.values > 3 * ex.finest_standard_error.values).all()
    assert (ex.fitted_order.values >= 4 - 0.2).all()
