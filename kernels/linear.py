"""Deep linear networks f(x) = W_L(…(W_1 x + b_1)…) + b_L with squared loss, through data moments.

With x̃ = [x; 1] (or x̃ = x without biases) the network is affine, f(x) = Ã x̃, with Ã the top rows of
the product of the augmented layer maps [[W_i, b_i], [0, 1]]. Then

    L = ½ tr(Ã Σxx Ãᵀ) − tr(Ã Σyxᵀ) + ½ syy,   Σxx = X̃X̃ᵀ/N,  Σyx = YX̃ᵀ/N,  syy = tr(YYᵀ)/N,

and dL/dÃ = E = Ã Σxx − Σyx. Back-propagating E through the product costs the same as the forward
product, independent of N. Matrices are handled as row-major views of the flat parameter row.

Work buffer (length ``linear_work_size``): M_1 … M_L (M_i = top n_i rows of the product of the first
i augmented maps, shape n_i × na), the product Ã Σxx (n_L × na) and two back-propagation buffers.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import bias_offset, n_augmented, n_layers, weight_offset, widest_layer, width


@njit(cache=True)
def linear_work_size(ints):
    L = n_layers(ints)
    na = n_augmented(ints)
    size = 0
    for i in range(1, L + 1):
        size += width(ints, i) * na
    return size + width(ints, L) * na + 2 * widest_layer(ints) * na


@njit(cache=True, fastmath=FASTMATH)
def linear_loss_grad(theta, grad, ints, floats, sxx, syx, work):
    """Loss of one parameter row; its gradient is written into ``grad``."""
    L = n_layers(ints)
    na = n_augmented(ints)
    n0 = width(ints, 0)
    has_bias = ints[2] != 0

    # Forward: M_i = W_i M_{i-1} (+ b_i in the last column), M_0 = [I | 0]. M_i starts at m_off.
    m_off = 0
    m_prev = 0
    for i in range(1, L + 1):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        W = theta[weight_offset(ints, i): weight_offset(ints, i) + ni * nprev].reshape((ni, nprev))
        M = work[m_off: m_off + ni * na].reshape((ni, na))
        if i == 1:
            for r in range(ni):
                for c in range(n0):
                    M[r, c] = W[r, c]
        else:
            Mp = work[m_prev: m_prev + nprev * na].reshape((nprev, na))
            for r in range(ni):
                for c in range(na):
                    M[r, c] = 0.0
                for k in range(nprev):
                    w = W[r, k]
                    for c in range(na):
                        M[r, c] += w * Mp[k, c]
        if has_bias:
            bo = bias_offset(ints, i)
            for r in range(ni):
                if i == 1:
                    M[r, n0] = theta[bo + r]
                else:
                    M[r, n0] += theta[bo + r]
        m_prev = m_off
        m_off += ni * na
    pos = m_off  # m_prev is where M_L = Ã starts

    # Output side: T = Ã Σxx, E = T − Σyx, loss = ½⟨T, Ã⟩ − ⟨Σyx, Ã⟩ + ½ syy.
    nL = width(ints, L)
    A = work[m_prev: m_prev + nL * na].reshape((nL, na))
    T = work[pos: pos + nL * na].reshape((nL, na))
    pos += nL * na
    loss = 0.5 * floats[0]
    for r in range(nL):
        for c in range(na):
            T[r, c] = 0.0
        for k in range(na):
            a = A[r, k]
            for c in range(na):
                T[r, c] += a * sxx[k, c]
        acc = 0.0
        for c in range(na):
            acc += A[r, c] * (0.5 * T[r, c] - syx[r, c])
        loss += acc
        for c in range(na):
            T[r, c] -= syx[r, c]  # T now holds E = dL/dÃ

    # Backward: Δ_L = E; G_i = Δ_i M_{i-1}ᵀ, g_{b_i} = Δ_i[:, n0], Δ_{i-1} = W_iᵀ Δ_i.
    widest = widest_layer(ints)
    buf0 = work[pos: pos + widest * na]
    buf1 = work[pos + widest * na: pos + 2 * widest * na]
    delta = T
    m_cur = m_prev  # offset of M_i as i goes down
    for i in range(L, 0, -1):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        wo = weight_offset(ints, i)
        W = theta[wo: wo + ni * nprev].reshape((ni, nprev))
        G = grad[wo: wo + ni * nprev].reshape((ni, nprev))
        if i == 1:
            for r in range(ni):
                for c in range(n0):
                    G[r, c] = delta[r, c]
        else:
            m_cur -= nprev * na
            Mp = work[m_cur: m_cur + nprev * na].reshape((nprev, na))
            for r in range(ni):
                for c in range(nprev):
                    acc = 0.0
                    for k in range(na):
                        acc += delta[r, k] * Mp[c, k]
                    G[r, c] = acc
        if has_bias:
            bo = bias_offset(ints, i)
            for r in range(ni):
                grad[bo + r] = delta[r, n0]
        if i > 1:
            out = (buf0 if i % 2 == 0 else buf1)[: nprev * na].reshape((nprev, na))
            for c in range(nprev):
                for k in range(na):
                    out[c, k] = 0.0
            for r in range(ni):
                for c in range(nprev):
                    w = W[r, c]
                    for k in range(na):
                        out[c, k] += w * delta[r, k]
            delta = out
    return loss


@njit(cache=True, fastmath=FASTMATH)
def linear_charges(theta, q, ints):
    """Balance matrices D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ − b_ib_iᵀ of every hidden layer, row-major.

    Evaluated on a gradient vector g instead of θ this is G_{i+1}ᵀG_{i+1} − G_iG_iᵀ − g_b g_bᵀ, the
    η² coefficient of gradient descent's exact one-step law.
    """
    L = n_layers(ints)
    pos = 0
    for i in range(1, L):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        nnext = width(ints, i + 1)
        D = q[pos: pos + ni * ni].reshape((ni, ni))
        Wi = theta[weight_offset(ints, i): weight_offset(ints, i) + ni * nprev].reshape((ni, nprev))
        Wn = theta[weight_offset(ints, i + 1): weight_offset(ints, i + 1) + nnext * ni].reshape((nnext, ni))
        for a in range(ni):
            for b in range(ni):
                D[a, b] = 0.0
        for r in range(nnext):
            for a in range(ni):
                w = Wn[r, a]
                for b in range(ni):
                    D[a, b] += w * Wn[r, b]
        for a in range(ni):
            for b in range(ni):
                acc = 0.0
                for c in range(nprev):
                    acc += Wi[a, c] * Wi[b, c]
                D[a, b] -= acc
        if ints[2] != 0:
            bo = bias_offset(ints, i)
            for a in range(ni):
                for b in range(ni):
                    D[a, b] -= theta[bo + a] * theta[bo + b]
        pos += ni * ni


@njit(cache=True, fastmath=FASTMATH)
def linear_charge_scales(theta, scales, ints):
    """|W_{i+1}|² + |W_i|² + |b_i|² per hidden layer: the size of the terms that cancel in D_i.

    Round-off in D_i is relative to this, not to |D_i| (which is 0 for a balanced start).
    """
    L = n_layers(ints)
    for i in range(1, L):
        s = 0.0
        for j in (i, i + 1):
            wo = weight_offset(ints, j)
            for k in range(wo, wo + width(ints, j) * width(ints, j - 1)):
                s += theta[k] * theta[k]
        if ints[2] != 0:
            bo = bias_offset(ints, i)
            for k in range(bo, bo + width(ints, i)):
                s += theta[k] * theta[k]
        scales[i - 1] = s
