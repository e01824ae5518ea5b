"""Bases of the low-degree laws: linear ⟨v, θ⟩ and quadratic ½θᵀSθ conserved quantities, solved for as
null spaces of linear conditions over sampled θ and data (the full symmetric S, or layer-Gram forms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _jets as J
from .lie import RankDecision, _null_space, _sample_theta


STRUCTURES = ("auto", "full", "layer_gram")


FULL_QUADRATIC_MAX_UNKNOWNS = 1200  # P ≤ 48: a dense SVD of the full symmetric system (~(1.2k)³ flops)


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
    if getattr(fields, "scale", None) is not None:  # layer-wise rates: the field M∇ℓ
        g *= fields.scale
    return theta, g


def _layer_blocks(model):
    """Per layer i: (n_i, m_i, index map of the augmented W̃_i = [W_i | b_i] into θ, row-major)."""
    w_off, b_off = model.offsets
    out = []
    for i in range(1, model.n_layers + 1):
        n, m0 = model.weight_shape(i)
        has_bias = b_off[i - 1] >= 0  # attention: only a transformer block's b_1
        m = m0 + has_bias
        idx = np.empty((n, m), dtype=np.int64)
        idx[:, :m0] = w_off[i - 1] + np.arange(n)[:, None] * m0 + np.arange(m0)[None, :]
        if has_bias:
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
