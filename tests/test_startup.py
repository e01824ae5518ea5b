"""Start-up: ``import noether_sim`` loads nothing heavy, a run imports only what it uses, and the
public names still resolve (noether_sim/__init__.py, noether_sim/_xr.py). Timings live in bench/startup.py."""

import json
import subprocess
import sys

HEAVY = ("numba", "xarray", "zarr", "dask", "scipy", "matplotlib", "pandas")


def _modules_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in "
                          f"{HEAVY!r} if m in sys.modules)))"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_imports_none_of_the_heavy_libraries():
    assert _modules_after("import noether_sim") == []


def test_a_run_does_not_import_dask_zarr_or_matplotlib():
    loaded = _modules_after("import noether_sim as ns\n"
                            "ns.simulate(ns.DeepLinear((3, 2)), ns.data.synthetic_regression(3, 2, 8), method='euler',"
                            " h=0.01, n_steps=2, save_every=0.02, seeds=2)")
    assert "numba" in loaded and "xarray" in loaded  # the check can fail: it sees what a run imports
    assert not {"dask", "zarr", "matplotlib"} & set(loaded)


def test_every_public_name_resolves_and_discover_stays_the_function():
    import noether_sim as ns
    from noether_sim.discover import discovery  # the subpackage imported before ns.discover is asked for

    assert callable(ns.discover) and ns.discover is discovery.discover
    for name in ns.__all__:
        assert getattr(ns, name) is not None, name
    assert set(ns.__all__) <= set(dir(ns))
    try:
        ns.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_xarray_still_recognises_dask_arrays_after_a_numpy_only_block():
    import dask.array as da
    import numpy as np
    import xarray as xr

    from noether_sim._xr import numpy_only

    with numpy_only():
        plain = xr.DataArray(np.zeros(3))
    assert isinstance(plain.data, np.ndarray)
    lazy = xr.DataArray(da.zeros(4, chunks=2))
    assert lazy.chunks == ((2, 2),)
    assert float(lazy.sum()) == 0.0


def test_numba_start_up_does_not_import_scipy_linalg_and_blas_still_works():
    code = r"""
import sys, json, numpy as np, numba
from noether_sim.kernels import counter_rng as c
c.uniform_rows(np.uint64(1), np.uint64(2), 0, np.arange(3, dtype=np.int64), np.empty((3, 4)))  # loaded or compiled
before = "scipy.linalg" in sys.modules
from numba.np import arraymath, linalg
@numba.njit
def f(a, b):
    return np.dot(a, b)
print(json.dumps([before, bool(arraymath._HAVE_BLAS), linalg.ensure_blas.__name__, float(f(np.ones(3), np.ones(3))),
                  "scipy.linalg" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "ensure_blas", 3.0, True]

