"""Discover and count the conservation laws of a model numerically, and check its charge catalogue.

Following Marcotte, Gribonval and Peyré (NeurIPS 2023), a function h(θ) is conserved by gradient flow
for every data set exactly when ⟨∇h, X⟩ = 0 for every per-sample gradient field X = ∇_θ ℓ(θ; x, y),
hence for every field of the Lie algebra they generate. The number of independent conservation laws
near a generic θ is therefore P − dim Lie(V)(θ) (Frobenius). ``discover`` measures that dimension:

* fields and iterated right-normed Lie brackets [X_1, [X_2, … X_d]] are evaluated at θ with exact
  forward-mode derivatives of the model's own gradient (``_jets``); [X, Y] = DY·X − DX·Y;
* the leaves are the per-sample fields (depth 1) and random combinations of them (brackets), so the
  sampled brackets span the bracket space with probability one once there are enough of them;
* the span's rank is read from the singular values of the stacked unit vectors at the largest gap
  (``decide_rank``); brackets are added depth by depth until the rank stops growing, which at a
  generic point means the span is closed under brackets (involutive), so it is the whole Lie algebra.

Under momentum flow τθ̈ + θ̇ = −∇L (Marcotte et al., ICML 2024) the state is z = (q, p, t) and the
fields of a data set with loss weights ω (Σω = 1) are (p, −(∇L_ω(q) + p)/τ, 1); their span is the
fields (αp, −(αp + ∇L_ω(q))/τ, α) with Σω = α, and laws may depend on time: the count is
2P + 1 − dim Lie at z.

Laws of low degree are solved for directly, as null spaces of linear conditions over sampled θ and data:
linear ⟨v, θ⟩ (⟨v, ∇ℓ⟩ = 0) and quadratic ½θᵀSθ (θᵀS∇ℓ(θ) = 0) under gradient flow; under momentum
flow, each such v gives two laws, e^{t/τ}⟨v, p⟩ and ⟨v, q + τp⟩ (⟨v, τq̈ + q̇⟩ = 0 integrates once),
and e^{t/τ}⟨p, Kq⟩ with K antisymmetric and (Kq)ᵀ∇ℓ(q) = 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _jets as J
from ._validate import fail, positive, positive_int
from .data import TrainingData

EPS = np.finfo(float).eps
FLOWS = ("gradient", "momentum")
STRUCTURES = ("auto", "full", "layer_gram")
FULL_QUADRATIC_MAX_UNKNOWNS = 1200  # P ≤ 48: a dense SVD of the full symmetric system (~(1.2k)³ flops)
CONSERVED_TOL = 1e-9  # |⟨∇q, ∇ℓ⟩| / (|∇q||∇ℓ|) below which a catalogue charge counts as conserved


# ---------------------------------------------------------------------------------------------
# rank decisions

@dataclass(frozen=True)
class RankDecision:
    """The rank of a set of vectors, chosen at the largest gap of its singular values.

    singular_values  normalised by the largest, descending; dim − n_vectors trailing zeros are implicit
    gap              σ_rank / σ_{rank+1}: the ratio that separates kept from discarded values, with values
                     below the round-off floor ``floor`` (ε × rows) read as the floor, and σ_{dim+1} = floor
                     (so full rank is a gap too)
    next_gap         the largest other ratio between neighbouring values
    tolerance        the threshold the decision amounts to: √(σ_rank σ_{rank+1})
    decided          gap ≥ min_gap, no other gap ≥ min_gap, and the discarded values are ≤ 1e-8
    """

    rank: int
    dim: int
    singular_values: np.ndarray
    gap: float
    next_gap: float
    tolerance: float
    floor: float
    decided: bool
    message: str


def decide_rank(vectors: np.ndarray, min_gap: float = 1e4, singular_values=None) -> RankDecision:
    """Rank of the rows of ``vectors`` (each row is scaled to unit length first)."""
    A = np.asarray(vectors, dtype=float)
    dim = A.shape[1]
    if singular_values is None:
        norms = np.linalg.norm(A, axis=1)
        A = A[norms > 0] / norms[norms > 0, None]
        s = np.linalg.svd(A, compute_uv=False) if A.size else np.zeros(0)
    else:
        s = np.asarray(singular_values, dtype=float)
    return _decide(s, dim, max(A.shape[0], dim), min_gap)


def _decide(s, dim, n_rows, min_gap):
    floor = EPS * n_rows
    if s.size == 0 or s[0] == 0:
        return RankDecision(0, dim, np.zeros(0), math.inf, 1.0, 0.0, floor, True, "no nonzero vectors")
    s = np.sort(s)[::-1][:dim] / s.max()
    full = np.concatenate([s, np.zeros(dim - s.size)])
    ext = np.maximum(np.concatenate([full, [0.0]]), floor)
    ratios = ext[:-1] / ext[1:]
    i = int(np.argmax(ratios))
    rank = i + 1
    gap = float(ratios[i])
    others = np.delete(ratios, i)
    next_gap = float(others.max()) if others.size else 1.0
    below = float(full[rank]) if rank < dim else 0.0
    decided = gap >= min_gap and next_gap < min_gap and below <= 1e-8
    if decided:
        msg = f"rank {rank} of {dim}: gap ×{gap:.3g} (next largest ×{next_gap:.3g})"
    elif gap < min_gap:
        msg = (f"undecided: the largest singular-value gap is only ×{gap:.3g} (< ×{min_gap:g}); "
               f"best guess rank {rank} of {dim}")
    elif next_gap >= min_gap:
        msg = (f"undecided: two gaps above ×{min_gap:g} (×{gap:.3g} and ×{next_gap:.3g}); "
               f"best guess rank {rank} of {dim}")
    else:
        msg = (f"undecided: the values below the gap reach {below:.3g} (> 1e-8 of the largest), "
               f"not round-off; best guess rank {rank} of {dim}")
    tol = math.sqrt(max(full[rank - 1], floor) * max(below, floor))
    return RankDecision(rank, dim, full, gap, next_gap, tol, floor, decided, msg)


def _null_space(rows: np.ndarray, min_gap: float):
    """(orthonormal basis of the null space as columns, RankDecision) of unit-scaled ``rows``."""
    norms = np.linalg.norm(rows, axis=1)
    A = rows[norms > 0] / norms[norms > 0, None]
    _, s, vt = np.linalg.svd(A, full_matrices=A.shape[0] < A.shape[1])  # vt is square either way
    dec = _decide(s, rows.shape[1], max(A.shape[0], rows.shape[1]), min_gap)
    return vt[dec.rank:].T, dec


def _orth(vectors: np.ndarray, min_gap: float = 1e4):
    """Orthonormal basis (columns) of the span of the columns of ``vectors``."""
    if vectors.shape[1] == 0:
        return vectors
    u, s, _ = np.linalg.svd(vectors, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return vectors[:, :0]
    return u[:, : _decide(s, vectors.shape[1], vectors.shape[0], min_gap).rank]


# ---------------------------------------------------------------------------------------------
# vector fields: gradient flow and momentum flow

class _Fields:
    """Per-sample fields of ``model`` on data (X, Y), and how to draw generic members of their span."""

    def __init__(self, model, X, Y, flow, tau):
        self.model, self.X, self.Y, self.flow, self.tau = model, X, Y, flow, tau
        self.N = X.shape[1]
        self.P = model.n_params
        self.dim = self.P if flow == "gradient" else 2 * self.P + 1

    def __call__(self, z: J.Jet, leaf) -> J.Jet:
        if self.flow == "gradient":
            return J.weighted_gradient(self.model, z, self.X, self.Y, leaf)
        alpha, omega = leaf
        P = self.P
        q, p = z[..., :P], z[..., P: 2 * P]
        g = J.weighted_gradient(self.model, q, self.X, self.Y, omega)
        a = alpha[:, None]
        dq = p * a
        dp = (p * a + g) * (-1.0 / self.tau)
        dt = J.lift(np.broadcast_to(alpha[:, None], alpha.shape + (1,)).astype(float), z.size)
        return J._concat([dq, dp, dt], z.size)

    def generators(self):
        """Leaves whose values at z span the fields' values (depth 1)."""
        N = self.N
        if self.flow == "gradient":
            return np.eye(N)
        diffs = np.eye(N)[1:] - np.eye(N)[:1]  # ω = e_j − e_1, α = 0
        omega = np.vstack([np.full((1, N), 1.0 / N), diffs])
        return (omega.sum(axis=1), omega)

    def random_leaves(self, rng, n):
        omega = rng.standard_normal((n, self.N)) / math.sqrt(self.N)
        return omega if self.flow == "gradient" else (omega.sum(axis=1), omega)


def _take(leaf, idx):
    return leaf[idx] if not isinstance(leaf, tuple) else (leaf[0][idx], leaf[1][idx])


def _leaf_count(leaf):
    return leaf.shape[0] if not isinstance(leaf, tuple) else leaf[0].shape[0]


def _bracket(fields, leaves, z):
    """Right-normed bracket [X_0, [X_1, … X_{d−1}]] of leaf fields (one leaf array per level) at jet z."""
    if len(leaves) == 1:
        return fields(z, leaves[0])
    U = fields(z, leaves[0])
    V = _bracket(fields, leaves[1:], z)
    dV_U = J.derivative_part(_bracket(fields, leaves[1:], J.with_direction(z, U)))
    dU_V = J.derivative_part(fields(J.with_direction(z, V), leaves[0]))
    return dV_U - dU_V


def bracket_vectors(fields, z0, leaves, chunk=None):
    """Values at z0 of the right-normed brackets of ``leaves`` (a list, one per level, each n rows)."""
    n = _leaf_count(leaves[0])
    if chunk is None:  # a depth-d bracket carries 2^(d−1) jet coefficients per activation (widest × N)
        per_row = 2 ** (len(leaves) - 1) * fields.N * max(fields.model.widths)
        chunk = int(min(48, max(1, 2_000_000 // per_row)))
    out = np.empty((n, z0.shape[-1]))
    for start in range(0, n, chunk):
        idx = slice(start, min(n, start + chunk))
        m = idx.stop - idx.start
        z = J.Jet(np.broadcast_to(z0, (1, m, z0.shape[-1])).copy())
        out[idx] = _bracket(fields, [_take(lf, idx) for lf in leaves], z).value
    return out


@dataclass(frozen=True)
class PointRank:
    """dim Lie(V) at one sampled point: the rank after each bracket depth and the final decision."""

    rank_by_depth: tuple
    decision: RankDecision
    depth: int
    stable: bool  # the rank stopped growing (or reached the dimension) before max_depth ran out


def lie_rank(fields: _Fields, z0: np.ndarray, rng, max_depth: int = 4, per_depth=None,
             min_gap: float = 1e4) -> PointRank:
    dim = fields.dim
    per_depth = per_depth or dim + 8
    blocks = [bracket_vectors(fields, z0, [fields.generators()])]
    dec = decide_rank(blocks[0], min_gap)
    ranks = [dec.rank]
    stable = dec.decided and dec.rank == dim
    depth = 1
    while not stable and depth < max_depth:
        depth += 1
        leaves = [fields.random_leaves(rng, per_depth) for _ in range(depth)]
        blocks.append(bracket_vectors(fields, z0, leaves))
        new = decide_rank(np.vstack(blocks), min_gap)
        stable = new.decided and dec.decided and (new.rank == ranks[-1] or new.rank == dim)
        dec = new
        ranks.append(dec.rank)
    return PointRank(tuple(ranks), dec, depth, bool(stable))


# ---------------------------------------------------------------------------------------------
# sampling

def _sample_theta(model, rng, n):
    """Generic parameters: W_i entries N(0, 1/n_{i−1}), biases N(0, 1/4)."""
    theta = np.empty((n, model.n_params))
    w_off, b_off = model.offsets
    for i in range(1, model.n_layers + 1):
        n_out, n_in = model.weight_shape(i)
        theta[:, w_off[i - 1]: w_off[i - 1] + n_out * n_in] = rng.standard_normal((n, n_out * n_in)) / math.sqrt(n_in)
        if model.bias:
            theta[:, b_off[i - 1]: b_off[i - 1] + n_out] = 0.5 * rng.standard_normal((n, n_out))
    return theta


PIECEWISE = ("relu", "leaky_relu", "abs", "relu_pow")


def _one_sided_neurons(model, theta, X):
    """Hidden neurons of a piecewise activation whose pre-activation has one sign on every data point:
    dead (or linear) on the data, they open extra local laws, so such θ are not generic."""
    if getattr(model, "activation", None) not in PIECEWISE:
        return []
    out = []
    for i, Z in enumerate(model.preactivations(theta, X)[:-1], start=1):
        pos = (Z > 0).mean(axis=1)
        out += [f"layer {i} neuron {k}" for k in np.nonzero((pos == 0) | (pos == 1))[0]]
    return out


def _generic_theta(model, X, rng, tries=200):
    """A parameter draw at which every piecewise-linear hidden neuron changes sign over the data."""
    for _ in range(tries):
        theta = _sample_theta(model, rng, 1)[0]
        bad = _one_sided_neurons(model, theta, X)
        if not bad:
            return theta, []
    return theta, bad


def _sample_data(model, rng, n):
    X = rng.standard_normal((model.widths[0], n))
    if getattr(model, "loss", "squared") == "softmax_ce":
        Y = rng.dirichlet(np.ones(model.widths[-1]), n).T  # generic soft labels
    else:
        Y = rng.standard_normal((model.widths[-1], n))
    return X, Y


# ---------------------------------------------------------------------------------------------
# low-degree laws

def _sym_index(P):
    iu = np.triu_indices(P)
    return iu, np.where(iu[0] == iu[1], 1.0, math.sqrt(2.0))


def sym_coords(S):
    """Frobenius-orthonormal coordinates of a symmetric matrix: S_aa, √2 S_ab (a < b)."""
    (r, c), w = _sym_index(S.shape[0])
    return S[r, c] * w


def sym_matrix(coords, P, antisymmetric=False):
    if antisymmetric:
        r, c = np.triu_indices(P, 1)
        S = np.zeros((P, P))
        S[r, c] = coords / math.sqrt(2.0)
        return S - S.T
    (r, c), w = _sym_index(P)
    S = np.zeros((P, P))
    S[r, c] = coords / w
    return S + np.triu(S, 1).T


def antisym_coords(K):
    r, c = np.triu_indices(K.shape[0], 1)
    return K[r, c] * math.sqrt(2.0)


def _sample_rows(model, fields, rng, n_rows):
    """n_rows pairs (θ, g): a fresh generic θ and the gradient of a random combination of the data."""
    theta = _sample_theta(model, rng, n_rows)
    w = rng.standard_normal((n_rows, fields.N)) / math.sqrt(fields.N)
    g = np.empty_like(theta)
    for start in range(0, n_rows, 256):
        sl = slice(start, min(n_rows, start + 256))
        g[sl] = J.weighted_gradient(model, J.Jet(theta[None, sl]), fields.X, fields.Y, w[sl]).value
    return theta, g


def _layer_blocks(model):
    """Per layer i: (n_i, m_i, index map of the augmented W̃_i = [W_i | b_i] into θ, row-major)."""
    w_off, b_off = model.offsets
    out = []
    for i in range(1, model.n_layers + 1):
        n, m0 = model.weight_shape(i)
        m = m0 + model.bias
        idx = np.empty((n, m), dtype=np.int64)
        idx[:, :m0] = w_off[i - 1] + np.arange(n)[:, None] * m0 + np.arange(m0)[None, :]
        if model.bias:
            idx[:, m0] = b_off[i - 1] + np.arange(n)
        out.append((n, m, idx))
    return out


def _pair_coords(M, antisymmetric):
    """Coordinates of the (anti)symmetric part of square M in the orthonormal (anti)symmetric basis."""
    if antisymmetric:
        r, c = np.triu_indices(M.shape[-1], 1)
        return (M[..., r, c] - M[..., c, r]) / math.sqrt(2.0)
    r, c = np.triu_indices(M.shape[-1])
    w = np.where(r == c, 1.0, 1.0 / math.sqrt(2.0))
    return (M[..., r, c] + M[..., c, r]) * w * np.where(r == c, 0.5, 1.0)


def _structured_rows(model, theta, g, structure, antisymmetric):
    """Rows θᵀS_k g (or (K_k θ)ᵀ g) over the basis S_k of the searched forms."""
    P = model.n_params
    if structure == "full":
        if antisymmetric:
            r, c = np.triu_indices(P, 1)
            return (theta[:, c] * g[:, r] - theta[:, r] * g[:, c]) / math.sqrt(2.0)  # (Kθ)ᵀg, K = (E_rc − E_cr)/√2
        r, c = np.triu_indices(P)
        return np.where(r == c, 0.5, 1.0 / math.sqrt(2.0)) * (theta[:, r] * g[:, c] + theta[:, c] * g[:, r])
    parts = []
    for n, m, idx in _layer_blocks(model):
        Wt, Gt = theta[:, idx], g[:, idx]  # (rows, n, m)
        parts.append(_pair_coords(np.einsum("rkc,rlc->rkl", Gt, Wt), antisymmetric))  # A acts on the left
        parts.append(_pair_coords(np.einsum("rkc,rkd->rcd", Wt, Gt), antisymmetric))  # B acts on the right
    return np.hstack(parts)


def _pair_matrix(coords, size, antisymmetric):
    """The (anti)symmetric matrix with the given orthonormal-basis coordinates (inverse of _pair_coords)."""
    r, c = np.triu_indices(size, 1 if antisymmetric else 0)
    E = np.zeros((size, size))
    w = np.full(r.size, 1.0 / math.sqrt(2.0)) if antisymmetric else np.where(r == c, 1.0, 1.0 / math.sqrt(2.0))
    E[r, c] = coords * w
    return E - E.T if antisymmetric else E + np.triu(E, 1).T


def _layer_gram_matrix(model, z, antisymmetric):
    """S (or K) of the layer-Gram form with coordinates z: on each augmented layer W̃ (n × m, row-major
    in θ), A ⊗ I_m + I_n ⊗ Bᵀ — the Hessian (up to a factor 2) of ⟨A, W̃W̃ᵀ⟩ + ⟨B, W̃ᵀW̃⟩, or the
    generator W̃ ↦ AW̃ + W̃B."""
    P = model.n_params
    S = np.zeros((P, P))
    pos = 0
    for n, m, idx in _layer_blocks(model):
        na = n * (n - 1) // 2 if antisymmetric else n * (n + 1) // 2
        nb = m * (m - 1) // 2 if antisymmetric else m * (m + 1) // 2
        A = _pair_matrix(z[pos: pos + na], n, antisymmetric)
        B = _pair_matrix(z[pos + na: pos + na + nb], m, antisymmetric)
        pos += na + nb
        flat = idx.reshape(-1)
        S[np.ix_(flat, flat)] += np.kron(A, np.eye(m)) + np.kron(np.eye(n), B.T)
    return S


@dataclass(frozen=True)
class LawBasis:
    """An orthonormal basis of the laws found of one form (vectors v, or matrices S or K)."""

    form: str  # "linear ⟨v, θ⟩", "quadratic ½θᵀSθ", …
    basis: list
    decision: RankDecision
    structure: str
    n_rows: int
    products: int = 0  # how many of the found (bi)linear-in-θ laws are products of found linear laws

    @property
    def dim(self) -> int:
        return len(self.basis)


def solve_linear(model, fields, rng, min_gap, form="linear ⟨v, θ⟩"):
    P = model.n_params
    _, g = _sample_rows(model, fields, rng, P + 16)
    null, dec = _null_space(g, min_gap)
    return LawBasis(form, [null[:, k] for k in range(null.shape[1])], dec, "full", g.shape[0])


def solve_quadratic(model, fields, rng, min_gap, structure, antisymmetric=False):
    """Symmetric S with θᵀS∇ℓ(θ) = 0 (or, for momentum, antisymmetric K with (Kθ)ᵀ∇ℓ(θ) = 0).

    "full" searches all P(P+1)/2 (or P(P−1)/2) entries: a dense SVD whose cost grows like P⁶.
    "layer_gram" searches the forms Σ_i ⟨A_i, W̃_iW̃_iᵀ⟩ + ⟨B_i, W̃_iᵀW̃_i⟩ of the augmented layers
    W̃_i = [W_i | b_i] (generators W̃_i ↦ A_iW̃_i + W̃_iB_i): the symmetries of dense layers with
    elementwise activations act on neuron indices by such left and right multiplications, and every
    quadratic charge of the catalogue (D_i, r_i, S) is of this form. A quadratic law outside it is not
    found; the count does not depend on it, and the catalogue check says when laws are left unexplained.
    """
    P = model.n_params
    n_full = P * (P - 1) // 2 if antisymmetric else P * (P + 1) // 2
    if structure == "auto":
        structure = "full" if n_full <= FULL_QUADRATIC_MAX_UNKNOWNS else "layer_gram"
    if structure == "full":
        n_unknowns = n_full
    else:
        n_unknowns = sum((n * (n - 1) if antisymmetric else n * (n + 1)) // 2
                         + (m * (m - 1) if antisymmetric else m * (m + 1)) // 2 for n, m, _ in _layer_blocks(model))
    theta, g = _sample_rows(model, fields, rng, n_unknowns + 32)
    rows = _structured_rows(model, theta, g, structure, antisymmetric)
    null, dec = _null_space(rows, min_gap)
    form = "bilinear e^{t/τ}⟨p, Kq⟩, K antisymmetric" if antisymmetric else "quadratic ½θᵀSθ"
    if structure == "full":
        mats = [sym_matrix(null[:, k], P, antisymmetric) for k in range(null.shape[1])]
    else:  # map to matrices; the parametrisation's kernel (A = I, B = −I on a layer) maps to 0
        mats = [_layer_gram_matrix(model, null[:, k], antisymmetric) for k in range(null.shape[1])]
        if mats:
            coords = np.array([antisym_coords(M) if antisymmetric else sym_coords(M) for M in mats]).T
            Q = _nonzero_span(coords)
            mats = [sym_matrix(Q[:, k], P, antisymmetric) for k in range(Q.shape[1])]
    return LawBasis(form, mats, dec, structure, rows.shape[0])


# ---------------------------------------------------------------------------------------------
# the catalogue

@dataclass(frozen=True)
class CatalogueCheck:
    """The model's hand-written charges against what was found.

    groups       per charge group: name, degree, description, components, conserved (measured), residual
    independent  rank of the conserved catalogue charges' gradients at a generic point (functionally
                 independent laws the catalogue provides)
    complete     the catalogue accounts for every law: independent == count and no found linear or
                 quadratic law lies outside its span
    missing      readable descriptions of found low-degree laws outside the catalogue's span
    """

    groups: list
    independent: int
    complete: bool
    missing_linear: list
    missing_quadratic: list
    missing: list
    notes: list


def _param_names(model):
    names = []
    for i in range(1, model.n_layers + 1):
        n_out, n_in = model.weight_shape(i)
        names += [f"W{i}[{a},{b}]" for a in range(n_out) for b in range(n_in)]
        if model.bias:
            names += [f"b{i}[{a}]" for a in range(n_out)]
    return names


def _block_of(name):
    return name.split("[")[0]


def describe_linear(model, v, terms=6):
    names = _param_names(model)
    order = np.argsort(-np.abs(v))
    blocks = sorted({_block_of(names[k]) for k in np.nonzero(np.abs(v) > 1e-8 * np.abs(v).max())[0]})
    shown = " ".join(f"{v[k]:+.3f}·{names[k]}" for k in order[:terms] if abs(v[k]) > 1e-8)
    more = " …" if np.count_nonzero(np.abs(v) > 1e-8 * np.abs(v).max()) > terms else ""
    return f"linear in {', '.join(blocks)}: {shown}{more}"


def describe_quadratic(model, S, terms=6, left="", right=""):
    """Which blocks of θ the form couples (and the share of |S|² on each pair), and its largest terms."""
    names = _param_names(model)
    blocks = [_block_of(n) for n in names]
    uniq = list(dict.fromkeys(blocks))
    ids = np.array([uniq.index(b) for b in blocks])
    total = float((S * S).sum())
    share = {}
    for a in range(len(uniq)):
        for b in range(len(uniq)):
            w = float((S[np.ix_(ids == a, ids == b)] ** 2).sum())
            if w > 1e-12 * total:
                key = tuple(sorted((uniq[a], uniq[b]))) if not left else (uniq[a], uniq[b])
                share[key] = share.get(key, 0.0) + w / total
    pairs = ", ".join(f"{left}{a}×{right}{b} ({100 * w:.0f}%)" for (a, b), w in sorted(share.items(), key=lambda kv: -kv[1]))
    M = S if left else np.triu(S)
    flat = np.argsort(-np.abs(M), axis=None)[:terms]
    shown = []
    for k in flat:
        a, b = np.unravel_index(k, S.shape)
        if abs(M[a, b]) < 1e-8 * np.abs(S).max():
            continue
        coef = M[a, b] if left else (M[a, b] * (0.5 if a == b else 1.0))
        shown.append(f"{coef:+.3f}·{left}{names[a]}·{right}{names[b]}")
    return f"couples {pairs}: {' '.join(shown)} …"


def catalogue_forms(model):
    """The catalogue's gradient-flow charges as (group, component, 'linear', v) or (…, 'quadratic', S),
    S the Hessian of the charge (q = ½θᵀSθ), read off the package's charge kernel by polarisation."""
    from .kernels.driver import ensemble_charges

    P, groups = model.n_params, model.charge_groups
    nq = sum(g.size for g in groups)
    if nq == 0:
        return []
    ints = model.descriptor()
    floats = model.constants(None) if getattr(model, "kind", "") == "mlp" else np.zeros(1)

    def charges(probes):
        return ensemble_charges(int(ints[0]), np.ascontiguousarray(probes), ints, floats, nq)

    comps = []
    for g in groups:
        ks = range(g.offset, g.offset + g.size)
        if len(g.shape) == 2:  # a symmetric matrix charge: its upper triangle
            n = g.shape[0]
            ks = [g.offset + a * n + b for a in range(n) for b in range(a, n)]
        comps += [(g, k) for k in ks]
    cols = np.array([k for _, k in comps])
    diag = charges(np.eye(P))[:, cols]  # q(e_a): v_a, or ½S_aa
    quad = np.array([g.degree == 2 for g, _ in comps])
    mats = np.zeros((int(quad.sum()), P, P))
    qcols = cols[quad]
    for a in range(P):  # S_ab = q(e_a + e_b) − q(e_a) − q(e_b), one row a at a time (memory O(P²) per charge)
        if not quad.any():
            break
        probes = np.eye(P)
        probes[:, a] += 1.0
        qa = charges(probes)[:, qcols]
        mats[:, a, :] = (qa - diag[a, quad][None, :] - diag[:, quad]).T
        mats[:, a, a] = 2.0 * diag[a, quad]
    out, j = [], 0
    for (g, k), is_quad, i in zip(comps, quad, range(len(comps))):
        if is_quad:
            out.append((g, k - g.offset, "quadratic", mats[j]))
            j += 1
        else:
            out.append((g, k - g.offset, "linear", diag[:, i].copy()))
    return out


def catalogue_momentum_forms(model):
    """The catalogue's momentum (isometric) charges J = pᵀKq as (group, component, 'bilinear', K)."""
    groups = model.isometric_groups()
    if not groups:
        return []
    from .kernels.linear_isometric import linear_isometric_charges

    P, ints = model.n_params, model.descriptor()
    nj = sum(g.size for g in groups)
    used = [(g, a * g.shape[0] + b) for g in groups for a in range(g.shape[0]) for b in range(a + 1, g.shape[0])]
    cols = np.array([g.offset - model.n_charges + k for g, k in used], dtype=np.int64)  # within the J block
    Ks = np.zeros((len(used), P, P))
    out = np.zeros(nj)
    theta, mom = np.zeros(P), np.zeros(P)
    for a in range(P):  # J(e_a, e_b) = K_ba: J is bilinear in (θ, p)
        theta[:] = 0.0
        theta[a] = 1.0
        for b in range(P):
            mom[:] = 0.0
            mom[b] = 1.0
            linear_isometric_charges(theta, mom, out, ints)
            Ks[:, b, a] = out[cols]
    return [(g, k, "bilinear", Ks[i]) for i, (g, k) in enumerate(used)]


def linear_products(vectors, antisymmetric=False):
    """Coordinates (columns) of the products of linear laws: sym(v_a v_bᵀ) under gradient flow (the
    law ⟨v_a, θ⟩⟨v_b, θ⟩), v_a v_bᵀ − v_b v_aᵀ under momentum flow (e^{t/τ}(⟨v_a, p⟩⟨v_b, q⟩ − …),
    a function of e^{t/τ}⟨v, p⟩ and ⟨v, q + τp⟩)."""
    V = _nonzero_span(np.asarray(vectors, dtype=float).T).T if len(vectors) else np.zeros((0, 0))
    P = V.shape[1] if V.size else 0
    cols = []
    for i, a in enumerate(V):
        for b in V[i + (1 if antisymmetric else 0):]:
            cols.append(antisym_coords(np.outer(a, b) - np.outer(b, a)) if antisymmetric
                        else sym_coords(np.outer(a, b) + np.outer(b, a)))
    n = P * (P - 1) // 2 if antisymmetric else P * (P + 1) // 2
    return np.array(cols).T if cols else np.zeros((n, 0))


def _products_in(quad, lin, P, antisymmetric):
    """dim(span(found quadratic laws) ∩ span(products of found linear laws))."""
    if not quad.basis or not lin.basis:
        return 0
    coords = antisym_coords if antisymmetric else sym_coords
    F = np.array([coords(S) for S in quad.basis]).T
    G = linear_products(np.array(lin.basis), antisymmetric)
    if G.shape[1] == 0:
        return 0
    return F.shape[1] + _nonzero_span(G).shape[1] - _nonzero_span(np.hstack([F, G])).shape[1]


def _nonzero_span(vectors, zero=1e-8):
    """Orthonormal basis of the span of columns that are images of unit vectors under a map of norm
    O(1): directions with singular value <= ``zero`` are the map's kernel (exact zeros plus round-off)."""
    u, s, _ = np.linalg.svd(vectors, full_matrices=False)
    return u[:, s > zero]


def _missing(found, catalogue_vectors, min_gap):
    """Orthonormal columns spanning the part of span(found) outside span(catalogue)."""
    if found.shape[1] == 0:
        return found
    C = _orth(catalogue_vectors, min_gap) if catalogue_vectors.shape[1] else catalogue_vectors
    R = found - C @ (C.T @ found) if C.shape[1] else found
    u, s, _ = np.linalg.svd(R, full_matrices=False)
    keep = s > 1e-6  # found is orthonormal: a component of size > 1e-6 outside the catalogue is real
    return u[:, keep]


# ---------------------------------------------------------------------------------------------
# the result

@dataclass(frozen=True)
class DiscoveryResult:
    """What ``discover`` found. ``count`` is None when the rank could not be decided (see ``message``).

    ``count`` is dim − the largest rank over the sampled points. For smooth networks every generic point
    gives the same rank; for piecewise-linear ones (ReLU with biases, deeper than two layers) the rank
    can differ between activation regions of θ, each of positive measure: ``counts`` lists them.
    """

    model: dict
    flow: str
    tau: float | None
    n_params: int
    dim: int
    count: int | None
    decided: bool
    message: str
    points: list
    linear: LawBasis
    quadratic: LawBasis
    catalogue: CatalogueCheck
    n_data: int
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def counts(self) -> list:
        return [self.dim - p.decision.rank for p in self.points]

    @property
    def rank(self) -> int:
        return self.dim - self.count if self.count is not None else max(p.decision.rank for p in self.points)

    def summary_row(self) -> dict:
        m = self.model
        name = m["kind"] + (f"/{m['activation']}" if "activation" in m else "") + \
            (f"/{m['loss']}" if m.get("loss", "squared") != "squared" else "") + \
            ("/norm" if m.get("normalised_first_layer") else "") + f" {list(m['widths'])}" + (" +bias" if m["bias"] else "")
        return {"model": name, "flow": self.flow, "P": self.n_params,
                "count": "?" if self.count is None else str(self.count),
                "gap": f"{min(p.decision.gap for p in self.points):.2g}",
                "linear": str(self.linear.dim), "quadratic": f"{self.quadratic.dim} ({self.quadratic.structure}"
                + (f"; {self.quadratic.products} products of linear)" if self.quadratic.products else ")"),
                "catalogue": f"{self.catalogue.independent}",
                "complete": "yes" if self.catalogue.complete else "NO",
                "seconds": f"{self.seconds:.1f}"}

    def __str__(self) -> str:
        lines = [format_table([self]), "", self.message]
        for k, p in enumerate(self.points):
            lines.append(f"  point {k}: rank by bracket depth {list(p.rank_by_depth)}; {p.decision.message}")
        lines.append(f"  {self.linear.form}: {self.linear.dim} ({self.linear.decision.message})")
        lines.append(f"  {self.quadratic.form} [{self.quadratic.structure}]: {self.quadratic.dim} "
                     f"({self.quadratic.decision.message})")
        for g in self.catalogue.groups:
            lines.append(f"  catalogue {g['name']}: {g['components']} components, "
                         f"{'conserved' if g['conserved'] else 'NOT conserved'} (residual {g['residual']:.1e}): "
                         f"{g['description']}")
        for text in self.catalogue.missing:
            lines.append(f"  missing from the catalogue: {text}")
        for text in self.catalogue.notes:
            lines.append(f"  note: {text}")
        return "\n".join(lines)


def format_table(results) -> str:
    rows = [r.summary_row() for r in results]
    heads = {"model": "model", "flow": "flow", "P": "P", "count": "laws", "gap": "min gap",
             "linear": "linear", "quadratic": "quadratic", "catalogue": "catalogue",
             "complete": "complete?", "seconds": "s"}
    widths = {k: max(len(h), *(len(str(r[k])) for r in rows)) for k, h in heads.items()}
    out = ["  ".join(h.ljust(widths[k]) for k, h in heads.items())]
    for r in rows:
        out.append("  ".join(str(r[k]).ljust(widths[k]) for k in heads))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# the front door

def discover(model, data: TrainingData | None = None, *, points: int = 2, seed: int = 0, flow: str = "gradient",
             tau: float = 1.0, n_data: int | None = None, max_depth: int | None = None, quadratic: str = "auto",
             min_gap: float = 1e4, catalogue: bool = True) -> DiscoveryResult:
    """Count and find the conservation laws of ``model`` (a DeepLinear or MLP).

    data       the data points whose per-sample gradient fields generate the dynamics; laws found hold
               for every data set made of these points. None: ``n_data`` generic points (Gaussian inputs,
               Gaussian targets or random soft labels), i.e. laws that hold for every data set.
    points     number of generic parameter points (and velocities, under momentum) at which the Lie
               algebra's dimension is measured; the count is taken where it is largest (see
               ``DiscoveryResult``). With piecewise-linear activations θ is redrawn until every hidden
               neuron changes sign over the data: one that is dead, or linear, on all of it opens extra
               laws that hold only in that region
    flow       "gradient" (θ̇ = −∇L) or "momentum" (τθ̈ + θ̇ = −∇L; laws h(θ, θ̇, t))
    max_depth  deepest bracket tried; the rank must stop growing before it (default 4 for gradient flow,
               5 for momentum flow, whose drift field takes more brackets to fill its algebra)
    quadratic  "auto" (full search up to 1200 unknowns, P ≤ 48, else "layer_gram"), "full" or "layer_gram":
               forms Σ_i ⟨A_i, W̃_iW̃_iᵀ⟩ + ⟨B_i, W̃_iᵀW̃_i⟩ of the augmented layers W̃_i = [W_i | b_i]
    min_gap    the singular-value ratio a rank decision needs; below it the result says undecided
    """
    from .models import DeepLinear

    if not isinstance(model, DeepLinear):
        fail("model", model, "must be a noether_sim model (DeepLinear or mlp.MLP)")
    if flow not in FLOWS:
        fail("flow", flow, f"must be one of {', '.join(FLOWS)}")
    if quadratic not in STRUCTURES:
        fail("quadratic", quadratic, f"must be one of {', '.join(STRUCTURES)}")
    points = positive_int("points", points)
    if max_depth is None:
        max_depth = 4 if flow == "gradient" else 5
    max_depth = positive_int("max_depth", max_depth)
    if max_depth > 6:
        fail("max_depth", max_depth, "must be at most 6 (each depth costs about three times the previous one)")
    tau = positive("tau", tau)
    min_gap = positive("min_gap", min_gap)
    if min_gap <= 1:
        fail("min_gap", min_gap, "must be a ratio > 1 (e.g. 1e4)")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        fail("seed", seed, "must be an integer >= 0")
    started = time.perf_counter()
    P = model.n_params
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED12]))
    if data is None:
        n_data = (P + 8) if n_data is None else positive_int("n_data", n_data)
        X, Y = _sample_data(model, rng, n_data)
    else:
        if not isinstance(data, TrainingData):
            fail("data", data, "must be a noether_sim TrainingData (e.g. noether_sim.data.from_arrays(X, Y)) or None")
        data.check_fits(model)
        if n_data is not None:
            fail("n_data", n_data, "is only used without data (data=None); the data set fixes the points")
        X, Y = data.X, data.Y
    fields = _Fields(model, X, Y, flow, tau)
    stamps = [time.perf_counter()]
    results, notes = [], []
    for _ in range(points):
        theta, one_sided = _generic_theta(model, X, rng)
        if one_sided:
            notes.append(f"no draw of θ found in which every hidden neuron changes sign over the data "
                         f"({', '.join(one_sided)} do not): the count is that of a non-generic region")
        z0 = theta if flow == "gradient" else np.concatenate([theta, rng.standard_normal(P) / math.sqrt(P), [0.0]])
        results.append(lie_rank(fields, z0, rng, max_depth=max_depth, min_gap=min_gap))
    point_ranks = [p.decision.rank for p in results]
    decided = all(p.decision.decided and p.stable for p in results)
    count = fields.dim - max(point_ranks) if decided else None
    if decided and len(set(point_ranks)) == 1:
        message = (f"{count} independent conservation law{'s' if count != 1 else ''} at generic points: "
                   f"dim Lie = {fields.dim - count} of {fields.dim} at each of {points} points")
    elif decided:  # piecewise-linear networks: regions of θ with fewer active patterns hold extra local laws
        message = (f"{count} independent conservation law{'s' if count != 1 else ''} where the Lie algebra is "
                   f"largest; the count varies with θ: {[fields.dim - r for r in point_ranks]} at the "
                   f"{points} points (extra laws hold locally in some activation regions)")
    else:
        bad = [p for p in results if not (p.decision.decided and p.stable)][0]
        message = (bad.decision.message if not bad.decision.decided else
                   f"undecided: the rank still grew at bracket depth {bad.depth} = max_depth "
                   f"(ranks {list(bad.rank_by_depth)}); raise max_depth")
    stamps.append(time.perf_counter())
    lin = solve_linear(model, fields, rng, min_gap,
                       form="linear ⟨v, θ⟩" if flow == "gradient" else
                       "linear: each v gives e^{t/τ}⟨v, p⟩ and ⟨v, q + τp⟩")
    stamps.append(time.perf_counter())
    quad = solve_quadratic(model, fields, rng, min_gap, quadratic, antisymmetric=(flow == "momentum"))
    quad = LawBasis(quad.form, quad.basis, quad.decision, quad.structure, quad.n_rows,
                    _products_in(quad, lin, P, flow == "momentum"))
    stamps.append(time.perf_counter())
    cat = _check_catalogue(model, fields, lin, quad, count, rng, min_gap) if catalogue else \
        CatalogueCheck([], 0, False, [], [], [], ["catalogue not checked"])
    stamps.append(time.perf_counter())
    timings = dict(zip(("lie", "linear", "quadratic", "catalogue"), np.diff(stamps).round(4).tolist()))
    if notes:
        cat = CatalogueCheck(cat.groups, cat.independent, cat.complete, cat.missing_linear, cat.missing_quadratic,
                             cat.missing, cat.notes + notes[:1])
    return DiscoveryResult(model.to_config(), flow, tau if flow == "momentum" else None, P, fields.dim, count,
                           decided, message, results, lin, quad, cat, fields.N, time.perf_counter() - started,
                           {"points": points, "seed": seed, "max_depth": max_depth, "min_gap": min_gap,
                            "quadratic": quadratic, "seconds_by_stage": timings})


def _check_catalogue(model, fields, lin, quad, count, rng, min_gap):
    P = model.n_params
    momentum = fields.flow == "momentum"
    forms = catalogue_forms(model)
    if momentum:  # what momentum runs record as conserved: the isometric charges e^{t/τ}⟨p, Kq⟩
        forms = catalogue_momentum_forms(model)
    theta, g = _sample_rows(model, fields, rng, 24)
    groups, grads, notes = {}, [], []
    th0 = _sample_theta(model, rng, 1)[0]
    p0 = rng.standard_normal(P)
    for grp, comp, kind, M in forms:
        if kind == "linear":
            d = np.broadcast_to(M, theta.shape)
            gz = np.concatenate([np.zeros(P), M, [M @ p0 / fields.tau]]) if momentum else M
        elif kind == "quadratic":
            d = theta @ M.T
            gz = M @ th0
        else:  # ⟨p, Kq⟩ is conserved (times e^{t/τ}) iff Kq is a symmetry generator
            d = theta @ M.T
            gz = np.concatenate([M.T @ p0, M @ th0, [p0 @ M @ th0 / fields.tau]])
        res = float(np.max(np.abs(np.sum(d * g, axis=1)) /
                           np.maximum(np.linalg.norm(d, axis=1) * np.linalg.norm(g, axis=1), 1e-300)))
        entry = groups.setdefault(grp.name, {"name": grp.name, "degree": kind, "description": grp.description,
                                             "components": 0, "residual": 0.0, "forms": []})
        entry["components"] += 1
        entry["residual"] = max(entry["residual"], res)
        entry["forms"].append((M, gz))
    for entry in groups.values():
        entry["conserved"] = entry["residual"] <= CONSERVED_TOL
        if entry["conserved"]:
            grads += [gz for _, gz in entry["forms"]]
        else:
            notes.append(f"{entry['name']} is not conserved by this flow (residual {entry['residual']:.1e}): "
                         f"not counted")
    independent = decide_rank(np.array(grads), min_gap).rank if grads else 0
    kept = [e for e in groups.values() if e["conserved"]]
    cat_lin = np.array([M for e in kept if e["degree"] == "linear" for M, _ in e["forms"]]).reshape(-1, P).T
    anti = momentum
    coords = antisym_coords if anti else sym_coords
    cat_quad = [coords(M) for e in kept if e["degree"] in ("quadratic", "bilinear") for M, _ in e["forms"]]
    # products of linear laws are quadratic (bilinear) laws too, functionally dependent ones: a found
    # linear law missing from the catalogue is reported once, as linear
    products = linear_products(np.vstack([cat_lin.T, np.array(lin.basis).reshape(-1, P)]), anti)
    cat_quad += list(products.T)
    found_lin = np.array(lin.basis).reshape(-1, P).T
    miss_lin = _missing(found_lin, cat_lin, min_gap)
    n_coords = P * (P - 1) // 2 if anti else P * (P + 1) // 2
    found_quad = np.array([coords(S) for S in quad.basis]).reshape(-1, n_coords).T
    miss_quad = _missing(found_quad, np.array(cat_quad).reshape(-1, n_coords).T, min_gap)
    missing_lin = [miss_lin[:, k] for k in range(miss_lin.shape[1])]
    missing_quad = [sym_matrix(miss_quad[:, k], P, anti) for k in range(miss_quad.shape[1])]
    text = [describe_linear(model, v) for v in missing_lin]
    text += [describe_quadratic(model, S, left="p·" if anti else "", right="q·" if anti else "")
             for S in missing_quad]
    if count is not None and independent > count:
        notes.append(f"the conserved catalogue charges give {independent} independent laws but only {count} "
                     f"were counted: the data are not generic enough, or a rank decision is wrong")
    if count is not None and independent < count and not text:
        notes.append(f"{count - independent} law(s) are neither in the catalogue nor of the searched linear/"
                     f"{quad.structure} quadratic forms")
    complete = count is not None and independent == count and not text
    public = [{k: v for k, v in e.items() if k != "forms"} for e in groups.values()]
    return CatalogueCheck(public, independent, complete, missing_lin, missing_quad, text, notes)


# ---------------------------------------------------------------------------------------------
# the figure

def plot_discovery(results, point: int = 0):
    """Singular values of the generated span at one sampled point, one panel per result, with the gap
    that sets the rank (and so the count) marked. Returns a matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    results = [results] if isinstance(results, DiscoveryResult) else list(results)
    if not results:
        fail("results", results, "must hold at least one DiscoveryResult")
    fig = Figure(figsize=(5.2 * len(results), 4.0), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, r in zip(axes, results):
        d = r.points[point].decision
        s = np.maximum(d.singular_values, 1e-20)  # exact zeros (fewer vectors than dimensions) drawn at 1e-20
        idx = np.arange(1, s.size + 1)
        kept = idx <= d.rank
        ax.semilogy(idx[kept], s[kept], "o", ms=3, color="C0", label=f"kept: dim Lie = {d.rank}")
        ax.semilogy(idx[~kept], s[~kept], "x", ms=4, color="C3",
                    label=f"round-off: {s.size - d.rank} conservation law{'s' if s.size - d.rank != 1 else ''}")
        ax.axhline(d.floor, color="0.6", lw=0.8, ls=":", label="round-off floor (ε·rows)")
        ax.axhline(d.tolerance, color="C2", lw=1.0, ls="--", label=f"rank tolerance {d.tolerance:.1e}")
        if d.rank < s.size:
            ax.annotate("", xy=(d.rank + 0.5, s[d.rank]), xytext=(d.rank + 0.5, s[d.rank - 1]),
                        arrowprops=dict(arrowstyle="<->", color="k"))
        p = r.points[point]
        verdict = ("decided" if r.decided else "UNDECIDED: " + ("gap too small" if not d.decided else
                   "rank still growing at max depth" if not p.stable else "points disagree"))
        ax.text(0.03, 0.03, f"gap ×{d.gap:.1e}\nnext largest ×{d.next_gap:.1e}\n"
                            f"rank by bracket depth {list(p.rank_by_depth)}\n{verdict}",
                transform=ax.transAxes, fontsize=8, va="bottom")
        row = r.summary_row()
        ax.set_title(f"{row['model']}, {r.flow} flow\n{r.dim} dims, count = {row['count']}", fontsize=9)
        ax.set_xlabel("index of singular value (descending)")
        ax.set_ylabel("singular value / largest")
        ax.legend(fontsize=7, loc="center right")
    return fig
