"""Integration methods as data: Butcher tableaus, with their properties computed from the coefficients.

A method is never a new kernel: the generic explicit stepper in ``kernels/explicit.py`` runs any
``Tableau`` below. Properties (explicitness, the order conditions it satisfies, the symplectic
condition b_i a_ij + b_j a_ji = b_i b_j) are derived from A, b, c and checked in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Tableau:
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
    """All rooted trees with ``order`` nodes; a tree is the sorted tuple of its root's subtrees."""
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


def get_method(name: str) -> Tableau:
    try:
        return EXPLICIT_METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"method={name!r} is not a known method; known methods: {', '.join(EXPLICIT_METHODS)}"
        ) from None
