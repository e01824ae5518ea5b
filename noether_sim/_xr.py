"""Building xarray results from NumPy arrays without importing dask, and importing xarray while the kernels run.

xarray asks, for every array it wraps, whether it is a dask array, and answers by importing
``dask.array`` (``xarray.namedarray.pycompat.array_type("dask")``) or ``dask.base`` (``xarray.namedarray.utils.is_dask_collection``) when dask is installed: 0.3–0.4 s,
a third of a warm start, for a run that never touches dask. While dask has not been
imported no object can be a dask array, so for the length of a ``numpy_only()`` block xarray is told
dask is absent; the answer is taken back afterwards, so a later use of dask (a store opened lazily,
a Dask cluster) sees dask as usual.
"""

import contextlib
import sys
import threading
import time


@contextlib.contextmanager
def numpy_only():
    """A block that builds xarray objects from NumPy arrays only; it does not import dask."""
    xarray_module()  # the whole package first (a background import may be completing it)
    if "dask" in sys.modules:
        yield
        return
    placeholder = utils = original = None
    try:
        from xarray.namedarray import pycompat, utils

        cache = pycompat._cached_duck_array_modules
        original = utils.is_dask_collection
        if "dask" not in cache:
            placeholder = object.__new__(pycompat.DuckArrayModule)
            placeholder.module, placeholder.type, placeholder.available = None, (), False
            placeholder.version = pycompat.Version("0.0.0")
            cache["dask"] = placeholder
        utils.is_dask_collection = _not_dask
    except (ImportError, AttributeError):  # another xarray: no shortcut
        pass
    try:
        yield
    finally:
        if placeholder is not None and cache.get("dask") is placeholder:
            del cache["dask"]
        if original is not None and utils.is_dask_collection is _not_dask:
            utils.is_dask_collection = original


def _not_dask(x):
    return False


# ---- xarray (and pandas, ≈ 0.25 s of CPU) imported on a thread while the kernels run ----
#
# A run needs xarray only to label its result, at the end. Imports hold the GIL; loading cached kernels
# (LLVM, through ctypes) and running them (nogil) do not. ``importing_xarray()``, entered for the length of
# a run, imports xarray on a thread of its own, which takes the GIL whenever the run does not hold it.
# Rules that keep this free of import races:
# - while the thread imports, the run touches xarray only through ``xarray_module()``: a top-level
#   ``import xarray``, which waits on Python's per-module import lock until the thread has finished and
#   returns the whole module. (Importing a *submodule* such as ``xarray.namedarray.utils`` directly would
#   not wait for the package and could meet the thread's import locks in the other order: Python then
#   raises a _DeadlockError in one of the two threads. ``numpy_only()`` therefore imports xarray first.)
# - the block waits for the thread on every way out (result, error, Ctrl-C), so no import is left running
#   behind the caller's back: after the call, xarray is imported or not, as without the thread.
# - if the import fails on the thread, nothing is raised there: the run's own import raises the error
#   where it would have without the thread. The thread is not a daemon (joined anyway).

BACKGROUND = {}  # perf_counter/thread CPU clocks of the thread's import, for bench/startup.py
_LOCK = threading.Lock()


@contextlib.contextmanager
def importing_xarray():
    """A block (one run) during which xarray is imported on a background thread; waits for it on exit."""
    thread = None
    if "xarray" not in sys.modules:
        with _LOCK:
            if not BACKGROUND:  # once per process
                BACKGROUND["start"] = time.perf_counter()
                thread = threading.Thread(target=_import_xarray, name="noether_sim-import-xarray", daemon=False)
                thread.start()
    try:
        yield
    finally:
        if thread is not None:
            thread.join()


def _import_xarray():
    c0 = time.thread_time()
    try:
        import xarray  # noqa: F401
    except BaseException:  # the run's own import raises it (xarray_module)
        BACKGROUND["failed"] = True
    BACKGROUND["end"] = time.perf_counter()
    BACKGROUND["cpu"] = time.thread_time() - c0


def xarray_module():
    """The xarray module: imported here, or completed by the background import (waits for it)."""
    t0 = time.perf_counter()
    import xarray

    if BACKGROUND and "waited" not in BACKGROUND:
        BACKGROUND["waited"] = time.perf_counter() - t0
    return xarray
