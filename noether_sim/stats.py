"""Streaming ensemble statistics: ``simulate(..., keep="stats")`` folds seeds into statistics chunk by chunk.

A stats-mode run is the per-seed run cut into chunks of ``Stats.chunk`` seeds: each chunk goes through the
one ``simulate.execute`` (same initial rows, same driver, same per-seed records), and its records are
folded into per-(save time, charge) accumulators before the next chunk runs. Memory is the chunk's, not
the ensemble's: with ``seeds=n`` the seed ids are a ``ensemble.SeedRange`` listed chunk by chunk, the initial
weights are drawn per chunk from the counter-based generator (seed i's row depends only on (root_seed, i)),
and no per-seed array is kept — diverged seeds are counted (per save time) and the first
``DIVERGED_LISTED`` of them, in seed order, are listed with their divergence times.

The fold, per value (a save time × charge of a record, or a component of a charge):

- count, mean and variance (sample, ddof = 1) by Welford/Chan: the seeds are cut into fold blocks of
  ``FOLD_BLOCK`` consecutive seeds (of the seed list, in its order); each block's sum and centred sum of
  squares are computed alone, and the blocks are merged one after another in seed order (Chan et al.'s
  pairwise update). Chunks hold whole blocks, so the arithmetic is the same whatever the chunk size (a
  multiple of ``FOLD_BLOCK``) and thread count: results are bit-identical across them. They are not
  bit-identical to NumPy's mean/var over all seeds at once (another summation order; they agree to round-off);
- min, max and a fixed-bin histogram (integer counts, exact in any order); quantiles follow from the
  histogram (``quantile``), to within a bin.

Which seeds count: a seed contributes at a save time while it is still running; a seed that failed
(diverged, ran out of steps, …) is excluded from that save time on, and counted in ``n_failed`` /
``n_diverged`` per save time (never dropped silently). A value that is NaN for a running seed (a
variable that does not apply) is not counted either: ``<name>_count`` says how many values each
statistic rests on.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import time as _time
from dataclasses import dataclass

import numpy as np

from ._xr import numpy_only
from . import _validate as v

FOLD_BLOCK = 256  # seeds per Welford block: fixes the order of the floating-point fold
DIVERGED_LISTED = 10  # diverged seeds listed by id and time in a statistics result (the rest only counted)
KEEP_CHOICES = ("seeds", "stats")

# per-seed records (seed, time[, charge]): full statistics and a histogram
RECORDS = ("loss", "drift", "drift_max", "predicted", "residual", "law_residual", "scale")
# per-seed values without a time (seed, charge | component): statistics without a histogram (a charge's
# components differ in sign and scale, so one fixed range would not serve them); which seeds count
PER_SEED = {"roundoff_floor": "ok", "charge_initial": "all", "charge_final": "ok", "law_initial": "all",
            "law_final": "ok"}
COUNTERS = ("n_grad_evals", "n_accepted", "n_rejected", "n_solve_iters", "n_retried_steps")
STATS_SUFFIXES = ("count", "mean", "var", "min", "max", "hist")


@dataclass(frozen=True)
class Stats:
    """What ``keep="stats"`` keeps, and how it runs.

    Pass it as ``simulate(..., keep=Stats(...))``: instead of one record per seed, the result holds, per
    save time and charge, the count, mean, variance, minimum, maximum and histogram over the seeds that
    finished (``<name>_count``, ``<name>_mean``, ..., ``<name>_hist``), accumulated chunk by chunk.

    Parameters
    ----------
    bins : int, optional
        Histogram bins between ``range`` (>= 1), default 64, plus one below and one above it: the
        counts sum to the seeds counted.
    range : (float, float), optional
        (low, high) of the histograms: finite, low < high, and low > 0 on the log scale. Default
        (1e-20, 1e4).
    scale : {"log", "linear"}, optional
        "log" (default): bins equal in log10 (drift and loss span many decades); "linear".
    chunk : int, optional
        Seeds run and folded at a time, a multiple of ``FOLD_BLOCK`` (256), default 4096: memory is the
        chunk's.

    Raises
    ------
    ConfigError
        A field out of its range (the parameter is named ``keep.<field>``).

    Examples
    --------
    >>> import noether_sim as ns
    >>> keep = ns.Stats(bins=8, range=(1e-20, 1.0))
    >>> keep.edges().shape                                        # bins + 1 edges, log-spaced
    (9,)
    >>> st = ns.simulate(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10), h=0.05,
    ...                  n_steps=4, seeds=8, keep=keep)
    >>> st.loss_count.values.tolist(), st.sizes["bin"]            # 8 + one bin below and one above range
    ([8, 8, 8, 8, 8], 10)
    >>> int(st.loss_hist.isel(time=-1).sum())                     # every finished seed is counted once
    8
    """

    bins: int = 64
    range: tuple = (1e-20, 1e4)
    scale: str = "log"
    chunk: int = 16 * FOLD_BLOCK

    def __post_init__(self):
        v.positive_int("keep.bins", self.bins)
        rng = self.range
        if (not isinstance(rng, (tuple, list)) or len(rng) != 2
                or not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in rng)):
            v.fail("keep.range", rng, "must be two numbers (low, high)")
        lo, hi = float(rng[0]), float(rng[1])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            v.fail("keep.range", rng, "must be finite")
        if not lo < hi:
            v.fail("keep.range", rng, "must not be empty: low < high")
        if self.scale not in ("log", "linear"):
            v.fail("keep.scale", self.scale, 'must be "log" or "linear"')
        if self.scale == "log" and lo <= 0:
            v.fail("keep.range", rng, 'the log scale needs low > 0 (or use scale="linear")')
        chunk = v.positive_int("keep.chunk", self.chunk)
        if chunk % FOLD_BLOCK:
            v.fail("keep.chunk", chunk, f"must be a multiple of {FOLD_BLOCK} (the fold block: then the "
                                        "statistics are the same bits for every chunk size)")
        object.__setattr__(self, "range", (lo, hi))

    def edges(self) -> np.ndarray:
        """The ``bins + 1`` histogram edges across ``range``, log- or linearly spaced by ``scale``.

        Examples
        --------
        >>> from noether_sim.stats import Stats
        >>> Stats(bins=4, range=(0.0, 1.0), scale="linear").edges().tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
        """
        lo, hi = self.range
        return np.geomspace(lo, hi, self.bins + 1) if self.scale == "log" else np.linspace(lo, hi, self.bins + 1)

    def to_config(self) -> dict:
        """The fields as a plain dict (JSON-ready: a statistics result records it in its ``config`` and
        ``stats`` attributes).

        Examples
        --------
        >>> from noether_sim.stats import Stats
        >>> Stats(bins=8).to_config()
        {'bins': 8, 'range': [1e-20, 10000.0], 'scale': 'log', 'chunk': 4096}
        """
        return {"bins": self.bins, "range": list(self.range), "scale": self.scale, "chunk": self.chunk}


def check_keep(keep) -> Stats | None:
    """None for per-seed records ("seeds"); the ``Stats`` to keep otherwise ("stats", a dict of its fields, a Stats).

    Parameters
    ----------
    keep : str, dict or Stats
        ``simulate``'s ``keep``: "seeds", "stats" (the default ``Stats()``), a dict of ``Stats`` fields,
        or a ``Stats``.

    Returns
    -------
    Stats or None
        None for "seeds".

    Raises
    ------
    ConfigError
        Any other value, a dict with unknown fields, or invalid field values.

    Examples
    --------
    >>> from noether_sim.stats import check_keep
    >>> check_keep("seeds") is None, check_keep({"bins": 8}).bins
    (True, 8)
    """
    if isinstance(keep, Stats):
        return keep
    if isinstance(keep, str) and keep in KEEP_CHOICES:
        return None if keep == "seeds" else Stats()
    if isinstance(keep, dict):
        unknown = set(keep) - {f.name for f in dataclasses.fields(Stats)}
        if unknown:
            v.fail("keep", keep, f"unknown field(s) {sorted(unknown)}; a Stats has bins, range, scale, chunk")
        return Stats(**keep)
    v.fail("keep", keep, 'must be "seeds" (per-seed records), "stats" (streaming statistics) or a '
                         'noether_sim.stats.Stats(bins=, range=, scale=, chunk=)')


# ---------------------------------------------------------------- the fold

class _Moments:
    """Count, mean, centred sum of squares, min, max (and histogram) of E values, folded block by block."""

    def __init__(self, shape, n_hist: int):
        self.shape = shape
        size = int(np.prod(shape, dtype=np.int64))
        self.n = np.zeros(size, np.int64)
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)
        self.min = np.full(size, np.inf)
        self.max = np.full(size, -np.inf)
        self.hist = np.zeros((size, n_hist), np.int64) if n_hist else None

    def add_block(self, x, m):
        """Merge one fold block (rows: seeds in order; m: which values count) — Chan's update."""
        nb = m.sum(axis=0)
        xb = np.where(m, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(nb > 0, xb.sum(axis=0) / nb, 0.0)
        d = np.where(m, x - mb, 0.0)
        m2b = (d * d).sum(axis=0)
        n = self.n + nb
        delta = mb - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n > 0, nb / n, 0.0)
            self.mean = self.mean + delta * frac
            self.m2 = self.m2 + m2b + delta * delta * (self.n * frac)
        self.n = n

    def add_extremes(self, x, m, edges):
        """Min, max and histogram of a whole chunk (exact in any order)."""
        self.min = np.minimum(self.min, np.where(m, x, np.inf).min(axis=0, initial=np.inf))
        self.max = np.maximum(self.max, np.where(m, x, -np.inf).max(axis=0, initial=-np.inf))
        if self.hist is not None:
            n_hist = self.hist.shape[1]
            # bin k (1 … bins) holds edges[k−1] ≤ x < edges[k]; 0 below the range, bins + 1 at or above it
            b = np.searchsorted(edges, x[m], side="right")
            elem = np.broadcast_to(np.arange(x.shape[1]), x.shape)[m]
            self.hist += np.bincount(elem * n_hist + b, minlength=self.hist.size).reshape(self.hist.shape)

    def results(self):
        shape = self.shape
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.n > 0, self.mean, np.nan)
            var = np.where(self.n > 1, self.m2 / (self.n - 1), np.nan)
        empty = self.n == 0
        out = {"count": self.n.reshape(shape), "mean": mean.reshape(shape), "var": var.reshape(shape),
               "min": np.where(empty, np.nan, self.min).reshape(shape),
               "max": np.where(empty, np.nan, self.max).reshape(shape)}
        if self.hist is not None:
            out["hist"] = self.hist.reshape(shape + (self.hist.shape[1],))
        return out


class Fold:
    """Accumulates the statistics of a run's chunks (each an ``execute`` result), in seed order.

    ``execute_stats`` makes one, ``add``s every chunk in seed order, and turns it into the result with
    ``dataset``.

    Parameters
    ----------
    keep : Stats
        What to keep (histogram bins and range).
    n_times : int
        Number of save times.
    first_chunk : xarray.Dataset
        The first chunk's result (or a one-seed copy of it): the records' shapes are taken from it.

    Examples
    --------
    >>> import noether_sim as ns
    >>> from noether_sim.simulate import execute, plan
    >>> from noether_sim.stats import Fold
    >>> p = plan(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10), h=0.05, n_steps=4, seeds=8)
    >>> chunk = execute(p)                                      # per-seed records of seeds 0 … 7
    >>> fold = Fold(ns.Stats(), len(p.times), chunk)
    >>> fold.add(chunk)
    >>> fold.n_seeds
    8
    """

    def __init__(self, keep: Stats, n_times: int, first_chunk):
        self.keep = keep
        self.edges = keep.edges()
        self.n_hist = keep.bins + 2
        self.n_seeds = 0
        self.records = {name: _Moments(first_chunk[name].shape[1:], self.n_hist) for name in RECORDS}
        self.per_seed = {name: _Moments(first_chunk[name].shape[1:], 0) for name in PER_SEED}
        self.alive = np.zeros(n_times, np.int64)
        self.diverged_by = np.zeros(n_times, np.int64)
        self.status = {}
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.max_solve_iters = 0
        self.t_diverged_first = np.inf
        self.diverged_listed = []  # (seed id, divergence time) of the first DIVERGED_LISTED diverged seeds
        self.wall = 0.0

    def add(self, ds):
        """Fold one chunk: its seeds must continue the seed list where the previous chunk stopped, and the
        chunk must start on a fold block (``Stats.chunk`` is a multiple of ``FOLD_BLOCK``)."""
        from .kernels import STATUS_DIVERGED, STATUS_OK

        status = ds["status"].values
        ok = status == STATUS_OK
        # a failed seed is unrecorded (NaN loss) from the save time it failed before on: not running there
        alive = ok[:, None] | np.isfinite(ds["loss"].values)
        self.alive += alive.sum(axis=0)
        self.diverged_by += ((status == STATUS_DIVERGED)[:, None] & ~alive).sum(axis=0)
        for code, count in zip(*np.unique(status, return_counts=True)):
            self.status[int(code)] = self.status.get(int(code), 0) + int(count)
        for name in COUNTERS:
            self.counters[name] += int(ds[name].values.sum())
        self.max_solve_iters = max(self.max_solve_iters, int(ds["max_solve_iters"].values.max(initial=0)))
        t_div = ds["t_diverged"].values
        if np.any(np.isfinite(t_div)):
            self.t_diverged_first = min(self.t_diverged_first, float(np.nanmin(t_div)))
        room = DIVERGED_LISTED - len(self.diverged_listed)
        if room > 0:
            rows = np.flatnonzero(status == STATUS_DIVERGED)[:room]
            self.diverged_listed += [(int(s), float(t)) for s, t in zip(ds["seed"].values[rows], t_div[rows])]
        self.wall += float(ds.attrs["wall_seconds"])
        S = len(status)
        masks = {"all": np.ones((S, 1), bool), "ok": ok[:, None]}
        for name, acc in list(self.records.items()) + list(self.per_seed.items()):
            x = np.asarray(ds[name].values, dtype=np.float64).reshape(S, -1)
            if name in RECORDS:  # (seed, time[, charge]): the seed's running flag at each save time
                shape = ds[name].shape
                rows = np.broadcast_to(alive.reshape(alive.shape + (1,) * (len(shape) - 2)), shape).reshape(S, -1)
            else:
                rows = masks[PER_SEED[name]]
            m = rows & np.isfinite(x)
            for lo in range(0, S, FOLD_BLOCK):
                acc.add_block(x[lo:lo + FOLD_BLOCK], m[lo:lo + FOLD_BLOCK])
            acc.add_extremes(x, m, self.edges)
        self.n_seeds += S

    def dataset(self, first, ids, watch=None, elapsed=0.0):
        """The statistics as a Dataset: ``first`` (the first chunk's result) gives coordinates and attrs."""
        import xarray as xr

        from .kernels import STATUS_DIVERGED, STATUS_OK

        data = {}
        for group in (self.records, self.per_seed):
            for name, acc in group.items():
                dims = first[name].dims[1:]
                for key, arr in acc.results().items():
                    data[f"{name}_{key}"] = (dims + (("bin",) if key == "hist" else ()), arr)
        n_failed = self.n_seeds - self.alive
        data["n_failed"] = ("time", n_failed)
        data["n_diverged"] = ("time", self.diverged_by)
        for name in COUNTERS:
            data[name] = ((), self.counters[name])
        data["max_solve_iters"] = ((), self.max_solve_iters)
        data["law_factor"] = first["law_factor"]
        edges = self.edges
        coords = {c: first[c] for c in first.coords if not {"seed", "param", "watched_seed"} & set(first[c].dims)}
        coords["bin"] = np.arange(self.n_hist)
        coords["bin_lower"] = ("bin", np.concatenate([[-np.inf], edges]))
        coords["bin_upper"] = ("bin", np.concatenate([edges, [np.inf]]))
        if watch is not None:
            coords["watched_seed"] = watch[2]
            data["charge_watch"] = (("watched_seed", "time", "component"), watch[0])
            data["predicted_watch"] = (("watched_seed", "time", "component"), watch[1])
        with numpy_only():  # (_xr.py: no dask import to build it)
            ds = xr.Dataset(data, coords=coords)
        for name in list(RECORDS) + list(PER_SEED):
            text = first[name].attrs.get("description", "")
            for key in STATS_SUFFIXES:
                if f"{name}_{key}" in ds:
                    ds[f"{name}_{key}"].attrs["description"] = f"{_SUFFIX_TEXT[key]} of {name}: {text}"
            if f"{name}_hist" in ds:
                ds[f"{name}_hist"].attrs["scale"] = self.keep.scale  # how quantile() interpolates in a bin
        ds["n_failed"].attrs["description"] = ("seeds not counted at this save time: failed (any status but ok) "
                                              "at or before it")
        ds["n_diverged"].attrs["description"] = "seeds diverged at or before this save time (part of n_failed)"
        n_div = int(self.status.get(STATUS_DIVERGED, 0))
        half = np.nonzero(self.diverged_by > n_div // 2)[0] if n_div else []
        config = json.loads(first.attrs["config"])
        config.update(n_seeds=self.n_seeds, keep=self.keep.to_config())
        ds.attrs.update(first.attrs)
        ds.attrs.update(
            config=json.dumps(config), keep="stats", stats=json.dumps(self.keep.to_config()),
            fold_block=FOLD_BLOCK, n_seeds=self.n_seeds,
            seed_first=int(ids[0]), seed_last=int(ids[-1]),
            status_counts=json.dumps({str(k): c for k, c in sorted(self.status.items())}),
            n_diverged=n_div, n_failed=int(self.n_seeds - self.status.get(STATUS_OK, 0)),
            t_diverged_first=self.t_diverged_first if n_div else np.nan,
            # the first save time by which more than half of the diverged seeds had diverged: an upper bound
            # on their median divergence time, at the save grid's resolution
            t_diverged_median_by=float(first["time"].values[half[0]]) if len(half) else np.nan,
            # no per-seed divergence records in a statistics result: counts, and the first few by id
            diverged_seeds=json.dumps([s for s, _ in self.diverged_listed]),
            diverged_times=json.dumps([t for _, t in self.diverged_listed]),
            diverged_note=(f"statistics keep no per-seed records: n_diverged counts the diverged seeds (per save "
                           f"time: the variable n_diverged); diverged_seeds / diverged_times list the first "
                           f"{DIVERGED_LISTED} of them in seed order, with their divergence times"),
            wall_seconds=self.wall, elapsed_seconds=elapsed,
        )
        return ds


_SUFFIX_TEXT = {"count": "number of seeds counted", "mean": "mean over the counted seeds",
                "var": "sample variance (ddof = 1) over the counted seeds", "min": "smallest value",
                "max": "largest value",
                "hist": "counts per bin (bin_lower ≤ x < bin_upper; the first and last bins are below and above "
                        "the range)"}


# ---------------------------------------------------------------- running

def seed_chunks(n_ids: int, chunk: int):
    """(lo, hi) positions of each chunk in the seed list.

    Parameters
    ----------
    n_ids : int
        Number of seeds.
    chunk : int
        Seeds per chunk (>= 1); the last chunk holds the rest.

    Returns
    -------
    iterator of (int, int)
        Half-open ranges [lo, hi) covering 0 … n_ids in order.

    Examples
    --------
    >>> from noether_sim.stats import seed_chunks
    >>> list(seed_chunks(600, 256))
    [(0, 256), (256, 512), (512, 600)]
    """
    for lo in range(0, n_ids, chunk):
        yield lo, min(lo + chunk, n_ids)


def execute_stats(p, execute, progress: bool = False):
    """Run a stats-mode plan (``simulate.plan(..., keep=...)``): execute each chunk of seeds and fold it.

    ``execute`` is simulate's (passed in so that this module stays below simulate.py): it runs each chunk
    of seeds with per-seed records.

    What ``simulate(..., keep=Stats(...))`` runs.

    Parameters
    ----------
    p : noether_sim.simulate.Plan
        A validated plan whose ``keep`` is a ``Stats``.
    execute : callable
        ``noether_sim.simulate.execute``: runs a plan with per-seed records.
    progress : bool, optional
        Show a progress bar over the seeds. Default False.

    Returns
    -------
    xarray.Dataset
        The statistics over all seeds (no ``seed`` dimension), as ``simulate`` returns them.

    Examples
    --------
    >>> import noether_sim as ns
    >>> from noether_sim.simulate import execute, plan
    >>> from noether_sim.stats import execute_stats
    >>> p = plan(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10), h=0.05, n_steps=4,
    ...          seeds=600, keep=ns.Stats(chunk=256))                # three chunks: 256, 256 and 88 seeds
    >>> ds = execute_stats(p, execute)
    >>> int(ds.loss_count.isel(time=-1)), "seed" in ds.dims
    (600, False)
    """
    from .init import Given

    keep = p.keep
    ids = p.ids
    started = _time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc=f"{p.resolved.dynamics}/{p.resolved.method} stats", unit="seed",
                   leave=False)
    fold = first = None
    watched = {}
    velocity = p.options.get("velocity")
    try:
        for lo, hi in seed_chunks(len(ids), keep.chunk):
            chunk_ids = ids[lo:hi]
            init = p.init
            if isinstance(init, Given) and init.theta.ndim == 2:
                init = Given(init.theta[lo:hi])
            options = p.options
            if isinstance(velocity, np.ndarray) and velocity.ndim == 2:
                options = {**options, "velocity": velocity[lo:hi]}
            sub = dataclasses.replace(p, ids=chunk_ids, watch=p.watch[np.isin(p.watch, chunk_ids)], init=init,
                                      options=options, keep=None)
            ds = execute(sub)
            if fold is None:
                # the layout, coordinates and attributes, as a one-seed copy (not the whole chunk)
                first = ds.isel(seed=[0], watched_seed=[])
                fold = Fold(keep, len(p.times), first)
            fold.add(ds)
            for k, sid in enumerate(ds["watched_seed"].values):
                watched[int(sid)] = (ds["charge_watch"].values[k].copy(), ds["predicted_watch"].values[k].copy())
            del ds, sub
            if bar is not None:
                bar.update(hi - lo)
                bar.set_postfix(failed=fold.n_seeds - int(fold.status.get(0, 0)), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    shape = (0,) + first["charge_watch"].shape[1:]
    order = [int(s) for s in p.watch]
    watch = (np.stack([watched[s][0] for s in order]) if order else np.empty(shape),
             np.stack([watched[s][1] for s in order]) if order else np.empty(shape),
             np.asarray(order, dtype=np.int64))
    return fold.dataset(first, ids, watch, _time.perf_counter() - started)


# ---------------------------------------------------------------- reading

def quantile(ds, name: str, q):
    """Quantile ``q`` (0 … 1) of record ``name`` from its histogram, interpolated within the bin (log10-linearly
    on the log scale): good to within one bin. Where it falls below or above the histogram's range, the
    range's end is returned (a bound, not a value).

    Parameters
    ----------
    ds : xarray.Dataset
        A result kept as statistics (``simulate(..., keep="stats")`` or a ``Stats``).
    name : str
        A record with a histogram (``<name>_hist`` in ``ds``), e.g. "loss" or "drift".
    q : float
        The quantile, in [0, 1].

    Returns
    -------
    xarray.DataArray
        The quantile over the counted seeds, with the histogram's dimensions but ``bin`` (NaN where no
        seed was counted).

    Raises
    ------
    ConfigError
        ``name`` has no histogram in ``ds``, or ``q`` is outside [0, 1].

    Examples
    --------
    The median loss from histograms of 0.1 decade per bin, against the median of the per-seed records:

    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.stats import quantile
    >>> model, data = ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10)
    >>> run = dict(h=0.05, n_steps=4, seeds=65)
    >>> st = ns.simulate(model, data, keep=ns.Stats(bins=30, range=(1e-2, 10.0)), **run)
    >>> exact = np.median(ns.simulate(model, data, **run).loss.values, axis=0)
    >>> approx = quantile(st, "loss", 0.5)
    >>> approx.dims, bool((np.abs(np.log10(approx.values / exact)) <= 0.1).all())     # within one bin
    (('time',), True)
    """
    import xarray as xr

    if f"{name}_hist" not in ds:
        v.fail("name", name, f"must be a record with a histogram: {', '.join(r for r in RECORDS if f'{r}_hist' in ds)}")
    q = float(q)
    if not 0.0 <= q <= 1.0:
        v.fail("q", q, "must be in [0, 1]")
    hist = ds[f"{name}_hist"]
    counts = hist.values
    lower, upper = ds["bin_lower"].values, ds["bin_upper"].values
    log = ds[f"{name}_hist"].attrs.get("scale", "log") == "log"
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1:]
    target = q * total
    k = np.minimum((cum < target).sum(axis=-1, keepdims=True), counts.shape[-1] - 1)
    before = np.where(k > 0, np.take_along_axis(cum, np.maximum(k - 1, 0), axis=-1), 0)
    inside = np.take_along_axis(counts, k, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.where(inside > 0, (target - before) / inside, 0.0), 0.0, 1.0)
    k, frac = k[..., 0], frac[..., 0]
    lo_edge, hi_edge = lower[k], upper[k]
    if log:
        value = 10.0 ** (np.log10(np.where(np.isfinite(lo_edge), lo_edge, 1.0)) * (1 - frac)
                         + np.log10(np.where(np.isfinite(hi_edge), hi_edge, 1.0)) * frac)
    else:
        value = lo_edge * (1 - frac) + hi_edge * frac
    value = np.where(k == 0, upper[0], np.where(k == counts.shape[-1] - 1, lower[-1], value))
    value = np.where(total[..., 0] > 0, value, np.nan)
    return xr.DataArray(value, dims=hist.dims[:-1], coords={c: hist[c] for c in hist.coords if "bin" not in hist[c].dims},
                        name=f"{name}_q{q:g}")


def scheme_ladder(ds, scheme):
    """Method ``scheme`` of a statistics study as a statistics ladder (dimension ``h``, its finished step
    sizes only, the attributes ``analyse_ladder`` reads), or None with fewer than 3 finished step sizes.

    Parameters
    ----------
    ds : xarray.Dataset
        A study run with ``record.keep = "stats"``.
    scheme : str
        A method label of the study.

    Returns
    -------
    xarray.Dataset or None

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4}, "record": {"keep": "stats"},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny"))
    >>> scheme_ladder(ds, "gd").h.values.tolist()
    [0.05, 0.025, 0.0125]
    """
    sub = ds.sel(scheme=scheme)
    counts = sub["loss_count"].isel(time=0).values
    done = np.flatnonzero(np.isfinite(counts) & (counts > 0))
    if len(done) < 3:
        return None
    lad = sub.isel(step=done).swap_dims(step="h")
    for name in ("dynamics", "integrator", "method_order", "limit_flow", "scheme", "step"):
        if name in lad.coords and name != "h":
            lad = lad.drop_vars(name)
    lad.attrs.update(dynamics=str(sub["dynamics"].values), method=str(sub["integrator"].values),
                     method_order=int(sub["method_order"].values), stats=True)
    return lad


def summary_rows(ds, SummaryRow, finest_step, not_analysed, analyse=None):
    """A study's summary rows (tables.summary_rows) from statistics: medians and 95th percentiles from the
    histograms (to within a bin) at the finest step size and the last save time; with ``analyse``
    (``analyse_ladder``) and at least 3 finished step sizes, the method's ladder verdict per charge from
    seed means and standard errors (``ladder.analyse_stats_ladder``).

    Parameters
    ----------
    ds : xarray.Dataset
        A study run with ``record.keep = "stats"``.
    SummaryRow : type
        The row class (``tables.SummaryRow``).
    finest_step : callable
        ``finest_step(ds, scheme)``: the index of a method's finest finished step size.
    not_analysed : str
        The verdict text for rows without a ladder analysis.
    analyse : callable, optional
        ``analyse_ladder``; without it no row has a ladder verdict.

    Returns
    -------
    list of SummaryRow
        One row per method and charge that has counted seeds.

    Examples
    --------
    >>> import os, tempfile, noether_sim as ns
    >>> from noether_sim.tables import summary_rows             # calls this one for statistics
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4}, "record": {"keep": "stats"},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> rows = summary_rows(ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "tiny")))
    >>> [(r.method, r.charge, r.seeds, r.verdict, r.extra["basis"]) for r in rows]
    [('gd', 'D1', 4, 'conserved by the flow', 'exact law')]
    """
    rows = []
    for lb in ds.scheme.values:
        lad = scheme_ladder(ds, lb) if analyse is not None else None
        an = analyse(lad) if lad is not None else None
        k = finest_step(ds, lb)
        fin = ds.sel(scheme=lb).isel(step=k)
        q = {name: {p: quantile(fin, name, p).isel(time=-1) for p in (0.5, 0.95)}
             for name in ("drift", "predicted", "residual")}
        floor = fin["roundoff_floor_mean"]
        diverged = int(np.nanmax(ds["n_diverged"].sel(scheme=lb).isel(time=-1).values))
        n_seeds = int(fin["loss_count"].isel(time=0).values)
        for c in ds.charge.values:
            if int(fin["drift_count"].sel(charge=c).isel(time=-1).values) == 0:
                continue  # a charge this dynamics does not have, or every seed failed
            rows.append(SummaryRow(
                method=str(lb), charge=str(c), h_finest=float(ds.h.sel(scheme=lb).values[k]),
                drift_median=float(q["drift"][0.5].sel(charge=c)), drift_p95=float(q["drift"][0.95].sel(charge=c)),
                predicted_median=float(q["predicted"][0.5].sel(charge=c)),
                residual_median=float(q["residual"][0.5].sel(charge=c)),
                fitted_order=np.nan if an is None else float(an.fitted_order.sel(charge=c)),
                extrapolated_drift=np.nan if an is None else float(an.extrapolated_drift.sel(charge=c)),
                verdict=(not_analysed.split(" (")[0] + " (statistics only: keep=\"stats\")" if an is None
                         else str(an.verdict.sel(charge=c).values)), diverged=diverged,
                seeds=n_seeds, extra={"uncertainty": np.nan if an is None else float(an.uncertainty.sel(charge=c)),
                                      "standard_error": np.nan if an is None else float(an.standard_error.sel(charge=c)),
                                      "basis": "" if an is None else str(an.basis.sel(charge=c).values),
                                      "law_verdict": "" if an is None else str(an.law_verdict.sel(charge=c).values),
                                      "roundoff_floor": float(floor.sel(charge=c).values)}))
    return rows


def extrapolate_means(ladder, order: int | None = None, name: str = "drift"):
    """The seed mean of record ``name`` at the last save time, extrapolated to h → 0 over a statistics
    ladder (``run_ladder(..., keep="stats")``), with a Monte-Carlo standard error; per charge.

    d(h) is the mean over seeds (those that finished) at step size h; with the finest pair (h₁ > h₀,
    r = h₁/h₀) and the method's order p, d* = d(h₀) + (d(h₀) − d(h₁))/(r^p − 1) — the mean of the
    seeds' own extrapolations, since it is linear. Its standard error is bounded by
    (1 + f)·SE(h₀) + f·SE(h₁), f = 1/(r^p − 1), SE = sqrt(var/n): the same seeds run every rung, so the
    rungs' errors are correlated, and this bound holds whatever the correlation. ``uncertainty`` is how
    far d* moves against the same extrapolation one rung coarser; ``fitted_order`` the slope of log d
    against log h. The verdicts built on it: ``analyse_ladder`` (``ladder.analyse_stats_ladder``).

    Parameters
    ----------
    ladder : xarray.Dataset
        ``run_ladder(..., keep="stats")`` with at least 3 step sizes.
    order : int, optional
        The order p used in the extrapolation; default the method's (``attrs["method_order"]``).
    name : str, optional
        The record extrapolated, default "drift".

    Returns
    -------
    xarray.Dataset
        Per charge: ``fitted_order``, ``extrapolated`` (d*), ``standard_error``, ``uncertainty``,
        ``finest`` (the mean at the finest step size) and ``finest_standard_error``.

    Raises
    ------
    ConfigError
        ``ladder`` is not a statistics ladder of at least 3 step sizes holding the record ``name``.

    Examples
    --------
    RK4 on gradient flow: the balance charge is conserved by the flow, so its mean drift extrapolates to
    zero within the standard error.

    >>> import noether_sim as ns
    >>> from noether_sim.stats import extrapolate_means
    >>> ladder = ns.run_ladder(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10), method="rk4",
    ...                        step_sizes=[0.2, 0.1, 0.05], t_end=1.0, seeds=16, keep="stats")
    >>> ex = extrapolate_means(ladder)
    >>> ex.extrapolated.dims, bool(abs(ex.extrapolated.sel(charge="D1")) <= 3 * ex.standard_error.sel(charge="D1"))
    (('charge',), True)
    """
    import xarray as xr

    if "h" not in ladder.dims or ladder.sizes["h"] < 3 or f"{name}_mean" not in ladder:
        v.fail("ladder", dict(ladder.sizes), f"must be a statistics ladder (run_ladder(..., keep=\"stats\")) "
                                             f"with at least 3 step sizes and the record {name!r}")
    ladder = ladder.sortby("h", ascending=False)
    p = int(order if order is not None else ladder.attrs["method_order"])
    hs = ladder.h.values
    last = ladder.isel(time=-1)
    d = last[f"{name}_mean"].transpose("h", ...).values
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(last[f"{name}_var"].transpose("h", ...).values / last[f"{name}_count"].transpose("h", ...).values)

    def richardson(i):  # rungs i − 1 (coarser) and i
        f = 1.0 / ((hs[i - 1] / hs[i]) ** p - 1.0)
        return d[i] + (d[i] - d[i - 1]) * f, (1 + f) * se[i] + f * se[i - 1]

    d_star, se_star = richardson(len(hs) - 1)
    d_prev, _ = richardson(len(hs) - 2)
    x = np.log(hs)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(np.where(d > 0, d, np.nan))
    usable = np.isfinite(y).all(axis=0)
    xc = x - x.mean()
    slope = np.where(usable, (xc[:, None] * (y - y.mean(axis=0))).sum(axis=0) / (xc * xc).sum()
                     if y.ndim == 2 else (xc * (y - y.mean())).sum() / (xc * xc).sum(), np.nan)
    dims = last[f"{name}_mean"].transpose("h", ...).dims[1:]
    coords = {c: last[c] for c in last[f"{name}_mean"].coords if "h" not in last[c].dims and c != "time"}
    return xr.Dataset({"fitted_order": (dims, slope), "extrapolated": (dims, d_star),
                       "standard_error": (dims, se_star), "uncertainty": (dims, np.abs(d_star - d_prev)),
                       "finest": (dims, d[-1]), "finest_standard_error": (dims, se[-1])},
                      coords=coords, attrs={"method_order": p, "record": name,
                                            "step_sizes": json.dumps([float(h) for h in hs])})


__all__ = ["Stats", "FOLD_BLOCK", "DIVERGED_LISTED", "check_keep", "execute_stats", "extrapolate_means", "quantile", "scheme_ladder", "Fold"]
