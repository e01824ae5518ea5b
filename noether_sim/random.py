"""All randomness of a run is keyed by (root seed, stream, seed id), never by position in a batch.

Seed i of a run started from ``root`` draws its initial weights from stream 0 and its initial
velocity from stream 2 of a counter-based generator (kernels/counter_rng.py): value j of seed i is a
pure function of (root, stream, i, j), so a seed's start is bit-identical whether it runs alone or among
10^6 seeds, and drawing is vectorised (10^5 seeds in a fraction of a second). Data sets draw from
``SeedSequence(root, spawn_key=(1,))`` with NumPy's generator.
"""

import numpy as np

from .kernels.counter_rng import normal_rows as _normal_rows
from .kernels.counter_rng import uniform_rows as _uniform_rows

INIT_STREAM, DATA_STREAM, VELOCITY_STREAM, INIT_UNIFORM_STREAM = 0, 1, 2, 3
_ROWS_PER_TASK = 4096  # seeds per kernel call: bounded temporaries, work for both threads


def _rows(kernel, root, stream, seed_ids, n):
    from .ensemble import over_seed_ranges

    ids = np.ascontiguousarray(seed_ids, dtype=np.int64)
    out = np.empty((len(ids), n))
    over_seed_ranges(len(ids), lambda lo, hi: kernel(int(root), int(stream), ids[lo:hi], out[lo:hi]),
                     min_per_range=_ROWS_PER_TASK)
    return out


def normal_rows(root: int, stream: int, seed_ids, n: int) -> np.ndarray:
    """(len(seed_ids), n) standard normals; row r depends only on (root, stream, seed_ids[r])."""
    return _rows(_normal_rows, root, stream, seed_ids, n)


def uniform_rows(root: int, stream: int, seed_ids, n: int) -> np.ndarray:
    """(len(seed_ids), n) uniforms in (0, 1); row r depends only on (root, stream, seed_ids[r])."""
    return _rows(_uniform_rows, root, stream, seed_ids, n)


def data_rng(root: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=(DATA_STREAM,)))
