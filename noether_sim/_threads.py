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
    bit-identical for any thread count. The calls run on the pool's threads even with one thread, so
    that the caller waits in Python and Ctrl-C reaches it at once: ranges not yet started are then
    cancelled (a compiled call already running cannot be stopped; ``kernels_running`` says so).
    """
    import numba

    threads = numba.get_num_threads()
    n_ranges = max(1, min(n_seeds // max(min_per_range, 1), 4 * threads))
    edges = np.linspace(0, n_seeds, n_ranges + 1).astype(int)
    pool = _thread_pool(threads)
    futures = [pool.submit(run_range, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    for f in futures:
        _IN_FLIGHT.add(f)
        f.add_done_callback(_IN_FLIGHT.discard)
    try:
        for f in futures:
            f.result()
    except BaseException:
        for f in futures:
            f.cancel()
        raise


_IN_FLIGHT = set()  # kernel calls submitted and not finished


def off_main_thread(call, *args):
    """``call(*args)`` on the pool, the calling thread waiting in Python.

    Python runs signal handlers in the main thread only, between bytecodes: a Ctrl-C that arrives while
    the main thread is inside a compiled call can surface inside numba's dispatcher and come out as
    ``SystemError: ... returned a result with an exception set`` instead of ``KeyboardInterrupt``. Made
    from a pool thread, the call is never interrupted, and the KeyboardInterrupt reaches the waiting
    caller cleanly (the call finishes in the background; ``kernels_running`` says so).
    """
    import numba

    f = _thread_pool(numba.get_num_threads()).submit(call, *args)
    _IN_FLIGHT.add(f)
    f.add_done_callback(_IN_FLIGHT.discard)
    return f.result()


def kernels_running() -> bool:
    """True while a kernel call of ``over_seed_ranges`` still runs (e.g. after Ctrl-C interrupted its caller)."""
    return any(not f.done() for f in list(_IN_FLIGHT))


@functools.lru_cache(maxsize=None)
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process (a run calls the kernels once per chunk)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="noether_sim")
