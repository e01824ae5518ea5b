"""Low-rank adapters on a frozen network: layer l's weight is W₀_l + B_l A_l, only (A_l, B_l) train.

The base is run by the MLP kernel (kernels/mlp.py; a deep linear base is an MLP with the identity
activation), on the full base parameters θ_full = θ₀ with W₀_l + B_lA_l in place of each adapted W₀_l.
Its gradient G_l = ∂L/∂W_l pulls back to the factors: ∂L/∂A_l = B_lᵀG_l, ∂L/∂B_l = G_lA_lᵀ.

Descriptor (kernels/layout.py): the base's MLP descriptor with kind MODEL_LORA, its offsets those of
θ_full, then, after the MLP's MLP_EXTRAS (= E) extras,
    extra E      number of adapters k
    extra E + 1  rank r
    extra E + 2  P₀, the length of θ_full
    extra E + 3 + 3j, … + 1, … + 2   adapter j: its layer l, offset of A_l (r × n_{l−1}) and of B_l (n_l × r)
model_floats: the MLP's three floats, then θ₀ (P₀ frozen base parameters), then optionally one factor κ_j
per adapter: adapter j then adds κ_j·B_jA_j, and its factors' gradients are κ_j·B_jᵀG, κ_j·GA_jᵀ. Rates of
their own for A and B (LoRA+) run through these, κ_j = √(m_{A_j}m_{B_j}) (noether_sim/layer_lr.py); without
them the adapters are the plain ones, bit for bit.

Charges (GL(r) between B_l and A_l, theory.md §8): per adapter D_l = B_lᵀB_l − A_lA_lᵀ (r × r,
row-major; degree 2); with a softmax head and an adapter on the last layer L, the translations
B_L → B_L + 1uᵀ add T = Σ_c B_L[c, s] for s = 1 … r (degree 1). Isometric (momentum):
J_l = antisym(A_lP_{A_l}ᵀ − P_{B_l}ᵀB_l), then JT = Σ_c P_{B_L}[c, s] for the softmax translations.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import extra, model_floats_length, n_layers, width
from .mlp import LOSS_SOFTMAX_CE, MLP_EXTRAS, mlp_loss_grad, mlp_work_size

F_BASE = 3  # θ₀ starts here in model_floats


@njit(cache=True, inline="always")
def n_adapters(ints):
    return extra(ints, MLP_EXTRAS)


@njit(cache=True, inline="always")
def rank(ints):
    return extra(ints, MLP_EXTRAS + 1)


@njit(cache=True, inline="always")
def n_base(ints):
    return extra(ints, MLP_EXTRAS + 2)


@njit(cache=True, inline="always")
def adapter(ints, j):
    """(layer l, offset of A_l, offset of B_l) of adapter j."""
    k = MLP_EXTRAS + 3 + 3 * j
    return extra(ints, k), extra(ints, k + 1), extra(ints, k + 2)


@njit(cache=True, inline="always")
def _translated(ints):
    """True when a softmax head's last layer carries an adapter (its B's column sums are charges)."""
    k = n_adapters(ints)
    return extra(ints, 1) == LOSS_SOFTMAX_CE and adapter(ints, k - 1)[0] == n_layers(ints)


@njit(cache=True, fastmath=FASTMATH)
def _column_sums(x, q, pos, ints):
    """Σ_c x[B_L[c, s]] for s = 1 … r into q[pos : pos + r] (x: θ, a gradient or a momentum)."""
    r = rank(ints)
    layer, ao, bo = adapter(ints, n_adapters(ints) - 1)
    n = width(ints, layer)
    for s in range(r):
        acc = 0.0
        for a in range(n):
            acc += x[bo + a * r + s]
        q[pos + s] = acc


@njit(cache=True)
def lora_work_size(ints, n_points):
    return mlp_work_size(ints, n_points) + 2 * n_base(ints)


@njit(cache=True, fastmath=FASTMATH)
def lora_loss_grad(theta, grad, ints, floats, X, Y, work):
    """Loss of one adapter row; ∂L/∂A_l, ∂L/∂B_l written into ``grad``."""
    P0 = n_base(ints)
    r = rank(ints)
    ws = work.shape[0] - 2 * P0
    full = work[ws: ws + P0]
    gfull = work[ws + P0: ws + 2 * P0]
    for k in range(P0):
        full[k] = floats[F_BASE + k]
    scaled = model_floats_length(ints, floats) > F_BASE + P0  # per-adapter factors κ_j (LoRA+ rates; not user charges' values)
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        wo = ints[3 + ints[1] + layer]  # weight_offset of the full layout
        kap = floats[F_BASE + P0 + j] if scaled else 1.0
        for a in range(n):
            for c in range(m):
                acc = 0.0
                for s in range(r):
                    acc += theta[bo + a * r + s] * theta[ao + s * m + c]
                if scaled:
                    acc *= kap
                full[wo + a * m + c] += acc
    loss = mlp_loss_grad(full, gfull, ints, floats, X, Y, work[:ws])
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        wo = ints[3 + ints[1] + layer]
        kap = floats[F_BASE + P0 + j] if scaled else 1.0
        for s in range(r):  # ∂A = κBᵀG
            for c in range(m):
                acc = 0.0
                for a in range(n):
                    acc += theta[bo + a * r + s] * gfull[wo + a * m + c]
                grad[ao + s * m + c] = acc * kap if scaled else acc
        for a in range(n):  # ∂B = κGAᵀ
            for s in range(r):
                acc = 0.0
                for c in range(m):
                    acc += gfull[wo + a * m + c] * theta[ao + s * m + c]
                grad[bo + a * r + s] = acc * kap if scaled else acc
    return loss


@njit(cache=True, fastmath=FASTMATH)
def lora_charges(theta, q, ints, floats):
    """D_l = B_lᵀB_l − A_lA_lᵀ per adapter (or the GD law's η² term when given a gradient)."""
    r = rank(ints)
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        pos = j * r * r
        for s in range(r):
            for t in range(r):
                acc = 0.0
                for a in range(n):
                    acc += theta[bo + a * r + s] * theta[bo + a * r + t]
                for c in range(m):
                    acc -= theta[ao + s * m + c] * theta[ao + t * m + c]
                q[pos + s * r + t] = acc
    if _translated(ints):
        _column_sums(theta, q, n_adapters(ints) * r * r, ints)


@njit(cache=True, fastmath=FASTMATH)
def lora_charge_scales(theta, scales, ints, floats):
    """|A_l|² + |B_l|² per adapter: the size of the terms that cancel in D_l."""
    r = rank(ints)
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        s = 0.0
        for k in range(ao, ao + r * m):
            s += theta[k] * theta[k]
        for k in range(bo, bo + n * r):
            s += theta[k] * theta[k]
        scales[j] = s
    if _translated(ints):
        layer, ao, bo = adapter(ints, n_adapters(ints) - 1)
        s = 0.0
        for k in range(bo, bo + width(ints, layer) * r):
            s += abs(theta[k])
        scales[n_adapters(ints)] = s


@njit(cache=True)
def lora_n_isometric(ints):
    return n_adapters(ints) * rank(ints) * rank(ints) + (rank(ints) if _translated(ints) else 0)


@njit(cache=True, fastmath=FASTMATH)
def lora_isometric_charges(theta, mom, out, ints, floats):
    """J_l = antisym(A_lP_{A_l}ᵀ − P_{B_l}ᵀB_l) per adapter, r × r row-major."""
    r = rank(ints)
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        C = np.zeros((r, r))
        for s in range(r):
            for t in range(r):
                acc = 0.0
                for c in range(m):
                    acc += theta[ao + s * m + c] * mom[ao + t * m + c]
                for a in range(n):
                    acc -= mom[bo + a * r + s] * theta[bo + a * r + t]
                C[s, t] = acc
        pos = j * r * r
        for s in range(r):
            for t in range(r):
                out[pos + s * r + t] = 0.5 * (C[s, t] - C[t, s])
    if _translated(ints):
        _column_sums(mom, out, n_adapters(ints) * r * r, ints)


@njit(cache=True, fastmath=FASTMATH)
def lora_isometric_scales(theta, mom, scales, ints, floats):
    """|A_l||P_{A_l}| + |B_l||P_{B_l}| per adapter (Frobenius)."""
    r = rank(ints)
    for j in range(n_adapters(ints)):
        layer, ao, bo = adapter(ints, j)
        n, m = width(ints, layer), width(ints, layer - 1)
        s = 0.0
        for lo, size in ((ao, r * m), (bo, n * r)):
            a2 = 0.0
            m2 = 0.0
            for k in range(lo, lo + size):
                a2 += theta[k] * theta[k]
                m2 += mom[k] * mom[k]
            s += np.sqrt(a2 * m2)
        scales[j] = s
    if _translated(ints):
        layer, ao, bo = adapter(ints, n_adapters(ints) - 1)
        s = 0.0
        for k in range(bo, bo + width(ints, layer) * r):
            s += abs(mom[k])
        scales[n_adapters(ints)] = s
