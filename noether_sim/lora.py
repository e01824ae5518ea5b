"""Low-rank adapters: f(x) = base network with W₀_l + B_lA_l in place of W₀_l on the adapted layers l,
W₀ (the base's parameters) frozen, only the factors (A_l, B_l) trained (theory.md §8).

GL(r) acts on each adapter by A_l → MA_l, B_l → B_lM⁻¹, leaving B_lA_l and so the loss unchanged; its
symmetric part gives the r × r charge D_l = B_lᵀB_l − A_lA_lᵀ, conserved under gradient flow, with
gradient descent's exact law D_l' − D_l = η²(G_BᵀG_B − G_AG_Aᵀ) (theory.md §3), and under momentum the
antisymmetric part gives the isometric charge J_l = antisym(A_lP_Aᵀ − P_BᵀB_l). The usual start B = 0
fixes D_l = −A_lA_lᵀ(0) for the whole of gradient flow (``LoRA.usual_start``).

The trainable row θ is, for each adapter in the order of ``layers``, A_l (r × n_{l−1}, row-major) then
B_l (n_l × r): as a network of "factor layers" A_1, B_1, A_2, B_2, … without biases, so the package's
initialisations apply (Gaussian: A entries N(0, s²/n_{l−1}), B entries N(0, s²/r)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import fail, finite_array, positive_int
from .kernels.layout import MODEL_LORA
from .models import ChargeGroup, DeepLinear


@dataclass(frozen=True)
class LoRA:
    """Low-rank adapters of rank ``rank`` on chosen layers of a frozen deep linear network or MLP.

    Parameters
    ----------
    base : DeepLinear or MLP
        The frozen network (squared loss for a deep linear base; an MLP may use softmax cross-entropy).
        An MLP with a weight-normalised first layer cannot take adapters.
    rank : int
        r >= 1, at most min(n_l, n_{l−1}) of every adapted layer l.
    layers : tuple of int, optional
        The adapted layers l (1 … L, each once, any order is sorted); None: every layer.
    base_weights : array, optional
        The frozen base parameters θ₀ in the base's flat layout (``base.flatten``); None: drawn with
        ``base_seed`` (entries of W_l N(0, 1/n_{l−1}), biases N(0, 1/4)), a fixed pretrained stand-in.
    base_seed : int
        Seed of the drawn θ₀ (used when ``base_weights`` is None).

    Raises
    ------
    ConfigError
        A base that is not a DeepLinear or MLP (or a weight-normalised MLP), a rank below 1 or above a
        layer's smaller dimension, a layer that does not exist or repeats, or base weights of the wrong
        shape or not finite.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.LoRA(ns.MLP((6, 8, 3), activation="relu"), rank=2, layers=(1,))
    >>> model.n_params, [g.name for g in model.charge_groups]      # A_1: 2 × 6, B_1: 8 × 2
    (28, ['D1'])
    >>> ns.LoRA(ns.DeepLinear((6, 8, 3)), rank=4, layers=(2,))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: rank=4 is invalid: must be at most 3 = min(n_2, n_1) ...
    """

    base: DeepLinear
    rank: int
    layers: tuple | None = None
    base_weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    base_seed: int = 0
    kind: str = field(default="lora", init=False)

    def __post_init__(self):
        from .mlp import MLP

        base = self.base
        if not isinstance(base, DeepLinear):
            fail("base", base, "must be a noether_sim DeepLinear or MLP (the frozen network)")
        if isinstance(base, MLP) and base.normalisation is not None:
            fail("base", base, "an MLP with layer or RMS normalisation cannot take adapters yet; use normalisation=None")
        if isinstance(base, MLP) and base.normalised_first_layer:
            fail("base", base, "an MLP with a weight-normalised first layer cannot take adapters (its W_1 "
                               "enters only through its rows' directions); use normalised_first_layer=False")
        L = base.n_layers
        layers = tuple(range(1, L + 1)) if self.layers is None else self.layers
        if not np.iterable(layers) or isinstance(layers, str) or len(tuple(layers)) == 0:
            fail("layers", self.layers, f"must be a non-empty list of layer numbers in 1 … {L}, or None (all)")
        layers = tuple(layers)
        for l in layers:
            if not isinstance(l, (int, np.integer)) or isinstance(l, bool) or not 1 <= l <= L:
                fail("layers", self.layers, f"layer {l!r} does not exist: the base has layers 1 … {L} "
                                            f"(widths {list(base.widths)})")
        if len(set(layers)) != len(layers):
            fail("layers", self.layers, "each layer may take one adapter")
        layers = tuple(sorted(int(l) for l in layers))
        r = positive_int("rank", self.rank)
        for l in layers:
            n, m = base.weight_shape(l)
            if r > min(n, m):
                fail("rank", self.rank, f"must be at most {min(n, m)} = min(n_{l}, n_{l - 1}) of adapted layer {l} "
                                        f"(shape {n} × {m})")
        if not isinstance(self.base_seed, (int, np.integer)) or isinstance(self.base_seed, bool) or self.base_seed < 0:
            fail("base_seed", self.base_seed, "must be an integer >= 0")
        if self.base_weights is None:
            w0 = self._drawn_base(int(self.base_seed))
        else:
            w0 = finite_array("base_weights", self.base_weights, 1)
            if w0.shape != (base.n_params,):
                fail("base_weights", w0, f"must have shape ({base.n_params},): the base's flat parameters")
        w0.setflags(write=False)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "rank", r)
        object.__setattr__(self, "base_seed", int(self.base_seed))
        object.__setattr__(self, "base_weights", w0)

    def _drawn_base(self, seed):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10AA]))
        layers = []
        for i in range(1, self.base.n_layers + 1):
            n, m = self.base.weight_shape(i)
            layers.append((rng.standard_normal((n, m)) / np.sqrt(m),
                           rng.standard_normal(n) / 2 if self.base.bias else None))
        return self.base.flatten(layers)

    # ---- the factor-layer view (initialisations, unflatten) ----

    @property
    def widths(self) -> tuple:
        """The base's widths (input and output of the network)."""
        return self.base.widths

    @property
    def bias(self) -> bool:
        return False  # the factors have no biases; the base's are frozen in θ₀

    @property
    def n_layers(self) -> int:
        """Factor layers: A_1, B_1, A_2, B_2, … (two per adapter)."""
        return 2 * len(self.layers)

    def weight_shape(self, i: int) -> tuple:
        """Shape of factor layer i (1-based): A_l (r × n_{l−1}) for odd i, B_l (n_l × r) for even i."""
        n, m = self.base.weight_shape(self.layers[(i - 1) // 2])
        return (self.rank, m) if i % 2 == 1 else (n, self.rank)

    @property
    def offsets(self) -> tuple[list, list]:
        w_off, pos = [], 0
        for i in range(1, self.n_layers + 1):
            w_off.append(pos)
            pos += int(np.prod(self.weight_shape(i)))
        return w_off, [-1] * len(w_off)

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(self.weight_shape(i))) for i in range(1, self.n_layers + 1))

    def unflatten(self, theta: np.ndarray) -> list:
        """[(A_1, None), (B_1, None), …] views of a flat row (or rows)."""
        out = []
        for i, off in enumerate(self.offsets[0], start=1):
            shape = self.weight_shape(i)
            out.append((theta[..., off: off + shape[0] * shape[1]].reshape(theta.shape[:-1] + shape), None))
        return out

    def flatten(self, layers) -> np.ndarray:
        """Inverse of ``unflatten``: [(A_1, _), (B_1, _), …] → flat row(s)."""
        parts = []
        for W, _ in layers:
            W = np.asarray(W, dtype=float)
            parts.append(W.reshape(W.shape[:-2] + (-1,)))
        return np.concatenate(parts, axis=-1)

    def usual_start(self, scale: float = 1.0):
        """The usual initialisation B = 0: ``init.Gaussian`` with A entries N(0, scale²/n_{l−1}), B = 0.

        Parameters
        ----------
        scale : float
            The scale of A's entries (>= 0).

        Returns
        -------
        noether_sim.init.Gaussian

        Examples
        --------
        >>> import noether_sim as ns
        >>> model = ns.LoRA(ns.DeepLinear((4, 5, 3)), rank=2)
        >>> theta = model.usual_start().rows(model, 0, [0])[0]
        >>> [float(abs(W).max()) == 0.0 for W, _ in model.unflatten(theta)]    # A_1, B_1, A_2, B_2
        [False, True, False, True]
        """
        from .init import Gaussian

        return Gaussian(scale=tuple([float(scale), 0.0] * len(self.layers)))

    # ---- what the kernels read ----

    def _base_mlp(self):
        from .mlp import MLP

        if isinstance(self.base, MLP):
            return self.base
        return MLP(self.base.widths, bias=self.base.bias, activation="linear")  # the same network

    def descriptor(self) -> np.ndarray:
        """The int64 ``model_ints`` of kernels/lora.py."""
        ints = self._base_mlp().descriptor()
        ints[0] = MODEL_LORA
        w_off = self.offsets[0]
        extras = [len(self.layers), self.rank, self.base.n_params]
        for j, l in enumerate(self.layers):
            extras += [l, w_off[2 * j], w_off[2 * j + 1]]
        return np.concatenate([ints, np.array(extras, dtype=np.int64)])

    def constants(self, data=None) -> np.ndarray:
        """``model_floats``: the base MLP's floats, then θ₀."""
        return np.concatenate([self._base_mlp().constants(), self.base_weights])

    def kernel_data(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), C-contiguous float64: the adapted network reads the raw data."""
        return np.ascontiguousarray(data.X, dtype=float), np.ascontiguousarray(data.Y, dtype=float)

    @property
    def translated(self) -> bool:
        """A softmax head whose last layer carries an adapter: B_L → B_L + 1uᵀ leaves the loss unchanged."""
        return self.loss == "softmax_ce" and self.layers[-1] == self.base.n_layers

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        r = self.rank
        groups = [ChargeGroup(f"D{l}", j * r * r, (r, r), 2, f"adapter balance B_{l}ᵀB_{l} − A_{l}A_{l}ᵀ (layer {l}, "
                                                             f"rank {r}; GL({r}) between B and A)")
                  for j, l in enumerate(self.layers)]
        if self.translated:
            L = self.base.n_layers
            groups.append(ChargeGroup("T", len(self.layers) * r * r, (r,), 1,
                                      f"softmax translation: Σ_c B_{L}[c, s] per column s of B_{L}"))
        return groups

    @property
    def n_charges(self) -> int:
        return sum(g.size for g in self.charge_groups)

    def isometric_groups(self) -> list[ChargeGroup]:
        """Per adapter J<l> = antisym(A_lP_{A_l}ᵀ − P_{B_l}ᵀB_l) (momentum dynamics), after the charges."""
        r, pos = self.rank, self.n_charges
        groups = [ChargeGroup(f"J{l}", pos + j * r * r, (r, r), 2, f"isometric: antisym(A_{l}P_Aᵀ − P_Bᵀ B_{l}) "
                                                                   f"(adapter on layer {l})")
                  for j, l in enumerate(self.layers)]
        if self.translated:
            groups.append(ChargeGroup("JT", pos + len(self.layers) * r * r, (r,), 1,
                                      "isometric: softmax translation momenta Σ_c P_B[c, s] of the last layer's B"))
        return groups

    # ---- plain NumPy reference (tests, baselines) ----

    @property
    def loss(self) -> str:
        return getattr(self.base, "loss", "squared")

    def full_weights(self, theta: np.ndarray) -> np.ndarray:
        """The base's flat parameters with W₀_l + B_lA_l on the adapted layers (one row θ)."""
        full = np.array(self.base_weights, dtype=float)
        views = self.base.unflatten(full)
        factors = self.unflatten(np.asarray(theta, dtype=float))
        for j, l in enumerate(self.layers):
            views[l - 1][0][...] += factors[2 * j + 1][0] @ factors[2 * j][0]
        return full

    def forward(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self.base.forward(self.full_weights(theta), X)

    def loss_value(self, theta: np.ndarray, data) -> float:
        return self._base_mlp().loss_value(self.full_weights(theta), data)

    def to_config(self) -> dict:
        return {**self.base.to_config(), "lora_rank": self.rank, "lora_layers": list(self.layers),
                "lora_base_seed": self.base_seed, "lora": True}

    def with_charges(self, *charges):
        """These adapters with the user's charges recorded after the catalogue's (``ChargedModel``), with
        the same exact laws and verdicts as ``DeepLinear.with_charges`` (quadratic and linear charges) or a
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
        The adapter balance D1[0, 0] = ‖B_1[:, 0]‖² − ‖A_1[0, :]‖² written by hand as ½θᵀSθ:

        >>> import numpy as np
        >>> import noether_sim as ns
        >>> base = ns.LoRA(ns.DeepLinear((3, 4, 2)), rank=1, layers=(1,))   # θ = (A_1 (1 × 3), B_1 (4 × 1))
        >>> S = np.diag([-2.0] * 3 + [2.0] * 4)
        >>> model = base.with_charges(ns.Charge.quadratic(S, "d00"))
        >>> [g.name for g in model.charge_groups], model.n_charges
        (['D1', 'd00'], 2)
        """
        from .charges import ChargedModel

        return ChargedModel(self, charges)
