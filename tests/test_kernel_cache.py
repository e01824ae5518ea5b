"""numba's cache keys a function on its own file only; noether_sim deletes the kernels' cache when any
kernel source changes (noether_sim/_kernel_cache.py)."""

import importlib.util
import types

from noether_sim import _kernel_cache


def test_a_changed_kernel_source_clears_the_cache_of_every_kernel_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    for name in ("driver.py", "linear.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setattr(_kernel_cache, "_cache_dirs", lambda folder: [folder / "__pycache__"])

    def fill():
        for f in ("driver._integrate_seed-102.py311.nbi", "driver._integrate_seed-102.py311.1.nbc",
                  "linear.linear_loss_grad-30.py311.nbi", "other.f-1.py311.nbi"):
            (cache / f).write_text("x")

    fill()
    assert _kernel_cache.refresh_stale_kernel_cache()  # no stamp yet: cleared
    assert sorted(p.name for p in cache.iterdir()) == ["noether_sim_kernel_sources.sha256", "other.f-1.py311.nbi"]

    fill()
    assert not _kernel_cache.refresh_stale_kernel_cache()  # nothing changed: the cache stays
    assert (cache / "driver._integrate_seed-102.py311.nbi").exists()

    (tmp_path / "linear.py").write_text("# linear.py, edited\n")  # a callee changes, its caller does not
    assert _kernel_cache.refresh_stale_kernel_cache()
    assert not (cache / "driver._integrate_seed-102.py311.nbi").exists()  # the caller's entry is gone too


# ---- the kernels' cache key and checked files (kernels/_numba_cache.py), in new interpreters ----

import os
import pickle
import subprocess
import sys

_RUN = r"""
import numpy as np
from noether_sim.kernels import counter_rng as c
out = np.empty((3, 4))
c.uniform_rows(np.uint64(1), np.uint64(2), 0, np.arange(3, dtype=np.int64), out)
print(sum(c.uniform_rows.stats.cache_hits.values()), sum(c.uniform_rows.stats.cache_misses.values()), repr(float(out.sum())))
"""


def _run(cache, **env):
    out = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, check=True,
                         env=dict(os.environ, NUMBA_CACHE_DIR=str(cache), **env))
    hits, misses, total = out.stdout.split()
    return int(hits), int(misses), float(total)


def _files(cache, pattern):
    return sorted(cache.rglob(f"counter_rng.uniform_rows-*{pattern}"))


def test_a_damaged_or_foreign_cache_entry_is_ignored_and_rebuilt_never_loaded(tmp_path):
    first = _run(tmp_path)
    assert first[:2] == (0, 1)  # compiled
    assert _run(tmp_path)[:2] == (1, 0)  # loaded: the test can tell a load from a compile
    (data,) = _files(tmp_path, ".nbc")
    (index,) = _files(tmp_path, ".nbi")

    raw = bytearray(data.read_bytes())  # one flipped byte in the middle of the machine code's pickle
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert _run(tmp_path) == (0, 1, first[2])  # not loaded: compiled again, same numbers
    assert _run(tmp_path)[:2] == (1, 0)  # and the entry was rewritten

    index.write_bytes(index.read_bytes()[:40])  # a truncated index
    assert _run(tmp_path) == (0, 1, first[2])
    assert _run(tmp_path)[:2] == (1, 0)

    # an entry written under another key (another noether_sim, numba or llvmlite version), with a valid
    # checksum: the index's stamp differs, so numba reads it as empty
    import hashlib
    import io

    body = index.read_bytes()[32:]
    f = io.BytesIO(body)
    version = pickle.load(f)
    stamp, overloads = pickle.loads(f.read())
    foreign = pickle.dumps(version, protocol=-1) + pickle.dumps(("0123456789abcdef", overloads), protocol=-1)
    index.write_bytes(hashlib.sha256(foreign).digest() + foreign)
    assert _run(tmp_path) == (0, 1, first[2])


def test_another_option_set_never_loads_the_first_ones_code(tmp_path):
    assert _run(tmp_path)[:2] == (0, 1)
    assert _run(tmp_path, NUMBA_BOUNDSCHECK="1")[:2] == (0, 1)  # another key: compiled, side by side
    assert len(_files(tmp_path, ".nbi")) == 2
    assert _run(tmp_path)[:2] == (1, 0)  # the first option set's entry is still there


def test_the_key_changes_with_every_part():
    from noether_sim.kernels import _numba_cache as nc

    parts = nc.key_parts()
    assert nc.cache_key(parts) == nc.CACHE_KEY
    for k in parts:
        assert nc.cache_key({**parts, k: parts[k] + "x"}) != nc.CACHE_KEY, k


_LOAD_THEN_COMPILE = r"""
import json, sys
import numpy as np
import numba
from noether_sim.kernels import counter_rng as c
out = np.empty((3, 4))
c.uniform_rows(np.uint64(1), np.uint64(2), 0, np.arange(3, dtype=np.int64), out)
registries = [m for m in ("numba.np.polynomial.polynomial_core", "numba.typed.typeddict", "numba.np.npyimpl")
              if m in sys.modules]  # imported only by the target context's refresh

@numba.njit
def f(a, b):  # compiled after a load that skipped the refresh: the compiler refreshes it itself
    d = {1: 2.0}
    return np.dot(a, b) + np.sum(np.sort(a)) + d[1]

print(json.dumps([sum(c.uniform_rows.stats.cache_hits.values()), registries, float(out.sum()),
                  float(f(np.ones(3), np.arange(3.0))), "scipy.linalg" in sys.modules]))
"""


def test_a_cached_kernel_loads_without_numbas_target_start_up_and_compiling_afterwards_works(tmp_path):
    """kernels/_numba_cache.load_without_refresh: a load imports none of numba's lowering registries;
    a function compiled afterwards in the same process still gets them (and BLAS for np.dot)."""
    import json

    def run():
        out = subprocess.run([sys.executable, "-c", _LOAD_THEN_COMPILE], capture_output=True, text=True, check=True,
                             env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)))
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()  # compiles uniform_rows: the registries are loaded to compile it
    assert first[0] == 0 and first[1] != []  # the check can fail: a compile does import them
    hits, registries, total, value, scipy_linalg = run()
    assert hits == 1 and registries == []  # loaded, without the refresh
    assert total == first[2]  # same numbers
    assert value == first[3] == 3.0 + 3.0 + 2.0 and scipy_linalg  # np.dot compiled after: BLAS imported, works
