"""Multi-head self-attention over a token sequence, squared loss on the sequence or on one readout token.

One sequence is X ∈ R^{T×d} (token t is row t; d = d_model). Head h has W_Q, W_K ∈ R^{d_k×d},
W_V ∈ R^{d_v×d} and W_O ∈ R^{d_out×d_v}:

    Q = X W_Qᵀ, K = X W_Kᵀ, V = X W_Vᵀ                  (T × d_k, T × d_k, T × d_v)
    S[t, s] = ⟨Q_t, K_s⟩ / √d_k                          (query t, key s; causal: only s ≤ t)
    A[t, :] = softmax_s S[t, :]                          (softmax over keys)
    F_t = Σ_h W_O^h Σ_s A^h[t, s] V^h_s                   (d_out)

Loss L = (1/2N) Σ_n Σ_{t ∈ R} |F_t(X_n) − Y_{n,t}|², R every token ("sequence" readout) or one token.

Transformer block (model_ints[A_MLP] = m > 0; d_out = d): attention with its residual, then a residual
ReLU MLP on each token read,

    U_t = X_t + Σ_h W_O^h Σ_s A^h[t, s] V^h_s,    F_t = U_t + W_2 relu(W_1 U_t + b_1)

with W_1 (m × d), b_1 (m), W_2 (d × m) after the heads' parameters. Its charges follow the heads':
    r      |W_1[j, :]|² + b_1[j]² − |W_2[:, j]|²   (m)   from ReLU's positive homogeneity (one per neuron)

Data: data_a = X as columns, one sequence per column, token-major: row t·d + i is feature i of token t
((T·d) × N); data_b = Y likewise ((|R|·d_out) × N). Columns, so minibatches gather like an MLP's points,
and every loop of the gradient runs along a row, over the N sequences (lane-wise, SIMD).

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
A_HEADS, A_DMODEL, A_DK, A_DV, A_TOKENS, A_DOUT, A_CAUSAL, A_READOUT, A_MLP = 1, 2, 3, 4, 5, 6, 7, 8, 9
READOUT_SEQUENCE = -1


@njit(cache=True, inline="always")
def _dims(ints):
    return ints[A_HEADS], ints[A_DMODEL], ints[A_DK], ints[A_DV], ints[A_TOKENS], ints[A_DOUT]


@njit(cache=True, inline="always")
def head_size(ints):
    H, d, dk, dv, T, do = _dims(ints)
    return 2 * dk * d + dv * d + do * dv


@njit(cache=True)
def attention_work_size(ints, n_points):
    H, d, dk, dv, T, do = _dims(ints)
    per_head = T * (2 * dk + 2 * dv) + T * T  # Q, K, V, Z, A of every sequence
    mlp = ints[A_MLP] * T + do * T  # the MLP block's pre-activations and output error, every token
    return n_points * (H * per_head + T * do + dv + 3 * T + 2 + dk + T * dk + T * dv + mlp)


@njit(cache=True, fastmath=FASTMATH)
def _axpy(y, a, x):
    for n in range(y.shape[0]):
        y[n] += a * x[n]


@njit(cache=True, fastmath=FASTMATH)
def _dot(x, y):
    acc = 0.0
    for n in range(x.shape[0]):
        acc += x[n] * y[n]
    return acc


@njit(cache=True, fastmath=FASTMATH)
def attention_loss_grad(theta, grad, ints, floats, X, Y, work):
    """Loss of one parameter row over the sequences (columns of X); its gradient into ``grad``.

    Every intermediate is a (rows × N) array whose rows run over the N sequences, so each inner loop is
    a contiguous, lane-wise loop over sequences (SIMD), as an MLP's loops run over its data points.
    """
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
    heads = work[: H * per_head * N].reshape((H, per_head, N))
    pos = H * per_head * N
    F = work[pos: pos + T * do * N].reshape((T * do, N))
    pos += T * do * N
    dZ = work[pos: pos + dv * N].reshape((dv, N))
    pos += dv * N
    dA = work[pos: pos + T * N].reshape((T, N))
    pos += T * N
    dS = work[pos: pos + T * N].reshape((T, N))
    pos += T * N
    m = work[pos: pos + N]
    pos += N
    tot = work[pos: pos + N]
    pos += N
    dQ = work[pos: pos + dk * N].reshape((dk, N))
    pos += dk * N
    dK = work[pos: pos + T * dk * N].reshape((T * dk, N))
    pos += T * dk * N
    dV = work[pos: pos + T * dv * N].reshape((T * dv, N))
    pos += T * dv * N
    mh = ints[A_MLP]
    Zh = work[pos: pos + T * mh * N].reshape((T * mh, N))  # W_1U_t + b_1, then dL/d(that)
    pos += T * mh * N
    dOut = work[pos: pos + T * do * N].reshape((T * do, N))  # F_t − Y_t (block), / N
    oW1 = H * hs
    ob1 = oW1 + mh * d
    oW2 = ob1 + mh
    for j in range(grad.shape[0]):
        grad[j] = 0.0
    F[:, :] = 0.0
    if mh > 0:  # the block's residual: U starts at X (d_out = d)
        for t in range(t_lo, t_hi):
            for o in range(do):
                F[t * do + o, :] = X[t * d + o]
    # ---- forward, head by head ----
    for h in range(H):
        base = h * hs
        oK = base + dk * d
        oV = base + 2 * dk * d
        oO = oV + dv * d
        Q = heads[h, 0: T * dk]
        K = heads[h, T * dk: 2 * T * dk]
        V = heads[h, 2 * T * dk: 2 * T * dk + T * dv]
        Z = heads[h, 2 * T * dk + T * dv: 2 * T * dk + 2 * T * dv]
        A = heads[h, 2 * T * dk + 2 * T * dv: per_head]
        Q[:, :] = 0.0
        K[:, :] = 0.0
        V[:, :] = 0.0
        for t in range(T):
            for i in range(d):
                x = X[t * d + i]
                for a in range(dk):
                    _axpy(K[t * dk + a], theta[oK + a * d + i], x)
                    if t_lo <= t < t_hi:
                        _axpy(Q[t * dk + a], theta[base + a * d + i], x)
                for c in range(dv):
                    _axpy(V[t * dv + c], theta[oV + c * d + i], x)
        for t in range(t_lo, t_hi):
            s_hi = t + 1 if causal else T
            for s in range(s_hi):
                row = A[t * T + s]
                for n in range(N):
                    row[n] = 0.0
                for a in range(dk):
                    q = Q[t * dk + a]
                    k = K[s * dk + a]
                    for n in range(N):
                        row[n] += q[n] * k[n]
                for n in range(N):
                    row[n] *= scale
            for n in range(N):
                m[n] = A[t * T, n]
                tot[n] = 0.0
            for s in range(1, s_hi):
                row = A[t * T + s]
                for n in range(N):
                    m[n] = max(m[n], row[n])
            for s in range(s_hi):
                row = A[t * T + s]
                for n in range(N):
                    row[n] = math.exp(row[n] - m[n])
                    tot[n] += row[n]
            for n in range(N):
                tot[n] = 1.0 / tot[n]
            for s in range(s_hi):
                row = A[t * T + s]
                for n in range(N):
                    row[n] *= tot[n]
            for c in range(dv):
                z = Z[t * dv + c]
                for n in range(N):
                    z[n] = 0.0
                for s in range(s_hi):
                    _mul_add(z, A[t * T + s], V[s * dv + c])
                for o in range(do):
                    _axpy(F[t * do + o], theta[oO + o * dv + c], z)
    # ---- loss; F becomes dL/dF ----
    loss = 0.0
    if mh > 0:
        loss = _mlp_block(theta, grad, F, Zh, dOut, Y, oW1, ob1, oW2, mh, do, t_lo, t_hi, inv_n)
    else:
        for t in range(t_lo, t_hi):
            for o in range(do):
                f = F[t * do + o]
                y = Y[(t - t_lo) * do + o]
                acc = 0.0
                for n in range(N):
                    e = f[n] - y[n]
                    acc += e * e
                    f[n] = e * inv_n
                loss += acc
    # ---- backward, head by head ----
    for h in range(H):
        base = h * hs
        oK = base + dk * d
        oV = base + 2 * dk * d
        oO = oV + dv * d
        Q = heads[h, 0: T * dk]
        K = heads[h, T * dk: 2 * T * dk]
        V = heads[h, 2 * T * dk: 2 * T * dk + T * dv]
        Z = heads[h, 2 * T * dk + T * dv: 2 * T * dk + 2 * T * dv]
        A = heads[h, 2 * T * dk + 2 * T * dv: per_head]
        dK[:, :] = 0.0
        dV[:, :] = 0.0
        for t in range(t_lo, t_hi):
            s_hi = t + 1 if causal else T
            for c in range(dv):  # G_O += dFᵀ Z; dZ = W_Oᵀ dF
                z = Z[t * dv + c]
                dz = dZ[c]
                for n in range(N):
                    dz[n] = 0.0
                for o in range(do):
                    grad[oO + o * dv + c] += _dot(F[t * do + o], z)
                    _axpy(dz, theta[oO + o * dv + c], F[t * do + o])
            for n in range(N):
                tot[n] = 0.0
            for s in range(s_hi):  # dA = dZ·V_s; dV_s += A dZ; Σ_s A dA
                da = dA[s]
                a_row = A[t * T + s]
                for n in range(N):
                    da[n] = 0.0
                for c in range(dv):
                    _mul_add(da, dZ[c], V[s * dv + c])
                    _mul_add(dV[s * dv + c], a_row, dZ[c])
                for n in range(N):
                    tot[n] += a_row[n] * da[n]
            for s in range(s_hi):  # softmax backward and the 1/√d_k
                ds = dS[s]
                a_row = A[t * T + s]
                da = dA[s]
                for n in range(N):
                    ds[n] = a_row[n] * (da[n] - tot[n]) * scale
            for a in range(dk):  # dQ = Σ_s dS K_s; dK_s += dS Q
                dq = dQ[a]
                for n in range(N):
                    dq[n] = 0.0
                q = Q[t * dk + a]
                for s in range(s_hi):
                    _mul_add(dq, dS[s], K[s * dk + a])
                    _mul_add(dK[s * dk + a], dS[s], q)
                for i in range(d):
                    grad[base + a * d + i] += _dot(dq, X[t * d + i])
        for t in range(T):  # G_K += dKᵀ X, G_V += dVᵀ X
            for i in range(d):
                x = X[t * d + i]
                for a in range(dk):
                    grad[oK + a * d + i] += _dot(dK[t * dk + a], x)
                for c in range(dv):
                    grad[oV + c * d + i] += _dot(dV[t * dv + c], x)
    return 0.5 * loss * inv_n


@njit(cache=True, fastmath=FASTMATH)
def _mlp_block(theta, grad, F, Zh, dOut, Y, oW1, ob1, oW2, mh, do, t_lo, t_hi, inv_n):
    """The transformer block's MLP on the tokens read: forward from U (in F), the loss Σ|F_t − Y_t|², its
    gradient into W_1, b_1, W_2, and F overwritten by dL/dU (= dL/dF_t + W_1ᵀ(relu'·W_2ᵀ dL/dF_t))."""
    N = F.shape[1]
    loss = 0.0
    for t in range(t_lo, t_hi):
        for j in range(mh):
            z = Zh[t * mh + j]
            b = theta[ob1 + j]
            for n in range(N):
                z[n] = b
            for o in range(do):
                _axpy(z, theta[oW1 + j * do + o], F[t * do + o])
        for o in range(do):
            e = dOut[t * do + o]
            f = F[t * do + o]
            y = Y[(t - t_lo) * do + o]
            for n in range(N):
                e[n] = f[n] - y[n]
            for j in range(mh):
                w = theta[oW2 + o * mh + j]
                z = Zh[t * mh + j]
                for n in range(N):
                    e[n] += w * max(z[n], 0.0)
            acc = 0.0
            for n in range(N):
                acc += e[n] * e[n]
                e[n] *= inv_n
            loss += acc
        for j in range(mh):  # G_2 += dF relu(Z)ᵀ; Z becomes dZ = relu'(Z)·W_2ᵀdF
            z = Zh[t * mh + j]
            for o in range(do):
                e = dOut[t * do + o]
                acc = 0.0
                for n in range(N):
                    acc += e[n] * max(z[n], 0.0)
                grad[oW2 + o * mh + j] += acc
            for n in range(N):
                acc = 0.0
                for o in range(do):
                    acc += theta[oW2 + o * mh + j] * dOut[t * do + o, n]
                z[n] = acc if z[n] > 0.0 else 0.0
            acc = 0.0
            for n in range(N):
                acc += z[n]
            grad[ob1 + j] += acc
            for o in range(do):
                grad[oW1 + j * do + o] += _dot(z, F[t * do + o])
        for o in range(do):  # dU = dF + W_1ᵀ dZ
            f = F[t * do + o]
            e = dOut[t * do + o]
            for n in range(N):
                f[n] = e[n]
            for j in range(mh):
                _axpy(f, theta[oW1 + j * do + o], Zh[t * mh + j])
    return loss


@njit(cache=True, fastmath=FASTMATH)
def _mul_add(y, a, b):
    """y += a ∘ b (elementwise, over sequences)."""
    for n in range(y.shape[0]):
        y[n] += a[n] * b[n]


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
    mh = ints[A_MLP]
    oW1 = H * hs
    for j in range(mh):  # r_j = |W_1[j, :]|² + b_1[j]² − |W_2[:, j]|²
        acc = theta[oW1 + mh * d + j] ** 2
        for i in range(d):
            acc += theta[oW1 + j * d + i] ** 2
        for o in range(do):
            acc -= theta[oW1 + mh * d + mh + o * mh + j] ** 2
        q[pos + j] = acc


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
    mh = ints[A_MLP]
    if mh > 0:  # |W_1|² + |b_1|² + |W_2|²
        s = 0.0
        for j in range(H * hs, H * hs + 2 * mh * d + mh):
            s += theta[j] * theta[j]
        scales[2 * H] = s


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
