"""``discover``: the count of independent conservation laws of a model, its low-degree laws and the
catalogue check, gathered in a ``DiscoveryResult``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._validate import fail, positive, positive_int
from ..data import TrainingData
from .lie import _Fields, _generic_theta, _sample_data, lie_rank
from .laws import LawBasis, STRUCTURES, _products_in, solve_linear, solve_quadratic
from .catalogue import CatalogueCheck, _check_catalogue


FLOWS = ("gradient", "momentum")


@dataclass(frozen=True)
class DiscoveryResult:
    """What ``discover`` found. ``count`` is None when the rank could not be decided (see ``message``).

    ``count`` is dim − the largest rank over the sampled points. For smooth networks every generic point
    gives the same rank; for piecewise-linear ones (ReLU with biases, deeper than two layers) the rank
    can differ between activation regions of θ, each of positive measure: ``counts`` lists them.
    """

    model: dict
    flow: str
    tau: float | None
    n_params: int
    dim: int
    count: int | None
    decided: bool
    message: str
    points: list
    linear: LawBasis
    quadratic: LawBasis
    catalogue: CatalogueCheck
    n_data: int
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def counts(self) -> list:
        return [self.dim - p.decision.rank for p in self.points]

    @property
    def rank(self) -> int:
        return self.dim - self.count if self.count is not None else max(p.decision.rank for p in self.points)

    def summary_row(self) -> dict:
        m = self.model
        name = (f"attention d={m['d_model']} heads={m['heads']} d_k={m['d_k']} d_v={m['d_v']} T={m['tokens']}"
                + (" causal" if m["causal"] else "") if m["kind"] == "attention" else None) or m["kind"] + (f"/{m['activation']}" if "activation" in m else "") + \
            (f"/{m['loss']}" if m.get("loss", "squared") != "squared" else "") + \
            ("/norm" if m.get("normalised_first_layer") else "") + (f"/{m['normalisation']}norm" if m.get("normalisation") else "") + \
            ("/residual" if m.get("residual") else "") + f" {list(m['widths'])}" + (" +bias" if m["bias"] else "") + \
            (f" K={m['blocks']} m={m['hidden']}" + ("" if m["input_projection"] else " no-in")
             + ("" if m["output_projection"] else " no-out") if m["kind"] == "residual_mlp" else "") + \
            (f" +LoRA r={m['lora_rank']} on {m['lora_layers']}" if m.get("lora") else "")
        return {"model": name, "flow": self.flow, "P": self.n_params,
                "count": "?" if self.count is None else str(self.count),
                "gap": f"{min(p.decision.gap for p in self.points):.2g}",
                "linear": str(self.linear.dim), "quadratic": f"{self.quadratic.dim} ({self.quadratic.structure}"
                + (f"; {self.quadratic.products} products of linear)" if self.quadratic.products else ")"),
                "catalogue": f"{self.catalogue.independent}",
                "complete": "yes" if self.catalogue.complete else "NO",
                "seconds": f"{self.seconds:.1f}"}

    def __str__(self) -> str:
        lines = [format_table([self]), "", self.message]
        for k, p in enumerate(self.points):
            lines.append(f"  point {k}: rank by bracket depth {list(p.rank_by_depth)}; {p.decision.message}")
        lines.append(f"  {self.linear.form}: {self.linear.dim} ({self.linear.decision.message})")
        lines.append(f"  {self.quadratic.form} [{self.quadratic.structure}]: {self.quadratic.dim} "
                     f"({self.quadratic.decision.message})")
        for g in self.catalogue.groups:
            what = "your charge" if g.get("user") else "catalogue"
            measure = " by ⟨∇q, ∇ℓ_n⟩, central differences" if g["degree"] == "function" else ""
            lines.append(f"  {what} {g['name']}: {g['components']} components, "
                         f"{'conserved' if g['conserved'] else 'NOT conserved'} (residual {g['residual']:.1e}"
                         f"{measure}): "
                         f"{g['description']}")
        for text in self.catalogue.missing:
            lines.append(f"  missing from the catalogue: {text}")
        for text in self.catalogue.notes:
            lines.append(f"  note: {text}")
        return "\n".join(lines)


def format_table(results) -> str:
    """One line per ``DiscoveryResult``: model, flow, parameters, law count, smallest deciding gap, linear
    and quadratic laws found, the catalogue's share and whether it is complete (``noether-sim discover``).

    Examples
    --------
    >>> import noether_sim as ns
    >>> from noether_sim.discover import format_table
    >>> print(format_table([ns.discover(ns.DeepLinear((4, 3, 3)))]).splitlines()[0].split()[:4])
    ['model', 'flow', 'P', 'laws']
    """
    rows = [r.summary_row() for r in results]
    heads = {"model": "model", "flow": "flow", "P": "P", "count": "laws", "gap": "min gap",
             "linear": "linear", "quadratic": "quadratic", "catalogue": "catalogue",
             "complete": "complete?", "seconds": "s"}
    widths = {k: max(len(h), *(len(str(r[k])) for r in rows)) for k, h in heads.items()}
    out = ["  ".join(h.ljust(widths[k]) for k, h in heads.items())]
    for r in rows:
        out.append("  ".join(str(r[k]).ljust(widths[k]) for k in heads))
    return "\n".join(out)


def discover(model, data: TrainingData | None = None, *, points: int = 2, seed: int = 0, flow: str = "gradient",
             tau: float = 1.0, n_data: int | None = None, max_depth: int | None = None, quadratic: str = "auto",
             min_gap: float = 1e4, catalogue: bool = True, layer_lr=None, bias_lr=None) -> DiscoveryResult:
    """Count and find the conservation laws of ``model`` (a DeepLinear or MLP; a CustomModel from its
    gradient alone, with its data: see ``discover.custom``, which returns a ``CustomDiscovery``).

    Parameters
    ----------
    model : DeepLinear, MLP, ResidualMLP, SelfAttention, LoRA or CustomModel
        The network whose laws are sought. A built-in model with user charges (``model.with_charges``)
        is searched as the model itself, and its user charges are checked as the catalogue is: a
        quadratic or linear charge is conserved when θᵀS∇ℓ (⟨v, ∇ℓ⟩) vanishes, relative to its terms,
        at sampled θ and random combinations ℓ of the data's losses; a function charge when ⟨∇q, ∇ℓ⟩
        does (central differences of q, ``Charge.function``). They are reported among
        ``catalogue.groups`` flagged ``"user": True`` and do not enter the catalogue's own count,
        ``complete`` or ``missing``. Under ``flow="momentum"`` only linear user charges are checked.
    data : TrainingData, optional
        The data points whose per-sample gradient fields generate the dynamics; laws found hold for
        every data set made of these points. None: ``n_data`` generic points (Gaussian inputs, Gaussian
        targets or random soft labels), i.e. laws that hold for every data set.
    points : int
        Number of generic parameter points (and velocities, under momentum) at which the Lie algebra's
        dimension is measured; the count is taken where it is largest (see ``DiscoveryResult``). With
        piecewise-linear activations θ is redrawn until every hidden neuron changes sign over the data:
        one that is dead, or linear, on all of it opens extra laws that hold only in that region.
    seed : int
        Seed of the random points, data and bracket combinations.
    flow : {"gradient", "momentum"}
        ``θ̇ = −∇L``, or ``τθ̈ + θ̇ = −∇L`` (laws ``h(θ, θ̇, t)``).
    tau : float
        Momentum flow's time constant.
    n_data : int, optional
        Number of generic data points when ``data`` is None (default P + 8).
    max_depth : int, optional
        Deepest bracket tried; the rank must stop growing before it (default 4 for gradient flow, 5 for
        momentum flow, whose drift field takes more brackets to fill its algebra).
    quadratic : {"auto", "full", "layer_gram"}
        "auto": the full symmetric search up to 1200 unknowns (P ≤ 48), else "layer_gram", the forms
        ``Σ_i ⟨A_i, W̃_iW̃_iᵀ⟩ + ⟨B_i, W̃_iᵀW̃_i⟩`` of the augmented layers ``W̃_i = [W_i, b_i]``.
    min_gap : float
        The singular-value ratio a rank decision needs; below it the result says undecided.
    catalogue : bool
        Check the model's hand-written charges against the laws found.
    layer_lr : sequence of float, optional
        Gradient flow with layer-wise rates θ̇_i = −m_i∇_{θ_i}L (biases with their layer): the fields are
        M∇ℓ_j, and the catalogue checked is the weighted one (C_i = W_{i+1}ᵀW_{i+1}/m_{i+1} − W_iW_iᵀ/m_i,
        r_η = (‖w_in‖² + b²)/m_in − α‖w_out‖²/m_out; linear charges v/m).
    bias_lr : float or sequence of float, optional
        The biases' own multipliers m_{b_i} (one number: every layer's), as in ``simulate``; the weighted
        catalogue then divides b_ib_iᵀ (b²) by m_{b_i}. Given alone, the layers' multipliers are 1.

    Returns
    -------
    DiscoveryResult
        ``.count`` (independent laws; None if undecided), ``.linear`` and ``.quadratic`` law bases,
        ``.catalogue`` (the model's hand-written charges against them); ``print(result)`` shows a table.

    Raises
    ------
    ConfigError
        An invalid option, named with its value and what is allowed.

    Examples
    --------
    >>> import noether_sim as ns
    >>> ns.discover(ns.DeepLinear((4, 3, 3))).count      # the r(r + 1)/2 entries of D_1, r = 3
    6
    >>> ns.discover(ns.DeepLinear((4, 3, 3)), flow="momentum").count   # r(r − 1)/2 rotations
    3

    User charges: the entry D1[0, 0] written by hand as ½θᵀSθ, and ‖θ‖²:

    >>> import numpy as np
    >>> S = np.diag([-2.0, -2.0, 0.0, 0.0, 2.0, 0.0])                   # W_2[0,0]² − |W_1[0,:]|²
    >>> model = ns.DeepLinear((2, 2, 1)).with_charges(ns.Charge.quadratic(S, "d00"),
    ...                                               ns.Charge.quadratic(np.eye(6), "norm"))
    >>> [(g["name"], g["conserved"], g.get("user", False)) for g in ns.discover(model).catalogue.groups]
    [('D1', True, False), ('d00', True, True), ('norm', False, True)]
    """
    from ..attention import SelfAttention
    from ..lora import LoRA
    from ..models import DeepLinear
    from ..resnet import ResidualMLP

    if getattr(model, "kind", None) == "custom":  # a user's model: from its gradient alone (discover/custom.py)
        from .custom import discover_custom

        return discover_custom(model, data, points=points, seed=seed, min_gap=min_gap, quadratic=quadratic)
    charged = model if getattr(model, "user_charges", None) and hasattr(model, "base") else None
    if charged is not None:  # model.with_charges(...): discover on the model, check the user's charges too
        model = charged.base
    if not isinstance(model, (DeepLinear, SelfAttention, LoRA, ResidualMLP)):
        fail("model", model, "must be a noether_sim model (DeepLinear, mlp.MLP, ResidualMLP, SelfAttention, LoRA or "
                             "CustomModel)")
    if flow not in FLOWS:
        fail("flow", flow, f"must be one of {', '.join(FLOWS)}")
    if quadratic not in STRUCTURES:
        fail("quadratic", quadratic, f"must be one of {', '.join(STRUCTURES)}")
    points = positive_int("points", points)
    if max_depth is None:
        max_depth = 4 if flow == "gradient" else 5
    max_depth = positive_int("max_depth", max_depth)
    if max_depth > 6:
        fail("max_depth", max_depth, "must be at most 6 (each depth costs about three times the previous one)")
    tau = positive("tau", tau)
    min_gap = positive("min_gap", min_gap)
    if min_gap <= 1:
        fail("min_gap", min_gap, "must be a ratio > 1 (e.g. 1e4)")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        fail("seed", seed, "must be an integer >= 0")
    started = time.perf_counter()
    P = model.n_params
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED12]))
    if data is None:
        n_data = (P + 8) if n_data is None else positive_int("n_data", n_data)
        X, Y = _sample_data(model, rng, n_data)
    else:
        if not isinstance(data, TrainingData):
            fail("data", data, "must be a noether_sim TrainingData (e.g. noether_sim.data.from_arrays(X, Y)) or None")
        data.check_fits(model)
        if n_data is not None:
            fail("n_data", n_data, "is only used without data (data=None); the data set fixes the points")
        X, Y = data.X, data.Y
    fields = _Fields(model, X, Y, flow, tau, _layer_scale(model, layer_lr, flow, bias_lr))
    stamps = [time.perf_counter()]
    results, notes = [], []
    for _ in range(points):
        theta, one_sided = _generic_theta(model, X, rng)
        if one_sided:
            notes.append(f"no draw of θ found in which every hidden neuron changes sign over the data "
                         f"({', '.join(one_sided)} do not): the count is that of a non-generic region")
        z0 = theta if flow == "gradient" else np.concatenate([theta, rng.standard_normal(P) / math.sqrt(P), [0.0]])
        results.append(lie_rank(fields, z0, rng, max_depth=max_depth, min_gap=min_gap))
    point_ranks = [p.decision.rank for p in results]
    decided = all(p.decision.decided and p.stable for p in results)
    count = fields.dim - max(point_ranks) if decided else None
    if decided and len(set(point_ranks)) == 1:
        message = (f"{count} independent conservation law{'s' if count != 1 else ''} at generic points: "
                   f"dim Lie = {fields.dim - count} of {fields.dim} at each of {points} points")
    elif decided:  # piecewise-linear networks: regions of θ with fewer active patterns hold extra local laws
        message = (f"{count} independent conservation law{'s' if count != 1 else ''} where the Lie algebra is "
                   f"largest; the count varies with θ: {[fields.dim - r for r in point_ranks]} at the "
                   f"{points} points (extra laws hold locally in some activation regions)")
    else:
        bad = [p for p in results if not (p.decision.decided and p.stable)][0]
        message = (bad.decision.message if not bad.decision.decided else
                   f"undecided: the rank still grew at bracket depth {bad.depth} = max_depth "
                   f"(ranks {list(bad.rank_by_depth)}); raise max_depth")
    stamps.append(time.perf_counter())
    lin = solve_linear(model, fields, rng, min_gap,
                       form="linear ⟨v, θ⟩" if flow == "gradient" else
                       "linear: each v gives e^{t/τ}⟨v, p⟩ and ⟨v, q + τp⟩")
    stamps.append(time.perf_counter())
    quad = solve_quadratic(model, fields, rng, min_gap, quadratic, antisymmetric=(flow == "momentum"))
    quad = LawBasis(quad.form, quad.basis, quad.decision, quad.structure, quad.n_rows,
                    _products_in(quad, lin, P, flow == "momentum"))
    stamps.append(time.perf_counter())
    cat = _check_catalogue(charged or model, fields, lin, quad, count, rng, min_gap) if catalogue else \
        CatalogueCheck([], 0, False, [], [], [], ["catalogue not checked"])
    stamps.append(time.perf_counter())
    timings = dict(zip(("lie", "linear", "quadratic", "catalogue"), np.diff(stamps).round(4).tolist()))
    if notes:
        cat = CatalogueCheck(cat.groups, cat.independent, cat.complete, cat.missing_linear, cat.missing_quadratic,
                             cat.missing, cat.notes + notes[:1])
    return DiscoveryResult((charged or model).to_config(), flow, tau if flow == "momentum" else None, P, fields.dim, count,
                           decided, message, results, lin, quad, cat, fields.N, time.perf_counter() - started,
                           {"points": points, "seed": seed, "max_depth": max_depth, "min_gap": min_gap,
                            "quadratic": quadratic, "seconds_by_stage": timings})


def _layer_scale(model, layer_lr, flow, bias_lr=None):
    """m_i for every weight of layer i and m_{b_i} for its bias (m_i unless ``bias_lr``), or None;
    ConfigError for bad multipliers."""
    if layer_lr is None and bias_lr is not None:
        layer_lr = [1.0] * model.n_layers
    if layer_lr is None:
        return None
    arr = np.asarray(layer_lr, dtype=float) if np.iterable(layer_lr) else np.array([np.nan])
    if arr.ndim != 1 or len(arr) != model.n_layers or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        fail("layer_lr", layer_lr, f"must be {model.n_layers} finite multipliers > 0, one per layer")
    if flow != "gradient":
        fail("layer_lr", layer_lr, "applies to flow='gradient'")
    if getattr(model, "kind", "") == "residual_mlp":
        fail("layer_lr", layer_lr, "is not available for residual blocks (their weighted charges are not catalogued)")
    mb = arr
    if bias_lr is not None:
        if not getattr(model, "bias", False):
            fail("bias_lr", bias_lr, "needs a network with biases (bias=True)")
        mb = np.asarray([bias_lr] * model.n_layers if np.isscalar(bias_lr) else bias_lr, dtype=float)
        if mb.ndim != 1 or len(mb) != model.n_layers or not np.all(np.isfinite(mb)) or np.any(mb <= 0):
            fail("bias_lr", bias_lr, f"must be one finite multiplier > 0 or {model.n_layers}, one per layer's bias")
    out = np.empty(model.n_params)
    for i, (W, b) in enumerate(model.unflatten(np.arange(model.n_params)), start=1):
        out[W.ravel()] = arr[i - 1]
        if b is not None:
            out[b] = mb[i - 1]
    return out
