"""The empirical neural tangent kernel by an independent NumPy back-propagation: J = ∂r/∂θ of the
residual r = f(x_j) − y_j (stacked over outputs then points), Θ = J Jᵀ, and Θ along a path.

Below ``simulate`` (which records Θ along the watched seeds' paths with it) and ``diagnostics`` (which
re-exports it), so neither imports the other for it.
"""

from __future__ import annotations

import numpy as np


def jacobian(model, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """∂f/∂θ of one row θ at inputs X: shape (n_out · N, n_params), rows ordered (output c, point j).

    Parameters
    ----------
    model : DeepLinear or MLP
        The model.
    theta : numpy.ndarray
        One state, (n_params,).
    X : numpy.ndarray
        Inputs (n_in, N).

    Returns
    -------
    numpy.ndarray
        The Jacobian, (n_out · N, n_params).

    Examples
    --------
    Against central differences of the model's outputs:

    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import jacobian
    >>> X = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])             # 3 points in 2 dimensions
    >>> model = ns.DeepLinear((2, 3, 1))
    >>> theta = np.random.default_rng(0).standard_normal(model.n_params)
    >>> J = jacobian(model, theta, X)
    >>> e = np.zeros(model.n_params); e[4] = 1e-6
    >>> fd = (model.forward(theta + e, X) - model.forward(theta - e, X)).reshape(-1) / 2e-6
    >>> J.shape, bool(np.allclose(J[:, 4], fd, atol=1e-8))
    ((3, 9), True)
    """
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
            if i == 2 and getattr(model, "normalisation", None) is not None:  # through ẑ = (z − [mean])/rms
                W1, b1 = layers[0]
                z = W1 @ X + (b1[:, None] if b1 is not None else 0.0)
                if model.normalisation == "layer":
                    z = z - z.mean(axis=0, keepdims=True)
                s = np.sqrt((z * z).mean(axis=0))  # (N,)
                zh = Z[0][None]
                proj = delta - zh * (delta * zh).mean(axis=1, keepdims=True)
                if model.normalisation == "layer":
                    proj = proj - delta.mean(axis=1, keepdims=True)
                delta = proj / s[None, None, :]
    return J.reshape(n_out * N, model.n_params)


def ntk(model, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Empirical neural tangent kernel Θ = J Jᵀ on the inputs X.

    Parameters
    ----------
    model : DeepLinear or MLP
        The model.
    theta : numpy.ndarray
        One state, (n_params,).
    X : numpy.ndarray
        Inputs (n_in, N).

    Returns
    -------
    numpy.ndarray
        Θ, (n_out · N, n_out · N), symmetric positive semi-definite.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import jacobian, ntk
    >>> X = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])             # 3 points in 2 dimensions
    >>> model = ns.DeepLinear((2, 3, 1))
    >>> theta = np.random.default_rng(0).standard_normal(model.n_params)
    >>> K, J = ntk(model, theta, X), jacobian(model, theta, X)
    >>> K.shape, bool(np.allclose(K, J @ J.T)), bool(np.linalg.eigvalsh(K).min() > -1e-12)
    ((3, 3), True, True)
    """
    J = jacobian(model, theta, X)
    return J @ J.T


def ntk_relative_change(model, theta_start: np.ndarray, theta_end: np.ndarray, X: np.ndarray) -> float:
    """``|Θ(end) − Θ(start)|_F / |Θ(start)|_F``.

    Parameters
    ----------
    model : DeepLinear or MLP
        The model.
    theta_start, theta_end : numpy.ndarray
        Two states, (n_params,) each.
    X : numpy.ndarray
        Inputs (n_in, N).

    Returns
    -------
    float
        The relative change in Frobenius norm.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import ntk_relative_change
    >>> X = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])             # 3 points in 2 dimensions
    >>> model = ns.DeepLinear((2, 3, 1))
    >>> theta = np.random.default_rng(0).standard_normal(model.n_params)
    >>> ntk_relative_change(model, theta, theta, X)
    0.0
    >>> round(ntk_relative_change(model, theta, 2 * theta, X), 12)     # Θ is quadratic in θ here: 4Θ
    3.0
    """
    K0 = ntk(model, theta_start, X)
    return float(np.linalg.norm(ntk(model, theta_end, X) - K0) / np.linalg.norm(K0))


def ntk_along(model, thetas: np.ndarray, X: np.ndarray, Y: np.ndarray, top: int) -> dict:
    """The empirical NTK along one path θ(t_0), θ(t_1), … (rows of ``thetas``), measured against Θ(t_0).

    A non-finite row (a diverged seed, or a save time it did not reach) gives NaN.

    Parameters
    ----------
    model : DeepLinear or MLP
        The model.
    thetas : numpy.ndarray
        The states along the path, (n_states, n_params).
    X : numpy.ndarray
        Inputs (n_in, N).
    Y : numpy.ndarray
        Targets (n_out, N).
    top : int
        How many of the largest eigenvalues to return.

    Returns
    -------
    dict
        ``change`` (n_states,): ``|Θ(t) − Θ(t_0)|_F / |Θ(t_0)|_F``.
        ``eigenvalues`` (n_states, top): the ``top`` largest eigenvalues of Θ(t) (descending; Θ = J Jᵀ,
        no 1/N factor).
        ``alignment`` (n_states,): the uncentred kernel-target alignment ``yᵀΘy / (|Θ|_F |y|²)``
        (Cristianini et al., 2002), y the targets Y stacked like the rows of J (output c, point j): in
        [0, 1] since Θ ⪰ 0; 1 when Θ ∝ yyᵀ, i.e. the kernel sees only the direction of the labels.

    Examples
    --------
    >>> import numpy as np, noether_sim as ns
    >>> from noether_sim.diagnostics import ntk_along
    >>> X = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])             # 3 points in 2 dimensions
    >>> model = ns.DeepLinear((2, 3, 1))
    >>> theta = np.random.default_rng(0).standard_normal(model.n_params)
    >>> out = ntk_along(model, np.stack([theta, 2 * theta, np.full_like(theta, np.nan)]), X,
    ...                 np.array([[1.0, -1.0, 0.5]]), top=2)
    >>> np.round(out["change"], 12).tolist(), out["eigenvalues"].shape     # a NaN state gives NaN
    ([0.0, 3.0, nan], (3, 2))
    >>> bool(0 <= out["alignment"][0] <= 1)
    True
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
