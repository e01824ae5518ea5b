"""Isometric charges of deep linear networks (conserved, up to e^{−t/τ}, by momentum flow).

For hidden layer i the GL(n_i) action W_i → M W_i, b_i → M b_i, W_{i+1} → W_{i+1} M⁻¹ has, for
M = I + sE, the generator ξ with ⟨p, ξ⟩ = tr(E C_i),

    C_i = W_i P_iᵀ + b_i p_{b_i}ᵀ − P_{i+1}ᵀ W_{i+1}      (P_i the momentum of W_i).

Antisymmetric E (rotations) are isometries of parameter space, so J_i = (C_i − C_iᵀ)/2 obeys
J_i(t) = e^{−t/τ} J_i(0) exactly under momentum flow, with or without weight decay (theory.md §2, §4).
The symmetric part is −½ dD_i/dt (the balance charges, which momentum breaks).
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import bias_offset, n_layers, weight_offset, width


@njit(cache=True)
def linear_n_isometric(ints):
    n = 0
    for i in range(1, n_layers(ints)):
        n += width(ints, i) * width(ints, i)
    return n


@njit(cache=True, fastmath=FASTMATH)
def layer_isometric(theta, mom, out, pos, ints, i):
    """J_i = antisymmetric part of C_i of hidden layer i, written row-major into out[pos : pos + n_i²]."""
    ni = width(ints, i)
    nprev = width(ints, i - 1)
    nnext = width(ints, i + 1)
    wi = weight_offset(ints, i)
    wn = weight_offset(ints, i + 1)
    C = np.zeros((ni, ni))
    for a in range(ni):
        for b in range(ni):
            acc = 0.0
            for c in range(nprev):
                acc += theta[wi + a * nprev + c] * mom[wi + b * nprev + c]
            for r in range(nnext):
                acc -= mom[wn + r * ni + a] * theta[wn + r * ni + b]
            C[a, b] = acc
    if ints[2] != 0:
        bo = bias_offset(ints, i)
        for a in range(ni):
            for b in range(ni):
                C[a, b] += theta[bo + a] * mom[bo + b]
    for a in range(ni):
        for b in range(ni):
            out[pos + a * ni + b] = 0.5 * (C[a, b] - C[b, a])


@njit(cache=True, fastmath=FASTMATH)
def layer_isometric_scale(theta, mom, ints, i):
    """|W_i||P_i| + |b_i||p_{b_i}| + |W_{i+1}||P_{i+1}| (Frobenius): the size of the terms that cancel in J_i."""
    s = 0.0
    for j in (i, i + 1):
        wo = weight_offset(ints, j)
        a2 = 0.0
        m2 = 0.0
        for k in range(wo, wo + width(ints, j) * width(ints, j - 1)):
            a2 += theta[k] * theta[k]
            m2 += mom[k] * mom[k]
        s += np.sqrt(a2 * m2)
    if ints[2] != 0:
        bo = bias_offset(ints, i)
        a2 = 0.0
        m2 = 0.0
        for k in range(bo, bo + width(ints, i)):
            a2 += theta[k] * theta[k]
            m2 += mom[k] * mom[k]
        s += np.sqrt(a2 * m2)
    return s


@njit(cache=True, fastmath=FASTMATH)
def linear_isometric_charges(theta, mom, out, ints):
    """J_i = antisymmetric part of C_i for every hidden layer, row-major n_i × n_i blocks."""
    pos = 0
    for i in range(1, n_layers(ints)):
        layer_isometric(theta, mom, out, pos, ints, i)
        pos += width(ints, i) * width(ints, i)


@njit(cache=True, fastmath=FASTMATH)
def linear_isometric_scales(theta, mom, scales, ints):
    """Per hidden layer, ``layer_isometric_scale``: the round-off reference of J_i."""
    for i in range(1, n_layers(ints)):
        scales[i - 1] = layer_isometric_scale(theta, mom, ints, i)
