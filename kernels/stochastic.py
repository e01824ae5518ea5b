"""Per-step randomness of the stochastic dynamics: minibatches and Langevin noise, drawn inside the
kernels from the counter-based generator (counter_rng.py).

Every draw is a pure function of (root seed, stream, seed id, step, index), so a seed's trajectory is
bit-identical however seeds are batched or threaded, and ``noether_sim.stochastic.minibatch_indices``
replays a seed's batches from Python with these same functions.

Minibatches (stream MINIBATCH_STREAM), B of the N data points per step:
    uniform   B distinct points, uniformly without replacement: the first B swaps of a Fisher–Yates
              shuffle of 0 … N−1 (uniform k of the step: counter step·B + k), undone after the step so
              the scratch permutation is the identity again (O(B) per step, no state carried over).
    epoch     the next B of a per-epoch shuffle: epoch e = step // (N // B) is a full Fisher–Yates
              shuffle (counters e·N + k), batch m = step mod (N // B) its points m·B … m·B + B − 1
              (the N mod B points left over are not used in that epoch). A seed keeps the shuffle of
              the epoch it is in, so an epoch costs O(N) once.
Deep linear models read a batch through its second moments (cost O(B·n₀²)); MLPs through its points.

Langevin noise (stream NOISE_STREAM): normal n of a seed's stream is a pure function of (key, n), drawn
by Marsaglia & Tsang's ziggurat (128 layers, Doornik's ZIGNOR layout, with independent bits for the layer
and the uniform) from the 64-bit hashes at counters n·2¹⁶, n·2¹⁶ + 1, … (one hash for ≈ 98.8% of normals;
a rejection or the tail takes the next counters, so every normal has its own counter range and no
normal's draw shifts another's). Draw d of P normals (one Euler–Maruyama step, or one Ornstein–Uhlenbeck
sub-step of underdamped Langevin) is normals d·P … d·P + P − 1. A coarse step of a coupled ladder whose
finest step is h/r uses ξ = (ξ_{rk} + … + ξ_{rk+r−1})/√r: the sum of the fine rung's increments; an exact
Ornstein–Uhlenbeck sub-step of underdamped Langevin weights them by their decay instead (``ou_noise``). (The
ziggurat replaced Box–Muller: ≈ 4.5 ns per normal, its common case vectorised, instead of ≈ 45 ns;
bench/README.md.)
"""

import math

import numpy as np
from numba import int64, njit, uint64

from .counter_rng import _GOLDEN, _key, _mix, _uniform

MINIBATCH_STREAM, NOISE_STREAM = 4, 5  # (noether_sim.random uses 0 to 3)
SAMPLING_UNIFORM, SAMPLING_EPOCH = 0, 1


@njit(cache=True)
def stream_key(root, stream, seed_id):
    return _key(root, stream, seed_id)


@njit(cache=True)
def _below(key, j, n):
    """An integer uniform in 0 … n − 1 from counter j."""
    return min(int(_uniform(key, j) * n), n - 1)


@njit(cache=True)
def batch_indices(key, sampling, step, B, perm, swaps, held, idx):
    """idx[:B] = the data points of ``step``. ``perm`` (N entries) is the identity before a uniform draw
    and after it; under epoch sampling it holds the shuffle of epoch ``held[0]`` (−1: none yet)."""
    N = perm.shape[0]
    if sampling == SAMPLING_UNIFORM:
        base = step * B
        for i in range(B):
            j = i + _below(key, base + i, N - i)
            swaps[i] = j
            pi = perm[i]
            perm[i] = perm[j]
            perm[j] = pi
            idx[i] = perm[i]
        for i in range(B - 1, -1, -1):  # undo: perm is the identity again
            j = swaps[i]
            pi = perm[i]
            perm[i] = perm[j]
            perm[j] = pi
        return
    per_epoch = N // B
    epoch = step // per_epoch
    if held[0] != epoch:
        for i in range(N):
            perm[i] = i
        base = epoch * N
        for i in range(N - 1):
            j = i + _below(key, base + i, N - i)
            pi = perm[i]
            perm[i] = perm[j]
            perm[j] = pi
        held[0] = epoch
    first = (step - epoch * per_epoch) * B
    for i in range(B):
        idx[i] = perm[first + i]


@njit(cache=True)
def seed_batch_indices(root, seed_id, sampling, step, B, N):
    """The points of ``step`` for seed ``seed_id``, as the driver draws them (for replays from Python;
    the key stays a uint64 inside compiled code)."""
    perm = np.arange(N)
    idx = np.empty(B, np.int64)
    batch_indices(stream_key(root, MINIBATCH_STREAM, seed_id), sampling, step, B, perm, np.empty(B, np.int64),
                  np.full(1, -1, np.int64), idx)
    return idx


@njit(cache=True)
def linear_batch_moments(px, py, idx, B, sxx, syx, floats):
    """Σxx, Σyx and tr(YYᵀ)/N (into floats[0]) of the batch ``idx[:B]``; ``px`` (N × n_a) and ``py``
    (N × n_L) hold the points as rows (augmented inputs with biases)."""
    na = px.shape[1]
    nL = py.shape[1]
    sxx[:, :] = 0.0
    syx[:, :] = 0.0
    syy = 0.0
    for b in range(B):
        x = px[idx[b]]
        y = py[idx[b]]
        for r in range(na):
            xr = x[r]
            for c in range(na):
                sxx[r, c] += xr * x[c]
        for r in range(nL):
            yr = y[r]
            syy += yr * yr
            for c in range(na):
                syx[r, c] += yr * x[c]
    inv = 1.0 / B
    for r in range(na):
        for c in range(na):
            sxx[r, c] *= inv
    for r in range(nL):
        for c in range(na):
            syx[r, c] *= inv
    floats[0] = syy * inv


@njit(cache=True)
def gather_batch(px, py, idx, B, X, Y):
    """The batch's points as columns: X (n₀ × B), Y (n_L × B), for models that read raw data."""
    for b in range(B):
        x = px[idx[b]]
        y = py[idx[b]]
        for r in range(x.shape[0]):
            X[r, b] = x[r]
        for r in range(y.shape[0]):
            Y[r, b] = y[r]


def _ziggurat_tables(layers=128, r=3.442619855899, v=9.91256303526217e-3):
    """x_0 = v/f(r) (the base layer's width, tail included), x_1 = r, … , x_layers = 0 with every layer of
    area v under f(x) = exp(−x²/2) (Doornik 2005, "An improved ziggurat method"), and x_{i+1}/x_i."""
    x = np.empty(layers + 1)
    f = math.exp(-0.5 * r * r)
    x[0] = v / f
    x[1] = r
    x[layers] = 0.0
    for i in range(2, layers):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1]


_ZIG_X, _ZIG_RATIO = _ziggurat_tables()
_ZIG_R = float(_ZIG_X[1])
_INV_2_53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def _hash(key, c):
    return _mix(key + uint64(c) * _GOLDEN)


@njit(cache=True, inline="always")
def _open_unit(z):
    """A float64 in (0, 1) from the top 53 bits of z (as counter_rng._uniform)."""
    return (float(int64(z >> uint64(11))) + 0.5) * _INV_2_53


@njit(cache=True)
def normal(key, n):
    """Standard normal number n of the stream ``key``: ziggurat on the hashes at counters n·2¹⁶ + c.

    One hash gives the layer (its low 7 bits) and a uniform u ∈ (−1, 1) (its top 53 bits): inside the
    layer's rectangle core, |u| < x_{i+1}/x_i, the result is u·x_i; otherwise the wedge test (one more
    uniform) or, in the base layer, Marsaglia's tail beyond r (two uniforms per try) decide."""
    c = n << 16
    while True:
        z = _hash(key, c)
        c += 1
        u = 2.0 * _open_unit(z) - 1.0
        i = int64(z & uint64(0x7F))
        if abs(u) < _ZIG_RATIO[i]:
            return u * _ZIG_X[i]
        if i == 0:
            while True:
                x = math.log(_open_unit(_hash(key, c))) / _ZIG_R
                y = math.log(_open_unit(_hash(key, c + 1)))
                c += 2
                if -2.0 * y >= x * x:
                    return x - _ZIG_R if u < 0.0 else _ZIG_R - x
        x = u * _ZIG_X[i]
        f0 = math.exp(-0.5 * (_ZIG_X[i] * _ZIG_X[i] - x * x))
        f1 = math.exp(-0.5 * (_ZIG_X[i + 1] * _ZIG_X[i + 1] - x * x))
        if f1 + _open_unit(_hash(key, c)) * (f0 - f1) < 1.0:
            return x
        c += 1


@njit(cache=True)
def normals_into(key, first, out):
    """out[j] = normal(key, first + j): for tests and replays from Python (pass the key as a uint64)."""
    for j in range(out.shape[0]):
        out[j] = normal(key, first + j)


@njit(cache=True)
def _fill_normals(key, first, out):
    """out[j] = normal(key, first + j), bit for bit: a branch-free first pass takes every normal that the
    ziggurat's first hash accepts (≈ 98.8%; the loop vectorises: ≈ 4.5 ns per normal against ≈ 10 ns
    one by one, bench/README.md) and marks the others NaN; the second pass draws those in full."""
    P = out.shape[0]
    nan = np.nan
    for j in range(P):
        z = _hash(key, (first + j) << 16)
        u = 2.0 * _open_unit(z) - 1.0
        i = int64(z & uint64(0x7F))
        out[j] = u * _ZIG_X[i] if abs(u) < _ZIG_RATIO[i] else nan
    for j in range(P):
        if out[j] != out[j]:
            out[j] = normal(key, first + j)


@njit(cache=True)
def gaussian_noise(key, draw, substeps, scale, out):
    """out = scale · ξ, ξ ~ N(0, I) of draw ``draw`` (the normalised sum of ``substeps`` fine draws:
    draws draw·substeps … draw·substeps + substeps − 1 of P normals each)."""
    P = out.shape[0]
    first = draw * substeps * P
    _fill_normals(key, first, out)
    if substeps > 1:
        more = np.empty(P)
        for sub in range(1, substeps):
            _fill_normals(key, first + sub * P, more)
            for j in range(P):
                out[j] += more[j]
    f = scale / math.sqrt(substeps)
    for j in range(P):
        out[j] *= f


@njit(cache=True)
def ou_noise(key, draw, substeps, decay, scale, out):
    """out = scale · ξ for an exact Ornstein–Uhlenbeck sub-step p ← e^{−s/τ}p + σ_s ξ of a coupled ladder's
    rung whose finest rung takes ``substeps`` = r sub-steps of length a = s/r over the same interval
    (``decay`` = e^{−a/τ}); r = 1 is ``gaussian_noise`` with one draw, bit for bit.

    Derivation. r fine OU steps p ← e^{−a/τ}p + σ_a ξ_i (σ_a² = (T/τ)(1 − e^{−2a/τ})) compose to
    p_r = e^{−ra/τ}p_0 + σ_a Σ_i w_i ξ_i with w_i = e^{−(r−1−i)a/τ} (the later draws are damped less), a
    normal of variance σ_a²‖w‖² = σ_a²(1 − e^{−2ra/τ})/(1 − e^{−2a/τ}) = σ_{ra}²: exactly the coarse step's.
    So ξ = Σ_i w_i ξ_i / ‖w‖ is N(0, 1) (normalised by the computed ‖w‖, so its variance is exactly 1
    whatever the rounding of the weights) and σ_s ξ is the fine rung's noise over the interval; an
    unweighted sum (overdamped Langevin's) would give the late draws too little weight. The fine draws
    are draws draw·r … draw·r + r − 1, as in ``gaussian_noise``. Horner: acc ← decay·acc + ξ_i."""
    if substeps == 1:
        gaussian_noise(key, draw, 1, scale, out)
        return
    P = out.shape[0]
    first = draw * substeps * P
    _fill_normals(key, first, out)
    more = np.empty(P)
    norm2 = 1.0
    for sub in range(1, substeps):
        _fill_normals(key, first + sub * P, more)
        for j in range(P):
            out[j] = decay * out[j] + more[j]
        norm2 = decay * decay * norm2 + 1.0
    f = scale / math.sqrt(norm2)
    for j in range(P):
        out[j] *= f


@njit(cache=True)
def new_batch_arrays(px, py, B, raw, data_a, data_b, floats):
    """One seed's scratch: (perm, swaps, held, idx, batch data a, batch data b, batch floats).
    Deep linear: a, b are Σxx, Σyx of the batch (the shapes of data_a, data_b); raw data (MLP): the
    batch's points as columns."""
    N = px.shape[0]
    perm = np.arange(N)
    swaps = np.empty(max(B, 1), np.int64)
    held = np.full(1, -1, np.int64)
    idx = np.empty(max(B, 1), np.int64)
    if raw:
        a = np.empty((data_a.shape[0], max(B, 1)))
        b = np.empty((data_b.shape[0], max(B, 1)))
    else:
        a = np.empty(data_a.shape)
        b = np.empty(data_b.shape)
    return perm, swaps, held, idx, a, b, floats.copy()
