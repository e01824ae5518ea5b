"""Layer-wise learning rates: θ̇_i = −m_i ∇_{θ_i}L (gradient flow) or θ_i ← θ_i − η m_i ∇_{θ_i}L (descent),
with step multipliers ``layer_lr = (m_1, …, m_L)`` (theory.md §7); under momentum flow τθ̈ + θ̇ = −M∇L,
and heavy ball / Nesterov with learning rate ηm_i in layer i.

They run as plain gradient flow / descent in the coordinates φ_i = θ_i/√m_i: there θ̇ = −M∇L becomes
φ̇ = −∇_φL̃ with L̃(φ) = L(√M φ), and the model's charges of φ are the weighted charges

    C_i = W_{i+1}ᵀW_{i+1}/m_{i+1} − W_iW_iᵀ/m_i          (deep linear, balance)
    r_η = |w_in|²/m_in − α|w_out|²/m_out                  (homogeneous MLP, per-neuron rescale)

with gradient descent's exact one-step law C_i' − C_i = η²(m_{i+1}G_{i+1}ᵀG_{i+1} − m_iG_iG_iᵀ), which
the driver already tracks in φ. For networks without biases whose output is positively homogeneous of
degree 1 in each layer (deep linear; MLP with relu, leaky_relu, abs or linear), L̃ is the same network
on inputs scaled by c = Π_i √m_i: f(√M φ; x) = f(φ; c·x). So a run is the package's own run on that
data, started from φ(0) = θ(0)/√M, and its weights are mapped back, θ = √M φ. Multipliers all 1 give
c = 1 and the unweighted run bit for bit. The momentum dynamics are linear in θ and ∇L too, so the
same map carries them (velocities θ̇ = √M φ̇); their isometric charges are then those of φ.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate as v
from .data import TrainingData

DEGREE_ONE = ("relu", "leaky_relu", "abs", "linear")
# the dynamics that commute with the linear map θ = √M φ (the optimizers' coordinate-wise steps do not)
LAYER_LR_DYNAMICS = ("gf", "gd", "momentum", "heavy_ball", "nesterov")


def check_layer_lr(layer_lr, model, data, dynamics, weight_decay):
    """Validated multipliers as a tuple of floats, or None; ConfigError before any work."""
    if layer_lr is None:
        return None
    if getattr(model, "kind", "") == "lora":
        v.fail("layer_lr", layer_lr, "is not available for low-rank adapters yet (per-factor rates, LoRA+): "
                                     "leave it None")
    if not hasattr(model, "widths"):
        v.fail("layer_lr", layer_lr, f"needs a layered network (DeepLinear or MLP), not a {type(model).__name__}")
    n_layers = len(model.widths) - 1
    try:
        arr = np.asarray(layer_lr, dtype=float)
    except (TypeError, ValueError):
        v.fail("layer_lr", layer_lr, f"must be {n_layers} step multipliers > 0, one per layer")
    if arr.ndim != 1 or len(arr) != n_layers or any(isinstance(x, bool) or not isinstance(x, numbers.Real)
                                                    for x in np.atleast_1d(layer_lr)):
        v.fail("layer_lr", layer_lr, f"must be {n_layers} step multipliers, one per layer of widths {model.widths}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        v.fail("layer_lr", layer_lr, "every multiplier must be finite and > 0")
    if dynamics not in LAYER_LR_DYNAMICS:
        v.fail("layer_lr", layer_lr, f"applies to {', '.join(LAYER_LR_DYNAMICS)} (linear in the gradient), "
                                     f"not to dynamics={dynamics!r}")
    if getattr(model, "bias", False):
        v.fail("layer_lr", layer_lr, "needs a network without biases (its weighted run is the same network "
                                     "on scaled inputs only then)")
    if getattr(model, "kind", "") == "mlp" and (model.activation not in DEGREE_ONE or model.normalised_first_layer
                                              or model.normalisation is not None):
        v.fail("layer_lr", layer_lr, f"needs an MLP with a degree-1 homogeneous activation ({', '.join(DEGREE_ONE)}) "
                                     "and no weight-normalised first layer")
    if weight_decay:
        v.fail("layer_lr", layer_lr, f"with weight_decay={weight_decay!r}: the weighted charges have no law under "
                                     "per-layer decay; use weight_decay=0")
    if len(data.symmetry_names):
        v.fail("layer_lr", layer_lr, "does not combine with augmented data (data symmetry charges)")
    return tuple(float(x) for x in arr)


def param_scale(model, layer_lr) -> np.ndarray:
    """√m_i for every parameter of layer i (the map φ → θ)."""
    s = np.empty(model.n_params)
    pos = 0
    for i, m in enumerate(layer_lr, start=1):
        n = model.widths[i] * model.widths[i - 1]
        s[pos:pos + n] = np.sqrt(m)
        pos += n
    return s


def scaled_data(data: TrainingData, layer_lr) -> TrainingData:
    """The data the φ-run trains on: inputs times c = Π √m_i (the data itself when c = 1)."""
    c = float(np.prod(np.sqrt(layer_lr)))
    if c == 1.0:
        return data
    return TrainingData(data.X * c, data.Y, data.description + f" (inputs × {c:g}: layer_lr)",
                        config=data.config)
