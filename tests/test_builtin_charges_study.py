"""User charges on a built-in model in TOML studies (issue 20): ``model.charges = "module:function"``.

examples/custom_models/lora_charges_study.toml: LoRA on a deep linear network with the user's D1[0, 1]
(written by hand as ½θᵀSθ) and |θ|². The study's verdicts are the catalogue's for the hand-written entry,
"broken" for |θ|²; its values equal the catalogue's D1[0, 1] to round-off and the study's block equals a
direct ``simulate`` of ``model.with_charges(...)``; bad keys and factories are ConfigErrors naming them.
"""

import logging
import pathlib

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.config import load_config, parse_config

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"
STUDY = EXAMPLES / "lora_charges_study.toml"


@pytest.fixture(autouse=True)
def _quiet():
    log = logging.getLogger("noether_sim")
    level = log.level
    log.setLevel(logging.WARNING)
    yield
    log.setLevel(level)


def test_study_with_user_charges(tmp_path):
    res = ns.run_study(STUDY, tmp_path / "s.zarr")
    assert list(res.charge.values) == ["D1", "D2", "d1_01", "norm"]
    v = res.sel(scheme="gd").verdict
    assert np.all(v.sel(charge="d1_01").values == v.sel(charge="D1").values)
    assert np.all(v.sel(charge="d1_01").values == "conserved by the flow")
    assert np.all(v.sel(charge="norm").values == "broken by the flow")
    final = res.sel(scheme="gd").charge_final
    comp = res.component_charge.values
    cat, mine = final.values[..., comp == "D1"][..., 1], final.values[..., comp == "d1_01"][..., 0]
    np.testing.assert_allclose(mine, cat, rtol=0, atol=1e-12 * np.max(np.abs(final.values)))
    from noether_sim import study
    from noether_sim.builders import build_data, build_init, build_model

    cfg = load_config(STUDY)
    model = build_model(cfg)
    assert [c.name for c in model.user_charges] == ["d1_01", "norm"] and model.kind == "lora"
    args = dict(study.block_arguments(cfg, "gd", 2), progress=False)
    ds = ns.simulate(model, build_data(cfg), init=build_init(cfg), **args)
    np.testing.assert_array_equal(res.sel(scheme="gd").isel(step=2).charge_final.values, ds.charge_final.values)


def _raw(**model):
    return {"t_end": 0.5, "model": {"kind": "deep_linear", "widths": [3, 4, 2], "factory_path": str(EXAMPLES), **model},
            "data": {"kind": "synthetic_regression", "n_points": 8}, "seeds": {"count": 2},
            "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.1, 0.05, 0.025]}}}


@pytest.mark.parametrize("model, match", [
    ({"charges": "not a factory"}, "model.charges.*takes the built model and returns its charges"),
    ({"kind": "custom", "factory": "quadratic_net:model", "n_in": 3, "n_out": 1, "widths": None,
      "charges": "adapter_charges:charges"}, "model.charges.*is for the built-in kinds"),
])
def test_charges_key_errors(model, match):
    raw = _raw(**model)
    raw["model"] = {k: v for k, v in raw["model"].items() if v is not None}
    with pytest.raises(ns.ConfigError, match=match):
        parse_config(raw)


def test_factory_path_needs_charges():
    raw = _raw()
    with pytest.raises(ns.ConfigError, match="model.factory_path.*or, for factory_path, with model.charges"):
        parse_config(raw)


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_xyz:charges", "model.charges=.*importing 'no_such_module_xyz' failed"),
    ("adapter_charges:nothing", "model.charges=.*has no function 'nothing'"),
    ("adapter_charges:adapter_entry", "model.charges=.*calling it with the model raised TypeError"),
    ("adapter_charges:np", "model.charges=.*has no function 'np'"),
    ("builtins:repr", "model.charges=.*must return a noether_sim.Charge or a non-empty list"),
])
def test_charges_factory_errors(spec, match):
    with pytest.raises(ns.ConfigError, match=match) as err:
        parse_config(_raw(charges=spec))
    assert str(err.value).startswith("model.charges=")
