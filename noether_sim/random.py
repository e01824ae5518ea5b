"""All randomness is drawn here, in NumPy, never in kernels.

Seed i of a run started from ``root`` draws from SeedSequence(root, spawn_key=(0, i)), so its
initialisation depends only on (root, i): the same whether it runs alone or among 100,000 seeds.
Data sets draw from SeedSequence(root, spawn_key=(1,)).
"""

import numpy as np

_INIT, _DATA = 0, 1


def seed_rng(root: int, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=(_INIT, i)))


def data_rng(root: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=(_DATA,)))
