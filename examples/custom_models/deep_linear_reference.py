"""The deep linear network 3-4-2 (no biases) written as a user would write a CustomModel: the same
model as ``ns.DeepLinear((3, 4, 2))``, same parameter layout (W_1 row-major, then W_2), so the two
paths can be compared to round-off (tests/test_custom_model.py), and its balance charges written as
the user's quadratic charges.

Run: .venv/bin/python examples/custom_models/deep_linear_reference.py
"""

import numba
import numpy as np

import noether_sim as ns

N0, N1, N2 = 3, 4, 2
P = N1 * N0 + N2 * N1


@numba.njit(cache=True)
def loss_grad(theta, X, Y, grad):
    """½N⁻¹Σ|W_2W_1x − y|² and its gradient; X (3 × N), Y (2 × N)."""
    W1 = theta[:N1 * N0].reshape((N1, N0))
    W2 = theta[N1 * N0:].reshape((N2, N1))
    N = X.shape[1]
    H = W1 @ X
    R = W2 @ H - Y
    grad[N1 * N0:] = (R @ H.T).ravel() / N
    grad[:N1 * N0] = (W2.T @ R @ X.T).ravel() / N
    return 0.5 * np.sum(R * R) / N


@numba.njit(cache=True)
def loss_grad_lanes(theta, X, Y, grad):
    """The same gradient for 8 seeds at once (the lane contract): theta and grad (P, 8), column l one seed.
    Written with the lane index innermost, so each line is one 8-wide vector operation."""
    L = theta.shape[1]
    N = X.shape[1]
    H = np.zeros((N1, N, L))
    for i in range(N1):
        for k in range(N0):
            w = theta[i * N0 + k]
            for n in range(N):
                x = X[k, n]
                for l in range(L):
                    H[i, n, l] += w[l] * x
    R = np.empty((N2, N, L))
    for c in range(N2):
        for n in range(N):
            for l in range(L):
                R[c, n, l] = -Y[c, n]
        for i in range(N1):
            w = theta[N1 * N0 + c * N1 + i]
            for n in range(N):
                for l in range(L):
                    R[c, n, l] += w[l] * H[i, n, l]
    for c in range(N2):
        for i in range(N1):
            acc = np.zeros(L)
            for n in range(N):
                for l in range(L):
                    acc[l] += R[c, n, l] * H[i, n, l]
            for l in range(L):
                grad[N1 * N0 + c * N1 + i, l] = acc[l] / N
    B = np.zeros((N1, N, L))  # W_2ᵀR
    for i in range(N1):
        for c in range(N2):
            w = theta[N1 * N0 + c * N1 + i]
            for n in range(N):
                for l in range(L):
                    B[i, n, l] += w[l] * R[c, n, l]
    for i in range(N1):
        for k in range(N0):
            acc = np.zeros(L)
            for n in range(N):
                x = X[k, n]
                for l in range(L):
                    acc[l] += B[i, n, l] * x
            for l in range(L):
                grad[i * N0 + k, l] = acc[l] / N


def balance_charge(a, b):
    """D[a, b] of D = W_2ᵀW_2 − W_1W_1ᵀ as ½θᵀSθ: S has +1 at (W_2[c, a], W_2[c, b]) and −1 at (W_1[a, j], W_1[b, j]),
    symmetrised."""
    S = np.zeros((P, P))
    for c in range(N2):
        i, j = N1 * N0 + c * N1 + a, N1 * N0 + c * N1 + b
        S[i, j] += 1.0
        S[j, i] += 1.0
    for k in range(N0):
        i, j = a * N0 + k, b * N0 + k
        S[i, j] -= 1.0
        S[j, i] -= 1.0
    return ns.Charge.quadratic(S, f"D_{a}{b}", claim="conserved")


def model(lanes=False):
    """The CustomModel; with ``lanes`` also its lane function (8 seeds per call on the fixed-step paths)."""
    return ns.CustomModel(P, loss_grad, name="deep_linear_3_4_2",
                          charges=[balance_charge(a, b) for a in range(N1) for b in range(a, N1)],
                          loss_grad_lanes=loss_grad_lanes if lanes else None)


if __name__ == "__main__":
    data = ns.data.synthetic_regression(N0, N2, 32, noise=0.1)
    ours = ns.simulate(model(), data, dynamics="gd", h=0.05, n_steps=100, seeds=8)
    builtin = ns.simulate(ns.DeepLinear((N0, N1, N2)), data, dynamics="gd", h=0.05, n_steps=100, seeds=8,
                          init=ns.init.Given(ours.theta_initial.values))
    print("max |θ_custom − θ_built-in| at the end:",
          float(np.max(np.abs(ours.theta_final.values - builtin.theta_final.values))))
    for row in ns.summarise_verdicts(ns.judge(ours))[:3]:
        print(row["charge"], row["verdict"], row["basis"])


def loss_grad_vectorised(Theta, X, Y):
    """The same loss and gradient in plain NumPy, vectorised over seeds: Theta (S, P) → ((S,), (S, P)), for
    ``CustomModel(P, loss_grad_vectorised, vectorised=True)``."""
    S, N = Theta.shape[0], X.shape[1]
    W1 = Theta[:, :N1 * N0].reshape(S, N1, N0)
    W2 = Theta[:, N1 * N0:].reshape(S, N2, N1)
    H = W1 @ X
    R = W2 @ H - Y
    g1 = np.transpose(W2, (0, 2, 1)) @ R @ X.T / N
    g2 = R @ np.transpose(H, (0, 2, 1)) / N
    return 0.5 * np.sum(R * R, axis=(1, 2)) / N, np.concatenate([g1.reshape(S, -1), g2.reshape(S, -1)], axis=1)
