"""Training data. Columns are data points: X is n_in × N, Y is n_out × N (as in XXᵀ/N of theory.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import fail, finite_array, non_negative, positive_int
from .random import data_rng


@dataclass(frozen=True, eq=False)
class TrainingData:
    X: np.ndarray
    Y: np.ndarray
    description: str = "user arrays"

    def __post_init__(self):
        X = finite_array("X", self.X, 2)
        Y = finite_array("Y", self.Y, 2)
        if X.shape[1] != Y.shape[1]:
            fail("Y", Y, f"must have as many columns (data points) as X, {X.shape[1]}, got {Y.shape[1]}")
        if X.shape[1] < 1:
            fail("X", X, "must hold at least one data point (column)")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "Y", Y)

    @property
    def n_in(self) -> int:
        return self.X.shape[0]

    @property
    def n_out(self) -> int:
        return self.Y.shape[0]

    @property
    def n_points(self) -> int:
        return self.X.shape[1]

    @property
    def syy(self) -> float:
        return float(np.sum(self.Y * self.Y) / self.n_points)

    def moments(self, augmented: bool) -> tuple[np.ndarray, np.ndarray]:
        """(Σxx, Σyx) of x̃ = [x; 1] (augmented) or x."""
        Xa = np.vstack([self.X, np.ones((1, self.n_points))]) if augmented else self.X
        return (np.ascontiguousarray(Xa @ Xa.T / self.n_points),
                np.ascontiguousarray(self.Y @ Xa.T / self.n_points))

    def check_fits(self, model):
        if self.n_in != model.widths[0]:
            fail("data", self, f"inputs have {self.n_in} features but the model's input width is {model.widths[0]}")
        if self.n_out != model.widths[-1]:
            fail("data", self, f"targets have {self.n_out} outputs but the model's output width is {model.widths[-1]}")

    def __repr__(self):
        return f"TrainingData({self.description}, n_in={self.n_in}, n_out={self.n_out}, N={self.n_points})"

    def to_config(self) -> dict:
        return {"kind": "arrays", "description": self.description}


def from_arrays(X, Y) -> TrainingData:
    return TrainingData(X, Y)


def synthetic_regression(n_in: int, n_out: int, n_points: int, noise: float = 0.0,
                         teacher_scale: float = 1.0, seed: int = 0) -> TrainingData:
    """Gaussian inputs, a random linear teacher W* (entries N(0, scale²/n_in)), Gaussian label noise."""
    n_in, n_out, n_points = (positive_int(k, v) for k, v in
                             (("n_in", n_in), ("n_out", n_out), ("n_points", n_points)))
    noise = non_negative("noise", noise)
    teacher_scale = non_negative("teacher_scale", teacher_scale)
    rng = data_rng(seed)
    X = rng.standard_normal((n_in, n_points))
    teacher = rng.standard_normal((n_out, n_in)) * teacher_scale / np.sqrt(n_in)
    Y = teacher @ X + noise * rng.standard_normal((n_out, n_points))
    return TrainingData(X, Y, f"synthetic regression (noise={noise}, teacher_scale={teacher_scale}, seed={seed})")


def whitened(n_in: int, n_out: int, n_points: int, singular_values, seed: int = 0) -> TrainingData:
    """Inputs with XXᵀ/N = I exactly and input–output correlation YXᵀ/N = U diag(s) Vᵀ (U, V random)."""
    n_in, n_out, n_points = (positive_int(k, v) for k, v in
                             (("n_in", n_in), ("n_out", n_out), ("n_points", n_points)))
    s = finite_array("singular_values", np.atleast_1d(singular_values), 1)
    if len(s) > min(n_in, n_out) or np.any(s < 0):
        fail("singular_values", list(s), f"must be at most min(n_in, n_out) = {min(n_in, n_out)} values >= 0")
    if n_points < n_in:
        fail("n_points", n_points, f"must be >= n_in = {n_in} to whiten the inputs exactly")
    rng = data_rng(seed)
    X0 = rng.standard_normal((n_in, n_points))
    evals, evecs = np.linalg.eigh(X0 @ X0.T / n_points)
    X = evecs @ np.diag(evals ** -0.5) @ evecs.T @ X0  # XXᵀ/N = I
    U = np.linalg.qr(rng.standard_normal((n_out, len(s))))[0]
    V = np.linalg.qr(rng.standard_normal((n_in, len(s))))[0]
    Y = U @ np.diag(s) @ V.T @ X
    return TrainingData(X, Y, f"whitened, correlation singular values {list(map(float, s))} (seed={seed})")
