"""`noether-sim table`: every step size of every ladder as CSV or JSON, read back against the store; the
sweep figures of drift against step size and the verdict map (inconclusive is not "0 % conserved")."""

import csv
import io
import json

import numpy as np
import pytest
from matplotlib.image import imread

import noether_sim as ns
from noether_sim import plots
from noether_sim.cli import main
from noether_sim.ladder import BROKEN, CONSERVED, INCONCLUSIVE
from noether_sim.results import sweep_point
from noether_sim.tables import ok_seeds, summary_rows, table_rows


def _sweep_cfg():
    return {
        "name": "tab", "t_end": 0.0625, "save_every": 0.015625,
        "model": {"widths": [4, 5, 3]}, "data": {"n_points": 12, "noise": 0.1}, "seeds": {"count": 4},
        "methods": {"gd": {"dynamics": "gd", "step_sizes": [2.0 ** -8, 2.0 ** -9, 2.0 ** -10]},
                    "rk4": {"dynamics": "gf", "method": "rk4", "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8]}},
        "sweep": {"init.scale": [0.5, 1.0]},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("tab") / "s"
    ns.run_study(_sweep_cfg(), out)
    return out


def test_csv_has_every_step_size_and_reads_back_as_the_store(store, capsys):
    assert main(["table", str(store), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ds = ns.load(store)
    # 2 points × 2 methods × 3 step sizes × 1 charge (D1)
    assert len(rows) == 12
    assert list(rows[0])[:4] == ["init.scale", "method", "step", "h"]
    for r in rows:
        p = [0.5, 1.0].index(float(r["init.scale"]))
        sub = sweep_point(ds, p)
        k = int(r["step"])
        assert float(r["h"]) == float(sub.h.sel(scheme=r["method"]).values[k])
        final = sub.drift.sel(scheme=r["method"], charge=r["charge"]).isel(step=k, time=-1).values
        assert float(r["drift_median"]) == float(np.median(final[ok_seeds(sub, r["method"])]))
    hs = {(r["init.scale"], r["method"]): set() for r in rows}
    for r in rows:
        hs[(r["init.scale"], r["method"])].add(float(r["h"]))
    assert all(len(v) == 3 for v in hs.values())  # not only the finest
    # the ladder's verdict, the same on every rung, as the summary reports it
    for r in rows:
        sub = sweep_point(ds, [0.5, 1.0].index(float(r["init.scale"])))
        (want,) = [w for w in summary_rows(sub) if (w.method, w.charge) == (r["method"], r["charge"])]
        assert r["verdict"] == want.verdict and float(r["fitted_order"]) == want.fitted_order
    assert rows[0]["predicted_median"] != "" and rows[-1]["predicted_median"] == ""  # gd has a law, rk4 none


def test_json_is_the_same_rows(store, tmp_path, capsys):
    path = tmp_path / "t.json"
    assert main(["table", str(store), "--json", "--out", str(path)]) == 0
    rows = json.loads(path.read_text())
    expected = table_rows(ns.load(store))
    assert len(rows) == len(expected) == 12
    for got, want in zip(rows, expected):
        assert got["h"] == want["h"] and got["drift_median"] == want["drift_median"]
        assert got["verdict"] == want["verdict"]
        assert got["residual_median"] == (None if np.isnan(want["residual_median"]) else want["residual_median"])


def test_sweep_figures_are_drawn_and_not_blank(store, tmp_path):
    ds = ns.load(store)
    paths = plots.save_figures(ds, tmp_path)
    assert {p.name for p in paths} >= {"sweep_drift_vs_step.png", "sweep_verdicts.png"}
    for p in paths:
        if p.suffix == ".png":
            assert np.std(imread(p)[..., :3]) > 0.05, p
    fig = plots.sweep_drift_vs_step(ds)
    (ax,) = [a for a in fig.axes if a.get_title().startswith("gd, ")]
    line = [ln for ln in ax.get_lines() if ln.get_gid() == "point:1:gd:D1"][0]
    sub = sweep_point(ds, 1)
    np.testing.assert_array_equal(line.get_xdata(), sub.h.sel(scheme="gd").values)


def test_verdict_map_does_not_paint_inconclusive_as_zero_conserved(store):
    ds = ns.load(store)
    from noether_sim.results import with_analysis

    ds = with_analysis(ds)
    # make every rk4 seed inconclusive and every gd seed broken: the two must look different
    v = ds.verdict.copy()
    v.loc[{"scheme": "rk4"}] = INCONCLUSIVE
    v.loc[{"scheme": "gd"}] = BROKEN
    fig = plots.sweep_verdicts(ds.assign(verdict=v))
    maps = {im.get_gid(): im.get_array() for a in fig.axes for im in a.get_images()}
    assert np.ma.getmaskarray(maps["map:rk4:D1"]).all()  # no decided seed: masked, drawn grey
    assert not np.ma.getmaskarray(maps["map:gd:D1"]).any() and np.all(maps["map:gd:D1"] == 0.0)
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert texts.count("inconcl.") == 2 and texts.count("broken") == 2
    # a cell where some seeds are decided says how many
    v = v.where((v.scheme != "rk4") | (v.seed != 1), CONSERVED)
    fig = plots.sweep_verdicts(ds.assign(verdict=v))
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert texts.count("inconcl.\n1 of 4 decided") == 2


def test_printed_tables_point_to_the_theory_page_of_the_docs(store):
    from noether_sim.tables import format_any_summary

    text = format_any_summary(ns.load(store))
    assert "docs/theory.md, 'What integrators do to charges'" in text
    assert "theory.md" not in text.replace("docs/theory.md", "")  # no reference to a file users lack


def test_public_models_and_teacher_data_at_the_top_level():
    from noether_sim import mlp

    assert ns.MLP is mlp.MLP and ns.DeepLinear is ns.models.DeepLinear
    assert ns.teacher_regression is mlp.teacher_regression and ns.teacher_classification is mlp.teacher_classification
    assert {"MLP", "teacher_regression", "teacher_classification"} <= set(ns.__all__)


def test_step_size_is_an_axis_like_a_swept_key(store):
    from noether_sim.tables import by_step_size

    ds = ns.load(store)
    gd = by_step_size(ds, "gd")
    assert "h" in gd.dims and "step" not in gd.dims
    assert list(gd.h.values) == [2.0 ** -8, 2.0 ** -9, 2.0 ** -10]
    a = gd.drift.sel(h=2.0 ** -9, charge="D1").isel(time=-1)
    b = ds.drift.sel(scheme="gd", charge="D1").isel(step=1, time=-1)
    np.testing.assert_array_equal(a.values, b.values)
    assert gd.drift.sel(charge="D1").isel(time=-1).median("seed").dims == ("init.scale", "h")
    with pytest.raises(ns.ConfigError, match="method"):
        by_step_size(ds, "nope")
    # a sweep whose points run different ladders has no single h axis
    import xarray as xr

    halved = ds.assign_coords(h=ds.h * xr.DataArray([1.0, 0.5], dims="init.scale"))
    with pytest.raises(ns.ConfigError, match="step sizes differ between sweep points"):
        by_step_size(halved, "gd")
