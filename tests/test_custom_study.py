"""CustomModel in TOML studies and sweeps (issue 20): model.kind = "custom", model.factory = "module:function".

A real study and a two-point sweep of examples/custom_models/custom_study.toml (the quadratic-activation
network of quadratic_net.py): the rescale charges r_k are conserved by gradient flow (GD's exact law decides
them), the control |w_0|² is not; the results equal a direct ``simulate`` of the same model; a factory that
cannot be imported is a ConfigError naming it.
"""

import logging
import pathlib
import shutil

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.config import load_config, parse_config

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"
STUDY = EXAMPLES / "custom_study.toml"


@pytest.fixture(autouse=True)
def _quiet():
    log = logging.getLogger("noether_sim")
    level = log.level
    log.setLevel(logging.WARNING)
    yield
    log.setLevel(level)  # later tests in this process read the package's INFO lines (test_messages.py)


def test_custom_study_runs_and_agrees_with_simulate(tmp_path):
    res = ns.run_study(STUDY, tmp_path / "s.zarr")
    assert list(res.charge.values) == ["r0", "r1", "r2", "r3", "w0_norm"]
    gd = res.sel(scheme="gd").verdict.values  # (seed, charge)
    assert np.all(gd[:, :4] == "conserved by the flow") and np.all(gd[:, 4] == "broken by the flow")
    # the study's finest GD block is simulate() on the same model, data and initial θ
    cfg = load_config(STUDY)
    assert cfg["init"]["scale"] == 0.5  # the model's own init_scale (no [init] table)
    from noether_sim import study
    from noether_sim.builders import build_data, build_init, build_model

    args = dict(study.block_arguments(cfg, "gd", 2), progress=False)
    ds = ns.simulate(build_model(cfg), build_data(cfg), init=build_init(cfg), **args)
    np.testing.assert_array_equal(res.sel(scheme="gd").isel(step=2).charge_final.values, ds.charge_final.values)


def test_custom_sweep_two_points(tmp_path):
    res = ns.run_study(STUDY, tmp_path / "w.zarr", overrides=["sweep.weight_decay=[0.0, 0.1]"])
    assert list(res.weight_decay.values) == [0.0, 0.1]
    v = res.sel(scheme="gd").verdict.values  # (weight_decay, seed, charge)
    assert np.all(v[:, :, :4] == "conserved by the flow")  # GD's law with weight decay's factor
    assert not np.allclose(res.charge_final.sel(weight_decay=0.0).values, res.charge_final.sel(weight_decay=0.1).values)


def test_factory_relative_to_the_toml(tmp_path):
    shutil.copy(EXAMPLES / "quadratic_net.py", tmp_path / "my_net.py")
    text = STUDY.read_text().replace('"quadratic_net:model"', '"my_net:model"')
    (tmp_path / "mine.toml").write_text(text)
    cfg = load_config(tmp_path / "mine.toml")
    assert cfg["model"]["factory_path"] == str(tmp_path.resolve())


@pytest.mark.parametrize("model, match", [
    ({"factory": "no_such_module_xyz:model"}, "importing 'no_such_module_xyz' failed"),
    ({"factory": "quadratic_net:nothing"}, "has no function 'nothing'"),
    ({"factory": "quadratic_net:model", "widths": [3, 4, 1]}, "model.widths"),
    ({"factory": "not a factory"}, "module:function"),
    ({}, "missing key 'model.factory'"),
])
def test_factory_errors(model, match):
    raw = {"t_end": 0.5, "model": {"kind": "custom", "n_in": 3, "n_out": 1, "factory_path": str(EXAMPLES), **model},
           "data": {"kind": "synthetic_regression", "n_points": 8}, "seeds": {"count": 2},
           "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.1, 0.05, 0.025]}}}
    with pytest.raises(ns.ConfigError, match=match):
        parse_config(raw)
