"""Initialisations. Each is a small dataclass whose ``draw(model, rng)`` returns one flat parameter row."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._validate import fail, finite_array, non_negative


def _layer_scales(scale, n_layers):
    scales = np.broadcast_to(np.asarray(scale, dtype=float), (n_layers,)) if np.ndim(scale) == 0 else np.asarray(scale, float)
    if scales.shape != (n_layers,) or not np.all(np.isfinite(scales)) or np.any(scales < 0):
        fail("scale", scale, f"must be a number >= 0 or a list of {n_layers} numbers >= 0 (one per layer)")
    return scales


def _semi_orthogonal(rng, n_rows, n_cols):
    """A random n_rows × n_cols matrix with orthonormal rows or columns (Haar, via signed QR)."""
    big, small = max(n_rows, n_cols), min(n_rows, n_cols)
    Q, R = np.linalg.qr(rng.standard_normal((big, small)))
    Q = Q * np.sign(np.diag(R))
    return Q if n_rows >= n_cols else Q.T


@dataclass(frozen=True)
class Gaussian:
    """W_i entries N(0, scale_i² / n_{i-1}); biases N(0, bias_scale²)."""

    scale: float | tuple = 1.0
    bias_scale: float = 0.0
    kind: str = "gaussian"

    def draw(self, model, rng):
        scales = _layer_scales(self.scale, model.n_layers)
        non_negative("bias_scale", self.bias_scale)
        layers = []
        for i in range(1, model.n_layers + 1):
            n_out, n_in = model.weight_shape(i)
            W = rng.standard_normal((n_out, n_in)) * scales[i - 1] / np.sqrt(n_in)
            b = rng.standard_normal(n_out) * self.bias_scale if model.bias else None
            layers.append((W, b))
        return model.flatten(layers)


@dataclass(frozen=True)
class Orthogonal:
    """W_i = scale_i × a random semi-orthogonal matrix; biases zero."""

    scale: float | tuple = 1.0
    kind: str = "orthogonal"

    def draw(self, model, rng):
        scales = _layer_scales(self.scale, model.n_layers)
        return model.flatten([(scales[i - 1] * _semi_orthogonal(rng, *model.weight_shape(i)), None)
                              for i in range(1, model.n_layers + 1)])


@dataclass(frozen=True)
class Balanced:
    """Exactly balanced: W_i = Q_i diag(σ) Q_{i-1}ᵀ with orthonormal-column Q_i (n_i × r), biases zero.

    Then W_{i+1}ᵀW_{i+1} = W_iW_iᵀ = Q_i diag(σ²) Q_iᵀ, so every D_i = 0, and all layers share the
    singular values σ_k = scale × u_k, u_k uniform in [0.5, 1.5], r = the narrowest width.
    """

    scale: float = 1.0
    kind: str = "balanced"

    def draw(self, model, rng):
        non_negative("scale", self.scale)
        r = min(model.widths)
        sigma = self.scale * rng.uniform(0.5, 1.5, size=r)
        Q = [_semi_orthogonal(rng, n, r) for n in model.widths]
        return model.flatten([(Q[i] @ np.diag(sigma) @ Q[i - 1].T, None) for i in range(1, model.n_layers + 1)])


@dataclass(frozen=True, eq=False)
class Given:
    """Weights the user passes: one flat row for every seed, or one row per seed (n_seeds × n_params)."""

    theta: np.ndarray
    kind: str = "given"

    def __post_init__(self):
        arr = np.asarray(self.theta, dtype=float)
        object.__setattr__(self, "theta", finite_array("init.theta", arr, arr.ndim if arr.ndim in (1, 2) else 1))

    def rows(self, model, n_seeds):
        arr = self.theta
        if arr.shape[-1] != model.n_params or (arr.ndim == 2 and arr.shape[0] != n_seeds):
            fail("init.theta", arr, f"must have shape ({model.n_params},) or ({n_seeds}, {model.n_params}) "
                                    f"(n_params of the model, one row per seed)")
        # a fresh writable copy: the driver integrates these rows in place
        return np.array(np.broadcast_to(arr, (n_seeds, model.n_params)), order="C")

    def to_config(self):
        return {"kind": self.kind, "shape": list(self.theta.shape)}


def to_config(init) -> dict:
    return init.to_config() if hasattr(init, "to_config") else asdict(init)


INITS = {"gaussian": Gaussian, "orthogonal": Orthogonal, "balanced": Balanced}
