"""Multilayer networks with nonlinear activations: homogeneous (ReLU, leaky ReLU, |z|, ReLU^α, linear)
and non-homogeneous controls (tanh, softplus, GELU); squared or softmax cross-entropy loss; an optional
weight-normalised first layer. The charge catalogue of theory.md §2 items 2–4 (kernels/mlp.py computes it).

Parameters are laid out like ``DeepLinear``: for i = 1 … L, W_i (row-major, n_i × n_{i−1}) then b_i.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import fail, non_negative, positive, positive_int
from .data import TrainingData
from .kernels import mlp as _k
from .kernels.layout import MODEL_MLP
from .models import ChargeGroup, DeepLinear
from .random import data_rng

ACTIVATIONS = {
    "linear": _k.ACT_LINEAR, "relu": _k.ACT_RELU, "leaky_relu": _k.ACT_LEAKY_RELU, "abs": _k.ACT_ABS,
    "relu_pow": _k.ACT_RELU_POW, "tanh": _k.ACT_TANH, "softplus": _k.ACT_SOFTPLUS, "gelu": _k.ACT_GELU,
}
HOMOGENEOUS = ("linear", "relu", "leaky_relu", "abs", "relu_pow")
LOSSES = {"squared": _k.LOSS_SQUARED, "softmax_ce": _k.LOSS_SOFTMAX_CE}
NORMALISATIONS = {None: _k.NORM_NONE, "layer": _k.NORM_LAYER, "rms": _k.NORM_RMS}


def erf(x):
    """scipy.special.erf, imported on first use (scipy.special costs ~0.15 s of every import)."""
    from scipy.special import erf as _erf

    return _erf(x)


@dataclass(frozen=True)
class MLP(DeepLinear):
    """f(x) = W_L σ(… σ(W_1 x + b_1) …) + b_L.

    The rescale charges ``r = ‖w_in‖² + b² − α‖w_out‖²`` use α = the activation's degree of homogeneity;
    for tanh, softplus and GELU (no symmetry) the same expression with α = 1 is recorded as a control.

    Parameters
    ----------
    widths : tuple of int
        Layer widths ``n_0 … n_L`` (input, hidden…, output).
    bias : bool
        Whether every layer has a bias.
    activation : str
        One of ``ACTIVATIONS``; "relu_pow" is ReLU(z)^power (degree α = power ≥ 1), "leaky_relu" has
        negative-side slope ``slope``. σ'(0) is the derivative from the left.
    loss : {"squared", "softmax_ce"}
        ``(1/2N)Σ‖f − y‖²``, or softmax cross-entropy (targets Y: one-hot or soft labels, C × N).
    slope : float
        The negative-side slope of "leaky_relu", >= 0 (default 0.01).
    power : float
        The power of "relu_pow", >= 1 (default 2).
    normalised_first_layer : bool
        Row k of W_1 enters only as ``w_k/‖w_k‖`` (no gain): ``‖w_k‖²`` is a scale charge.
    residual : bool
        A residual block f(x) = x + W_L σ(… σ(W_1x + b_1) …) + b_L (output width = input width, squared
        loss): the skip has no parameters, so every rescale (and, for the identity, balance) charge stays.
    normalisation : {None, "layer", "rms"}
        Normalise the first hidden layer's pre-activations z = W_1x + b_1 over its units, per data point,
        before the activation: "rms" z/rms(z), "layer" (z − mean z)/rms(z − mean z) (no ε, no gain). Then
        (W_1, b_1) is scale-invariant: ``N`` = ‖W_1‖² + ‖b_1‖² is conserved by gradient flow and grows by
        exactly η²(‖G_1‖² + ‖g_{b_1}‖²) per gradient-descent step; layer normalisation also ignores a shift
        of every unit by the same amount, so the column sums of W_1 (and Σb_1) are linear charges ``M``.

    Raises
    ------
    ConfigError
        Invalid widths (an MLP needs a hidden layer; softmax cross-entropy needs >= 2 outputs), an unknown
        activation or loss, or a slope or power out of range.

    Examples
    --------
    >>> from noether_sim.mlp import MLP
    >>> MLP((3, 4, 1), bias=True, activation="relu").n_params   # 3·4 + 4 + 4·1 + 1
    21
    >>> MLP((3, 4, 1), activation="sigmoid")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: activation='sigmoid' is invalid: must be one of ...
    """

    activation: str = "relu"
    loss: str = "squared"
    slope: float = 0.01
    power: float = 2.0
    normalised_first_layer: bool = False
    normalisation: str | None = None
    residual: bool = False
    kind: str = field(default="mlp", init=False)

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            fail("activation", self.activation, f"must be one of {', '.join(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            fail("loss", self.loss, f"must be one of {', '.join(LOSSES)}")
        object.__setattr__(self, "slope", non_negative("slope", self.slope) if self.activation == "leaky_relu"
                           else float(self.slope))
        if self.activation == "relu_pow":
            if positive("power", self.power) < 1.0:
                fail("power", self.power, "ReLU(z)^α needs a degree α >= 1 (a differentiable flow)")
        object.__setattr__(self, "power", float(self.power))
        object.__setattr__(self, "normalised_first_layer", bool(self.normalised_first_layer))
        if self.n_layers < 2:
            fail("widths", self.widths, "an MLP needs at least one hidden layer: (n_0, n_1, …, n_L), L >= 2")
        if self.loss == "softmax_ce" and self.widths[-1] < 2:
            fail("widths", self.widths, "softmax cross-entropy needs an output width (classes) >= 2")
        object.__setattr__(self, "residual", bool(self.residual))
        if self.residual and self.widths[-1] != self.widths[0]:
            fail("residual", self.residual, f"a residual block x + (network) needs the output width to equal the "
                                            f"input width (widths {list(self.widths)})")
        if self.residual and self.loss != "squared":
            fail("residual", self.residual, "a residual block adds x to the output: use loss='squared'")
        if self.normalisation not in NORMALISATIONS:
            fail("normalisation", self.normalisation, "must be None, 'layer' or 'rms'")
        if self.normalisation is not None:
            if self.normalised_first_layer:
                fail("normalisation", self.normalisation, "cannot be combined with normalised_first_layer (both "
                                                          "act on the first layer)")
            if self.activation == "linear":
                fail("normalisation", self.normalisation, "needs a nonlinear activation after it: with the "
                                                          "identity the normalised layer keeps rotation symmetries "
                                                          "the catalogue does not record")
            if self.normalisation == "layer" and self.widths[1] < 2:
                fail("normalisation", self.normalisation, "layer normalisation needs a first hidden layer of width "
                                                          ">= 2 (one unit minus its mean is 0)")
    @property
    def degree(self) -> float:
        """α of σ(cz) = c^α σ(z); 1 for the non-homogeneous controls (the 'same expression')."""
        return self.power if self.activation == "relu_pow" else 1.0

    @property
    def input_degree(self) -> int | None:
        """1 for linear activations with squared loss; None (not polynomial) otherwise."""
        return 1 if self.activation == "linear" and self.loss == "squared" else None

    @property
    def homogeneous(self) -> bool:
        return self.activation in HOMOGENEOUS

    def descriptor(self) -> np.ndarray:
        base = super().descriptor()
        base[0] = MODEL_MLP
        extras = [ACTIVATIONS[self.activation], LOSSES[self.loss], int(self.normalised_first_layer),
                  NORMALISATIONS[self.normalisation], int(self.residual)]
        return np.concatenate([base, np.array(extras, dtype=np.int64)])

    def constants(self, data=None) -> np.ndarray:
        """``model_floats``: [leaky slope, power, α of the rescale charges]."""
        return np.array([self.slope, self.power, self.degree])

    def kernel_data(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), C-contiguous float64: the network reads the raw data."""
        return np.ascontiguousarray(data.X, dtype=float), np.ascontiguousarray(data.Y, dtype=float)

    @property
    def first_free(self) -> int:
        """The first hidden layer whose neurons can be rescaled (2 when layer 1 is (weight-)normalised)."""
        return 2 if (self.normalised_first_layer or self.normalisation is not None) else 1

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        groups, pos = [], 0
        a = self.degree
        control = "" if self.homogeneous else " (no symmetry: control)"
        bias = " + b²" if self.bias else ""
        for i in range(self.first_free, self.n_layers):
            n = self.widths[i]
            groups.append(ChargeGroup(f"r{i}", pos, (n,), 2,
                                      f"per-neuron rescale |w_in|²{bias} − {a:g}|w_out|² of hidden layer {i}{control}"))
            pos += n
        if self.loss == "softmax_ce":
            n = self.widths[-2] + self.bias
            groups.append(ChargeGroup("T", pos, (n,), 1, "softmax translation: Σ_c W_L[c, m] per column m"
                                      + (", then Σ_c b_L[c]" if self.bias else "")))
            pos += n
        if self.normalised_first_layer:
            n = self.widths[1]
            groups.append(ChargeGroup("S", pos, (n,), 2, "scale |w_k|² of the weight-normalised first-layer rows"))
            pos += n
        if self.normalisation is not None:
            groups.append(ChargeGroup("N", pos, (1,), 2, f"scale |W_1|²{' + |b_1|²' if self.bias else ''} of the "
                                                          f"{self.normalisation}-normalised first layer"))
            pos += 1
            if self.normalisation == "layer":
                n = self.widths[0] + self.bias
                groups.append(ChargeGroup("M", pos, (n,), 1, "layer normalisation's mean shift: Σ_k W_1[k, c] per "
                                                             "column c" + (", then Σ_k b_1[k]" if self.bias else "")))
                pos += n
        if self.activation == "linear":  # the identity keeps all of GL(n_i): every entry of D_i
            for i in range(self.first_free, self.n_layers):
                n = self.widths[i]
                groups.append(ChargeGroup(f"D{i}", pos, (n, n), 2,
                                          f"layer balance W_{i + 1}ᵀW_{i + 1} − W_{i}W_{i}ᵀ{' − b_i b_iᵀ' if self.bias else ''}"
                                          f" (hidden layer {i}; identity activation)"))
                pos += n * n
        return groups

    # ---- plain NumPy reference implementation (tests, baselines, diagnostics) ----

    def isometric_groups(self) -> list[ChargeGroup]:
        """Charges of momentum dynamics (theory.md §2, §4), laid out after the model's own charges: the
        rotations J<i> of the hidden layers for the identity activation, and the translations' momenta JT
        (Σ_c P_L[c, m] per column m, then Σ_c p_{b_L}[c]) for softmax heads, and the mean shift's momenta
        JM (Σ_k P_1[k, c] per column c, then Σ_k p_{b_1}[k]) under layer normalisation. Each obeys
        J(t) = e^{−t/τ}J(0) under momentum flow (JT without weight decay only: λ couples it to T)."""
        groups, pos = [], self.n_charges
        if self.activation == "linear":
            for i in range(self.first_free, self.n_layers):
                n = self.widths[i]
                bias = " + b_i p_{b_i}ᵀ" if self.bias else ""
                groups.append(ChargeGroup(f"J{i}", pos, (n, n), 2, f"isometric: antisym(W_{i}P_{i}ᵀ{bias} − "
                                          f"P_{i + 1}ᵀW_{i + 1}) (hidden layer {i})"))
                pos += n * n
        if self.loss == "softmax_ce":
            n = self.widths[-2] + self.bias
            groups.append(ChargeGroup("JT", pos, (n,), 1, "isometric: softmax translation momenta Σ_c P_L[c, m] "
                                      "per column m" + (", then Σ_c p_{b_L}[c]" if self.bias else "")
                                      + "; T + τ·JT = ⟨v, θ + τθ̇⟩ is conserved too"))
            pos += n
        if self.normalisation == "layer":
            n = self.widths[0] + self.bias
            groups.append(ChargeGroup("JM", pos, (n,), 1, "isometric: layer normalisation's mean-shift momenta "
                                      "Σ_k P_1[k, c] per column c" + (", then Σ_k p_{b_1}[k]" if self.bias else "")
                                      + "; M + τ·JM is conserved too"))
            pos += n
        return groups

    def act(self, z):
        a = self.activation
        if a == "linear":
            return z
        if a == "relu":
            return np.maximum(z, 0.0)
        if a == "leaky_relu":
            return np.where(z > 0, z, self.slope * z)
        if a == "abs":
            return np.abs(z)
        if a == "relu_pow":
            return np.where(z > 0, np.maximum(z, 0.0) ** self.power, 0.0)
        if a == "tanh":
            return np.tanh(z)
        if a == "softplus":
            return np.logaddexp(0.0, z)
        return 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))

    def act_derivative(self, z):
        a = self.activation
        if a == "linear":
            return np.ones_like(z)
        if a == "relu":
            return (z > 0).astype(float)
        if a == "leaky_relu":
            return np.where(z > 0, 1.0, self.slope)
        if a == "abs":
            return np.sign(z)
        if a == "relu_pow":
            return np.where(z > 0, self.power * np.maximum(z, 0.0) ** (self.power - 1.0), 0.0)
        if a == "tanh":
            return 1.0 - np.tanh(z) ** 2
        if a == "softplus":
            return 0.5 * (1.0 + np.tanh(0.5 * z))
        return 0.5 * (1.0 + erf(z / np.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)

    def _first_weights(self, W):
        return W / np.linalg.norm(W, axis=-1, keepdims=True) if self.normalised_first_layer else W

    def preactivations(self, theta: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        """[Z_1, …, Z_L] for one row θ (Z_L = f)."""
        h, out = X, []
        for i, (W, b) in enumerate(self.unflatten(theta), start=1):
            z = (self._first_weights(W) if i == 1 else W) @ h + (b[:, None] if b is not None else 0.0)
            if i == 1 and self.normalisation is not None:
                if self.normalisation == "layer":
                    z = z - z.mean(axis=0, keepdims=True)
                z = z / np.sqrt((z * z).mean(axis=0, keepdims=True))
            out.append(z)
            h = self.act(z)
        return out

    def forward(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        f = self.preactivations(theta, X)[-1]
        return f + X if self.residual else f

    def loss_value(self, theta: np.ndarray, data: TrainingData) -> float:
        f = self.forward(theta, data.X)
        if self.loss == "squared":
            return float(np.sum((f - data.Y) ** 2) / (2 * data.n_points))
        lse = np.logaddexp.reduce(f, axis=0)
        return float(np.sum(data.Y.sum(axis=0) * lse - np.sum(data.Y * f, axis=0)) / data.n_points)

    def to_config(self) -> dict:
        return {**super().to_config(), "activation": self.activation, "loss": self.loss, "slope": self.slope,
                "power": self.power, "normalised_first_layer": self.normalised_first_layer,
                **({"normalisation": self.normalisation} if self.normalisation is not None else {}),
                **({"residual": True} if self.residual else {})}


# ---- data ----

def teacher_regression(teacher: MLP, n_points: int, noise: float = 0.0, seed: int = 0,
                       weight_scale: float = 1.0) -> TrainingData:
    """Gaussian inputs labelled by a random teacher of the given architecture (entries N(0, s²/fan_in),
    biases N(0, s²/4)), plus Gaussian label noise of standard deviation ``noise``.

    Parameters
    ----------
    teacher : MLP
        The teacher's architecture (widths, activation, bias); its loss must be "squared".
    n_points : int
        Number of training points (>= 1).
    noise : float, optional
        Standard deviation of the Gaussian noise added to the labels (>= 0), default 0.
    seed : int, optional
        Seed of the inputs, the teacher's weights and the noise, default 0.
    weight_scale : float, optional
        The scale s of the teacher's weights (>= 0), default 1.

    Returns
    -------
    TrainingData
        Inputs X of shape (d_in, n_points) and labels Y of shape (d_out, n_points).

    Raises
    ------
    ConfigError
        ``teacher`` is not an MLP with squared loss, or an argument is out of range.

    Examples
    --------
    >>> from noether_sim.mlp import MLP, teacher_regression
    >>> data = teacher_regression(MLP((3, 5, 1), activation="tanh"), 20, noise=0.1, seed=1)
    >>> data.X.shape, data.Y.shape
    ((3, 20), (1, 20))
    """
    if not isinstance(teacher, MLP) or teacher.loss != "squared":
        fail("teacher", teacher, "must be an MLP with squared loss (use teacher_classification for labels)")
    n_points = positive_int("n_points", n_points)
    noise = non_negative("noise", noise)
    weight_scale = non_negative("weight_scale", weight_scale)
    rng = data_rng(seed)
    theta = _teacher_weights(teacher, rng, weight_scale)
    X = rng.standard_normal((teacher.widths[0], n_points))
    Y = teacher.forward(theta, X) + noise * rng.standard_normal((teacher.widths[-1], n_points))
    return TrainingData(X, Y, f"teacher {teacher.activation} {list(teacher.widths)} (noise={noise}, "
                              f"weight_scale={weight_scale}, seed={seed})")


def teacher_classification(teacher: MLP, n_points: int, seed: int = 0, weight_scale: float = 1.0,
                           label_noise: float = 0.0) -> TrainingData:
    """Gaussian inputs, one-hot labels argmax of a random teacher's outputs (C = its output width);
    a fraction ``label_noise`` of the labels is replaced by a uniformly random class.

    Parameters
    ----------
    teacher : MLP
        The teacher's architecture; its output width (>= 2) is the number of classes C.
    n_points : int
        Number of training points (>= 1).
    seed : int, optional
        Seed of the inputs, the teacher's weights and the label noise, default 0.
    weight_scale : float, optional
        Scale of the teacher's weights, default 1.
    label_noise : float, optional
        Fraction of labels replaced by a uniformly random class, in [0, 1], default 0.

    Returns
    -------
    TrainingData
        Inputs X of shape (d_in, n_points) and one-hot labels Y of shape (C, n_points).

    Raises
    ------
    ConfigError
        ``teacher`` is not an MLP with at least 2 outputs, or an argument is out of range.

    Examples
    --------
    >>> from noether_sim.mlp import MLP, teacher_classification
    >>> data = teacher_classification(MLP((3, 5, 4), activation="relu", loss="softmax_ce"), 20, seed=1)
    >>> data.Y.shape, data.Y.sum(axis=0).tolist() == [1.0] * 20     # one class per point
    ((4, 20), True)
    """
    if not isinstance(teacher, MLP) or teacher.widths[-1] < 2:
        fail("teacher", teacher, "must be an MLP with at least 2 outputs (classes)")
    n_points = positive_int("n_points", n_points)
    label_noise = non_negative("label_noise", label_noise)
    if label_noise > 1:
        fail("label_noise", label_noise, "must be a fraction in [0, 1]")
    rng = data_rng(seed)
    theta = _teacher_weights(teacher, rng, weight_scale)
    X = rng.standard_normal((teacher.widths[0], n_points))
    labels = np.argmax(teacher.forward(theta, X), axis=0)
    flip = rng.random(n_points) < label_noise
    labels = np.where(flip, rng.integers(0, teacher.widths[-1], n_points), labels)
    Y = np.zeros((teacher.widths[-1], n_points))
    Y[labels, np.arange(n_points)] = 1.0
    return TrainingData(X, Y, f"teacher-labelled classes {teacher.activation} {list(teacher.widths)} "
                              f"(label_noise={label_noise}, seed={seed})")


def _teacher_weights(teacher, rng, scale):
    layers = []
    for i in range(1, teacher.n_layers + 1):
        n_out, n_in = teacher.weight_shape(i)
        W = rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)
        b = rng.standard_normal(n_out) * scale / 2 if teacher.bias else None
        layers.append((W, b))
    return teacher.flatten(layers)

