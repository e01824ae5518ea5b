"""Charges: the named blocks of the recorded charge vector (``ChargeGroup``) and the user's own charges.

``Charge.quadratic(S, name)`` (q = ½θᵀSθ; S dense, sparse or described by blocks), ``Charge.linear(v, name)``
(q = ⟨v, θ⟩) and ``Charge.function(q, name, n_params=P)`` (a compiled q(θ) → R^m) are given to a
``CustomModel(..., charges=[...])`` or added to a built-in model by ``model.with_charges(...)``
(``ChargedModel``). The kernels evaluate them from a table in the model descriptor (kernels/custom.py), so
the laws the driver derives for quadratic and linear charges (gradient descent's one-step law with its
weight-decay factor, heavy ball's and Nesterov's) apply to them as to the catalogue's; a function charge has
no exact law and a ladder judges it. ``symmetry_report`` measures the symmetry that would conserve each
charge: θᵀS∇L_n, ⟨v, ∇L_n⟩ or ⟨∇q, ∇L_n⟩ (central differences) at random θ, per data point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import fail, positive_int

MAX_CHECKED_COORDINATES = 64
SYMMETRY_FACTOR = 1e3  # |θᵀS∇L| within this many ε of its terms' size: the symmetry holds


@dataclass(frozen=True)
class ChargeGroup:
    """A named block of the flat charge vector q: q[offset : offset + size] reshaped to ``shape``."""

    name: str
    offset: int
    shape: tuple
    degree: int  # 1: linear charge, 2: quadratic charge, 0: a user's function charge (no exact law)
    description: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))



def _from_blocks(blocks, n_params):
    """A block description [(rows, cols, block)] as a scipy.sparse P × P matrix (never dense)."""
    import scipy.sparse as sp

    if n_params is None:
        fail("n_params", None, "is required with a block description of S (P, the model's number of parameters)")
    P = positive_int("n_params", n_params)
    where = np.arange(P)
    r_all, c_all, v_all = [], [], []
    for k, (rows, cols, block) in enumerate(blocks):
        if not isinstance(rows, slice) or not isinstance(cols, slice):
            fail(f"S[{k}]", (rows, cols), "a block's rows and cols must be slices of θ, e.g. slice(0, 12)")
        r, c = where[rows], where[cols]
        if np.iscomplexobj(block):
            fail(f"S[{k}]", "block", "must be real")
        block = np.asarray(block, dtype=float)
        if block.shape != (len(r), len(c)) or rows.stop is not None and rows.stop > P or cols.stop is not None and cols.stop > P:
            fail(f"S[{k}]", f"block of shape {block.shape} at rows {rows}, cols {cols}",
                 f"must fit its slices ({len(r)} × {len(c)}) inside θ of length n_params = {P}")
        if not np.all(np.isfinite(block)):
            fail(f"S[{k}]", "block", "must contain only finite numbers")
        i, j = np.nonzero(block)
        r_all.append(r[i])
        c_all.append(c[j])
        v_all.append(block[i, j])
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    S = sp.coo_matrix((cat(v_all, float), (cat(r_all, np.int64), cat(c_all, np.int64))), shape=(P, P)).tocsr()
    S.sum_duplicates()
    S.eliminate_zeros()
    return S


class Charge:
    """A user's charge: q = ½θᵀSθ (``Charge.quadratic``) or q = ⟨v, θ⟩ (``Charge.linear``).

    Build it with the class methods; give it to ``CustomModel(..., charges=[...])``. ``claim`` =
    "conserved" asks the package to refuse a model whose symmetry check refutes the charge.

    Examples
    --------
    >>> import numpy as np
    >>> import noether_sim as ns
    >>> q = ns.Charge.quadratic(np.diag([1.0, -1.0]), "balance")
    >>> q.name, q.degree, q.value(np.array([3.0, 2.0]))      # ½(9 − 4)
    ('balance', 2, 2.5)
    """

    def __init__(self, name, degree, rows, cols, values, n, description, claim=None, fn=None, size=1):
        self.name, self.degree, self.description, self.claim = name, degree, description, claim
        self.rows, self.cols, self.values, self.n = rows, cols, values, n
        self.fn, self.size = fn, size  # a function charge (degree 0): the user's q and its output's length
        self._wrapper = None

    @property
    def shape(self) -> tuple:
        """The charge's shape in the results: () for a quadratic or linear charge, (m,) for a function."""
        return (self.size,) if self.degree == 0 else ()

    @staticmethod
    def _name(name):
        if not isinstance(name, str) or not name.isidentifier():
            fail("name", name, "must be a non-empty identifier-like string, e.g. 'balance'")
        return name

    @staticmethod
    def _claim(claim):
        if claim not in (None, "conserved"):
            fail("claim", claim, "must be None or 'conserved'")
        return claim

    @classmethod
    def quadratic(cls, S, name, *, description=None, claim=None, n_params=None):
        """q(θ) = ½θᵀSθ for a symmetric P × P matrix S: dense, scipy.sparse, or a list of blocks.

        The kernels read S as its nonzero entries (row, column, value), whatever the form it is given in:
        a block description never becomes a dense P × P matrix.

        Parameters
        ----------
        S : array_like, scipy.sparse matrix, or list of (rows, cols, block)
            Symmetric, real, finite, P × P (P = the model's number of parameters). A block description
            is a list of ``(rows, cols, block)`` with ``rows``, ``cols`` slices of θ (``slice(0, 12)``) and
            ``block`` a 2-D array of their lengths: S[rows, cols] = block (blocks that overlap add up). S
            must come out symmetric: an off-diagonal block needs its transpose at (cols, rows).
        n_params : int, optional
            P; required with a block description (the blocks do not say it), else taken from S.
        name : str
            The charge's name in results and verdicts.
        description : str, optional
            Words for the results' ``charge_description``.
        claim : {None, "conserved"}, optional
            "conserved": the model is refused (ConfigError) when the symmetry θᵀS∇L ≡ 0 fails.

        Returns
        -------
        Charge

        Raises
        ------
        ConfigError
            S is not square, not symmetric, complex or not finite; a bad name or claim.

        Examples
        --------
        >>> import numpy as np
        >>> import noether_sim as ns
        >>> ns.Charge.quadratic(np.array([[0.0, 1.0], [2.0, 0.0]]), "q")   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noether_sim._validate.ConfigError: S=... is invalid: must be symmetric (largest |S − Sᵀ| = 1)

        The balance |a|² − |b|² of θ = (a, b), a and b of length 3, by blocks:

        >>> blocks = [(slice(0, 3), slice(0, 3), 2 * np.eye(3)), (slice(3, 6), slice(3, 6), -2 * np.eye(3))]
        >>> q = ns.Charge.quadratic(blocks, "balance", n_params=6)
        >>> q.value(np.array([1.0, 2.0, 2.0, 0.0, 1.0, 0.0]))     # 9 − 1
        8.0
        """
        import scipy.sparse as sp

        name = cls._name(name)
        if isinstance(S, (list, tuple)) and len(S) and all(isinstance(b, tuple) and len(b) == 3 for b in S):
            S = _from_blocks(S, n_params)
        elif n_params is not None and np.shape(S)[:1] != (positive_int("n_params", n_params),):
            fail("n_params", n_params, f"must be the size of S (S is {np.shape(S)})")
        sparse = sp.issparse(S)
        if sparse:
            C = S.tocoo()
            if C.shape[0] != C.shape[1]:
                fail("S", C.shape, "must be a square P × P matrix")
            rows, cols, vals = np.asarray(C.row, np.int64), np.asarray(C.col, np.int64), np.asarray(C.data, float)
            asym = abs(S - S.T)
            if asym.nnz and asym.max() > 0:
                fail("S", C.shape, f"must be symmetric (largest |S − Sᵀ| = {asym.max():.3g}; in a block "
                                   "description an off-diagonal block needs its transpose at (cols, rows))")
        else:
            if np.iscomplexobj(S):
                fail("S", np.asarray(S), "must be real")
            S = np.array(S, dtype=float)
            if S.ndim != 2 or S.shape[0] != S.shape[1]:
                fail("S", S, "must be a square P × P matrix")
            if not np.all(np.isfinite(S)):
                fail("S", S, "must contain only finite numbers")
            if not np.array_equal(S, S.T):
                fail("S", S, f"must be symmetric (largest |S − Sᵀ| = {np.max(np.abs(S - S.T)):.3g})")
            rows, cols = np.nonzero(S)
            vals = S[rows, cols]
        if not np.all(np.isfinite(vals)):
            fail("S", S.shape, "must contain only finite numbers")
        return cls(name, 2, np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(vals, float), S.shape[0],
                   description or f"user quadratic charge ½θᵀSθ ({len(vals)} nonzeros of S)", cls._claim(claim))

    @classmethod
    def linear(cls, v, name, *, description=None, claim=None):
        """q(θ) = ⟨v, θ⟩ for a vector v of length P.

        Parameters
        ----------
        v : array_like
            Real, finite, length P.
        name : str
            The charge's name.
        description : str, optional
            Words for the results' ``charge_description``.
        claim : {None, "conserved"}, optional
            "conserved": the model is refused when ⟨v, ∇L⟩ ≡ 0 fails.

        Returns
        -------
        Charge

        Raises
        ------
        ConfigError
            v is not a finite real vector; a bad name or claim.

        Examples
        --------
        >>> import numpy as np
        >>> import noether_sim as ns
        >>> ns.Charge.linear([1.0, 1.0, 0.0], "total").value(np.array([1.0, 2.0, 5.0]))
        3.0
        """
        name = cls._name(name)
        if np.iscomplexobj(v):
            fail("v", np.asarray(v), "must be real")
        v = np.array(v, dtype=float)
        if v.ndim != 1 or not np.all(np.isfinite(v)):
            fail("v", v, "must be a 1-D vector of finite numbers (length P)")
        rows = np.nonzero(v)[0]
        return cls(name, 1, rows.astype(np.int64), None, v[rows], v.shape[0],
                   description or "user linear charge ⟨v, θ⟩", cls._claim(claim))

    @classmethod
    def function(cls, q, name, *, n_params, law=None, description=None):
        """A user's charge q(θ) → R^m, any function compiled with ``numba.njit``.

        The kernels call it through the address of a small C wrapper (as ``CustomModel`` calls
        ``loss_grad``), at every save time, and record it like the catalogue's charges: one group of m
        components. Without quadratic structure there is no exact discrete law (no GD one-step law,
        heavy-ball or Langevin law; ``charge_degree`` 0): its drift from q(0) is recorded and a ladder
        judges it (the order of that drift in η).

        Parameters
        ----------
        q : numba.njit function
            ``q(theta) -> 1-D float64 array`` of a fixed length m ≥ 1; it must not modify ``theta``.
        name : str
            The charge's name.
        n_params : int
            P, the length of θ (the model's number of parameters).
        law : {None, "conserved"}, optional
            "conserved": the user claims the flow conserves q; the model is refused (ConfigError, with the
            measured value) when ⟨∇q_i, ∇L⟩ ≠ 0 by finite differences at random θ (per data point).
        description : str, optional
            Words for the results' ``charge_description``.

        Returns
        -------
        Charge

        Raises
        ------
        ConfigError
            q is not compiled with numba.njit, does not compile for a float64 vector, returns something
            other than a finite 1-D array, or returns arrays of different lengths at two random θ; a bad
            name, n_params or law.

        Examples
        --------
        >>> import numba, numpy as np
        >>> import noether_sim as ns
        >>> @numba.njit
        ... def radii(theta):                       # (|θ₀θ₁|, θ₂²): a vector charge
        ...     return np.array([abs(theta[0] * theta[1]), theta[2] ** 2])
        >>> c = ns.Charge.function(radii, "radii", n_params=3)
        >>> c.shape, c.value(np.array([2.0, -3.0, 0.5]))
        ((2,), array([6.  , 0.25]))
        """
        name = cls._name(name)
        P = positive_int("n_params", n_params)
        if not _is_njit(q):
            fail("q", q, "must be a function compiled with numba.njit: q(theta: float64[:]) -> float64[:] "
                         "(a fixed-length 1-D array)")
        qname = getattr(q, "__name__", repr(q))
        rng = np.random.default_rng(2024)
        shape = None
        for _ in range(2):
            theta = rng.standard_normal(P)
            try:
                out = q(theta.copy())
            except Exception as exc:
                fail("q", qname, f"does not run on a float64 vector of length n_params = {P}: "
                                 f"{type(exc).__name__}: {_first_line(exc)}")
            if not isinstance(out, np.ndarray) or out.ndim != 1 or out.size < 1 or np.iscomplexobj(out):
                fail("q", qname, f"must return a non-empty real 1-D array (got {type(out).__name__} "
                                 f"{getattr(out, 'shape', '')})")
            if shape is not None and out.shape != shape:
                fail("q", qname, f"must return arrays of one fixed length: got {shape[0]} then {out.shape[0]} at "
                                 "two random θ")
            if not np.all(np.isfinite(out)):
                fail("q", qname, f"returned a non-finite value {out} at a random θ")
            shape = out.shape
        if law not in (None, "conserved"):
            fail("law", law, "must be None (a ladder judges it) or 'conserved' (checked: ⟨∇q, ∇L⟩ ≡ 0)")
        c = cls(name, 0, None, None, None, P, description or f"user function charge {qname}(θ) ∈ R^{shape[0]}",
                law, fn=q, size=int(shape[0]))
        c.wrapper()
        return c

    def wrapper(self):
        """A function charge's compiled C wrapper (kernels/custom.py ``function_wrapper``), made once, cached
        on disk where numba can; None for the other charges."""
        if self.degree != 0:
            return None
        if self._wrapper is None:
            from .kernels.custom import function_wrapper

            try:
                self._wrapper = function_wrapper(self.fn, cache=True)
            except Exception as exc:
                if _is_typing_error(exc):
                    fail("q", self.fn.__name__, "does not compile for q(theta: float64[:]) -> float64[:]: "
                                                + _first_line(exc))
                self._wrapper = function_wrapper(self.fn, cache=False)  # not cacheable (defined interactively)
        return self._wrapper

    def table_entry(self):
        """(degree, rows, cols, values) for the kernels' charge table (kernels/custom.py): a function
        charge is (0, m, its wrapper's address, P)."""
        if self.degree == 0:
            return (0, self.size, self.wrapper().address, self.n)
        return (self.degree, self.rows, self.cols, self.values)

    def value(self, theta):
        """q(θ) in plain NumPy (the kernels compute the same sums); a function charge's vector."""
        if self.degree == 0:
            return np.asarray(self.fn(np.array(theta, dtype=float)), dtype=float)
        theta = np.asarray(theta, dtype=float)
        if self.degree == 2:
            return float(0.5 * np.sum(self.values * theta[..., self.rows] * theta[..., self.cols], axis=-1))
        return float(np.sum(self.values * theta[..., self.rows], axis=-1))

    def bilinear(self, theta, g) -> float:
        """θᵀSg (quadratic) or ⟨v, g⟩ (linear): the first-order change of q along g, what the symmetry zeroes."""
        if self.degree == 2:
            return float(np.sum(self.values * theta[self.rows] * g[self.cols]))
        return float(np.sum(self.values * g[self.rows]))

    def terms(self, theta, g) -> float:
        """The size of the terms of ``bilinear`` (its round-off reference)."""
        if self.degree == 2:
            return float(np.sum(np.abs(self.values * theta[self.rows] * g[self.cols])))
        return float(np.sum(np.abs(self.values * g[self.rows])))

    def __repr__(self):
        kind = {2: "quadratic ½θᵀSθ", 1: "linear ⟨v, θ⟩"}.get(self.degree, f"function q(θ) ∈ R^{self.size}")
        return f"Charge({self.name!r}, {kind}, P={self.n})"


def _is_njit(f) -> bool:
    from numba.core.registry import CPUDispatcher

    return isinstance(f, CPUDispatcher)



def user_groups(charges, offset, n_groups_before=0) -> list[ChargeGroup]:
    """The charge groups of user charges laid out from component ``offset`` on."""
    groups, pos = [], offset
    for c in charges:
        groups.append(ChargeGroup(c.name, pos, c.shape, c.degree, c.description))
        pos += c.size
    return groups


FUNCTION_RTOL = 1e-6
"""A function charge's symmetry holds when |⟨∇q_i, ∇L⟩| ≤ FUNCTION_RTOL·‖∇q_i‖·‖∇L‖ (+ the differences'
round-off): central differences with a step ε^(1/3) are good to ~1e-10 relative for smooth q."""


def _function_symmetry(c, theta, g, rng):
    """(|⟨∇q_i, g⟩| largest over i, ‖∇q_i‖·‖g‖ for that i, tolerance) by central differences of c's q:
    along g (one pair of evaluations gives every component) and along up to 64 coordinates (‖∇q_i‖)."""
    eps = np.finfo(float).eps
    P = theta.shape[0]
    gn = float(np.linalg.norm(g))
    d = np.cbrt(eps) * max(1.0, float(np.max(np.abs(theta))))
    q0 = c.value(theta)
    if gn == 0.0:
        return 0.0, 0.0, 0.0
    u = g / gn
    along = (c.value(theta + d * u) - c.value(theta - d * u)) / (2 * d) * gn
    coords = np.arange(P) if P <= MAX_CHECKED_COORDINATES else rng.choice(P, MAX_CHECKED_COORDINATES, replace=False)
    sq = np.zeros(c.size)
    for j in coords:
        e = np.zeros(P)
        e[j] = d
        sq += ((c.value(theta + e) - c.value(theta - e)) / (2 * d)) ** 2
    grad_norm = np.sqrt(sq * P / len(coords))
    roundoff = 1e3 * eps * np.maximum(np.abs(q0), 1e-300) / d * gn
    excess = np.abs(along) - (FUNCTION_RTOL * grad_norm * gn + roundoff)
    i = int(np.argmax(excess))
    return float(abs(along[i])), float(grad_norm[i] * gn), float(FUNCTION_RTOL * grad_norm[i] * gn + roundoff[i])


def symmetry_report(charges, grad, parts, n_params, scale, n_points, seed, per) -> list[dict]:
    """Does the symmetry behind each charge hold? θᵀS∇L_n(θ) (quadratic), ⟨v, ∇L_n(θ)⟩ (linear) or
    ⟨∇q_i, ∇L_n(θ)⟩ (function, by central differences) at ``n_points`` random θ ~ N(0, scale²) and for each
    part of the data's loss L_n; ``grad(theta, part)`` is ∇L_n(θ). One dict per charge (``check_symmetries``)."""
    if not charges:
        return []
    rng = np.random.default_rng(seed + 1)
    worst = {c.name: None for c in charges}  # the (|value|, size of its terms, tolerance) farthest above tolerance
    eps = np.finfo(float).eps
    for _ in range(n_points):
        theta = scale * rng.standard_normal(n_params)
        for part in parts:
            g = np.asarray(grad(theta, part), dtype=float)
            for c in charges:
                if c.degree == 0:
                    v, sz, tol = _function_symmetry(c, theta, g, rng)
                else:
                    v, sz = abs(c.bilinear(theta, g)), c.terms(theta, g)
                    tol = SYMMETRY_FACTOR * eps * sz
                w = worst[c.name]
                if w is None or v - tol >= w[0] - w[2]:
                    worst[c.name] = (v, sz, tol)
    out = []
    for c in charges:
        v, sz, tol = worst[c.name]
        holds = v <= tol
        what = {2: "θᵀS∇L", 1: "⟨v, ∇L⟩", 0: "⟨∇q, ∇L⟩"}[c.degree]
        how = " by central differences" if c.degree == 0 else ""
        msg = (f"symmetry {what} ≡ 0 {'holds' if holds else 'FAILS'} ({per}, {n_points} random θ{how}): "
               f"largest |{what}| = {v:.3g}, size of its terms {sz:.3g}")
        out.append({"charge": c.name, "max_abs": v, "scale": sz, "holds": bool(holds), "message": msg})
    return out


def _is_typing_error(exc) -> bool:
    from numba.core.errors import TypingError

    return isinstance(exc, TypingError)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:4])[:400]




CHARGEABLE_KINDS = ("deep_linear", "mlp", "lora", "attention", "residual_mlp")
"""The built-in model kinds whose kernels evaluate a user-charge trailer (kernels/models.py)."""

MAX_CHECKED_POINTS = 64
"""The symmetry check of a built-in model with user charges takes at most this many data points (drawn
at random), each point's loss alone."""


class ChargedModel:
    """A built-in model (DeepLinear, MLP, LoRA, SelfAttention, ResidualMLP) with user charges recorded beside
    its catalogue's: ``model.with_charges(...)`` makes one.

    Everything but the charges is the model's own (attributes are read through). The user's charges follow
    the catalogue's in the results (``charge``, ``component``, ``charge_watch``); quadratic and linear ones
    get the same exact laws and verdicts (the kernels evaluate them with the model's charges, from a
    trailer of its descriptor: kernels/custom.py), function charges a ladder's. The isometric groups of
    momentum dynamics follow them.

    Parameters
    ----------
    base : DeepLinear, MLP, LoRA, SelfAttention or ResidualMLP
        The built-in model.
    charges : sequence of Charge
        The user's charges, each of the model's size P; names must differ from each other and from the
        catalogue's.

    Raises
    ------
    ConfigError
        A charge of the wrong size, a repeated name, or a model without user-charge support.

    Examples
    --------
    The entry D1[0, 0] of a deep linear network's balance matrix, written by hand as ½θᵀSθ:

    >>> import numpy as np
    >>> import noether_sim as ns
    >>> base = ns.DeepLinear((2, 2, 1))                     # θ = (W_1 row-major (4), W_2 (2))
    >>> S = np.diag([-2.0, -2.0, 0.0, 0.0, 2.0, 0.0])       # ½θᵀSθ = W_2[0,0]² − |W_1[0,:]|²
    >>> model = base.with_charges(ns.Charge.quadratic(S, "d00"))
    >>> [g.name for g in model.charge_groups], model.n_charges
    (['D1', 'd00'], 5)
    >>> ds = ns.simulate(model, ns.data.synthetic_regression(2, 1, 8), dynamics="gd", h=0.05, n_steps=5)
    >>> bool(np.isclose(ds.charge_final.values[0, 4], ds.charge_final.values[0, 0], rtol=1e-12, atol=1e-15))
    True
    """

    def __init__(self, base, charges):
        if isinstance(base, ChargedModel):
            charges = tuple(base.user_charges) + tuple(charges)
            base = base.base
        if getattr(base, "kind", None) not in CHARGEABLE_KINDS:
            fail("model", base, "user charges are added to the built-in models (DeepLinear, MLP, LoRA, "
                                "SelfAttention, ResidualMLP; a CustomModel takes them as charges=[...])")
        object.__setattr__(self, "base", base)
        if isinstance(charges, Charge):
            charges = [charges]
        taken = {g.name for g in base.charge_groups} | {g.name for g in base.isometric_groups()}
        out = []
        for i, c in enumerate(charges):
            if not isinstance(c, Charge):
                fail(f"charges[{i}]", c, "must be a noether_sim.Charge (Charge.quadratic, Charge.linear, "
                                         "Charge.function)")
            if c.n != base.n_params:
                fail(f"charges[{i}]", c, f"has size {c.n} but the model has n_params = {base.n_params}")
            if c.name in taken:
                fail(f"charges[{i}]", c, f"repeats the name {c.name!r} (taken: {sorted(taken)})")
            taken.add(c.name)
            out.append(c)
        if not out:
            fail("charges", list(charges), "give at least one Charge")
        object.__setattr__(self, "user_charges", tuple(out))
        object.__setattr__(self, "_checked", {})

    def __getattr__(self, name):
        if name in ("base", "user_charges", "_checked"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def __setattr__(self, name, value):
        raise AttributeError("a ChargedModel is immutable: make a new one with with_charges")

    def with_charges(self, *charges):
        """This model with more user charges (``Charge``); see ``DeepLinear.with_charges``."""
        return ChargedModel(self, charges)

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        base = self.base.charge_groups
        return base + user_groups(self.user_charges, self.base.n_charges)

    @property
    def n_charges(self) -> int:
        return self.base.n_charges + sum(c.size for c in self.user_charges)

    def isometric_groups(self) -> list[ChargeGroup]:
        m = sum(c.size for c in self.user_charges)
        return [ChargeGroup(g.name, g.offset + m, g.shape, g.degree, g.description)
                for g in self.base.isometric_groups()]

    def _trailer(self):
        from .kernels.custom import with_trailer

        return with_trailer(self.base.descriptor(), [c.table_entry() for c in self.user_charges],
                            self.base.n_charges, len(self.base.charge_groups))

    def descriptor(self) -> np.ndarray:
        """The model's descriptor with the user-charge table after it (kernels/custom.py)."""
        return self._trailer()[0]

    def constants(self, data=None) -> np.ndarray:
        """The model's constants, then the user charges' values."""
        return np.concatenate([np.asarray(self.base.constants(data), dtype=float), self._trailer()[1]])

    def to_config(self) -> dict:
        out = dict(self.base.to_config())
        out["user_charges"] = [c.name for c in self.user_charges]
        return out

    def __repr__(self):
        return f"{self.base!r}.with_charges({', '.join(repr(c) for c in self.user_charges)})"

    def check(self, data, *, layer_lr=None, n_points=3, seed=12345) -> list[dict]:
        """Before a run: refuse what user charges cannot do, and a charge claimed conserved whose symmetry
        check (``check_symmetries``) refutes it. Called by ``simulate``; cached per data set.

        Parameters
        ----------
        data : TrainingData
            The run's data.
        layer_lr : optional
            The run's layer-wise rates (refused: the kernels would evaluate the charges in φ = θ/√m).
        n_points, seed : int, optional
            As ``check_symmetries``.

        Returns
        -------
        list of dict
            The symmetry report.

        Raises
        ------
        ConfigError
            layer_lr given; a claimed law refuted (with the measured value).
        """
        if layer_lr is not None:
            fail("layer_lr", layer_lr, "does not combine with user charges (the kernels would evaluate them in "
                                       "φ = θ/√m)")
        key = id(data)
        if key in self._checked and self._checked[key][0] is data:
            return self._checked[key][1]
        report = self.check_symmetries(data, n_points=n_points, seed=seed)
        for r, c in zip(report, self.user_charges):
            if c.claim == "conserved" and not r["holds"]:
                fail(f"charges[{c.name!r}]", "claim='conserved'", f"the symmetry check refutes it: {r['message']}")
        self._checked[key] = (data, report)
        return report

    def check_symmetries(self, data, *, n_points=3, seed=12345) -> list[dict]:
        """The symmetry behind each user charge, measured as ``CustomModel.check_symmetries`` does, from the
        model's own gradient kernel on each data point's loss (at most ``MAX_CHECKED_POINTS`` points).

        Parameters
        ----------
        data : TrainingData
            The data.
        n_points : int, optional
            The number of random θ ~ N(0, 1).
        seed : int, optional
            Their seed (and the points').

        Returns
        -------
        list of dict
            Per user charge: ``charge``, ``max_abs``, ``scale``, ``holds``, ``message``.

        Examples
        --------
        >>> import numpy as np
        >>> import noether_sim as ns
        >>> base = ns.DeepLinear((2, 2, 1))
        >>> S = np.diag([-2.0, -2.0, 0.0, 0.0, 2.0, 0.0])
        >>> model = base.with_charges(ns.Charge.quadratic(S, "d00"), ns.Charge.quadratic(np.eye(6), "norm"))
        >>> [(r["charge"], r["holds"]) for r in model.check_symmetries(ns.data.synthetic_regression(2, 1, 8))]
        [('d00', True), ('norm', False)]
        """
        from .data import from_arrays
        from .kernels.entries import ensemble_loss_grad

        ints = self.base.descriptor()
        kind = int(ints[0])
        X, Y = np.asarray(data.X, dtype=float), np.asarray(data.Y, dtype=float)
        N = X.shape[1]
        cols = np.arange(N) if N <= MAX_CHECKED_POINTS else np.sort(
            np.random.default_rng(seed).choice(N, MAX_CHECKED_POINTS, replace=False))
        parts = []
        for n in cols:
            one = from_arrays(X[:, n:n + 1], Y[:, n:n + 1])
            a, b = self.base.kernel_data(one)
            parts.append((np.ascontiguousarray(a), np.ascontiguousarray(b),
                          np.asarray(self.base.constants(one), dtype=float)))

        def grad(theta, part):
            a, b, fl = part
            return ensemble_loss_grad(kind, np.ascontiguousarray(theta[None]), ints, fl, a, b)[1][0]

        per = "per data point" if N <= MAX_CHECKED_POINTS else f"per data point, {MAX_CHECKED_POINTS} of {N}"
        return symmetry_report(self.user_charges, grad, parts, self.base.n_params, 1.0, n_points, seed, per)
