"""Counter-based random numbers: value j of seed i is a pure function of (root, stream, i, j).

So seed i's numbers are the same whether it is drawn alone or among 10^6 seeds, on any number of
threads, and rows can be drawn in parallel without any generator state. The mixing function is
SplitMix64's finaliser (Steele, Lea & Flood 2014), which passes BigCrush as a counter-based generator;
normals come from pairs of uniforms by the Box–Muller transform. This is the one place outside the API
layer that makes random numbers: the API calls it with the root seed and seed ids, and it is
deterministic arithmetic like every other kernel.
"""

import numpy as np
from numba import njit, uint64

_GOLDEN = uint64(0x9E3779B97F4A7C15)
_M1 = uint64(0xBF58476D1CE4E5B9)
_M2 = uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi


@njit(cache=True)
def _mix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(cache=True)
def _key(root, stream, seed_id):
    return _mix(_mix(_mix(uint64(root)) ^ uint64(stream)) ^ uint64(seed_id))


@njit(cache=True)
def _uniform(key, j):
    """A float64 in (0, 1): the top 53 bits of mix(key + j·golden), offset by half an ulp from 0."""
    return (float(_mix(key + uint64(j) * _GOLDEN) >> uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def normal_rows(root, stream, seed_ids, out):
    """out[r, j] ~ N(0, 1), a function of (root, stream, seed_ids[r], j) only."""
    n = out.shape[1]
    for r in range(seed_ids.shape[0]):
        key = _key(root, stream, seed_ids[r])
        for j in range(0, n, 2):
            radius = np.sqrt(-2.0 * np.log(_uniform(key, j)))
            angle = _TWO_PI * _uniform(key, j + 1)
            out[r, j] = radius * np.cos(angle)
            if j + 1 < n:
                out[r, j + 1] = radius * np.sin(angle)


@njit(cache=True, nogil=True)
def uniform_rows(root, stream, seed_ids, out):
    """out[r, j] ~ U(0, 1), a function of (root, stream, seed_ids[r], j) only."""
    for r in range(seed_ids.shape[0]):
        key = _key(root, stream, seed_ids[r])
        for j in range(out.shape[1]):
            out[r, j] = _uniform(key, j)
