"""Initialisations. Each is a small dataclass with

    rows(model, root, seed_ids)  one flat parameter row per seed id, from the counter-based streams of
                                 random.py (vectorised; row i depends only on (root, seed_ids[i]))
    draw(model, rng)             one row from a NumPy Generator (for a single network by hand)

Both shape the same standard normals (and uniforms) the same way: one code path per initialisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._validate import fail, finite_array, non_negative
from .random import INIT_STREAM, INIT_UNIFORM_STREAM, normal_rows, uniform_rows


def _layer_scales(scale, n_layers):
    scales = np.broadcast_to(np.asarray(scale, dtype=float), (n_layers,)) if np.ndim(scale) == 0 else np.asarray(scale, float)
    if scales.shape != (n_layers,) or not np.all(np.isfinite(scales)) or np.any(scales < 0):
        fail("scale", scale, f"must be a number >= 0 or a list of {n_layers} numbers >= 0 (one per layer)")
    return scales


def _semi_orthogonal(G, n_rows, n_cols):
    """Random n_rows × n_cols matrices with orthonormal rows or columns (Haar, via signed QR) from a stack
    G of standard normal (max × min) matrices; LAPACK factors each matrix of the stack on its own."""
    Q, R = np.linalg.qr(G)
    Q = Q * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]
    return Q if n_rows >= n_cols else np.swapaxes(Q, 1, 2)


class _Drawn:
    """Drawing for every initialisation from ``n_normals``/``n_uniforms`` and ``shape``."""

    def n_uniforms(self, model):
        return 0

    def rows(self, model, root, seed_ids):
        """One flat row per seed id; row i depends only on (root, seed_ids[i])."""
        Z = normal_rows(root, INIT_STREAM, seed_ids, self.n_normals(model))
        n_u = self.n_uniforms(model)
        U = uniform_rows(root, INIT_UNIFORM_STREAM, seed_ids, n_u) if n_u else None
        return np.ascontiguousarray(self.shape(model, Z, U))

    def draw(self, model, rng):
        """One flat row from a NumPy Generator."""
        Z = rng.standard_normal((1, self.n_normals(model)))
        n_u = self.n_uniforms(model)
        return self.shape(model, Z, rng.random((1, n_u)) if n_u else None)[0]


@dataclass(frozen=True)
class Gaussian(_Drawn):
    """W_i entries N(0, scale_i² / n_{i-1}); biases N(0, bias_scale²).

    Parameters
    ----------
    scale : float or tuple of float
        One scale for every layer, or one per layer.
    bias_scale : float
        Standard deviation of the biases.

    Examples
    --------
    >>> import noether_sim as ns
    >>> theta = ns.init.Gaussian(scale=1.0).rows(ns.DeepLinear((4, 3, 2)), 0, [0, 1, 2])
    >>> theta.shape      # one row per seed id, each a pure function of (root seed 0, id)
    (3, 18)
    """

    scale: float | tuple = 1.0
    bias_scale: float = 0.0
    kind: str = "gaussian"

    def n_normals(self, model):
        return model.n_params

    def shape(self, model, Z, U=None):
        """Scale standard normals Z (n, n_params), laid out like the parameters, in place."""
        scales = _layer_scales(self.scale, model.n_layers)
        non_negative("bias_scale", self.bias_scale)
        column = np.empty(model.n_params)  # each parameter's standard deviation, in the flat layout
        for i, (W, b) in enumerate(model.unflatten(column), start=1):
            W[...] = scales[i - 1] / np.sqrt(model.weight_shape(i)[1])
            if b is not None:
                b[...] = self.bias_scale
        Z *= column  # one contiguous pass over the rows
        return Z


@dataclass(frozen=True)
class Orthogonal(_Drawn):
    """W_i = scale_i × a random semi-orthogonal matrix; biases zero.

    Parameters
    ----------
    scale : float or tuple of float
        One scale for every layer, or one per layer.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> W1 = model.unflatten(ns.init.Orthogonal().rows(model, 0, [0])[0])[0][0]
    >>> np.allclose(W1 @ W1.T, np.eye(3))
    True
    """

    scale: float | tuple = 1.0
    kind: str = "orthogonal"

    def n_normals(self, model):
        return sum(max(model.weight_shape(i)) * min(model.weight_shape(i)) for i in range(1, model.n_layers + 1))

    def shape(self, model, Z, U=None):
        scales = _layer_scales(self.scale, model.n_layers)
        layers, pos = [], 0
        for i in range(1, model.n_layers + 1):
            n_out, n_in = model.weight_shape(i)
            big, small = max(n_out, n_in), min(n_out, n_in)
            G = Z[:, pos:pos + big * small].reshape(-1, big, small)
            pos += big * small
            layers.append((scales[i - 1] * _semi_orthogonal(G, n_out, n_in), None))
        return model.flatten(layers)


@dataclass(frozen=True)
class Balanced(_Drawn):
    """Exactly balanced: W_i = Q_i diag(σ) Q_{i-1}ᵀ with orthonormal-column Q_i (n_i × r), biases zero.

    Then W_{i+1}ᵀW_{i+1} = W_iW_iᵀ = Q_i diag(σ²) Q_iᵀ, so every D_i = 0, and all layers share the
    singular values σ_k = scale × u_k, u_k uniform in [0.5, 1.5], r = the narrowest width.

    Parameters
    ----------
    scale : float
        The singular values' scale (≥ 0).

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 3, 2))
    >>> ds = ns.simulate(model, ns.data.synthetic_regression(4, 2, 8), init=ns.init.Balanced(), h=0.1,
    ...                  n_steps=1, seeds=2)
    >>> float(abs(ds.charge_initial).max()) < 1e-14     # every D_i = 0 at the start
    True
    """

    scale: float = 1.0
    kind: str = "balanced"

    def n_normals(self, model):
        if not hasattr(model, "widths"):
            fail("init", self, f"Balanced is for layered networks (DeepLinear, MLP), not {type(model).__name__}")
        return sum(n * min(model.widths) for n in model.widths)

    def n_uniforms(self, model):
        return min(model.widths)

    def shape(self, model, Z, U=None):
        non_negative("scale", self.scale)
        r = min(model.widths)
        sigma = self.scale * (0.5 + U)  # (n, r), uniform in [0.5, 1.5]
        Q, pos = [], 0
        for n in model.widths:
            Q.append(_semi_orthogonal(Z[:, pos:pos + n * r].reshape(-1, n, r), n, r))
            pos += n * r
        return model.flatten([(Q[i] * sigma[:, None, :] @ np.swapaxes(Q[i - 1], 1, 2), None)
                              for i in range(1, model.n_layers + 1)])


@dataclass(frozen=True, eq=False)
class Given:
    """Weights the user passes: one flat row for every seed, or one row per seed (n_seeds × n_params).

    Parameters
    ----------
    theta : array_like
        Shape (n_params,) or (n_seeds, n_params), in the model's flat layout (``model.flatten``).

    Raises
    ------
    ConfigError
        Non-finite values; a shape that does not fit the model or the number of seeds (when run).

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> model = ns.DeepLinear((4, 3, 2))
    >>> ds = ns.simulate(model, ns.data.synthetic_regression(4, 2, 8), init=ns.init.Given(np.ones(18)),
    ...                  h=0.1, n_steps=1, seeds=3)
    >>> ds.theta_initial.values.tolist() == [[1.0] * 18] * 3
    True
    """

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


@dataclass(frozen=True, eq=False)
class Teleported:
    """Another initialisation's weights, teleported along their symmetry orbit before training.

    Each seed's row of ``base`` is moved by ``noether_sim.teleport`` (same loss on ``data``; ‖∇L‖ raised,
    or the charges balanced at ``target``), so seed i's start is still a pure function of (root seed, i).

    Parameters
    ----------
    data : TrainingData
        The data whose loss the orbit keeps (the run's data).
    base : initialisation
        Where the seeds start before teleporting (default ``Gaussian()``).
    objective : {"grad_norm", "balance"}
        What ``teleport`` does (see there).
    steps : int, optional
        Its steps (default 10 for grad_norm, at most 2000 for balance).
    lr : float
        Its ascent step length (grad_norm).
    target : float, optional
        The charges' value for ``objective="balance"`` (default 0).

    Raises
    ------
    ConfigError
        As ``teleport`` (when rows are drawn: a model without an orbit, a target out of reach).

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((3, 3, 3))
    >>> data = ns.data.synthetic_regression(3, 3, 16, seed=1)
    >>> ds = ns.simulate(model, data, init=ns.init.Teleported(data, objective="balance"), h=0.1,
    ...                  n_steps=1, seeds=2)
    >>> float(abs(ds.charge_initial).max()) < 1e-12      # every D_i = 0 at the start
    True
    """

    data: object
    base: object = None
    objective: str = "grad_norm"
    steps: int | None = None
    lr: float = 0.1
    target: float | None = None
    kind: str = "teleported"

    def __post_init__(self):
        from .teleport import check_teleport_options
        if self.base is None:
            object.__setattr__(self, "base", Gaussian())
        if not hasattr(self.base, "rows") or isinstance(self.base, (Given, Teleported)):
            fail("base", self.base, "must be a drawn initialisation (Gaussian, Orthogonal, Balanced)")
        check_teleport_options(self.objective, self.steps, self.lr, self.target)

    def _move(self, model, theta):
        from .teleport import teleport
        return teleport(model, self.data, theta, objective=self.objective, steps=self.steps, lr=self.lr,
                        target=self.target).theta

    def rows(self, model, root, seed_ids):
        """The base's rows for these seed ids, each teleported."""
        return np.ascontiguousarray(self._move(model, self.base.rows(model, root, seed_ids)))

    def draw(self, model, rng):
        """One teleported row from a NumPy Generator."""
        return self._move(model, self.base.draw(model, rng))

    def to_config(self):
        return {"kind": self.kind, "base": to_config(self.base), "objective": self.objective, "steps": self.steps,
                "lr": self.lr, "target": self.target, "data": getattr(self.data, "description", "")}


def to_config(init) -> dict:
    return init.to_config() if hasattr(init, "to_config") else asdict(init)


INITS = {"gaussian": Gaussian, "orthogonal": Orthogonal, "balanced": Balanced}
