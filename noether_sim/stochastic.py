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
    replayed in plain NumPy. ``minibatch_indices_of(ds, seed, step)`` reads the arguments from a result.

    Parameters
    ----------
    n_points : int
        Number of training points N (>= 1).
    batch_size : int
        Points per step B, 1 <= B <= N; B = N is the full batch.
    seed : int
        The seed id (>= 0) whose batch is wanted.
    step : int
        The step, counted from 0.
    root_seed : int, optional
        The run's root seed (>= 0), default 0.
    sampling : {"uniform", "epoch"}, optional
        "uniform": each step draws B distinct points afresh; "epoch": the points are visited in a
        shuffled order, B at a time.

    Returns
    -------
    numpy.ndarray
        The B column indices of the points used, integers in [0, N).

    Raises
    ------
    ConfigError
        An argument out of its range, B > N, or an unknown ``sampling``.

    Examples
    --------
    >>> import noether_sim as ns
    >>> idx = ns.minibatch_indices(10, 3, seed=0, step=0)
    >>> len(idx), len(set(idx.tolist())), bool(((idx >= 0) & (idx < 10)).all())
    (3, 3, True)
    >>> ns.minibatch_indices(4, 4, seed=5, step=7).tolist()     # the full batch
    [0, 1, 2, 3]
    """
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
    """``minibatch_indices`` for a seed of a run (a result of ``simulate``) at step ``step``.

    Parameters
    ----------
    ds : xarray.Dataset
        A result of ``simulate`` run with a ``batch_size``: its configuration gives the number of points,
        the batch size, the root seed and the sampling.
    seed : int
        The seed id (>= 0).
    step : int
        The step, counted from 0.

    Returns
    -------
    numpy.ndarray
        The column indices of the training points that seed used at that step.

    Raises
    ------
    ConfigError
        ``ds`` is not a minibatch run, or ``seed`` / ``step`` is out of range.

    Examples
    --------
    >>> import noether_sim as ns
    >>> ds = ns.simulate(ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 10), dynamics="gd",
    ...                  batch_size=3, h=0.05, n_steps=4, seeds=2)
    >>> idx = ns.minibatch_indices_of(ds, 1, 2)
    >>> bool((idx == ns.minibatch_indices(10, 3, seed=1, step=2)).all())    # root seed 0, uniform sampling
    True
    """
    cfg = json.loads(ds.attrs["config"])
    if cfg.get("batch_size") is None:
        v.fail("ds", "run", "was not a minibatch run (no batch_size in its configuration)")
    return minibatch_indices(cfg["n_points"], cfg["batch_size"], seed, step, root_seed=cfg["root_seed"],
                             sampling=cfg.get("sampling", "uniform"))


def batch_factor(n_points: int, batch_size: int) -> float:
    """c_B of E[G_BᵀG_B] = ḠᵀḠ + c_B Σ for B distinct points of N: (N − B)/(B(N − 1)) (theory.md §6).
    Epoch sampling has the same c_B: each step's batch is, marginally, a uniform B-subset."""
    return (n_points - batch_size) / (batch_size * (n_points - 1)) if n_points > 1 else 0.0


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




# ---- ladders: coupled rungs and verdicts in expectation ----

CONSERVED_FLOW, CONSERVED_EXPECTATION = "conserved by the flow", "conserved in expectation"
BROKEN_NOISE, BROKEN_FLOW, INCONCLUSIVE = "broken by the noise", "broken by the flow", "inconclusive"
Z_FACTOR = 5.0  # a mean differs from a value when it stands more than this many uncertainties from it
RESOLUTION = 1e-6  # uncertainty relative to the charge scale below which "conserved" is decidable anyway


def rung_options(kwargs: dict, step_sizes) -> tuple[dict, list[dict]]:
    """(the ladder's options without ``coupled``, each rung's extra options). A Langevin ladder, overdamped
    or underdamped (momentum with a temperature), is coupled unless ``coupled=False``: rung h draws each
    step's noise from the finest rung's h/h_min draws over the same interval (multilevel Monte Carlo):
    their normalised sum (overdamped), or their normalised OU-weighted sum for each exact
    Ornstein–Uhlenbeck sub-step (underdamped; kernels/stochastic.ou_noise), so rungs differ by
    discretisation, not by independent noise. Coupling needs every h/h_min to be a whole number."""
    kwargs = dict(kwargs)
    coupled = kwargs.pop("coupled", None)
    if coupled is not None and not isinstance(coupled, (bool, np.bool_)):
        v.fail("coupled", coupled, "must be True or False")
    langevin = kwargs.get("dynamics") == "langevin" or (kwargs.get("dynamics") == "momentum"
                                                        and kwargs.get("temperature") is not None)
    if coupled and not langevin:
        v.fail("coupled", coupled, "coupled rungs share Langevin noise; only dynamics='langevin' and "
                                   "dynamics='momentum' with a temperature have it")
    if not langevin or coupled is False:
        return kwargs, [{} for _ in step_sizes]
    if kwargs.get("noise_substeps") is not None:
        v.fail("noise_substeps", kwargs["noise_substeps"],
               "a coupled ladder sets it per rung (coupled=False to set it)")
    hs = np.asarray(step_sizes, dtype=float)
    ratios = hs / hs.min()
    whole = np.round(ratios)
    if np.any(np.abs(ratios - whole) > 1e-9 * ratios):
        v.fail("step_sizes", list(hs), "a coupled Langevin ladder needs every h / h_min to be a whole number "
                                       "(or coupled=False)")
    return kwargs, [{"noise_substeps": int(r)} for r in whole]


def is_stochastic_ladder(ladder) -> bool:
    return bool(ladder.attrs.get("stochastic", 0))


def analyse_stochastic_ladder(ladder, order: int | None = None):
    """Verdicts in expectation for a ladder of stochastic runs (theory.md §6), per charge group.

    Per seed and component, the drift of the final charge from the flow's law, Δ = q(T) − law_factor·q(0),
    is extrapolated to h → 0 (Talay–Tubaro: E[Δ_h] = E[Δ] + C h^p + …, p the weak order, 1 for
    Euler–Maruyama and for SGD's O(η) drift) by Richardson on each seed's rungs, so the seed mean of the
    extrapolated values carries its own Monte-Carlo standard error, correlation between coupled rungs
    included. Its uncertainty u per component combines that error with the extrapolation's own (the
    change from the next-finest pair). The expectation law's drift L = E[q(T) | q(0)] − law_factor·q(0)
    (zero without temperature) is compared with the extrapolated mean m*:

        T > 0   m* within 5u of L and L nonzero beyond 5u: "broken by the noise";
                m* within 5u of L = 0 (exactly, by the law): "conserved in expectation";
                m* more than 5u from L: "broken by the flow"; otherwise "inconclusive". Where no law is
                known (the model's charges under underdamped Langevin, which momentum flow already breaks):
                "broken by the flow" when m* stands beyond 5u of 0, else "inconclusive"
        T = 0   (SGD) the drift is judged seed by seed, as it would be without noise: a minibatch
                trajectory stays within O(√η) of its flow, so each seed's extrapolated drift d*_s
                (Frobenius) converges to that of its flow. A seed is broken when d*_s > 5 e_s (e_s the
                change from the next-finest pair), conserved when d*_s ≤ 5 e_s and e_s is below a fifth
                of its coarsest drift (or 1e-6 × scale). The charge gets the verdict that at least 90% of
                the seeds give ("broken by the flow" also when m* stands beyond 5u of 0), else
                "inconclusive".
    (a component "within 5u" means every component of the group is).
    """
    import xarray as xr

    ladder = ladder.sortby("h", ascending=False)
    hs = ladder.h.values
    T_temp = float(ladder.attrs.get("temperature", 0.0))
    p = int(order if order is not None else ladder.attrs.get("method_order", 1))
    ok = np.all(ladder.status.transpose("h", "seed").values == 0, axis=0)
    S = int(ok.sum())
    q = ladder.charge_final.transpose("h", "seed", "component").values[:, ok]  # (m, S, nc)
    q0 = ladder.charge_initial.isel(h=-1).transpose("seed", "component").values[ok]
    flow = ladder.law_factor.isel(h=-1).values if "h" in ladder.law_factor.dims else ladder.law_factor.values
    drift = q - (flow * q0)[None]
    r = hs[:-1] / hs[1:]
    star = drift[1:] + (drift[1:] - drift[:-1]) / (r[:, None, None] ** p - 1.0)  # (m−1, S, nc)

    def mean_se(x):
        return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(max(S, 1))

    m_star, se_star = mean_se(star[-1])
    ext_move = np.abs(mean_se(star[-1] - star[-2])[0]) if len(hs) >= 3 else np.zeros_like(m_star)
    unc = np.sqrt(se_star ** 2 + ext_move ** 2)
    m_fine, se_fine = mean_se(drift[-1])
    law = (ladder.expectation_law.isel(h=-1, time=-1).values - (flow * q0).mean(axis=0)) if T_temp > 0 \
        else np.zeros_like(m_star)
    law_known = np.isfinite(law)  # underdamped Langevin: the model's charges have no closed-form law
    law = np.where(law_known, law, 0.0)
    scale = ladder.scale.isel(h=-1, time=-1).values[ok].mean(axis=0) if S else np.full(ladder.sizes["charge"], np.nan)

    names = list(ladder.charge.values)
    verdicts, rows = [], {k: [] for k in ("extrapolated_mean_drift", "expected_drift", "uncertainty",
                                          "finest_mean_drift", "finest_se", "z_from_law", "z_from_zero")}
    tiny = np.finfo(float).tiny
    for k, name in enumerate(names):
        mask = ladder.component_charge.values == name
        if not mask.any() or S < 2 or not np.all(np.isfinite(m_star[mask])):
            verdicts.append(INCONCLUSIVE if S >= 2 else "no seed to judge")
            for key in rows:
                rows[key].append(np.nan)
            continue
        u = np.maximum(unc[mask], tiny)
        z_law = np.max(np.abs(m_star[mask] - law[mask]) / u)
        z_zero = np.max(np.abs(m_star[mask]) / u)
        law_nonzero = np.max(np.abs(law[mask]) / u) > Z_FACTOR
        if T_temp > 0 and not np.all(law_known[mask]):
            # no expectation law to compare with: only a drift far from zero can be judged
            verdict = BROKEN_FLOW if z_zero > Z_FACTOR else INCONCLUSIVE
        elif T_temp > 0:
            if z_law <= Z_FACTOR:
                verdict = BROKEN_NOISE if law_nonzero else (CONSERVED_EXPECTATION if np.all(law[mask] == 0.0)
                                                            else INCONCLUSIVE)
            else:
                verdict = BROKEN_FLOW
        else:
            d_seed = np.sqrt(np.sum(star[-1][:, mask] ** 2, axis=-1))
            e_seed = np.sqrt(np.sum((star[-1] - star[-2])[:, mask] ** 2, axis=-1)) if len(hs) >= 3 else d_seed
            coarse = np.sqrt(np.sum(drift[0][:, mask] ** 2, axis=-1))
            broken = d_seed > Z_FACTOR * e_seed
            kept = ~broken & ((e_seed < coarse / Z_FACTOR) | (e_seed <= RESOLUTION * max(scale[k], tiny)))
            if z_zero > Z_FACTOR or broken.mean() >= 0.9:
                verdict = BROKEN_FLOW
            else:
                verdict = CONSERVED_FLOW if kept.mean() >= 0.9 else INCONCLUSIVE
        verdicts.append(verdict)
        rows["extrapolated_mean_drift"].append(float(np.sqrt(np.sum(m_star[mask] ** 2))))
        rows["expected_drift"].append(float(np.sqrt(np.sum(law[mask] ** 2))))
        rows["uncertainty"].append(float(np.sqrt(np.sum(unc[mask] ** 2))))
        rows["finest_mean_drift"].append(float(np.sqrt(np.sum(m_fine[mask] ** 2))))
        rows["finest_se"].append(float(np.sqrt(np.sum(se_fine[mask] ** 2))))
        rows["z_from_law"].append(float(z_law))
        rows["z_from_zero"].append(float(z_zero))
    return xr.Dataset(
        {
            **{key: ("charge", np.asarray(val, dtype=float)) for key, val in rows.items()},
            "verdict": ("charge", np.asarray(verdicts, dtype=str)),
            "component_extrapolated": ("component", m_star),
            "component_uncertainty": ("component", unc),
            "component_expected": ("component", law),
            "component_charge": ("component", ladder.component_charge.values),
            "included": ("seed", ok),
        },
        coords={"charge": names, "seed": ladder.seed.values},
        attrs={"method_order": p, "temperature": T_temp, "n_seeds_judged": S,
               "step_sizes": json.dumps([float(h) for h in hs]), "stochastic": 1,
               "t_end": float(ladder.time.values[-1])},
    )


def per_seed_view(analysis):
    """The per-charge verdicts of ``analyse_stochastic_ladder`` laid out like ``analyse_ladder``'s (seed,
    charge) (the study store's layout): every seed shows its charge's ensemble verdict."""
    import xarray as xr

    S = analysis.sizes["seed"]

    def wide(x):
        return (("seed", "charge"), np.broadcast_to(np.asarray(x)[None, :], (S, len(x))).copy())

    return xr.Dataset({"fitted_order": wide(np.full(analysis.sizes["charge"], np.nan)),
                       "extrapolated_drift": wide(analysis.extrapolated_mean_drift.values),
                       "uncertainty": wide(analysis.uncertainty.values),
                       "verdict": wide(analysis.verdict.values), "included": analysis.included},
                      coords={"seed": analysis.seed.values, "charge": analysis.charge.values}, attrs=analysis.attrs)


def summarise_stochastic(analysis) -> list[dict]:
    """One row per charge of ``analyse_stochastic_ladder``'s result."""
    rows = []
    for k, name in enumerate(analysis.charge.values):
        rows.append({"charge": str(name), "verdict": str(analysis.verdict.values[k]),
                     **{var: float(analysis[var].values[k]) for var in
                        ("extrapolated_mean_drift", "expected_drift", "uncertainty", "finest_mean_drift",
                         "finest_se", "z_from_law", "z_from_zero")},
                     "seeds_judged": int(analysis.attrs["n_seeds_judged"]),
                     "seeds_excluded": int((~analysis.included.values).sum())})
    return rows


__all__ = ["minibatch_indices", "minibatch_indices_of", "noise_rates", "expectation_factors", "seed_statistics",
           "rung_options", "analyse_stochastic_ladder", "summarise_stochastic"]
