"""Plumbing every run shares: the save grid, seed ids, initial weights, threads over seed ranges,
progress bars, provenance and the memory a run will need."""

from __future__ import annotations

import functools
import numbers
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from . import _validate as v
from .init import Given

EPS = np.finfo(np.float64).eps
GiB = 2.0 ** 30


def save_grid(t_end, save_every, save_times, fixed_step):
    """Save times, t = 0 first. Default: about 100 records; for fixed steps every whole number of steps."""
    if save_times is not None:
        if save_every is not None:
            v.fail("save_every", save_every, "give either save_every or save_times, not both")
        times = v.finite_array("save_times", np.atleast_1d(save_times), 1)
        if np.any(times <= 0) or np.any(times > t_end * (1 + 1e-12)):
            bad = times[(times <= 0) | (times > t_end * (1 + 1e-12))][0]
            v.fail("save_times", float(bad), f"every save time must lie in (0, t_end = {t_end}]")
        if np.any(np.diff(times) <= 0):
            v.fail("save_times", list(times), "must be strictly increasing")
        return np.concatenate([[0.0], times])
    if save_every is None:
        save_every = t_end / 100 if fixed_step is None else fixed_step * max(1, round(t_end / fixed_step) // 100)
    save_every = v.positive("save_every", save_every)
    if save_every > t_end * (1 + 1e-12):
        v.fail("save_every", save_every, f"must be <= t_end = {t_end}")
    n = int(np.floor(t_end / save_every * (1 + 1e-12)))
    times = save_every * np.arange(n + 1)
    if t_end - times[-1] > 1e-12 * t_end:
        times = np.append(times, t_end)
    times[-1] = min(times[-1], t_end)
    return times


def check_whole_steps(times, h, save_every, save_times):
    """A fixed step must land on every save time: each interval a whole number >= 1 of steps."""
    steps = np.diff(times) / h
    if np.any(np.abs(steps - np.round(steps)) > 1e-9 * np.maximum(steps, 1)) or np.any(np.round(steps) < 1):
        name, value = ("save_times", list(times[1:])) if save_times is not None else ("save_every", save_every)
        v.fail(name, value, f"with the fixed step h = {h} and t_end = {times[-1]:g}, every interval between save "
                            f"times must be a whole number >= 1 of steps")


def seed_ids(seeds) -> np.ndarray:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return np.arange(v.positive_int("seeds", seeds), dtype=np.int64)
    ids = np.asarray(seeds)
    if ids.ndim != 1 or len(ids) == 0 or ids.dtype.kind not in "iu" or np.any(ids < 0) or len(np.unique(ids)) != len(ids):
        v.fail("seeds", seeds, "must be a number of seeds >= 1 or a non-empty list of distinct seed ids >= 0")
    return ids.astype(np.int64)


def initial_weights(model, init, ids, root_seed) -> np.ndarray:
    """One row per seed; seed i's row depends only on (root_seed, i) (see random.py)."""
    if isinstance(init, Given):
        return init.rows(model, len(ids))
    return init.rows(model, root_seed, ids)


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


def kernels_running() -> bool:
    """True while a kernel call of ``over_seed_ranges`` still runs (e.g. after Ctrl-C interrupted its caller)."""
    return any(not f.done() for f in list(_IN_FLIGHT))


@functools.lru_cache(maxsize=None)
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process (a run calls the kernels once per chunk)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="noether_sim")


def progress_bar(progress, total, label):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="t", leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}{postfix}]")


def provenance() -> dict:
    import numba

    from . import __version__

    return {"noether_sim_version": __version__, "numba_version": numba.__version__, "numpy_version": np.__version__,
            "xarray_version": xr.__version__}


def available_memory() -> float | None:
    """Bytes of memory available to a new allocation now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: dict, memory_limit, what: str = "simulate()"):
    """Refuse, before any work, a run whose arrays ({part: bytes}) exceed ``memory_limit`` (bytes;
    None: the machine's available memory)."""
    if memory_limit is None:
        limit, source = available_memory(), "the memory available now"
        if limit is None:
            return
    else:
        limit, source = v.positive("memory_limit", memory_limit), "memory_limit"
    total = sum(needed.values())
    if total > limit:
        parts = ", ".join(f"{k} {b / GiB:.3g} GiB" for k, b in needed.items())
        raise v.ConfigError(
            f"{what} would allocate about {total / GiB:.3g} GiB ({parts}), more than {source} "
            f"({limit / GiB:.3g} GiB). Run fewer seeds per call (several calls with seeds=[ids] give the same "
            f"per-seed results), record fewer save times (save_every), watch fewer seeds, or run it as a sweep "
            f"of smaller blocks; or raise memory_limit (bytes) if you know better.")
