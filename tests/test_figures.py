"""Figures: files exist, and what is drawn is what is stored (read back from the axes)."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from noether_sim import plots
from noether_sim.results import load
from noether_sim.store import StoreWriter
from noether_sim.study import run_study, study_provenance
from study_helpers import quick_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = quick_config("seeds.count=12")
    path = tmp_path_factory.mktemp("fig") / "quick"
    writer = StoreWriter(path, cfg, study_provenance())
    run_study(cfg, writer)
    writer.finish()
    return path, load(path)


def _line(ax, gid):
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return line


def _finest(ds, scheme):
    k = int(np.nanargmin(ds.h.sel(scheme=scheme).values))
    return ds.sel(scheme=scheme).isel(step=k)


def test_drift_vs_time_draws_the_stored_seed_median(study):
    _, ds = study
    fig = plots.drift_vs_time(ds)
    for ax, charge in zip(fig.axes, ds.charge.values):
        assert ax.get_yscale() == "log" and "dimensionless" in ax.get_ylabel() and "time" in ax.get_xlabel()
        for s in ds.scheme.values:
            stored = _finest(ds, s).drift.sel(charge=charge)  # no seed diverged here: all seeds count
            line = _line(ax, f"median:{s}")
            np.testing.assert_array_equal(line.get_xdata(), ds.time.values[1:])
            np.testing.assert_array_equal(line.get_ydata(), stored.median("seed").values[1:])
        assert len(ax.collections) == ds.sizes["scheme"]  # one 5-95 % band per method, in order
        for s, band in zip(ds.scheme.values, ax.collections):
            stored = _finest(ds, s).drift.sel(charge=charge).values[:, 1:]
            edges = band.get_paths()[0].vertices[:, 1]
            for q in (0.05, 0.95):
                assert np.all(np.isin(np.quantile(stored, q, axis=0), edges)), (s, q)
    assert fig._suptitle is not None


def test_drift_vs_step_is_log_log_with_the_fitted_slope(study):
    _, ds = study
    fig = plots.drift_vs_step(ds)
    for ax, charge in zip(fig.axes, ds.charge.values):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        for s in ds.scheme.values:
            final = ds.drift.sel(scheme=s, charge=charge).isel(time=-1)
            line = _line(ax, f"median:{s}")
            np.testing.assert_array_equal(line.get_xdata(), ds.h.sel(scheme=s).values)
            np.testing.assert_array_equal(line.get_ydata(), final.median("seed").values)
            slope = np.polyfit(np.log(ds.h.sel(scheme=s).values), np.log(final.median("seed").values), 1)[0]
            (note,) = [t for t in ax.texts if t.get_gid() == f"slope:{s}"]
            assert note.get_text() == f"slope {slope:.2f}"
        # gradient descent's balance drift is first order in the learning rate (theory.md §3)
        gd = _line(ax, "median:gd")
        assert abs(plots.fitted_slope(gd.get_xdata(), gd.get_ydata()) - 1.0) < 0.1
    # slopes above a method's order (Heun ~3, dp5 ~6.5-7 on the balance charges) carry their reason
    above = [s for s in ds.scheme.values
             if plots.fitted_slope(*_line(fig.axes[0], f"median:{s}").get_data()) > int(ds.method_order.sel(scheme=s)) + 0.5]
    note = fig.get_supxlabel()
    assert above and all(s in note for s in above) and "gf-rk4" not in note and "docs/theory.md" in note


def test_loss_vs_time_draws_the_stored_loss(study):
    _, ds = study
    ax = plots.loss_vs_time(ds).axes[0]
    for s in ds.scheme.values:
        line = _line(ax, f"median:{s}")
        np.testing.assert_array_equal(line.get_xdata(), ds.time.values)
        np.testing.assert_array_equal(line.get_ydata(), _finest(ds, s).loss.median("seed").values)
    assert "loss" in ax.get_ylabel() and "dimensionless" in ax.get_ylabel()


def test_histogram_counts_the_stored_final_drift(study):
    _, ds = study
    fig = plots.drift_histogram(ds)
    for ax, charge in zip(fig.axes, ds.charge.values):
        hists = {p.get_gid(): p for p in ax.patches}
        total = 0
        for s in ds.scheme.values:
            values, edges, _ = hists[f"hist:{s}"].get_data()
            final = _finest(ds, s).drift.sel(charge=charge).isel(time=-1).values
            np.testing.assert_array_equal(values, np.histogram(final, bins=edges)[0])
            total += values.sum()
        assert total == ds.sizes["seed"] * ds.sizes["scheme"]  # every seed in some bin
        assert ax.get_ylabel() == "number of seeds"


def test_save_figures_writes_png_and_pdf(study, tmp_path):
    _, ds = study
    paths = plots.save_figures(ds, tmp_path)
    assert {p.name for p in paths} == {f"{n}.{ext}" for n in plots.FIGURES for ext in ("png", "pdf")}
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize("name", list(plots.FIGURES))
def test_figure_script_regenerates_from_the_store(study, tmp_path, monkeypatch, name):
    path, _ = study
    monkeypatch.setattr(sys, "argv", [f"figures/{name}.py", str(path), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as ex:
        runpy.run_path(str(ROOT / "figures" / f"{name}.py"), run_name="__main__")
    assert ex.value.code == 0
    assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.pdf").exists()
