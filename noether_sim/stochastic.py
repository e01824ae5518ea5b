"""Stochastic training (theory.md §6): replaying a seed's minibatches, the expectation laws of the charges
under Langevin noise, and the seed statistics a stochastic run reports.

Expectation law. For a quadratic charge q(θ) = θᵀSθ of a symmetry, Itô's formula under
dθ = −(∇L + λθ)dt + √(2T)dW gives dE[q] = (−2λE[q] + 2T tr S)dt, so

    E[q(t) | q(0)] = e^{−2λt} q(0) + (T c/λ)(1 − e^{−2λt})     (→ q(0) + 2T c t at λ = 0),

with c = tr S = Σ_j q(e_j): evaluated here on the unit vectors, so every model's charges get their law
from the same kernels that compute them (the balance charge D_i gives c = n_{i+1} − n_{i−1} − [bias] on
the diagonal, 0 off it; the rescale charge r gives d_in − α d_out). Linear charges keep
E[q(t)] = e^{−λt} q(0). Minibatch noise has no closed-form expectation law: a run without temperature
reports its seed-mean drift from the flow's law (T = 0 above).
"""

from __future__ import annotations

import json

import numpy as np

from . import _validate as v
from .kernels.stochastic import SAMPLING_EPOCH, SAMPLING_UNIFORM, seed_batch_indices

SAMPLING_CODES = {"uniform": SAMPLING_UNIFORM, "epoch": SAMPLING_EPOCH}


def minibatch_indices(n_points: int, batch_size: int, seed: int, step: int, *, root_seed: int = 0,
                      sampling: str = "uniform") -> np.ndarray:
    """The data points (column indices of the training data) that seed ``seed`` used at step ``step``
    (0-based) of a run with this root seed: the same function the kernels call, so a trajectory can be
    replayed in plain NumPy. ``minibatch_indices_of(ds, seed, step)`` reads the arguments from a result."""
    N = v.positive_int("n_points", n_points)
    B = v.positive_int("batch_size", batch_size)
    if B > N:
        v.fail("batch_size", B, f"must be <= n_points = {N}")
    seed = v.positive_int("seed", seed, minimum=0)
    step = v.positive_int("step", step, minimum=0)
    root_seed = v.positive_int("root_seed", root_seed, minimum=0)
    if not isinstance(sampling, str) or sampling not in SAMPLING_CODES:
        v.fail("sampling", sampling, f"must be one of {', '.join(SAMPLING_CODES)}")
    if B == N:  # the full batch, which the kernels use as is
        return np.arange(N)
    return seed_batch_indices(root_seed, seed, SAMPLING_CODES[sampling], step, B, N)


def minibatch_indices_of(ds, seed: int, step: int) -> np.ndarray:
    """``minibatch_indices`` for a seed of a run (a result of ``simulate``) at step ``step``."""
    cfg = json.loads(ds.attrs["config"])
    if cfg.get("batch_size") is None:
        v.fail("ds", "run", "was not a minibatch run (no batch_size in its configuration)")
    return minibatch_indices(cfg["n_points"], cfg["batch_size"], seed, step, root_seed=cfg["root_seed"],
                             sampling=cfg.get("sampling", "uniform"))


def noise_rates(kind, ints, floats, n_params, nq, ensemble_charges) -> np.ndarray:
    """c_k = Σ_j q_k(e_j) (= tr S_k for q_k = θᵀS_kθ) of every model charge component."""
    out = np.zeros(nq)
    for lo in range(0, n_params, 256):
        hi = min(n_params, lo + 256)
        basis = np.zeros((hi - lo, n_params))
        basis[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
        out += ensemble_charges(kind, basis, ints, floats, nq).sum(axis=0)
    return out


def expectation_factors(times, degree, rate, weight_decay, temperature):
    """(a(t), b(t)) with E[q(t) | q(0)] = a(t) q(0) + b(t) per component: shapes (time, component)."""
    t = np.asarray(times, dtype=float)[:, None]
    degree = np.asarray(degree)[None, :]
    a = np.exp(-degree * weight_decay * t)
    if weight_decay > 0:
        growth = (1.0 - np.exp(-2.0 * weight_decay * t)) / weight_decay
    else:
        growth = 2.0 * t
    b = np.where(degree == 2, temperature * np.asarray(rate)[None, :] * growth, 0.0)
    return a, b


def seed_statistics(watch, q0, ok, a, b):
    """Seed means and standard errors of q(t) and of q(t) − E[q(t) | q(0)] over the ok seeds.

    watch (seed, time, component) the charges, q0 (seed, component), ok (seed,) bool; a, b (time,
    component) from ``expectation_factors``. Returns (mean, se, law, deviation, deviation se, n)."""
    q = watch[ok]
    n = q.shape[0]
    law = a[None] * q0[ok][:, None, :] + b[None]
    dev = q - law

    def mean_se(x):
        if n == 0:
            nan = np.full(x.shape[1:], np.nan)
            return nan, nan
        sd = x.std(axis=0, ddof=1) if n > 1 else np.full(x.shape[1:], np.nan)
        return x.mean(axis=0), sd / np.sqrt(n)

    mean, se = mean_se(q)
    dmean, dse = mean_se(dev)
    return mean, se, law.mean(axis=0) if n else np.full(a.shape, np.nan), dmean, dse, n


__all__ = ["minibatch_indices", "minibatch_indices_of", "noise_rates", "expectation_factors", "seed_statistics"]
