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

The package's parts, one floor each: ``lie`` (fields, brackets, rank decisions, generic points), ``laws``
(linear and quadratic law bases), ``catalogue`` (the hand-written charges against what was found),
``discovery`` (``discover`` and its result), ``plotting`` (``plot_discovery``).
"""

from .catalogue import (CONSERVED_TOL, CatalogueCheck, catalogue_forms, catalogue_momentum_forms, describe_linear,
                        describe_quadratic)
from .discovery import FLOWS, DiscoveryResult, discover, format_table
from .laws import (FULL_QUADRATIC_MAX_UNKNOWNS, STRUCTURES, LawBasis, antisym_coords, linear_products, solve_linear,
                   solve_quadratic, sym_coords, sym_matrix)
from .lie import EPS, PointRank, RankDecision, _Fields, bracket_vectors, decide_rank, lie_rank
from .plotting import plot_discovery

__all__ = ["CONSERVED_TOL", "FLOWS", "FULL_QUADRATIC_MAX_UNKNOWNS", "STRUCTURES", "CatalogueCheck", "DiscoveryResult",
           "LawBasis", "PointRank", "RankDecision", "antisym_coords", "bracket_vectors", "catalogue_forms",
           "catalogue_momentum_forms", "decide_rank", "describe_linear", "describe_quadratic", "discover",
           "format_table", "lie_rank", "linear_products", "plot_discovery", "solve_linear", "solve_quadratic",
           "sym_coords", "sym_matrix"]
