"""Adaptive optimizers as discrete dynamics: one step of Adam, AdamW, RMSProp, sign descent or Lion on
one seed's state row, with the update formulas of PyTorch (``torch.optim``) and optax.

The optimizer is data: its op code and hyperparameters travel in the ``Method`` bundle (``ops[0]``,
``weights = [beta1, beta2, eps]``); the learning rate is the step h (time t = k·h, as for gradient
descent) and λ is the settings' ``weight_decay``. The state row holds θ and the optimizer's per-seed
state, in this order (g = ∇L(θ_k)):

    OPT_ADAM     [θ, m, v, k]  g ← g + λθ; m ← m + (1 − β₁)(g − m); v ← β₂v + (1 − β₂)g²;
                               θ ← θ − (η/(1 − β₁ᵏ)) m / (√v/√(1 − β₂ᵏ) + ε)     (torch.optim.Adam:
                               the bias corrections as PyTorch applies them, ε added after)
    OPT_ADAMW    [θ, m, v, k]  θ ← θ(1 − ηλ) first, then Adam's update without λ in g (torch.optim.AdamW)
    OPT_RMSPROP  [θ, v]        g ← g + λθ; v ← β₂v + (1 − β₂)g²; θ ← θ − η g/(√v + ε)
                               (torch.optim.RMSprop with alpha = β₂, no momentum, not centred)
    OPT_SIGN     [θ]           θ ← θ − η(sign(g) + λθ)   (Lion with β₁ = β₂ = 0)
    OPT_LION     [θ, m]        c = β₁m + (1 − β₁)g; θ ← θ − η(sign(c) + λθ); m ← β₂m + (1 − β₂)g
                               (optax.lion; decoupled weight decay)

k (the step count for the bias correction, stored as a float) is the number of steps taken, so the
first step has k = 1, as in PyTorch. Moments start at zero. sign(0) = 0.
"""

import numpy as np
from numba import njit

from . import FASTMATH
from .models import loss_grad

OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_SIGN, OPT_LION = 0, 1, 2, 3, 4


# error_model="numpy": a division by zero gives inf/nan instead of raising (the kernels raise nothing, and every
# denominator here is positive: ε > 0, β < 1). Python's model checks each division for zero, and that check
# kept LLVM from vectorising the per-parameter loops: Adam's update ran ~9× slower per parameter.
@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def optimizer_step(kind, y, code, eta, beta1, beta2, eps, lam, P, grad, ints, floats, data_a, data_b, work):
    """One step of the optimizer ``code`` in place on y = [θ, state] (module docstring)."""
    loss_grad(kind, y[:P], grad, ints, floats, data_a, data_b, work)
    if code == OPT_ADAM or code == OPT_ADAMW:
        k = y[3 * P] + 1.0
        y[3 * P] = k
        step_size = eta / (1.0 - beta1 ** k)
        inv_bc2_sqrt = 1.0 / np.sqrt(1.0 - beta2 ** k)  # one division per step, not per parameter
        decoupled = code == OPT_ADAMW
        shrink = 1.0 - eta * lam
        for j in range(P):
            g = grad[j] if decoupled else grad[j] + lam * y[j]
            m = y[P + j] + (1.0 - beta1) * (g - y[P + j])
            v = beta2 * y[2 * P + j] + (1.0 - beta2) * g * g
            y[P + j] = m
            y[2 * P + j] = v
            theta = y[j] * shrink if decoupled else y[j]
            y[j] = theta - step_size * (m / (np.sqrt(v) * inv_bc2_sqrt + eps))
    elif code == OPT_RMSPROP:
        for j in range(P):
            g = grad[j] + lam * y[j]
            v = beta2 * y[P + j] + (1.0 - beta2) * g * g
            y[P + j] = v
            y[j] = y[j] - eta * (g / (np.sqrt(v) + eps))
    else:  # sign descent and Lion
        lion = code == OPT_LION
        for j in range(P):
            g = grad[j]
            c = beta1 * y[P + j] + (1.0 - beta1) * g if lion else g
            y[j] = y[j] - eta * (np.sign(c) + lam * y[j])
            if lion:
                y[P + j] = beta2 * y[P + j] + (1.0 - beta2) * g
