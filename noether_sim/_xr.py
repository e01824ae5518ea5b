"""Building xarray results from NumPy arrays without importing dask.

xarray asks, for every array it wraps, whether it is a dask array, and answers by importing
``dask.array`` (``xarray.namedarray.pycompat.array_type("dask")``) or ``dask.base`` (``xarray.namedarray.utils.is_dask_collection``) when dask is installed: 0.3–0.4 s,
a third of a warm start, for a run that never touches dask. While dask has not been
imported no object can be a dask array, so for the length of a ``numpy_only()`` block xarray is told
dask is absent; the answer is taken back afterwards, so a later use of dask (a store opened lazily,
a Dask cluster) sees dask as usual.
"""

import contextlib
import sys


@contextlib.contextmanager
def numpy_only():
    """A block that builds xarray objects from NumPy arrays only; it does not import dask."""
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
