"""Flow diagnostics that need whole states, not just charges (theory.md §2 items 2 and 6).

Kept outside the compiled driver on purpose (simple, and the driver's compile time stays small):

trajectory      states θ(t) at save times, by chaining ``simulate`` from save time to save time
                (each leg starts where the last ended; for adaptive methods the step controller
                restarts at each save time, which only changes which steps are taken)
energy_balance  L(t) + ∫₀ᵗ |θ̇|² ds − L(0) (with weight decay, L + λ|θ|²/2 in place of L), the
                integral integrated by the SAME explicit tableau as θ (the augmented system
                (θ, E) with Ė = |f(θ)|²), so the balance is violated only by O(h^p) discretisation.
                An independent NumPy implementation: the compiled engine records the same energy as a
                charge with ``simulate(..., track_energy=True)``, tested against this one
jacobian / ntk  (ntk.py) J = ∂r/∂θ of the residual r = f(x_j) − y_j (stacked over outputs then points) and the
                empirical NTK Θ = J Jᵀ, by an independent NumPy back-propagation
ntk_along       Θ's relative change, top eigenvalues and alignment with the labels along a path
                (what ``simulate(..., track_ntk=True)`` records for the watched seeds)
ntk_identity    ṙ = J θ̇ (θ̇ = −∇L from the compiled kernel) against −(1/N) Θ r
neuron_norms_from_charge  the boundedness consequence: (r, P) → |w_in|², |w_out|²
"""

from __future__ import annotations

import numpy as np

from ._validate import fail, positive, positive_int
from .init import Given
from .kernels.entries import ensemble_loss_grad
from .methods import EXPLICIT_METHODS, get_any_method
from .ntk import jacobian, ntk, ntk_along, ntk_relative_change  # noqa: F401 (part of this module's API)
from .simulate import simulate


def trajectory(model, data, *, save_times, theta0, **simulate_kwargs) -> np.ndarray:
    """θ at t = 0 and every save time: array (n_seeds, n_saves + 1, n_params).

    Parameters
    ----------
    model : DeepLinear or MLP
        The model trained.
    data : TrainingData
        Its training data.
    save_times : sequence of float
        Increasing times > 0 at which θ is returned.
    theta0 : numpy.ndarray
        Initial parameters, (n_params,) for one seed or (n_seeds, n_params).
    **simulate_kwargs
        Passed on to ``simulate`` (``method``, ``h``, ``dynamics``, ...), except the times, seeds and
        initialisation, which this function sets.

    Returns
    -------
    numpy.ndarray
        (n_seeds, len(save_times) + 1, n_params): θ(0) first, then θ at each save time.

    Raises
    ------
    ConfigError
        ``save_times`` not increasing and > 0, a seed that diverged (named ``trajectory``), or an invalid
        argument of ``simulate``.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import trajectory
    >>> model = ns.DeepLinear((3, 4, 2))
    >>> theta0 = 0.5 * np.random.default_rng(0).standard_normal((2, model.n_params))
    >>> states = trajectory(model, ns.data.synthetic_regression(3, 2, 8), save_times=[0.5, 1.0],
    ...                     theta0=theta0, method="rk4", h=0.05)
    >>> states.shape, bool((states[:, 0] == theta0).all())
    ((2, 3, 20), True)
    """
    times = np.concatenate([[0.0], np.asarray(save_times, float)])
    if np.any(np.diff(times) <= 0):
        fail("save_times", list(save_times), "must be increasing and > 0")
    theta = np.atleast_2d(np.asarray(theta0, float))
    out = [theta]
    for t0, t1 in zip(times[:-1], times[1:]):
        ds = simulate(model, data, t_end=float(t1 - t0), save_times=[float(t1 - t0)], seeds=len(theta),
                      init=Given(theta), **simulate_kwargs)
        theta = ds.theta_final.values
        if not np.all(np.isfinite(theta)):
            fail("trajectory", "diverged", f"a seed failed between t = {t0} and t = {t1}")
        out.append(theta)
    return np.stack(out, axis=1)


def _grad(model, data, theta):
    X, Y = model.kernel_data(data)
    return ensemble_loss_grad(int(model.descriptor()[0]), np.ascontiguousarray(theta), model.descriptor(), model.constants(data), X, Y)


def energy_balance(model, data, theta0, *, h: float, n_steps: int, method: str = "rk4",
                   weight_decay: float = 0.0, record_every: int = 1) -> dict:
    """Integrate gradient flow with a fixed-step explicit tableau, carrying ``E(t) = ∫₀ᵗ |θ̇|² ds``.

    Returns times, objective ``Φ(t) = L + λ|θ|²/2``, dissipated E(t), balance Φ(t) + E(t) − Φ(0)
    (each (n_seeds, n_records)) and the final θ. Along the exact flow ``dΦ/dt = −|θ̇|²``, so balance ≡ 0.

    Parameters
    ----------
    model : DeepLinear or MLP
        The model trained.
    data : TrainingData
        Its training data.
    theta0 : numpy.ndarray
        Initial parameters, (n_params,) or (n_seeds, n_params).
    h : float
        Step size (> 0).
    n_steps : int
        Number of steps (>= 1).
    method : str, optional
        A fixed-step explicit method (e.g. "euler", "rk4", the default).
    weight_decay : float, optional
        λ of the objective L + λ|θ|²/2, default 0.
    record_every : int, optional
        Record every this many steps (and the last step), default 1.

    Returns
    -------
    dict
        ``time`` (n_records,), ``objective``, ``dissipated`` and ``balance`` (n_seeds, n_records), and
        ``theta`` (n_seeds, n_params), the final state.

    Raises
    ------
    ConfigError
        An implicit or adaptive ``method``, or ``h``, ``n_steps`` or ``record_every`` out of range.

    Examples
    --------
    The balance is RK4's discretisation error: halving h divides it by about 2⁴.

    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import energy_balance
    >>> model, data = ns.DeepLinear((3, 4, 2)), ns.data.synthetic_regression(3, 2, 8)
    >>> theta0 = 0.5 * np.random.default_rng(0).standard_normal((2, model.n_params))
    >>> coarse = energy_balance(model, data, theta0, h=0.05, n_steps=20, record_every=5)
    >>> coarse["time"].tolist(), coarse["balance"].shape
    ([0.0, 0.25, 0.5, 0.75, 1.0], (2, 5))
    >>> fine = energy_balance(model, data, theta0, h=0.025, n_steps=40, record_every=10)
    >>> np.round(np.log2(coarse["balance"][:, -1] / fine["balance"][:, -1])).tolist()
    [4.0, 4.0]
    """
    tab = get_any_method(method)
    if method not in EXPLICIT_METHODS or tab.adaptive:
        fail("method", method, "energy_balance uses a fixed step: pick a non-adaptive explicit method")
    h = positive("h", h)
    n_steps = positive_int("n_steps", n_steps)
    record_every = positive_int("record_every", record_every)
    theta = np.array(np.atleast_2d(theta0), dtype=float)
    lam = float(weight_decay)

    def field(th):
        loss, g = _grad(model, data, th)
        return loss + 0.5 * lam * np.sum(th * th, axis=1), -g - lam * th

    phi0, _ = field(theta)
    E = np.zeros(len(theta))
    times, phis, Es = [0.0], [phi0], [E.copy()]
    K = np.empty((tab.stages,) + theta.shape)
    for n in range(1, n_steps + 1):
        for i in range(tab.stages):
            stage = theta + h * np.tensordot(tab.A[i, :i], K[:i], axes=1) if i else theta
            K[i] = field(stage)[1]
        E += h * np.einsum("i,isp->s", tab.b, K * K)
        theta = theta + h * np.tensordot(tab.b, K, axes=1)
        if n % record_every == 0 or n == n_steps:
            times.append(n * h)
            phis.append(field(theta)[0])
            Es.append(E.copy())
    phi, Es = np.array(phis).T, np.array(Es).T
    return {"time": np.array(times), "objective": phi, "dissipated": Es,
            "balance": phi + Es - phi0[:, None], "theta": theta}


def ntk_identity(model, data, theta: np.ndarray) -> dict:
    """Squared loss, no weight decay: ṙ = J θ̇ with θ̇ = −∇L (kernel) against −(1/N) Θ r (NumPy).

    Parameters
    ----------
    model : DeepLinear or MLP
        A model with squared loss.
    data : TrainingData
        The training data (N points).
    theta : numpy.ndarray
        One state, (n_params,).

    Returns
    -------
    dict
        ``r_dot`` (J θ̇, from the compiled gradient), ``predicted`` (−(1/N) Θ r, from NumPy), both
        (n_outputs · N,), and their ``relative_error`` (float).

    Raises
    ------
    ConfigError
        A model whose loss is not squared.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import ntk_identity
    >>> model = ns.DeepLinear((3, 4, 2))
    >>> theta = 0.5 * np.random.default_rng(0).standard_normal(model.n_params)
    >>> out = ntk_identity(model, ns.data.synthetic_regression(3, 2, 8), theta)
    >>> out["r_dot"].shape, bool(out["relative_error"] < 1e-12)
    ((16,), True)
    """
    if getattr(model, "loss", "squared") != "squared":
        fail("model.loss", model.loss, "the NTK identity is stated for squared loss")
    theta = np.asarray(theta, float)
    J = jacobian(model, theta, data.X)
    r = (model.forward(theta, data.X) - data.Y).reshape(-1)
    _, g = _grad(model, data, theta[None])
    r_dot = J @ (-g[0])
    predicted = -(J @ (J.T @ r)) / data.n_points
    return {"r_dot": r_dot, "predicted": predicted,
            "relative_error": float(np.linalg.norm(r_dot - predicted) / np.linalg.norm(predicted))}


def neuron_norms_from_charge(r, P):
    """α = 1, no bias: from ``r = |w_in|² − |w_out|²`` and ``P = |w_out||w_in|``, the pair ``(|w_in|², |w_out|²)``.

    Parameters
    ----------
    r : array_like
        The rescale charges, one per neuron.
    P : array_like
        The products ``|w_out| |w_in|`` (>= 0), the same shape as ``r``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``|w_in|²`` and ``|w_out|²``, each the shape of ``r``.

    Examples
    --------
    >>> from noether_sim.diagnostics import neuron_norms_from_charge
    >>> w_in2, w_out2 = neuron_norms_from_charge([3.0], [2.0])     # |w_in|² = 4, |w_out|² = 1: 4 − 1 = 3, 2·1 = 2
    >>> w_in2.tolist(), w_out2.tolist()
    ([4.0], [1.0])
    """
    r, P = np.asarray(r, float), np.asarray(P, float)
    w_in2 = 0.5 * (r + np.sqrt(r * r + 4.0 * P * P))
    return w_in2, w_in2 - r


def sign_changes(model, states: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per seed, how many hidden pre-activations z_kj changed sign between consecutive states
    (kink crossings of ReLU-type activations, where the flow is only piecewise smooth).

    Parameters
    ----------
    model : MLP
        The network (its ``preactivations`` give z).
    states : numpy.ndarray
        (n_seeds, n_states, n_params), e.g. from ``trajectory``.
    X : numpy.ndarray
        Inputs (d_in, n_points) at which the pre-activations are evaluated.

    Returns
    -------
    numpy.ndarray
        (n_seeds,) integer counts, summed over consecutive pairs of states.

    Examples
    --------
    >>> import numpy as np
    >>> from noether_sim.mlp import MLP
    >>> from noether_sim.diagnostics import sign_changes
    >>> relu = MLP((2, 3, 1), activation="relu")
    >>> theta = np.random.default_rng(1).standard_normal((1, relu.n_params))
    >>> X = np.random.default_rng(2).standard_normal((2, 5))
    >>> sign_changes(relu, np.stack([theta, theta, -theta], axis=1), X).tolist()   # −θ flips every z
    [15]
    """
    out = np.zeros(states.shape[0], np.int64)
    for s in range(states.shape[0]):
        prev = None
        for th in states[s]:
            signs = np.concatenate([np.sign(z).ravel() for z in model.preactivations(th, X)[:-1]])
            if prev is not None:
                out[s] += int(np.sum(signs != prev))
            prev = signs
    return out
