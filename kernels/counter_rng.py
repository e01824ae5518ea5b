"""Counter-based random numbers: value j of seed i is a pure function of (root, stream, i, j).

So seed i's numbers are the same whether it is drawn alone or among 10^6 seeds, on any number of
threads, and rows can be drawn in parallel without any generator state. The mixing function is
SplitMix64's finaliser (Steele, Lea & Flood 2014), which passes BigCrush as a counter-based generator;
noether_sim.random turns pairs of uniforms into normals (Box–Muller). The API calls it with the root seed
and seed ids: deterministic arithmetic like every other kernel.
"""

from numba import int64, njit, uint64

_GOLDEN = uint64(0x9E3779B97F4A7C15)
_M1 = uint64(0xBF58476D1CE4E5B9)
_M2 = uint64(0x94D049BB133111EB)


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
    """A float64 in (0, 1): the top 53 bits of mix(key + j·golden), offset by half an ulp from 0.
    (Converted through int64, which every vector unit converts to float64.)"""
    return (float(int64(_mix(key + uint64(j) * _GOLDEN) >> uint64(11))) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def uniform_rows(root, stream, first, seed_ids, out):
    """out[r, j] = value first + j of seed seed_ids[r] in (0, 1), a function of (root, stream, seed id, j)."""
    for r in range(seed_ids.shape[0]):
        key = _key(root, stream, seed_ids[r])
        row = out[r]
        for j in range(row.shape[0]):
            row[j] = _uniform(key, first + j)
