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
import time
from pathlib import Path

import xarray as xr

from .builders import build_data, build_init, build_model
from .store import StoreWriter, block_name, expected_blocks, write_block
from .study import StudyInterrupted  # noqa: F401  (raised here; the CLI catches it from here)
from .sweep import Plan, plan as make_plan


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
              overwrite: bool = False, progress: bool = False, log=None, plan: Plan | None = None) -> xr.Dataset:
    """Run a study or sweep (a TOML path, a config dict, or None for the default study) into the store ``out``.

    Every sweep point is validated before any work (``ConfigError`` otherwise). ``out`` defaults to
    ``results/<name>``. An incomplete store of the same study is resumed: its finished blocks are kept
    as they are. A store of another study raises ``StoreMismatchError`` unless ``overwrite=True``; a
    store being written by another run raises ``StoreLockedError``. ``workers`` / ``scheduler`` choose
    where blocks run (module doc). Returns ``noether_sim.load(out)``: the whole study, lazily.
    Ctrl-C raises ``StudyInterrupted`` after the finished blocks are saved.
    """
    from .results import load
    from .study import study_provenance

    p = plan or make_plan(config, overrides)
    out = Path(out) if out is not None else Path("results") / p.name
    if workers is not None and scheduler is not None:
        raise ValueError(f"workers={workers!r} and scheduler={scheduler!r}: give one of them")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r} is invalid: must be an integer >= 1")
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
            _run_dask(out, tasks, progress, p.name, workers, scheduler)
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


def _run_dask(out, tasks, progress, name, workers, scheduler):
    from distributed import Client, LocalCluster, as_completed

    store = str(Path(out).resolve())  # workers may run in another directory
    cluster = None
    if scheduler is None:
        # one thread per worker: the kernels parallelise a block over its seeds themselves
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
        threads = max(1, (os.cpu_count() or 1) // workers)
    else:
        client = Client(scheduler, timeout="30s")
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
