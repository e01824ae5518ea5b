"""Stacked residual blocks (noether_sim.resnet.ResidualMLP): a stream s of width d through K blocks,

    s_0 = W_in x + b_in                   (input projection; s_0 = x without one, then n_0 = d)
    s_k = s_{k−1} + W2_k σ(W1_k s_{k−1} + b1_k) + b2_k,   k = 1 … K   (W1_k: m × d, W2_k: d × m)
    f   = W_out s_K + b_out               (output projection; f = s_K without one, then n_out = d)

squared or softmax cross-entropy loss on f, as kernels/mlp.py (biases: all layers or none).

Descriptor (kernels/layout.py): the MLP layout of the chain of layers (W_in,) W1_1, W2_1, …, W1_K, W2_K
(, W_out) with kind MODEL_RESIDUAL, widths (n_0, [d,] m, d, m, d, …, m, d [, n_out]), then the
MLP's MLP_EXTRAS extras (activation, loss, 0, 0, 0) and, after them,
    extra E      K, the number of blocks
    extra E + 1  1 with an input projection
    extra E + 2  1 with an output projection
model_floats: the MLP's three floats (leaky slope, power, homogeneity degree α).

Charges, in this order in q (noether_sim.resnet.ResidualMLP names the same groups):
    r<k>  per hidden neuron j of block k: |W1_k[j, :]|² + b1_k[j]² − α|W2_k[:, j]|² (degree 2; the skip
          has no parameters, so each block keeps its neurons' rescalings; control for tanh/softplus/GELU)
    T     softmax head (needs the output projection): Σ_c W_out[c, a] per column a, then Σ_c b_out[c]
    C     with both projections, the stream's GL(d) symmetry s → Ms (W_in → MW_in, b_in → Mb_in,
          W1_k → W1_kM⁻¹, W2_k → MW2_k, b2_k → Mb2_k, W_out → W_outM⁻¹), for any activation:
          C = W_outᵀW_out + Σ_k W1_kᵀW1_k − W_inW_inᵀ − b_inb_inᵀ − Σ_k (W2_kW2_kᵀ + b2_kb2_kᵀ)
          (d × d row-major, degree 2)
    D<k>  identity activation only: W2_kᵀW2_k − W1_kW1_kᵀ − b1_kb1_kᵀ (m × m, GL(m) of block k's hidden layer)
Isometric charges (momentum dynamics):
    J<k>  identity activation only: antisym(W1_kP1_kᵀ + b1_kp_{b1_k}ᵀ − P2_kᵀW2_k)
    JC    with both projections: antisym(W_inP_inᵀ + b_inp_{b_in}ᵀ + Σ_k (W2_kP2_kᵀ + b2_kp_{b2_k}ᵀ − P1_kᵀW1_k)
          − P_outᵀW_out)
    JT    softmax head: Σ_c P_out[c, a] per column a, then Σ_c p_{b_out}[c]
Each charge is θᵀSθ (or vᵀθ) with ⟨Sθ, ∇L⟩ = 0, so evaluated on a gradient it is the η² (η) term of
gradient descent's exact one-step law.

Work buffer: per layer i of the chain, 2·n_i·N (pre-activations Z_i and, for the blocks' hidden layers,
H_i = σ(Z_i); a stream layer keeps s_k in its Z part), then three back-propagation buffers (widest × N).
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import bias_offset, extra, n_layers, weight_offset, widest_layer, width
from .linear_isometric import layer_isometric, layer_isometric_scale
from .mlp import (ACT_LINEAR, ACT_RELU, F_CHARGE_DEGREE, F_POWER, F_SLOPE, LOSS_SOFTMAX_CE, MLP_EXTRAS,
                  _activate, _backward_layer, _balance, _forward_layer, _weight_gradient, layer_abs_sum, output_loss)


@njit(cache=True, inline="always")
def n_blocks(ints):
    return extra(ints, MLP_EXTRAS)


@njit(cache=True, inline="always")
def has_input_projection(ints):
    return extra(ints, MLP_EXTRAS + 1) != 0


@njit(cache=True, inline="always")
def has_output_projection(ints):
    return extra(ints, MLP_EXTRAS + 2) != 0


@njit(cache=True, inline="always")
def first_block_layer(ints):
    """Chain index of W1_1 (2 with an input projection, else 1); W1_k is at this + 2(k − 1)."""
    return 2 if has_input_projection(ints) else 1


@njit(cache=True, inline="always")
def _stream_charged(ints):
    return has_input_projection(ints) and has_output_projection(ints)


@njit(cache=True, inline="always")
def _region(ints, i, N):
    pos = 0
    for m in range(1, i):
        pos += 2 * width(ints, m) * N
    return pos


@njit(cache=True)
def residual_work_size(ints, n_points):
    L = n_layers(ints)
    size = 0
    for i in range(1, L + 1):
        size += 2 * width(ints, i) * n_points
    return size + 3 * widest_layer(ints) * n_points


@njit(cache=True, inline="always")
def _weights(theta, ints, i):
    n, m = width(ints, i), width(ints, i - 1)
    wo = weight_offset(ints, i)
    return theta[wo: wo + n * m].reshape((n, m))


@njit(cache=True, inline="always")
def _bias(theta, ints, i):
    if ints[2] == 0:
        return theta[0:0]
    bo = bias_offset(ints, i)
    return theta[bo: bo + width(ints, i)]


@njit(cache=True, fastmath=FASTMATH)
def residual_loss_grad(theta, grad, ints, floats, X, Y, work):
    """Loss of one parameter row; its gradient is written into ``grad``."""
    L = n_layers(ints)
    N = X.shape[1]
    has_bias = ints[2] != 0
    act = extra(ints, 0)
    loss_code = extra(ints, 1)
    slope = floats[F_SLOPE]
    power = floats[F_POWER]
    K = n_blocks(ints)
    p_in = has_input_projection(ints)
    p_out = has_output_projection(ints)
    first = first_block_layer(ints)
    d = width(ints, first - 1)
    widest = widest_layer(ints)
    bp = _region(ints, L + 1, N)
    buf_s = work[bp: bp + widest * N]
    buf_z = work[bp + widest * N: bp + 2 * widest * N]
    buf_t = work[bp + 2 * widest * N: bp + 3 * widest * N]

    # ---- forward ----
    S = X
    if p_in:
        zo = _region(ints, 1, N)
        S = work[zo: zo + d * N].reshape((d, N))
        _forward_layer(_weights(theta, ints, 1), X, _bias(theta, ints, 1), has_bias, S, False)
    for k in range(K):
        i1 = first + 2 * k
        m = width(ints, i1)
        zo = _region(ints, i1, N)
        Z = work[zo: zo + m * N].reshape((m, N))
        H = work[zo + m * N: zo + 2 * m * N].reshape((m, N))
        if act == ACT_RELU:  # H straight from the tiles; σ'(z) = [h > 0] later
            _forward_layer(_weights(theta, ints, i1), S, _bias(theta, ints, i1), has_bias, H, True)
        else:
            _forward_layer(_weights(theta, ints, i1), S, _bias(theta, ints, i1), has_bias, Z, False)
            for a in range(m):
                _activate(Z[a], H[a], act, slope, power)
        so = _region(ints, i1 + 1, N)
        Snew = work[so: so + d * N].reshape((d, N))
        _forward_layer(_weights(theta, ints, i1 + 1), H, _bias(theta, ints, i1 + 1), has_bias, Snew, False)
        for a in range(d):  # the skip
            for j in range(N):
                Snew[a, j] += S[a, j]
        S = Snew
    if p_out:
        nL = width(ints, L)
        fo = _region(ints, L, N)
        F = work[fo: fo + nL * N].reshape((nL, N))
        _forward_layer(_weights(theta, ints, L), S, _bias(theta, ints, L), has_bias, F, False)
    else:
        nL = d
        F = S

    # ---- loss and E = dL/df, written over f ----
    loss = output_loss(F, Y, loss_code)

    # ---- backward: ds = ∂L/∂s_k carried down the stream, plus each block's branch ----
    if p_out:
        wo = weight_offset(ints, L)
        bo = bias_offset(ints, L)
        _weight_gradient(F, S, grad[wo: wo + nL * d].reshape((nL, d)), grad[bo: bo + nL] if has_bias else grad[0:0],
                         has_bias)
        dS = buf_s[: d * N].reshape((d, N))
        _backward_layer(_weights(theta, ints, L), F, dS, dS, ACT_LINEAR, slope, power)
    else:
        dS = F
    for k in range(K - 1, -1, -1):
        i1 = first + 2 * k
        m = width(ints, i1)
        zo = _region(ints, i1, N)
        Z = work[zo: zo + m * N].reshape((m, N))
        H = work[zo + m * N: zo + 2 * m * N].reshape((m, N))
        if k > 0:
            po = _region(ints, i1 - 1, N)
            Sprev = work[po: po + d * N].reshape((d, N))
        elif p_in:
            po = _region(ints, 1, N)
            Sprev = work[po: po + d * N].reshape((d, N))
        else:
            Sprev = X
        wo2 = weight_offset(ints, i1 + 1)
        bo2 = bias_offset(ints, i1 + 1)
        _weight_gradient(dS, H, grad[wo2: wo2 + d * m].reshape((d, m)), grad[bo2: bo2 + d] if has_bias else grad[0:0],
                         has_bias)
        dZ = buf_z[: m * N].reshape((m, N))
        _backward_layer(_weights(theta, ints, i1 + 1), dS, dZ, H if act == ACT_RELU else Z, act, slope, power)
        wo1 = weight_offset(ints, i1)
        bo1 = bias_offset(ints, i1)
        _weight_gradient(dZ, Sprev, grad[wo1: wo1 + m * d].reshape((m, d)), grad[bo1: bo1 + m] if has_bias else grad[0:0],
                         has_bias)
        if k > 0 or p_in:
            T = buf_t[: d * N].reshape((d, N))
            _backward_layer(_weights(theta, ints, i1), dZ, T, T, ACT_LINEAR, slope, power)
            for a in range(d):
                for j in range(N):
                    dS[a, j] += T[a, j]
    if p_in:
        n0 = width(ints, 0)
        wo = weight_offset(ints, 1)
        bo = bias_offset(ints, 1)
        _weight_gradient(dS, X, grad[wo: wo + d * n0].reshape((d, n0)), grad[bo: bo + d] if has_bias else grad[0:0],
                         has_bias)
    return loss


@njit(cache=True, fastmath=FASTMATH)
def _gram_add(q, pos, W, sign, rows):
    """q[pos: pos + n²] += sign · (WᵀW if rows else WWᵀ), n the shared dimension, row-major."""
    a_dim, b_dim = W.shape
    if rows:  # WᵀW: n = columns
        for a in range(b_dim):
            for b in range(b_dim):
                acc = 0.0
                for r in range(a_dim):
                    acc += W[r, a] * W[r, b]
                q[pos + a * b_dim + b] += sign * acc
    else:  # WWᵀ: n = rows
        for a in range(a_dim):
            for b in range(a_dim):
                acc = 0.0
                for c in range(b_dim):
                    acc += W[a, c] * W[b, c]
                q[pos + a * a_dim + b] += sign * acc


@njit(cache=True, fastmath=FASTMATH)
def _outer_add(q, pos, v, sign):
    n = v.shape[0]
    for a in range(n):
        for b in range(n):
            q[pos + a * n + b] += sign * v[a] * v[b]


@njit(cache=True, fastmath=FASTMATH)
def residual_charges(theta, q, ints, floats):
    """Every charge (module doc) at ``theta``, or the η² / η law terms when given a gradient."""
    L = n_layers(ints)
    has_bias = ints[2] != 0
    alpha = floats[F_CHARGE_DEGREE]
    K = n_blocks(ints)
    first = first_block_layer(ints)
    d = width(ints, first - 1)
    pos = 0
    for k in range(K):
        i1 = first + 2 * k
        m = width(ints, i1)
        W1 = _weights(theta, ints, i1)
        W2 = _weights(theta, ints, i1 + 1)
        b1 = _bias(theta, ints, i1)
        for j in range(m):
            s = 0.0
            for c in range(d):
                s += W1[j, c] * W1[j, c]
            if has_bias:
                s += b1[j] * b1[j]
            o = 0.0
            for r in range(d):
                o += W2[r, j] * W2[r, j]
            q[pos + j] = s - alpha * o
        pos += m
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        nL = width(ints, L)
        WL = _weights(theta, ints, L)
        for a in range(d):
            s = 0.0
            for c in range(nL):
                s += WL[c, a]
            q[pos + a] = s
        pos += d
        if has_bias:
            bL = _bias(theta, ints, L)
            s = 0.0
            for c in range(nL):
                s += bL[c]
            q[pos] = s
            pos += 1
    if _stream_charged(ints):
        for k in range(d * d):
            q[pos + k] = 0.0
        _gram_add(q, pos, _weights(theta, ints, L), 1.0, True)
        _gram_add(q, pos, _weights(theta, ints, 1), -1.0, False)
        if has_bias:
            _outer_add(q, pos, _bias(theta, ints, 1), -1.0)
        for k in range(K):
            i1 = first + 2 * k
            _gram_add(q, pos, _weights(theta, ints, i1), 1.0, True)
            _gram_add(q, pos, _weights(theta, ints, i1 + 1), -1.0, False)
            if has_bias:
                _outer_add(q, pos, _bias(theta, ints, i1 + 1), -1.0)
        pos += d * d
    if extra(ints, 0) == ACT_LINEAR:
        for k in range(K):
            i1 = first + 2 * k
            _balance(theta, q, pos, ints, i1, has_bias)
            pos += width(ints, i1) * width(ints, i1)


@njit(cache=True, fastmath=FASTMATH)
def _sq(theta, ints, i, with_bias):
    s = 0.0
    wo = weight_offset(ints, i)
    for k in range(wo, wo + width(ints, i) * width(ints, i - 1)):
        s += theta[k] * theta[k]
    if with_bias and ints[2] != 0:
        bo = bias_offset(ints, i)
        for k in range(bo, bo + width(ints, i)):
            s += theta[k] * theta[k]
    return s


@njit(cache=True, fastmath=FASTMATH)
def residual_charge_scales(theta, scales, ints, floats):
    """Per group, the size of the terms that cancel in it (sums of squares; Σ|entries| for T)."""
    L = n_layers(ints)
    alpha = abs(floats[F_CHARGE_DEGREE])
    K = n_blocks(ints)
    first = first_block_layer(ints)
    grp = 0
    for k in range(K):
        i1 = first + 2 * k
        scales[grp] = _sq(theta, ints, i1, True) + alpha * _sq(theta, ints, i1 + 1, False)
        grp += 1
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        scales[grp] = layer_abs_sum(theta, ints, L)
        grp += 1
    if _stream_charged(ints):
        s = _sq(theta, ints, 1, True) + _sq(theta, ints, L, False)
        for k in range(K):
            i1 = first + 2 * k
            s += _sq(theta, ints, i1, False) + _sq(theta, ints, i1 + 1, True)
        scales[grp] = s
        grp += 1
    if extra(ints, 0) == ACT_LINEAR:
        for k in range(K):
            i1 = first + 2 * k
            scales[grp] = _sq(theta, ints, i1, True) + _sq(theta, ints, i1 + 1, False)
            grp += 1


@njit(cache=True)
def residual_n_isometric(ints):
    """J<k> (identity activation), then JC (both projections), then JT (softmax head)."""
    L = n_layers(ints)
    K = n_blocks(ints)
    first = first_block_layer(ints)
    d = width(ints, first - 1)
    n = 0
    if extra(ints, 0) == ACT_LINEAR:
        for k in range(K):
            n += width(ints, first + 2 * k) ** 2
    if _stream_charged(ints):
        n += d * d
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        n += width(ints, L - 1) + (1 if ints[2] != 0 else 0)
    return n


@njit(cache=True, fastmath=FASTMATH)
def _cross_add(C, A, P, sign, rows):
    """C += sign · (PᵀA if rows else APᵀ) (A a weight matrix, P its momentum)."""
    a_dim, b_dim = A.shape
    if rows:
        for a in range(b_dim):
            for b in range(b_dim):
                acc = 0.0
                for r in range(a_dim):
                    acc += P[r, a] * A[r, b]
                C[a, b] += sign * acc
    else:
        for a in range(a_dim):
            for b in range(a_dim):
                acc = 0.0
                for c in range(b_dim):
                    acc += A[a, c] * P[b, c]
                C[a, b] += sign * acc


@njit(cache=True, fastmath=FASTMATH)
def residual_isometric_charges(theta, mom, out, ints, floats):
    """Every isometric charge (module doc) at position ``theta`` and momentum ``mom``."""
    L = n_layers(ints)
    K = n_blocks(ints)
    first = first_block_layer(ints)
    d = width(ints, first - 1)
    has_bias = ints[2] != 0
    pos = 0
    if extra(ints, 0) == ACT_LINEAR:
        for k in range(K):
            i1 = first + 2 * k
            layer_isometric(theta, mom, out, pos, ints, i1)
            pos += width(ints, i1) ** 2
    if _stream_charged(ints):
        C = np.zeros((d, d))
        _cross_add(C, _weights(theta, ints, 1), _weights(mom, ints, 1), 1.0, False)
        _cross_add(C, _weights(theta, ints, L), _weights(mom, ints, L), -1.0, True)
        incoming = [1]
        for k in range(K):
            i1 = first + 2 * k
            _cross_add(C, _weights(theta, ints, i1 + 1), _weights(mom, ints, i1 + 1), 1.0, False)
            _cross_add(C, _weights(theta, ints, i1), _weights(mom, ints, i1), -1.0, True)
            incoming.append(i1 + 1)
        if has_bias:
            for i in incoming:
                b, pb = _bias(theta, ints, i), _bias(mom, ints, i)
                for a in range(d):
                    for c in range(d):
                        C[a, c] += b[a] * pb[c]
        for a in range(d):
            for c in range(d):
                out[pos + a * d + c] = 0.5 * (C[a, c] - C[c, a])
        pos += d * d
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        nL = width(ints, L)
        wo = weight_offset(ints, L)
        for a in range(d):
            s = 0.0
            for c in range(nL):
                s += mom[wo + c * d + a]
            out[pos + a] = s
        pos += d
        if has_bias:
            bo = bias_offset(ints, L)
            s = 0.0
            for c in range(nL):
                s += mom[bo + c]
            out[pos] = s


@njit(cache=True, fastmath=FASTMATH)
def _frob_pair(theta, mom, lo, hi):
    a2 = 0.0
    m2 = 0.0
    for k in range(lo, hi):
        a2 += theta[k] * theta[k]
        m2 += mom[k] * mom[k]
    return np.sqrt(a2 * m2)


@njit(cache=True, fastmath=FASTMATH)
def residual_isometric_scales(theta, mom, scales, ints, floats):
    """Per isometric group, Σ|A||P| over the blocks involved (Frobenius), Σ|p| for JT."""
    L = n_layers(ints)
    K = n_blocks(ints)
    first = first_block_layer(ints)
    grp = 0
    if extra(ints, 0) == ACT_LINEAR:
        for k in range(K):
            scales[grp] = layer_isometric_scale(theta, mom, ints, first + 2 * k)
            grp += 1
    if _stream_charged(ints):
        s = 0.0
        for i in range(1, L + 1):  # every layer touches the stream
            wo = weight_offset(ints, i)
            s += _frob_pair(theta, mom, wo, wo + width(ints, i) * width(ints, i - 1))
            if ints[2] != 0 and (i == 1 or (i != L and (i - first) % 2 == 1)):  # incoming layers' biases
                bo = bias_offset(ints, i)
                s += _frob_pair(theta, mom, bo, bo + width(ints, i))
        scales[grp] = s
        grp += 1
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        scales[grp] = layer_abs_sum(mom, ints, L)
