"""Training data. Columns are data points: X is n_in × N, Y is n_out × N (as in XXᵀ/N of theory.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import fail, finite_array, non_negative, positive_int
from .random import data_rng


@dataclass(frozen=True, eq=False)
class TrainingData:
    """X (n_in × N), Y (n_out × N). An augmented set (``augment``) also carries its symmetry group's
    generators: antisymmetric input-space matrices K (m × n_in × n_in) named ``symmetry_names``, and the
    largest polynomial degree (of the model in its input, squared loss) for which the loss is exactly
    invariant under W_1 → W_1 e^{sK} (``exact_degree``; −1: exact for no model).

    Parameters
    ----------
    X : array_like
        Inputs, (n_in, N): one column per point.
    Y : array_like
        Targets, (n_out, N).
    description : str, optional
        What the data are, shown in results.
    symmetry_generators : array_like, optional
        Antisymmetric input-space generators K, (m, n_in, n_in).
    symmetry_names : tuple of str, optional
        Their names (default K0, K1, ...).
    exact_degree : int, optional
        The largest model degree for which the loss is exactly invariant (−1: none).
    config : dict, optional
        The configuration the data were built from, when built from one.

    Raises
    ------
    ConfigError
        Non-finite or non-2-D arrays, X and Y with different numbers of columns (with a hint when they
        look transposed), no data point, or generators of the wrong shape, not antisymmetric, or
        misnamed.

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.data import TrainingData
    >>> d = TrainingData(np.ones((3, 5)), np.zeros((2, 5)))
    >>> d.n_in, d.n_out, d.n_points
    (3, 2, 5)
    >>> TrainingData(np.ones((5, 3)), np.zeros((5, 2)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: X='array of shape (5, 3) with Y of shape (5, 2)' is invalid: X looks like (points, features) ...
    """

    X: np.ndarray
    Y: np.ndarray
    description: str = "user arrays"
    symmetry_generators: np.ndarray | None = None
    symmetry_names: tuple = ()
    exact_degree: int = -1
    config: dict | None = None

    def __post_init__(self):
        X = finite_array("X", self.X, 2)
        Y = finite_array("Y", self.Y, 2)
        if X.shape[1] != Y.shape[1]:
            if X.shape[0] == Y.shape[0]:  # rows agree: sample-major arrays (scikit-learn, PyTorch)
                fail("X", f"array of shape {X.shape} with Y of shape {Y.shape}",
                     f"X looks like (points, features) and Y like (points, outputs): pass X.T and Y.T "
                     f"(noether_sim takes features × points: X is n_in × N, Y is n_out × N, one column per point)")
            fail("Y", Y, f"must have as many columns (data points) as X, {X.shape[1]}, got {Y.shape[1]}")
        if X.shape[1] < 1:
            fail("X", X, "must hold at least one data point (column)")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "Y", Y)
        K = np.zeros((0, X.shape[0], X.shape[0])) if self.symmetry_generators is None else \
            finite_array("symmetry_generators", self.symmetry_generators, 3)
        if K.shape[1:] != (X.shape[0], X.shape[0]):
            fail("symmetry_generators", K, f"must have shape (m, {X.shape[0]}, {X.shape[0]}): input-space matrices")
        if not np.allclose(K, -np.transpose(K, (0, 2, 1)), atol=1e-12):
            fail("symmetry_generators", K, "must be antisymmetric (generators of rotations of the inputs)")
        names = tuple(self.symmetry_names) or tuple(f"K{m}" for m in range(len(K)))
        if len(names) != len(K) or len(set(names)) != len(names):
            fail("symmetry_names", list(names), f"must be {len(K)} distinct names, one per generator")
        object.__setattr__(self, "symmetry_generators", K)
        object.__setattr__(self, "symmetry_names", names)

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
        if hasattr(model, "check_data"):  # models that read their data in their own layout (SelfAttention)
            return model.check_data(self)
        if self.n_in != model.widths[0] and self.n_points == model.widths[0]:
            fail("data", self, f"X has shape {self.X.shape}: its rows are the model's input width {model.widths[0]}, "
                               f"so X looks like (points, features): pass X.T and Y.T (noether_sim takes "
                               f"features × points, one column per data point)")
        if self.n_in != model.widths[0]:
            fail("data", self, f"inputs have {self.n_in} features but the model's input width is {model.widths[0]}")
        if self.n_out != model.widths[-1]:
            fail("data", self, f"targets have {self.n_out} outputs but the model's output width is {model.widths[-1]}")

    def __repr__(self):
        return f"TrainingData({self.description}, n_in={self.n_in}, n_out={self.n_out}, N={self.n_points})"

    def to_config(self) -> dict:
        return dict(self.config) if self.config else {"kind": "arrays", "description": self.description}

    def symmetry_exact_for(self, model) -> bool:
        """Is the loss of ``model`` on this set exactly invariant under every generator's rotations?"""
        degree = getattr(model, "input_degree", None)
        return degree is not None and degree <= self.exact_degree


def sequences(model, n_sequences: int | None = None, *, tokens=None, targets=None, noise: float = 0.0,
              seed: int = 0, teacher_scale: float = 1.0) -> TrainingData:
    """Token sequences for ``model``: Gaussian tokens (or yours) labelled by a random teacher of the same
    architecture (or your targets).

    Parameters
    ----------
    model : SelfAttention
        The architecture; the teacher has the same heads, widths, mask and readout.
    n_sequences : int, optional
        Number of sequences N to draw (tokens N(0, 1)); not given with ``tokens``.
    tokens : array_like, optional
        Your sequences, shape (N, tokens, d_model).
    targets : array_like, optional
        Your targets, (N, tokens, d_out) for the sequence readout or (N, d_out) for one readout token;
        default: the teacher's outputs on the tokens.
    noise : float
        Standard deviation of Gaussian noise added to the teacher's targets (>= 0).
    seed : int
        Seed of the tokens, the teacher's weights and the noise.
    teacher_scale : float
        The teacher's weights are N(0, teacher_scale²/fan_in) (>= 0).

    Returns
    -------
    TrainingData
        X of shape (tokens·d_model, N) and Y of shape (n_read·d_out, N), n_read the number of tokens read, one sequence per column,
        token-major.

    Raises
    ------
    ConfigError
        ``model`` is not a SelfAttention, both or neither of ``n_sequences`` and ``tokens`` given, shapes
        that do not match the model (d_model, tokens, d_out), or a value out of range.

    Examples
    --------
    >>> import noether_sim as ns
    >>> model = ns.SelfAttention(4, heads=2, tokens=3)
    >>> data = ns.data.sequences(model, 16, seed=1)
    >>> data.X.shape, data.Y.shape
    ((12, 16), (12, 16))
    >>> import numpy as np
    >>> ns.data.sequences(model, tokens=np.zeros((5, 3, 6)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    noether_sim._validate.ConfigError: tokens='array of shape (5, 3, 6)' is invalid: must have shape (N, 3, 4)...
    """
    if getattr(model, "kind", "") != "attention":
        fail("model", model, "must be a noether_sim.SelfAttention")
    noise = non_negative("noise", noise)
    teacher_scale = non_negative("teacher_scale", teacher_scale)
    rng = data_rng(seed)
    T, d = model.tokens, model.d_model
    if (n_sequences is None) == (tokens is None):
        fail("n_sequences", n_sequences, "give either n_sequences (Gaussian tokens) or tokens (your sequences)")
    if tokens is None:
        n_sequences = positive_int("n_sequences", n_sequences)
        Xs = rng.standard_normal((n_sequences, T, d))
        source = "Gaussian tokens"
    else:
        Xs = np.asarray(tokens, dtype=float)
        if Xs.ndim != 3 or Xs.shape[1:] != (T, d) or Xs.shape[0] < 1:
            fail("tokens", f"array of shape {Xs.shape}", f"must have shape (N, {T}, {d}): N >= 1 sequences of "
                                                         f"tokens={T} tokens of d_model={d} features")
        if not np.all(np.isfinite(Xs)):
            fail("tokens", "array with non-finite values", "must be finite")
        source = "user tokens"
    N = Xs.shape[0]
    X = np.ascontiguousarray(Xs.reshape(N, T * d).T)
    if targets is None:
        theta = model.flatten([(rng.standard_normal(model.weight_shape(i)) * teacher_scale
                                / np.sqrt(model.weight_shape(i)[1]), None) for i in range(1, model.n_layers + 1)])
        Y = model.forward(theta, X) + noise * rng.standard_normal((model.n_out, N))
        what = f"attention teacher (teacher_scale={teacher_scale}, noise={noise})"
    else:
        Ys = np.asarray(targets, dtype=float)
        want = (N, T, model.d_out) if model.n_readout == T else (N, model.d_out)
        if Ys.shape != want:
            fail("targets", f"array of shape {Ys.shape}", f"must have shape {want} for readout={model.readout!r}")
        Y = np.ascontiguousarray(Ys.reshape(N, -1).T)
        what = "user targets"
    return TrainingData(X, Y, f"{N} sequences ({source}, {what}, seed={seed})")


def from_arrays(X, Y) -> TrainingData:
    """Training data from your own arrays, ONE COLUMN PER DATA POINT (features × points).

    Sample-major arrays, (N, n_in) as scikit-learn and PyTorch give them, must be transposed:
    ``from_arrays(X.T, Y.T)``. Where the shapes say so (the rows of X and Y agree, the columns do not) this
    is refused here with that advice; where they fit both ways, at the first use with a model whose input
    width is N. Values must be finite; they are copied to float64.

    Parameters
    ----------
    X : array_like
        Inputs, shape (n_in, N): n_in features (the model's input width), N points.
    Y : array_like
        Targets, shape (n_out, N) (the model's output width; for softmax cross-entropy one-hot or soft
        labels, classes × N); a 1-D Y of length N is one output, shape (1, N).

    Returns
    -------
    TrainingData

    Raises
    ------
    ConfigError
        Non-finite values, or shapes that do not match (with the transpose advice where it applies).

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> ns.data.from_arrays(np.ones((3, 5)), np.zeros((2, 5))).n_points
    5
    """
    Yarr = np.asarray(Y)
    if Yarr.ndim == 1:
        Yarr = Yarr[None, :]
    return TrainingData(X, Yarr)


def synthetic_regression(n_in: int, n_out: int, n_points: int, noise: float = 0.0,
                         teacher_scale: float = 1.0, seed: int = 0) -> TrainingData:
    """Gaussian inputs, a random linear teacher W* (entries N(0, scale²/n_in)), Gaussian label noise.

    Parameters
    ----------
    n_in, n_out, n_points : int
        Input and output sizes (the model's first and last width) and the number of points N.
    noise : float
        Standard deviation of the label noise (≥ 0).
    teacher_scale : float
        The teacher's entries are N(0, teacher_scale²/n_in).
    seed : int
        The data set's seed (independent of the initialisation seeds).

    Returns
    -------
    TrainingData
        ``X`` (n_in × N), ``Y = W*X + noise`` (n_out × N).

    Raises
    ------
    ConfigError
        A size below 1 or a negative noise or scale.

    Examples
    --------
    >>> import noether_sim as ns
    >>> data = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
    >>> data.X.shape, data.Y.shape
    ((10, 64), (5, 64))
    """
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
    """Inputs with XXᵀ/N = I exactly and input–output correlation YXᵀ/N = U diag(s) Vᵀ (U, V random).

    Parameters
    ----------
    n_in, n_out, n_points : int
        Sizes; ``n_points ≥ n_in`` so that the inputs can be whitened exactly.
    singular_values : sequence of float
        At most min(n_in, n_out) values s ≥ 0.
    seed : int
        The data set's seed.

    Returns
    -------
    TrainingData

    Raises
    ------
    ConfigError
        Too many or negative singular values, or fewer points than inputs.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> d = ns.data.whitened(3, 2, 8, [2.0, 1.0])
    >>> np.allclose(d.X @ d.X.T / 8, np.eye(3)), np.linalg.svd(d.Y @ d.X.T / 8, compute_uv=False).round(12).tolist()
    (True, [2.0, 1.0])
    """
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


# ---- exact data augmentation (theory.md §2 item 5) ----

AUGMENT_GROUPS = ("cyclic_translations", "rotations")


def fourier_shift_generator(d: int) -> np.ndarray:
    """K (d × d, antisymmetric) with e^{φK} the continuous cyclic shift by φ samples, acting as a rotation by
    2πkφ/d in the plane of each real Fourier pair (cos, sin) of frequency 0 < k < d/2; the mean and (even d)
    the alternating component stay fixed. For odd d, e^{jK} x = np.roll(x, j) for integer j."""
    d = positive_int("d", d)
    n = np.arange(d)
    K = np.zeros((d, d))
    for k in range(1, (d + 1) // 2):
        c = np.cos(2 * np.pi * k * n / d) * np.sqrt(2.0 / d)
        s = np.sin(2 * np.pi * k * n / d) * np.sqrt(2.0 / d)
        # shifting x(n) → x(n − φ) moves cos → cos·cos(ωφ) + sin·sin(ωφ): d/dφ maps c → ω s, s → −ω c
        omega = 2 * np.pi * k / d
        K += omega * (np.outer(s, c) - np.outer(c, s))
    return K


def continuous_shift(d: int, phi: float) -> np.ndarray:
    """The orthogonal matrix e^{φK} of ``fourier_shift_generator`` (in closed form, per Fourier plane)."""
    n = np.arange(d)
    R = np.full((d, d), 1.0 / d)  # the mean component is fixed
    if d % 2 == 0:
        alt = (-1.0) ** n
        R += np.outer(alt, alt) / d  # the alternating component is fixed
    for k in range(1, (d + 1) // 2):
        # cos(ω(n − m − φ)) summed over the plane: the band-limited shift kernel of frequency k
        R += (2.0 / d) * np.cos(2 * np.pi * k * (n[:, None] - n[None, :] - phi) / d)
    return R


def _check_images(name, value, n_images: int, data: TrainingData):
    """Refuse, before building it, an augmented set larger than the memory available now."""
    from .ensemble import available_memory

    needed = 8.0 * n_images * data.n_points * (data.n_in + data.n_out) * 2  # X and Y, and one copy while joined
    limit = available_memory()
    if limit is not None and needed > limit:
        fail(name, value, f"gives {n_images} images of the {data.n_points} points, about {needed / 2**30:.3g} GiB, "
                          f"more than the memory available now ({limit / 2**30:.3g} GiB)")


def augment(data: TrainingData, group: str, *, shifts=None, n_shifts: int | None = None, planes=None,
            n_angles: int | None = None, degree: int | None = 1) -> TrainingData:
    """The training set closed under a group acting orthogonally on the inputs (labels unchanged), with the
    group's generators as ``.symmetry_generators`` (docs/theory.md §2 item 5).

    For a model that is not polynomial in its input (ReLU, tanh, softmax loss) no finite set is exact:
    the invariance is then approximate, and the data-symmetry charges of a run measure by how much.

    Parameters
    ----------
    data : TrainingData
        The training set to close.
    group : {"cyclic_translations", "rotations"}
        ``"cyclic_translations"``: the inputs are length-d signals, acted on by the continuous cyclic
        shifts ``e^{φK}`` (``fourier_shift_generator``), one generator ``"shift"``. ``"rotations"``:
        rotations in the disjoint coordinate ``planes``, one generator ``"rot<i>-<j>"`` per plane.
    shifts : None, "integer" or list of float
        Cyclic translations only. None: a quadrature of n equally spaced shifts ``φ_j = j·d/n`` with
        ``n = 2·degree·(⌈d/2⌉ − 1) + 1``, so that the loss of a model whose outputs are polynomials of
        degree ≤ ``degree`` in the input is exactly invariant under ``W_1 → W_1 e^{φK}`` for every real φ.
        ``"integer"``: the d integer shifts ``np.roll(x, j)``, the finite group Z_d; for squared loss on a
        deep linear network this already gives the continuous symmetry exactly (the input second moment
        becomes circulant), for any other model it does not. A list: those shifts φ (samples,
        continuous), e.g. a random set that is not a group.
    n_shifts : int, optional
        Overrides the quadrature's n.
    planes : list of (int, int)
        Rotations only: the coordinate planes.
    n_angles : int, optional
        Rotations only: angles per plane (default ``2·degree + 1``, exact for polynomial models of degree
        ≤ ``degree``); every combination over the planes is used.
    degree : int or None
        The input degree the closure is exact for; None with an explicit ``n_shifts`` / ``n_angles``
        claims no exactness.

    Returns
    -------
    TrainingData
        The closed set; ``.symmetry_generators`` names its generators and ``symmetry_exact_for(model)``
        says for which models the invariance is exact.

    Raises
    ------
    ConfigError
        An unknown group, inputs that do not fit it, or options of the other group.

    Examples
    --------
    >>> import noether_sim as ns
    >>> base = ns.data.synthetic_regression(7, 2, 3, seed=0)
    >>> closed = ns.data.augment(base, "cyclic_translations", shifts="integer")
    >>> closed.X.shape
    (7, 21)
    """
    if not isinstance(data, TrainingData):
        fail("data", data, "must be a noether_sim.data.TrainingData")
    if group not in AUGMENT_GROUPS:
        fail("group", group, f"must be one of {', '.join(AUGMENT_GROUPS)}")
    if degree is not None:
        degree = positive_int("degree", degree)
    d = data.n_in
    config = {"kind": "augment", "base": data.to_config(), "group": group, "degree": degree}
    if group == "cyclic_translations":
        if planes is not None or n_angles is not None:
            fail("planes" if planes is not None else "n_angles", planes if planes is not None else n_angles,
                 "applies only to group='rotations'")
        K = fourier_shift_generator(d)[None]
        names = ("shift",)
        if isinstance(shifts, str):
            if shifts != "integer":
                fail("shifts", shifts, "must be None (quadrature), 'integer' or a list of shifts")
            if n_shifts is not None:
                fail("n_shifts", n_shifts, "applies only to the quadrature (shifts=None)")
            images = [np.roll(data.X, j, axis=0) for j in range(d)]
            exact = 1
            what = f"the {d} integer cyclic shifts (the group Z_{d})"
        else:
            if shifts is None:
                if n_shifts is None and degree is None:
                    fail("n_shifts", None, "give n_shifts when degree=None (no exact quadrature)")
                n = positive_int("n_shifts", n_shifts) if n_shifts is not None else 2 * degree * ((d + 1) // 2 - 1) + 1
                _check_images("n_shifts", n, n, data)
                phis = np.arange(n) * d / n
                exact = degree if degree is not None and n >= 2 * degree * ((d + 1) // 2 - 1) + 1 else -1
                what = f"{n} equally spaced continuous shifts"
            else:
                if n_shifts is not None:
                    fail("n_shifts", n_shifts, "applies only to the quadrature (shifts=None)")
                phis = finite_array("shifts", np.atleast_1d(shifts), 1)
                _check_images("shifts", f"{len(phis)} shifts", len(phis), data)
                exact = -1  # a set that is not a quadrature of the group: exact for no model
                what = f"the {len(phis)} shifts {np.round(phis, 3).tolist()}"
            images = [continuous_shift(d, float(phi)) @ data.X for phi in phis]
        config.update(shifts=shifts if shifts is None or isinstance(shifts, str) else [float(x) for x in shifts],
                      n_shifts=n_shifts)
    else:
        if shifts is not None or n_shifts is not None:
            fail("shifts" if shifts is not None else "n_shifts", shifts if shifts is not None else n_shifts,
                 "applies only to group='cyclic_translations'")
        if planes is None or len(planes) == 0:
            fail("planes", planes, "give at least one coordinate plane (i, j) to rotate in")
        used = set()
        for pl in planes:
            if (len(pl) != 2 or not all(isinstance(i, (int, np.integer)) for i in pl) or not all(0 <= i < d for i in pl)
                    or pl[0] == pl[1] or used & set(pl)):
                fail("planes", [list(p) for p in planes], f"must be disjoint pairs (i, j) of distinct input indices < {d}")
            used |= set(pl)
        if n_angles is None and degree is None:
            fail("n_angles", None, "give n_angles when degree=None (no exact quadrature)")
        n = positive_int("n_angles", n_angles) if n_angles is not None else 2 * degree + 1
        exact = degree if degree is not None and n >= 2 * degree + 1 else -1
        _check_images("n_angles", n, n ** len(planes), data)
        K = np.zeros((len(planes), d, d))
        for m, (i, j) in enumerate(planes):
            K[m, i, j], K[m, j, i] = -1.0, 1.0
        names = tuple(f"rot{i}-{j}" for i, j in planes)
        angles = 2 * np.pi * np.arange(n) / n
        images = [data.X]
        for m, (i, j) in enumerate(planes):
            rotated = []
            for X in images:
                for a in angles:
                    R = np.eye(d)
                    R[i, i], R[i, j], R[j, i], R[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
                    rotated.append(R @ X)
            images = rotated
        what = f"rotations by {n} equally spaced angles in the planes {[tuple(map(int, p)) for p in planes]}"
        config.update(planes=[[int(i) for i in p] for p in planes], n_angles=n_angles)
    X = np.concatenate(images, axis=1)
    Y = np.concatenate([data.Y] * len(images), axis=1)
    claim = (f"loss exactly invariant for models of input degree <= {exact}" if exact >= 0
             else "not an exact quadrature of the group for any model: the invariance is approximate")
    return TrainingData(X, Y, f"{data.description}, closed under {what} ({claim})", symmetry_generators=K,
                        symmetry_names=names, exact_degree=exact, config=config)
