"""Network models: parameter layout, charge catalogue and the descriptor the kernels read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernels.layout import MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE

from ._validate import fail
from .charges import ChargeGroup  # noqa: F401 (defined there; imported from here by the models)


@dataclass(frozen=True)
class DeepLinear:
    """f(x) = W_L(…(W_1 x + b_1)…) + b_L, squared loss. ``widths`` = (n_0, n_1, …, n_L).

    Its charges are the balance matrices ``D<i> = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ − b_ib_iᵀ`` of the hidden
    layers. The data enter only through their second moments, so a step costs the same for any number
    of data points.

    Parameters
    ----------
    widths : tuple of int
        Widths ≥ 1: input, hidden…, output (balance charges need a hidden layer: three or more).
    bias : bool
        Whether every layer has a bias.

    Raises
    ------
    ConfigError
        Fewer than two widths, or a width below 1.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.DeepLinear((10, 16, 16, 5))
    >>> model.n_params, model.n_layers
    (496, 3)
    """

    widths: tuple
    bias: bool = False
    kind: str = field(default="deep_linear", init=False)

    def __post_init__(self):
        widths = tuple(self.widths) if np.iterable(self.widths) else self.widths
        if not isinstance(widths, tuple) or len(widths) < 2:
            fail("widths", self.widths, "must list at least an input and an output width, e.g. (10, 16, 5)")
        for i, w in enumerate(widths):
            if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or w < 1:
                fail(f"widths[{i}]", w, "every width must be an integer >= 1")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        object.__setattr__(self, "bias", bool(self.bias))

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def input_degree(self) -> int | None:
        """Degree of the outputs as polynomials in the input (None: not polynomial)."""
        return 1

    def weight_shape(self, i: int) -> tuple:
        return (self.widths[i], self.widths[i - 1])

    @property
    def offsets(self) -> tuple[list, list]:
        """(offset of W_i, offset of b_i) for i = 1 … L; each layer stores W_i then b_i."""
        w_off, b_off, pos = [], [], 0
        for i in range(1, self.n_layers + 1):
            w_off.append(pos)
            pos += self.widths[i] * self.widths[i - 1]
            b_off.append(pos if self.bias else -1)
            pos += self.widths[i] if self.bias else 0
        return w_off, b_off

    @property
    def n_params(self) -> int:
        return sum(self.widths[i] * (self.widths[i - 1] + self.bias) for i in range(1, self.n_layers + 1))

    def descriptor(self) -> np.ndarray:
        """The int64 ``model_ints`` of kernels/layout.py."""
        from .kernels.linear import _chain_costs

        w_off, b_off = self.offsets
        ints = np.array([MODEL_DEEP_LINEAR, self.n_layers, int(self.bias), *self.widths, *w_off, *b_off],
                        dtype=np.int64)
        input_side, output_side = _chain_costs(ints)
        if input_side < output_side:  # the cheaper order of the gradient's matrix chain
            ints[0] = MODEL_DEEP_LINEAR_INPUT_SIDE
        return ints

    def constants(self, data) -> np.ndarray:
        """``model_floats``: tr(YYᵀ)/N."""
        return np.array([data.syy])

    def kernel_data(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(data_a, data_b) = (augmented Σxx, augmented Σyx)."""
        return data.moments(augmented=self.bias)

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        groups, pos = [], 0
        for i in range(1, self.n_layers):
            n = self.widths[i]
            bias = " − b_i b_iᵀ" if self.bias else ""
            groups.append(ChargeGroup(f"D{i}", pos, (n, n), 2,
                                      f"layer balance W_{i + 1}ᵀW_{i + 1} − W_{i}W_{i}ᵀ{bias} (hidden layer {i})"))
            pos += n * n
        return groups

    @property
    def n_charges(self) -> int:
        return sum(g.size for g in self.charge_groups)

    def isometric_groups(self) -> list[ChargeGroup]:
        """Charges of momentum dynamics from the rotations of each hidden layer (J_i, theory.md §2, §4),
        laid out after the model's own charges; the kernels compute them in kernels/linear_isometric.py."""
        groups, pos = [], self.n_charges
        for i in range(1, self.n_layers):
            n = self.widths[i]
            bias = " + b_i p_{b_i}ᵀ" if self.bias else ""
            groups.append(ChargeGroup(f"J{i}", pos, (n, n), 2,
                                      f"isometric: antisym(W_{i}P_{i}ᵀ{bias} − P_{i + 1}ᵀW_{i + 1}) (hidden layer {i})"))
            pos += n * n
        return groups

    def unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """[(W_i, b_i)] views of one flat parameter row (b_i is None without biases)."""
        w_off, b_off = self.offsets
        out = []
        for i in range(1, self.n_layers + 1):
            n_out, n_in = self.weight_shape(i)
            W = theta[..., w_off[i - 1]: w_off[i - 1] + n_out * n_in].reshape(theta.shape[:-1] + (n_out, n_in))
            b = theta[..., b_off[i - 1]: b_off[i - 1] + n_out] if self.bias else None
            out.append((W, b))
        return out

    def flatten(self, layers) -> np.ndarray:
        """Inverse of ``unflatten``: [(W_i, b_i)] → flat row; W_i of shape (…, n_i, n_{i−1}) gives rows (…, P)."""
        parts = []
        for i, (W, b) in enumerate(layers, start=1):
            W = np.asarray(W, dtype=float)
            lead = W.shape[:-2]
            parts.append(W.reshape(lead + (-1,)))
            if self.bias:
                parts.append(np.zeros(lead + (self.widths[i],)) if b is None
                             else np.broadcast_to(np.asarray(b, dtype=float), lead + (self.widths[i],)))
        return np.concatenate(parts, axis=-1)

    def forward(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Network outputs for inputs X (n_0 × N) — plain NumPy, used by tests and baselines."""
        h = X
        for W, b in self.unflatten(theta):
            h = W @ h + (b[:, None] if b is not None else 0.0)
        return h

    def to_config(self) -> dict:
        return {"kind": self.kind, "widths": list(self.widths), "bias": self.bias}

    def with_charges(self, *charges):
        """This model with the user's charges recorded beside the catalogue's (``ChargedModel``).

        Quadratic and linear charges (``Charge.quadratic``, ``Charge.linear``) get the catalogue's exact
        laws and verdicts (gradient descent's one-step law with weight decay's factor, heavy ball's and
        Nesterov's); function charges (``Charge.function``) a ladder's. A charge claimed conserved is
        checked before the run (θᵀS∇L ≡ 0 per data point).

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
            A charge of the wrong size or a repeated name.

        Examples
        --------
        >>> import numpy as np
        >>> import noether_sim as ns
        >>> model = ns.DeepLinear((2, 2, 1)).with_charges(ns.Charge.linear(np.ones(6), "total"))
        >>> [g.name for g in model.charge_groups]
        ['D1', 'total']
        """
        from .charges import ChargedModel

        return ChargedModel(self, charges)
