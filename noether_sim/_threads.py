"""Seed ranges on a thread pool: the one place the package runs kernels (and NumPy ufuncs) on threads.

Lowest floor of the Python layer (NumPy and numba only), so random.py and ensemble.py can both use it.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def over_seed_ranges(n_seeds, run_range, min_per_range: int = 1):
    """Run ``run_range(lo, hi)`` over disjoint seed ranges on ``numba.get_num_threads()`` threads.

    The kernels release the GIL; ranges are a few per thread so uneven seeds (adaptive steps,
    divergence) balance out. A seed's arithmetic does not depend on its range: results are
    bit-identical for any thread count.
    """
    import numba

    threads = numba.get_num_threads()
    n_ranges = min(n_seeds // max(min_per_range, 1), 4 * threads)
    if threads == 1 or n_ranges <= 1:
        run_range(0, n_seeds)
        return
    edges = np.linspace(0, n_seeds, n_ranges + 1).astype(int)
    pool = _thread_pool(threads)
    for future in [pool.submit(run_range, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]:
        future.result()


@functools.lru_cache(maxsize=None)
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process (a run calls the kernels once per chunk)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="noether_sim")
