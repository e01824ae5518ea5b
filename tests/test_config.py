"""Study configuration: the default study, the example file, the README, and every kind of config error."""

import re
from pathlib import Path

import numpy as np
import pytest

from noether_sim._validate import ConfigError
from noether_sim.cli import main
from noether_sim.config import DEFAULT_STUDY, apply_overrides, default_config, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "default_study.toml"


def test_example_file_is_the_builtin_default_study():
    assert load_config(EXAMPLE) == default_config()


def test_the_docs_show_the_example_file():
    page = (ROOT / "docs" / "guide" / "studies.md").read_text()  # the study configuration page
    assert "```{literalinclude} ../../examples/default_study.toml" in page


def test_default_study_is_the_reference_problem():
    cfg = default_config()
    assert cfg["model"]["widths"] == [10, 16, 16, 5]
    assert cfg["data"]["n_points"] == 64 and cfg["seeds"]["count"] == 1024
    methods = {(m["dynamics"], m["method"]) for m in cfg["methods"].values()}
    assert methods == {("gd", "euler"), ("gf", "heun"), ("gf", "rk4"), ("gf", "dp5")}
    assert all(len(m["step_sizes"]) >= 4 for m in cfg["methods"].values())


def test_overrides_are_toml_typed_and_dotted():
    cfg = load_config(None, ["seeds.count=16", "t_end=0.125", "name=quick", "record.charges=['D2']",
                             "methods.gf-rk4.step_sizes=[0.015625, 0.0078125, 0.00390625]"])
    assert cfg["seeds"]["count"] == 16 and isinstance(cfg["seeds"]["count"], int)
    assert cfg["t_end"] == 0.125 and cfg["name"] == "quick" and cfg["record"]["charges"] == ["D2"]
    assert cfg["methods"]["gf-rk4"]["step_sizes"] == [0.015625, 0.0078125, 0.00390625]


def _without(key):
    raw = apply_overrides(DEFAULT_STUDY, [])
    *path, last = key.split(".")
    table = raw
    for p in path:
        table = table[p]
    del table[last]
    return raw


@pytest.mark.parametrize("key", ["t_end", "model.widths", "data.n_points", "seeds.count", "methods",
                                 "methods.gf-rk4.step_sizes", "methods.gf-rk4.method"])
def test_missing_key_is_named(key):
    with pytest.raises(ConfigError, match=f"missing key '{re.escape(key)}'"):
        parse_config(_without(key))


# (override, text the message must contain: key, value, what is allowed)
BAD = [
    ("seeds.count='many'", ["seeds.count", "'many'", "integer >= 1"]),              # wrong type
    ("seeds.count=0", ["seeds.count", "0", "integer >= 1"]),                          # out of range
    ("t_end=-1.0", ["t_end", "-1.0", "> 0"]),
    ("model.widths=[10, 5]", ["model.widths", "[10, 5]", "at least 3"]),
    ("model.widths=[10, 0, 5]", ["model.widths[1]", "0", ">= 1"]),
    ("model.bias='yes'", ["model.bias", "'yes'", "true or false"]),
    ("data.kind='mnist'", ["data.kind", "'mnist'", "synthetic_regression"]),
    ("init.kind='zeros'", ["init.kind", "'zeros'", "gaussian"]),
    ("methods.gf-rk4.method='dopri5'", ["methods.gf-rk4.method", "'dopri5'", "fixed-step"]),
    ("methods.gf-rk4.method='rk9'", ["methods.gf-rk4.method", "'rk9'", "rk4"]),
    ("methods.gd.method='rk4'", ["methods.gd.method", "'rk4'", "euler"]),
    ("methods.gf-rk4.dynamics='sgd'", ["methods.gf-rk4.dynamics", "'sgd'", "gf, gd, momentum, heavy_ball, nesterov"]),
    ("methods.gf-rk4.step_sizes=[0.01, 0.005]", ["methods.gf-rk4.step_sizes", "at least 3"]),
    ("methods.gf-rk4.step_sizes=[0.003, 0.002, 0.001]", ["methods.gf-rk4.step_sizes[0]", "0.003", "whole number"]),
    ("methods.gf-rk4.step_sizes=[0.001, 0.002, 0.004]", ["methods.gf-rk4.step_sizes", "largest to the smallest"]),
    ("save_every=1.0", ["save_every", "1.0", "<= t_end"]),
    ("record.charges=['D7']", ["record.charges[0]", "'D7'", "D1, D2"]),
    ("record.watch_seeds=[5000]", ["record.watch_seeds[0]", "5000", "< seeds.count"]),
    ("model.activation='relu'", ["model.activation", "'relu'", "only used with model.kind = 'mlp'"]),
    ("data.kind='teacher_regression'", ["data.kind", "'teacher_regression'", "model.kind = 'mlp'"]),
]

MLP_STUDY = ["model.kind='mlp'", "model.widths=[4, 6, 3]", "model.bias=true", "data.n_points=8", "seeds.count=4",
             "data.kind='teacher_regression'"]


@pytest.mark.parametrize("override, parts", [
    ("model.activation='swish'", ["model.activation", "'swish'", "relu"]),
    ("model.power=0.5", ["model.power", "0.5", ">= 1"]),
    ("model.loss='softmax_ce'", ["data.kind", "'teacher_regression'", "teacher_classification"]),
    ("data.label_noise=0.1", ["data.label_noise", "0.1", "teacher_classification"]),
    ("record.charges=['D1']", ["record.charges[0]", "'D1'", "r1"]),
])
def test_bad_mlp_study_values(override, parts):
    with pytest.raises(ConfigError) as err:
        load_config(None, MLP_STUDY + [override])
    for part in parts:
        assert part in str(err.value)


def test_mlp_study_builds_the_model_and_data_it_names():
    from noether_sim.builders import build_data, build_model

    cfg = load_config(None, MLP_STUDY + ["model.activation='leaky_relu'", "model.slope=0.2"])
    model, data = build_model(cfg), build_data(cfg)
    assert (model.kind, model.activation, model.slope, model.widths) == ("mlp", "leaky_relu", 0.2, (4, 6, 3))
    assert (data.n_in, data.n_out, data.n_points) == (4, 3, 8)
    cfg = load_config(None, MLP_STUDY + ["model.loss='softmax_ce'", "data.kind='teacher_classification'",
                                         "data.label_noise=0.25"])
    data = build_data(cfg)
    assert set(np.unique(data.Y)) == {0.0, 1.0} and np.all(data.Y.sum(axis=0) == 1)


@pytest.mark.parametrize("override, parts", BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_key_value_and_what_is_allowed(override, parts):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for part in parts:
        assert part in str(err.value)


@pytest.mark.parametrize("override, suggestion", [
    ("seeds.cont=3", "seeds.count"),
    ("t_ned=1.0", "t_end"),
    ("methods.gf-rk4.step_size=[0.1, 0.05, 0.025]", "methods.gf-rk4.step_sizes"),
    ("model.width=[10, 16, 5]", "model.widths"),
])
def test_unknown_key_suggests_the_closest(override, suggestion):
    with pytest.raises(ConfigError, match=f"unknown key .*did you mean '{re.escape(suggestion)}'"):
        load_config(None, [override])


def test_bad_toml_file_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("t_end = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("args, message", [
    (["--set", "seeds.count=0"], "seeds.count=0 is invalid"),                    # out of range
    (["--set", "seeds.count=1.5"], "seeds.count=1.5 is invalid"),                # wrong type
    (["--set", "seeds.cont=3"], "did you mean 'seeds.count'"),                   # unknown key
    (["--set", "nonsense"], "write key=value"),                                  # malformed --set
])
def test_cli_config_errors_exit_2(args, message, capsys, tmp_path):
    assert main(["run", *args, "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing written before validation passes


def test_cli_missing_key_in_file_exits_2(tmp_path, capsys):
    text = EXAMPLE.read_text().replace("t_end = 0.25", "")
    cfg = tmp_path / "study.toml"
    cfg.write_text(text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "s")]) == 2
    assert "missing key 't_end'" in capsys.readouterr().err


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as ex:
        main(["run", "--no-such-option"])
    assert ex.value.code == 2
