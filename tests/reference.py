"""Independent NumPy oracles for the deep linear model: a forward pass over the data points and the
obvious backward pass (no data moments, no shared code with the kernels)."""

import numpy as np


def layers(model, theta):
    return model.unflatten(np.asarray(theta, dtype=float))


def loss_and_grad(model, data, theta):
    """Squared loss (1/2N)Σ|f(x_j) − y_j|² and its gradient, by back-propagation over the N points."""
    X, Y = data.X, data.Y
    N = X.shape[1]
    acts = [X]
    for W, b in layers(model, theta):
        acts.append(W @ acts[-1] + (b[:, None] if b is not None else 0.0))
    resid = acts[-1] - Y
    loss = 0.5 * np.sum(resid ** 2) / N
    grads = []
    delta = resid / N
    for i in range(model.n_layers, 0, -1):
        W, b = layers(model, theta)[i - 1]
        gW = delta @ acts[i - 1].T
        gb = delta.sum(axis=1) if b is not None else None
        grads.append((gW, gb))
        delta = W.T @ delta
    return loss, model.flatten(grads[::-1])


def balance_matrices(model, theta):
    """D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ − b_ib_iᵀ for i = 1 … L−1."""
    ls = layers(model, theta)
    out = []
    for i in range(1, model.n_layers):
        Wi, bi = ls[i - 1]
        Wn, _ = ls[i]
        D = Wn.T @ Wn - Wi @ Wi.T
        if bi is not None:
            D -= np.outer(bi, bi)
        out.append(D)
    return out


def gradient_flow_rhs(model, data, weight_decay=0.0):
    def rhs(t, theta):
        return -loss_and_grad(model, data, theta)[1] - weight_decay * theta
    return rhs
