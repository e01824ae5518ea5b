"""Readers for the int64 model descriptor ``model_ints`` built by ``noether_sim.models``.

    ints[0]                  model kind (MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE, MODEL_MLP, MODEL_LORA,
                             MODEL_CUSTOM, MODEL_ATTENTION; the last two have descriptors of their own:
                             kernels/custom.py, kernels/attention.py)
    ints[1]                  L, the number of weight matrices
    ints[2]                  1 if every layer has a bias, else 0
    ints[3 : 4+L]            widths n_0 … n_L
    ints[4+L : 4+2L]         offset of W_1 … W_L in the flat row (row-major, n_i × n_{i-1})
    ints[4+2L : 4+3L]        offset of b_1 … b_L (meaningless without biases)
    ints[4+3L :]             model-specific extras (activation codes, …)

Multilayer networks (MODEL_MLP, kernels/mlp.py) put five extras there, read by ``extra(ints, k)``:
    extra 0  activation code (ACT_* in kernels/mlp.py)
    extra 1  loss code (LOSS_* in kernels/mlp.py)
    extra 2  1 if the first layer's rows enter only through w/|w| (weight normalisation, no gain)
    extra 3  normalisation of the first hidden layer's pre-activations (NORM_* in kernels/mlp.py)
    extra 4  1 for a residual block f(x) = x + (the network), n_L = n_0
Low-rank adapters (MODEL_LORA, kernels/lora.py) and stacked residual blocks (MODEL_RESIDUAL,
kernels/residual.py) append theirs after these.
"""

from numba import njit

MODEL_DEEP_LINEAR = 0
MODEL_MLP = 1
# Deep linear whose gradient is cheaper by products from the input side (wide outputs); the Python
# model picks it (kernels/linear.py::_chain_costs), so a run compiles only the order it uses.
MODEL_DEEP_LINEAR_INPUT_SIDE = 2
# A user's model (noether_sim.custom.CustomModel): its gradient is the user's compiled function, called
# through its address (kernels/custom.py); its descriptor has a layout of its own (see there).
MODEL_CUSTOM = 3
# Multi-head self-attention (kernels/attention.py): a descriptor of its own, read there, not by the
# readers below: ints[1:9] = heads, d_model, d_k, d_v, tokens, d_out, causal, readout token (−1: all).
MODEL_ATTENTION = 4
# Low-rank adapters on a frozen MLP or deep linear base (kernels/lora.py): the base's MLP descriptor
# with this kind, and the adapters after the MLP extras.
MODEL_LORA = 5
# Stacked residual blocks (kernels/residual.py): the MLP descriptor of the chain (W_in,) W1_1, W2_1, …
# (, W_out) with this kind, and the block count and projections after the MLP extras.
MODEL_RESIDUAL = 6

# A built-in model's descriptor with user charges (``model.with_charges``, kernels/custom.py) ends in this
# tag; ints[-5] is then the number of the user charges' values appended to the model's floats.
USER_TRAILER_TAG = 0x4E53_5553_4552_5131  # "NSUSERQ1"


@njit(cache=True)
def model_floats_length(ints, floats):
    """The length of the model's own floats: ``floats`` less the user charges' values a trailer appended
    (kernels/custom.py). Kernels that read optional floats by the length (bias rates, LoRA+ factors) ask this."""
    n = ints.shape[0]
    if ints[n - 1] == USER_TRAILER_TAG:
        return floats.shape[0] - ints[n - 5]
    return floats.shape[0]


@njit(cache=True)
def model_kind(ints):
    return ints[0]


@njit(cache=True)
def n_layers(ints):
    return ints[1]


@njit(cache=True)
def width(ints, i):
    """n_i, for i = 0 (input) … L (output)."""
    return ints[3 + i]


@njit(cache=True)
def weight_offset(ints, i):
    """Offset of W_i, i = 1 … L."""
    return ints[3 + ints[1] + i]


@njit(cache=True)
def bias_offset(ints, i):
    """Offset of b_i, i = 1 … L."""
    return ints[3 + 2 * ints[1] + i]


@njit(cache=True)
def n_augmented(ints):
    """Columns of the augmented input x̃ = [x; 1] (n_0 + 1 with biases, n_0 without)."""
    return ints[3] + (1 if ints[2] != 0 else 0)


@njit(cache=True)
def widest_layer(ints):
    m = 0
    for i in range(ints[1] + 1):
        m = max(m, ints[3 + i])
    return m


@njit(cache=True, inline="always")
def extra(ints, k):
    """Model-specific extra number k, stored after the bias offsets."""
    return ints[4 + 3 * ints[1] + k]
