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

Langevin noise (stream NOISE_STREAM): ξ_j of step k from the uniforms at counters k·P₂ + j, k·P₂ + j + 1
(P₂ = P rounded up to even) by Box–Muller, pairwise. A coarse step of a coupled ladder whose finest
step is h/r uses ξ = (ξ_{rk} + … + ξ_{rk+r−1})/√r: the sum of the fine rung's increments.
"""

import math

import numpy as np
from numba import njit

from .counter_rng import _key, _uniform

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


@njit(cache=True)
def gaussian_noise(key, step, substeps, scale, out):
    """out = scale · ξ, ξ ~ N(0, I) of ``step`` (the normalised sum of ``substeps`` fine steps' draws)."""
    P = out.shape[0]
    P2 = P + (P & 1)
    out[:] = 0.0
    for sub in range(substeps):
        base = (step * substeps + sub) * P2
        for j in range(0, P, 2):
            u1 = _uniform(key, base + j)
            u2 = _uniform(key, base + j + 1)
            rho = math.sqrt(-2.0 * math.log(u1))
            phi = 2.0 * math.pi * u2
            out[j] += rho * math.cos(phi)
            if j + 1 < P:
                out[j + 1] += rho * math.sin(phi)
    f = scale / math.sqrt(substeps)
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
