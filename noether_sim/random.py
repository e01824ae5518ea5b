"""All randomness of a run is keyed by (root seed, stream, seed id), never by position in a batch.

Seed i of a run started from ``root`` draws its initial weights from stream 0 and its initial
velocity from stream 2 of a counter-based generator (kernels/counter_rng.py): value j of seed i is a
pure function of (root, stream, i, j), so a seed's start is bit-identical whether it runs alone or among
10^6 seeds, and drawing is vectorised (bench/init_speed.py). Data sets draw from
``SeedSequence(root, spawn_key=(1,))`` with NumPy's generator.
"""

import numpy as np

from ._threads import over_seed_ranges
from .kernels.counter_rng import uniform_rows as _uniform_rows

INIT_STREAM, DATA_STREAM, VELOCITY_STREAM, INIT_UNIFORM_STREAM = 0, 1, 2, 3
_ROWS_PER_TASK = 2048  # seeds per chunk: temporaries stay in cache, and both threads get work


def _chunks(n_rows, fill):
    """Call ``fill(lo, hi)`` over chunks of rows on the thread pool (the kernels and NumPy's ufuncs
    release the GIL)."""
    edges = np.arange(0, n_rows + _ROWS_PER_TASK, _ROWS_PER_TASK).clip(max=n_rows)
    over_seed_ranges(len(edges) - 1, lambda a, b: [fill(edges[i], edges[i + 1]) for i in range(a, b)])


def uniform_rows(root: int, stream: int, seed_ids, n: int) -> np.ndarray:
    """(len(seed_ids), n) uniforms in (0, 1); row r depends only on (root, stream, seed_ids[r])."""
    ids = np.ascontiguousarray(seed_ids, dtype=np.int64)
    out = np.empty((len(ids), n))
    _chunks(len(ids), lambda lo, hi: _uniform_rows(int(root), int(stream), 0, ids[lo:hi], out[lo:hi]))
    return out


def normal_rows(root: int, stream: int, seed_ids, n: int) -> np.ndarray:
    """(len(seed_ids), n) standard normals; row r depends only on (root, stream, seed_ids[r]).

    Box–Muller on uniform pairs (u_j, u_{m+j}), m = ⌈n/2⌉: z_j = ρ cos φ, z_{m+j} = ρ sin φ with
    ρ = √(−2 ln u_j), φ = 2π u_{m+j}. The uniforms come from the kernel; the transcendental functions
    from NumPy's vectorised ufuncs, always on C-contiguous blocks, so every element takes the same path.
    """
    ids = np.ascontiguousarray(seed_ids, dtype=np.int64)
    m = (n + 1) // 2
    out = np.empty((len(ids), 2 * m))

    def fill(lo, hi):
        rho = np.empty((hi - lo, m))
        phi = np.empty((hi - lo, m))
        _uniform_rows(int(root), int(stream), 0, ids[lo:hi], rho)
        _uniform_rows(int(root), int(stream), m, ids[lo:hi], phi)
        np.log(rho, out=rho)
        rho *= -2.0
        np.sqrt(rho, out=rho)
        phi *= 2.0 * np.pi
        np.cos(phi, out=out[lo:hi, :m])
        np.sin(phi, out=out[lo:hi, m:])
        out[lo:hi, :m] *= rho
        out[lo:hi, m:] *= rho

    _chunks(len(ids), fill)
    return out[:, :n] if n != 2 * m else out


def data_rng(root: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=(DATA_STREAM,)))
