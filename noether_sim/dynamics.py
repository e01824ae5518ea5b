"""Dynamics × methods: which method runs which dynamics with which options, checked in one place for
the Python API (``simulate``) and the study configuration (``config.py``).

Heavy ball is conformal symplectic Euler on momentum flow (theory.md §4): β = e^{−h/τ}, η = h²/τ; see
``heavy_ball_from_flow`` and ``flow_from_heavy_ball``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _validate as v
from .kernels.record import (SCHEME_ADAPTIVE, SCHEME_ALGORITHM, SCHEME_EXPLICIT, SCHEME_IMPLICIT, SCHEME_OPTIMIZER,
                             SCHEME_SPLITTING)
from .kernels.fields import DYN_GF, DYN_MOMENTUM
from .kernels.optimizers import OPT_ADAM, OPT_ADAMW, OPT_LION, OPT_RMSPROP, OPT_SIGN
from .methods import EXPLICIT_METHODS, IMPLICIT_METHODS, SPLITTING_METHODS
from .random import VELOCITY_STREAM, normal_rows

DYNAMICS = {
    "gf": "gradient flow θ̇ = −∇L − λθ, by an explicit (fixed or adaptive) or implicit Runge–Kutta method",
    "gd": "gradient descent θ ← θ − η(∇L + λθ) (explicit Euler with h = η, time t = kη)",
    "momentum": "momentum flow τθ̈ + θ̇ = −∇L − λθ as q̇ = p, ṗ = −(∇L(q) + λq + p)/τ, by an explicit or "
                "implicit Runge–Kutta method or a conformal symplectic splitting; with a temperature T, "
                "underdamped Langevin τθ̈ + θ̇ = −∇L − λθ + √(2T)Ẇ by a splitting whose damp steps are exact "
                "Ornstein–Uhlenbeck steps (Verlet: OBABO)",
    "heavy_ball": "θ_{k+1} = θ_k + β(θ_k − θ_{k−1}) − η(∇L(θ_k) + λθ_k), time t = k·h (β = e^{−h/τ}, η = h²/τ)",
    "nesterov": "θ_{k+1} = y_k − η(∇L(y_k) + λy_k), y_k = θ_k + β(θ_k − θ_{k−1}), time t = k·h",
    "adam": "Adam (torch.optim.Adam: L2 weight decay λ in the gradient, bias-corrected moments), learning rate h",
    "adamw": "AdamW (torch.optim.AdamW: decoupled weight decay θ ← θ(1 − ηλ)), learning rate h",
    "rmsprop": "RMSProp (torch.optim.RMSprop, alpha = beta2, no momentum): θ ← θ − η g/(√v + ε), learning rate h",
    "sign": "sign descent θ ← θ − η(sign(∇L) + λθ) (Lion with β₁ = β₂ = 0), learning rate h",
    "lion": "Lion (optax.lion: θ ← θ − η(sign(β₁m + (1 − β₁)g) + λθ), m ← β₂m + (1 − β₂)g), learning rate h",
    "langevin": "overdamped Langevin dθ = −(∇L + λθ)dt + √(2T)dW (temperature T), by Euler–Maruyama "
                "θ ← θ − h(∇L + λθ) + √(2hT)ξ (weak order 1) or the stochastic Heun scheme (weak order 2), "
                "with counter-based noise per (seed, step)",
}
MOMENTUM_DYNAMICS = ("momentum", "heavy_ball", "nesterov")
DEFAULT_METHOD = {"gf": "rk4", "gd": "euler", "momentum": "verlet", "langevin": "euler_maruyama"}
MINIBATCH_DYNAMICS = ("gd", "heavy_ball", "nesterov", "langevin", "adam", "adamw", "rmsprop", "sign", "lion")
SAMPLINGS = ("uniform", "epoch")
# overdamped Langevin's methods: (weak order, gradient evaluations per step); the kernel's code is the position
LANGEVIN_METHODS = {"euler_maruyama": (1, 1), "stochastic_heun": (2, 2)}
STOCHASTIC_OPTIONS = ("batch_size", "sampling", "temperature", "noise_substeps", "split_drift")


@dataclass(frozen=True)
class Optimizer:
    """An adaptive optimizer as data: its op code (kernels/optimizers.py), the options it takes with
    their defaults (PyTorch's; optax's for Lion), its state after θ, and the flow its steps converge to
    as the learning rate → 0 at fixed β's (theory.md §7)."""

    code: int
    defaults: dict
    state: tuple  # parts of the state row after θ: (name, "P" for one entry per parameter, or a count)
    limit_flow: str


_SIGN_LIKE = "sign-like flow θ̇ = −g/(|g| + ε)"
OPTIMIZERS = {
    "adam": Optimizer(OPT_ADAM, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, (("m", "P"), ("v", "P"), ("step", 1)),
                      _SIGN_LIKE + ", g = ∇L + λθ"),
    "adamw": Optimizer(OPT_ADAMW, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, (("m", "P"), ("v", "P"), ("step", 1)),
                       _SIGN_LIKE + " − λθ, g = ∇L"),
    "rmsprop": Optimizer(OPT_RMSPROP, {"beta2": 0.99, "eps": 1e-8}, (("v", "P"),), _SIGN_LIKE + ", g = ∇L + λθ"),
    "sign": Optimizer(OPT_SIGN, {}, (), "sign flow θ̇ = −sign(∇L) − λθ"),
    "lion": Optimizer(OPT_LION, {"beta1": 0.9, "beta2": 0.99}, (("m", "P"),), "sign flow θ̇ = −sign(∇L) − λθ"),
}

# options a dynamics or method takes, with their defaults; any other is refused by name
OPTION_DEFAULTS = {
    "tau": None, "beta": None, "learning_rate": None, "velocity": "zero", "track_law": True,
    "rtol": 1e-8, "atol": 1e-10, "max_steps": 10_000_000,
    "solve_tol": 1e-14, "max_solve_iters": 100, "max_halvings": 6, "track_energy": False,
    "beta1": None, "beta2": None, "eps": None,
    "batch_size": None, "sampling": None, "temperature": None, "noise_substeps": None, "split_drift": None,
}
_TAKES = {
    "tau": ("the momentum dynamics (momentum, heavy_ball, nesterov)", lambda r: r.dynamics in MOMENTUM_DYNAMICS),
    "beta": ("heavy_ball and nesterov", lambda r: r.scheme == SCHEME_ALGORITHM),
    "learning_rate": ("heavy_ball, nesterov and the optimizers (adam, adamw, rmsprop, sign, lion)",
                      lambda r: r.scheme in (SCHEME_ALGORITHM, SCHEME_OPTIMIZER)),
    "velocity": ("the momentum dynamics (momentum, heavy_ball, nesterov)", lambda r: r.dynamics in MOMENTUM_DYNAMICS),
    "track_law": ("the momentum dynamics (momentum, heavy_ball, nesterov)",
                  lambda r: r.dynamics in MOMENTUM_DYNAMICS),
    "rtol": ("the adaptive methods (dopri5)", lambda r: r.scheme == SCHEME_ADAPTIVE),
    "atol": ("the adaptive methods (dopri5)", lambda r: r.scheme == SCHEME_ADAPTIVE),
    "max_steps": ("the adaptive methods (dopri5)", lambda r: r.scheme == SCHEME_ADAPTIVE),
    "solve_tol": ("the implicit methods (gl1, gl2, gl3)", lambda r: r.scheme == SCHEME_IMPLICIT),
    "max_solve_iters": ("the implicit methods (gl1, gl2, gl3)", lambda r: r.scheme == SCHEME_IMPLICIT),
    "max_halvings": ("the implicit methods (gl1, gl2, gl3)", lambda r: r.scheme == SCHEME_IMPLICIT),
    # the dissipated ∫|θ̇|² is integrated as part of the state, so only by a Runge–Kutta method
    "track_energy": ("gf, gd and momentum flow integrated by a Runge–Kutta method (not a splitting, "
                     "heavy_ball or nesterov)",
                     lambda r: r.scheme in (SCHEME_EXPLICIT, SCHEME_ADAPTIVE, SCHEME_IMPLICIT)
                     and r.dynamics != "langevin"),
    **{name: (", ".join(o for o, opt in OPTIMIZERS.items() if name in opt.defaults),
              lambda r, name=name: r.dynamics in OPTIMIZERS and name in OPTIMIZERS[r.dynamics].defaults)
       for name in ("beta1", "beta2", "eps")},
    "batch_size": ("gd, heavy_ball, nesterov, langevin, the optimizers and momentum with a splitting method",
                   lambda r: r.dynamics in MINIBATCH_DYNAMICS or _momentum_splitting(r)),
    "sampling": ("gd, heavy_ball, nesterov, langevin, the optimizers and momentum with a splitting method, with "
                 "a batch_size", lambda r: r.dynamics in MINIBATCH_DYNAMICS or _momentum_splitting(r)),
    "temperature": ("langevin, and momentum with a splitting method (underdamped Langevin)",
                    lambda r: r.dynamics == "langevin" or _momentum_splitting(r)),
    "noise_substeps": ("langevin, and momentum with a splitting method and a temperature",
                       lambda r: r.dynamics == "langevin" or _momentum_splitting(r)),
    "split_drift": ("gd with a batch_size", lambda r: r.dynamics == "gd"),
}


def _momentum_splitting(r) -> bool:
    return r.dynamics == "momentum" and r.scheme == SCHEME_SPLITTING


@dataclass(frozen=True)
class Resolved:
    """A (dynamics, method) pair the driver can run."""

    dynamics: str
    method: str  # the method's name; heavy_ball / nesterov are their own algorithm
    scheme: int  # kernels.record.SCHEME_*
    dyn: int  # kernels.fields.DYN_*
    order: int  # convergence order in the step size
    stages: int  # gradient evaluations per step (for cost estimates; implicit: per fixed-point sweep)
    tableau: object = None
    splitting: object = None

    @property
    def adaptive(self) -> bool:
        return self.scheme == SCHEME_ADAPTIVE


def methods_for(dynamics: str) -> list[str]:
    if dynamics == "gd":
        return ["euler"]
    if dynamics == "langevin":
        return list(LANGEVIN_METHODS)
    if dynamics in ("heavy_ball", "nesterov") or dynamics in OPTIMIZERS:
        return []
    names = [*EXPLICIT_METHODS, *IMPLICIT_METHODS]
    return names + list(SPLITTING_METHODS) if dynamics == "momentum" else names


def resolve(dynamics, method) -> Resolved:
    """Check a (dynamics, method) pair; ConfigError naming the one that does not fit."""
    if not isinstance(dynamics, str) or dynamics not in DYNAMICS:
        v.fail("dynamics", dynamics, f"must be one of {', '.join(DYNAMICS)}")
    if dynamics in ("heavy_ball", "nesterov"):
        if method not in (None, dynamics):
            v.fail("method", method, f"{dynamics} is its own algorithm; leave method unset")
        return Resolved(dynamics, dynamics, SCHEME_ALGORITHM, DYN_MOMENTUM, 1, 1)
    if dynamics in OPTIMIZERS:
        if method not in (None, dynamics):
            v.fail("method", method, f"{dynamics} is its own algorithm; leave method unset")
        return Resolved(dynamics, dynamics, SCHEME_OPTIMIZER, DYN_GF, 1, 1)
    method = DEFAULT_METHOD[dynamics] if method is None else method
    allowed = methods_for(dynamics)
    if not isinstance(method, str) or method not in allowed:
        why = {"gd": "gradient descent is explicit Euler; leave method unset or use 'euler'",
               "langevin": "overdamped Langevin is integrated by Euler–Maruyama (weak order 1) or the "
                           "stochastic Heun scheme (weak order 2)",
               "gf": "gradient flow takes a Runge–Kutta method (splittings integrate momentum flow)"}.get(
            dynamics, "momentum flow takes a Runge–Kutta method or a splitting")
        v.fail("method", method, f"{why}: one of {', '.join(allowed)}")
    dyn = DYN_MOMENTUM if dynamics == "momentum" else DYN_GF
    if dynamics == "langevin":  # Euler's tableau; the driver adds the noise (and Heun's corrector) after it
        tab = EXPLICIT_METHODS["euler"]
        order, stages = LANGEVIN_METHODS[method]
        return Resolved(dynamics, method, SCHEME_EXPLICIT, dyn, order, stages, tableau=tab)
    if method in SPLITTING_METHODS:
        sp = SPLITTING_METHODS[method]
        kicks = sum(1 for op, _ in sp.steps if op == "kick")
        return Resolved(dynamics, method, SCHEME_SPLITTING, dyn, sp.order, kicks, splitting=sp)
    if method in IMPLICIT_METHODS:
        tab = IMPLICIT_METHODS[method]
        return Resolved(dynamics, method, SCHEME_IMPLICIT, dyn, tab.order, tab.stages, tableau=tab)
    tab = EXPLICIT_METHODS[method]
    return Resolved(dynamics, method, SCHEME_ADAPTIVE if tab.adaptive else SCHEME_EXPLICIT, dyn, tab.order,
                    tab.stages, tableau=tab)


def check_options(resolved: Resolved, given: dict) -> dict:
    """Refuse, by name, an option the (dynamics, method) does not take; check values; fill defaults."""
    out = {}
    for name, value in given.items():
        if name not in OPTION_DEFAULTS:
            v.fail(name, value, f"is not an option of simulate(); options: {', '.join(OPTION_DEFAULTS)}")
        if value is None or (name == "track_energy" and value is False):  # off: nothing to refuse
            continue
        where, applies = _TAKES[name]
        if not applies(resolved):
            v.fail(name, value, f"applies only to {where}, not to dynamics={resolved.dynamics!r} with "
                                f"method={resolved.method!r}")
        out[name] = value
    for name in ("tau", "learning_rate"):
        if name in out:
            out[name] = v.positive(name, out[name])
    if "beta" in out and (not isinstance(out["beta"], numbers.Real) or isinstance(out["beta"], bool)
                          or not 0.0 < out["beta"] < 1.0):
        v.fail("beta", out["beta"], "must be a number with 0 < beta < 1")
    for name in ("rtol", "atol", "solve_tol"):
        if name in out:
            out[name] = v.positive(name, out[name])
    for name in ("max_steps", "max_solve_iters"):
        if name in out:
            out[name] = v.positive_int(name, out[name])
    if "max_halvings" in out:
        out["max_halvings"] = v.positive_int("max_halvings", out["max_halvings"], minimum=0)
        if out["max_halvings"] > 20:
            v.fail("max_halvings", out["max_halvings"], "must be <= 20 (2^20 substeps per step)")
    for name in ("track_law", "track_energy"):
        if name in out and not isinstance(out[name], (bool, np.bool_)):
            v.fail(name, out[name], "must be True or False")
    if "velocity" in out:
        check_velocity(out["velocity"])
    if "batch_size" in out:
        out["batch_size"] = v.positive_int("batch_size", out["batch_size"])
    if "sampling" in out:
        if "batch_size" not in out:
            v.fail("sampling", out["sampling"], "applies only with a batch_size (minibatch gradients)")
        if not isinstance(out["sampling"], str) or out["sampling"] not in SAMPLINGS:
            v.fail("sampling", out["sampling"], f"must be one of {', '.join(SAMPLINGS)}")
    if "temperature" in out:
        out["temperature"] = v.non_negative("temperature", out["temperature"])
    if "split_drift" in out:
        if not isinstance(out["split_drift"], (bool, np.bool_)):
            v.fail("split_drift", out["split_drift"], "must be True or False")
        if out["split_drift"] and "batch_size" not in out:
            v.fail("split_drift", out["split_drift"], "applies only to gd with a batch_size")
        if not out["split_drift"]:
            del out["split_drift"]
    if "noise_substeps" in out:
        out["noise_substeps"] = v.positive_int("noise_substeps", out["noise_substeps"])
    if resolved.dynamics == "momentum" and resolved.splitting is not None:
        _check_underdamped(resolved, out)
    if resolved.dynamics == "langevin" and "temperature" not in out:
        v.fail("temperature", None, "langevin needs a temperature T >= 0 (noise √(2hT) per step)")
    if "batch_size" in out:
        out.setdefault("sampling", "uniform")
    if "temperature" in out:
        out.setdefault("noise_substeps", 1)
    # the stochastic options appear in a run's configuration only when used (full-batch runs stay as they were)
    for name in ("beta1", "beta2"):
        if name in out and (not isinstance(out[name], numbers.Real) or isinstance(out[name], bool)
                            or not 0.0 <= out[name] < 1.0):
            v.fail(name, out[name], f"must be a number with 0 <= {name} < 1")
    if "eps" in out:
        out["eps"] = v.positive("eps", out["eps"])
    if resolved.dynamics in OPTIMIZERS:  # the optimizer's own defaults (PyTorch's; optax's for Lion)
        out = {**OPTIMIZERS[resolved.dynamics].defaults, **out}
    full = {name: out.get(name, default) for name, default in OPTION_DEFAULTS.items()
            if _TAKES[name][1](resolved) and (name not in STOCHASTIC_OPTIONS or name in out)}
    if resolved.dynamics in MOMENTUM_DYNAMICS and "learning_rate" not in out and "beta" not in out \
            and full.get("tau") is None:
        v.fail("tau", None, "momentum dynamics need the time constant tau > 0 (friction 1/tau)"
               + ("; heavy_ball and nesterov take (h, tau) or (learning_rate, beta)"
                  if resolved.scheme == SCHEME_ALGORITHM else ""))
    return full


def _check_underdamped(resolved: Resolved, out: dict):
    """Underdamped Langevin's limits: an OU sub-step runs forward in time (a splitting with a negative damp
    weight, yoshida4, has none), and a coupled rung's OU draw (kernels/stochastic.ou_noise) combines the
    finest rung's draws r at a time, which covers the same interval only when every damp of a step has the
    same weight (verlet: ½, ½; symplectic_euler: 1)."""
    damps = [w for op, w in resolved.splitting.steps if op == "damp"]
    if out.get("temperature", 0.0) > 0 and min(damps) <= 0:
        v.fail("temperature", out["temperature"], f"needs damp sub-steps forward in time; {resolved.method!r} has a "
                                                  f"damp weight {min(damps):g} (use verlet or symplectic_euler)")
    if "noise_substeps" in out:
        if "temperature" not in out:
            v.fail("noise_substeps", out["noise_substeps"], "applies to momentum only with a temperature "
                                                            "(underdamped Langevin)")
        if out["noise_substeps"] > 1 and max(damps) - min(damps) > 1e-15:
            v.fail("noise_substeps", out["noise_substeps"], f"coupled rungs need equal damp weights per step; "
                                                            f"{resolved.method!r} has {damps} (use verlet or "
                                                            f"symplectic_euler)")


def check_velocity(velocity):
    if velocity is None or (isinstance(velocity, str) and velocity in ("zero", "gradient")):
        return
    if isinstance(velocity, numbers.Real) and not isinstance(velocity, bool):
        v.non_negative("velocity", velocity)
        return
    if isinstance(velocity, str):
        v.fail("velocity", velocity, "must be 'zero', 'gradient', a scale >= 0 (Gaussian entries) or an array")
    v.finite_array("velocity", velocity, np.ndim(velocity) if np.ndim(velocity) in (1, 2) else 1)


def step_and_time_constant(resolved: Resolved, h, options: dict):
    """(h, τ) of a run; heavy ball / Nesterov may give (learning_rate, beta) instead of (h, tau); an
    optimizer's learning rate is its step h (``learning_rate`` names the same number)."""
    if resolved.scheme == SCHEME_OPTIMIZER:
        return optimizer_step_size(h, options.get("learning_rate")), None
    lr, beta, tau = options.get("learning_rate"), options.get("beta"), options.get("tau")
    if lr is not None or beta is not None:
        if lr is None or beta is None:
            v.fail("learning_rate" if lr is None else "beta", None, "heavy_ball / nesterov given by "
                   "(learning_rate, beta) need both")
        for name, value in (("h", h), ("tau", tau)):
            if value is not None:
                v.fail(name, value, "give either (h, tau) or (learning_rate, beta), not a mix")
        return flow_from_heavy_ball(lr, beta)
    return h, tau


def optimizer_step_size(h, learning_rate):
    """The step of an optimizer run: h or learning_rate (one of them, or both equal)."""
    if learning_rate is not None:
        learning_rate = v.positive("learning_rate", learning_rate)
        if h is not None and h != learning_rate:
            v.fail("learning_rate", learning_rate, f"is the optimizer's step h; h = {h!r} differs: give one of them")
        return learning_rate
    return h


def optimizer_state_size(resolved: Resolved, P: int) -> int:
    """Entries of an optimizer's state row after θ (0 for every other dynamics)."""
    opt = OPTIMIZERS.get(resolved.dynamics)
    return 0 if opt is None else sum(P if n == "P" else n for _, n in opt.state)


def optimizer_state_labels(resolved: Resolved, P: int) -> tuple[list, list]:
    """(part, parameter index) of each entry of the optimizer's state after θ (−1 for the step count)."""
    parts, params = [], []
    for name, n in OPTIMIZERS[resolved.dynamics].state:
        parts += [name] * (P if n == "P" else n)
        params += list(range(P)) if n == "P" else [-1] * n
    return parts, params


def heavy_ball_from_flow(h: float, tau: float) -> tuple[float, float]:
    """(learning rate η, momentum β) of the heavy ball that is conformal symplectic Euler with step h on
    momentum flow with time constant τ: β = e^{−h/τ}, η = h²/τ (docs/theory.md §4).

    Parameters
    ----------
    h, tau : float
        Step size and time constant, both > 0.

    Returns
    -------
    (float, float)
        The learning rate η and the momentum β.

    Raises
    ------
    ConfigError
        A step size or time constant that is not > 0.

    Examples
    --------
    >>> import noether_sim as ns
    >>> eta, beta = ns.heavy_ball_from_flow(0.1, 0.5)
    >>> round(eta, 12), round(beta, 6)
    (0.02, 0.818731)
    >>> [round(float(x), 12) for x in ns.flow_from_heavy_ball(eta, beta)]
    [0.1, 0.5]
    """
    h, tau = v.positive("h", h), v.positive("tau", tau)
    return h * h / tau, float(np.exp(-h / tau))


def flow_from_heavy_ball(learning_rate: float, beta: float) -> tuple[float, float]:
    """(h, τ) of heavy ball (η, β), 0 < β < 1: h/τ = −ln β and η = h²/τ give h = η/(−ln β), τ = h/(−ln β).

    The inverse of ``heavy_ball_from_flow``.

    Parameters
    ----------
    learning_rate : float
        The heavy ball's learning rate η, > 0.
    beta : float
        Its momentum β, 0 < β < 1.

    Returns
    -------
    (float, float)
        The step size h and the time constant τ of the momentum flow it discretises.

    Raises
    ------
    ConfigError
        ``learning_rate`` not > 0, or ``beta`` not strictly between 0 and 1.

    Examples
    --------
    >>> import math, noether_sim as ns
    >>> h, tau = ns.flow_from_heavy_ball(0.02, math.exp(-0.2))
    >>> round(float(h), 12), round(float(tau), 12)
    (0.1, 0.5)
    """
    eta = v.positive("learning_rate", learning_rate)
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not (0.0 < beta < 1.0):
        v.fail("beta", beta, "must be a number with 0 < beta < 1")
    rate = -np.log(beta)
    return eta / rate, eta / rate ** 2


def initial_velocity(velocity, model, theta, ids, root_seed, weight_decay, grad_of) -> np.ndarray:
    """θ̇(0): 'zero', 'gradient' (−∇L − λθ), a scale σ (N(0, σ²) entries keyed by (root_seed, seed id)),
    or an array (n_params,) / (n_seeds, n_params)."""
    n_seeds, P = theta.shape
    if velocity is None or (isinstance(velocity, str) and velocity == "zero"):
        return np.zeros_like(theta)
    if isinstance(velocity, str) and velocity == "gradient":
        return -(grad_of(theta) + weight_decay * theta)
    if isinstance(velocity, numbers.Real):
        return float(velocity) * normal_rows(root_seed, VELOCITY_STREAM, ids, P)
    arr = np.asarray(velocity, dtype=float)
    if arr.shape[-1] != P or (arr.ndim == 2 and arr.shape[0] != n_seeds):
        v.fail("velocity", arr, f"must have shape ({P},) or ({n_seeds}, {P})")
    return np.ascontiguousarray(np.broadcast_to(arr, theta.shape), dtype=float).copy()
