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
from .mlp import ACT_LINEAR, _backward_layer, _forward_layer, _weight_gradient
from .token_tiles import exp_shifted_sum, token_product

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


# Sequences per pass of the gradient: a chunk's intermediates (rows of CHUNK doubles) stay in L1/L2, and
# rows 512 bytes apart alias less in L1 than rows of N = 256 doubles (2 KiB) do (tiles read 8 rows at once).
# Measured on the reference size (one thread, CPU ms per gradient): 16: 0.69, 32: 0.53, 48: 0.59, 64: 0.46,
# 96: 0.52, 128: 0.60, no chunks (N = 256): 0.83 with the former token loops.
CHUNK = 64


@njit(cache=True)
def attention_work_size(ints, n_points):
    H, d, dk, dv, T, do = _dims(ints)
    w = 2 * dk + dv
    nb = min(n_points, CHUNK)
    per_head = T * w + T * dv + T * T  # [Q; K; V] per token, Z, A of every sequence
    mlp = ints[A_MLP] * T + do * T  # the MLP block's pre-activations and output error, every token
    per_point = H * per_head + T * do + do + T * dv + 2 * T * T + 2 + T * w + mlp
    small = max(w * d, do * dv) + max(w, do) + 8  # a weight-gradient tile, a zero bias
    return nb * (per_point + T * d + T * do) + small  # + one chunk of X and of Y


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

    The sequences go through in chunks of ``CHUNK`` (copied to contiguous blocks when N is larger),
    each chunk adding its sums to the gradient (``_attention_chunk``).
    """
    H, d, dk, dv, T, do = _dims(ints)
    N = X.shape[1]
    inv_n = 1.0 / N
    for j in range(grad.shape[0]):
        grad[j] = 0.0
    if N <= CHUNK:
        return 0.5 * _attention_chunk(theta, grad, ints, X, Y, work, inv_n) * inv_n
    nx = X.shape[0]
    ny = Y.shape[0]
    loss = 0.0
    for c0 in range(0, N, CHUNK):
        nb = min(CHUNK, N - c0)
        Xc = work[: nx * nb].reshape((nx, nb))
        Yc = work[nx * nb: (nx + ny) * nb].reshape((ny, nb))
        for r in range(nx):
            for n in range(nb):
                Xc[r, n] = X[r, c0 + n]
        for r in range(ny):
            for n in range(nb):
                Yc[r, n] = Y[r, c0 + n]
        loss += _attention_chunk(theta, grad, ints, Xc, Yc, work[(nx + ny) * nb:], inv_n)
    return 0.5 * loss * inv_n


@njit(cache=True, fastmath=FASTMATH)
def _attention_chunk(theta, grad, ints, X, Y, work, inv_n):
    """Sum of |F_t − Y_t|² over the sequences of X (columns), and 1/N times its half-gradient added to
    ``grad`` (with N the full count, so that chunks add up to the mean).

    Every intermediate is a (rows × N) array whose rows run over the N sequences. The products with a
    weight matrix (the Q/K/V and output projections, their weight gradients, W_Oᵀ dF) are small dense
    layers, run by the MLP kernel's register tiles (kernels/mlp.py, kernels/simd.py) token by token; the
    products between tokens (scores, A·V and their adjoints) are batched over sequences and run by
    4 × 4 register tiles (kernels/token_tiles.py), each over all query/key pairs of the head; a causal
    mask is applied by setting A[t, s] = 0 for s > t, so the masked terms of A·V, dK and dV add exact
    zeros. Gradients of K and V are sums over queries, formed once per key.
    """
    H, d, dk, dv, T, do = _dims(ints)
    causal = ints[A_CAUSAL] != 0
    readout = ints[A_READOUT]
    t_lo = 0 if readout == READOUT_SEQUENCE else readout
    t_hi = T if readout == READOUT_SEQUENCE else readout + 1
    N = X.shape[1]
    scale = 1.0 / math.sqrt(dk)
    hs = head_size(ints)
    w = 2 * dk + dv
    per_head = T * w + T * dv + T * T
    heads = work[: H * per_head * N].reshape((H, per_head, N))
    pos = H * per_head * N
    F = work[pos: pos + T * do * N].reshape((T * do, N))
    pos += T * do * N
    tmp = work[pos: pos + do * N].reshape((do, N))  # one head's W_O Z_t
    pos += do * N
    dZ = work[pos: pos + T * dv * N].reshape((T * dv, N))
    pos += T * dv * N
    dS = work[pos: pos + T * T * N].reshape((T * T, N))
    pos += T * T * N
    m = work[pos: pos + N]
    pos += N
    tot = work[pos: pos + N]
    pos += N
    dP = work[pos: pos + T * w * N].reshape((T * w, N))  # d[Q; K; V] per token
    pos += T * w * N
    mh = ints[A_MLP]
    Zh = work[pos: pos + T * mh * N].reshape((T * mh, N))  # W_1U_t + b_1, then dL/d(that)
    pos += T * mh * N
    dOut = work[pos: pos + T * do * N].reshape((T * do, N))  # F_t − Y_t (block), / N
    pos += T * do * N
    nG = max(w * d, do * dv)
    Gt = work[pos: pos + nG]
    pos += nG
    zb = work[pos: pos + max(w, do)]  # a zero bias for the dense layers
    zb[:] = 0.0
    oW1 = H * hs
    ob1 = oW1 + mh * d
    oW2 = ob1 + mh
    F[:, :] = 0.0
    if mh > 0:  # the block's residual: U starts at X (d_out = d)
        for t in range(t_lo, t_hi):
            for o in range(do):
                F[t * do + o, :] = X[t * d + o]
    # ---- forward, head by head ----
    for h in range(H):
        base = h * hs
        oO = base + 2 * dk * d + dv * d
        P = heads[h, 0: T * w]
        Z = heads[h, T * w: T * w + T * dv]
        A = heads[h, T * w + T * dv: per_head]
        W_qkv = theta[base: base + w * d].reshape((w, d))
        W_kv = theta[base + dk * d: base + w * d].reshape((dk + dv, d))
        W_o = theta[oO: oO + do * dv].reshape((do, dv))
        for t in range(T):  # [Q; K; V]_t = [W_Q; W_K; W_V] X_t (queries only where read)
            if t_lo <= t < t_hi:
                _forward_layer(W_qkv, X[t * d: (t + 1) * d], zb, False, P[t * w: (t + 1) * w], False)
            else:
                _forward_layer(W_kv, X[t * d: (t + 1) * d], zb, False, P[t * w + dk: (t + 1) * w], False)
        n_q = t_hi - t_lo
        # S[t, s] = ⟨Q_t, K_s⟩/√d_k for the queries read and every key (masked ones overwritten below)
        token_product(A, t_lo * T, T, 1, P, t_lo * w, w, 1, P, dk, w, 1, n_q, T, dk, scale)
        for t in range(t_lo, t_hi):  # softmax over the keys s < s_hi; A[t, s] = 0 for masked keys
            s_hi = t + 1 if causal else T
            for n in range(N):
                m[n] = A[t * T, n]
                tot[n] = 0.0
            for s in range(1, s_hi):
                row = A[t * T + s]
                for n in range(N):
                    m[n] = max(m[n], row[n])
            for s in range(s_hi):
                exp_shifted_sum(A[t * T + s], m, tot)
            for n in range(N):
                tot[n] = 1.0 / tot[n]
            for s in range(s_hi):
                row = A[t * T + s]
                for n in range(N):
                    row[n] *= tot[n]
            for s in range(s_hi, T):
                A[t * T + s, :] = 0.0
        # Z_t = Σ_s A[t, s] V_s (masked keys add exact zeros)
        token_product(Z, t_lo * dv, dv, 1, A, t_lo * T, T, 1, P, 2 * dk, 1, w, n_q, dv, T, 1.0)
        for t in range(t_lo, t_hi):
            _forward_layer(W_o, Z[t * dv: (t + 1) * dv], zb, False, tmp, False)  # F_t += W_O Z_t
            for o in range(do):
                f = F[t * do + o]
                u = tmp[o]
                for n in range(N):
                    f[n] += u[n]
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
        oO = base + 2 * dk * d + dv * d
        P = heads[h, 0: T * w]
        Z = heads[h, T * w: T * w + T * dv]
        A = heads[h, T * w + T * dv: per_head]
        W_o = theta[oO: oO + do * dv].reshape((do, dv))
        Go = Gt[: do * dv].reshape((do, dv))
        for t in range(t_lo, t_hi):  # G_O += dF_t Z_tᵀ; dZ_t = W_Oᵀ dF_t
            dF_t = F[t * do: (t + 1) * do]
            _weight_gradient(dF_t, Z[t * dv: (t + 1) * dv], Go, zb, False)
            for j in range(do * dv):
                grad[oO + j] += Gt[j]
            _backward_layer(W_o, dF_t, dZ[t * dv: (t + 1) * dv], dZ[t * dv: (t + 1) * dv], ACT_LINEAR, 0.0, 0.0)
        n_q = t_hi - t_lo
        # dA[t, s] = ⟨dZ_t, V_s⟩ (into dS), then dS = A(dA − Σ_s A dA)/√d_k, zero where A is masked
        token_product(dS, t_lo * T, T, 1, dZ, t_lo * dv, dv, 1, P, 2 * dk, w, 1, n_q, T, dv, 1.0)
        for t in range(t_lo, t_hi):
            for n in range(N):
                tot[n] = 0.0
            for s in range(T):
                a_row = A[t * T + s]
                da = dS[t * T + s]
                for n in range(N):
                    tot[n] += a_row[n] * da[n]
            for s in range(T):
                a_row = A[t * T + s]
                ds = dS[t * T + s]
                for n in range(N):
                    ds[n] = a_row[n] * (ds[n] - tot[n]) * scale
        # dQ_t = Σ_s dS[t, s] K_s (queries read; the others are zero)
        token_product(dP, t_lo * w, w, 1, dS, t_lo * T, T, 1, P, dk, 1, w, n_q, dk, T, 1.0)
        for t in range(T):
            if not t_lo <= t < t_hi:
                dP[t * w: t * w + dk] = 0.0
        # per key s, sums over the queries read: dK_s = Σ_t dS[t, s] Q_t, dV_s = Σ_t A[t, s] dZ_t
        token_product(dP, dk, w, 1, dS, t_lo * T, 1, T, P, t_lo * w, 1, w, T, dk, n_q, 1.0)
        token_product(dP, 2 * dk, w, 1, A, t_lo * T, 1, T, dZ, t_lo * dv, 1, dv, T, dv, n_q, 1.0)
        Gw = Gt[: w * d].reshape((w, d))
        for t in range(T):  # [G_Q; G_K; G_V] += d[Q; K; V]_t X_tᵀ
            _weight_gradient(dP[t * w: (t + 1) * w], X[t * d: (t + 1) * d], Gw, zb, False)
            for j in range(w * d):
                grad[base + j] += Gt[j]
    return loss


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
