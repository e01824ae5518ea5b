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
from .gemm import gemm
from .layout import bias_offset, n_augmented, n_layers, weight_offset, widest_layer, width


@njit(cache=True)
def linear_work_size(ints):
    L = n_layers(ints)
    na = n_augmented(ints)
    nL = width(ints, L)
    widest = widest_layer(ints)
    input_side = width(ints, L) * na + 2 * widest * na
    for i in range(1, L + 1):
        input_side += width(ints, i) * na
    output_side = 2 * nL * na + 3 * widest * nL
    for i in range(1, L - 1):
        output_side += nL * width(ints, i)
    return max(input_side, output_side)


@njit(cache=True)
def _chain_costs(ints):
    """Multiply-adds of one gradient with products from the input side and from the output side."""
    L = n_layers(ints)
    na = n_augmented(ints)
    nL = width(ints, L)
    inner = 0
    for i in range(2, L + 1):
        inner += width(ints, i) * width(ints, i - 1)
    first = width(ints, 1) * width(ints, 0)
    input_side = 3 * na * inner + nL * na * na
    output_side = 3 * nL * (inner - width(ints, L) * width(ints, L - 1)) + 3 * nL * first + nL * na * na
    return input_side, output_side


@njit(cache=True)
def _r_offset(ints, i):
    """Where R_i = W_L … W_{i+1} (n_L × n_i) lives: in theta for i = L − 1 (it is W_L), else in work."""
    L = n_layers(ints)
    if i == L - 1:
        return weight_offset(ints, L)
    off = 0
    for j in range(1, i):
        off += width(ints, L) * width(ints, j)
    return off


@njit(cache=True, fastmath=FASTMATH)
def linear_loss_grad_output_side(theta, grad, ints, floats, sxx, syx, work):
    """Loss and gradient by products from the output side (R_i, Φ_i); see the module docstring."""
    L = n_layers(ints)
    na = n_augmented(ints)
    n0 = width(ints, 0)
    nL = width(ints, L)
    has_bias = ints[2] != 0
    widest = widest_layer(ints)

    # R_i = R_{i+1} W_{i+1} for i = L-2 … 1 (R_{L-1} = W_L is read in place).
    for i in range(L - 2, 0, -1):
        ni, nn = width(ints, i), width(ints, i + 1)
        prev = theta if i + 1 == L - 1 else work
        gemm(work, _r_offset(ints, i), ni, prev, _r_offset(ints, i + 1), nn, 1,
             theta, weight_offset(ints, i + 1), ni, nL, ni, nn, 0)
    pos = _r_offset(ints, L - 2) + nL * width(ints, L - 2) if L >= 3 else 0

    # Ã = R_1 [W_1 | b_1] + [0 | ρ], ρ = Σ_{i≥2} R_i b_i (the later biases carried to the output).
    a_off = pos
    pos += nL * na
    if L == 1:
        for r in range(nL):
            for c in range(n0):
                work[a_off + r * na + c] = theta[weight_offset(ints, 1) + r * n0 + c]
    else:
        n1 = width(ints, 1)
        r1 = theta if L == 2 else work
        gemm(work, a_off, na, r1, _r_offset(ints, 1), n1, 1, theta, weight_offset(ints, 1), n0, nL, n0, n1, 0)
    if has_bias:
        for r in range(nL):
            acc = theta[bias_offset(ints, L) + r]
            for i in range(1, L):
                ni = width(ints, i)
                ri = theta if i == L - 1 else work
                ro = _r_offset(ints, i) + r * ni
                bo = bias_offset(ints, i)
                for k in range(ni):
                    acc += ri[ro + k] * theta[bo + k]
            work[a_off + r * na + n0] = acc

    # T = Ã Σxx, loss = ½⟨T, Ã⟩ − ⟨Σyx, Ã⟩ + ½ syy, then E = T − Σyx in place of T.
    e_off = pos
    pos += nL * na
    gemm(work, e_off, na, work, a_off, na, 1, sxx.reshape(na * na), 0, na, nL, na, na, 0)
    loss = 0.5 * floats[0]
    for r in range(nL):
        acc = 0.0
        for c in range(na):
            y = syx[r, c]
            t = work[e_off + r * na + c]
            acc += work[a_off + r * na + c] * (0.5 * t - y)
            work[e_off + r * na + c] = t - y
        loss += acc

    # Backward: F_i = E M_{i-1}ᵀ (n_L × n_{i-1}) with F_1 = E[:, :n0] and F_{i+1} = F_i W_iᵀ + e b_iᵀ,
    # e = E[:, n0]; then G_i = R_iᵀ F_i, g_{b_i} = R_iᵀ e, G_L = F_L, g_{b_L} = e. The recursion runs
    # on Φ_i = F_iᵀ (n_{i-1} × n_L), so that gemm reads contiguous rows; F_i is a transposed copy.
    phi = pos
    phi_next = pos + widest * nL
    f_off = pos + 2 * widest * nL
    for c in range(n0):
        for r in range(nL):
            work[phi + c * nL + r] = work[e_off + r * na + c]
    for i in range(1, L + 1):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        wo = weight_offset(ints, i)
        if i == L:
            for r in range(nL):
                for c in range(nprev):
                    grad[wo + r * nprev + c] = work[phi + c * nL + r]
        else:
            ri = theta if i == L - 1 else work
            ro = _r_offset(ints, i)
            if i == 1:  # F_1 is E[:, :n0], read in place
                gemm(grad, wo, nprev, ri, ro, 1, ni, work, e_off, na, ni, nprev, nL, 0)
            else:
                for r in range(nL):
                    for c in range(nprev):
                        work[f_off + r * nprev + c] = work[phi + c * nL + r]
                gemm(grad, wo, nprev, ri, ro, 1, ni, work, f_off, nprev, ni, nprev, nL, 0)
        if has_bias:
            bo = bias_offset(ints, i)
            if i == L:
                for a in range(ni):
                    grad[bo + a] = work[e_off + a * na + n0]
            else:
                for a in range(ni):
                    acc = 0.0
                    for r in range(nL):
                        acc += ri[ro + r * ni + a] * work[e_off + r * na + n0]
                    grad[bo + a] = acc
        if i < L:  # Φ_{i+1} = W_i Φ_i + b_i eᵀ
            gemm(work, phi_next, nL, theta, wo, nprev, 1, work, phi, nL, ni, nL, nprev, 0)
            if has_bias:
                bo = bias_offset(ints, i)
                for a in range(ni):
                    for r in range(nL):
                        work[phi_next + a * nL + r] += theta[bo + a] * work[e_off + r * na + n0]
            phi, phi_next = phi_next, phi
    return loss


@njit(cache=True, fastmath=FASTMATH)
def linear_loss_grad_input_side(theta, grad, ints, floats, sxx, syx, work):
    """Loss and gradient by products from the input side (M_i); see the module docstring."""
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
    η² coefficient of gradient descent's exact one-step law. It is the bilinear form at (θ, θ): each
    entry's sum runs in the same order for (a, b) and (b, a), so D_i is exactly symmetric and the
    form's symmetrisation leaves it bit for bit unchanged (tests/test_linear_charges.py).
    """
    linear_charges_cross(theta, theta, q, ints)


@njit(cache=True, fastmath=FASTMATH)
def linear_charges_cross(a, b, q, ints):
    """The bilinear form of the balance charges: D(a + b) = D(a) + 2B(a, b) + D(b), row-major per hidden
    layer, B_i(a, b) the symmetric part of A_{i+1}ᵀB_{i+1} − A_iB_iᵀ − a_{b_i}b_{b_i}ᵀ (A, B: the layers
    of a, b). One evaluation's cost, where polarisation (D(a + b) − D(a − b))/4 would take two.
    """
    L = n_layers(ints)
    widest = widest_layer(ints)
    neg_t = np.empty(widest * widest)
    pos = 0
    for i in range(1, L):
        ni = width(ints, i)
        nprev = width(ints, i - 1)
        nnext = width(ints, i + 1)
        wi = weight_offset(ints, i)
        wn = weight_offset(ints, i + 1)
        gemm(q, pos, ni, a, wn, 1, ni, b, wn, ni, ni, ni, nnext, 0)
        for r in range(ni):
            for c in range(nprev):
                neg_t[c * ni + r] = -b[wi + r * nprev + c]
        gemm(q, pos, ni, a, wi, nprev, 1, neg_t, 0, ni, ni, ni, nprev, 1)
        if ints[2] != 0:
            bo = bias_offset(ints, i)
            for r in range(ni):
                for c in range(ni):
                    q[pos + r * ni + c] -= a[bo + r] * b[bo + c]
        for r in range(ni):
            for c in range(r + 1, ni):
                m = 0.5 * (q[pos + r * ni + c] + q[pos + c * ni + r])
                q[pos + r * ni + c] = m
                q[pos + c * ni + r] = m
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
