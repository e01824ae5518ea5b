"""Your own charges on a built-in model from a TOML study: ``model.charges = "adapter_charges:charges"``.

The study builds the model from its [model] table (here low-rank adapters on a deep linear network) and
calls ``charges(model)``; the list it returns is added with ``model.with_charges(...)``. These are the
adapter balance entry D1[0, 1] = (B_1ᵀB_1 − A_1A_1ᵀ)[0, 1] written by hand as ½θᵀSθ (conserved by gradient
flow; gradient descent's exact law decides it) and the control |θ|² (not conserved).

Run: noether-sim run examples/custom_models/lora_charges_study.toml
"""

import numpy as np

import noether_sim as ns


def adapter_entry(model, layer_index, s, t):
    """(B_lᵀB_l − A_lA_lᵀ)[s, t] of the adapter on ``model.layers[layer_index]`` as ½θᵀSθ: +1 at (B[a, s],
    B[a, t]) and −1 at (A[s, c], A[t, c]), symmetrised; the indices from the model's own layout."""
    idx = [W for W, _ in model.unflatten(np.arange(model.n_params))]  # A_1, B_1, A_2, B_2, … as index arrays
    A, B = idx[2 * layer_index], idx[2 * layer_index + 1]
    S = np.zeros((model.n_params, model.n_params))
    for sign, u, w in ((1.0, B[:, s], B[:, t]), (-1.0, A[s, :], A[t, :])):
        for i, j in zip(u, w):
            S[i, j] += sign
            S[j, i] += sign
    return S


def charges(model):
    """The study's user charges for a LoRA model: D1[0, 1] by hand, and |θ|²."""
    return [ns.Charge.quadratic(adapter_entry(model, 0, 0, 1), "d1_01", description="D1[0, 1] written by hand"),
            ns.Charge.quadratic(np.eye(model.n_params), "norm", description="|θ|² (a control)")]
