"""The exact discrete laws a dynamics keeps, and the verdicts they allow.

A charge's verdict says what the *flow* does to it: "conserved by the flow", "broken by the flow" or
"inconclusive". A ladder (``ladder.analyse_ladder``) reaches it by extrapolating the charge to h → 0.
Some dynamics know more: their step obeys an exact law that holds to round-off at any step size when
the symmetry behind the charge holds (docs/theory.md, "What integrators do to charges"):

    gradient descent, model charges     q_{k+1} = (1 − ηλ)^d q_k + η² q(g_k)  (d = 2; −η q(g_k) for d = 1):
                                        ``residual`` = |q − q_pred|, the drift the law does not explain
    gradient descent, data charges      ⟨θ̇_1, W_1K⟩ = 0 at every iterate: ``drift``
    heavy ball, isometric / data        J_{k+1} = βJ_k, β = e^{−h/τ} (conformal symplectic Euler): ``drift``
    splittings of momentum flow,        J(t) = e^{−t/τ}J(0) at any step (conformal symplectic): ``drift``
    isometric / data
    heavy ball / Nesterov, model        the charge moves, but J = q(θ_k) − βq(θ_{k−1}) + a_k stays constant
    charges                             (kernels/driver.py ``_algorithm_law``): ``law_residual``

Where such a law holds (its residual within ``HOLDS_FACTOR`` round-off floors), the drift that remains
is entirely the step's, and vanishes with it: the charge is conserved by the flow, whatever the step
size, from a single run. Where the residual stands far above the floor (``FAILS_FACTOR`` floors), the
symmetry does not hold and the law fails. In between, or for dynamics with no exact law, a ladder decides.

"The flow" of a verdict is the one a ladder converges to as h → 0 (``limit_flow``): gradient flow for
gradient descent and methods of gradient flow, momentum flow for momentum methods, heavy ball and
Nesterov; but the adaptive optimizers at fixed β's converge to a different flow (theory.md §7: Adam and
RMSProp to the sign-like θ̇ = −g/(|g| + ε), sign descent and Lion to the sign flow). Their charges are
still compared with the gradient-flow law, so "broken by the flow" there means broken by that limit flow;
the verdict strings stay the same and ``limit_flow`` (attribute of ``judge``'s and ``analyse_ladder``'s
result, column of ``summarise_verdicts``) names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ._validate import fail
from .dynamics import MOMENTUM_DYNAMICS, OPTIMIZERS

CONSERVED, BROKEN, INCONCLUSIVE = "conserved by the flow", "broken by the flow", "inconclusive"
EXCLUDED, NO_SUCH = "excluded (failed at some step size)", "no such charge in this dynamics"
NEEDS_LADDER = "needs a ladder (no exact law for this dynamics)"
BASIS_LAW, BASIS_LADDER, BASIS_NONE = "exact law", "ladder", "none"
NO_LAW, LAW_HOLDS_EXACTLY, LAW_HOLDS_FLOW, LAW_FAILS = ("no replacement law", "holds exactly (step's law)",
                                                        "holds (flow's law, ladder)", "fails")
HOLDS_FACTOR = 10.0  # a law residual within this many round-off floors: the law holds
FAILS_FACTOR = 1e3  # a law residual above this many round-off floors: the law fails

SPLITTINGS = ("symplectic_euler", "verlet", "yoshida4")


@dataclass(frozen=True)
class StepLaw:
    """An exact law of one dynamics' step for one kind of charge."""

    variable: str  # the result variable that measures the deviation from the law
    text: str  # the law, in words
    replaces_charge_law: bool = False  # True: the charge itself moves (momentum); the law is what is kept


_GD_MODEL = StepLaw("residual", "gradient descent's one-step law q' = (1 − ηλ)^d q + η² q(g) (d = 2), "
                                "(1 − ηλ) q − η q(g) (d = 1)")
_GD_LINEAR = StepLaw("drift", "gradient descent changes a linear charge by exactly −η⟨v, g⟩ (−ηλq with weight decay): "
                               "conserved iff ⟨v, g⟩ = 0 at every iterate, so the drift from (1 − ηλ)^k q(0) decides")
_GD_DATA = StepLaw("drift", "⟨θ̇_1, W_1K⟩ = 0 at every iterate (a pointwise identity of the symmetry)")
_HB_DECAY = StepLaw("drift", "J_{k+1} = βJ_k, β = e^{−h/τ}: heavy ball is conformal symplectic Euler")
_SPLIT_DECAY = StepLaw("drift", "J(t) = e^{−t/τ}J(0) at any step: a conformal symplectic splitting")
_ALGORITHM_MODEL = StepLaw("law_residual", "J = q(θ_k) − βq(θ_{k−1}) + a_k constant: the discrete momentum "
                                           "law of heavy ball / Nesterov", replaces_charge_law=True)


def step_law(dynamics: str, method: str, charge_kind: str, degree: int = 2) -> StepLaw | None:
    """The exact law of ``dynamics``/``method``'s step for a charge of ``charge_kind`` ("model", "data",
    "energy", "isometric"), or None where the step has none (a ladder must decide).

    Parameters
    ----------
    dynamics : str
        The dynamics (``simulate``'s ``dynamics``), e.g. "gd", "heavy_ball", "momentum".
    method : str
        Its method (matters for momentum flow: only its conformal symplectic splittings have a law).
    charge_kind : str
        "model", "data", "energy" or "isometric".
    degree : int, optional
        The charge's degree (``charge_degree``): gradient descent's one-step law of a linear (degree-1)
        charge is an identity, so its drift itself decides; a user's function charge (degree 0,
        ``Charge.function``) has no exact law at any step, so a ladder decides.

    Returns
    -------
    StepLaw or None
        The law: the result variable that measures the deviation from it, and the law in words.

    Examples
    --------
    >>> from noether_sim.laws import step_law
    >>> step_law("gd", "euler", "model").variable
    'residual'
    >>> step_law("gf", "rk4", "model") is None                   # gradient flow by RK4: a ladder decides
    True
    """
    if degree == 0:  # a user's function charge (Charge.function): no exact law at any step
        return None
    if dynamics == "gd":
        if charge_kind == "model" and degree == 1:
            return _GD_LINEAR
        return {"model": _GD_MODEL, "data": _GD_DATA}.get(charge_kind)
    if dynamics == "heavy_ball":
        return {"model": _ALGORITHM_MODEL, "data": _HB_DECAY, "isometric": _HB_DECAY}.get(charge_kind)
    if dynamics == "nesterov":  # its gradient is taken at the look-ahead point: no exact decay of J
        return _ALGORITHM_MODEL if charge_kind == "model" else None
    if dynamics == "momentum" and method in SPLITTINGS and charge_kind in ("isometric", "data"):
        return _SPLIT_DECAY
    return None


def limit_flow(dynamics: str, batch_size: int | None = None) -> str:
    """The flow a ladder of ``dynamics`` converges to as h → 0 at fixed hyperparameters (module docstring).

    Parameters
    ----------
    dynamics : str
        The dynamics (``simulate``'s ``dynamics``).
    batch_size : int, optional
        An optimizer with minibatches (a positive batch size smaller than the data): its moments average a
        fixed number of minibatches however small η is, so the limit is the flow of the expected update,
        not the full-batch one.

    Returns
    -------
    str
        The limit flow, in words and as an equation.

    Examples
    --------
    >>> from noether_sim.laws import limit_flow
    >>> limit_flow("gd")
    'gradient flow θ̇ = −∇L − λθ'
    >>> limit_flow("heavy_ball")
    'momentum flow τθ̈ + θ̇ = −∇L − λθ'
    """
    if dynamics in OPTIMIZERS:
        if batch_size:
            return ("flow of the expected minibatch update θ̇ = −E_B[Δθ]/η at fixed β's and batch size (not the "
                    f"full-batch {OPTIMIZERS[dynamics].limit_flow.split(' θ̇')[0]})")
        return OPTIMIZERS[dynamics].limit_flow
    if dynamics in MOMENTUM_DYNAMICS:
        return "momentum flow τθ̈ + θ̇ = −∇L − λθ"
    return "gradient flow θ̇ = −∇L − λθ"


def law_holds(residual, floor):
    """(holds, fails) per seed from a law's residual and the round-off floor, each (…, seed): the law
    holds where every leading entry (every step size of a ladder) is within HOLDS_FACTOR floors, and
    fails where the last (finest) stands above FAILS_FACTOR floors.

    Parameters
    ----------
    residual : array_like
        The law's residual, (seed,) for one run or (step, seed) for a ladder.
    floor : array_like
        The round-off floor, the same shape.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Boolean (seed,) arrays ``holds`` and ``fails``; a seed may be neither (a ladder decides).

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.laws import law_holds
    >>> holds, fails = law_holds(np.array([1e-16, 1e-10, 1e-13]), np.full(3, 1e-15))   # 0.1, 10⁵, 100 floors
    >>> holds.tolist(), fails.tolist()
    ([True, False, False], [False, True, False])
    """
    residual, floor = np.atleast_2d(residual), np.atleast_2d(floor)
    with np.errstate(invalid="ignore"):
        holds = np.all(residual <= HOLDS_FACTOR * floor, axis=0)
        fails = residual[-1] > FAILS_FACTOR * floor[-1]
    return holds, fails


def judge(ds: xr.Dataset) -> xr.Dataset:
    """Verdicts of a single run (``simulate``), per seed and charge, from the exact laws of its step.

    Where the dynamics has an exact law for a charge (module docstring) and it holds to round-off, the
    charge is "conserved by the flow" and the drift is the step's (``basis`` = "exact law"); where the
    law clearly fails, "broken by the flow". The model's charges under heavy ball and Nesterov move by
    their momentum law: "broken by the flow" when they moved by more than round-off and that law holds
    (``law_verdict``). Everything else "needs a ladder" (``run_ladder``). Failed seeds are "excluded".

    Parameters
    ----------
    ds : xarray.Dataset
        One run, a result of ``simulate`` (no step-size dimension ``h``).

    Returns
    -------
    xarray.Dataset
        Dimensions (seed, charge), with ``verdict``, ``basis``, ``law_verdict``, ``finest_drift`` (the
        drift at the end), ``law_residual`` (the step law's residual), ``roundoff_floor``, ``included``,
        and the coordinates ``step_law`` (the exact law used) and ``charge_law``. ``summarise_verdicts``
        makes one row per charge of it.

    Raises
    ------
    ConfigError
        ``ds`` is a ladder (it has the dimension ``h``): that goes to ``analyse_ladder``.

    Examples
    --------
    Gradient descent on a deep linear network, whose balance charges drift by the step's η² terms only:

    >>> import noether_sim as ns
    >>> ds = ns.simulate(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 16), dynamics="gd",
    ...                  h=0.05, n_steps=40, seeds=4)
    >>> [(r["charge"], r["verdict"], r["basis"]) for r in ns.summarise_verdicts(ns.judge(ds))]
    [('D1', 'conserved by the flow', 'exact law')]
    """
    if "h" in ds.dims:
        fail("ds", dict(ds.sizes), "judge() takes one run; a ladder (dimension 'h') goes to analyse_ladder()")
    dynamics, method = ds.attrs["dynamics"], ds.attrs["method"]
    names = [str(c) for c in ds.charge.values]
    kinds = [str(k) for k in ds.charge_kind.values]
    S, C = ds.sizes["seed"], len(names)
    floor = ds.roundoff_floor.transpose("seed", "charge").values
    drift = ds.drift.isel(time=-1).transpose("seed", "charge").values
    verdict = np.full((S, C), NEEDS_LADDER, dtype=object)
    basis = np.full((S, C), BASIS_NONE, dtype=object)
    law_verdict = np.full((S, C), NO_LAW, dtype=object)
    residual = np.full((S, C), np.nan)
    texts = []
    degrees = ds.charge_degree.values if "charge_degree" in ds.coords else [2] * len(names)
    for k, kind in enumerate(kinds):
        law = step_law(dynamics, method, kind, int(degrees[k]))
        texts.append(law.text if law else "none: a ladder decides")
        if law is None or law.variable not in ds:
            continue
        res = ds[law.variable].isel(time=-1).transpose("seed", "charge").values[:, k]
        residual[:, k] = res
        holds, fails = law_holds(res[None], floor[None, :, k])
        basis[holds | fails, k] = BASIS_LAW
        if law.replaces_charge_law:
            law_verdict[:, k] = np.where(holds, LAW_HOLDS_EXACTLY, np.where(fails, LAW_FAILS, INCONCLUSIVE))
            moved = drift[:, k] > HOLDS_FACTOR * floor[:, k]
            verdict[:, k] = np.where(holds & moved, BROKEN, INCONCLUSIVE)
        else:
            verdict[:, k] = np.where(holds, CONSERVED, np.where(fails, BROKEN, INCONCLUSIVE))
    failed = ds.status.values != 0
    verdict[failed, :] = EXCLUDED
    none = ~np.isfinite(ds.charge_initial.values).any(axis=0)  # per component → per charge
    for k, name in enumerate(names):
        if none[ds.component_charge.values == name].all():
            verdict[:, k] = NO_SUCH
    return xr.Dataset(
        {"verdict": (("seed", "charge"), verdict.astype(str)), "basis": (("seed", "charge"), basis.astype(str)),
         "law_verdict": (("seed", "charge"), law_verdict.astype(str)),
         "finest_drift": (("seed", "charge"), drift), "law_residual": (("seed", "charge"), residual),
         "roundoff_floor": (("seed", "charge"), floor), "included": ("seed", ~failed)},
        coords={"seed": ds.seed.values, "charge": names, "step_law": ("charge", texts),
                "charge_law": ("charge", [str(x) for x in ds.charge_law.values])},
        attrs={"dynamics": dynamics, "method": method,
               "limit_flow": limit_flow(dynamics, int(ds.attrs.get("batch_size", 0) or 0))})


__all__ = ["judge", "step_law", "limit_flow", "law_holds", "StepLaw", "CONSERVED", "BROKEN", "INCONCLUSIVE", "NEEDS_LADDER"]
