"""Keep numba's on-disk cache of the kernels consistent with their sources.

numba keys a cached function on the contents of its *own* source file only. A kernel whose callee
lives in another file (every driver calls models.py, linear.py, mlp.py, …) would keep running its
stale compiled code after that callee changes — silently wrong numbers. So before the kernels are
imported we hash all their sources together; when the hash differs from the one recorded at the
last import, the kernels' cache files are deleted (in kernels/__pycache__, and under
NUMBA_CACHE_DIR when that is set) and numba compiles afresh.

Correctness does not rest on this clean-up: kernels/_numba_cache.py keys every cache file by a hash
of all kernel sources, the numba/llvmlite versions and the compiler options, and checksums it, so an
outdated or damaged file is never loaded. Deleting them keeps the folder from filling up.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

_STAMP = "noether_sim_kernel_sources.sha256"


def _cache_dirs(folder: Path) -> list[Path]:
    """Where numba keeps the cache files of functions defined in ``folder``."""
    from numba.core import caching, config

    dirs = [folder / "__pycache__"]
    if config.CACHE_DIR:  # numba's _UserProvidedCacheLocator
        dirs.append(Path(config.CACHE_DIR) / caching._CacheLocator.get_suitable_cache_subpath(str(folder / "x.py")))
    # (A read-only install falls back to numba's user-wide cache; the stamp below cannot be written
    # there either, so such an install is never refreshed — it also never changes.)
    return dirs


def refresh_stale_kernel_cache() -> bool:
    """Delete numba's cache of the kernels if any kernel source changed; True if it did."""
    spec = importlib.util.find_spec("noether_sim.kernels")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(list(spec.submodule_search_locations)[0])
    sources = sorted(folder.glob("*.py"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()
    stamp = folder / "__pycache__" / _STAMP
    try:
        if stamp.exists() and stamp.read_text() == digest:
            return False
        modules = {p.stem for p in sources}
        for cache_dir in _cache_dirs(folder):
            for path in list(cache_dir.glob("*.nbi")) + list(cache_dir.glob("*.nbc")):
                if path.name.split(".")[0] in modules:  # "driver._integrate_seed-102.py311.nbi"
                    path.unlink()
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        return False
    return True
