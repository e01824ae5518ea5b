"""noether_sim: simulate how networks train, and measure what training leaves unchanged."""

__version__ = "0.1.0"

from ._kernel_cache import refresh_stale_kernel_cache  # noqa: E402

refresh_stale_kernel_cache()  # before any kernel is imported: numba's cache misses cross-file edits

from . import data, init, methods  # noqa: E402
from .data import TrainingData  # noqa: E402
from .models import DeepLinear  # noqa: E402
from .simulate import charge_matrix, simulate  # noqa: E402

__all__ = ["DeepLinear", "TrainingData", "charge_matrix", "data", "init", "methods", "simulate"]

from .ladder import analyse_ladder, run_ladder, summarise_verdicts  # noqa: E402

__all__ += ["analyse_ladder", "run_ladder", "summarise_verdicts"]

from .results import load  # noqa: E402

__all__ += ["load"]

# structure-preserving integration and momentum dynamics (issue 5)
from . import momentum  # noqa: E402
from .momentum import flow_from_heavy_ball, heavy_ball_from_flow, simulate_structured  # noqa: E402

__all__ += ["flow_from_heavy_ball", "heavy_ball_from_flow", "momentum", "simulate_structured"]

# studies and sweeps into a result store, on this process or a Dask cluster
from .execute import run_study  # noqa: E402

__all__ += ["run_study"]
