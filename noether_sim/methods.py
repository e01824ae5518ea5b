"""Integration methods as data: Butcher tableaus, with their properties computed from the coefficients.

A method is never a new kernel: the generic explicit stepper in ``kernels/explicit.py`` runs any
``Tableau`` below. Properties (explicitness, the order conditions it satisfies, the symplectic
condition b_i a_ij + b_j a_ji = b_i b_j) are derived from A, b, c and checked in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Tableau:
    """A Runge–Kutta method as data: one generic kernel runs every tableau.

    Its order conditions (rooted trees) and the symplectic condition ``b_ia_ij + b_ja_ji = b_ib_j`` are
    computed from the coefficients (``properties()``), not taken from the claim.

    Parameters
    ----------
    name, description : str
        As shown by ``noether-sim list``.
    A, b, c : ndarray
        The Butcher tableau (``A`` strictly lower triangular for an explicit method).
    order : int
        The claimed order of the weights ``b``.
    b_err : ndarray, optional
        Embedded weights of order ``error_order``, for step-size control.
    error_order : int, optional
        Their order.
    adaptive : bool
        Use the embedded pair for per-seed step-size control.

    Examples
    --------
    >>> from noether_sim.methods import EXPLICIT_METHODS
    >>> props = EXPLICIT_METHODS["rk4"].properties()
    >>> props["order conditions satisfied up to"], props["symplectic condition"]
    (4, False)
    """

    name: str
    description: str
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int  # the claimed order of the b weights
    b_err: np.ndarray | None = None  # embedded weights of order ``error_order``
    error_order: int | None = None
    adaptive: bool = False  # use the embedded pair for step-size control

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def explicit(self) -> bool:
        return bool(np.all(np.triu(self.A) == 0.0))

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is the next step's first (saves one evaluation)."""
        return bool(self.explicit and np.array_equal(self.A[-1], self.b))

    @property
    def symplectic(self) -> bool:
        """b_i a_ij + b_j a_ji = b_i b_j for all i, j (conserves every quadratic invariant)."""
        M = self.b[:, None] * self.A + (self.b[:, None] * self.A).T - np.outer(self.b, self.b)
        return bool(np.max(np.abs(M)) < 1e-14)

    def satisfied_order(self, weights: np.ndarray | None = None, up_to: int = 8) -> int:
        """Highest p such that every rooted-tree order condition of order ≤ p holds."""
        weights = self.b if weights is None else weights
        return satisfied_order(self.A, weights, up_to)

    def properties(self) -> dict:
        out = {
            "stages": self.stages,
            "claimed order": self.order,
            "order conditions satisfied up to": self.satisfied_order(),
            "explicit": self.explicit,
            "symplectic condition": self.symplectic,
            "adaptive": self.adaptive,
        }
        if self.b_err is not None:
            out["embedded order"] = self.satisfied_order(self.b_err)
        return out


@lru_cache(maxsize=None)
def rooted_trees(order: int) -> tuple:
    """All rooted trees with ``order`` nodes; a tree is the sorted tuple of its root's subtrees.

    The order conditions of a Runge–Kutta method are one equation per rooted tree.

    Examples
    --------
    >>> from noether_sim.methods import rooted_trees
    >>> [len(rooted_trees(n)) for n in range(1, 6)]
    [1, 1, 2, 4, 9]
    """
    if order == 1:
        return ((),)
    trees = set()

    def forests(n, smallest):
        # multisets of trees with n nodes in total, in non-decreasing canonical order
        if n == 0:
            yield ()
            return
        for k in range(1, n + 1):
            for t in rooted_trees(k):
                if (k, t) < smallest:
                    continue
                for rest in forests(n - k, (k, t)):
                    yield ((k, t),) + rest

    for forest in forests(order - 1, (0, ())):
        trees.add(tuple(sorted(forest)))
    return tuple(sorted(trees))


def _tree_data(tree, A):
    """(stage weight vector Φ, density γ, number of nodes) of a tree."""
    phi = np.ones(A.shape[0])
    gamma = Fraction(1)
    nodes = 1
    for k, sub in tree:
        sub_phi, sub_gamma, _ = _tree_data(sub, A)
        phi = phi * (A @ sub_phi)
        gamma *= sub_gamma
        nodes += k
    return phi, gamma * nodes, nodes


def satisfied_order(A: np.ndarray, b: np.ndarray, up_to: int = 8, tol: float = 1e-12) -> int:
    for p in range(1, up_to + 1):
        for tree in rooted_trees(p):
            phi, gamma, _ = _tree_data(tree, A)
            if abs(b @ phi - 1.0 / float(gamma)) > tol:
                return p - 1
    return up_to


def _t(name, description, A, b, order, **kw):
    A = np.array(A, dtype=float)
    return Tableau(name, description, A, np.array(b, dtype=float), A.sum(axis=1), order,
                   **{k: (np.array(v, dtype=float) if k == "b_err" else v) for k, v in kw.items()})


_DP_A = [
    [0, 0, 0, 0, 0, 0, 0],
    [1 / 5, 0, 0, 0, 0, 0, 0],
    [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
    [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
]
_DP_B = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]
_DP_B4 = [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]

EXPLICIT_METHODS: dict[str, Tableau] = {
    m.name: m
    for m in [
        _t("euler", "explicit Euler (order 1); gradient descent is Euler with h = learning rate",
           [[0]], [1], 1),
        _t("heun", "Heun's method, explicit trapezoid (order 2)", [[0, 0], [1, 0]], [1 / 2, 1 / 2], 2),
        _t("midpoint", "explicit midpoint rule (order 2)", [[0, 0], [1 / 2, 0]], [0, 1], 2),
        _t("rk3", "Kutta's third-order method (order 3)",
           [[0, 0, 0], [1 / 2, 0, 0], [-1, 2, 0]], [1 / 6, 2 / 3, 1 / 6], 3),
        _t("rk4", "classic Runge–Kutta (order 4)",
           [[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 1 / 2, 0, 0], [0, 0, 1, 0]],
           [1 / 6, 1 / 3, 1 / 3, 1 / 6], 4),
        _t("rk38", "Kutta's 3/8 rule (order 4)",
           [[0, 0, 0, 0], [1 / 3, 0, 0, 0], [-1 / 3, 1, 0, 0], [1, -1, 1, 0]],
           [1 / 8, 3 / 8, 3 / 8, 1 / 8], 4),
        _t("dp5", "Dormand–Prince 5th-order weights at a fixed step (order 5)", _DP_A, _DP_B, 5),
        _t("dopri5", "adaptive Dormand–Prince 5(4) embedded pair, per-seed step control (rtol, atol)",
           _DP_A, _DP_B, 5, b_err=_DP_B4, error_order=4, adaptive=True),
    ]
}


# ---------------------------------------------------------------------------------------------
# Implicit Runge–Kutta: Gauss–Legendre collocation (structure-preserving integration).
# Run by the generic implicit stepper kernels/implicit.py; like the explicit ones, these are data.
# ---------------------------------------------------------------------------------------------

def gauss_legendre(stages: int) -> Tableau:
    """The s-stage Gauss–Legendre collocation method (order 2s), from the roots of P_s.

    Nodes c_i = (1 + x_i)/2 with x_i the roots of the Legendre polynomial P_s (numpy's Golub–Welsch
    eigenvalues, accurate to a few ulp). b and A are then fixed by the collocation conditions
    B(s): Σ_j b_j c_j^{k-1} = 1/k and C(s): Σ_j a_ij c_j^{k-1} = c_i^k / k for k = 1 … s, solved as
    Vandermonde systems (well conditioned for s ≤ 3). Order and symplectic condition are then
    *checked* from the coefficients, not assumed.

    Parameters
    ----------
    stages : int
        Number of stages s ≥ 1 (1: implicit midpoint).

    Returns
    -------
    Tableau

    Examples
    --------
    >>> from noether_sim.methods import gauss_legendre
    >>> props = gauss_legendre(2).properties()
    >>> props["order conditions satisfied up to"], props["symplectic condition"]
    (4, True)
    """
    x, _ = np.polynomial.legendre.leggauss(stages)
    c = (1.0 + x) / 2.0
    k = np.arange(1, stages + 1)
    V = c[:, None] ** (k[None, :] - 1)  # V[j, k-1] = c_j^{k-1}
    b = np.linalg.solve(V.T, 1.0 / k)
    A = np.linalg.solve(V.T, (c[None, :] ** k[:, None] / k[:, None])).T
    return Tableau(f"gl{stages}", f"implicit Gauss–Legendre, {stages} stage(s) (order {2 * stages}; "
                                  f"symplectic, conserves every quadratic charge)", A, b, c, 2 * stages)


IMPLICIT_METHODS: dict[str, Tableau] = {m.name: m for m in (gauss_legendre(s) for s in (1, 2, 3))}


# ---------------------------------------------------------------------------------------------
# Splitting methods for momentum flow q̇ = p, ṗ = −(∇L(q) + λq)/τ − p/τ (theory.md §4): a list of
# named exact sub-flows with weights (fractions of the step h):
#   damp  p ← e^{−wh/τ} p                     (the exact friction flow)
#   kick  p ← p − (wh/τ)(∇L(q) + λq)           (the exact flow of the potential, q fixed)
#   drift q ← q + wh p                          (the exact free flow)
# Each sub-flow is exact, kick and drift are symplectic and damp contracts the symplectic form by
# exactly e^{−wh/τ}, so every composition below is conformal symplectic.
# ---------------------------------------------------------------------------------------------

SPLIT_OPS = ("damp", "kick", "drift")


@dataclass(frozen=True)
class Splitting:
    """A splitting method for momentum flow as data: damp (``p ↦ e^{−wh/τ}p``), kick
    (``p ↦ p − (wh/τ)∇L``) and drift (``q ↦ q + whp``) sub-steps, applied left to right.

    Every such composition is conformal symplectic: it keeps the isometric charges' law
    ``J_{k+1} = e^{−h/τ}J_k`` at any step size (docs/theory.md §4).

    Parameters
    ----------
    name, description : str
        As shown by ``noether-sim list``.
    steps : tuple of (str, float)
        ``((op, weight), …)`` with op in ``SPLIT_OPS``; each op's weights sum to 1 for consistency.
    order : int
        The claimed order (checked by the convergence tests).

    Examples
    --------
    >>> from noether_sim.methods import SPLITTING_METHODS
    >>> SPLITTING_METHODS["verlet"].properties()["consistent"]
    True
    """

    name: str
    description: str
    steps: tuple  # ((op, weight), …) applied left to right
    order: int  # claimed order (checked by the convergence tests)

    def weight_sum(self, op: str) -> float:
        return float(sum(w for o, w in self.steps if o == op))

    @property
    def consistent(self) -> bool:
        """Every sub-flow adds up to one full step (necessary for order ≥ 1)."""
        return all(abs(self.weight_sum(op) - 1.0) < 1e-14 for op in SPLIT_OPS)

    @property
    def symmetric(self) -> bool:
        """A palindromic sequence is self-adjoint, so its order is even."""
        return all(o1 == o2 and abs(w1 - w2) < 1e-15
                   for (o1, w1), (o2, w2) in zip(self.steps, reversed(self.steps)))

    @property
    def conformal_symplectic(self) -> bool:
        return all(op in SPLIT_OPS for op, _ in self.steps)

    def op_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 op codes in SPLIT_OPS order, float64 weights) for the kernel."""
        return (np.array([SPLIT_OPS.index(op) for op, _ in self.steps], dtype=np.int64),
                np.array([w for _, w in self.steps], dtype=float))

    def properties(self) -> dict:
        return {"sub-steps": len(self.steps), "claimed order": self.order, "consistent": self.consistent,
                "symmetric": self.symmetric, "conformal symplectic": self.conformal_symplectic}


def compose(base: Splitting, weights, name: str, description: str, order: int) -> Splitting:
    """The composition base_{w_1 h} ∘ base_{w_2 h} ∘ …, e.g. Yoshida's triple jump."""
    return Splitting(name, description, tuple((op, w * c) for c in weights for op, w in base.steps), order)


_CONFORMAL_EULER = Splitting(
    "symplectic_euler",
    "conformal symplectic Euler: damp, kick, drift (order 1); heavy ball with β = e^{−h/τ}, η = h²/τ",
    (("damp", 1.0), ("kick", 1.0), ("drift", 1.0)), 1)
_CONFORMAL_VERLET = Splitting(
    "verlet",
    "conformal Störmer–Verlet: half damp, half kick, drift, half kick, half damp (order 2)",
    (("damp", 0.5), ("kick", 0.5), ("drift", 1.0), ("kick", 0.5), ("damp", 0.5)), 2)
_YOSHIDA_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
_YOSHIDA_W0 = -(2.0 ** (1.0 / 3.0)) / (2.0 - 2.0 ** (1.0 / 3.0))

SPLITTING_METHODS: dict[str, Splitting] = {
    m.name: m
    for m in (
        _CONFORMAL_EULER,
        _CONFORMAL_VERLET,
        compose(_CONFORMAL_VERLET, (_YOSHIDA_W1, _YOSHIDA_W0, _YOSHIDA_W1), "yoshida4",
                "Yoshida's triple jump of conformal Störmer–Verlet (order 4)", 4),
    )
}


def get_any_method(name: str):
    """An explicit or implicit tableau, or a splitting, by name."""
    for table in (EXPLICIT_METHODS, IMPLICIT_METHODS, SPLITTING_METHODS):
        if isinstance(name, str) and name in table:
            return table[name]
    known = [*EXPLICIT_METHODS, *IMPLICIT_METHODS, *SPLITTING_METHODS]
    from ._validate import ConfigError

    raise ConfigError(f"method={name!r} is not a known method; known methods: {', '.join(known)}")
