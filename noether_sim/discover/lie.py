"""Lie-rank numerics: fields, iterated brackets, and the rank of their span read at a singular-value gap.

Also the generic points (θ, data) the rank is measured at (away from ReLU kinks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _jets as J


EPS = np.finfo(float).eps


@dataclass(frozen=True)
class RankDecision:
    """The rank of a set of vectors, chosen at the largest gap of its singular values.

    Attributes
    ----------
    singular_values : ndarray
        Normalised by the largest, descending; dim − n_vectors trailing zeros are implicit.
    gap : float
        ``σ_rank / σ_{rank+1}``: the ratio that separates kept from discarded values, with values below
        the round-off floor ``floor`` (ε × rows) read as the floor, and ``σ_{dim+1} = floor`` (so full
        rank is a gap too).
    next_gap : float
        The largest other ratio between neighbouring values.
    tolerance : float
        The threshold the decision amounts to: ``√(σ_rank σ_{rank+1})``.
    decided : bool
        gap ≥ min_gap, no other gap ≥ min_gap, and the discarded values are ≤ 1e-8.
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


class _Fields:
    """Per-sample fields of ``model`` on data (X, Y), and how to draw generic members of their span."""

    def __init__(self, model, X, Y, flow, tau, scale=None):
        self.model, self.X, self.Y, self.flow, self.tau = model, X, Y, flow, tau
        self.N = X.shape[1]
        self.P = model.n_params
        self.dim = self.P if flow == "gradient" else 2 * self.P + 1
        # layer-wise learning rates: the fields are M∇ℓ_j, M = diag(scale) (1 per parameter without them)
        self.scale = None if scale is None else np.asarray(scale, dtype=float)

    def __call__(self, z: J.Jet, leaf) -> J.Jet:
        if self.flow == "gradient":
            g = J.weighted_gradient(self.model, z, self.X, self.Y, leaf)
            return g if self.scale is None else g * self.scale
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
        per_row = 2 ** (len(leaves) - 1) * fields.N * _widest(fields.model)
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


def _sample_theta(model, rng, n):
    """Generic parameters: W_i entries N(0, 1/n_{i−1}), biases N(0, 1/4)."""
    theta = np.empty((n, model.n_params))
    w_off, b_off = model.offsets
    for i in range(1, model.n_layers + 1):
        n_out, n_in = model.weight_shape(i)
        theta[:, w_off[i - 1]: w_off[i - 1] + n_out * n_in] = rng.standard_normal((n, n_out * n_in)) / math.sqrt(n_in)
        if b_off[i - 1] >= 0:  # this layer's bias (attention: only a transformer block's b_1)
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


def _widest(model):
    """Entries of the widest activation of one data point (a sequence's T × max width for attention)."""
    if getattr(model, "kind", "") == "attention":
        return model.tokens * max(model.d_model, model.d_k, model.d_v, model.d_out, model.tokens)
    return max(model.widths)


def _sample_data(model, rng, n):
    if getattr(model, "kind", "") == "attention":  # Gaussian token sequences and targets
        return rng.standard_normal((model.n_in, n)), rng.standard_normal((model.n_out, n))
    X = rng.standard_normal((model.widths[0], n))
    if getattr(model, "loss", "squared") == "softmax_ce":
        Y = rng.dirichlet(np.ones(model.widths[-1]), n).T  # generic soft labels
    else:
        Y = rng.standard_normal((model.widths[-1], n))
    return X, Y
