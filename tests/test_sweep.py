"""Sweeps: the grid of a [sweep] table, every point validated before any work, and one Dataset with a
dimension per swept key whose every point equals that point run as a plain study."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import noether_sim as ns
from noether_sim._validate import ConfigError
from noether_sim.builders import build_data, build_init, build_model
from noether_sim.cli import main
from noether_sim.results import sweep_point
from noether_sim.tables import format_any_summary
from noether_sim.study import run_block
from noether_sim.sweep import plan

ROOT = Path(__file__).resolve().parents[1]


def small_sweep(sweep=None, **top):
    """A small deep linear study (4 seeds, 2 methods × 3 step sizes) with a [sweep] table."""
    cfg = {
        "name": "small", "t_end": 0.0625, "save_every": 0.015625,
        "model": {"widths": [6, 8, 8, 3]}, "data": {"n_points": 16, "noise": 0.1},
        "seeds": {"count": 4},
        "methods": {"gd": {"dynamics": "gd", "step_sizes": [2.0 ** -8, 2.0 ** -9, 2.0 ** -10]},
                    "rk4": {"dynamics": "gf", "method": "rk4", "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8]}},
        **top,
    }
    if sweep is not None:
        cfg["sweep"] = sweep
    return cfg


# ---- the grid ----

def test_grid_is_the_cartesian_product_in_the_order_written():
    p = plan(small_sweep({"init.scale": [0.5, 1, 2], "model.widths": [[6, 8, 3], [6, 8, 8, 3]]}))
    assert p.shape == (3, 2) and len(p.points) == 6
    assert [(c["init"]["scale"], len(c["model"]["widths"])) for c in p.points] == [
        (0.5, 3), (0.5, 4), (1.0, 3), (1.0, 4), (2.0, 3), (2.0, 4)]
    assert p.describe(1) == "init.scale=0.5, model.widths=6-8-8-3"


def test_zip_group_varies_its_keys_together():
    p = plan(small_sweep({"init.scale": [0.5, 1], "zip": [{"weight_decay": [0, 1e-3, 1e-2],
                                                            "data.noise": [0.0, 0.1, 0.2]}]}))
    assert p.shape == (2, 3)
    assert [(c["weight_decay"], c["data"]["noise"]) for c in p.points[:3]] == [(0, 0), (1e-3, 0.1), (1e-2, 0.2)]
    assert [a.name for a in p.axes] == ["init.scale", "weight_decay"]


def test_a_study_without_sweep_is_one_plain_study():
    p = plan(small_sweep())
    assert p.points is None and p.config["seeds"]["count"] == 4


@pytest.mark.parametrize("sweep, message", [
    ({"init.scale": [1.0, -1.0]}, r"sweep point 1 \(init.scale=-1.0\) is invalid: init.scale=-1.0 is invalid: must be >= 0"),
    ({"model.activation": ["relu", "tanh"]},
     r"sweep point 0 \(model.activation='relu'\) is invalid: model.activation='relu' is invalid: is only used with model.kind = 'mlp'"),
    ({"init.scal": [1.0, 2.0]}, r"unknown key 'init.scal'.*did you mean 'init.scale'"),
    ({"methods.rk4.method": ["rk4", "dp45"]}, r"sweep point 1 \(methods.rk4.method='dp45'\) is invalid: methods.rk4.method='dp45' is invalid: .*one of"),
    ({"init.scale": []}, r"init.scale=\[\] is invalid: must be a non-empty list"),
    ({"init.scale": 1.0}, r"init.scale=1.0 is invalid: must be a non-empty list"),
    ({"init.scale": [1, 1]}, r"values must be distinct"),
    ({"zip": [{"init.scale": [1, 2], "weight_decay": [0.0]}]}, r"sweep.zip\[0\].*same length"),
    ({"init.scale": [1], "zip": [{"init.scale": [2]}]}, r"swept twice"),
    ({"sweep.x": [1]}, r"cannot sweep itself"),
    ({}, r"sweep=\{\} is invalid"),
])
def test_invalid_sweep_names_key_and_value(sweep, message):
    with pytest.raises(ConfigError, match=message):
        plan(small_sweep(sweep))


def test_every_point_is_validated_before_any_work(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text((ROOT / "examples" / "sweep_balance.toml").read_text()
                    .replace('"weight_decay" = [0.0, 0.001]', '"weight_decay" = [0.0, -0.001]'))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "sweep point 1 (init.scale=0.5, model.widths=[10, 16, 5], weight_decay=-0.001)" in capsys.readouterr().err
    assert not out.exists()


def test_example_sweep_file_is_valid():
    p = plan(ROOT / "examples" / "sweep_balance.toml")
    assert p.shape == (3, 2, 2) and p.name == "sweep_balance"


# ---- running and loading ----

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cfg = small_sweep({"init.scale": [0.5, 2.0], "model.widths": [[6, 8, 3], [6, 8, 8, 3]]})
    out = tmp_path_factory.mktemp("sweep") / "small"
    ds = ns.run_study(cfg, out)
    return cfg, out, ds


def test_sweep_dataset_has_one_dimension_per_swept_key(swept):
    _, out, ds = swept
    assert ds.attrs["complete"] is True
    assert ds.drift.dims[:4] == ("init.scale", "model.widths", "scheme", "step")
    assert list(ds["init.scale"].values) == [0.5, 2.0]
    assert list(ds["model.widths"].values) == ["6-8-3", "6-8-8-3"]
    assert list(ds.charge.values) == ["D1", "D2"]  # the union; the 2-layer points have D1 only
    assert ds.theta_initial.dims[:2] == ("init.scale", "model.widths")
    assert ds.drift.chunks is not None  # lazy: Dask arrays over the store
    # the selection a researcher writes
    med = ds.extrapolated_drift.sel({"init.scale": 2.0, "model.widths": "6-8-8-3", "scheme": "rk4"}).median("seed")
    assert med.sizes == {"charge": 2} and np.all(np.isfinite(med.values))
    # the shallower network has no D2: padding, never data
    assert np.all(np.isnan(ds.drift.sel({"model.widths": "6-8-3", "charge": "D2"}).values))


def test_every_sweep_point_is_bit_identical_to_that_point_run_alone(swept):
    cfg, _, ds = swept
    p = plan(cfg)
    for i in (0, 3):
        point = p.points[i]
        sub = sweep_point(ds, i)
        model, data, init = build_model(point), build_data(point), build_init(point)
        for label, k in (("gd", 2), ("rk4", 0)):
            ref = run_block(point, label, k, model, data, init)
            got = sub.sel(scheme=label).isel(step=k)
            for name in ("loss", "drift", "charge_final", "status", "n_grad_evals"):
                assert np.array_equal(got[name].values, ref[name].values, equal_nan=True), (i, label, name)
            n = ref.sizes["param"]
            np.testing.assert_array_equal(sub.theta_initial.values[:, :n], ref.theta_initial.values)


def test_report_prints_verdicts_per_sweep_point(swept, capsys):
    _, out, _ = swept
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sweep 'small': 4 points over init.scale (2) × model.widths (2)" in text
    for desc in ("init.scale=0.5, model.widths=6-8-3", "init.scale=2, model.widths=6-8-8-3"):
        assert f"=== point" in text and desc in text
    sections = text.split("=== point")[1:]
    assert len(sections) == 4
    assert "conserved by the flow" in sections[0]  # small init: the ladders resolve the balance charges
    assert all(("conserved by the flow" in s) or ("inconclusive" in s) or ("broken" in s) for s in sections)
    assert "D2" not in sections[0] and "D2" in sections[1]


def test_partial_sweep_loads_finished_points(swept, tmp_path):
    import shutil

    _, out, ds = swept
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "COMPLETE").unlink()
    for p in (copy / "blocks").glob("p3__*.done"):
        p.unlink()
    part = ns.load(copy, allow_partial=True)
    assert part.attrs["complete"] is False
    assert np.all(np.isnan(part.drift.isel({"init.scale": 1, "model.widths": 1}).values))
    xr.testing.assert_identical(part.drift.isel({"init.scale": 0}), ds.drift.isel({"init.scale": 0}))
    assert "no finished block" in format_any_summary(part)


def test_swept_step_sizes_give_h_the_sweep_dimension(tmp_path):
    cfg = small_sweep({"zip": [{"methods.gd.step_sizes": [[2.0 ** -8, 2.0 ** -9, 2.0 ** -10],
                                                            [2.0 ** -9, 2.0 ** -10, 2.0 ** -11]],
                                "seeds.root": [0, 1]}]})
    del cfg["methods"]["rk4"]
    ds = ns.run_study(cfg, tmp_path / "s")
    assert ds.h.dims == ("methods.gd.step_sizes", "scheme", "step")
    assert list(ds["seeds.root"].values) == [0, 1] and ds["seeds.root"].dims == ("methods.gd.step_sizes",)
    assert ds.h.values[1, 0, 0] == 2.0 ** -9


@pytest.mark.slow  # a whole study or sweep through the CLI: the README's quick command leaves it out
def test_cli_runs_a_sweep_toml_prints_per_point_and_draws_sweep_figures(tmp_path, capsys):
    toml = tmp_path / "grid.toml"
    toml.write_text('''
name = "grid"
t_end = 0.0625
save_every = 0.015625
[model]
widths = [6, 8, 3]
[data]
n_points = 16
[seeds]
count = 3
[methods.rk4]
dynamics = "gf"
method = "rk4"
step_sizes = [0.015625, 0.0078125, 0.00390625]
[sweep]
"init.scale" = [0.5, 1.0]
"weight_decay" = [0.0, 0.01]
''')
    out = tmp_path / "out"
    assert main(["run", str(toml), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "study 'grid': 3 seeds, 4 sweep points × 1 methods, 12 blocks" in text
    assert text.count("=== point") == 4 and "init.scale=1, weight_decay=0.01" in text
    for name in ("sweep_drift", "sweep_order", "sweep_verdicts"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert main(["status", str(out)]) == 0
    assert "4 sweep points: 12 / 12 blocks done, complete" in capsys.readouterr().out
    ds = ns.load(out)
    # weight decay is swept: each point's drift is measured against its own law e^{-2λt} Q(0)
    assert ds.drift.dims[:2] == ("init.scale", "weight_decay")
    assert float(ds.drift.sel({"weight_decay": 0.01}).isel(time=-1).max()) < 1e-3


def test_one_progress_bar_over_all_blocks(tmp_path, capsys):
    cfg = small_sweep({"init.scale": [0.5, 1.0]})
    del cfg["methods"]["gd"]
    ns.run_study(cfg, tmp_path / "s", progress=True)
    err = capsys.readouterr().err
    assert "small:" in err and "100%" in err and "block 6/6: p1__rk4__h2" in err
