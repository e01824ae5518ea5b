"""A model none of the built-ins covers, written as a user would: a two-layer network with a quadratic
activation, f(x) = Σ_k a_k (w_kᵀx)², squared loss, as a CustomModel with its charges, a gradient-flow
ladder and gradient-descent verdicts.

Its symmetries: scaling neuron k, (w_k, a_k) → (c w_k, a_k / c²), leaves f unchanged, so gradient flow
conserves r_k = |w_k|² − 2a_k² (a quadratic charge ½θᵀSθ with S = 2 on w_k's entries, −4 on a_k). A
control that is *not* conserved: |w_1|² alone.

Run: .venv/bin/python examples/custom_models/quadratic_net.py
"""

import numba
import numpy as np

import noether_sim as ns

D, K = 3, 4                      # input width, hidden neurons
P = K * D + K                    # θ = [w_1 … w_K (rows of W), a_1 … a_K]


@numba.njit(cache=True)
def loss_grad(theta, X, Y, grad):
    """L = (1/2N) Σ_n (f(x_n) − y_n)², f(x) = Σ_k a_k (w_kᵀx)²; X is D × N, Y is 1 × N."""
    W = theta[:K * D].reshape((K, D))
    a = theta[K * D:]
    N = X.shape[1]
    Z = W @ X                                   # K × N pre-activations
    r = a @ (Z * Z) - Y[0]                      # residuals, N
    gW = grad[:K * D].reshape((K, D))
    gW[:, :] = ((2.0 * a[:, None] * Z * r[None, :]) @ X.T) / N
    grad[K * D:] = (Z * Z) @ r / N
    return 0.5 * (r @ r) / N


def rescale_charge(k):
    s = np.zeros(P)
    s[k * D:(k + 1) * D] = 2.0
    s[K * D + k] = -4.0
    return ns.Charge.quadratic(np.diag(s), f"r{k}", description=f"|w_{k}|² − 2a_{k}² (rescaling neuron {k})",
                               claim="conserved")


def control_charge():
    s = np.zeros(P)
    s[:D] = 2.0
    return ns.Charge.quadratic(np.diag(s), "w0_norm", description="|w_0|² alone (no symmetry: control)")


def model():
    return ns.CustomModel(P, loss_grad, name="quadratic_net", init_scale=0.5,
                          charges=[rescale_charge(k) for k in range(K)] + [control_charge()])


def main():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((D, 40))
    Y = (X[0] ** 2 - 0.5 * X[1] * X[2])[None, :]
    data = ns.data.from_arrays(X, Y)
    m = model()
    for r in m.check_symmetries(data):
        print(f"{r['charge']:>8}: {r['message']}")
    gd = ns.simulate(m, data, dynamics="gd", h=0.02, n_steps=300, seeds=8)
    print("\ngradient descent (exact law):")
    for row in ns.summarise_verdicts(ns.judge(gd)):
        print(f"  {row['charge']:>8}  {row['verdict']:<24} basis: {row['basis']}")
    ladder = ns.run_ladder(m, data, method="rk4", step_sizes=[0.02, 0.01, 0.005], t_end=2.0, seeds=8)
    print("\ngradient flow by RK4 (ladder):")
    for row in ns.summarise_verdicts(ns.analyse_ladder(ladder)):
        print(f"  {row['charge']:>8}  {row['verdict']:<24} fitted order {row['fitted_order']:.2f}")


if __name__ == "__main__":
    main()
