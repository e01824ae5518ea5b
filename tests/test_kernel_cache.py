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
