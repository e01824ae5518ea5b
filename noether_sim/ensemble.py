"""Plumbing every run shares: the save grid, seed ids, initial weights (threads over seed ranges: _threads.py),
progress bars, provenance and the memory a run will need."""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import sys
import threading
import time

import numpy as np
import xarray as xr

from . import _validate as v
from ._threads import kernels_running, over_seed_ranges  # noqa: F401 (simulate.py and the CLI use them)
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


class SeedRange:
    """The seed ids 0 … n − 1 without storing them: a statistics run (``keep="stats"``) of ``seeds=n`` lists
    its ids chunk by chunk, so that nothing it holds grows with the number of seeds.

    Slicing gives the ids as an int64 array (``ids[lo:hi]``), an index one id; ``np.asarray(ids)`` lists them all.

    Parameters
    ----------
    n : int
        Number of seeds (>= 1).

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.ensemble import SeedRange
    >>> ids = SeedRange(10 ** 7)
    >>> len(ids), ids[0], ids[-1], ids[4:7].tolist()
    (10000000, 0, 9999999, [4, 5, 6])
    >>> ids.contains(np.array([3, 10 ** 7])).tolist()
    [True, False]
    """

    __slots__ = ("n",)
    dtype = np.dtype(np.int64)
    ndim = 1

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self):
        return self.n

    @property
    def shape(self):
        return (self.n,)

    def __getitem__(self, k):
        r = range(self.n)[k]
        return np.arange(r.start, r.stop, r.step, dtype=np.int64) if isinstance(r, range) else int(r)

    def __array__(self, dtype=None, copy=None):
        return np.arange(self.n, dtype=dtype or np.int64)

    def contains(self, ids) -> np.ndarray:
        """Which of ``ids`` are seeds of the range (as ``np.isin(ids, self)``, without listing them)."""
        ids = np.asarray(ids)
        return (ids >= 0) & (ids < self.n)

    def __repr__(self):
        return f"SeedRange({self.n})"


def seed_ids(seeds, lazy: bool = False):
    """The seed ids of ``seeds`` (a count n: 0 … n − 1; or a list of distinct ids >= 0) as int64; with
    ``lazy`` a count gives a ``SeedRange`` (nothing stored)."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        n = v.positive_int("seeds", seeds)
        return SeedRange(n) if lazy else np.arange(n, dtype=np.int64)
    ids = np.asarray(seeds)
    if ids.ndim != 1 or len(ids) == 0 or ids.dtype.kind not in "iu" or np.any(ids < 0) or len(np.unique(ids)) != len(ids):
        v.fail("seeds", seeds, "must be a number of seeds >= 1 or a non-empty list of distinct seed ids >= 0")
    return ids.astype(np.int64)


def initial_weights(model, init, ids, root_seed) -> np.ndarray:
    """One row per seed; seed i's row depends only on (root_seed, i) (see random.py)."""
    if isinstance(init, Given):
        return init.rows(model, len(ids))
    return init.rows(model, root_seed, ids)


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test capture, redirection)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


log = logging.getLogger("noether_sim")
"""The package's messages (compiles, progress without a terminal): INFO lines on stderr through its own
handler, and passed on to the root logger as usual. Silence them with
``logging.getLogger("noether_sim").setLevel(logging.WARNING)``; if your root logger already prints them,
drop the package's own copy with ``logging.getLogger("noether_sim").handlers.clear()``."""
if not log.handlers:
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("noether_sim: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)

LOG_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """A progress bar's interface (``update``, ``set_postfix``, ``set_postfix_str``, ``close``, ``n``) that
    writes one log line at most every ``LOG_EVERY`` seconds instead of redrawing: for logs and pipes,
    where a bar's carriage returns pile up. A run shorter than that writes nothing, unless ``final_line``
    (a study: one closing line however short)."""

    def __init__(self, total, desc, fmt=None, final_line=False):
        self.n, self.total, self.desc = 0, total, desc
        self.fmt = fmt or (lambda n, total: f"{n / total:.0%}" if total else f"{n:g}")
        self.final_line = final_line
        self.postfix = ""
        self.started = self.last = time.perf_counter()
        self.lines = 0

    def _maybe_log(self, final=False):
        now = time.perf_counter()
        if (now - self.last >= LOG_EVERY) or (final and (self.lines or self.final_line)):
            self.last = now
            self.lines += 1
            extra = f", {self.postfix}" if self.postfix else ""
            log.info(f"{self.desc}: {self.fmt(self.n, self.total)} after {now - self.started:.0f} s{extra}"
                     + (" (done)" if final else ""))

    def update(self, n=1):
        self.n += n
        self._maybe_log()

    def set_postfix(self, refresh=False, **kw):
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def set_postfix_str(self, s="", refresh=False):
        self.postfix = s

    def close(self):
        self._maybe_log(final=True)


def make_progress(total, desc, bar_format, unit="", leave=True, fmt=None, final_line=True):
    """A tqdm bar where it can redraw (a terminal, a notebook), else a ``LogProgress``."""
    from tqdm.auto import tqdm

    if _terminal() or any("notebook" in c.__module__ for c in tqdm.__mro__):  # tqdm.auto picked a widget
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, bar_format=bar_format)
    return LogProgress(total, desc, fmt, final_line)


def progress_bar(progress, total, label):
    if not progress:
        return None
    return make_progress(total, label, "{desc}: {percentage:3.0f}%|{bar}| t={n:.4g}/{total:.4g} "
                                       "[{elapsed}<{remaining}{postfix}]", unit="t", leave=False,
                         fmt=lambda n, total: f"t = {n:.4g} of {total:.4g}", final_line=False)


_compiling = threading.local()


@contextlib.contextmanager
def compile_notice(what: str):
    """Say so when numba compiles kernels inside this block (first use of a model, dynamics and method:
    10–60 s), then the time it took; nothing when every kernel comes from the on-disk cache. Uses numba's
    "numba:compile" event, which fires only for real compiles (not cache loads)."""
    from numba.core import event

    state = {"depth": 0, "seconds": 0.0, "start": 0.0, "said": False}

    # numba compiles under one global lock, so events never interleave; a compile started by the kernel
    # threads of this run (over_seed_ranges) is this block's as much as one in the calling thread
    class Listener(event.Listener):
        def on_start(self, ev):
            if state["depth"] == 0:
                state["start"] = time.perf_counter()
                if not state["said"]:
                    state["said"] = True
                    log.info(f"compiling kernels for {what}, first use only…")
            state["depth"] += 1

        def on_end(self, ev):
            state["depth"] -= 1
            if state["depth"] == 0:
                state["seconds"] += time.perf_counter() - state["start"]

    if getattr(_compiling, "active", False):  # nested: the outer block reports
        yield
        return
    _compiling.active = True
    listener = Listener()
    try:
        with event.install_listener("numba:compile", listener):
            yield
    finally:
        _compiling.active = False
        if state["said"]:
            log.info(f"compiled the kernels for {what} in {state['seconds']:.1f} s (kept on disk for later runs)")


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
