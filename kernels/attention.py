"""Multi-head self-attention over a token sequence, squared loss on the sequence or on one readout token.

One sequence is X ∈ R^{T×d} (token t is row t; d = d_model). Head h has W_Q, W_K ∈ R^{d_k×d},
W_V ∈ R^{d_v×d} and W_O ∈ R^{d_out×d_v}:

    Q = X W_Qᵀ, K = X W_Kᵀ, V = X W_Vᵀ                  (T × d_k, T × d_k, T × d_v)
    S[t, s] = ⟨Q_t, K_s⟩ / √d_k                          (query t, key s; causal: only s ≤ t)
    A[t, :] = softmax_s S[t, :]                          (softmax over keys)
    F_t = Σ_h W_O^h Σ_s A^h[t, s] V^h_s                   (d_out)

Loss L = (1/2N) Σ_n Σ_{t ∈ R} |F_t(X_n) − Y_{n,t}|², R every token ("sequence" readout) or one token.

Data: data_a = X as columns, one sequence per column, token-major: row t·d + i is feature i of token t
((T·d) × N); data_b = Y likewise ((|R|·d_out) × N). Columns, so minibatches gather like an MLP's points.

Parameters, head by head: W_Q, W_K, W_V, W_O, each row-major.

Charges, head by head (the Python model ``noether_sim.attention.SelfAttention`` names the same groups):
    QK<h>  W_QW_Qᵀ − W_KW_Kᵀ   (d_k × d_k, row-major)   from GL(d_k): W_Q → MW_Q, W_K → M^{−T}W_K
    VO<h>  W_VW_Vᵀ − W_OᵀW_O   (d_v × d_v, row-major)   from GL(d_v): W_V → MW_V, W_O → W_OM^{−1}
Each is a quadratic form θᵀSθ with ⟨Sθ, ∇L⟩ = 0, so evaluated on a gradient g it is the η² term of
gradient descent's exact one-step law (D' − D = η²(G_QG_Qᵀ − G_KG_Kᵀ), theory.md §8).

Isometric charges (momentum flow; P the momenta): the antisymmetric parts of
    C_QK = W_QP_Qᵀ − P_KW_Kᵀ,   C_VO = W_VP_Vᵀ − P_OᵀW_O,
from the rotations M = e^{sE}, Eᵀ = −E, which are isometries: J(t) = e^{−t/τ}J(0) under momentum flow.
"""

import math

import numpy as np
from numba import njit

from . import FASTMATH

# model_ints of MODEL_ATTENTION (ints[0] is the kind)
A_HEADS, A_DMODEL, A_DK, A_DV, A_TOKENS, A_DOUT, A_CAUSAL, A_READOUT = 1, 2, 3, 4, 5, 6, 7, 8
READOUT_SEQUENCE = -1


@njit(cache=True, inline="always")
def _dims(ints):
    return ints[A_HEADS], ints[A_DMODEL], ints[A_DK], ints[A_DV], ints[A_TOKENS], ints[A_DOUT]


@njit(cache=True, inline="always")
def head_size(ints):
    H, d, dk, dv, T, do = _dims(ints)
    return 2 * dk * d + dv * d + do * dv


@njit(cache=True)
def attention_work_size(ints):
    H, d, dk, dv, T, do = _dims(ints)
    per_head = T * (2 * dk + 2 * dv) + T * T  # Q, K, V, Z, A of one sequence
    return T * d + T * do + H * per_head + T * T + T * (2 * dk + 2 * dv)


@njit(cache=True, fastmath=FASTMATH)
def attention_loss_grad(theta, grad, ints, floats, X, Y, work):
    """Loss of one parameter row over the sequences (columns of X); its gradient into ``grad``."""
    H, d, dk, dv, T, do = _dims(ints)
    causal = ints[A_CAUSAL] != 0
    readout = ints[A_READOUT]
    t_lo = 0 if readout == READOUT_SEQUENCE else readout
    t_hi = T if readout == READOUT_SEQUENCE else readout + 1
    N = X.shape[1]
    inv_n = 1.0 / N
    scale = 1.0 / math.sqrt(dk)
    hs = head_size(ints)
    per_head = T * (2 * dk + 2 * dv) + T * T
    pos = 0
    Xs = work[pos: pos + T * d].reshape((T, d))
    pos += T * d
    F = work[pos: pos + T * do].reshape((T, do))
    pos += T * do
    heads_pos = pos
    pos += H * per_head
    dA = work[pos: pos + T * T].reshape((T, T))
    pos += T * T
    dZ = work[pos: pos + T * dv].reshape((T, dv))
    pos += T * dv
    dV = work[pos: pos + T * dv].reshape((T, dv))
    pos += T * dv
    dQ = work[pos: pos + T * dk].reshape((T, dk))
    pos += T * dk
    dK = work[pos: pos + T * dk].reshape((T, dk))
    for j in range(grad.shape[0]):
        grad[j] = 0.0
    loss = 0.0
    for n in range(N):
        for t in range(T):
            for i in range(d):
                Xs[t, i] = X[t * d + i, n]
        for t in range(T):
            for o in range(do):
                F[t, o] = 0.0
        # ---- forward, head by head ----
        for h in range(H):
            base = h * hs
            WQ = theta[base: base + dk * d].reshape((dk, d))
            WK = theta[base + dk * d: base + 2 * dk * d].reshape((dk, d))
            WV = theta[base + 2 * dk * d: base + 2 * dk * d + dv * d].reshape((dv, d))
            WO = theta[base + 2 * dk * d + dv * d: base + hs].reshape((do, dv))
            hp = heads_pos + h * per_head
            Q = work[hp: hp + T * dk].reshape((T, dk))
            K = work[hp + T * dk: hp + 2 * T * dk].reshape((T, dk))
            V = work[hp + 2 * T * dk: hp + 2 * T * dk + T * dv].reshape((T, dv))
            Z = work[hp + 2 * T * dk + T * dv: hp + 2 * T * dk + 2 * T * dv].reshape((T, dv))
            A = work[hp + 2 * T * dk + 2 * T * dv: hp + per_head].reshape((T, T))
            for t in range(T):
                for a in range(dk):
                    q = 0.0
                    k = 0.0
                    for i in range(d):
                        q += WQ[a, i] * Xs[t, i]
                        k += WK[a, i] * Xs[t, i]
                    Q[t, a] = q
                    K[t, a] = k
                for c in range(dv):
                    v = 0.0
                    for i in range(d):
                        v += WV[c, i] * Xs[t, i]
                    V[t, c] = v
            for t in range(t_lo, t_hi):
                s_hi = t + 1 if causal else T
                mx = -np.inf
                for s in range(s_hi):
                    acc = 0.0
                    for a in range(dk):
                        acc += Q[t, a] * K[s, a]
                    A[t, s] = acc * scale
                    mx = max(mx, A[t, s])
                tot = 0.0
                for s in range(s_hi):
                    e = math.exp(A[t, s] - mx)
                    A[t, s] = e
                    tot += e
                inv = 1.0 / tot
                for s in range(s_hi):
                    A[t, s] *= inv
                for s in range(s_hi, T):
                    A[t, s] = 0.0
                for c in range(dv):
                    Z[t, c] = 0.0
                for s in range(s_hi):  # rows of V, contiguous
                    w = A[t, s]
                    for c in range(dv):
                        Z[t, c] += w * V[s, c]
                for o in range(do):
                    f = 0.0
                    for c in range(dv):
                        f += WO[o, c] * Z[t, c]
                    F[t, o] += f
        # ---- loss; F becomes dL/dF ----
        for t in range(t_lo, t_hi):
            row = (t - t_lo) * do
            for o in range(do):
                e = F[t, o] - Y[row + o, n]
                loss += e * e
                F[t, o] = e * inv_n
        # ---- backward, head by head ----
        for h in range(H):
            base = h * hs
            oK = base + dk * d
            oV = base + 2 * dk * d
            oO = oV + dv * d
            WO = theta[oO: base + hs].reshape((do, dv))
            hp = heads_pos + h * per_head
            Q = work[hp: hp + T * dk].reshape((T, dk))
            K = work[hp + T * dk: hp + 2 * T * dk].reshape((T, dk))
            V = work[hp + 2 * T * dk: hp + 2 * T * dk + T * dv].reshape((T, dv))
            Z = work[hp + 2 * T * dk + T * dv: hp + 2 * T * dk + 2 * T * dv].reshape((T, dv))
            A = work[hp + 2 * T * dk + 2 * T * dv: hp + per_head].reshape((T, T))
            GO = grad[oO: base + hs].reshape((do, dv))
            for s in range(T):
                for c in range(dv):
                    dV[s, c] = 0.0
                for a in range(dk):
                    dK[s, a] = 0.0
            for t in range(t_lo, t_hi):
                s_hi = t + 1 if causal else T
                # every inner loop below runs along a contiguous row (SIMD)
                for c in range(dv):
                    dZ[t, c] = 0.0
                for o in range(do):  # dZ = dF W_O; G_O += dFᵀ Z
                    f = F[t, o]
                    for c in range(dv):
                        dZ[t, c] += f * WO[o, c]
                        GO[o, c] += f * Z[t, c]
                dot = 0.0
                for s in range(s_hi):  # dA = dZ Vᵀ; dV += Aᵀ dZ
                    acc = 0.0
                    for c in range(dv):
                        acc += dZ[t, c] * V[s, c]
                    w = A[t, s]
                    for c in range(dv):
                        dV[s, c] += w * dZ[t, c]
                    dA[t, s] = acc
                    dot += w * acc
                for a in range(dk):
                    dQ[t, a] = 0.0
                for s in range(s_hi):  # softmax backward, the 1/√d_k; dQ = dS K; dK += dSᵀ Q
                    w = A[t, s] * (dA[t, s] - dot) * scale
                    for a in range(dk):
                        dQ[t, a] += w * K[s, a]
                        dK[s, a] += w * Q[t, a]
            for t in range(T):  # G_Q += dQᵀ X, G_K += dKᵀ X, G_V += dVᵀ X
                x = Xs[t]
                for a in range(dk):
                    gk = dK[t, a]
                    gq = dQ[t, a] if t_lo <= t < t_hi else 0.0
                    ro = base + a * d
                    rk = oK + a * d
                    for i in range(d):
                        grad[ro + i] += gq * x[i]
                        grad[rk + i] += gk * x[i]
                for c in range(dv):
                    gv = dV[t, c]
                    rv = oV + c * d
                    for i in range(d):
                        grad[rv + i] += gv * x[i]
    return 0.5 * loss * inv_n


@njit(cache=True, fastmath=FASTMATH)
def attention_charges(theta, q, ints):
    """QK<h> then VO<h> for every head (see the module doc), or the η² law terms when given a gradient."""
    H, d, dk, dv, T, do = _dims(ints)
    hs = head_size(ints)
    pos = 0
    for h in range(H):
        base = h * hs
        oK = base + dk * d
        oV = base + 2 * dk * d
        oO = oV + dv * d
        for a in range(dk):
            for b in range(dk):
                acc = 0.0
                for i in range(d):
                    acc += theta[base + a * d + i] * theta[base + b * d + i] - theta[oK + a * d + i] * theta[oK + b * d + i]
                q[pos + a * dk + b] = acc
        pos += dk * dk
        for a in range(dv):
            for b in range(dv):
                acc = 0.0
                for i in range(d):
                    acc += theta[oV + a * d + i] * theta[oV + b * d + i]
                for o in range(do):
                    acc -= theta[oO + o * dv + a] * theta[oO + o * dv + b]
                q[pos + a * dv + b] = acc
        pos += dv * dv


@njit(cache=True, fastmath=FASTMATH)
def attention_charge_scales(theta, scales, ints):
    """Per group, |W_Q|² + |W_K|² and |W_V|² + |W_O|² (the size of the terms that cancel)."""
    H, d, dk, dv, T, do = _dims(ints)
    hs = head_size(ints)
    for h in range(H):
        base = h * hs
        s = 0.0
        for j in range(base, base + 2 * dk * d):
            s += theta[j] * theta[j]
        scales[2 * h] = s
        s = 0.0
        for j in range(base + 2 * dk * d, base + hs):
            s += theta[j] * theta[j]
        scales[2 * h + 1] = s


@njit(cache=True)
def attention_n_isometric(ints):
    H, d, dk, dv, T, do = _dims(ints)
    return H * (dk * dk + dv * dv)


@njit(cache=True, fastmath=FASTMATH)
def attention_isometric_charges(theta, mom, out, ints):
    """J_QK<h> = antisym(W_QP_Qᵀ − P_KW_Kᵀ), J_VO<h> = antisym(W_VP_Vᵀ − P_OᵀW_O), row-major blocks."""
    H, d, dk, dv, T, do = _dims(ints)
    hs = head_size(ints)
    pos = 0
    for h in range(H):
        base = h * hs
        oK = base + dk * d
        oV = base + 2 * dk * d
        oO = oV + dv * d
        C = np.empty((dk, dk))
        for a in range(dk):
            for b in range(dk):
                acc = 0.0
                for i in range(d):
                    acc += theta[base + a * d + i] * mom[base + b * d + i] - mom[oK + a * d + i] * theta[oK + b * d + i]
                C[a, b] = acc
        for a in range(dk):
            for b in range(dk):
                out[pos + a * dk + b] = 0.5 * (C[a, b] - C[b, a])
        pos += dk * dk
        C = np.empty((dv, dv))
        for a in range(dv):
            for b in range(dv):
                acc = 0.0
                for i in range(d):
                    acc += theta[oV + a * d + i] * mom[oV + b * d + i]
                for o in range(do):
                    acc -= mom[oO + o * dv + a] * theta[oO + o * dv + b]
                C[a, b] = acc
        for a in range(dv):
            for b in range(dv):
                out[pos + a * dv + b] = 0.5 * (C[a, b] - C[b, a])
        pos += dv * dv


@njit(cache=True, fastmath=FASTMATH)
def attention_isometric_scales(theta, mom, scales, ints):
    """|W_Q||P_Q| + |W_K||P_K| and |W_V||P_V| + |W_O||P_O| per head (Frobenius): the round-off reference."""
    H, d, dk, dv, T, do = _dims(ints)
    hs = head_size(ints)
    for h in range(H):
        base = h * hs
        bounds = (base, base + dk * d, base + 2 * dk * d, base + 2 * dk * d + dv * d, base + hs)
        for grp in range(2):
            s = 0.0
            for m in range(2):
                lo = bounds[2 * grp + m]
                hi = bounds[2 * grp + m + 1]
                a2 = 0.0
                m2 = 0.0
                for j in range(lo, hi):
                    a2 += theta[j] * theta[j]
                    m2 += mom[j] * mom[j]
                s += np.sqrt(a2 * m2)
            scales[2 * h + grp] = s
