"""noether_sim: simulate how networks train, and measure what training leaves unchanged.

``import noether_sim`` loads nothing heavy: every public name below is imported on first use
(PEP 562 module ``__getattr__``), so numba, xarray, zarr, dask, scipy and matplotlib are imported only
by the calls that need them, and only the kernels a call runs are loaded or compiled.
"""

__version__ = "0.1.0"

from ._kernel_cache import refresh_stale_kernel_cache  # noqa: E402

refresh_stale_kernel_cache()  # before any kernel is imported: numba's cache misses cross-file edits

# public name -> the module that defines it (a module name alone: the submodule itself)
_LAZY = {
    "Charge": ".charges",
    "ConfigError": "._validate",
    "CustomModel": ".custom",
    "DeepLinear": ".models",
    "LoRA": ".lora",
    "MLP": ".mlp",
    "ResidualMLP": ".resnet",
    "SelfAttention": ".attention",
    "Stats": ".stats",  # simulate(..., keep=Stats(...))
    "TrainingData": ".data",
    "analyse_ladder": ".ladder",
    "charge_matrix": ".simulate",
    "data": ".data",
    "discover": ".discover",
    "flow_from_heavy_ball": ".dynamics",
    "heavy_ball_from_flow": ".dynamics",
    "init": ".init",
    "judge": ".laws",
    "load": ".results",
    "methods": ".methods",
    "minibatch_indices": ".stochastic",
    "minibatch_indices_of": ".stochastic",
    "run_ladder": ".ladder",
    "run_study": ".execute",  # studies and sweeps into a store, here or on Dask
    "simulate": ".simulate",
    "summarise_verdicts": ".ladder",
    "teacher_classification": ".mlp",
    "teacher_regression": ".mlp",
    "teleport": ".teleport",
}
_SUBMODULES = {"data", "init", "methods"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    """Import a public name on first access (and keep it, so the next access is a plain lookup)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'noether_sim' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name], __name__)
    value = module if name in _SUBMODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(type(__import__("sys"))):
    """The package module, with one rule: the subpackage ``noether_sim.discover`` must not shadow the
    function ``ns.discover`` when something imports the subpackage first (the import system then sets the
    package attribute to the submodule; before, the eager ``from .discover import discover`` overwrote it)."""

    def __setattr__(self, name, value):
        if name in _LAZY and name not in _SUBMODULES and isinstance(value, type(self).__mro__[1]):
            return  # keep the public function; __getattr__ resolves it on first use
        super().__setattr__(name, value)


__import__("sys").modules[__name__].__class__ = _Package
