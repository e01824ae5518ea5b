"""Discovery on a user's model (``CustomModel``) from its gradient alone.

The built-in models differentiate their own gradient exactly (forward-mode jets, ``_jets``); a user's
compiled ``loss_grad`` can only be evaluated. So:

* linear laws ⟨v, θ⟩ and quadratic laws ½θᵀSθ are solved for exactly as for the built-ins — null
  spaces of ⟨v, ∇ℓ_ω(θ)⟩ = 0 and θᵀS∇ℓ_ω(θ) = 0 over random θ and random data weights ω — which needs
  gradients only (per data point: the user's function on one column), no derivative of them;
* the count P − dim Lie(V)(θ) needs brackets [X, Y] = DY·X − DX·Y of the per-sample fields. Their
  derivatives are taken by fourth-order central differences, (8(F(θ+hu) − F(θ−hu)) − (F(θ+2hu) −
  F(θ−2hu)))/12h with h = ε^(1/5)·max(1, rms θ)/|u|: truncation O(h⁴) and round-off O(ε/h), both about
  1e-13 relative, so a depth-2 bracket is good to ~1e-12 and a depth-3 bracket (a difference of
  differences, the error divided by h once more) to ~1e-9 — not exact, unlike the built-ins' jets.
  Brackets stop at depth 3; the rank decision asks for a singular-value gap of ``min_gap`` (default
  1e4), far above that noise. When the rank still grows at depth 3 the count is not decided: None,
  with the upper bound in the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._validate import fail, positive, positive_int
from .laws import FULL_QUADRATIC_MAX_UNKNOWNS, LawBasis, sym_coords, sym_matrix
from .lie import RankDecision, _null_space, decide_rank

FD_STEP = np.finfo(float).eps ** 0.2  # fourth-order central differences: truncation h⁴ ≈ round-off ε/h
HVP_RELATIVE_ERROR = {2: 1e-12, 3: 1e-9}  # the precision of a bracket of depth 2 and 3, stated to the user


@dataclass
class CustomDiscovery:
    """What ``discover`` finds on a CustomModel: the count (or None), the law bases, the user's charges
    checked against them."""

    model: dict
    n_params: int
    count: int | None
    upper_bound: int | None
    message: str
    ranks: list
    linear: LawBasis
    quadratic: LawBasis
    charges: list = field(default_factory=list)
    precision: str = ""

    def __str__(self):
        lines = [f"discovery on {self.model.get('name')} (P = {self.n_params}): {self.message}",
                 f"  linear laws ⟨v, θ⟩: {self.linear.dim} ({self.linear.decision.message})",
                 f"  quadratic laws ½θᵀSθ: {self.quadratic.dim} ({self.quadratic.decision.message})",
                 f"  precision: {self.precision}"]
        for c in self.charges:
            lines.append(f"  your charge {c['charge']!r}: {'a law' if c['in_span'] else 'NOT among the laws found'} "
                         f"({c.get('measure', 'distance to the span')} {c['distance']:.2g})")
        return "\n".join(lines)


def _per_sample(model, X, Y):
    """Per-point gradient function θ → (N, P) through the user's compiled wrapper."""
    cols = [(np.ascontiguousarray(X[:, n:n + 1]), np.ascontiguousarray(Y[:, n:n + 1])) for n in range(X.shape[1])]

    def grads(theta):
        return np.array([model._call(theta, a, b)[1] for a, b in cols])

    return grads


def discover_custom(model, data, *, points=2, seed=0, min_gap=1e4, quadratic="auto"):
    """``ns.discover`` for a CustomModel (see the module docstring); ``data`` is required."""
    from ..data import TrainingData

    if not isinstance(data, TrainingData):
        fail("data", data, "a CustomModel's discovery needs its data set (a TrainingData): the model has no "
                           "generic data of its own")
    if model.prepare is not None:
        fail("model", model, "discovery needs per-point gradients; this CustomModel reads prepare(X, Y) instead")
    points = positive_int("points", points)
    min_gap = positive("min_gap", min_gap)
    P = model.n_params
    n_full = P * (P + 1) // 2
    if quadratic not in ("auto", "full"):
        fail("quadratic", quadratic, "must be 'auto' or 'full' for a CustomModel (no layers to structure the search)")
    model.check(data)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC057]))
    X, Y = np.asarray(data.X, float), np.asarray(data.Y, float)
    N = X.shape[1]
    grads = _per_sample(model, X, Y)
    scale = model.init_scale or 1.0

    # ---- count: ranks of the fields and their brackets up to depth 3 at generic points ----
    ranks, decided_all, closed_all = [], True, True
    n_br = max(2 * P, 16)
    for _ in range(points):
        theta = scale * rng.standard_normal(P)
        vectors = [grads(theta)]  # depth 1: the per-sample fields (signs do not change spans)
        by_depth = [decide_rank(vectors[0], min_gap)]
        for depth in (2, 3):
            leaves = [rng.standard_normal((n_br, N)) / math.sqrt(N) for _ in range(depth)]
            rows = np.array([_bracket_field(grads, [lv[k] for lv in leaves])(theta) for k in range(n_br)])
            vectors.append(rows)
            by_depth.append(decide_rank(np.vstack(vectors), min_gap))
            if by_depth[-1].rank == by_depth[-2].rank:
                break
        ranks.append([d.rank for d in by_depth])
        decided_all &= all(d.decided for d in by_depth)
        closed_all &= len(by_depth) >= 2 and by_depth[-1].rank == by_depth[-2].rank
    bound = P - max(r[-1] for r in ranks)
    if not decided_all:
        count, message = None, f"undecided: no clear singular-value gap (ranks by depth {ranks})"
    elif not closed_all:
        count, message = None, (f"at most {bound} laws: the bracket rank still grew at depth 3 (ranks by depth "
                                f"{ranks}); deeper brackets by finite differences are not precise enough")
    else:
        count = bound
        message = (f"{count} independent conservation law{'s' if count != 1 else ''}: dim Lie = {P - count} of {P} "
                   f"(ranks by bracket depth {ranks} at {points} point{'s' if points > 1 else ''}: closed)")

    # ---- linear and quadratic laws: null spaces over random θ and data weights (gradients only) ----
    n_rows = P + 16
    theta_rows = scale * rng.standard_normal((max(n_rows, n_full + 32 if n_full <= FULL_QUADRATIC_MAX_UNKNOWNS
                                                  else 0), P))
    w = rng.standard_normal((theta_rows.shape[0], N)) / math.sqrt(N)
    g = np.array([w[i] @ grads(theta_rows[i]) for i in range(theta_rows.shape[0])])
    null, dec = _null_space(g[:n_rows], min_gap)
    lin = LawBasis("linear ⟨v, θ⟩", [null[:, k] for k in range(null.shape[1])], dec, "full", n_rows)
    if n_full <= FULL_QUADRATIC_MAX_UNKNOWNS:
        r, c = np.triu_indices(P)
        rows = np.where(r == c, 0.5, 1.0 / math.sqrt(2.0)) * (theta_rows[:, r] * g[:, c] + theta_rows[:, c] * g[:, r])
        qnull, qdec = _null_space(rows, min_gap)
        quad = LawBasis("quadratic ½θᵀSθ", [sym_matrix(qnull[:, k], P, False) for k in range(qnull.shape[1])],
                        qdec, "full", rows.shape[0])
    else:
        quad = LawBasis("quadratic ½θᵀSθ", [], RankDecision(0, n_full, np.zeros(0), math.inf, 1.0, 0.0, 0.0, False,
                        f"not searched: P(P+1)/2 = {n_full} unknowns > {FULL_QUADRATIC_MAX_UNKNOWNS}"), "none", 0)

    # ---- the user's charges against the laws found ----
    checks = []
    for ch in model.charges:
        if ch.degree == 0:  # a function charge: a law of every per-point flow iff ⟨∇q_i, ∇ℓ_n⟩ ≡ 0
            checks.append(_function_charge_check(ch, grads, theta_rows[:max(points, 2)], rng))
            continue
        if ch.degree == 1:
            vec = np.zeros(P)
            np.add.at(vec, ch.rows, ch.values)
            basis = np.array(lin.basis).T if lin.basis else np.zeros((P, 0))
        else:
            S = np.zeros((P, P))
            np.add.at(S, (ch.rows, ch.cols), ch.values)
            vec = sym_coords(S)
            basis = np.array([sym_coords(M) for M in quad.basis]).T if quad.basis else np.zeros((len(vec), 0))
        vec = vec / (np.linalg.norm(vec) or 1.0)
        dist = float(np.linalg.norm(vec - basis @ (basis.T @ vec))) if basis.shape[1] else 1.0
        checks.append({"charge": ch.name, "in_span": dist < 1e-6, "distance": dist})
    return CustomDiscovery(model.to_config(), P, count, bound, message, ranks, lin, quad, checks,
                           precision=f"brackets by fourth-order central differences of your gradient, relative error "
                                     f"about {HVP_RELATIVE_ERROR[2]:g} at depth 2 and {HVP_RELATIVE_ERROR[3]:g} at "
                                     f"depth 3; rank gaps required ×{min_gap:g}; "
                                     "law bases from gradients only (exact up to round-off)")


def _function_charge_check(ch, grads, thetas, rng):
    """A function charge q against the per-point fields: the largest |⟨∇q_i, ∇ℓ_n⟩| / (‖∇q_i‖‖∇ℓ_n‖) over
    the points θ and the data points n, by central differences of q (charges._function_symmetry); it is a
    law when every one is within that function's tolerance."""
    from ..charges import _function_symmetry

    worst, holds = 0.0, True
    for theta in thetas:
        for g in grads(theta):
            value, size, tol = _function_symmetry(ch, theta, g, rng)
            holds &= value <= tol
            worst = max(worst, value / size if size > 0 else 0.0)
    return {"charge": ch.name, "in_span": bool(holds), "distance": worst,
            "measure": "largest ⟨∇q, ∇ℓ_n⟩ / (‖∇q‖·‖∇ℓ_n‖)"}


def _jvp(field, theta, u):
    """D field(θ)·u by fourth-order central differences at h = ε^(1/5)·max(1, rms θ)/|u| (module docstring)."""
    nu = np.linalg.norm(u)
    if nu == 0:
        return np.zeros_like(theta)
    h = FD_STEP * max(1.0, np.linalg.norm(theta) / math.sqrt(len(theta))) / nu
    return (8.0 * (field(theta + h * u) - field(theta - h * u)) - (field(theta + 2 * h * u)
                                                                    - field(theta - 2 * h * u))) / (12.0 * h)


def _bracket_field(grads, weights):
    """The right-normed bracket [X_1, [X_2, … X_d]] of the leaf fields X_i = Σ_n weights_i[n] ∇ℓ_n, as a function
    of θ; [U, V] = DV·U − DU·V."""
    leaf = lambda w: (lambda th: w @ grads(th))  # noqa: E731
    if len(weights) == 1:
        return leaf(weights[0])
    U, V = leaf(weights[0]), _bracket_field(grads, weights[1:])
    return lambda th: _jvp(V, th, U(th)) - _jvp(U, th, V(th))
