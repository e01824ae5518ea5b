"""Run a study or a sweep into a store: every block (sweep point × method × step size) is one task.

Where the tasks run:

- default: in this process, one block after another, each using every core through the kernels' own
  threads (as a single ``simulate()`` call does);
- ``workers=N``: a ``dask.distributed.LocalCluster`` of N worker processes on this machine;
- ``scheduler="tcp://HOST:PORT"``: a running ``dask scheduler`` and its ``dask worker`` processes, on
  any machines that share the store's file system.

Each task builds the point's model, data and initialisation from its configuration, integrates, and
writes its block straight into the store (``store.write_block``), so no result travels through the
scheduler and a block is the same bits wherever it ran (each seed's result depends only on its seed:
kernels/__init__.py). A worker that dies mid-block loses only that block: Dask reruns the task on
another worker, and the store's atomic writes make the rerun's copy the only one. The run holds the
store's lock; the workers write without it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import xarray as xr

from .builders import build_data, build_init, build_model
from .store import StoreWriter, block_name, expected_blocks, write_block
from .study import StudyInterrupted  # noqa: F401  (raised here; the CLI catches it from here)
from .sweep import Plan, plan as make_plan

SCHEDULER_TIMEOUT = 30.0  # seconds to connect to a scheduler and complete Dask's handshake


class SchedulerUnavailableError(OSError):
    """No Dask scheduler answered at the address given."""


def check_scheduler_address(address) -> str:
    """``tcp://HOST:PORT``, ``tls://HOST:PORT`` or ``HOST:PORT`` (Dask's default, tcp); ConfigError otherwise."""
    from ._validate import fail

    m = re.fullmatch(r"(?:(tcp|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", str(address).strip()) \
        if isinstance(address, str) else None
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        fail("scheduler", address, "must be the address a `dask scheduler` prints, tcp://HOST:PORT (or "
                                   "tls://HOST:PORT), e.g. tcp://127.0.0.1:8786; not its dashboard's http:// address")
    return f"{m.group(1) or 'tcp'}://{m.group(2)}:{m.group(3)}"


def probe_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> dict:
    """Connect to the scheduler at ``address`` and ask who it is, all within ``timeout`` seconds; its
    identity, or ``SchedulerUnavailableError`` (nothing listening, a silent service, one that speaks
    another protocol, or a Dask process that is not a scheduler)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def ask():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def unavailable(why):
        return SchedulerUnavailableError(f"no Dask scheduler answered at {address} within {timeout:g} s ({why}); "
                                         f"check the address (start one with `dask scheduler`) or raise the "
                                         f"timeout (--scheduler-timeout, Python: scheduler_timeout)")

    try:
        # in a thread of its own: the caller may already run an event loop (Jupyter)
        with ThreadPoolExecutor(1) as thread:
            identity = thread.submit(lambda: asyncio.run(asyncio.wait_for(ask(), timeout))).result()
    except (asyncio.TimeoutError, TimeoutError):
        raise unavailable("it did not complete Dask's handshake") from None
    except MemoryError:  # bytes that are not Dask's protocol, read as an absurd frame length
        raise unavailable("what it sent is not Dask's protocol") from None
    except Exception as err:  # refused, reset, or other bytes that are not Dask's protocol
        raise unavailable(f"{type(err).__name__}: {str(err)[:200] or 'no message'}") from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise unavailable(f"it answered as {identity.get('type') if isinstance(identity, dict) else identity!r}, "
                          f"not as a scheduler")
    return identity


def block_cost(cfg, label, k) -> float:
    """Relative work of a block (gradient evaluations × seeds), for the progress bar's ETA."""
    from .study import block_cost as costs

    return costs(cfg, label)[k]


def compute_block(store, cfg: dict, point, label: str, k: int, threads: int | None = None, built=None) -> float:
    """Integrate one block and write it into ``store``; returns its integration wall time.

    The one task every execution mode runs (Dask pickles it by reference: workers import noether_sim).
    """
    from . import study  # looked up at call time: tests replace study.run_block to simulate failures
    from .store import read_marker

    if read_marker(store, block_name(label, k, point)) is not None:
        return 0.0  # finished already (a task rerun after its worker died having written it)
    if threads is not None:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    t0 = time.perf_counter()
    model, data, init = built or (build_model(cfg), build_data(cfg), build_init(cfg))
    ds = study.run_block(cfg, label, k, model, data, init)
    # where the block's time went, kept in its marker (bench/sweep_overhead.py reads it)
    timing = {"integration": float(ds.attrs["wall_seconds"]), "build_and_simulate": time.perf_counter() - t0}
    write_block(store, label, k, ds, point, timing=timing)
    return timing["integration"]


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from .ensemble import make_progress

    return make_progress(total, desc, "{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")


def run_study(config=None, out=None, *, overrides=(), workers: int | None = None, scheduler: str | None = None,
              overwrite: bool = False, progress: bool = False, log=None, plan: Plan | None = None,
              scheduler_timeout: float = SCHEDULER_TIMEOUT) -> xr.Dataset:
    """Run a study or sweep (a TOML path, a config dict, or None for the default study) into the store ``out``.

    Every sweep point is validated before any work (``ConfigError`` otherwise). ``out`` defaults to
    ``results/<name>``. An incomplete store of the same study is resumed: its finished blocks are kept
    as they are. A store of another study raises ``StoreMismatchError`` unless ``overwrite=True``; a
    store being written by another run raises ``StoreLockedError``. ``workers`` / ``scheduler`` choose
    where blocks run (module doc). Everything knowable before work (every block's arguments and memory
    estimate, the scheduler's address, that a scheduler answers there within ``scheduler_timeout``
    seconds: ``SchedulerUnavailableError`` otherwise) is checked before the store is created.
    Returns ``noether_sim.load(out)``: the whole study, lazily.
    Ctrl-C raises ``StudyInterrupted`` after the finished blocks are saved.

    Parameters
    ----------
    config : str, pathlib.Path, dict or None, optional
        A TOML file, a configuration dict (as the TOML would read), or None for the default study.
    out : str or pathlib.Path, optional
        The store's directory; default ``results/<name>``.
    overrides : sequence of str, optional
        ``key=value`` settings applied on top of ``config`` (as the command line's ``--set``).
    workers : int, optional
        Run blocks on a local Dask cluster of this many worker processes (>= 1).
    scheduler : str, optional
        Address of a running Dask scheduler to run blocks on (``host:port`` or ``tcp://host:port``).
    overwrite : bool, optional
        Replace a store of another study at ``out``. Default False.
    progress : bool, optional
        Show a progress bar. Default False.
    log : callable, optional
        Called with one string per message (resuming, repairs, timing).
    plan : Plan, optional
        An already made plan (``noether_sim.sweep.plan``), used instead of ``config`` and ``overrides``.
    scheduler_timeout : float, optional
        Seconds to wait for ``scheduler`` to answer (> 0).

    Returns
    -------
    xarray.Dataset
        ``noether_sim.load(out)``: the whole study, its arrays backed lazily by Dask.

    Raises
    ------
    ConfigError
        An invalid configuration, sweep point, ``scheduler`` address or ``scheduler_timeout``, before
        any work.
    ValueError
        Both ``workers`` and ``scheduler`` given, or ``workers`` not an integer >= 1.
    SchedulerUnavailableError
        No scheduler answers at ``scheduler`` within ``scheduler_timeout`` seconds.
    noether_sim.store.StoreMismatchError
        ``out`` holds another study (unless ``overwrite``).
    noether_sim.store.StoreLockedError
        Another run is writing to ``out``.
    noether_sim.study.StudyInterrupted
        Ctrl-C, once the finished blocks are saved (rerunning resumes).

    Examples
    --------
    A ladder of three step sizes of gradient descent, two seeds, into a temporary store:

    >>> import os, tempfile, noether_sim as ns
    >>> out = os.path.join(tempfile.mkdtemp(), "tiny")
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 2},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> ds = ns.run_study(cfg, out)
    >>> dict(ds.verdict.sizes), sorted(os.listdir(out))
    ({'scheme': 1, 'seed': 2, 'charge': 1}, ['COMPLETE', 'blocks', 'study.json'])
    >>> ns.run_study(cfg, out, workers=2, scheduler="127.0.0.1:8786")
    Traceback (most recent call last):
    ...
    ValueError: workers=2 and scheduler='127.0.0.1:8786': give one of them
    """
    from ._validate import positive
    from .results import load
    from .study import check_blocks, study_provenance

    p = plan or make_plan(config, overrides)
    out = Path(out) if out is not None else Path("results") / p.name
    if workers is not None and scheduler is not None:
        raise ValueError(f"workers={workers!r} and scheduler={scheduler!r}: give one of them")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r} is invalid: must be an integer >= 1")
    scheduler_timeout = positive("scheduler_timeout", scheduler_timeout)
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    check_blocks(p.points if p.points is not None else [p.config])
    if scheduler is not None:
        probe_scheduler(scheduler, scheduler_timeout)
    say = log or (lambda *a: None)
    writer = StoreWriter(out, p.config, study_provenance(), points=p.points, overwrite=overwrite,
                         extra={"sweep": p.layout()})
    try:
        todo = writer.todo()
        n_all = len(writer.blocks)
        if writer.repaired:
            say(f"damaged finished blocks will be recomputed: {', '.join(block_name(lb, k, q) for q, lb, k, _ in writer.repaired)}")
        if writer.resumed:
            say(f"resuming {out}: {n_all - len(todo)} of {n_all} blocks already finished")
        configs = p.points if p.points is not None else [p.config]
        tasks = [(q, lb, k, configs[q or 0]) for q, lb, k, _ in todo]
        started = time.perf_counter()
        if scheduler is None and workers is None:
            _run_here(out, tasks, progress, p.name)
        else:
            _run_dask(out, tasks, progress, p.name, workers, scheduler, scheduler_timeout)
        say(f"{len(tasks)} blocks run in {time.perf_counter() - started:.1f} s")
        writer.finish()
    except KeyboardInterrupt:
        from .store import block_status

        writer.close()
        done, missing = block_status(out)
        raise StudyInterrupted(done, missing) from None
    finally:
        writer.close()
    return load(out)


def _run_here(out, tasks, progress, name):
    bar = _progress(sum(block_cost(c, lb, k) for _, lb, k, c in tasks), name, progress)
    built = {}
    try:
        for i, (q, lb, k, cfg) in enumerate(tasks):
            if bar is not None:
                bar.set_postfix_str(f"block {i + 1}/{len(tasks)}: {block_name(lb, k, q)}")
            if q not in built:  # one model, data set and initialisation per point, as a single study builds
                built = {q: (build_model(cfg), build_data(cfg), build_init(cfg))}
            compute_block(out, cfg, q, lb, k, built=built[q])
            if bar is not None:
                bar.update(block_cost(cfg, lb, k))
    finally:
        if bar is not None:
            bar.close()


def compile_here(tasks, seeds: int = 16) -> int:
    """Compile (or load) in this process every kernel variant the blocks of ``tasks`` will run, before a
    fan-out to local workers: they then load the variants from the shared on-disk cache instead of each
    compiling them (numba writes each cache file atomically, so concurrent readers are safe).

    One small run (``seeds`` seeds, the block's own arguments otherwise) per distinct (model, dynamics,
    method, keep, options). A variant missed here is compiled by the worker that needs it, which is
    slower but gives the same numbers.

    Parameters
    ----------
    tasks : list of tuple
        ``(point, method label, step index, study configuration)`` per block, as ``run_study`` builds them.
    seeds : int, optional
        Seeds of each warm-up run (at most the block's own count).

    Returns
    -------
    int
        How many distinct variants were run.

    Examples
    --------
    >>> from noether_sim.execute import compile_here
    >>> from noether_sim.sweep import plan
    >>> cfg = {"name": "tiny", "t_end": 0.5, "save_every": 0.25, "model": {"widths": [3, 4, 2]},
    ...        "data": {"n_points": 8}, "seeds": {"count": 4},
    ...        "methods": {"gd": {"dynamics": "gd", "step_sizes": [0.05, 0.025, 0.0125]}}}
    >>> p = plan(cfg)
    >>> compile_here([(None, "gd", k, p.config) for k in range(3)])   # three blocks, one variant
    1
    """
    from . import study
    from ._validate import ConfigError

    seen = set()
    for q, lb, k, cfg in tasks:
        args = study.block_arguments(cfg, lb, k)
        model = build_model(cfg)
        key = (type(model).__name__, getattr(model, "activation", None), getattr(model, "bias", None),
               args["dynamics"], args["method"], str(args.get("keep")), tuple(sorted(cfg["methods"][lb])))
        if key in seen:
            continue
        seen.add(key)
        small = dict(args, seeds=min(seeds, args["seeds"]), watch_seeds=(), description="kernel warm-up")
        try:
            study.simulate(model, build_data(cfg), init=build_init(cfg), progress=False, **small)
        except ConfigError:  # e.g. given initial weights for exactly the block's seeds: the worker compiles
            continue
    return len(seen)


def _run_dask(out, tasks, progress, name, workers, scheduler, scheduler_timeout=SCHEDULER_TIMEOUT):
    from distributed import Client, LocalCluster, as_completed

    store = str(Path(out).resolve())  # workers may run in another directory
    cluster = None
    if scheduler is None:
        compile_here(tasks)  # local workers share this kernel cache: they load instead of each compiling
        # one thread per worker: the kernels parallelise a block over its seeds themselves
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
        threads = max(1, (os.cpu_count() or 1) // workers)
    else:
        client = Client(scheduler, timeout=f"{scheduler_timeout}s")
        threads = None  # remote workers: their own NUMBA_NUM_THREADS decides
    bar = _progress(sum(block_cost(c, lb, k) for _, lb, k, c in tasks), name, progress)
    futures = {}
    try:
        for q, lb, k, cfg in tasks:
            fut = client.submit(compute_block, store, cfg, q, lb, k, threads, key=f"{name}-{block_name(lb, k, q)}-{os.getpid()}-{time.time_ns()}",
                                pure=False)
            futures[fut] = (cfg, lb, k)
        done = 0
        for fut in as_completed(list(futures)):
            fut.result()  # a failed block fails the run (finished blocks are kept)
            cfg, lb, k = futures.pop(fut)
            fut.release()  # else Dask recomputes a finished block whose worker later dies, to restore its result
            done += 1
            if bar is not None:
                bar.set_postfix_str(f"{done}/{len(tasks)} blocks")
                bar.update(block_cost(cfg, lb, k))
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if bar is not None:
            bar.close()
        client.close()
        if cluster is not None:
            cluster.close()


def n_blocks(p: Plan) -> int:
    return len(expected_blocks(p.config, p.points))
