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
jacobian / ntk  J = ∂r/∂θ of the residual r = f(x_j) − y_j (stacked over outputs then points) and the
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
from .kernels.driver import ensemble_loss_grad
from .methods import EXPLICIT_METHODS, get_any_method
from .simulate import simulate


def trajectory(model, data, *, save_times, theta0, **simulate_kwargs) -> np.ndarray:
    """θ at t = 0 and every save time: array (n_seeds, n_saves + 1, n_params)."""
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


def jacobian(model, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """∂f/∂θ of one row θ at inputs X: shape (n_out · N, n_params), rows ordered (output c, point j)."""
    if not hasattr(model, "preactivations"):  # a DeepLinear: the MLP with linear activations, same layout
        from .mlp import MLP

        model = MLP(model.widths, bias=model.bias, activation="linear")
    layers = model.unflatten(theta)
    Z = model.preactivations(theta, X)
    L, N = len(layers), X.shape[1]
    H = [X] + [model.act(z) for z in Z[:-1]]
    n_out = model.widths[-1]
    w_off, b_off = model.offsets
    J = np.zeros((n_out, N, model.n_params))
    delta = np.broadcast_to(np.eye(n_out)[:, :, None], (n_out, n_out, N)).copy()  # (c, unit, j)
    for i in range(L, 0, -1):
        W, _ = layers[i - 1]
        n_i, n_prev = W.shape
        Gw = np.einsum("ckj,lj->cjkl", delta, H[i - 1])
        if i == 1 and getattr(model, "normalised_first_layer", False):
            norms = np.linalg.norm(W, axis=1)
            V = W / norms[:, None]
            proj = np.einsum("cjkl,kl->cjk", Gw, V)
            Gw = (Gw - proj[..., None] * V[None, None]) / norms[None, None, :, None]
        J[:, :, w_off[i - 1]: w_off[i - 1] + n_i * n_prev] = Gw.reshape(n_out, N, -1)
        if model.bias:
            J[:, :, b_off[i - 1]: b_off[i - 1] + n_i] = np.transpose(delta, (0, 2, 1))
        if i > 1:
            Wd = model._first_weights(W) if i == 1 else W
            delta = np.einsum("kl,ckj->clj", Wd, delta) * model.act_derivative(Z[i - 2])[None]
    return J.reshape(n_out * N, model.n_params)


def ntk(model, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Empirical neural tangent kernel Θ = J Jᵀ on the inputs X."""
    J = jacobian(model, theta, X)
    return J @ J.T


def ntk_relative_change(model, theta_start: np.ndarray, theta_end: np.ndarray, X: np.ndarray) -> float:
    """``|Θ(end) − Θ(start)|_F / |Θ(start)|_F``."""
    K0 = ntk(model, theta_start, X)
    return float(np.linalg.norm(ntk(model, theta_end, X) - K0) / np.linalg.norm(K0))


def ntk_along(model, thetas: np.ndarray, X: np.ndarray, Y: np.ndarray, top: int) -> dict:
    """The empirical NTK along one path θ(t_0), θ(t_1), … (rows of ``thetas``), measured against Θ(t_0):

    change      |Θ(t) − Θ(t_0)|_F / |Θ(t_0)|_F
    eigenvalues the ``top`` largest eigenvalues of Θ(t) (descending; Θ = J Jᵀ, no 1/N factor)
    alignment   uncentred kernel-target alignment yᵀΘy / (|Θ|_F |y|²) (Cristianini et al., 2002), y the
                targets Y stacked like the rows of J (output c, point j): in [0, 1] since Θ ⪰ 0; 1 when
                Θ ∝ yyᵀ, i.e. the kernel sees only the direction of the labels
    A non-finite row (a diverged seed, or a save time it did not reach) gives NaN.
    """
    n = len(thetas)
    change, align = np.full(n, np.nan), np.full(n, np.nan)
    eig = np.full((n, top), np.nan)
    y = np.asarray(Y, float).reshape(-1)
    K0 = None
    for i, th in enumerate(thetas):
        if not np.all(np.isfinite(th)):
            continue
        K = ntk(model, th, X)
        if K0 is None and i == 0:
            K0 = K
        norm = np.linalg.norm(K)
        if K0 is not None:
            change[i] = np.linalg.norm(K - K0) / np.linalg.norm(K0)
        eig[i] = np.linalg.eigvalsh(K)[::-1][:top]
        align[i] = (y @ K @ y) / (norm * (y @ y))
    return {"change": change, "eigenvalues": eig, "alignment": align}


def ntk_identity(model, data, theta: np.ndarray) -> dict:
    """Squared loss, no weight decay: ṙ = J θ̇ with θ̇ = −∇L (kernel) against −(1/N) Θ r (NumPy)."""
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
    """α = 1, no bias: from ``r = |w_in|² − |w_out|²`` and ``P = |w_out||w_in|``, the pair ``(|w_in|², |w_out|²)``."""
    r, P = np.asarray(r, float), np.asarray(P, float)
    w_in2 = 0.5 * (r + np.sqrt(r * r + 4.0 * P * P))
    return w_in2, w_in2 - r


def sign_changes(model, states: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per seed, how many hidden pre-activations z_kj changed sign between consecutive states
    (kink crossings of ReLU-type activations, where the flow is only piecewise smooth)."""
    out = np.zeros(states.shape[0], np.int64)
    for s in range(states.shape[0]):
        prev = None
        for th in states[s]:
            signs = np.concatenate([np.sign(z).ravel() for z in model.preactivations(th, X)[:-1]])
            if prev is not None:
                out[s] += int(np.sum(signs != prev))
            prev = signs
    return out
