"""A safe key for numba's on-disk cache of the kernels in this folder.

numba keys a cached function on its own source file, its bytecode, its signature and the CPU. That
misses three things that change the machine code of a kernel: an edit to a *callee in another file*
(every driver calls models.py, linear.py, …), the numba/llvmlite version pair that compiled it (numba
only checks its own version), and the compiler options that come from the environment
(``NUMBA_OPT``, ``NUMBA_BOUNDSCHECK``, ``NUMBA_LOOP_VECTORIZE``, …). Nor does it check that a cache file
is intact: a truncated or damaged file is unpickled as it is, or raises out of the dispatcher.

So the kernels' cache is keyed here by ``CACHE_KEY``, a SHA-256 of every kernel source file, those
versions and those options. The key is part of every cache file name (two installs or two option
sets write side by side and never read each other's files) and is the index's source stamp (an
index written under another key is ignored and rewritten by numba itself). Every file we write
starts with a SHA-256 of its content; a file whose checksum does not match, or that cannot be
read, is treated as absent: the kernel is compiled again and the file rewritten. Functions in
other folders keep numba's own locators.

``install()`` (run by ``kernels/__init__.py`` before any kernel is defined) puts the locator first
in numba's list and wraps ``Cache.__init__`` so that only caches located by it use checked files and
load without numba's target start-up (``load_without_refresh``); it also keeps numba's start-up, when a
kernel is compiled, from importing scipy.linalg (``defer_blas_import``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
_FORMAT = "1"  # bump when the layout of our cache files changes
_OPTIONS = ("OPT", "BOUNDSCHECK", "DEBUGINFO_DEFAULT", "LOOP_VECTORIZE", "SLP_VECTORIZE", "ENABLE_AVX",
            "USING_SVML", "DISABLE_JIT", "EXTEND_VARIABLE_LIFETIMES", "CPU_NAME", "CPU_FEATURES")


def key_parts() -> dict:
    """Everything the kernels' machine code depends on beyond what numba's index already keys on."""
    import llvmlite
    import numba
    from numba.core import config

    sources = hashlib.sha256()
    for p in sorted(FOLDER.glob("*.py")):
        sources.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return {"format": _FORMAT, "sources": sources.hexdigest(), "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "python": sys.version,
            **{f"config.{k}": repr(getattr(config, k, None)) for k in _OPTIONS}}


def cache_key(parts: dict | None = None) -> str:
    parts = key_parts() if parts is None else parts
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]


CACHE_KEY = cache_key()


def _locator_class():
    from numba.core import caching, config
    from numba.misc.appdirs import AppDirs

    class KernelCacheLocator(caching._CacheLocator):
        """Cache files of the functions defined in kernels/: NUMBA_CACHE_DIR when set, else the
        folder's __pycache__, else numba's user-wide cache folder; keyed by CACHE_KEY."""

        def __init__(self, py_func, py_file, cache_path):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno if py_func is not None else 0
            self._cache_path = cache_path

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return CACHE_KEY

        def get_disambiguator(self):
            return f"{self._lineno}.{CACHE_KEY}"

        @classmethod
        def from_function(cls, py_func, py_file):
            path = cls._path_for(py_file, config.CACHE_DIR)
            return None if path is None else cls(py_func, py_file, path)

        @classmethod
        @functools.lru_cache(maxsize=None)
        def _path_for(cls, py_file, cache_dir):
            """The cache folder of a kernel file (None for files elsewhere): worked out, created and tested
            for writing once per source file and process, not once per function (217 at import)."""
            if Path(py_file).resolve().parent != FOLDER:
                return None
            sub = cls.get_suitable_cache_subpath(py_file)
            candidates = ([os.path.join(cache_dir, sub)] if cache_dir else
                          [str(FOLDER / "__pycache__"),
                           os.path.join(AppDirs(appname="numba", appauthor=False).user_cache_dir, sub)])
            for path in candidates:
                try:
                    cls(None, py_file, path).ensure_cache_path()
                except OSError:
                    continue
                return path
            return None

    return KernelCacheLocator


def _checked_file_class():
    import io
    import pickle

    from numba.core import caching

    class CheckedCacheFile(caching.IndexDataCacheFile):
        """numba's index + data files, each prefixed by the SHA-256 of its content; a file that does
        not match, or does not unpickle, reads as absent (so the kernel is compiled and rewritten)."""

        def _load_index(self):  # numba's, reading through the checksum
            try:
                f = io.BytesIO(_read_checked(self._index_path))
                if pickle.load(f) != self._version:
                    return {}
                stamp, overloads = pickle.loads(f.read())
            except Exception:  # absent or damaged: as if there were no index
                return {}
            return overloads if stamp == self._source_stamp else {}

        def _load_data(self, name):
            path = self._data_path(name)
            try:
                return pickle.loads(_read_checked(path))
            except OSError:
                raise
            except Exception:  # damaged: numba's load() treats a missing file as a miss
                raise FileNotFoundError(path) from None

        def _open_for_write(self, filepath):
            return _Summed(super()._open_for_write(filepath))

    return CheckedCacheFile


class _Summed:
    """Context manager around numba's atomic write: collects the bytes, writes checksum + bytes."""

    def __init__(self, inner):
        self._inner = inner
        self._parts = []

    def __enter__(self):
        return self

    def write(self, b):
        self._parts.append(bytes(b))
        return len(b)

    def __exit__(self, *exc):
        if exc[0] is not None:
            return self._inner.__exit__(*exc)
        raw = b"".join(self._parts)
        f = self._inner.__enter__()
        try:
            f.write(hashlib.sha256(raw).digest() + raw)
        except BaseException:
            if not self._inner.__exit__(*sys.exc_info()):
                raise
            return False
        return self._inner.__exit__(None, None, None)


def _read_checked(path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 32 or hashlib.sha256(raw[32:]).digest() != raw[:32]:
        raise ValueError(f"checksum mismatch in {path}")
    return raw[32:]


_INSTALLED = []


def load_without_refresh(cache, sig, target_context):
    """numba's ``Cache.load_overload`` without the target context's refresh (for the kernels' caches).

    Before every load numba refreshes the target context: it imports and registers every typing and
    lowering module of numba (``numba.cpython.*``, ``numba.np.*``, ``numba.typed``, …) and runs the
    entry points of third-party extensions: ≈ 0.2 s CPU of a warm start, paid by the first load. Loading
    machine code needs none of it (the cached library is object code, linked against numba's C helpers,
    which are registered when the context is created; the modules whose globals the code refers to are
    imported by the unpickling itself); it needs the runtime (NRT) whose functions the code calls, which
    the refresh initialises, so that is done here. A miss compiles as usual, and numba's compiler
    refreshes the context itself before typing anything.
    """
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)
    with _blas_probed(), cache._guard_against_spurious_io_errors():
        return cache._load_overload(sig, target_context)
    # None returned if the `with` block swallows an exception (as numba's load_overload)


@contextlib.contextmanager
def _blas_probed():
    """While numba.np.arraymath is first imported in this block, it asks a probe whether BLAS is there."""
    if "numba.np.arraymath" in sys.modules:
        yield
        return
    from numba.np import linalg

    real = linalg.ensure_blas

    def probe():
        try:  # scipy.linalg's folder holds the cython_blas extension (finding it imports scipy only)
            spec = importlib.util.find_spec("scipy.linalg")
            found = spec is not None and any(
                any(Path(d).glob("cython_blas*")) for d in (spec.submodule_search_locations or ()))
        except ImportError:
            found = False
        if not found:
            raise ImportError("scipy 0.16+ is required for linear algebra")

    linalg.ensure_blas = probe
    try:
        yield
    finally:
        linalg.ensure_blas = real


def defer_blas_import():
    """Let numba's start-up ask whether BLAS is there without importing scipy.linalg (≈ 0.15 s).

    ``numba.np.arraymath`` runs ``ensure_blas()`` when it is imported (by the target context's
    registries, the first time a function is compiled, or by loading a cached function that refers to
    it) only to set a flag, and that imports ``scipy.linalg``. The kernels never call BLAS. While
    arraymath is first imported by either, ``ensure_blas`` is replaced by a probe that answers the same
    question (is ``scipy.linalg.cython_blas`` importable?) without importing it (``_blas_probed``); then
    the real one is put back, so a compiled ``np.dot`` anywhere still imports and checks BLAS as before.
    """
    from numba.core import cpu

    real_load = cpu.CPUContext.load_additional_registries
    if getattr(real_load, "_probes_blas", False):
        return

    def load_additional_registries(self):
        with _blas_probed():
            import numba.np.arraymath  # noqa: F401
        return real_load(self)

    load_additional_registries._probes_blas = True
    cpu.CPUContext.load_additional_registries = load_additional_registries


def install():
    """Put the kernels' locator first and give their caches checked files (idempotent)."""
    if _INSTALLED:
        return
    from numba.core import caching

    locator = _locator_class()
    checked = _checked_file_class()
    original_init = caching.Cache.__init__

    def __init__(self, py_func):
        original_init(self, py_func)
        if isinstance(self._impl.locator, locator):
            self._cache_file.__class__ = checked
            self.load_overload = functools.partial(load_without_refresh, self)

    caching.Cache.__init__ = __init__
    defer_blas_import()
    caching.CacheImpl._locator_classes.insert(0, locator)
    _INSTALLED.append(locator)
