"""The result store: exact round trip, and interrupted writes never load as complete."""

import json
import shutil

import numpy as np
import pytest
import xarray as xr

import noether_sim
from noether_sim.results import load
from noether_sim.store import BLOCKS_DIR, COMPLETE_FILE, IncompleteStoreError, NotAStoreError, StoreWriter
from noether_sim.study import run_study, study_provenance
from study_helpers import quick_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = quick_config("record.watch_seeds=[1, 4]")
    path = tmp_path_factory.mktemp("store") / "quick"
    writer = StoreWriter(path, cfg, study_provenance())
    ds = run_study(cfg, writer)
    writer.finish()
    return cfg, path, ds


def test_round_trip_is_exact_on_every_variable_and_attribute(saved):
    _, path, ds = saved
    back = noether_sim.load(path)
    xr.testing.assert_identical(back, ds)
    assert set(back.variables) == set(ds.variables)
    for name in ds.variables:  # bit for bit, dtype included (NaN == NaN in padding and unused fields)
        assert back[name].dtype == ds[name].dtype, name
        assert np.array_equal(back[name].values, ds[name].values, equal_nan=back[name].dtype.kind == "f"), name
        assert back[name].attrs == ds[name].attrs, name
    assert back.attrs == ds.attrs
    assert back.attrs["complete"] is True


def test_store_records_configuration_and_versions(saved):
    cfg, path, ds = saved
    import numba

    back = load(path)
    assert json.loads(back.attrs["study_config"]) == cfg
    assert back.attrs["numba_version"] == numba.__version__ and back.attrs["numpy_version"] == np.__version__
    assert back.attrs["noether_sim_version"] == noether_sim.__version__
    assert back.sizes["seed"] == 6 and list(back.scheme.values) == list(cfg["methods"])
    # each scheme's h coordinate is its configured ladder
    for label, m in cfg["methods"].items():
        assert list(back.h.sel(scheme=label).values) == m["step_sizes"]


def _copy(path, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(path, dst)
    return dst


def test_store_without_completion_marker_refuses_to_load(saved, tmp_path):
    _, path, _ = saved
    broken = _copy(path, tmp_path)
    (broken / COMPLETE_FILE).unlink()
    with pytest.raises(IncompleteStoreError, match="incomplete.*16 of 16.*allow_partial=True"):
        load(broken)


def test_partial_load_gives_only_finished_blocks(saved, tmp_path):
    cfg, path, ds = saved
    broken = _copy(path, tmp_path)
    (broken / COMPLETE_FILE).unlink()
    # the gf-dp5 block at its finest step was interrupted mid-write: data there, marker missing;
    # the gf-dp5 block before it died before its rename: only a temporary folder
    (broken / BLOCKS_DIR / "gf-dp5__h3.done").unlink()
    (broken / BLOCKS_DIR / "gf-dp5__h2.done").unlink()
    (broken / BLOCKS_DIR / "gf-dp5__h2.zarr").rename(broken / BLOCKS_DIR / ".gf-dp5__h2.zarr.tmp-1")
    with pytest.raises(IncompleteStoreError, match=r"14 of 16 .*missing \[gf-dp5 h=0.00390625, gf-dp5 h=0.001953125\]"):
        load(broken)
    part = load(broken, allow_partial=True)
    assert part.attrs["complete"] is False
    assert json.loads(part.attrs["missing_blocks"]) == [["gf-dp5", 2], ["gf-dp5", 3]]
    # the finished blocks are exactly the complete study's; the missing ones are padding, never data
    for label in cfg["methods"]:
        for k in range(4):
            got = part.drift.sel(scheme=label).isel(step=k)
            if label == "gf-dp5" and k >= 2:
                assert np.all(np.isnan(got.values)) and np.isnan(part.h.sel(scheme=label).values[k])
                assert np.all(part.status.sel(scheme=label).isel(step=k).values == -1)
            else:
                xr.testing.assert_identical(got, ds.drift.sel(scheme=label).isel(step=k))
    # two finished rungs are too few for a ladder analysis: said, not guessed
    assert np.all(part.verdict.sel(scheme="gf-dp5").values == "not analysed (fewer than 3 finished step sizes)")
    xr.testing.assert_identical(part.verdict.sel(scheme="gf-rk4"), ds.verdict.sel(scheme="gf-rk4"))


def test_crash_during_a_block_write_leaves_an_incomplete_store(tmp_path, monkeypatch):
    cfg = quick_config("seeds.count=2")
    writes = {"n": 0}
    real = xr.Dataset.to_zarr

    def flaky(self, *a, **kw):
        writes["n"] += 1
        if writes["n"] == 4:  # initial.zarr, then blocks 1, 2; the third block's write dies
            raise OSError("disk full (simulated)")
        return real(self, *a, **kw)

    monkeypatch.setattr(xr.Dataset, "to_zarr", flaky)
    writer = StoreWriter(tmp_path / "s", cfg, study_provenance())
    with pytest.raises(OSError, match="simulated"):
        run_study(cfg, writer)
    with pytest.raises(IncompleteStoreError, match="2 of 16"):
        load(tmp_path / "s")
    part = load(tmp_path / "s", allow_partial=True)
    assert json.loads(part.attrs["finished_blocks"]) == [["gd", 0], ["gd", 1]]


def test_not_a_store(tmp_path):
    with pytest.raises(NotAStoreError, match="not a noether_sim study store"):
        load(tmp_path)


def test_writer_refuses_to_replace_a_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a noether_sim study store"):
        StoreWriter(tmp_path, quick_config(), study_provenance())
    assert (tmp_path / "precious.txt").exists()
