"""Config → objects: the model, data set and initialisation a study (or a sweep point) describes.

Below both the config parser (which asks the model for its charge names) and the study runner.
"""

from __future__ import annotations

from . import data as data_mod
from . import init as init_mod
from ._validate import ConfigError
from .models import DeepLinear


_FACTORY_MODELS = {}  # (factory, path) → the model it made: one per process (its compiled functions too)


def _import_function(key, spec, path):
    """The function ``spec`` = 'module:function' names, its module searched first in ``path`` (a directory);
    ConfigError (naming ``key``) when the import or the lookup fails."""
    import importlib
    import sys

    module_name, func_name = spec.split(":")
    added = path is not None and path not in sys.path
    if added:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{key}={spec!r} is invalid: importing {module_name!r} failed "
                          f"({type(exc).__name__}: {exc}); searched {path or 'sys.path'} first, then sys.path") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"{key}={spec!r} is invalid: module {module_name!r} "
                          f"({getattr(module, '__file__', '?')}) has no function {func_name!r}")
    return fn


def build_custom_model(factory, path=None):
    """The model ``factory`` = 'module:function' returns, the module searched first in ``path`` (a
    directory); made once per process. ConfigError when the import or the call fails, or it returns no
    CustomModel (or built-in model with user charges)."""
    key = (factory, path)
    if key in _FACTORY_MODELS:
        return _FACTORY_MODELS[key]
    fn = _import_function("model.factory", factory, path)
    try:
        model = fn()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"model.factory={factory!r} is invalid: calling it raised {type(exc).__name__}: {exc}") from None
    if getattr(model, "kind", None) != "custom" and not getattr(model, "user_charges", None):
        raise ConfigError(f"model.factory={factory!r} is invalid: it must return a noether_sim.CustomModel (or a "
                          f"built-in model.with_charges(...)), not {type(model).__name__}")
    _FACTORY_MODELS[key] = model
    return model


_CHARGED_MODELS = {}  # (charges factory, path, the model's config) → the model with its charges: one per process


def with_user_charges(model, spec, path=None):
    """``model.with_charges(*charges)``, the charges returned by ``spec`` = 'module:function' called with the
    built model (``model.charges`` in a study); made once per process and model. ConfigError when the import
    or the call fails or it returns anything but a Charge or a list of them (the message names
    ``model.charges``)."""
    import json

    from .charges import Charge

    key = (spec, path, json.dumps(model.to_config(), sort_keys=True, default=str))
    if key in _CHARGED_MODELS:
        return _CHARGED_MODELS[key]
    fn = _import_function("model.charges", spec, path)
    try:
        charges = fn(model)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"model.charges={spec!r} is invalid: calling it with the model raised "
                          f"{type(exc).__name__}: {exc}") from None
    if isinstance(charges, Charge):
        charges = [charges]
    if not isinstance(charges, (list, tuple)) or not charges or not all(isinstance(c, Charge) for c in charges):
        raise ConfigError(f"model.charges={spec!r} is invalid: it must return a noether_sim.Charge or a non-empty "
                          f"list of them (Charge.quadratic, Charge.linear, Charge.function), not {charges!r:.200}")
    out = model.with_charges(*charges)
    _CHARGED_MODELS[key] = out
    return out


def build_model(cfg):
    """The study's model (``cfg["model"]``), with the user's charges when ``model.charges`` names a factory."""
    model = _build_model(cfg)
    spec = cfg["model"].get("charges")
    return model if spec is None else with_user_charges(model, spec, cfg["model"].get("factory_path"))


def _build_model(cfg):
    m = cfg["model"]
    if m["kind"] == "custom":
        return build_custom_model(m["factory"], m.get("factory_path"))
    if m["kind"] == "attention":
        from .attention import SelfAttention

        return SelfAttention(m["d_model"], heads=m["heads"], d_k=m.get("d_k"), d_v=m.get("d_v"), tokens=m["tokens"],
                             causal=m["causal"], readout=m["readout"], d_out=m.get("d_out"),
                             mlp_hidden=m.get("mlp_hidden"))
    if m["kind"] == "residual_mlp":
        from .resnet import ResidualMLP

        d_in, width, d_out = m["widths"]
        return ResidualMLP(d_in, width, m["hidden"], m["blocks"], d_out, bias=m["bias"], activation=m["activation"],
                           loss=m["loss"], slope=m["slope"], power=m["power"], input_projection=m["input_projection"],
                           output_projection=m["output_projection"])
    if m["kind"] == "mlp":
        from .mlp import MLP

        base = MLP(tuple(m["widths"]), bias=m["bias"], activation=m["activation"], loss=m["loss"],
                   slope=m["slope"], power=m["power"], normalised_first_layer=m["normalised_first_layer"],
                   normalisation=m.get("normalisation"), residual=m.get("residual", False))
    else:
        base = DeepLinear(tuple(m["widths"]), bias=m["bias"])
    if m.get("lora_rank") is None:
        return base
    from .lora import LoRA

    layers = m.get("lora_layers")
    return LoRA(base, m["lora_rank"], layers=None if layers is None else tuple(layers),
                base_seed=m.get("lora_base_seed", 0))


def build_data(cfg):
    base = _build_base_data(cfg)
    aug = cfg["data"].get("augment")
    if not aug:
        return base
    shifts = aug.get("shifts")
    return data_mod.augment(base, aug["group"], shifts=None if shifts == "quadrature" else shifts,
                            n_shifts=aug.get("n_shifts"), planes=aug.get("planes"), n_angles=aug.get("n_angles"),
                            degree=aug["degree"])


def _build_base_data(cfg):
    d, m = cfg["data"], cfg["model"]
    widths = [m["n_in"], m["n_out"]] if m["kind"] == "custom" else m.get("widths")
    if d["kind"] == "sequences":
        return data_mod.sequences(build_model(cfg), d["n_points"], noise=d["noise"], seed=d["seed"],
                         teacher_scale=d["teacher_scale"])
    if d["kind"].startswith("teacher_"):
        from . import mlp

        m = cfg["model"]
        teacher = mlp.MLP(tuple(widths), bias=m["bias"], activation=m["activation"], loss=m["loss"],
                          slope=m["slope"], power=m["power"])
        if d["kind"] == "teacher_classification":
            return mlp.teacher_classification(teacher, d["n_points"], seed=d["seed"],
                                              weight_scale=d["teacher_scale"], label_noise=d["label_noise"])
        return mlp.teacher_regression(teacher, d["n_points"], noise=d["noise"], seed=d["seed"],
                                      weight_scale=d["teacher_scale"])
    if d["kind"] == "whitened":
        return data_mod.whitened(widths[0], widths[-1], d["n_points"], d["singular_values"], seed=d["seed"])
    return data_mod.synthetic_regression(widths[0], widths[-1], d["n_points"], noise=d["noise"],
                                         teacher_scale=d["teacher_scale"], seed=d["seed"])


def build_init(cfg):
    i = cfg["init"]
    if i["kind"] == "gaussian":
        return init_mod.Gaussian(scale=i["scale"], bias_scale=i["bias_scale"])
    if i["kind"] == "lora_b_zero":
        return build_model(cfg).usual_start(i["scale"])
    return init_mod.INITS[i["kind"]](scale=i["scale"])
