"""Multi-head self-attention over token sequences, and its charges (theory.md §8; kernels/attention.py).

A sequence is T tokens of width d_model. Data columns are sequences laid out token-major (row t·d + i is
feature i of token t), so a TrainingData of sequences is the same object as any other: X is (T·d) × N,
Y is (T·d_out) × N for the sequence readout or d_out × N for one readout token. Parameters, head by head:
W_Q (d_k × d), W_K (d_k × d), W_V (d_v × d), W_O (d_out × d_v), each row-major; with ``mlp_hidden = m``
(a transformer block) then W_1 (m × d), b_1 (m), W_2 (d × m).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ._validate import fail
from .data import TrainingData
from .kernels.attention import READOUT_SEQUENCE
from .kernels.layout import MODEL_ATTENTION
from .models import ChargeGroup

READOUTS = ("sequence", "last", "first")


def _size(name, value, minimum=1):
    if not isinstance(value, (numbers.Integral,)) or isinstance(value, bool) or value < minimum:
        fail(name, value, f"must be an integer >= {minimum}")
    return int(value)


@dataclass(frozen=True)
class SelfAttention:
    """Multi-head self-attention F = Σ_h W_O^h V^h A^h on sequences of ``tokens`` tokens, squared loss.

    Per head: Q = XW_Qᵀ, K = XW_Kᵀ, V = XW_Vᵀ; scores S[t, s] = ⟨Q_t, K_s⟩/√d_k (query t, key s; with
    ``causal`` only s ≤ t); A = softmax over keys; output F_t = Σ_h W_O^h Σ_s A[t, s] V_s. The loss is
    (1/2N) Σ_n Σ_t ‖F_t − Y_t‖² over every token (``readout="sequence"``) or over one token.

    Its charges, per head h (theory.md §8): ``QK<h>`` = W_QW_Qᵀ − W_KW_Kᵀ (d_k × d_k) and ``VO<h>`` =
    W_VW_Vᵀ − W_OᵀW_O (d_v × d_v), conserved by gradient flow (GL(d_k) and GL(d_v) symmetries), with
    gradient descent's exact law D' − D = η²(G_QG_Qᵀ − G_KG_Kᵀ) (resp. η²(G_VG_Vᵀ − G_OᵀG_O)); under
    momentum dynamics the isometric charges ``J_QK<h>``, ``J_VO<h>`` (antisymmetric parts of
    W_QP_Qᵀ − P_KW_Kᵀ and W_VP_Vᵀ − P_OᵀW_O) obey J(t) = e^{−t/τ}J(0).

    With ``mlp_hidden = m`` the layer is a transformer block (no normalisation): attention with its residual,
    then a residual ReLU MLP applied to each token,

        U_t = X_t + Σ_h W_O^h Σ_s A^h[t, s] V^h_s,      F_t = U_t + W_2 relu(W_1 U_t + b_1),

    (W_1 m × d, b_1 ∈ R^m, W_2 d × m; d_out must equal d_model for the residuals) and the loss reads F. The
    block adds the per-neuron rescale charges ``r`` = ‖W_1[j, :]‖² + b_1[j]² − ‖W_2[:, j]‖² (j = 0 … m−1;
    ReLU is positively homogeneous), conserved by gradient flow, with gradient descent's law
    η²(‖G_1[j, :]‖² + g_b[j]² − ‖G_2[:, j]‖²); positive rescalings are not isometries, so they add no
    momentum J charge.

    Parameters
    ----------
    d_model : int
        Token width d (>= 1).
    heads : int
        Number of heads (>= 1).
    d_k : int, optional
        Query/key width per head; default d_model // heads (then heads must divide d_model).
    d_v : int, optional
        Value width per head; default d_model // heads (same condition).
    tokens : int
        Sequence length T (>= 1); required.
    causal : bool
        Mask keys after the query (s > t).
    readout : {"sequence", "last", "first"} or int
        The loss on every token, or on one token (an index 0 … T−1, or "last" / "first").
    d_out : int, optional
        Output width per token (default d_model).
    mlp_hidden : int, optional
        Hidden width m >= 1 of the residual ReLU MLP block after attention (a transformer block, see
        above); default None (attention alone).

    Raises
    ------
    ConfigError
        A size below 1 (``tokens=0`` included), heads not dividing d_model where d_k or d_v defaults to
        d_model // heads, a readout token that does not exist, or ``mlp_hidden`` with d_out ≠ d_model.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.SelfAttention(8, heads=2, tokens=4)          # d_k = d_v = 4
    >>> model.n_params, [g.name for g in model.charge_groups]   # 2·(2·4·8 + 4·8 + 8·4)
    (256, ['QK0', 'VO0', 'QK1', 'VO1'])
    >>> ns.SelfAttention(8, heads=3, tokens=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: heads=3 is invalid: must divide d_model = 8 ...
    >>> block = ns.SelfAttention(8, heads=2, tokens=4, mlp_hidden=16)   # + W_1 (16 × 8), b_1, W_2 (8 × 16)
    >>> block.n_params, [g.name for g in block.charge_groups]
    (528, ['QK0', 'VO0', 'QK1', 'VO1', 'r'])
    """

    d_model: int
    heads: int = 1
    d_k: int | None = None
    d_v: int | None = None
    tokens: int | None = None
    causal: bool = False
    readout: object = "sequence"
    d_out: int | None = None
    mlp_hidden: int | None = None
    kind: str = field(default="attention", init=False)

    def __post_init__(self):
        d = _size("d_model", self.d_model)
        heads = _size("heads", self.heads)
        for name in ("d_k", "d_v"):
            value = getattr(self, name)
            if value is None:
                if d % heads:
                    fail("heads", heads, f"must divide d_model = {d} when {name} is not given "
                                         f"({name} = d_model // heads); or give {name}")
                value = d // heads
            object.__setattr__(self, name, _size(name, value))
        if self.tokens is None:
            fail("tokens", None, "the sequence length T is required (an integer >= 1)")
        T = _size("tokens", self.tokens)
        object.__setattr__(self, "d_model", d)
        object.__setattr__(self, "heads", heads)
        object.__setattr__(self, "tokens", T)
        object.__setattr__(self, "d_out", d if self.d_out is None else _size("d_out", self.d_out))
        if not isinstance(self.causal, (bool, np.bool_)):
            fail("causal", self.causal, "must be True or False")
        object.__setattr__(self, "causal", bool(self.causal))
        r = self.readout
        if isinstance(r, str):
            if r not in READOUTS:
                fail("readout", r, f"must be one of {', '.join(READOUTS)} or a token index 0 … {T - 1}")
        elif not isinstance(r, numbers.Integral) or isinstance(r, bool) or not 0 <= r < T:
            fail("readout", r, f"must be one of {', '.join(READOUTS)} or a token index 0 … {T - 1}")
        else:
            object.__setattr__(self, "readout", int(r))
        if self.mlp_hidden is not None:
            object.__setattr__(self, "mlp_hidden", _size("mlp_hidden", self.mlp_hidden))
            if self.d_out != d:
                fail("mlp_hidden", self.mlp_hidden, f"needs d_out = d_model (the block's residuals add the "
                                                    f"input tokens); got d_out={self.d_out}, d_model={d}")

    @property
    def m(self) -> int:
        """Hidden width of the MLP block (0 without one)."""
        return 0 if self.mlp_hidden is None else self.mlp_hidden

    @property
    def activation(self):
        """The activation, "relu", for a transformer block (its MLP's hidden neurons), None for attention alone."""
        return None if self.mlp_hidden is None else "relu"

    # ---- layout ----

    @property
    def bias(self) -> bool:
        return False

    @property
    def readout_token(self) -> int:
        """The token the loss reads, or −1 for every token."""
        r = self.readout
        return {"sequence": READOUT_SEQUENCE, "last": self.tokens - 1, "first": 0}[r] if isinstance(r, str) else r

    @property
    def n_readout(self) -> int:
        return self.tokens if self.readout_token == READOUT_SEQUENCE else 1

    @property
    def n_in(self) -> int:
        """Rows of X: T·d_model."""
        return self.tokens * self.d_model

    @property
    def n_out(self) -> int:
        """Rows of Y: (tokens read) · d_out."""
        return self.n_readout * self.d_out

    @property
    def n_layers(self) -> int:
        """Weight matrices: four per head (W_Q, W_K, W_V, W_O), then W_1, W_2 of a transformer block's MLP:
        the "layers" of the initialisations."""
        return 4 * self.heads + (2 if self.m else 0)

    def weight_shape(self, i: int) -> tuple:
        """Shape of matrix i = 1 … n_layers (head (i−1)//4; W_Q, W_K, W_V, W_O; then W_1, W_2)."""
        d, dk, dv, do = self.d_model, self.d_k, self.d_v, self.d_out
        if i > 4 * self.heads:
            return (self.m, d) if i == 4 * self.heads + 1 else (d, self.m)
        return ((dk, d), (dk, d), (dv, d), (do, dv))[(i - 1) % 4]

    def _has_bias(self, i: int) -> bool:
        return bool(self.m) and i == 4 * self.heads + 1  # b_1 of the MLP block, the only bias

    @property
    def offsets(self) -> tuple[list, list]:
        """(offset of each weight matrix, offset of its bias or −1), in ``unflatten``'s order."""
        w_off, b_off, pos = [], [], 0
        for i in range(1, self.n_layers + 1):
            w_off.append(pos)
            pos += int(np.prod(self.weight_shape(i)))
            b_off.append(pos if self._has_bias(i) else -1)
            pos += self.m if self._has_bias(i) else 0
        return w_off, b_off

    @property
    def n_params(self) -> int:
        return (sum(int(np.prod(self.weight_shape(i))) for i in range(1, self.n_layers + 1))
                + (self.m if self.m else 0))

    def param_names(self) -> list:
        """A name per parameter, in the flat order (discovery's law descriptions)."""
        names = []
        for i in range(1, self.n_layers + 1):
            n_out, n_in = self.weight_shape(i)
            if i <= 4 * self.heads:
                label = f"{'QKVO'[(i - 1) % 4]}{(i - 1) // 4}"
            else:
                label = "W1" if i == 4 * self.heads + 1 else "W2"
            names += [f"{label}[{a},{b}]" for a in range(n_out) for b in range(n_in)]
            if self._has_bias(i):
                names += [f"b1[{a}]" for a in range(n_out)]
        return names

    @property
    def input_degree(self):
        """None: the outputs are not polynomial in the input (softmax)."""
        return None

    def unflatten(self, theta: np.ndarray) -> list:
        """[(W, b)] views of one flat row (or rows (…, P)): W_Q, W_K, W_V, W_O of head 0, then head 1, …,
        then (W_1, b_1), (W_2, None) of a transformer block; b is None where there is no bias."""
        out, pos = [], 0
        for i in range(1, self.n_layers + 1):
            n_out, n_in = self.weight_shape(i)
            W = theta[..., pos: pos + n_out * n_in].reshape(theta.shape[:-1] + (n_out, n_in))
            pos += n_out * n_in
            b = None
            if self._has_bias(i):
                b = theta[..., pos: pos + n_out]
                pos += n_out
            out.append((W, b))
        return out

    def flatten(self, layers) -> np.ndarray:
        """Inverse of ``unflatten`` (a missing b_1 is taken as zero)."""
        parts = []
        for i, (W, b) in enumerate(layers, start=1):
            W = np.asarray(W, dtype=float)
            parts.append(W.reshape(W.shape[:-2] + (-1,)))
            if self._has_bias(i):
                parts.append(np.zeros(W.shape[:-1]) if b is None else np.asarray(b, dtype=float))
        return np.concatenate(parts, axis=-1)

    def mlp_weights(self, theta: np.ndarray) -> tuple:
        """(W_1, b_1, W_2) of the transformer block's MLP."""
        (W1, b1), (W2, _) = self.unflatten(theta)[4 * self.heads:]
        return W1, b1, W2

    def head_weights(self, theta: np.ndarray, h: int) -> tuple:
        """(W_Q, W_K, W_V, W_O) of head h."""
        mats = self.unflatten(theta)[4 * h: 4 * h + 4]
        return tuple(W for W, _ in mats)

    def descriptor(self) -> np.ndarray:
        """The int64 ``model_ints`` of kernels/attention.py."""
        return np.array([MODEL_ATTENTION, self.heads, self.d_model, self.d_k, self.d_v, self.tokens, self.d_out,
                         int(self.causal), self.readout_token, self.m], dtype=np.int64)

    def constants(self, data=None) -> np.ndarray:
        return np.zeros(1)

    def kernel_data(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), C-contiguous float64: one sequence per column."""
        return np.ascontiguousarray(data.X, dtype=float), np.ascontiguousarray(data.Y, dtype=float)

    def check_data(self, data: TrainingData):
        """ConfigError unless ``data`` holds sequences this model reads."""
        if data.n_in != self.n_in:
            fail("data", data, f"inputs have {data.n_in} rows but the model reads tokens={self.tokens} tokens of "
                               f"d_model={self.d_model} features, {self.n_in} rows (token-major, one sequence "
                               f"per column; see noether_sim.data.sequences)")
        if data.n_out != self.n_out:
            fail("data", data, f"targets have {data.n_out} rows but the model's readout ({self.readout!r}) needs "
                               f"{self.n_readout} token(s) × d_out={self.d_out} = {self.n_out}")
        if len(data.symmetry_names):
            fail("data", data, "augmented data (input-rotation charges) are defined for networks with a first "
                               "layer W_1, not for self-attention")

    # ---- charges ----

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        groups, pos = [], 0
        for h in range(self.heads):
            groups.append(ChargeGroup(f"QK{h}", pos, (self.d_k, self.d_k), 2,
                                      f"head {h}: W_QW_Qᵀ − W_KW_Kᵀ (GL(d_k) between queries and keys)"))
            pos += self.d_k ** 2
            groups.append(ChargeGroup(f"VO{h}", pos, (self.d_v, self.d_v), 2,
                                      f"head {h}: W_VW_Vᵀ − W_OᵀW_O (GL(d_v) between values and output)"))
            pos += self.d_v ** 2
        if self.m:
            groups.append(ChargeGroup("r", pos, (self.m,), 2, "MLP block: per-neuron rescale "
                                      "|W_1[j, :]|² + b_1[j]² − |W_2[:, j]|² (ReLU's positive homogeneity)"))
        return groups

    @property
    def n_charges(self) -> int:
        return sum(g.size for g in self.charge_groups)

    def isometric_groups(self) -> list[ChargeGroup]:
        """Charges of momentum dynamics from the rotations in each head's GL(d_k) and GL(d_v), after the
        model's own charges (kernels/attention.py)."""
        groups, pos = [], self.n_charges
        for h in range(self.heads):
            groups.append(ChargeGroup(f"J_QK{h}", pos, (self.d_k, self.d_k), 2,
                                      f"isometric: antisym(W_QP_Qᵀ − P_KW_Kᵀ) (head {h})"))
            pos += self.d_k ** 2
            groups.append(ChargeGroup(f"J_VO{h}", pos, (self.d_v, self.d_v), 2,
                                      f"isometric: antisym(W_VP_Vᵀ − P_OᵀW_O) (head {h})"))
            pos += self.d_v ** 2
        return groups

    # ---- plain NumPy reference (tests, baselines, teachers) ----

    def tokens_of(self, X: np.ndarray) -> np.ndarray:
        """X ((T·d) × N) → (N, T, d)."""
        return np.asarray(X, dtype=float).T.reshape(-1, self.tokens, self.d_model)

    def preactivations(self, theta: np.ndarray, X: np.ndarray) -> list:
        """[W_1U_t + b_1 of every token read, as (m × N·tokens read), then the outputs]: a transformer block's hidden
        pre-activations (discovery checks that each neuron changes sign over the data); [outputs] without."""
        U = self._attend(theta, X)
        out = self.forward(theta, X)
        if not self.m:
            return [out]
        W1, b1, _ = self.mlp_weights(theta)
        Z = U @ W1.T + b1  # (N, |R|, m)
        return [Z.reshape(-1, self.m).T, out]

    def _attend(self, theta, X):
        """Attention's output U on the tokens read (N, tokens read, d_out), with the block's residual X."""
        Xs = self.tokens_of(X)
        T = self.tokens
        F = np.array(Xs) if self.m else np.zeros((Xs.shape[0], T, self.d_out))
        mask = np.tril(np.ones((T, T), dtype=bool)) if self.causal else np.ones((T, T), dtype=bool)
        for h in range(self.heads):
            WQ, WK, WV, WO = self.head_weights(theta, h)
            S = np.einsum("nta,nsa->nts", Xs @ WQ.T, Xs @ WK.T) / np.sqrt(self.d_k)
            S = np.where(mask, S, -np.inf)
            A = np.exp(S - S.max(axis=-1, keepdims=True))
            A /= A.sum(axis=-1, keepdims=True)
            F += (A @ (Xs @ WV.T)) @ WO.T
        r = self.readout_token
        return F if r == READOUT_SEQUENCE else F[:, r: r + 1]

    def forward(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Outputs of the tokens read, laid out like Y ((len(R)·d_out) × N)."""
        F = self._attend(theta, X)
        if self.m:
            W1, b1, W2 = self.mlp_weights(theta)
            F = F + np.maximum(F @ W1.T + b1, 0.0) @ W2.T
        return F.reshape(F.shape[0], -1).T

    def loss_value(self, theta: np.ndarray, data: TrainingData) -> float:
        return float(np.sum((self.forward(theta, data.X) - data.Y) ** 2) / (2 * data.n_points))

    def to_config(self) -> dict:
        return {"kind": self.kind, "d_model": self.d_model, "heads": self.heads, "d_k": self.d_k, "d_v": self.d_v,
                "tokens": self.tokens, "causal": self.causal, "readout": self.readout, "d_out": self.d_out,
                **({"mlp_hidden": self.mlp_hidden} if self.m else {})}

    def with_charges(self, *charges):
        """This layer (or block) with the user's charges recorded after the catalogue's (``ChargedModel``),
        with the same exact laws and verdicts as ``DeepLinear.with_charges`` (quadratic and linear charges)
        or a ladder's (function charges); a charge claimed conserved is checked before the run.

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
        The head-0 entry QK0[0, 0] = ‖W_Q[0, :]‖² − ‖W_K[0, :]‖² written by hand as ½θᵀSθ:

        >>> import numpy as np
        >>> import noether_sim as ns
        >>> base = ns.SelfAttention(2, heads=1, tokens=3)     # θ = (W_Q, W_K, W_V, W_O), each 2 × 2
        >>> S = np.diag([2.0, 2.0, 0, 0, -2.0, -2.0] + [0.0] * 10)
        >>> model = base.with_charges(ns.Charge.quadratic(S, "qk00"))
        >>> [g.name for g in model.charge_groups], model.n_params
        (['QK0', 'VO0', 'qk00'], 16)
        """
        from .charges import ChargedModel

        return ChargedModel(self, charges)
