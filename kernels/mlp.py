"""Multilayer networks f(x) = W_L σ(… σ(W_1 x + b_1) …) + b_L on the raw data, squared or softmax loss.

Data: data_a = X (n_0 × N), data_b = Y (n_L × N), columns are data points. Squared loss
L = (1/2N) Σ_j |f(x_j) − y_j|²; softmax cross-entropy L = (1/N) Σ_j [(Σ_c Y_cj) logsumexp(f_j) − Σ_c Y_cj f_cj]
(one-hot or soft labels; with Σ_c Y_cj = 1 this is −(1/N) Σ_j Σ_c Y_cj log softmax(f_j)_c).
Optionally the first layer is weight-normalised without a gain: row k enters as v_k = w_k / |w_k|; its
pre-activations are layer- or RMS-normalised; the whole network is a residual block f(x) = x + (network)
(n_L = n_0; the skip has no parameters, so the gradient's only change is the residual f − y).

model_floats: [leaky slope a, power α of ReLU(z)^α, homogeneity degree used in the rescale charges],
optionally followed by one bias factor e_i per layer i = 1 … L: then layer i adds e_i·b_i (not b_i) and its
bias gradient is e_i·(Δ_i 1). Layer-wise rates with separate bias rates run through these factors
(noether_sim/layer_lr.py); without them (three floats) the network is the plain one, bit for bit.

Derivative convention at the kink z = 0: σ'(0) is the derivative from the left, i.e.
ReLU'(0) = 0, leaky'(0) = a, |·|'(0) = 0 (sign(0)), (ReLU^α)'(0) = 0. Any choice keeps the charges'
laws exact, because the symmetry identity σ'(z) z = α σ(z) holds trivially at z = 0.

Charges, in this order in q (the Python model ``noether_sim.mlp.MLP`` names the same groups):
    r_i  per-neuron rescale charges |w_in|² + b² − α|w_out|² of hidden layer i = 1 … L−1 (degree 2;
         layer 1 is skipped when it is weight-normalised: its neurons cannot be rescaled)
    T    softmax translation charges: Σ_c W_L[c, m] for every column m, then Σ_c b_L[c] (degree 1)
    S    scale charges |w_k|² of the weight-normalised first-layer rows (degree 2)
    N    layer or RMS normalisation of the first hidden layer: its scale |W_1|² + |b_1|² (degree 2)
    M    layer normalisation: the mean shift W_1 → W_1 + 1uᵀ, b_1 → b_1 + c1: Σ_k W_1[k, c] per column c,
         then Σ_k b_1[k] (degree 1)
    D_i  linear activation only: the balance matrices W_{i+1}ᵀW_{i+1} − W_iW_iᵀ − b_ib_iᵀ of hidden layers
         i = 1 … L−1 (from 2 with a weight-normalised first layer), n_i × n_i row-major (degree 2): the
         identity activation keeps the whole GL(n_i) symmetry, of which r_i = −diag(D_i) is the diagonal
Isometric charges (momentum dynamics; J(t) = e^{−t/τ}J(0) under momentum flow without weight decay):
    J_i  linear activation only: antisym(W_iP_iᵀ + b_ip_{b_i}ᵀ − P_{i+1}ᵀW_{i+1}) of the same hidden layers
    JT   softmax loss only: the translations' momenta Σ_c P_L[c, m] per column m, then Σ_c p_{b_L}[c]
         (with T = ⟨v, θ⟩ above, ⟨v, θ + τθ̇⟩ = T + τ·JT is the second law each translation keeps)
    JM   layer normalisation only: the mean shift's momenta Σ_k P_1[k, c] per column c, then Σ_k p_{b_1}[k]
Each is θᵀSθ (or vᵀθ) with ⟨S θ, ∇L⟩ = 0, so evaluated on a gradient g it is the η² (or η) term of
gradient descent's exact one-step law.

Work buffer: for each layer i, Z_i (n_i × N) and, for hidden layers, H_i = σ(Z_i) (n_i × N); two
back-propagation buffers (widest × N); the normalised first layer V (n_1 × n_0) and its row norms.
ReLU hidden layers write only H_i (straight from the register tiles) and take σ'(z) = [h > 0].
"""

import math

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import MODEL_MLP, bias_offset, extra, model_floats_length, n_layers, weight_offset, widest_layer, width
from .linear_isometric import layer_isometric, layer_isometric_scale
from .simd import TILE_POINTS, dense_tile_1, dense_tile_1x64, dense_tile_8, dot_tile_1x4, dot_tile_4x4

ACT_LINEAR, ACT_RELU, ACT_LEAKY_RELU, ACT_ABS, ACT_RELU_POW, ACT_TANH, ACT_SOFTPLUS, ACT_GELU = range(8)
LOSS_SQUARED, LOSS_SOFTMAX_CE = 0, 1
NORM_NONE, NORM_LAYER, NORM_RMS = 0, 1, 2
MLP_EXTRAS = 5  # activation, loss, weight-normalised first layer, normalisation of the first hidden layer,
# residual (f = x + network)
F_SLOPE, F_POWER, F_CHARGE_DEGREE = 0, 1, 2

# FMA contraction but no reassociation: sums stay in the order written (loops over data points
# still vectorise, being lane-wise), so the scalar remainder loops match the SIMD tiles exactly.
_LANEWISE = {"contract", "nsz"}

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True)
def mlp_work_size(ints, n_points):
    L = n_layers(ints)
    size = 0
    for i in range(1, L + 1):
        size += width(ints, i) * n_points * (2 if i < L else 1)
    size += 2 * widest_layer(ints) * n_points
    if extra(ints, 2) != 0:
        size += width(ints, 1) * (width(ints, 0) + 1)
    if extra(ints, 3) != NORM_NONE:
        size += n_points
    if ints[2] != 0:  # the scaled biases e_i·b_i (used only with bias factors in model_floats)
        for i in range(1, L + 1):
            size += width(ints, i)
    return size


@njit(cache=True, inline="always")
def _first_free(ints):
    """The first hidden layer whose neurons can be rescaled: 2 when layer 1 is weight-normalised or
    normalised (layer or RMS normalisation mixes its neurons), else 1."""
    return 2 if (extra(ints, 2) != 0 or extra(ints, 3) != NORM_NONE) else 1


@njit(cache=True, fastmath=_LANEWISE)
def _normalise_columns(Z, inv_s, code):
    """Z ← (Z − mean) / rms (layer normalisation) or Z / rms (RMS normalisation) over the units, per
    data point (column); inv_s ← 1/rms. No ε and no gain: the output is exactly scale-invariant.
    Row by row (each loop over the data points is lane-wise): the column sums run over the units in order."""
    n, N = Z.shape
    mu = np.zeros(N)
    if code == NORM_LAYER:
        for k in range(n):
            z = Z[k]
            for j in range(N):
                mu[j] += z[j]
        for j in range(N):
            mu[j] /= n
    ss = np.zeros(N)
    for k in range(n):
        z = Z[k]
        for j in range(N):
            c = z[j] - mu[j]
            ss[j] += c * c
    for j in range(N):
        inv_s[j] = 1.0 / np.sqrt(ss[j] / n)
    for k in range(n):
        z = Z[k]
        for j in range(N):
            z[j] = (z[j] - mu[j]) * inv_s[j]


@njit(cache=True, fastmath=_LANEWISE)
def _normalise_backward(D, Zhat, inv_s, code):
    """D ← ∂L/∂z from D = ∂L/∂ẑ: (D − ẑ·mean(D∘ẑ))/rms, also − mean(D) for layer normalisation (row by row,
    as ``_normalise_columns``)."""
    n, N = D.shape
    m1 = np.zeros(N)
    m2 = np.zeros(N)
    for k in range(n):
        d = D[k]
        zh = Zhat[k]
        for j in range(N):
            m1[j] += d[j]
            m2[j] += d[j] * zh[j]
    for j in range(N):
        m1[j] = m1[j] / n if code == NORM_LAYER else 0.0
        m2[j] /= n
    for k in range(n):
        d = D[k]
        zh = Zhat[k]
        for j in range(N):
            d[j] = (d[j] - m1[j] - zh[j] * m2[j]) * inv_s[j]


@njit(cache=True, inline="always")
def _z_offset(ints, i, N):
    pos = 0
    for m in range(1, i):
        pos += 2 * width(ints, m) * N
    return pos


@njit(cache=True, fastmath=FASTMATH)
def _activate(z, out, code, slope, power):
    """out = σ(z) elementwise; one loop per activation so each vectorises."""
    n = z.shape[0]
    if code == ACT_LINEAR:
        for j in range(n):
            out[j] = z[j]
    elif code == ACT_RELU:
        for j in range(n):
            out[j] = max(z[j], 0.0)
    elif code == ACT_LEAKY_RELU:
        for j in range(n):
            out[j] = z[j] if z[j] > 0.0 else slope * z[j]
    elif code == ACT_ABS:
        for j in range(n):
            out[j] = abs(z[j])
    elif code == ACT_RELU_POW:
        for j in range(n):
            out[j] = z[j] ** power if z[j] > 0.0 else 0.0
    elif code == ACT_TANH:
        for j in range(n):
            out[j] = math.tanh(z[j])
    elif code == ACT_SOFTPLUS:
        for j in range(n):
            out[j] = max(z[j], 0.0) + math.log1p(math.exp(-abs(z[j])))
    else:  # GELU, exact: z Φ(z)
        for j in range(n):
            out[j] = z[j] * 0.5 * (1.0 + math.erf(z[j] * _INV_SQRT2))


@njit(cache=True, fastmath=FASTMATH)
def _times_derivative(d, z, code, slope, power):
    """d *= σ'(z) elementwise (σ'(0) from the left at kinks)."""
    n = z.shape[0]
    if code == ACT_LINEAR:
        return
    elif code == ACT_RELU:
        for j in range(n):
            d[j] = d[j] if z[j] > 0.0 else 0.0
    elif code == ACT_LEAKY_RELU:
        for j in range(n):
            d[j] = d[j] if z[j] > 0.0 else slope * d[j]
    elif code == ACT_ABS:
        for j in range(n):
            d[j] = d[j] if z[j] > 0.0 else (-d[j] if z[j] < 0.0 else 0.0)
    elif code == ACT_RELU_POW:
        for j in range(n):
            d[j] = d[j] * power * z[j] ** (power - 1.0) if z[j] > 0.0 else 0.0
    elif code == ACT_TANH:
        for j in range(n):
            t = math.tanh(z[j])
            d[j] *= 1.0 - t * t
    elif code == ACT_SOFTPLUS:
        for j in range(n):
            e = math.exp(-abs(z[j]))  # sigmoid, stable on both sides
            d[j] *= 1.0 / (1.0 + e) if z[j] >= 0.0 else e / (1.0 + e)
    else:
        for j in range(n):
            x = z[j]
            d[j] *= 0.5 * (1.0 + math.erf(x * _INV_SQRT2)) + x * _INV_SQRT2PI * math.exp(-0.5 * x * x)


@njit(cache=True, fastmath=_LANEWISE)
def _forward_layer(W, Hin, b, has_bias, Z, relu):
    """Z = W Hin (+ b), or its ReLU if ``relu``: every entry is b_k then one FMA per input, in input order.

    Blocks of 16 data points × 8 rows are register tiles (kernels/simd.py); leftover rows take
    one-row tiles and leftover points (N mod 16) a scalar loop with the same arithmetic.
    """
    n, m = W.shape
    N = Hin.shape[1]
    n_tiled = n - n % 8
    N_tiled = N - N % TILE_POINTS
    for j in range(0, N_tiled, TILE_POINTS):
        for k in range(0, n_tiled, 8):
            dense_tile_8(W, Hin, Z, b, has_bias, k, j, relu)
    for k in range(n_tiled, n):  # leftover rows (e.g. the output layer)
        j = 0
        while j + 64 <= N_tiled:
            dense_tile_1x64(W, Hin, Z, b, has_bias, k, j, relu)
            j += 64
        while j < N_tiled:
            dense_tile_1(W, Hin, Z, b, has_bias, k, j, relu)
            j += TILE_POINTS
    for k in range(n):
        for jj in range(N_tiled, N):
            acc = b[k] if has_bias else 0.0
            for c in range(m):
                acc += W[k, c] * Hin[c, jj]
            Z[k, jj] = max(acc, 0.0) if relu else acc


@njit(cache=True, fastmath=FASTMATH)
def _weight_gradient(D, Hin, G, gb, has_bias):
    """G = D Hinᵀ and gb = D 1 (dot products over data points).

    Blocks of 4 × 4 (leftover rows: 1 × 4) dot products are SIMD tiles (kernels/simd.py) over the
    first N − N mod 8 points, the remaining points added after; leftover columns are plain dots.
    """
    n, N = D.shape
    m = Hin.shape[0]
    n_vec = N - N % 8
    m_tiled = m - m % 4
    for c in range(0, m_tiled, 4):
        k = 0
        while k < n:
            rows = 4 if k + 4 <= n else 1
            if rows == 4:
                dot_tile_4x4(D, Hin, G, k, c, n_vec)
            else:
                dot_tile_1x4(D, Hin, G, k, c, n_vec)
            for r in range(k, k + rows):
                for s in range(c, c + 4):
                    for j in range(n_vec, N):
                        G[r, s] += D[r, j] * Hin[s, j]
            k += rows
    for k in range(n):
        d = D[k]
        for c in range(m_tiled, m):
            x = Hin[c]
            acc = 0.0
            for j in range(N):
                acc += d[j] * x[j]
            G[k, c] = acc
    if has_bias:
        for k in range(n):
            d = D[k]
            acc = 0.0
            for j in range(N):
                acc += d[j]
            gb[k] = acc


@njit(cache=True, fastmath=_LANEWISE)
def _backward_layer(W, D, out, Zprev, act, slope, power):
    """out = (Wᵀ D) ∘ σ'(Zprev), one output row at a time: the row is summed over the rows of D four
    at a time (in order) and multiplied by σ' while it is still in L1."""
    n, m = W.shape
    for c in range(m):
        o = out[c]
        if n == 1 and act == ACT_RELU:  # the usual output layer: one fused pass, same numbers
            z = Zprev[c]
            d0 = D[0]
            w0 = W[0, c]
            for j in range(o.shape[0]):
                o[j] = w0 * d0[j] if z[j] > 0.0 else 0.0
            continue
        k = 0
        if n >= 4:
            d0, d1, d2, d3 = D[0], D[1], D[2], D[3]
            w0, w1, w2, w3 = W[0, c], W[1, c], W[2, c], W[3, c]
            for j in range(o.shape[0]):
                o[j] = w0 * d0[j] + w1 * d1[j] + w2 * d2[j] + w3 * d3[j]
            k = 4
        else:
            d0 = D[0]
            w0 = W[0, c]
            for j in range(o.shape[0]):
                o[j] = w0 * d0[j]
            k = 1
        while k + 4 <= n:
            d0, d1, d2, d3 = D[k], D[k + 1], D[k + 2], D[k + 3]
            w0, w1, w2, w3 = W[k, c], W[k + 1, c], W[k + 2, c], W[k + 3, c]
            for j in range(o.shape[0]):
                o[j] = o[j] + w0 * d0[j] + w1 * d1[j] + w2 * d2[j] + w3 * d3[j]
            k += 4
        while k < n:
            d0 = D[k]
            w0 = W[k, c]
            for j in range(o.shape[0]):
                o[j] += w0 * d0[j]
            k += 1
        _times_derivative(o, Zprev[c], act, slope, power)


@njit(cache=True, fastmath=FASTMATH)
def output_loss(F, Y, loss_code):
    """The loss of outputs F (n_out, N) against Y, squared or softmax cross-entropy; dL/dF written over F."""
    nL, N = F.shape
    inv_n = 1.0 / N
    loss = 0.0
    if loss_code == LOSS_SQUARED:
        for c in range(nL):
            f, y = F[c], Y[c]
            acc = 0.0
            for j in range(N):
                e = f[j] - y[j]
                acc += e * e
                f[j] = e * inv_n
            loss += 0.5 * acc
    else:
        for j in range(N):
            mx = F[0, j]
            for c in range(1, nL):
                mx = max(mx, F[c, j])
            ssum = 0.0
            ysum = 0.0
            yf = 0.0
            for c in range(nL):
                ssum += np.exp(F[c, j] - mx)
                ysum += Y[c, j]
                yf += Y[c, j] * F[c, j]
            lse = mx + np.log(ssum)
            loss += ysum * lse - yf
            for c in range(nL):
                F[c, j] = (np.exp(F[c, j] - lse) * ysum - Y[c, j]) * inv_n
    loss *= inv_n
    return loss


@njit(cache=True, fastmath=FASTMATH)
def layer_abs_sum(v, ints, i):
    """Σ|entries| of layer i's weights and bias in v (θ or a momentum): the softmax-shift charges' size."""
    s = 0.0
    wo = weight_offset(ints, i)
    for k in range(wo, wo + width(ints, i) * width(ints, i - 1)):
        s += abs(v[k])
    if ints[2] != 0:
        bo = bias_offset(ints, i)
        for k in range(bo, bo + width(ints, i)):
            s += abs(v[k])
    return s


@njit(cache=True, fastmath=FASTMATH)
def mlp_loss_grad(theta, grad, ints, floats, X, Y, work):
    """Loss of one parameter row; its gradient is written into ``grad``."""
    L = n_layers(ints)
    N = X.shape[1]
    has_bias = ints[2] != 0
    act = extra(ints, 0)
    loss_code = extra(ints, 1)
    normalised = extra(ints, 2) != 0
    norm = extra(ints, 3)
    slope = floats[F_SLOPE]
    power = floats[F_POWER]
    widest = widest_layer(ints)
    buf_pos = _z_offset(ints, L, N) + width(ints, L) * N
    bufs = (work[buf_pos: buf_pos + widest * N], work[buf_pos + widest * N: buf_pos + 2 * widest * N])
    nv_pos = buf_pos + 2 * widest * N
    # layer_lr with bias rates (a plain MLP only: adapters append θ₀ to the same floats, kernels/lora.py)
    bias_factors = has_bias and ints[0] == MODEL_MLP and model_floats_length(ints, floats) > F_CHARGE_DEGREE + 1

    # ---- forward ----
    n0, n1 = width(ints, 0), width(ints, 1)
    W1 = theta[weight_offset(ints, 1): weight_offset(ints, 1) + n1 * n0].reshape((n1, n0))
    norms = work[nv_pos + n1 * n0: nv_pos + n1 * n0 + (n1 if normalised else 0)]
    ns_pos = nv_pos + (n1 * n0 + n1 if normalised else 0)
    inv_s = work[ns_pos: ns_pos + (N if norm != NORM_NONE else 0)]
    eb_pos = ns_pos + (N if norm != NORM_NONE else 0)  # the scaled biases e_i·b_i, layer after layer
    if normalised:
        V = work[nv_pos: nv_pos + n1 * n0].reshape((n1, n0))
        for k in range(n1):
            s = 0.0
            for c in range(n0):
                s += W1[k, c] * W1[k, c]
            norms[k] = np.sqrt(s)
            inv = 1.0 / norms[k]
            for c in range(n0):
                V[k, c] = W1[k, c] * inv
        W1 = V
    Hin = X
    for i in range(1, L + 1):
        ni, nprev = width(ints, i), width(ints, i - 1)
        W = W1 if i == 1 else theta[weight_offset(ints, i): weight_offset(ints, i) + ni * nprev].reshape((ni, nprev))
        bo = bias_offset(ints, i)
        b = theta[bo: bo + ni] if has_bias else theta[0:0]
        if bias_factors:
            eb = work[eb_pos: eb_pos + ni]
            e = floats[F_CHARGE_DEGREE + i]
            for k in range(ni):
                eb[k] = e * b[k]
            b = eb
            eb_pos += ni
        zo = _z_offset(ints, i, N)
        Z = work[zo: zo + ni * N].reshape((ni, N))
        if i < L:
            H = work[zo + ni * N: zo + 2 * ni * N].reshape((ni, N))
            if act == ACT_RELU and not (i == 1 and norm != NORM_NONE):  # H straight from the tiles; Z is
                _forward_layer(W, Hin, b, has_bias, H, True)                # not needed (σ'(z) = [h > 0])
            else:
                _forward_layer(W, Hin, b, has_bias, Z, False)
                if i == 1 and norm != NORM_NONE:
                    _normalise_columns(Z, inv_s, norm)
                for k in range(ni):
                    _activate(Z[k], H[k], act, slope, power)
            Hin = H
        else:
            _forward_layer(W, Hin, b, has_bias, Z, False)
            if extra(ints, 4) != 0:  # residual: f = x + (the network); the skip has no parameters
                for k in range(ni):
                    for j in range(N):
                        Z[k, j] += X[k, j]

    # ---- loss and E = dL/df, written over f ----
    nL = width(ints, L)
    zo = _z_offset(ints, L, N)
    F = work[zo: zo + nL * N].reshape((nL, N))
    loss = output_loss(F, Y, loss_code)

    # ---- backward: G_i = Δ_i H_{i−1}ᵀ, g_b = Δ_i 1, Δ_{i−1} = (W_iᵀ Δ_i) ∘ σ'(Z_{i−1}) ----
    delta = F
    for i in range(L, 0, -1):
        ni, nprev = width(ints, i), width(ints, i - 1)
        wo = weight_offset(ints, i)
        G = grad[wo: wo + ni * nprev].reshape((ni, nprev))
        bo = bias_offset(ints, i)
        gb = grad[bo: bo + ni] if has_bias else grad[0:0]
        if i > 1:
            zp = _z_offset(ints, i - 1, N)
            Hprev = work[zp + nprev * N: zp + 2 * nprev * N].reshape((nprev, N))
        else:
            Hprev = X
        _weight_gradient(delta, Hprev, G, gb, has_bias)
        if bias_factors:
            e = floats[F_CHARGE_DEGREE + i]
            for k in range(ni):
                gb[k] *= e
        if i > 1:
            W = theta[wo: wo + ni * nprev].reshape((ni, nprev))
            out = bufs[i % 2][: nprev * N].reshape((nprev, N))
            # ReLU: σ'(z) = [z > 0] = [max(z, 0) > 0] (NaN too), so H stands in for the Z never stored
            zs = zp + nprev * N if act == ACT_RELU else zp
            Zprev = work[zs: zs + nprev * N].reshape((nprev, N))
            _backward_layer(W, delta, out, Zprev, act, slope, power)
            if i == 2 and norm != NORM_NONE:
                z1 = _z_offset(ints, 1, N)
                _normalise_backward(out, work[z1: z1 + nprev * N].reshape((nprev, N)), inv_s, norm)
            delta = out
    if normalised:  # chain rule through v = w/|w|: g_w = (I − v vᵀ) g_v / |w|
        G = grad[weight_offset(ints, 1): weight_offset(ints, 1) + n1 * n0].reshape((n1, n0))
        for k in range(n1):
            proj = 0.0
            for c in range(n0):
                proj += W1[k, c] * G[k, c]
            inv = 1.0 / norms[k]
            for c in range(n0):
                G[k, c] = (G[k, c] - proj * W1[k, c]) * inv
    return loss


@njit(cache=True, fastmath=FASTMATH)
def mlp_charges(theta, q, ints, floats):
    """Every charge (see the module doc) at ``theta``, or the η² / η law terms when given a gradient."""
    L = n_layers(ints)
    has_bias = ints[2] != 0
    normalised = extra(ints, 2) != 0
    alpha = floats[F_CHARGE_DEGREE]
    pos = 0
    for i in range(_first_free(ints), L):
        ni, nprev, nnext = width(ints, i), width(ints, i - 1), width(ints, i + 1)
        Wi = theta[weight_offset(ints, i): weight_offset(ints, i) + ni * nprev].reshape((ni, nprev))
        Wn = theta[weight_offset(ints, i + 1): weight_offset(ints, i + 1) + nnext * ni].reshape((nnext, ni))
        bo = bias_offset(ints, i)
        for k in range(ni):
            s = 0.0
            for c in range(nprev):
                s += Wi[k, c] * Wi[k, c]
            if has_bias:
                s += theta[bo + k] * theta[bo + k]
            o = 0.0
            for r in range(nnext):
                o += Wn[r, k] * Wn[r, k]
            q[pos + k] = s - alpha * o
        pos += ni
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        nL, nprev = width(ints, L), width(ints, L - 1)
        WL = theta[weight_offset(ints, L): weight_offset(ints, L) + nL * nprev].reshape((nL, nprev))
        for m in range(nprev):
            s = 0.0
            for c in range(nL):
                s += WL[c, m]
            q[pos + m] = s
        pos += nprev
        if has_bias:
            bo = bias_offset(ints, L)
            s = 0.0
            for c in range(nL):
                s += theta[bo + c]
            q[pos] = s
            pos += 1
    if normalised:
        n1, n0 = width(ints, 1), width(ints, 0)
        W1 = theta[weight_offset(ints, 1): weight_offset(ints, 1) + n1 * n0].reshape((n1, n0))
        for k in range(n1):
            s = 0.0
            for c in range(n0):
                s += W1[k, c] * W1[k, c]
            q[pos + k] = s
        pos += n1
    if extra(ints, 3) != NORM_NONE:
        n1, n0 = width(ints, 1), width(ints, 0)
        wo, bo = weight_offset(ints, 1), bias_offset(ints, 1)
        s = 0.0
        for k in range(wo, wo + n1 * n0):
            s += theta[k] * theta[k]
        if has_bias:
            for k in range(bo, bo + n1):
                s += theta[k] * theta[k]
        q[pos] = s
        pos += 1
        if extra(ints, 3) == NORM_LAYER:
            for c in range(n0):
                s = 0.0
                for k in range(n1):
                    s += theta[wo + k * n0 + c]
                q[pos + c] = s
            pos += n0
            if has_bias:
                s = 0.0
                for k in range(n1):
                    s += theta[bo + k]
                q[pos] = s
                pos += 1
    if extra(ints, 0) == ACT_LINEAR:
        for i in range(_first_free(ints), L):
            _balance(theta, q, pos, ints, i, has_bias)
            pos += width(ints, i) * width(ints, i)


@njit(cache=True, fastmath=FASTMATH)
def _balance(theta, q, pos, ints, i, has_bias):
    """D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ − b_ib_iᵀ, row-major into q[pos : pos + n_i²]."""
    ni, nprev, nnext = width(ints, i), width(ints, i - 1), width(ints, i + 1)
    wi, wn, bo = weight_offset(ints, i), weight_offset(ints, i + 1), bias_offset(ints, i)
    for a in range(ni):
        for b in range(ni):
            acc = 0.0
            for r in range(nnext):
                acc += theta[wn + r * ni + a] * theta[wn + r * ni + b]
            for c in range(nprev):
                acc -= theta[wi + a * nprev + c] * theta[wi + b * nprev + c]
            if has_bias:
                acc -= theta[bo + a] * theta[bo + b]
            q[pos + a * ni + b] = acc


@njit(cache=True, fastmath=FASTMATH)
def mlp_charge_scales(theta, scales, ints, floats):
    """Per group, the size of the terms that cancel: Σ(|w_in|² + b² + α|w_out|²), Σ|entries|, Σ|w|²."""
    L = n_layers(ints)
    has_bias = ints[2] != 0
    normalised = extra(ints, 2) != 0
    alpha = abs(floats[F_CHARGE_DEGREE])
    grp = 0
    for i in range(_first_free(ints), L):
        s = 0.0
        wo = weight_offset(ints, i)
        for k in range(wo, wo + width(ints, i) * width(ints, i - 1)):
            s += theta[k] * theta[k]
        if has_bias:
            bo = bias_offset(ints, i)
            for k in range(bo, bo + width(ints, i)):
                s += theta[k] * theta[k]
        wo = weight_offset(ints, i + 1)
        for k in range(wo, wo + width(ints, i + 1) * width(ints, i)):
            s += alpha * theta[k] * theta[k]
        scales[grp] = s
        grp += 1
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        scales[grp] = layer_abs_sum(theta, ints, L)
        grp += 1
    if normalised:
        s = 0.0
        wo = weight_offset(ints, 1)
        for k in range(wo, wo + width(ints, 1) * width(ints, 0)):
            s += theta[k] * theta[k]
        scales[grp] = s
        grp += 1
    if extra(ints, 3) != NORM_NONE:
        s = 0.0
        s1 = 0.0
        wo = weight_offset(ints, 1)
        for k in range(wo, wo + width(ints, 1) * width(ints, 0)):
            s += theta[k] * theta[k]
            s1 += abs(theta[k])
        if has_bias:
            bo = bias_offset(ints, 1)
            for k in range(bo, bo + width(ints, 1)):
                s += theta[k] * theta[k]
                s1 += abs(theta[k])
        scales[grp] = s
        grp += 1
        if extra(ints, 3) == NORM_LAYER:
            scales[grp] = s1
            grp += 1
    if extra(ints, 0) == ACT_LINEAR:
        for i in range(_first_free(ints), L):
            s = 0.0
            for j in (i, i + 1):
                wo = weight_offset(ints, j)
                for k in range(wo, wo + width(ints, j) * width(ints, j - 1)):
                    s += theta[k] * theta[k]
            if has_bias:
                bo = bias_offset(ints, i)
                for k in range(bo, bo + width(ints, i)):
                    s += theta[k] * theta[k]
            scales[grp] = s
            grp += 1


@njit(cache=True)
def mlp_n_isometric(ints):
    """J_i of the hidden layers for the identity activation, then JT for softmax heads."""
    L = n_layers(ints)
    n = 0
    if extra(ints, 0) == ACT_LINEAR:
        for i in range(_first_free(ints), L):
            n += width(ints, i) * width(ints, i)
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        n += width(ints, L - 1) + (1 if ints[2] != 0 else 0)
    if extra(ints, 3) == NORM_LAYER:
        n += width(ints, 0) + (1 if ints[2] != 0 else 0)
    return n


@njit(cache=True, fastmath=FASTMATH)
def mlp_isometric_charges(theta, mom, out, ints, floats):
    """Every isometric charge (module doc) at position ``theta`` and momentum ``mom``."""
    L = n_layers(ints)
    pos = 0
    if extra(ints, 0) == ACT_LINEAR:
        for i in range(_first_free(ints), L):
            layer_isometric(theta, mom, out, pos, ints, i)
            pos += width(ints, i) * width(ints, i)
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        nL, nprev = width(ints, L), width(ints, L - 1)
        wo = weight_offset(ints, L)
        for m in range(nprev):
            s = 0.0
            for c in range(nL):
                s += mom[wo + c * nprev + m]
            out[pos + m] = s
        pos += nprev
        if ints[2] != 0:
            bo = bias_offset(ints, L)
            s = 0.0
            for c in range(nL):
                s += mom[bo + c]
            out[pos] = s
            pos += 1
    if extra(ints, 3) == NORM_LAYER:  # JM: the mean shift's momenta, Σ_k P_1[k, c] per column, then Σ_k p_b1[k]
        n1, n0 = width(ints, 1), width(ints, 0)
        wo = weight_offset(ints, 1)
        for c in range(n0):
            s = 0.0
            for k in range(n1):
                s += mom[wo + k * n0 + c]
            out[pos + c] = s
        pos += n0
        if ints[2] != 0:
            bo = bias_offset(ints, 1)
            s = 0.0
            for k in range(n1):
                s += mom[bo + k]
            out[pos] = s


@njit(cache=True, fastmath=FASTMATH)
def mlp_isometric_scales(theta, mom, scales, ints, floats):
    """Per isometric group, the size of the terms that cancel: ``layer_isometric_scale`` for J_i,
    Σ|entries| of the last layer's momentum for JT."""
    L = n_layers(ints)
    grp = 0
    if extra(ints, 0) == ACT_LINEAR:
        for i in range(_first_free(ints), L):
            scales[grp] = layer_isometric_scale(theta, mom, ints, i)
            grp += 1
    if extra(ints, 1) == LOSS_SOFTMAX_CE:
        scales[grp] = layer_abs_sum(mom, ints, L)
        grp += 1
    if extra(ints, 3) == NORM_LAYER:
        s = 0.0
        wo = weight_offset(ints, 1)
        for k in range(wo, wo + width(ints, 1) * width(ints, 0)):
            s += abs(mom[k])
        if ints[2] != 0:
            bo = bias_offset(ints, 1)
            for k in range(bo, bo + width(ints, 1)):
                s += abs(mom[k])
        scales[grp] = s
