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

Biases (``bias_lr``). An MLP with biases takes its own bias rates m_{b_i} (one per layer; a single number
is the same for every layer; None: each bias with its layer, m_{b_i} = m_i). In φ the biases are
β_i = b_i/√m_{b_i}, the weights scale as above, and the inputs by c, so pre-activation i of the θ-network
is k_i = Π_{j≤i}√m_j / c times that of the φ-network provided layer i of the φ-network adds e_i·β_i with
e_i = √m_{b_i}·Π_{j>i}√m_j (k_L = 1: the outputs agree). The MLP kernel takes these factors (kernels/mlp.py,
model_floats); with every e_i = 1 they are left out and the run is the plain one bit for bit. The charges
of φ are then the weighted ones of theory.md §7 with their bias terms,

    C_i = W_{i+1}ᵀW_{i+1}/m_{i+1} − W_iW_iᵀ/m_i − b_ib_iᵀ/m_{b_i},   r_η = (|w_in|²/m_i + b²/m_{b_i}) − α|w_out|²/m_{i+1},

and descent's exact law gains −η²m_{b_i}g_{b_i}g_{b_i}ᵀ (resp. +η²m_{b_i}g_b²).

Langevin (``dynamics="langevin"``, or momentum with a temperature). φ gets the plain noise √(2ηT)ξ, so θ
gets √(2η_iT)ξ with η_i = ηm_i per layer: the preconditioned Langevin dynamics dθ = −M∇L dt + √(2TM) dW,
whose stationary law is still ∝ e^{−L/T}. The Itô drift of a weighted charge is that of the unweighted
charge in φ, so theory.md §6's expectation laws hold for C_i and r_η as written (e.g. E[C_i(t)] =
C_i(0) + 2T(n_{i+1} − n_{i−1} − [bias_i]) t I at λ = 0): the weights cancel against the layer's noise.

Weight decay. ``weight_decay=λ`` with layer rates decays every layer at the base rate,
θ̇_i = −m_i∇_iL − λθ_i (descent: θ_i ← (1 − ηλ)θ_i − ηm_i∇_iL), which is plain decay in φ: the weighted
charges keep their law Q(k+1) = (1 − ηλ)²Q(k) + η²(…) (e^{−2λt} under the flow). The other convention,
decay at each layer's own rate, θ_i ← (1 − η_iλ)θ_i − η_i∇_iL (SGD with per-group learning rates in PyTorch),
is not offered: there the pieces of C_i shrink at different rates, and the cross terms leave
η²λ(m_{i+1} − m_i)(G̃_iΦ_iᵀ + Φ_iG̃_iᵀ) (+ the bias analogue) per step, so C_i has no law of its own
(under the flow dC_i/dt = −2λ(m_{i+1}Φ_{i+1}ᵀΦ_{i+1} − m_iΦ_iΦ_iᵀ − …) is not a function of C_i).

Low-rank adapters (LoRA+, ``ns.LoRA``): ``layer_lr=(m_A, m_B)`` for every adapter (LoRA+ takes m_B = λm_A,
λ ≫ 1), or one pair per adapter. In Ã = A/√m_A, B̃ = B/√m_B the adapted weight is W₀ + κB̃Ã with
κ = √(m_Am_B), a factor the adapter kernel takes (kernels/lora.py); GL(r) still acts there, so the
weighted adapter charge BᵀB/m_B − AAᵀ/m_A is conserved under the flow, with descent's exact law
η²(m_BG_BᵀG_B − m_AG_AG_Aᵀ) per step.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate as v
from .data import TrainingData

DEGREE_ONE = ("relu", "leaky_relu", "abs", "linear")
# the dynamics that commute with the linear map θ = √M φ (the optimizers' coordinate-wise steps do not)
LAYER_LR_DYNAMICS = ("gf", "gd", "momentum", "heavy_ball", "nesterov", "langevin")


def check_bias_lr(bias_lr, layer_lr, model):
    """Validated bias multipliers, one per layer (tuple), or None (each bias with its layer).

    ``layer_lr`` is the validated tuple (all ones when only bias rates are given)."""
    if bias_lr is None:
        return None
    n_layers = len(layer_lr)
    if not getattr(model, "bias", False):
        v.fail("bias_lr", bias_lr, "needs a network with biases (bias=True)")
    if getattr(model, "kind", "") != "mlp":
        v.fail("bias_lr", bias_lr, "is available for MLPs (a deep linear network with biases is "
                                   "MLP(widths, activation='linear', bias=True))")
    scalar = isinstance(bias_lr, numbers.Real) and not isinstance(bias_lr, bool)
    items = [bias_lr] * n_layers if scalar else bias_lr
    try:
        arr = np.asarray(items, dtype=float)
    except (TypeError, ValueError):
        v.fail("bias_lr", bias_lr, f"must be one multiplier > 0 or {n_layers}, one per layer's bias")
    if (arr.ndim != 1 or len(arr) != n_layers
            or any(isinstance(x, bool) or not isinstance(x, numbers.Real) for x in np.atleast_1d(items))):
        v.fail("bias_lr", bias_lr, f"must be one multiplier > 0 or {n_layers}, one per layer's bias")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        v.fail("bias_lr", bias_lr, "every multiplier must be finite and > 0")
    return tuple(float(x) for x in arr)


def check_layer_lr(layer_lr, model, data, dynamics, weight_decay, bias_lr=None):
    """Validated multipliers as a tuple of floats, or None; ConfigError before any work. Given only
    ``bias_lr``, the layers' multipliers are all 1 (check the bias rates with ``check_bias_lr``)."""
    if layer_lr is None and bias_lr is not None and hasattr(model, "widths") and getattr(model, "kind", "") != "lora":
        layer_lr = (1.0,) * (len(model.widths) - 1)
    if layer_lr is None:
        return None
    if getattr(model, "kind", "") == "lora":
        return _check_lora_rates(layer_lr, model, data, dynamics, bias_lr)
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
    if getattr(model, "bias", False) and getattr(model, "kind", "") != "mlp":
        v.fail("layer_lr", layer_lr, "with biases needs an MLP (a deep linear network with biases is "
                                     "MLP(widths, activation='linear', bias=True))")
    if getattr(model, "kind", "") == "mlp" and (model.activation not in DEGREE_ONE or model.normalised_first_layer
                                              or model.normalisation is not None):
        v.fail("layer_lr", layer_lr, f"needs an MLP with a degree-1 homogeneous activation ({', '.join(DEGREE_ONE)}) "
                                     "and no weight-normalised first layer")
    if len(data.symmetry_names):
        v.fail("layer_lr", layer_lr, "does not combine with augmented data (data symmetry charges)")
    return tuple(float(x) for x in arr)


def _check_lora_rates(layer_lr, model, data, dynamics, bias_lr):
    """LoRA+: (m_A, m_B) for every adapter, or one pair per adapter (m_{A_1}, m_{B_1}, m_{A_2}, …)."""
    k = len(model.layers)
    try:
        arr = np.asarray(layer_lr, dtype=float)
    except (TypeError, ValueError):
        arr = np.array([np.nan, np.nan, np.nan])
    want = f"(m_A, m_B) for every adapter or {2 * k} multipliers (m_A, m_B per adapter, layers {list(model.layers)})"
    if arr.ndim != 1 or len(arr) not in (2, 2 * k) or any(
            isinstance(x, bool) or not isinstance(x, numbers.Real) for x in np.atleast_1d(layer_lr)):
        v.fail("layer_lr", layer_lr, f"for low-rank adapters must be {want}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        v.fail("layer_lr", layer_lr, "every multiplier must be finite and > 0")
    if dynamics not in LAYER_LR_DYNAMICS:
        v.fail("layer_lr", layer_lr, f"applies to {', '.join(LAYER_LR_DYNAMICS)} (linear in the gradient), "
                                     f"not to dynamics={dynamics!r}")
    if bias_lr is not None:
        v.fail("bias_lr", bias_lr, "does not apply to low-rank adapters (the factors have no biases)")
    if len(data.symmetry_names):
        v.fail("layer_lr", layer_lr, "does not combine with augmented data (data symmetry charges)")
    return tuple(float(x) for x in (np.tile(arr, k) if len(arr) == 2 else arr))


def adapter_factors(model, layer_lr):
    """κ_j = √(m_{A_j}m_{B_j}) per adapter (kernels/lora.py), or None when every κ_j is 1."""
    m = np.asarray(layer_lr, dtype=float)
    kap = np.sqrt(m[0::2] * m[1::2])
    return None if np.all(kap == 1.0) else kap


def param_scale(model, layer_lr, bias_lr=None) -> np.ndarray:
    """√m_i for every weight of layer i and √m_{b_i} for its bias (the map φ → θ)."""
    mb = layer_lr if bias_lr is None else bias_lr
    s = np.empty(model.n_params)
    for i, (W, b) in enumerate(model.unflatten(np.arange(model.n_params)), start=1):
        s[np.asarray(W).ravel()] = np.sqrt(layer_lr[i - 1])
        if b is not None:
            s[np.asarray(b)] = np.sqrt(mb[i - 1])
    return s


def bias_factors(model, layer_lr, bias_lr=None):
    """The MLP kernel's bias factors e_i = √m_{b_i}·Π_{j>i}√m_j, or None when the network has no biases or
    every factor is 1 (then the kernel runs the plain network)."""
    if layer_lr is None or not getattr(model, "bias", False):
        return None
    mb = layer_lr if bias_lr is None else bias_lr
    root = np.sqrt(np.asarray(layer_lr))
    e = np.array([np.sqrt(mb[i]) * float(np.prod(root[i + 1:])) for i in range(len(layer_lr))])
    return None if np.all(e == 1.0) else e


def weighted_constants(model, floats, layer_lr, bias_lr=None) -> np.ndarray:
    """The model's kernel constants, with the bias factors appended where they are needed."""
    if getattr(model, "kind", "") == "lora":  # LoRA+: the adapters' factors κ_j after θ₀
        e = adapter_factors(model, layer_lr)
    else:
        e = bias_factors(model, layer_lr, bias_lr)
    return floats if e is None else np.concatenate([np.asarray(floats, dtype=float), e])


def scaled_data(data: TrainingData, layer_lr, model=None) -> TrainingData:
    """The data the φ-run trains on: inputs times c = Π √m_i (the data itself when c = 1; adapters scale
    through their factors κ_j instead, so their data is the data)."""
    if getattr(model, "kind", "") == "lora":
        return data
    c = float(np.prod(np.sqrt(layer_lr)))
    if c == 1.0:
        return data
    return TrainingData(data.X * c, data.Y, data.description + f" (inputs × {c:g}: layer_lr)",
                        config=data.config)
