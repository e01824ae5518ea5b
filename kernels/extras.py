"""Quantities recorded beside the model's charges, from one seed's state and its loss gradient.

Data-symmetry charges (theory.md §2 item 5). For each antisymmetric input-space generator K_m of the
training data's symmetry group (``noether_sim.data.augment``), with V = θ̇ on the first layer:

    c_m = ⟨V_1, W_1 K_m⟩ = ⟨W_1ᵀ V_1, K_m⟩

Under gradient flow and descent V = −∇L − λθ: c_m is the restriction on the path, zero wherever the loss
is invariant under W_1 → W_1 e^{sK_m} (for descent, c_m(θ_k) = ⟨θ_{k+1}, Kθ_k⟩/η). Under the momentum
dynamics V = p and c_m is an isometric charge, c_m(t) = e^{−t/τ} c_m(0): exactly for heavy ball
(V = (θ_k − θ_{k−1})/h, c_{k+1} = βc_k) and the conformal symplectic splittings, to the method's order
otherwise (Nesterov, whose gradient is taken at the look-ahead point, to first order in h).

Energy (theory.md §2 item 6). With Φ = L + λ|θ|²/2,

    E = Φ(θ) [+ (τ/2)|p|² under momentum flow] + ∫₀ᵗ |θ̇|² ds,

the integral being the last entry of the state (``cfg.energy_slot``), whose rate |θ̇|² the vector field
supplies (fields.py), so the run's own method integrates it. Along the exact flow E is constant.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .layout import weight_offset, width


@njit(cache=True, fastmath=FASTMATH)
def extra_values(cfg, momentum, y, loss, g, pv, gens, ints, out):
    """Data-symmetry charges then (if tracked) the energy into ``out``. ``g`` = ∇L(θ); ``pv`` = θ̇ (momentum)."""
    P = cfg.n_params
    w1 = weight_offset(ints, 1)
    n0 = width(ints, 0)
    n1 = width(ints, 1)
    lam = cfg.weight_decay
    m = gens.shape[0]
    for k in range(m):
        acc = 0.0
        for a in range(n1):
            row = w1 + a * n0
            for b in range(n0):
                wk = 0.0
                for c in range(n0):
                    wk += y[row + c] * gens[k, c, b]
                j = row + b
                vel = pv[j] if momentum else -g[j] - lam * y[j]
                acc += vel * wk
        out[k] = acc
    if cfg.energy_slot >= 0:
        theta2 = 0.0
        for j in range(P):
            theta2 += y[j] * y[j]
        e = loss + 0.5 * lam * theta2 + y[cfg.energy_slot]
        if momentum:
            p2 = 0.0
            for j in range(P):
                p2 += pv[j] * pv[j]
            e += 0.5 * cfg.tau * p2
        out[m] = e


@njit(cache=True, fastmath=FASTMATH)
def extra_scales(cfg, momentum, y, loss, g, pv, gens, ints, out):
    """The size of the terms that cancel in each extra quantity (round-off reference):
    |V_1|·|W_1|·|K_m| for the data-symmetry charges, the sum of E's (non-negative) terms for the energy."""
    P = cfg.n_params
    w1 = weight_offset(ints, 1)
    size = width(ints, 0) * width(ints, 1)
    lam = cfg.weight_decay
    w2 = 0.0
    v2 = 0.0
    for j in range(w1, w1 + size):
        vel = pv[j] if momentum else -g[j] - lam * y[j]
        w2 += y[j] * y[j]
        v2 += vel * vel
    m = gens.shape[0]
    for k in range(m):
        k2 = 0.0
        for c in range(gens.shape[1]):
            for b in range(gens.shape[2]):
                k2 += gens[k, c, b] * gens[k, c, b]
        out[k] = np.sqrt(w2 * v2 * k2)
    if cfg.energy_slot >= 0:
        theta2 = 0.0
        p2 = 0.0
        for j in range(P):
            theta2 += y[j] * y[j]
            if momentum:
                p2 += pv[j] * pv[j]
        out[m] = abs(loss) + 0.5 * lam * theta2 + abs(y[cfg.energy_slot]) + 0.5 * cfg.tau * p2
