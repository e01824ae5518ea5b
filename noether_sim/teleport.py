"""Teleportation: move each seed along its symmetry orbit, where the loss is the same (theory.md §7).

The orbits (theory.md §2):

- deep linear networks: GL(n_i) on every hidden layer i, W_i ← G W_i, b_i ← G b_i, W_{i+1} ← W_{i+1} G⁻¹;
- MLPs with a positively homogeneous activation of degree α (relu, leaky_relu, abs, linear, relu_pow):
  per-neuron rescaling c > 0, w_in ← c w_in, b ← c b, w_out ← c^{−α} w_out.

Both act linearly on θ, θ ← Tθ with L(Tθ) = L(θ) for every θ, so ∇L(Tθ) = T⁻ᵀ∇L(θ): the gradient on the
orbit is known from the gradient at the start. For a generator X in the algebra of layer i,

    d/ds ‖∇L(e^{sX}·θ)‖² at s = 0 = 2⟨X, M_i⟩,
    M_i = G_{i+1}ᵀG_{i+1} − G_iG_iᵀ − g_{b_i}g_{b_i}ᵀ              (deep linear, G_i = ∂L/∂W_i)
    m_i = α‖g_out‖² − ‖g_in‖² − g_b²  per neuron                    (MLP)

— the same quadratic forms as gradient descent's exact one-step law (theory.md §3). ``objective="grad_norm"``
ascends ‖∇L‖² along them (normalised steps of length ``lr`` in the algebra, halved for a seed whose
‖∇L‖ would not grow). ``objective="balance"`` moves each seed to the point of its orbit where every charge
takes the value ``target`` (D_i = target·I for deep linear networks, r = target for every neuron of an MLP):
the minimum of the convex potential ½‖θ‖² + target·Σ log det G_i on the orbit, whose algebra gradient is
target − (the charge). The group elements are accumulated (G and G⁻¹ kept apart, both from symmetric
eigendecompositions; MLP scales as exponentials of accumulated logarithms) and applied once to the
starting θ, so the loss stays at its starting value to round-off however many steps are taken.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import _validate as v
from .kernels.entries import ensemble_loss_grad

OBJECTIVES = ("grad_norm", "balance")
HOMOGENEOUS = ("linear", "relu", "leaky_relu", "abs", "relu_pow")
DEFAULT_STEPS = {"grad_norm": 10, "balance": 2000}
TOL = 1e-13  # balance: stop once every |charge − target| is below this times the charge's scale


@dataclass
class TeleportResult:
    """What ``teleport`` returns: the moved parameters and, per seed, the evidence.

    Attributes
    ----------
    theta : ndarray
        The teleported parameters, the shape given.
    loss_before, loss_after : ndarray
        L(θ) before and after, per seed (equal to round-off).
    grad_norm_before, grad_norm_after : ndarray
        ‖∇L(θ)‖ before and after, per seed.
    residual : ndarray
        ``objective="balance"``: the largest ‖charge − target‖ left, relative to the charge's scale
        (‖W_{i+1}‖² + ‖W_i‖² per layer); NaN for ``grad_norm``.
    steps : int
        Steps taken (``balance`` stops early once every residual is below 1e-13).
    move : callable
        The group element each seed was moved by, as a map of rows (S, P) → (S, P): ``move(theta_before)``
        is ``theta``, and ``move(v)`` pushes a tangent vector (a velocity) forward the same way (the action
        is linear in θ), which keeps L and ⟨∇L, v⟩ (so the first-order loss change) unchanged.
    """

    theta: np.ndarray
    loss_before: np.ndarray
    loss_after: np.ndarray
    grad_norm_before: np.ndarray
    grad_norm_after: np.ndarray
    residual: np.ndarray
    steps: int
    move: object = field(default=None, repr=False, compare=False)


def _loss_grad(model, data, theta):
    a, b = model.kernel_data(data)
    return ensemble_loss_grad(int(model.descriptor()[0]), np.ascontiguousarray(theta), model.descriptor(),
                              model.constants(data), a, b)


def check_teleport_model(model, name="model"):
    """ConfigError unless the model has an orbit this module can move along."""
    if not hasattr(model, "charge_groups") or not hasattr(model, "widths"):
        v.fail(name, model, "must be a noether_sim model (DeepLinear, MLP)")
    if model.n_layers < 2:
        v.fail(name, model, "teleportation needs a hidden layer (widths of three or more)")
    if getattr(model, "kind", None) not in ("deep_linear", "mlp"):  # LoRA, attention, residual stacks, custom
        v.fail(name, type(model).__name__, "teleportation moves along deep linear (DeepLinear) and MLP orbits; "
                                           f"a {model.kind!r} model is not supported yet")
    if model.kind == "mlp":
        if model.activation not in HOMOGENEOUS:
            v.fail("activation", model.activation, f"teleportation needs a positively homogeneous activation "
                                                   f"({', '.join(HOMOGENEOUS)}): {model.activation} has no rescaling orbit")
        if model.normalised_first_layer:
            v.fail("normalised_first_layer", True, "teleportation rescales neurons; a weight-normalised first "
                                                   "layer does not keep the loss under it")


def check_teleport_options(objective, steps, lr, target):
    """Validated (objective, steps, lr, target) — ConfigError naming the first bad one."""
    if objective not in OBJECTIVES:
        v.fail("objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    steps = DEFAULT_STEPS[objective] if steps is None else v.positive_int("steps", steps)
    lr = v.positive("lr", lr)
    if objective == "grad_norm" and target is not None:
        v.fail("target", target, "only objective='balance' takes a target")
    if objective == "balance":
        target = 0.0 if target is None else target
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not np.isfinite(target):
            v.fail("target", target, "must be a finite number (the value every charge is moved to)")
        target = float(target)
    return objective, steps, lr, target


def _sym_exp(X, sign=1.0):
    """exp(sign·X) of a stack of symmetric matrices, from one eigendecomposition."""
    lam, V = np.linalg.eigh(X)
    return (V * np.exp(sign * lam)[..., None, :]) @ np.swapaxes(V, -1, -2)


def _apply_linear(model, theta0, G, Ginv):
    """θ with W_i ← G_i W_i G_{i−1}⁻¹ (G_0 = G_L = I), b_i ← G_i b_i: the GL orbit of deep linear nets."""
    layers = []
    for i, (W, b) in enumerate(model.unflatten(theta0), start=1):
        if i <= model.n_layers - 1:
            W = G[i - 1] @ W
            b = None if b is None else np.einsum("sij,sj->si", G[i - 1], b)
        if i >= 2:
            W = W @ Ginv[i - 2]
        layers.append((W, b))
    return np.ascontiguousarray(model.flatten(layers))


def _apply_rescale(model, theta0, u):
    """θ with neuron j of hidden layer i rescaled by c = e^{u_ij}: w_in, b by c, w_out by c^{−α}."""
    alpha = model.degree
    layers = []
    for i, (W, b) in enumerate(model.unflatten(theta0), start=1):
        if i <= model.n_layers - 1:
            c = np.exp(u[i - 1])
            W = W * c[..., :, None]
            b = None if b is None else b * c
        if i >= 2:
            W = W * np.exp(-alpha * u[i - 2])[..., None, :]
        layers.append((W, b))
    return np.ascontiguousarray(model.flatten(layers))


def _charges(model, theta):
    """Per hidden layer: (charge, its scale, in-side, out-side) — D_i (S, n, n) or r (S, n)."""
    out = []
    L = model.unflatten(theta)
    for i in range(1, model.n_layers):
        (W, b), (W2, _) = L[i - 1], L[i]
        if model.kind == "mlp":
            a = np.sum(W * W, axis=-1) + (0.0 if b is None else b * b)
            o = np.sum(W2 * W2, axis=-2)
            out.append((a - model.degree * o, a + model.degree ** 2 * o, a, o))
        else:
            A = W @ np.swapaxes(W, -1, -2) + (0.0 if b is None else b[..., :, None] * b[..., None, :])
            B = np.swapaxes(W2, -1, -2) @ W2
            out.append((B - A, A + B, A, B))
    return out


def reachable_range(model, theta) -> tuple[bool, bool, bool]:
    """Which signs of a balance target every seed's orbit reaches: (negative, zero, positive).

    Per hidden layer (deep linear: D_i = tI; MLP: r = t for each neuron) t > 0 needs the outgoing side
    W_{i+1}ᵀW_{i+1} positive definite (MLP: each neuron's ‖w_in‖² + b² > 0) ... and the sides swap for t < 0;
    t = 0 needs both. A rank-deficient side keeps the charge ≤ 0 (or ≥ 0) on its kernel along the whole orbit.
    """
    neg = zero = pos = True
    for q, scale, A, B in _charges(model, theta):
        if model.kind == "mlp":
            tiny = 1e-300 + 1e-14 * np.max(scale)
            in_ok, out_ok = np.all(A > tiny), np.all(B > tiny)
        else:
            ea, eb = np.linalg.eigvalsh(A), np.linalg.eigvalsh(B)
            top = np.maximum(ea[..., -1], eb[..., -1])[..., None]
            in_ok, out_ok = np.all(ea > 1e-12 * top), np.all(eb > 1e-12 * top)
        # deep linear D = B − A: t < 0 needs A (in side) definite. MLP r = in − α·out: t > 0 needs the in side.
        pos_ok, neg_ok = (in_ok, out_ok) if model.kind == "mlp" else (out_ok, in_ok)
        neg, pos, zero = neg and neg_ok, pos and pos_ok, zero and neg_ok and pos_ok
    return neg, zero, pos


def _range_text(neg, zero, pos):
    parts = {(True, True, True): "every real value", (True, False, False): "only targets < 0",
             (False, False, True): "only targets > 0", (False, False, False): "no value at all",
             (True, False, True): "every value except 0"}
    return parts.get((neg, zero, pos), f"negative: {neg}, zero: {zero}, positive: {pos}")


def teleport(model, data, theta, objective: str = "grad_norm", steps: int | None = None,
             lr: float = 0.1, target: float | None = None) -> TeleportResult:
    """Move each seed along its symmetry orbit, keeping the loss, to raise ‖∇L‖ or balance the charges.

    Parameters
    ----------
    model : DeepLinear or MLP
        A deep linear network (orbit GL(n_i) of every hidden layer), or an MLP with a positively homogeneous
        activation (relu, leaky_relu, abs, linear, relu_pow; orbit: per-neuron rescaling).
    data : TrainingData
        The data whose loss is kept.
    theta : array_like
        One flat parameter row (P,) or one per seed (S, P).
    objective : {"grad_norm", "balance"}
        "grad_norm": ascend ‖∇L‖² along the orbit (Zhao et al., arXiv 2205.10637) for ``steps`` normalised
        steps of length ``lr`` in the algebra. "balance": reach the point of the orbit where every charge
        equals ``target`` (deep linear D_i = target·I; MLP r = target per neuron).
    steps : int, optional
        Ascent steps (default 10), or the most balancing steps (default 2000; stops once every residual is
        below 1e-13).
    lr : float
        Length of one ascent step in the algebra (grad_norm; the group element moves by at most e^{steps·lr}).
    target : float, optional
        ``objective="balance"``: the charges' value (default 0).

    Returns
    -------
    TeleportResult
        ``theta`` (the shape given), loss and ‖∇L‖ before and after per seed, the balance residual.

    Raises
    ------
    ConfigError
        A model without such an orbit, an unknown objective, steps < 1, lr ≤ 0, non-finite θ, or a target
        no seed's orbit reaches (the message names the reachable range).

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> model = ns.DeepLinear((3, 4, 2))
    >>> data = ns.data.synthetic_regression(3, 2, 16, seed=1)
    >>> theta = ns.init.Gaussian().rows(model, 0, [0, 1])
    >>> out = ns.teleport(model, data, theta, objective="grad_norm", steps=5)
    >>> bool(np.allclose(out.loss_after, out.loss_before, rtol=1e-13, atol=0))
    True
    >>> bool(np.all(out.grad_norm_after > out.grad_norm_before))
    True
    """
    check_teleport_model(model)
    if not (hasattr(data, "check_fits") and hasattr(data, "X")):  # a TrainingData (not imported: data.py is above)
        v.fail("data", data, "must be a noether_sim.data.TrainingData")
    data.check_fits(model)
    objective, steps, lr, target = check_teleport_options(objective, steps, lr, target)
    arr = np.asarray(theta, dtype=float)
    if arr.ndim not in (1, 2) or arr.shape[-1] != model.n_params:
        v.fail("theta", getattr(theta, "shape", theta), f"must have shape ({model.n_params},) or (seeds, {model.n_params})")
    if not np.all(np.isfinite(arr)):
        v.fail("theta", "non-finite values", "must be finite")
    theta0 = np.array(np.atleast_2d(arr), order="C")
    if objective == "balance":
        neg, zero, pos = reachable_range(model, theta0)
        if not (pos if target > 0 else neg if target < 0 else zero):
            what = "D_i = target·I" if model.kind != "mlp" else "r = target for every neuron"
            v.fail("target", target, f"no orbit of these weights reaches {what}: the reachable range is "
                                     f"{_range_text(neg, zero, pos)} (a rank-deficient side of a hidden layer keeps "
                                     "the charge's sign on its kernel)")
    loss0, g0 = _loss_grad(model, data, theta0)
    gn0 = np.sqrt(np.sum(g0 * g0, axis=1))
    n_hidden, S = model.n_layers - 1, theta0.shape[0]
    mlp = model.kind == "mlp"
    hid = model.widths[1:-1]
    if mlp:
        u = [np.zeros((S, n)) for n in hid]
        apply = lambda: _apply_rescale(model, theta0, u)  # noqa: E731
    else:
        G = [np.broadcast_to(np.eye(n), (S, n, n)).copy() for n in hid]
        Ginv = [x.copy() for x in G]
        apply = lambda: _apply_linear(model, theta0, G, Ginv)  # noqa: E731

    def element():
        """The group element θ was last moved by, frozen, as a map of rows."""
        if mlp:
            uu = [x.copy() for x in u]
            return lambda x: _apply_rescale(model, np.atleast_2d(np.asarray(x, dtype=float)), uu)
        GG, GI = [x.copy() for x in G], [x.copy() for x in Ginv]
        return lambda x: _apply_linear(model, np.atleast_2d(np.asarray(x, dtype=float)), GG, GI)

    move = element()  # the identity
    residual = np.full(S, np.nan)
    theta, taken = theta0, 0
    if objective == "grad_norm":
        step = np.full(S, lr)
        g, gn = g0, gn0
        for taken in range(1, steps + 1):
            M = _algebra_gradient(model, g)
            norm = np.sqrt(sum(np.sum(m * m, axis=tuple(range(1, m.ndim))) for m in M))
            scale = np.where(norm > 0, step / np.where(norm > 0, norm, 1.0), 0.0)
            old = ([x.copy() for x in u],) if mlp else ([x.copy() for x in G], [x.copy() for x in Ginv])
            for i in range(n_hidden):
                X = M[i] * (scale[:, None] if mlp else scale[:, None, None])
                if mlp:
                    u[i] = u[i] + X
                else:
                    G[i], Ginv[i] = _sym_exp(X) @ G[i], Ginv[i] @ _sym_exp(X, -1.0)
            trial = apply()
            _, gt = _loss_grad(model, data, trial)
            gnt = np.sqrt(np.sum(gt * gt, axis=1))
            worse = ~(gnt > gn)  # a step that does not raise |∇L| is undone and halved for that seed
            if np.any(worse):
                for i in range(n_hidden):
                    if mlp:
                        u[i][worse] = old[0][i][worse]
                    else:
                        G[i][worse], Ginv[i][worse] = old[0][i][worse], old[1][i][worse]
                step[worse] *= 0.5
                trial = apply()
                _, gt = _loss_grad(model, data, trial)
                gnt = np.sqrt(np.sum(gt * gt, axis=1))
            theta, g, gn = trial, gt, gnt
            move = element()
    else:
        damp = 1.0 if n_hidden == 1 else 0.5
        for taken in range(1, steps + 1):
            res = np.zeros(S)
            for i, (q, sc, _, _) in enumerate(_charges(model, theta)):
                if mlp:
                    dev = q - target
                    # damped Newton per neuron on r(u) = a e^{2u} − α b e^{−2αu} (dr/du = 2(a + α²b) = 2·sc)
                    u[i] = u[i] - np.clip(damp * 0.5 * dev / np.where(sc > 0, sc, 1.0), -1.0, 1.0)
                    res = np.maximum(res, np.max(np.abs(dev) / np.maximum(np.max(sc, axis=1, keepdims=True), 1e-300), axis=1))
                else:
                    n = q.shape[-1]
                    dev = q - target * np.eye(n)
                    # Newton: dD = −(XS + SX), S = A + B; solved in S's eigenbasis, damped for the layers' coupling
                    s_, V = np.linalg.eigh(sc)
                    top = s_[..., -1]
                    Vt = np.swapaxes(V, -1, -2)
                    den = np.maximum(s_[..., :, None] + s_[..., None, :], 1e-300)
                    X = damp * (V @ ((Vt @ dev @ V) / den) @ Vt)
                    G[i], Ginv[i] = _sym_exp(X) @ G[i], Ginv[i] @ _sym_exp(X, -1.0)
                    res = np.maximum(res, np.max(np.abs(dev), axis=(1, 2)) / np.maximum(top, 1e-300))
            residual = res
            if np.all(res < TOL):
                taken -= 1
                break
            theta = apply()
            move = element()
        if not np.all(residual < TOL):
            residual = _balance_residual(model, theta, target)
    loss1, g1 = _loss_grad(model, data, theta)
    out_theta = theta if arr.ndim == 2 else theta[0]
    return TeleportResult(out_theta, loss0, loss1, gn0, np.sqrt(np.sum(g1 * g1, axis=1)), residual, taken, move)


def _balance_residual(model, theta, target):
    res = np.zeros(theta.shape[0])
    for q, sc, _, _ in _charges(model, theta):
        if model.kind == "mlp":
            res = np.maximum(res, np.max(np.abs(q - target), axis=1) / np.max(sc, axis=1))
        else:
            dev = q - target * np.eye(q.shape[-1])
            res = np.maximum(res, np.max(np.abs(dev), axis=(1, 2)) / np.linalg.eigvalsh(sc)[..., -1])
    return res


def _algebra_gradient(model, g):
    """Half the gradient of ‖∇L‖² in each hidden layer's algebra, from the loss gradient g (S, P)."""
    L = model.unflatten(g)
    out = []
    for i in range(1, model.n_layers):
        (Gi, gb), (G2, _) = L[i - 1], L[i]
        if model.kind == "mlp":
            m = model.degree * np.sum(G2 * G2, axis=-2) - np.sum(Gi * Gi, axis=-1) - (0.0 if gb is None else gb * gb)
        else:
            m = np.swapaxes(G2, -1, -2) @ G2 - Gi @ np.swapaxes(Gi, -1, -2)
            if gb is not None:
                m = m - gb[..., :, None] * gb[..., None, :]
        out.append(m)
    return out


# ---- teleportation as an event during a run: simulate(..., teleport_every=, teleport=) ----

TELEPORT_DYNAMICS = ("gf", "gd", "momentum", "heavy_ball", "nesterov")
MOMENTUM_TELEPORT = ("momentum", "heavy_ball", "nesterov")  # the velocity is pushed forward with θ
_SUMMED = ("n_grad_evals", "n_accepted", "n_rejected", "n_solve_iters", "n_retried_steps")
_FIRST = ("theta_initial", "charge_initial", "velocity_initial", "law_initial")
_LARGEST = ("max_solve_iters", "solve_residual", "roundoff_floor")


def check_teleport_run(teleport_every, options, model, kwargs) -> tuple[float, dict]:
    """Validated (teleport_every, teleport options) of a ``simulate`` call; ConfigError before any work."""
    every = v.positive("teleport_every", teleport_every)
    options = {} if options is None else options
    if not isinstance(options, dict) or set(options) - {"objective", "steps", "lr", "target"}:
        v.fail("teleport", options, "must be a dict with some of objective, steps, lr, target (ns.teleport's options)")
    objective, steps, lr, target = check_teleport_options(options.get("objective", "grad_norm"), options.get("steps"),
                                                          options.get("lr", 0.1), options.get("target"))
    check_teleport_model(model)
    dyn = kwargs.get("dynamics", "gf")
    if dyn not in TELEPORT_DYNAMICS:
        v.fail("teleport_every", every, f"applies to dynamics {', '.join(TELEPORT_DYNAMICS)} (an adaptive "
                                        f"optimizer's moments are per coordinate: no group element maps them), "
                                        f"not to {dyn!r}")
    if dyn in MOMENTUM_TELEPORT and kwargs.get("learning_rate") is not None:
        v.fail("learning_rate", kwargs["learning_rate"], "with teleport_every give the momentum dynamics h and tau "
                                                         "(segment times are multiples of h)")
    for name in ("batch_size", "temperature", "layer_lr", "bias_lr", "save_times"):
        if kwargs.get(name) is not None:
            v.fail(name, kwargs[name], "does not combine with teleport_every")
    if kwargs.get("track_ntk"):
        v.fail("track_ntk", True, "does not combine with teleport_every")
    if kwargs.get("keep", "seeds") != "seeds":
        v.fail("keep", kwargs["keep"], "teleport_every keeps per-seed records: keep='seeds'")
    h = kwargs.get("h") if kwargs.get("h") is not None else kwargs.get("learning_rate")
    for name, value in (("teleport_every", every), ("save_every", kwargs.get("save_every"))):
        if h is not None and value is not None and abs(value / h - round(value / h)) > 1e-9 * max(1.0, value / h):
            v.fail(name, value, f"must be a whole number of steps h = {h}")
    save_every = kwargs.get("save_every")
    if save_every is not None and abs(every / save_every - round(every / save_every)) > 1e-9 * max(1.0, every / save_every):
        v.fail("teleport_every", every, f"must be a whole number of save intervals save_every = {save_every}")
    return every, {"objective": objective, "steps": steps, "lr": lr, "target": target}


def run_with_teleports(simulate, given, model, data, kwargs, every, options):
    """``simulate`` in segments of length ``every``, each seed teleported between them (``teleport``); the
    segments' records joined into one result with the events (``teleport_*`` variables).

    ``simulate`` is the package's ``simulate`` and ``given`` its ``init.Given`` (passed in: this module stays
    below both); ``kwargs`` its validated arguments without the teleport ones.
    """
    import xarray as xr

    from .kernels.entries import ensemble_charges

    kw = dict(kwargs)
    h = kw.get("h") if kw.get("h") is not None else kw.get("learning_rate")  # gd may name its step either way
    t_end = kw.pop("t_end", None)
    n_steps = kw.pop("n_steps", None)
    if n_steps is not None:
        t_end = n_steps * h
    n_seg = max(1, int(np.ceil(t_end / every * (1 - 1e-12))))
    bounds = [min(k * every, t_end) for k in range(n_seg)] + [t_end]
    ints = model.descriptor()
    segments, events, theta = [], [], None
    alive = None
    for k in range(n_seg):
        seg_kw = dict(kw, t_end=bounds[k + 1] - bounds[k])
        if k:
            seg_kw.update(init=given(theta), seeds=ids)
        ds = simulate(model, data, **seg_kw)
        if k == 0:
            ids = ds.seed.values.tolist()
            alive = np.ones(len(ids), bool)
        segments.append(ds)
        if k == n_seg - 1:
            break
        alive &= ds.status.values == 0
        before = np.ascontiguousarray(ds.theta_final.values)
        moved = before.copy()
        res = teleport(model, data, before[alive], **options) if np.any(alive) else None
        if res is not None:
            moved[alive] = res.theta
        moved[~alive] = 0.0  # a diverged seed runs on from zero; its later records are blanked below
        if kw.get("dynamics") in MOMENTUM_TELEPORT:  # the velocity as a tangent vector: v ↦ g·v (linear action)
            vel = np.nan_to_num(np.ascontiguousarray(ds.velocity_final.values))
            if res is not None:
                vel[alive] = res.move(vel[alive])
            vel[~alive] = 0.0
            kw["velocity"] = vel
        q = [ensemble_charges(int(ints[0]), np.ascontiguousarray(x), ints, model.constants(data), model.n_charges)
             for x in (before, moved)]
        ev = {"time": bounds[k + 1], "charge_before": q[0], "charge_after": q[1]}
        for name in ("loss_before", "loss_after", "grad_norm_before", "grad_norm_after"):
            col = np.full(len(ids), np.nan)
            if res is not None:
                col[alive] = getattr(res, name)
            ev[name] = col
        events.append(ev)
        theta = moved
    return _join(segments, events, bounds, every, options, xr)


def _join(segments, events, bounds, every, options, xr):
    first, last = segments[0], segments[-1]
    out = last.drop_dims("time")  # the joined time axis replaces the last segment's
    dead = np.zeros(first.sizes["seed"], bool)
    status, t_div = first.status.values.copy(), first.t_diverged.values.copy()
    for k, ds in enumerate(segments[1:], start=1):
        new = (status == 0) & (ds.status.values != 0)
        status[new], t_div[new] = ds.status.values[new], ds.t_diverged.values[new] + bounds[k]
    for name, da in last.data_vars.items():
        if "time" in da.dims:
            dead = np.zeros(first.sizes["seed"], bool)
            parts = []
            for k, ds in enumerate(segments):
                part = ds[name] if k == 0 else ds[name].isel(time=slice(1, None))
                part = part.assign_coords(time=part.time.values + bounds[k])
                if k and "seed" in part.dims:  # seeds diverged before this segment: no records
                    dead = (segments[k - 1].status.values != 0) | dead
                    part = part.where(xr.DataArray(~dead, dims="seed", coords={"seed": part.seed}))
                parts.append(part)
            out[name] = xr.concat(parts, dim="time")
        elif name in _SUMMED:
            out[name] = sum(ds[name] for ds in segments)
        elif name in _FIRST:
            out[name] = first[name]
        elif name in _LARGEST:
            out[name] = xr.concat([ds[name] for ds in segments], dim="segment").max("segment")
    out["status"] = (("seed",), status)
    out["diverged"] = (("seed",), status == 1)
    out["t_diverged"] = (("seed",), t_div)
    out = out.assign_coords(teleport_time=("teleport", np.array([e["time"] for e in events], float)))
    desc = {"loss": "L(θ)", "grad_norm": "|∇L(θ)|"}
    for key in ("loss", "grad_norm"):
        for side in ("before", "after"):
            vals = np.array([e[f"{key}_{side}"] for e in events]).reshape(len(events), -1).T
            out[f"teleport_{key}_{side}"] = (("seed", "teleport"), vals, {"description": f"{desc[key]} {side} each teleport"})
    for side in ("before", "after"):
        vals = np.stack([e[f"charge_{side}"] for e in events], axis=1) if events else np.zeros((first.sizes["seed"], 0, out.sizes["component"]))
        if vals.shape[-1] < out.sizes["component"]:  # momentum: the isometric components (J) are not evaluated
            pad = np.full(vals.shape[:-1] + (out.sizes["component"] - vals.shape[-1],), np.nan)  # at the events
            vals = np.concatenate([vals, pad], axis=-1)
        out[f"teleport_charge_{side}"] = (("seed", "teleport", "component"), vals,
                                          {"description": f"every charge component {side} each teleport"})
    cfg = dict(out.attrs)
    config = json.loads(first.attrs.get("config", "{}"))  # the first segment has the user's init
    config.update(t_end=bounds[-1], teleport_every=every, teleport=options)
    cfg.update(config=json.dumps(config), t_end=bounds[-1], teleport_every=every,
               teleport_objective=options["objective"], n_teleports=len(events),
               n_diverged=int(np.sum(status == 1)),
               wall_seconds=float(sum(ds.attrs.get("wall_seconds", 0.0) for ds in segments)))
    out.attrs = cfg
    return out
