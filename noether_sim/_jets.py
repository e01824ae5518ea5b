"""Exact higher derivatives of the package's models by forward mode over a NumPy back-propagation.

A ``Jet`` is a truncated multivariate Taylor number in k nilpotent directions ε_1 … ε_k with
ε_i² = 0: its coefficients ``c[mask]`` (leading axis of length 2^k) multiply the monomial
Π_{i in mask} ε_i. Evaluating a function on θ + ε_1 u_1 + … + ε_k u_k gives, in the coefficient of
ε_1⋯ε_k, the mixed derivative D^k f(θ)[u_1, …, u_k] exactly (no step size, no truncation error).
Nesting is free: a directional derivative of a quantity that is itself a jet is a jet with one more
direction, which is what iterated Lie brackets need.

``per_sample_fields`` is the model family's gradient written once, generically over jets: deep linear
networks and MLPs (every activation, squared or softmax cross-entropy loss, biases, weight-normalised
first layer). The discovery tests check it against the package's compiled gradient kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import hermite_e

_PAIRS: dict[int, list] = {}


def erf(x):
    """scipy.special.erf, imported on first use (scipy.special costs ~0.15 s of every import)."""
    from scipy.special import erf as _erf

    return _erf(x)


def _pairs(size):
    """(S, T, S \\ T) for every mask S < size and submask T of S: the terms of a jet product."""
    if size not in _PAIRS:
        out = []
        for S in range(size):
            T = S
            while True:
                out.append((S, T, S ^ T))
                if T == 0:
                    break
                T = (T - 1) & S
        _PAIRS[size] = out
    return _PAIRS[size]


class Jet:
    """Coefficients ``c`` of shape (2^k, *value_shape); ``c[0]`` is the value."""

    __array_priority__ = 1000

    def __init__(self, c):
        self.c = c

    @property
    def size(self):
        return self.c.shape[0]

    @property
    def shape(self):
        return self.c.shape[1:]

    @property
    def value(self):
        return self.c[0]

    # ---- linear operations act on every coefficient ----
    def __add__(self, other):
        if isinstance(other, Jet):
            return Jet(_aligned_sum(self.c, other.c))
        out = np.array(np.broadcast_to(self.c, (self.size,) + np.broadcast_shapes(self.shape, np.shape(other))))
        out[0] = out[0] + other
        return Jet(out)

    __radd__ = __add__

    def __neg__(self):
        return Jet(-self.c)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if not isinstance(other, Jet):
            return Jet(self.c * np.asarray(other)[None])
        return Jet(_product(self.c, other.c, np.multiply))

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, Jet):
            return self * reciprocal(other)
        return Jet(self.c / np.asarray(other)[None])

    def __matmul__(self, other):
        if not isinstance(other, Jet):
            return Jet(self.c @ np.asarray(other))
        return Jet(_product(self.c, other.c, np.matmul))

    def __rmatmul__(self, other):
        return Jet(np.asarray(other) @ self.c)

    def sum(self, axis):
        axis = axis if axis < 0 else axis + 1
        return Jet(self.c.sum(axis=axis))

    def swap(self):
        """Transpose of the last two axes."""
        return Jet(np.swapaxes(self.c, -1, -2))

    def reshape(self, *shape):
        return Jet(self.c.reshape((self.size,) + tuple(shape)))

    def __getitem__(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        return Jet(self.c[(slice(None),) + idx])

    def expand(self, axis):
        axis = axis if axis < 0 else axis + 1
        return Jet(np.expand_dims(self.c, axis))


def _aligned_sum(a, b):
    if a.shape[0] == b.shape[0]:
        return a + b
    big, small = (a, b) if a.shape[0] > b.shape[0] else (b, a)
    out = big + np.zeros_like(small[:1])
    out[: small.shape[0]] = out[: small.shape[0]] + small
    return out


def _product(a, b, op):
    size = max(a.shape[0], b.shape[0])
    if a.shape[0] != size:
        a = lift(Jet(a), size).c
    if b.shape[0] != size:
        b = lift(Jet(b), size).c
    first = op(a[0], b[0])
    out = np.zeros((size,) + first.shape, dtype=first.dtype)
    for S, T, R in _pairs(size):
        out[S] += first if (S == 0) else op(a[T], b[R])
    return out


def lift(x, size):
    """x as a jet with ``size`` coefficients (constants and smaller jets gain zero coefficients)."""
    c = x.c if isinstance(x, Jet) else np.asarray(x, dtype=float)[None]
    if c.shape[0] == size:
        return Jet(c)
    out = np.zeros((size,) + c.shape[1:])
    out[: c.shape[0]] = c
    return Jet(out)


def with_direction(x: Jet, direction: Jet) -> Jet:
    """x + ε u with a new nilpotent ε (the highest bit): coefficients [x, u]."""
    d = lift(direction, x.size).c
    return Jet(np.concatenate([x.c, np.broadcast_to(d, x.c.shape)], axis=0))


def derivative_part(y: Jet) -> Jet:
    """The coefficient of the newest nilpotent, as a jet in the others."""
    half = y.size // 2
    return Jet(y.c[half:])


def apply(x, derivatives):
    """f(x) for a jet x, given ``derivatives(value, m)`` = [f(value), f'(value), …, f^(m)(value)]."""
    if not isinstance(x, Jet):
        return derivatives(np.asarray(x, dtype=float), 0)[0]
    k = x.size.bit_length() - 1
    ders = derivatives(x.c[0], k)
    nil = Jet(x.c.copy())
    nil.c[0] = 0.0
    out = np.zeros_like(x.c)
    out[0] = ders[0]
    power = None
    for m in range(1, k + 1):
        power = nil if power is None else power * nil
        out = out + power.c * (ders[m] / math.factorial(m))[None]
    return Jet(out)


def reciprocal(x):
    return apply(x, lambda v, m: [(-1.0) ** j * math.factorial(j) * v ** (-j - 1.0) for j in range(m + 1)])


def inv_sqrt(x):
    def ders(v, m):
        out, coef = [], 1.0
        for j in range(m + 1):
            out.append(coef * v ** (-0.5 - j))
            coef *= -0.5 - j
        return out
    return apply(x, ders)


def exp(x):
    return apply(x, lambda v, m: [np.exp(v)] * (m + 1))


def log(x):
    return apply(x, lambda v, m: [np.log(v)] + [(-1.0) ** (j - 1) * math.factorial(j - 1) * v ** (-float(j))
                                                for j in range(1, m + 1)])


# ---- activations: derivatives σ^(j), j = 0 … m (away from kinks for the piecewise ones) ----

def _poly_chain(p0, dp, v, m):
    """Derivatives of P_j(s(z)) where s' = dp(s): P_{j+1} = P_j'(s)·dp(s), as numpy polynomials in s."""
    polys = [p0]
    for _ in range(m):
        polys.append(polys[-1].deriv() * dp)
    return [p(v) for p in polys]


def activation_derivatives(model, z, first, m):
    """[σ^(first)(z), …, σ^(first+m)(z)] for the model's activation."""
    a = model.activation
    n = first + m
    if a == "linear":
        full = [z, np.ones_like(z)] + [np.zeros_like(z)] * max(n - 1, 0)
    elif a == "relu":
        pos = (z > 0).astype(float)
        full = [np.maximum(z, 0.0), pos] + [np.zeros_like(z)] * max(n - 1, 0)
    elif a == "leaky_relu":
        full = [np.where(z > 0, z, model.slope * z), np.where(z > 0, 1.0, model.slope)] + [np.zeros_like(z)] * max(n - 1, 0)
    elif a == "abs":
        full = [np.abs(z), np.sign(z)] + [np.zeros_like(z)] * max(n - 1, 0)
    elif a == "relu_pow":
        full, coef, zp = [], 1.0, np.maximum(z, 0.0)
        for j in range(n + 1):
            full.append(np.where(z > 0, coef * np.where(z > 0, zp, 1.0) ** (model.power - j), 0.0))
            coef *= model.power - j
    elif a == "tanh":
        t = np.tanh(z)
        P = np.polynomial.Polynomial
        full = _poly_chain(P([0.0, 1.0]), P([1.0, 0.0, -1.0]), t, n)
    elif a == "softplus":
        s = 0.5 * (1.0 + np.tanh(0.5 * z))
        P = np.polynomial.Polynomial
        full = [np.logaddexp(0.0, z)] + _poly_chain(P([0.0, 1.0]), P([0.0, 1.0, -1.0]), s, n - 1 if n >= 1 else 0)
        full = full[: n + 1]
    else:  # GELU z Φ(z): σ^(j) = z φ^(j−1) + j φ^(j−2), φ^(i) = (−1)^i He_i(z) φ(z)
        phi = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        Phi = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))

        def dphi(i):
            return (-1.0) ** i * hermite_e.hermeval(z, [0.0] * i + [1.0]) * phi
        full = [z * Phi, Phi + z * phi]
        for j in range(2, n + 1):
            full.append(z * dphi(j - 1) + j * dphi(j - 2))
    return full[first: n + 1]


def _act(model, z, first):
    if isinstance(z, Jet):
        return apply(z, lambda v, m: activation_derivatives(model, v, first, m))
    return activation_derivatives(model, z, first, 0)[0]


# ---- the model family's per-sample gradients, generic over jets ----

def _blocks(model, theta):
    """[(W_i, b_i)] of a batch of parameter jets (…, P) → W_i (…, n_i, n_{i−1})."""
    w_off, b_off = model.offsets
    out = []
    lead = theta.shape[:-1]
    for i in range(1, model.n_layers + 1):
        n_out, n_in = model.weight_shape(i)
        W = theta[..., w_off[i - 1]: w_off[i - 1] + n_out * n_in].reshape(*lead, n_out, n_in)
        b = theta[..., b_off[i - 1]: b_off[i - 1] + n_out] if model.bias else None
        out.append((W, b))
    return out


def _concat(parts, size):
    cs = [lift(p, size).c for p in parts]
    return Jet(np.concatenate(cs, axis=-1))


def weighted_gradient(model, theta: Jet, X, Y, weights):
    """∇_θ Σ_j w_bj ℓ(θ_b; x_j, y_j) for every batch row b: theta (…B, P) jet, X (n_0, N), Y (n_L, N),
    weights (B, N). ℓ is the per-point loss of the model: ½|f − y|² or (Σ_c y_c) logsumexp(f) − yᵀf."""
    theta = theta if isinstance(theta, Jet) else Jet(np.asarray(theta, dtype=float)[None])
    if getattr(model, "kind", "") == "attention":
        return _attention_weighted_gradient(model, theta, X, Y, weights)
    if getattr(model, "kind", "") == "lora":
        return _lora_gradient(model, theta, X, Y, weights)
    if getattr(model, "kind", "") == "residual_mlp":
        return _residual_gradient(model, theta, X, Y, weights)
    size = theta.size
    mlp = getattr(model, "kind", "") == "mlp"
    layers = _blocks(model, theta)
    L = len(layers)
    hs, zs = [np.asarray(X, dtype=float)], []
    norm_cache = None
    norm_layer = None
    for i, (W, b) in enumerate(layers, start=1):
        if i == 1 and mlp and model.normalised_first_layer:
            s = (W * W).sum(-1)  # (…, n_1)
            r = inv_sqrt(s)
            V = W * r.expand(-1)
            norm_cache = (V, r)
            W = V
        z = W @ hs[-1]
        if b is not None:
            z = z + b.expand(-1)
        if i == 1 and mlp and getattr(model, "normalisation", None) is not None:
            n1 = model.widths[1]
            if model.normalisation == "layer":
                z = z - (z.sum(-2) * (1.0 / n1)).expand(-2)
            r1 = inv_sqrt((z * z).sum(-2) * (1.0 / n1))  # (…, N): 1/rms per data point
            z = z * r1.expand(-2)
            norm_layer = (z, r1)
        zs.append(z)
        if i < L:
            hs.append(_act(model, z, 0) if mlp else z)
    f = zs[-1]
    if mlp and getattr(model, "residual", False):
        f = f + np.asarray(X, dtype=float)
    w = np.asarray(weights, dtype=float)[..., None, :]  # (B, 1, N)
    if mlp and model.loss == "softmax_ce":
        shift = f.value.max(axis=-2, keepdims=True) if isinstance(f, Jet) else f.max(axis=-2, keepdims=True)
        e = exp(f - shift)
        soft = e * reciprocal(e.sum(-2).expand(-2))
        delta = (soft * Y.sum(axis=0, keepdims=True) - Y) * w
    else:
        delta = (f - Y) * w
    grads = [None] * L
    for i in range(L, 0, -1):
        W, b = layers[i - 1]
        h_prev = hs[i - 1]
        gW = delta @ (h_prev.swap() if isinstance(h_prev, Jet) else h_prev.T)
        gb = delta.sum(-1) if b is not None else None
        if i == 1 and norm_cache is not None:
            V, r = norm_cache
            radial = (gW * V).sum(-1).expand(-1)
            gW = (gW - V * radial) * r.expand(-1)
        grads[i - 1] = (gW, gb)
        if i > 1:
            back = (W.swap() if isinstance(W, Jet) else np.swapaxes(W, -1, -2)) @ delta
            delta = back * _act(model, zs[i - 2], 1) if mlp else back
            if i == 2 and norm_layer is not None:  # through ẑ = (z − [mean])/rms: (δ − [mean δ] − ẑ·mean(δ∘ẑ))/rms
                zhat, r1 = norm_layer
                n1 = model.widths[1]
                proj = delta - zhat * ((delta * zhat).sum(-2) * (1.0 / n1)).expand(-2)
                if model.normalisation == "layer":
                    proj = proj - (delta.sum(-2) * (1.0 / n1)).expand(-2)
                delta = proj * r1.expand(-2)
    lead = theta.shape[:-1]
    parts = []
    for gW, gb in grads:
        parts.append(gW.reshape(*lead, -1) if isinstance(gW, Jet) else gW.reshape(lead + (-1,)))
        if gb is not None:
            parts.append(gb)
    return _concat(parts, size)


def _output_delta(model, f, Y, weights):
    """∂(Σ_j w_bj ℓ_j)/∂f for squared or softmax cross-entropy loss."""
    w = np.asarray(weights, dtype=float)[..., None, :]  # (B, 1, N)
    if model.loss == "softmax_ce":
        shift = f.value.max(axis=-2, keepdims=True) if isinstance(f, Jet) else f.max(axis=-2, keepdims=True)
        e = exp(f - shift)
        soft = e * reciprocal(e.sum(-2).expand(-2))
        return (soft * Y.sum(axis=0, keepdims=True) - Y) * w
    return (f - Y) * w


def _residual_gradient(model, theta, X, Y, weights):
    """``weighted_gradient`` of stacked residual blocks (noether_sim.resnet; kernels/residual.py) over jets:
    the stream's gradient ds runs down the skips and gains W1_kᵀ dz_k from each block."""
    size, lead = theta.size, theta.shape[:-1]
    layers = _blocks(model, theta)
    L = len(layers)
    X = np.asarray(X, dtype=float)

    def T(A):
        return A.swap() if isinstance(A, Jet) else np.swapaxes(A, -1, -2)

    def dense(W, h, b):
        z = W @ h
        return z + b.expand(-1) if b is not None else z

    s = dense(*layers[0][:1], X, layers[0][1]) if model.input_projection else X
    streams, zs, hs = [s], [], []
    for k in range(1, model.blocks + 1):
        i1, i2 = model.block_layers(k)
        (W1, b1), (W2, b2) = layers[i1 - 1], layers[i2 - 1]
        z = dense(W1, s, b1)
        h = _act(model, z, 0)
        s = s + dense(W2, h, b2)
        zs.append(z)
        hs.append(h)
        streams.append(s)
    f = dense(layers[-1][0], s, layers[-1][1]) if model.output_projection else s
    delta = _output_delta(model, f, Y, weights)
    grads = [None] * L
    if model.output_projection:
        W, b = layers[-1]
        grads[-1] = (delta @ T(s), delta.sum(-1) if b is not None else None)
        ds = T(W) @ delta
    else:
        ds = delta
    for k in range(model.blocks, 0, -1):
        i1, i2 = model.block_layers(k)
        (W1, b1), (W2, b2) = layers[i1 - 1], layers[i2 - 1]
        grads[i2 - 1] = (ds @ T(hs[k - 1]), ds.sum(-1) if b2 is not None else None)
        dz = (T(W2) @ ds) * _act(model, zs[k - 1], 1)
        grads[i1 - 1] = (dz @ T(streams[k - 1]), dz.sum(-1) if b1 is not None else None)
        ds = ds + T(W1) @ dz
    if model.input_projection:
        grads[0] = (ds @ X.T, ds.sum(-1) if layers[0][1] is not None else None)
    parts = []
    for gW, gb in grads:
        parts.append(gW.reshape(*lead, -1) if isinstance(gW, Jet) else gW.reshape(lead + (-1,)))
        if gb is not None:
            parts.append(gb)
    return _concat(parts, size)


def _attention_weighted_gradient(model, theta: Jet, X, Y, weights):
    """``weighted_gradient`` of ``SelfAttention`` (kernels/attention.py), written over jets: X holds one
    sequence per column (token-major), ℓ = ½ Σ_{t read} |F_t − y_t|²."""
    size = theta.size
    lead = theta.shape[:-1]
    N, T, d = X.shape[1], model.tokens, model.d_model
    Xs = np.asarray(X, dtype=float).T.reshape(N, T, d)
    r = model.readout_token
    rows = np.arange(T) if r < 0 else np.array([r])
    Yfull = np.zeros((N, T, model.d_out))
    Yfull[:, rows] = np.asarray(Y, dtype=float).T.reshape(N, len(rows), model.d_out)
    read = np.zeros((T, 1))
    read[rows] = 1.0
    mask = np.tril(np.ones((T, T))) if model.causal else np.ones((T, T))
    scale = 1.0 / math.sqrt(model.d_k)
    mats = []
    for i, pos in enumerate(model.offsets[0], start=1):
        n_out, n_in = model.weight_shape(i)
        mats.append(theta[..., pos: pos + n_out * n_in].reshape(*lead, n_out, n_in).expand(-3))  # (…, 1, n, m)
    cache, F = [], None
    for h in range(model.heads):
        WQ, WK, WV, WO = mats[4 * h: 4 * h + 4]
        Q, K, V = (Jet(Xs @ W.swap().c) for W in (WQ, WK, WV))  # (…, N, T, ·)
        S = (Q @ K.swap()) * (scale * mask)
        shift = np.where(mask > 0, S.value, -np.inf).max(axis=-1, keepdims=True)
        E = exp(S - shift) * mask
        A = E * reciprocal(E.sum(-1).expand(-1))
        Z = A @ V
        out = Z @ WO.swap()
        F = out if F is None else F + out
        cache.append((WO, Q, K, V, A, Z))
    w = np.asarray(weights, dtype=float)[..., :, None, None]  # (B, N, 1, 1)
    block = []
    if model.m:  # transformer block: U = X + attention, F = U + W_2 relu(W_1U + b_1) (noether_sim.attention)
        W1, W2 = mats[4 * model.heads], mats[4 * model.heads + 1]
        off = model.offsets[1][4 * model.heads]
        b1 = theta[..., off: off + model.m].expand(-2).expand(-3)  # (…, 1, 1, m)
        U = F + Xs
        Zh = U @ W1.swap() + b1
        Hh = apply(Zh, lambda v, m: [np.maximum(v, 0.0)] + [(v > 0).astype(float)] * min(m, 1) + [0.0 * v] * (m - 1))
        step = apply(Zh, lambda v, m: [(v > 0).astype(float)] + [0.0 * v] * m)
        dOut = (U + Hh @ W2.swap() - Yfull) * (read * w)
        dH = (dOut @ W2) * step
        block = [(dH.swap() @ U).sum(-3), dH.sum(-2).sum(-2), (dOut.swap() @ Hh).sum(-3)]
        dF = dOut + dH @ W1
    else:
        dF = (F - Yfull) * (read * w)
    parts = []
    for WO, Q, K, V, A, Z in cache:
        gO = (dF.swap() @ Z).sum(-3)
        dZ = dF @ WO
        dA = dZ @ V.swap()
        dV = A.swap() @ dZ
        dS = A * (dA - (A * dA).sum(-1).expand(-1)) * scale
        dQ, dK = dS @ K, dS.swap() @ Q
        for G in ((dQ.swap() @ Xs).sum(-3), (dK.swap() @ Xs).sum(-3), (dV.swap() @ Xs).sum(-3), gO):
            parts.append(G.reshape(*lead, -1))
    for G in block:
        parts.append(G.reshape(*lead, -1))
    return _concat(parts, size)


def _lora_gradient(model, theta, X, Y, weights):
    """Low-rank adapters: the base's gradient at W₀ + BA, pulled back to ∂A = BᵀG, ∂B = GAᵀ."""
    base = model._base_mlp()
    size, lead = theta.size, theta.shape[:-1]
    factors = [W for W, _ in _blocks(model, theta)]
    adapted = {l: j for j, l in enumerate(model.layers)}
    parts = []
    for i, (W0, b0) in enumerate(base.unflatten(np.asarray(model.base_weights)), start=1):
        if i in adapted:
            A, B = factors[2 * adapted[i]], factors[2 * adapted[i] + 1]
            parts.append(((B @ A) + W0).reshape(*lead, -1))
        else:
            parts.append(np.broadcast_to(W0.ravel(), lead + (W0.size,)))
        if b0 is not None:
            parts.append(np.broadcast_to(b0, lead + b0.shape))
    g = weighted_gradient(base, _concat(parts, size), X, Y, weights)
    w_off = base.offsets[0]
    out = []
    for j, l in enumerate(model.layers):
        n, m = base.weight_shape(l)
        G = g[..., w_off[l - 1]: w_off[l - 1] + n * m].reshape(*g.shape[:-1], n, m)
        A, B = factors[2 * j], factors[2 * j + 1]
        out += [(B.swap() @ G).reshape(*g.shape[:-1], -1), (G @ A.swap()).reshape(*g.shape[:-1], -1)]
    return _concat(out, max(size, g.size))
