"""Study configuration: a TOML file (or the built-in default study), validated before any work.

A study is one model, one data set and one initialisation, integrated for a fixed time by one or
more methods, each across a ladder of step sizes. ``load_config`` / ``parse_config`` return a
complete, normalised nested dict (every optional key filled with its default); ``apply_overrides``
applies ``--set key=value`` overrides (dotted keys, TOML-typed values) before validation.

Every error is a ``ConfigError`` naming the key, its value and what is allowed; an unknown key
suggests the closest valid one.
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import re
import tomllib
from pathlib import Path

from ._validate import ConfigError
from .builders import build_model
from .dynamics import DYNAMICS, check_options, methods_for, resolve
from .stochastic import rung_options
from .ensemble import save_grid as grid

# ---- the built-in default study (examples/default_study.toml is the same study, written out) ----

DEFAULT_STUDY = {
    "name": "default",
    "description": ("Layer balance of the reference deep linear network (10-16-16-5) under gradient descent "
                    "and gradient flow (Heun, RK4, Dormand-Prince), each across a ladder of step sizes"),
    "t_end": 0.25,
    "save_every": 0.015625,
    "weight_decay": 0.0,
    "divergence_bound": 1e8,
    "model": {"kind": "deep_linear", "widths": [10, 16, 16, 5], "bias": False},
    "data": {"kind": "synthetic_regression", "n_points": 64, "noise": 0.1, "teacher_scale": 1.0, "seed": 0},
    "init": {"kind": "gaussian", "scale": 1.0, "bias_scale": 0.0},
    "seeds": {"count": 1024, "root": 0},
    "record": {"charges": "all", "watch_seeds": [], "final_weights": False, "track_ntk": False},
    # one table per method; the key is the method's label in the results (and in file names)
    "methods": {
        "gd": {"dynamics": "gd", "method": "euler",
               "step_sizes": [2.0 ** -9, 2.0 ** -10, 2.0 ** -11, 2.0 ** -12]},
        "gf-heun": {"dynamics": "gf", "method": "heun",
                    "step_sizes": [2.0 ** -7, 2.0 ** -8, 2.0 ** -9, 2.0 ** -10]},
        "gf-rk4": {"dynamics": "gf", "method": "rk4",
                   "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8, 2.0 ** -9]},
        "gf-dp5": {"dynamics": "gf", "method": "dp5",
                   "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8, 2.0 ** -9]},
    },
}

MODEL_KINDS = {
    "deep_linear": "deep linear network f(x) = W_L(…(W_1 x + b_1)…) + b_L, squared loss",
    "mlp": "multilayer network f(x) = W_L σ(…σ(W_1 x + b_1)…) + b_L; model.activation, model.loss "
           "(squared | softmax_ce), model.normalised_first_layer, model.normalisation (layer | rms); any kind "
           "takes low-rank adapters with model.lora_rank (model.lora_layers, model.lora_base_seed)",
    "residual_mlp": "stacked residual blocks s ← s + W2σ(W1s + b1) + b2 (noether_sim.ResidualMLP): model.widths = "
                    "[d_in, stream width, d_out], model.hidden, model.blocks, model.input_projection, "
                    "model.output_projection (default true), model.activation, model.loss",
    "attention": "multi-head self-attention (noether_sim.SelfAttention): model.d_model, model.tokens, model.heads, "
                 "model.d_k, model.d_v, model.d_out, model.causal, model.readout, model.mlp_hidden (a transformer "
                 "block: attention and a ReLU MLP, each with its residual); data.kind = 'sequences'",
    "custom": "your own model (noether_sim.CustomModel, or a built-in model.with_charges(...)): model.factory = "
              "'module:function' returns it (the module is searched in model.factory_path, default the TOML's "
              "directory, then on sys.path); model.n_in, model.n_out size the data. Every other kind takes your "
              "charges with model.charges = 'module:function' (called with the built model, it returns a list of "
              "noether_sim.Charge; searched in model.factory_path as well)",
}
ATTENTION_KEYS = ("d_model", "heads", "d_k", "d_v", "tokens", "causal", "readout", "d_out", "mlp_hidden")
RESIDUAL_KEYS = ("hidden", "blocks", "input_projection", "output_projection")
CUSTOM_KEYS = ("factory", "factory_path", "n_in", "n_out")
MLP_ONLY_KEYS = ("activation", "loss", "slope", "power", "normalised_first_layer", "normalisation", "residual")
DATA_KINDS = {
    "synthetic_regression": "Gaussian inputs, random linear teacher (entries N(0, teacher_scale²/n_in)), "
                            "Gaussian label noise; one data set shared by every seed",
    "whitened": "inputs with XXᵀ/N = I exactly, input-output correlation with given singular values",
    "teacher_regression": "(mlp) Gaussian inputs labelled by a random teacher of the model's architecture "
                          "(weights N(0, teacher_scale²/fan_in)), Gaussian label noise",
    "sequences": "(attention) Gaussian token sequences (n_points of them) labelled by a random attention teacher "
                 "of the model's architecture (weights N(0, teacher_scale²/fan_in)), Gaussian label noise",
    "teacher_classification": "(mlp, loss = softmax_ce) Gaussian inputs, one-hot labels: the argmax of a random "
                              "teacher's outputs; a fraction label_noise of labels replaced at random",
}
INIT_KINDS = {
    "gaussian": "W_i entries N(0, scale²/n_{i-1}), biases N(0, bias_scale²)",
    "orthogonal": "W_i = scale × a random semi-orthogonal matrix, biases zero",
    "balanced": "exactly balanced start (every D_i = 0), shared singular values scale × U[0.5, 1.5]",
    "lora_b_zero": "(model.lora_rank) the usual adapter start: A entries N(0, scale²/n_in), B = 0",
}
MIN_LADDER = 3  # analyse_ladder needs three step sizes for an extrapolation and its uncertainty
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _mlp():
    from . import mlp

    return mlp


# ---- a tiny schema: for each key, (required, checker) ----

def _fail(key, value, allowed):
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _real(key, value, *, low=None, low_open=False, high=None):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        _fail(key, value, "must be a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        _fail(key, value, f"must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        _fail(key, value, f"must be <= {high}")
    return float(value)


def _int(key, value, low=0):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        _fail(key, value, f"must be an integer >= {low}")
    if value < low:
        _fail(key, value, f"must be an integer >= {low}")
    return int(value)


def _bool(key, value):
    if not isinstance(value, bool):
        _fail(key, value, "must be true or false")
    return value


def _str(key, value, choices=None):
    if not isinstance(value, str):
        _fail(key, value, "must be a string" + (f", one of {', '.join(choices)}" if choices else ""))
    if choices is not None and value not in choices:
        _fail(key, value, f"must be one of {', '.join(choices)}")
    return value


def _list(key, value, item, min_len=0):
    if not isinstance(value, list):
        _fail(key, value, f"must be a list (TOML array) of at least {min_len} values")
    if len(value) < min_len:
        _fail(key, value, f"must hold at least {min_len} values")
    return [item(f"{key}[{i}]", x) for i, x in enumerate(value)]


TOP = {
    "name": (False, lambda k, v: _label(k, v)),
    "description": (False, _str),
    "t_end": (True, lambda k, v: _real(k, v, low=0, low_open=True)),
    "save_every": (False, lambda k, v: _real(k, v, low=0, low_open=True)),
    "save_times": (False, lambda k, v: _list(k, v, lambda kk, x: _real(kk, x, low=0, low_open=True), 1)),
    "weight_decay": (False, lambda k, v: _real(k, v, low=0)),
    "divergence_bound": (False, lambda k, v: _real(k, v, low=0, low_open=True)),
    "model": (True, None), "data": (True, None), "init": (False, None), "seeds": (True, None),
    "record": (False, None), "methods": (True, None),
}
MODEL = {
    "kind": (False, lambda k, v: _str(k, v, list(MODEL_KINDS))),
    "widths": (False, lambda k, v: _list(k, v, lambda kk, x: _int(kk, x, 1), 3)),  # required but for attention
    "bias": (False, _bool),
    "activation": (False, lambda k, v: _str(k, v, list(_mlp().ACTIVATIONS))),
    "loss": (False, lambda k, v: _str(k, v, list(_mlp().LOSSES))),
    "slope": (False, lambda k, v: _real(k, v, low=0)),
    "power": (False, lambda k, v: _real(k, v, low=1)),
    "normalised_first_layer": (False, _bool),
    **{k: (False, lambda k, v: _int(k, v, 1)) for k in ("d_model", "heads", "d_k", "d_v", "tokens", "d_out", "mlp_hidden")},
    "causal": (False, _bool),
    "readout": (False, lambda k, v: v if isinstance(v, str) else _int(k, v, 0)),  # the model checks the rest
    "normalisation": (False, lambda k, v: _str(k, v, ["layer", "rms"])),
    "residual": (False, _bool),
    "hidden": (False, lambda k, v: _int(k, v, 1)),
    "blocks": (False, lambda k, v: _int(k, v, 1)),
    "input_projection": (False, _bool),
    "output_projection": (False, _bool),
    "lora_rank": (False, lambda k, v: _int(k, v, 1)),
    "lora_layers": (False, lambda k, v: _list(k, v, lambda kk, x: _int(kk, x, 1), 1)),
    "lora_base_seed": (False, lambda k, v: _int(k, v, 0)),
    "factory": (False, lambda k, v: _factory(k, v)),
    "factory_path": (False, _str),
    "charges": (False, lambda k, v: _factory(k, v)),
    "n_in": (False, lambda k, v: _int(k, v, 1)),
    "n_out": (False, lambda k, v: _int(k, v, 1)),
}
LORA_KEYS = ("lora_layers", "lora_base_seed")
DATA = {
    "kind": (False, lambda k, v: _str(k, v, list(DATA_KINDS))),
    "n_points": (True, lambda k, v: _int(k, v, 1)),
    "noise": (False, lambda k, v: _real(k, v, low=0)),
    "teacher_scale": (False, lambda k, v: _real(k, v, low=0)),
    "singular_values": (False, lambda k, v: _list(k, v, lambda kk, x: _real(kk, x, low=0), 1)),
    "label_noise": (False, lambda k, v: _real(k, v, low=0, high=1)),
    "seed": (False, lambda k, v: _int(k, v, 0)),
    "augment": (False, None),  # a table, checked by _check_augment
}
AUGMENT = {
    "group": (True, None),
    "shifts": (False, None),
    "n_shifts": (False, lambda k, v: _int(k, v, 1)),
    "planes": (False, lambda k, v: _list(k, v, lambda kk, x: _list(kk, x, lambda k3, i: _int(k3, i, 0), 2), 1)),
    "n_angles": (False, lambda k, v: _int(k, v, 1)),
    "degree": (False, lambda k, v: _int(k, v, 1)),
}
INIT = {
    "kind": (False, lambda k, v: _str(k, v, list(INIT_KINDS))),
    "scale": (False, lambda k, v: _real(k, v, low=0)),
    "bias_scale": (False, lambda k, v: _real(k, v, low=0)),
}
SEEDS = {
    "count": (True, lambda k, v: _int(k, v, 1)),
    "root": (False, lambda k, v: _int(k, v, 0)),
}
RECORD = {
    "charges": (False, None),
    "watch_seeds": (False, lambda k, v: _list(k, v, lambda kk, x: _int(kk, x, 0))),
    "final_weights": (False, _bool),
    "track_ntk": (False, _bool),
    "keep": (False, lambda k, v: _keep(k, v)),  # absent: "seeds" (per-seed records)
}
METHOD = {
    "dynamics": (True, lambda k, v: _str(k, v, list(DYNAMICS))),
    "method": (False, None),
    "step_sizes": (True, lambda k, v: _list(k, v, lambda kk, x: _real(kk, x, low=0, low_open=True), MIN_LADDER)),
    # the options of simulate() that a ladder can use; which dynamics/method takes which is checked
    # by noether_sim.dynamics, as for the Python API
    "tau": (False, None), "velocity": (False, None), "track_law": (False, None), "track_energy": (False, None),
    "solve_tol": (False, None), "max_solve_iters": (False, None), "max_halvings": (False, None),
    "beta1": (False, None), "beta2": (False, None), "eps": (False, None),
    # stochastic training (theory.md §6): minibatches, Langevin noise, coupled Langevin rungs
    "batch_size": (False, None), "sampling": (False, None), "temperature": (False, None),
    "split_drift": (False, None), "coupled": (False, None),
    # layer-wise learning rates (theory.md §7; noether_sim/layer_lr.py), one multiplier per layer
    "layer_lr": (False, None),
    "bias_lr": (False, None),  # an MLP's bias multipliers: one number or one per layer
    # teleportation events during each rung (noether_sim/teleport.py): every this much time, with the
    # [methods.<label>.teleport] table's options (objective, steps, lr, target)
    "teleport_every": (False, None), "teleport": (False, None),
}
SECTIONS = {"model": MODEL, "data": DATA, "init": INIT, "seeds": SEEDS, "record": RECORD}


def _keep(key, value):
    """"seeds", "stats", or a table of noether_sim.stats.Stats fields (bins, range, scale, chunk)."""
    from .stats import check_keep

    try:
        check_keep(value)
    except ConfigError as e:
        raise ConfigError(f"record.{e}") from None
    return value


def _factory(key, value):
    if not isinstance(value, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", value):
        what = ("that takes the built model and returns its charges (a list of noether_sim.Charge)"
                if key.endswith("charges") else "that returns the model")
        _fail(key, value, f"must be 'module:function' (e.g. 'quadratic_net:model'): an importable module and the "
                          f"function in it {what}")
    return value


def _check_custom(model_cfg, data, raw):
    """model.kind = 'custom': its keys (factory, n_in, n_out; no layer keys), and the others' absence."""
    if model_cfg["kind"] != "custom":
        for key in CUSTOM_KEYS:
            if key in model_cfg and not (key == "factory_path" and "charges" in model_cfg):
                _fail(f"model.{key}", model_cfg[key], "is only used with model.kind = 'custom'"
                      + (" (or, for factory_path, with model.charges)" if key == "factory_path" else ""))
        return
    if "charges" in model_cfg:
        _fail("model.charges", model_cfg["charges"], "is for the built-in kinds: a custom model's factory returns "
                                                     "it with its charges (CustomModel(..., charges=[...]))")
    for key in ("widths", "lora_rank", *ATTENTION_KEYS, *MLP_ONLY_KEYS):
        if key in model_cfg:
            _fail(f"model.{key}", model_cfg[key], "is not used with model.kind = 'custom' (the factory's model "
                                                  "is the whole model; model.n_in, model.n_out size the data)")
    if model_cfg.get("bias"):
        _fail("model.bias", True, "is not used with model.kind = 'custom'")
    for key in ("factory", "n_in", "n_out"):
        if key not in model_cfg:
            raise ConfigError(f"missing key 'model.{key}': it is required when model.kind = 'custom'")
    if data["kind"] not in ("synthetic_regression", "whitened"):
        _fail("data.kind", data["kind"], "model.kind = 'custom' takes synthetic_regression or whitened data")
    init = raw.get("init") or {}
    if init.get("kind", "gaussian") != "gaussian":
        _fail("init.kind", init.get("kind"), "model.kind = 'custom' takes gaussian (entries N(0, scale²); "
                                             "default scale: the model's init_scale)")


def _label(key, value):
    if not isinstance(value, str) or not LABEL_RE.match(value):
        _fail(key, value, "must be a name of letters, digits, '-', '_' or '.' (it names files), "
                          "starting with a letter or digit")
    return value


def all_keys(config: dict | None = None) -> list[str]:
    """Every valid dotted key (method tables under their labels in ``config``, or a placeholder)."""
    keys = [k for k in TOP]
    for sec, schema in SECTIONS.items():
        keys += [f"{sec}.{k}" for k in schema]
    keys += [f"data.augment.{k}" for k in AUGMENT]
    labels = list((config or {}).get("methods", {}) or {}) or ["<label>"]
    for label in labels:
        keys += [f"methods.{label}.{k}" for k in METHOD]
    return keys


def _check_keys(table: dict, schema: dict, prefix: str, config: dict):
    if not isinstance(table, dict):
        _fail(prefix.rstrip("."), table, "must be a table (a [section] in TOML)")
    for key in table:
        if key not in schema:
            full = prefix + key
            close = difflib.get_close_matches(full, all_keys(config), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(prefix + k for k in schema)}"
            raise ConfigError(f"unknown key {full!r} (value {table[key]!r}){hint}")
    for key, (required, _) in schema.items():
        if required and key not in table:
            raise ConfigError(f"missing key {prefix + key!r}: it is required (see the 'Study configuration' "
                              f"section of README.md, or examples/default_study.toml)")


def _checked(table, schema, prefix):
    out = {}
    for key, (_, check) in schema.items():
        if key in table:
            out[key] = check(prefix + key, table[key]) if check else table[key]
    return out


def _check_attention(model_cfg, data, record):
    """The model/data pairing of self-attention (its keys, its data kind) and of the layered networks."""
    attention = model_cfg["kind"] == "attention"
    if not attention:
        if "widths" not in model_cfg:
            raise ConfigError("missing key 'model.widths': it is required (see the 'Study configuration' "
                              "section of README.md, or examples/default_study.toml)")
        for key in ATTENTION_KEYS:
            if key in model_cfg:
                _fail(f"model.{key}", model_cfg[key], "is only used with model.kind = 'attention'")
        if data["kind"] == "sequences":
            _fail("data.kind", data["kind"], "sequence data need model.kind = 'attention'")
        return
    for key in ("widths", *MLP_ONLY_KEYS):
        if key in model_cfg:
            _fail(f"model.{key}", model_cfg[key], "is not used with model.kind = 'attention' (give model.d_model, "
                                                  "model.tokens, model.heads, …)")
    for key in ("lora_rank", "lora_layers", "lora_base_seed"):  # the builder would ignore them silently
        if key in model_cfg:
            _fail(f"model.{key}", model_cfg[key], "low-rank adapters take a deep_linear or mlp base, not "
                                                  "model.kind = 'attention'")
    if model_cfg.pop("bias"):
        _fail("model.bias", True, "self-attention here has no biases")
    for key in ("d_model", "tokens"):
        if key not in model_cfg:
            raise ConfigError(f"missing key 'model.{key}': it is required when model.kind = 'attention'")
    model_cfg.setdefault("heads", 1)
    model_cfg.setdefault("causal", False)
    model_cfg.setdefault("readout", "sequence")
    if data["kind"] != "sequences":
        _fail("data.kind", data["kind"], "model.kind = 'attention' takes data.kind = 'sequences'")
    for key in ("singular_values", "label_noise", "augment"):
        if key in data:
            _fail(f"data.{key}", data[key], "is not used with data.kind = 'sequences'")
    if record["track_ntk"]:
        _fail("record.track_ntk", True, "is implemented for deep linear networks and MLPs, not attention")


def _check_residual(model_cfg):
    """model.kind = 'residual_mlp': widths [d_in, d, d_out], hidden and blocks required; MLP-only keys that
    have no meaning for the blocks (normalisation, residual, adapters) refused."""
    for key in ("normalised_first_layer", "normalisation", "residual", "lora_rank", "lora_layers", "lora_base_seed"):
        if key in model_cfg:
            _fail(f"model.{key}", model_cfg[key], "is not used with model.kind = 'residual_mlp'")
    if len(model_cfg["widths"]) != 3:
        _fail("model.widths", model_cfg["widths"], "must be [d_in, stream width, d_out] for model.kind = 'residual_mlp'")
    for key in ("hidden", "blocks"):
        if key not in model_cfg:
            raise ConfigError(f"missing key 'model.{key}': it is required when model.kind = 'residual_mlp'")
    return {"activation": "relu", "loss": "squared", "slope": 0.01, "power": 2.0, "input_projection": True,
            "output_projection": True, **model_cfg}


def parse_config(raw: dict) -> dict:
    """Validate a study configuration (a dict as tomllib gives it) and return it complete, normalised."""
    raw = copy.deepcopy(raw)
    if "sweep" in raw:  # a grid of studies: sweep.plan expands it into points, each parsed here
        raise ConfigError(f"sweep={raw['sweep']!r}: this configuration is a sweep; expand it into its points with "
                          f"noether_sim.sweep.plan (noether-sim run and noether_sim.run_study do)")
    _check_keys(raw, TOP, "", raw)
    cfg = _checked(raw, TOP, "")
    cfg.setdefault("name", "study")
    cfg.setdefault("description", "")
    cfg.setdefault("weight_decay", 0.0)
    cfg.setdefault("divergence_bound", 1e8)
    if "save_every" in cfg and "save_times" in cfg:
        raise ConfigError(f"save_every={cfg['save_every']!r} and save_times={cfg['save_times']!r} are both given: "
                          f"give one of them")
    if "save_every" not in cfg and "save_times" not in cfg:
        cfg["save_every"] = cfg["t_end"] / 32

    defaults = {
        "model": {"kind": "deep_linear", "bias": False},
        "data": {"kind": "synthetic_regression", "noise": 0.0, "teacher_scale": 1.0, "seed": 0},
        "init": {"kind": "gaussian", "scale": 1.0, "bias_scale": 0.0},
        "seeds": {"root": 0},
        "record": {"charges": "all", "watch_seeds": [], "final_weights": False, "track_ntk": False},
    }
    for sec, schema in SECTIONS.items():
        table = raw.get(sec, {})
        _check_keys(table, schema, sec + ".", raw)
        cfg[sec] = {**defaults[sec], **_checked(table, schema, sec + ".")}

    data = cfg["data"]
    model_cfg = cfg["model"]
    _check_custom(model_cfg, data, raw)
    custom = model_cfg["kind"] == "custom"
    if not custom:
        _check_attention(model_cfg, data, cfg["record"])
    widths = [model_cfg["n_in"], model_cfg["n_out"]] if custom else model_cfg.get("widths")
    if model_cfg["kind"] != "residual_mlp":
        for key in RESIDUAL_KEYS:
            if key in model_cfg:
                _fail(f"model.{key}", model_cfg[key], "is only used with model.kind = 'residual_mlp'")
    if model_cfg["kind"] == "mlp":
        model_cfg = cfg["model"] = {"activation": "relu", "loss": "squared", "slope": 0.01, "power": 2.0,
                                    "normalised_first_layer": False, **model_cfg}
    elif model_cfg["kind"] == "residual_mlp":
        model_cfg = cfg["model"] = _check_residual(model_cfg)
    else:
        for key in MLP_ONLY_KEYS:
            if key in model_cfg:
                _fail(f"model.{key}", model_cfg[key], "is only used with model.kind = 'mlp'")
    teacher = data["kind"].startswith("teacher_")
    if teacher and model_cfg["kind"] not in ("mlp", "residual_mlp"):
        _fail("data.kind", data["kind"], "teacher data needs model.kind = 'mlp' or 'residual_mlp' (use synthetic_regression or whitened)")
    softmax = model_cfg.get("loss") == "softmax_ce"
    if softmax != (data["kind"] == "teacher_classification"):
        _fail("data.kind", data["kind"], "model.loss = 'softmax_ce' goes with data.kind = 'teacher_classification' "
                                         "and the other losses with regression data")
    if "label_noise" in data and data["kind"] != "teacher_classification":
        _fail("data.label_noise", data["label_noise"], "is only used with data.kind = 'teacher_classification'")
    if data["kind"] == "teacher_classification":
        data.pop("noise", None)
        data.setdefault("label_noise", 0.0)
    if data["kind"] == "whitened":
        if "singular_values" not in data:
            raise ConfigError("missing key 'data.singular_values': it is required when data.kind = 'whitened'")
        if len(data["singular_values"]) > min(widths[0], widths[-1]):
            _fail("data.singular_values", data["singular_values"],
                  f"must hold at most min(input width, output width) = {min(widths[0], widths[-1])} values")
        if data["n_points"] < widths[0]:
            _fail("data.n_points", data["n_points"], f"must be >= the input width {widths[0]} to whiten the inputs")
        for key in ("noise", "teacher_scale"):
            data.pop(key, None)
    elif "singular_values" in data:
        _fail("data.singular_values", data["singular_values"], "is only used with data.kind = 'whitened'")
    if cfg["init"]["kind"] != "gaussian":
        cfg["init"].pop("bias_scale", None)
    if "lora_rank" not in model_cfg:
        for key in LORA_KEYS:
            if key in model_cfg:
                _fail(f"model.{key}", model_cfg[key], "is only used with model.lora_rank (low-rank adapters)")
        if cfg["init"]["kind"] == "lora_b_zero":
            _fail("init.kind", "lora_b_zero", "needs low-rank adapters (model.lora_rank)")
    elif cfg["init"]["kind"] in ("orthogonal", "balanced"):
        _fail("init.kind", cfg["init"]["kind"], "does not apply to low-rank adapters: use gaussian or lora_b_zero")
    if "augment" in data:
        data["augment"] = _check_augment(data["augment"], widths[0], raw)

    try:
        built = build_model(cfg)
        charge_names = [g.name for g in built.charge_groups]
    except ConfigError as err:  # the model's own messages name its parameter: model.<it>
        raise ConfigError(str(err) if str(err).startswith("model.") else f"model.{err}") from None
    if custom and "scale" not in (raw.get("init") or {}):  # the model's own initial scale
        cfg["init"]["scale"] = float(getattr(built, "init_scale", 1.0))
    charge_names += augment_charge_names(data) + (["energy"] if any(
        isinstance(m, dict) and m.get("track_energy") is True for m in (raw.get("methods") or {}).values()) else [])
    charges = cfg["record"]["charges"]
    if charges == "all":
        pass
    elif isinstance(charges, list) and charges and all(isinstance(c, str) for c in charges):
        for i, c in enumerate(charges):
            if c not in charge_names:
                _fail(f"record.charges[{i}]", c, f"must be one of this model's charges: {', '.join(charge_names)}")
        if len(set(charges)) != len(charges):
            _fail("record.charges", charges, "must not repeat a charge")
    else:
        _fail("record.charges", charges, f'must be "all" or a non-empty list of charge names ({", ".join(charge_names)})')
    n_seeds = cfg["seeds"]["count"]
    for i, s in enumerate(cfg["record"]["watch_seeds"]):
        if s >= n_seeds:
            _fail(f"record.watch_seeds[{i}]", s, f"must be a seed id < seeds.count = {n_seeds}")
    if cfg["record"]["track_ntk"]:
        if not cfg["record"]["watch_seeds"]:
            _fail("record.track_ntk", True, "needs record.watch_seeds: the NTK is recorded for the watched seeds")
        if len(widths) < 3:
            _fail("record.track_ntk", True, f"needs a hidden layer (model.widths = {widths})")

    methods = raw["methods"]
    if not isinstance(methods, dict) or not methods:
        _fail("methods", methods, "must hold at least one method table, e.g. [methods.gf-rk4]")
    cfg["methods"] = {}
    times = _save_grid(cfg)
    for label, table in methods.items():
        prefix = f"methods.{label}."
        _label(f"methods.{label}", label)
        _check_keys(table, METHOD, prefix, raw)
        entry = _checked(table, METHOD, prefix)
        cfg["methods"][label] = _check_method(prefix, entry, times)
    return cfg


def _check_augment(table, n_in: int, raw: dict) -> dict:
    """[data.augment]: the training set closed under a group acting on the inputs (data.augment)."""
    from .data import AUGMENT_GROUPS

    _check_keys(table, AUGMENT, "data.augment.", raw)
    aug = _checked(table, AUGMENT, "data.augment.")
    group = _str("data.augment.group", aug["group"], list(AUGMENT_GROUPS))
    only = {"cyclic_translations": ("shifts", "n_shifts"), "rotations": ("planes", "n_angles")}
    for other, keys in only.items():
        for key in keys:
            if other != group and key in aug:
                _fail(f"data.augment.{key}", aug[key], f"is only used with data.augment.group = {other!r}")
    if group == "cyclic_translations":
        shifts = aug.setdefault("shifts", "quadrature")
        if isinstance(shifts, list):
            aug["shifts"] = _list("data.augment.shifts", shifts, lambda k, x: _real(k, x), 1)
            if "n_shifts" in aug:
                _fail("data.augment.n_shifts", aug["n_shifts"], "is only used with shifts = 'quadrature'")
        elif shifts == "integer":
            if "n_shifts" in aug:
                _fail("data.augment.n_shifts", aug["n_shifts"], "is only used with shifts = 'quadrature'")
        elif shifts != "quadrature":
            _fail("data.augment.shifts", shifts, "must be 'quadrature' (default: exact for the degree), 'integer' "
                                                 "(the group Z_d of integer shifts) or a list of shifts in samples")
    else:
        if "planes" not in aug:
            raise ConfigError("missing key 'data.augment.planes': it is required when data.augment.group = "
                              "'rotations', e.g. planes = [[0, 1], [2, 3]]")
        flat = [i for pl in aug["planes"] for i in pl]
        if any(len(pl) != 2 for pl in aug["planes"]) or len(set(flat)) != len(flat) or max(flat) >= n_in:
            _fail("data.augment.planes", aug["planes"], f"must be disjoint pairs [i, j] of input indices < {n_in}")
    aug.setdefault("degree", 1)
    return aug


def augment_charge_names(data_cfg: dict) -> list[str]:
    """The data-symmetry charges an augmented data set adds (data.augment's generator names)."""
    aug = data_cfg.get("augment")
    if not aug:
        return []
    if aug["group"] == "cyclic_translations":
        return ["data_shift"]
    return [f"data_rot{i}-{j}" for i, j in aug["planes"]]


def _check_method(prefix: str, entry: dict, times) -> dict:
    """One [methods.<label>] table, checked by the same rules as simulate()'s arguments."""
    options = {k: entry[k] for k in entry if k not in ("dynamics", "method", "step_sizes", "coupled", "layer_lr",
                                                                 "bias_lr", "teleport_every", "teleport")}
    if entry["dynamics"] in ("gf", "momentum") and "method" not in entry:
        raise ConfigError(f"missing key {prefix + 'method'!r}: {entry['dynamics']} needs an integrator, one of "
                          f"{', '.join(m for m in methods_for(entry['dynamics']) if m != 'dopri5')}")
    try:
        resolved = resolve(entry["dynamics"], entry.get("method"))
        if resolved.adaptive:
            _fail(prefix + "method", resolved.method, "a step-size ladder needs a fixed-step method; "
                                                      "`noether-sim list` shows them")
        full = check_options(resolved, options)
        rung_options({"dynamics": entry["dynamics"], "coupled": entry.get("coupled"),
                      "temperature": entry.get("temperature")}, entry["step_sizes"])
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None
    if full.get("velocity") is not None and not isinstance(full["velocity"], (str, int, float)):
        _fail(prefix + "velocity", full["velocity"], "must be 'zero', 'gradient' or a scale >= 0 in a study")
    hs = entry["step_sizes"]
    if len(set(hs)) != len(hs):
        _fail(prefix + "step_sizes", hs, "must be distinct")
    if hs != sorted(hs, reverse=True):
        _fail(prefix + "step_sizes", hs, "must be listed from the largest to the smallest")
    intervals = [b - a for a, b in zip(times[:-1], times[1:])]
    for i, h in enumerate(hs):
        for dt in intervals:
            n = dt / h
            if round(n) < 1 or abs(n - round(n)) > 1e-9 * max(n, 1):
                _fail(f"{prefix}step_sizes[{i}]", h, f"every interval between save times ({dt:g}, from save_every/"
                                                     f"save_times and t_end) must be a whole number >= 1 of steps")
    return {"dynamics": entry["dynamics"], "method": resolved.method, "step_sizes": [float(h) for h in hs],
            **{k: full[k] for k in options}, **({"coupled": entry["coupled"]} if "coupled" in entry else {}),
            # a simulate() argument of its own (checked against the model by simulate's plan, before any work)
            **({"layer_lr": _list(prefix + "layer_lr", entry["layer_lr"], lambda kk, x: _real(kk, x, low=0, low_open=True))}
               if "layer_lr" in entry else {}),
            **({"bias_lr": (_real(prefix + "bias_lr", entry["bias_lr"], low=0, low_open=True)
                            if not isinstance(entry["bias_lr"], list) else
                            _list(prefix + "bias_lr", entry["bias_lr"], lambda kk, x: _real(kk, x, low=0, low_open=True)))}
               if "bias_lr" in entry else {}),
            **_check_teleport_keys(prefix, entry)}


def _check_teleport_keys(prefix: str, entry: dict) -> dict:
    """A method table's teleport_every and [teleport] table (ns.teleport's options), checked by teleport.py's
    own rules; the model-dependent checks are simulate's, before any work (study.check_blocks)."""
    if "teleport" in entry and "teleport_every" not in entry:
        _fail(prefix + "teleport", entry["teleport"], "needs teleport_every (the time between teleports)")
    if "teleport_every" not in entry:
        return {}
    from .teleport import check_teleport_options

    every = _real(prefix + "teleport_every", entry["teleport_every"], low=0, low_open=True)
    options = entry.get("teleport", {})
    if not isinstance(options, dict) or set(options) - {"objective", "steps", "lr", "target"}:
        _fail(prefix + "teleport", options, "must be a table with some of objective, steps, lr, target "
                                            "(ns.teleport's options)")
    try:
        check_teleport_options(options.get("objective", "grad_norm"), options.get("steps"), options.get("lr", 0.1),
                               options.get("target"))
    except ConfigError as err:
        raise ConfigError(f"{prefix}teleport.{err}") from None
    return {"teleport_every": every, **({"teleport": dict(options)} if options else {})}


def _save_grid(cfg) -> list[float]:


    t_end = cfg["t_end"]
    if "save_times" in cfg:
        st = cfg["save_times"]
        if any(b <= a for a, b in zip(st[:-1], st[1:])):
            _fail("save_times", st, "must be strictly increasing")
        if st[-1] > t_end:
            _fail("save_times", st, f"every save time must be <= t_end = {t_end}")
        return [float(t) for t in grid(t_end, None, st, None)]
    if cfg["save_every"] > t_end:
        _fail("save_every", cfg["save_every"], f"must be <= t_end = {t_end}")
    return [float(t) for t in grid(t_end, cfg["save_every"], None, None)]


# ---- files and overrides ----

def default_config() -> dict:
    return parse_config(DEFAULT_STUDY)


def read_toml(path) -> dict:
    """The TOML file as a dict; a custom model's (or ``model.charges``') ``model.factory_path`` is made
    absolute (default: the file's directory), so its factory imports wherever the study runs."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        model = raw.get("model")
        if isinstance(model, dict) and (model.get("kind") == "custom" or "charges" in model):
            where = model.get("factory_path", ".")
            if isinstance(where, str):
                model["factory_path"] = str((path.resolve().parent / where).resolve())
        return raw
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[list[str], object]:
    """'a.b=value' → (['a', 'b'], value), value parsed as TOML (a bare word is taken as a string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is invalid: write key=value, e.g. seeds.count=16")
    key, value = (s.strip() for s in text.split("=", 1))
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"--set {text!r} is invalid: the key must be dotted names, e.g. methods.gf-rk4.step_sizes")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        if not re.match(r"^[A-Za-z0-9_.\-]+$", value):
            raise ConfigError(f"--set {text!r} is invalid: {value!r} is not a TOML value "
                              f"(quote strings with spaces: key='\"a b\"')") from None
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides) -> dict:
    raw = copy.deepcopy(raw)
    for text in overrides or ():
        parts, value = parse_override(text)
        table = raw
        for i, p in enumerate(parts[:-1]):
            nxt = table.get(p)
            if nxt is None:
                nxt = table[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"--set {text!r} is invalid: {'.'.join(parts[:i + 1])!r} is a value, not a table")
            table = nxt
        table[parts[-1]] = value
    return raw


def load_config(path=None, overrides=()) -> dict:
    """The study in ``path`` (a TOML file), or the built-in default study, with ``--set`` overrides."""
    raw = DEFAULT_STUDY if path is None else read_toml(path)
    if path is not None and "name" not in raw:
        raw = {**raw, "name": Path(path).stem}
    return parse_config(apply_overrides(raw, overrides))
