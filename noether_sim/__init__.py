"""noether_sim: simulate how networks train, and measure what training leaves unchanged."""

__version__ = "0.1.0"

from ._kernel_cache import refresh_stale_kernel_cache  # noqa: E402

refresh_stale_kernel_cache()  # before any kernel is imported: numba's cache misses cross-file edits

from . import data, init, methods  # noqa: E402
from ._validate import ConfigError  # noqa: E402
from .data import TrainingData  # noqa: E402
from .dynamics import flow_from_heavy_ball, heavy_ball_from_flow  # noqa: E402
from .ladder import analyse_ladder, run_ladder, summarise_verdicts  # noqa: E402
from .laws import judge  # noqa: E402
from .models import DeepLinear  # noqa: E402
from .mlp import MLP, teacher_classification, teacher_regression  # noqa: E402
from .lora import LoRA  # noqa: E402
from .results import load  # noqa: E402
from .simulate import charge_matrix, simulate  # noqa: E402
from .stochastic import minibatch_indices, minibatch_indices_of  # noqa: E402
from .stats import Stats  # noqa: E402  (simulate(..., keep=Stats(...)))

from .discover import discover  # noqa: E402

from .execute import run_study  # noqa: E402  (studies and sweeps into a store, here or on Dask)

__all__ = ["ConfigError", "DeepLinear", "LoRA", "MLP", "Stats", "TrainingData", "analyse_ladder", "charge_matrix", "data", "discover",
           "flow_from_heavy_ball", "heavy_ball_from_flow", "init", "judge", "load", "methods", "minibatch_indices",
           "minibatch_indices_of", "run_ladder", "run_study", "simulate", "summarise_verdicts", "teacher_classification",
           "teacher_regression"]
