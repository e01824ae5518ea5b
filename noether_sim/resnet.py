"""Stacked residual blocks (theory.md §8): a stream of width d through K blocks, with optional input and
output projections. The forward pass, exactly (kernels/residual.py computes it and its gradient):

    s_0 = W_in x + b_in                                   (x itself without an input projection)
    s_k = s_{k−1} + W2_k σ(W1_k s_{k−1} + b1_k) + b2_k      k = 1 … K, W1_k: m × d, W2_k: d × m
    f   = W_out s_K + b_out                               (s_K itself without an output projection)

with squared loss (1/2N)Σ|f − y|² or softmax cross-entropy on f; biases on every layer or on none.

Charges: each block keeps its hidden neurons' rescalings (the skip has no parameters), so per block
r<k>_j = |W1_k[j, :]|² + b1_k[j]² − α|W2_k[:, j]|²; with both projections the whole stream has a GL(d)
symmetry s → Ms for any activation, whose charge is the d × d matrix
C = W_outᵀW_out + Σ_k W1_kᵀW1_k − W_inW_inᵀ − b_inb_inᵀ − Σ_k (W2_kW2_kᵀ + b2_kb2_kᵀ); the identity
activation adds each block's hidden GL(m) balance D<k>; a softmax head the translations T of W_out.

Parameters are laid out as the chain of layers (W_in, b_in), (W1_1, b1_1), (W2_1, b2_1), …, (W_out, b_out)
(``unflatten`` gives them in that order), each W row-major.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import fail
from .kernels.layout import MODEL_RESIDUAL
from .models import ChargeGroup, DeepLinear


def _int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        fail(name, value, "must be an integer >= 1")
    return int(value)


@dataclass(frozen=True)
class ResidualMLP:
    """K residual blocks s ← s + W2 σ(W1 s + b1) + b2 on a stream of width d, between optional input and
    output projections (module docstring: the forward pass exactly).

    Parameters
    ----------
    d_in : int
        Input width n_0 (>= 1).
    width : int
        The stream's width d (>= 1); without an input projection it must equal ``d_in``, without an
        output projection ``d_out``.
    hidden : int
        Each block's hidden width m (>= 1).
    blocks : int
        The number of blocks K (>= 1).
    d_out : int
        Output width (>= 1; >= 2 classes for softmax cross-entropy).
    bias : bool
        Biases on every layer (b_in, b1_k, b2_k, b_out) or on none.
    activation : str
        As ``noether_sim.mlp.MLP`` (homogeneous: linear, relu, leaky_relu, abs, relu_pow; controls: tanh,
        softplus, gelu).
    loss : {"squared", "softmax_ce"}
        Softmax cross-entropy needs the output projection.
    slope, power : float
        Leaky ReLU's negative slope and relu_pow's degree, as ``MLP``.
    input_projection, output_projection : bool
        Whether x enters through W_in (else s_0 = x) and f leaves through W_out (else f = s_K).

    Raises
    ------
    ConfigError
        Zero blocks or a width below 1, a stream width that does not match the input (output) without an
        input (output) projection, softmax cross-entropy without an output projection, or an invalid
        activation, loss, slope or power.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.ResidualMLP(3, width=4, hidden=5, blocks=2, d_out=2)
    >>> model.widths, model.n_params        # the chain W_in, W1_1, W2_1, W1_2, W2_2, W_out
    ((3, 4, 5, 4, 5, 4, 2), 100)
    >>> [g.name for g in model.charge_groups]
    ['r1', 'r2', 'C']
    >>> ns.ResidualMLP(3, width=4, hidden=5, blocks=0, d_out=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: blocks=0 is invalid: must be an integer >= 1...
    """

    d_in: int
    width: int
    hidden: int
    blocks: int
    d_out: int
    bias: bool = False
    activation: str = "relu"
    loss: str = "squared"
    slope: float = 0.01
    power: float = 2.0
    input_projection: bool = True
    output_projection: bool = True
    kind: str = field(default="residual_mlp", init=False)

    def __post_init__(self):
        from .mlp import MLP

        for name in ("d_in", "width", "hidden", "blocks", "d_out"):
            object.__setattr__(self, name, _int(name, getattr(self, name)))
        for name in ("bias", "input_projection", "output_projection"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                fail(name, getattr(self, name), "must be True or False")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if not self.input_projection and self.d_in != self.width:
            fail("width", self.width, f"must equal d_in = {self.d_in} without an input projection (s_0 = x)")
        if not self.output_projection and self.d_out != self.width:
            fail("width", self.width, f"must equal d_out = {self.d_out} without an output projection (f = s_K)")
        if self.loss == "softmax_ce" and not self.output_projection:
            fail("loss", self.loss, "softmax cross-entropy needs the output projection (output_projection=True)")
        # the chain as an MLP: validates activation, loss, slope and power with the same messages
        chain = MLP(self._chain_widths(), bias=self.bias, activation=self.activation, loss=self.loss,
                    slope=self.slope, power=self.power)
        object.__setattr__(self, "slope", chain.slope)
        object.__setattr__(self, "power", chain.power)
        object.__setattr__(self, "_chain", chain)

    def _chain_widths(self):
        w = [self.d_in] + ([self.width] if self.input_projection else [])
        for _ in range(self.blocks):
            w += [self.hidden, self.width]
        return tuple(w + ([self.d_out] if self.output_projection else []))

    # ---- the layer chain (initialisations, layout) ----

    @property
    def widths(self) -> tuple:
        """Widths of the chain of layers: (n_0, [d,] m, d, …, m, d [, n_out])."""
        return self._chain.widths

    @property
    def n_layers(self) -> int:
        return self._chain.n_layers

    def weight_shape(self, i: int) -> tuple:
        return self._chain.weight_shape(i)

    @property
    def offsets(self) -> tuple[list, list]:
        return self._chain.offsets

    @property
    def n_params(self) -> int:
        return self._chain.n_params

    def unflatten(self, theta: np.ndarray) -> list:
        """[(W_i, b_i)] views of the chain's layers (W_in, W1_1, W2_1, …, W_out), b_i None without biases."""
        return self._chain.unflatten(theta)

    def flatten(self, layers) -> np.ndarray:
        return self._chain.flatten(layers)

    def block_layers(self, k: int) -> tuple[int, int]:
        """Chain indices (1-based) of W1_k and W2_k of block k = 1 … K."""
        first = 2 if self.input_projection else 1
        return first + 2 * (k - 1), first + 2 * (k - 1) + 1

    # ---- the activation (as MLP) ----

    @property
    def degree(self) -> float:
        return self._chain.degree

    @property
    def homogeneous(self) -> bool:
        return self._chain.homogeneous

    @property
    def input_degree(self) -> int | None:
        return self._chain.input_degree

    def act(self, z):
        return self._chain.act(z)

    def act_derivative(self, z):
        return self._chain.act_derivative(z)

    # ---- what the kernels read ----

    def descriptor(self) -> np.ndarray:
        """The int64 ``model_ints`` of kernels/residual.py."""
        ints = DeepLinear.descriptor(DeepLinear(self.widths, bias=self.bias))
        ints[0] = MODEL_RESIDUAL
        extras = [self._chain.descriptor()[-5], self._chain.descriptor()[-4], 0, 0, 0,
                  self.blocks, int(self.input_projection), int(self.output_projection)]
        return np.concatenate([ints, np.array(extras, dtype=np.int64)])

    def constants(self, data=None) -> np.ndarray:
        """``model_floats``: [leaky slope, power, α of the rescale charges]."""
        return self._chain.constants()

    def kernel_data(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), C-contiguous float64: the network reads the raw data."""
        return self._chain.kernel_data(data)

    def check_data(self, data):
        """Widths as every layered model; data-symmetry charges (``data.augment``) act on the first layer,
        which is W_in only with an input projection."""
        from .data import TrainingData

        TrainingData.check_fits(data, self._chain)
        if data.symmetry_names and not self.input_projection:
            fail("data", data, "data-symmetry charges act on the first layer; without an input projection the "
                               "input also enters through the skip: use input_projection=True")

    @property
    def stream_charged(self) -> bool:
        return self.input_projection and self.output_projection

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        groups, pos = [], 0
        a = self.degree
        control = "" if self.homogeneous else " (no symmetry: control)"
        bias = " + b1²" if self.bias else ""
        m, d = self.hidden, self.width
        for k in range(1, self.blocks + 1):
            groups.append(ChargeGroup(f"r{k}", pos, (m,), 2, f"per-neuron rescale |w1_in|²{bias} − {a:g}|w2_out|² "
                                                            f"of block {k}'s hidden layer{control}"))
            pos += m
        if self.loss == "softmax_ce":
            n = d + self.bias
            groups.append(ChargeGroup("T", pos, (n,), 1, "softmax translation: Σ_c W_out[c, a] per column a"
                                      + (", then Σ_c b_out[c]" if self.bias else "")))
            pos += n
        if self.stream_charged:
            b = " − b_in b_inᵀ − Σ b2_k b2_kᵀ" if self.bias else ""
            groups.append(ChargeGroup("C", pos, (d, d), 2, f"stream balance W_outᵀW_out + Σ W1_kᵀW1_k − W_inW_inᵀ − "
                                                            f"Σ W2_kW2_kᵀ{b} (GL({d}) of the residual stream)"))
            pos += d * d
        if self.activation == "linear":
            for k in range(1, self.blocks + 1):
                groups.append(ChargeGroup(f"D{k}", pos, (m, m), 2, f"block balance W2_{k}ᵀW2_{k} − W1_{k}W1_{k}ᵀ"
                                          f"{' − b1 b1ᵀ' if self.bias else ''} (block {k}; identity activation)"))
                pos += m * m
        return groups

    @property
    def n_charges(self) -> int:
        return sum(g.size for g in self.charge_groups)

    def isometric_groups(self) -> list[ChargeGroup]:
        """Charges of momentum dynamics after the model's own: J<k> (identity activation), JC (both
        projections: the stream's rotations), JT (softmax head)."""
        groups, pos = [], self.n_charges
        m, d = self.hidden, self.width
        if self.activation == "linear":
            for k in range(1, self.blocks + 1):
                groups.append(ChargeGroup(f"J{k}", pos, (m, m), 2, f"isometric: antisym(W1_{k}P1_{k}ᵀ − "
                                                                  f"P2_{k}ᵀW2_{k}) (block {k})"))
                pos += m * m
        if self.stream_charged:
            groups.append(ChargeGroup("JC", pos, (d, d), 2, "isometric: antisym(W_inP_inᵀ + Σ_k (W2_kP2_kᵀ − "
                                                            "P1_kᵀW1_k) − P_outᵀW_out) (the stream's rotations)"))
            pos += d * d
        if self.loss == "softmax_ce":
            n = d + self.bias
            groups.append(ChargeGroup("JT", pos, (n,), 1, "isometric: softmax translation momenta Σ_c P_out[c, a]"
                                      + (", then Σ_c p_{b_out}[c]" if self.bias else "")
                                      + "; T + τ·JT is conserved too"))
        return groups

    # ---- plain NumPy reference (tests, baselines, discovery) ----

    def preactivations(self, theta: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        """[z_1, …, z_K, f] for one row θ: each block's hidden pre-activations, then the output."""
        layers = self.unflatten(theta)
        s = np.asarray(X, dtype=float)
        if self.input_projection:
            W, b = layers[0]
            s = W @ s + (b[:, None] if b is not None else 0.0)
        out = []
        for k in range(1, self.blocks + 1):
            i1, i2 = self.block_layers(k)
            (W1, b1), (W2, b2) = layers[i1 - 1], layers[i2 - 1]
            z = W1 @ s + (b1[:, None] if b1 is not None else 0.0)
            out.append(z)
            s = s + W2 @ self.act(z) + (b2[:, None] if b2 is not None else 0.0)
        if self.output_projection:
            W, b = layers[-1]
            s = W @ s + (b[:, None] if b is not None else 0.0)
        return out + [s]

    def forward(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self.preactivations(theta, X)[-1]

    def loss_value(self, theta: np.ndarray, data) -> float:
        f = self.forward(theta, data.X)
        if self.loss == "squared":
            return float(np.sum((f - data.Y) ** 2) / (2 * data.n_points))
        lse = np.logaddexp.reduce(f, axis=0)
        return float(np.sum(data.Y.sum(axis=0) * lse - np.sum(data.Y * f, axis=0)) / data.n_points)

    def to_config(self) -> dict:
        return {"kind": self.kind, "widths": [self.d_in, self.width, self.d_out], "hidden": self.hidden,
                "blocks": self.blocks, "bias": self.bias, "activation": self.activation,
                "loss": self.loss, "slope": self.slope, "power": self.power,
                "input_projection": self.input_projection, "output_projection": self.output_projection}

    def with_charges(self, *charges):
        """This stack with the user's charges recorded after the catalogue's (``ChargedModel``), with the
        same exact laws and verdicts as ``DeepLinear.with_charges`` (quadratic and linear charges) or a
        ladder's (function charges); a charge claimed conserved is checked before the run.

        Parameters
        ----------
        *charges : Charge
            Each of size P = ``n_params``, named apart from the catalogue's charges.

        Returns
        -------
        ChargedModel

        Raises
        ------
        ConfigError
            A charge of the wrong size (naming ``n_params``) or a repeated name.

        Examples
        --------
        >>> import numpy as np
        >>> import noether_sim as ns
        >>> base = ns.ResidualMLP(2, width=2, hidden=3, blocks=1, d_out=1)
        >>> model = base.with_charges(ns.Charge.quadratic(np.eye(base.n_params), "norm"))
        >>> [g.name for g in model.charge_groups]
        ['r1', 'C', 'norm']
        >>> base.with_charges(ns.Charge.linear(np.ones(3), "v"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noether_sim._validate.ConfigError: charges[0]=... is invalid: has size 3 but the model has n_params = 18
        """
        from .charges import ChargedModel

        return ChargedModel(self, charges)
