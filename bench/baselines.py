"""Baselines for the ensemble engine: the same RK4 on the same problem, written as a researcher would.

Every baseline integrates gradient flow θ̇ = −∇L(θ) of a deep linear network (no biases) with
classic RK4 from the same initial rows, records the loss and the drift |D_i(t) − D_i(0)|_F of
every balance charge D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ every ``record_every`` steps, and returns

    {"theta": (S, P) final rows in simulate()'s layout, "loss": (S, n_saves), "drift": (S, n_saves, L − 1)}

so it can be compared with ``simulate()`` entry by entry.

(a) what a researcher would write instead: a forward pass over the N data points and its gradient
    by autodiff or the obvious backward pass
      numpy_backprop   batched NumPy, explicit backprop over the N points
      torch_autograd   PyTorch, batched matmul + autograd (float64, torch.set_num_threads(2))
      jax_autodiff     JAX, jit + vmap + lax.scan, value_and_grad (float64 via jax_enable_x64)
(c) same algorithm as ours (the data only through Σxx and Σyx), gradient by autodiff:
      jax_moments      JAX, jit + vmap(value_and_grad) + lax.scan
      torch_moments    PyTorch, batched @ over the seeds, torch.autograd
    These are the honest same-algorithm baselines; (a) stays as the 'what most people write' row.
(b) numpy_moments    batched NumPy running OUR algorithm: the data only through Σxx = XXᵀ/N and
    Σyx = YXᵀ/N, the gradient by back-propagating E = ÃΣxx − Σyx through the matrix product
    (kernels/linear.py), so the kernel's engineering is measured apart from the algebraic shortcut.

The NumPy baselines keep the ensemble as one (S, P) array (each W_i a strided view), so every RK
combination is a single vectorised operation: they are the best plain NumPy we could write, not a
straw man.
"""

from __future__ import annotations

import numpy as np

from .problem import RK4_B, RK4_STAGE_A


# ---------------------------------------------------------------- layout helpers

def _offsets(widths):
    off, pos = [], 0
    for i in range(1, len(widths)):
        off.append(pos)
        pos += widths[i] * widths[i - 1]
    return off, pos


def weight_views(theta, widths):
    """[W_1 … W_L] as (S, n_i, n_{i−1}) views of the flat (S, P) ensemble."""
    off, _ = _offsets(widths)
    S = theta.shape[0]
    return [theta[:, o: o + widths[i + 1] * widths[i]].reshape(S, widths[i + 1], widths[i])
            for i, o in enumerate(off)]


def balance_charges_numpy(Ws):
    """D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ for every hidden layer, each (S, n_i, n_i)."""
    return [Ws[i + 1].transpose(0, 2, 1) @ Ws[i + 1] - Ws[i] @ Ws[i].transpose(0, 2, 1)
            for i in range(len(Ws) - 1)]


# ---------------------------------------------------------------- gradients (NumPy)

def moments_loss_grad(widths, data):
    """Baseline (b): our algorithm in batched NumPy. Returns loss_grad(theta) -> (loss (S,), grad (S, P))."""
    sxx, syx = data.moments(augmented=False)
    syy = data.syy
    L = len(widths) - 1

    def loss_grad(theta, grad):
        Ws = weight_views(theta, widths)
        Gs = weight_views(grad, widths)
        # forward: M_1 = W_1, M_i = W_i M_{i−1}; Ã = M_L
        Ms = [Ws[0]]
        for i in range(1, L):
            Ms.append(Ws[i] @ Ms[-1])
        A = Ms[-1]
        T = A @ sxx
        loss = 0.5 * syy + np.einsum("srk,srk->s", A, 0.5 * T - syx)
        delta = T - syx  # E = dL/dÃ
        for i in range(L - 1, 0, -1):  # G_i = Δ_i M_{i−1}ᵀ, Δ_{i−1} = W_iᵀ Δ_i
            np.matmul(delta, Ms[i - 1].transpose(0, 2, 1), out=Gs[i])
            delta = Ws[i].transpose(0, 2, 1) @ delta
        Gs[0][...] = delta
        return loss

    return loss_grad


def backprop_loss_grad(widths, data):
    """Baseline (a), NumPy: forward over the N points, explicit backprop, L = |f(X) − Y|²/(2N)."""
    X, Y = data.X, data.Y
    N = X.shape[1]
    L = len(widths) - 1

    def loss_grad(theta, grad):
        Ws = weight_views(theta, widths)
        Gs = weight_views(grad, widths)
        acts = [X]  # H_0 = X (shared by all seeds), H_i = W_i H_{i−1}
        for W in Ws:
            acts.append(W @ acts[-1])
        R = acts[-1] - Y
        loss = np.einsum("sij,sij->s", R, R) / (2 * N)
        delta = R / N
        for i in range(L - 1, -1, -1):
            if i == 0:
                np.matmul(delta, X.T, out=Gs[0])
            else:
                np.matmul(delta, acts[i].transpose(0, 2, 1), out=Gs[i])
                delta = Ws[i].transpose(0, 2, 1) @ delta
        return loss

    return loss_grad


def integrate_numpy(theta0, widths, loss_grad, h, n_steps, record_every):
    """Classic RK4 on the flat (S, P) ensemble, recording loss and charge drift."""
    if n_steps % record_every:
        raise ValueError("n_steps must be a multiple of record_every")
    theta = np.array(theta0, dtype=np.float64, order="C")
    S, P = theta.shape
    n_saves = n_steps // record_every + 1
    loss = np.empty((S, n_saves))
    drift = np.empty((S, n_saves, len(widths) - 2))
    K = np.empty((4, S, P))
    stage = np.empty((S, P))
    q0 = balance_charges_numpy(weight_views(theta, widths))

    def record(js):
        loss[:, js] = loss_grad(theta, stage)  # the gradient lands in scratch and is discarded
        for i, D in enumerate(balance_charges_numpy(weight_views(theta, widths))):
            drift[:, js, i] = np.sqrt(np.einsum("sab,sab->s", D - q0[i], D - q0[i]))

    record(0)
    for step in range(1, n_steps + 1):
        loss_grad(theta, K[0])
        for i, a in enumerate(RK4_STAGE_A, start=1):
            np.multiply(K[i - 1], -h * a, out=stage)  # f = −∇L
            stage += theta
            loss_grad(stage, K[i])
        for i, b in enumerate(RK4_B):
            theta -= (h * b) * K[i]
        if step % record_every == 0:
            record(step // record_every)
    return {"theta": theta, "loss": loss, "drift": drift}


def run_numpy_moments(problem, theta0):
    return integrate_numpy(theta0, problem.widths, moments_loss_grad(problem.widths, problem.data),
                           problem.h, problem.n_steps, problem.record_every)


def run_numpy_backprop(problem, theta0):
    return integrate_numpy(theta0, problem.widths, backprop_loss_grad(problem.widths, problem.data),
                           problem.h, problem.n_steps, problem.record_every)


# ---------------------------------------------------------------- PyTorch (a)

def run_torch_autograd(problem, theta0, threads: int = 2, moments: bool = False):
    """Batched matmul, torch.autograd for the gradient, float64.

    moments=False: forward over the N points (what most people write). moments=True: the same
    algorithm as ours, the data only through Σxx and Σyx: L = ½syy + ⟨Ã, ½ÃΣxx − Σyx⟩ with
    Ã = W_L … W_1 (batched @ over the seeds), autograd through it."""
    import torch

    torch.set_num_threads(threads)
    widths, h = problem.widths, problem.h
    data = problem.data
    X = torch.from_numpy(data.X)
    Y = torch.from_numpy(data.Y)
    N = X.shape[1]
    sxx_np, syx_np = data.moments(augmented=False)
    sxx, syx, syy = torch.from_numpy(np.ascontiguousarray(sxx_np)), torch.from_numpy(np.ascontiguousarray(syx_np)), data.syy

    def loss_of(Ws):
        if moments:
            A = Ws[0]
            for W in Ws[1:]:
                A = W @ A
            return 0.5 * syy + (A * (0.5 * (A @ sxx) - syx)).sum(dim=(1, 2))
        out = X
        for W in Ws:
            out = W @ out
        return ((out - Y) ** 2).sum(dim=(1, 2)) / (2 * N)

    def loss_grad(Ws):
        Ws = [W.detach().requires_grad_(True) for W in Ws]
        loss = loss_of(Ws)
        grads = torch.autograd.grad(loss.sum(), Ws)  # seeds are independent: ∂(Σ_s L_s)/∂W_s = ∇L_s
        return loss.detach(), grads

    def charges(Ws):
        return [Ws[i + 1].mT @ Ws[i + 1] - Ws[i] @ Ws[i].mT for i in range(len(Ws) - 1)]

    Ws = [torch.from_numpy(np.ascontiguousarray(W)) for W in weight_views(np.array(theta0), widths)]
    n_saves = problem.n_saves
    S = theta0.shape[0]
    loss = torch.empty((S, n_saves), dtype=torch.float64)
    drift = torch.empty((S, n_saves, len(widths) - 2), dtype=torch.float64)
    q0 = charges(Ws)

    def record(js):
        loss[:, js] = loss_grad(Ws)[0]
        for i, D in enumerate(charges(Ws)):
            drift[:, js, i] = torch.linalg.matrix_norm(D - q0[i])

    record(0)
    for step in range(1, problem.n_steps + 1):
        _, k1 = loss_grad(Ws)
        _, k2 = loss_grad([W - (0.5 * h) * k for W, k in zip(Ws, k1)])
        _, k3 = loss_grad([W - (0.5 * h) * k for W, k in zip(Ws, k2)])
        _, k4 = loss_grad([W - h * k for W, k in zip(Ws, k3)])
        Ws = [W - (h / 6) * (a + 2 * b + 2 * c + d) for W, a, b, c, d in zip(Ws, k1, k2, k3, k4)]
        if step % problem.record_every == 0:
            record(step // problem.record_every)
    theta = np.concatenate([W.reshape(S, -1).numpy() for W in Ws], axis=1)
    return {"theta": theta, "loss": loss.numpy(), "drift": drift.numpy()}


# ---------------------------------------------------------------- JAX (a)

def run_torch_moments(problem, theta0, threads: int = 2):
    return run_torch_autograd(problem, theta0, threads, moments=True)


def jax_runner(problem, moments: bool = False):
    """A compiled JAX integrator for ``problem`` (jit + vmap + lax.scan): run(theta0) -> result.

    moments=False: the loss by a forward pass over the N points (what most people write);
    moments=True: our algorithm, L = ½syy + ⟨Ã, ½ÃΣxx − Σyx⟩ with Ã = W_L … W_1, the gradient by
    autodiff. Compiles here, ahead of time, for theta0 of shape (problem.n_seeds, P), so timing run()
    measures execution only (the compile time is reported separately).
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    widths, h = problem.widths, problem.h
    data = problem.data
    X = jnp.asarray(data.X)
    Y = jnp.asarray(data.Y)
    N = X.shape[1]
    n_records = problem.n_steps // problem.record_every
    sxx_np, syx_np = data.moments(augmented=False)
    sxx, syx, syy = jnp.asarray(sxx_np), jnp.asarray(syx_np), float(data.syy)

    def loss_one(Ws):  # one network
        if moments:  # the data only through its moments
            A = Ws[0]
            for W in Ws[1:]:
                A = W @ A
            return 0.5 * syy + jnp.sum(A * (0.5 * (A @ sxx) - syx))
        out = X  # forward over the N points
        for W in Ws:
            out = W @ out
        return jnp.sum((out - Y) ** 2) / (2 * N)

    value_and_grad = jax.vmap(jax.value_and_grad(loss_one))

    def field(Ws):
        return jax.tree_util.tree_map(jnp.negative, value_and_grad(Ws)[1])

    def axpy(a, x, y):
        return jax.tree_util.tree_map(lambda u, v: u + a * v, x, y)

    def rk4_step(Ws, _):
        k1 = field(Ws)
        k2 = field(axpy(0.5 * h, Ws, k1))
        k3 = field(axpy(0.5 * h, Ws, k2))
        k4 = field(axpy(h, Ws, k3))
        new = jax.tree_util.tree_map(lambda w, a, b, c, d: w + (h / 6) * (a + 2 * b + 2 * c + d),
                                     Ws, k1, k2, k3, k4)
        return new, None

    def charges(Ws):
        return [jnp.swapaxes(Ws[i + 1], 1, 2) @ Ws[i + 1] - Ws[i] @ jnp.swapaxes(Ws[i], 1, 2)
                for i in range(len(Ws) - 1)]

    def observe(Ws, q0):
        loss = value_and_grad(Ws)[0]
        drift = jnp.stack([jnp.sqrt(jnp.sum((D - D0) ** 2, axis=(1, 2))) for D, D0 in zip(charges(Ws), q0)],
                          axis=-1)
        return loss, drift

    @jax.jit
    def integrate(Ws):
        q0 = charges(Ws)

        def record_block(Ws, _):
            Ws, _ = jax.lax.scan(rk4_step, Ws, None, length=problem.record_every)
            return Ws, observe(Ws, q0)

        first = observe(Ws, q0)
        Ws, (losses, drifts) = jax.lax.scan(record_block, Ws, None, length=n_records)
        loss = jnp.concatenate([first[0][None], losses], axis=0).T
        drift = jnp.concatenate([first[1][None], drifts], axis=0).transpose(1, 0, 2)
        return Ws, loss, drift

    # compile ahead of time for this problem's shapes, so the first timed call does no tracing
    S = problem.n_seeds
    shapes = tuple(jax.ShapeDtypeStruct((S, widths[i + 1], widths[i]), jnp.float64) for i in range(len(widths) - 1))
    compiled = integrate.lower(shapes).compile()

    def run(theta0):
        Ws = tuple(jnp.asarray(np.ascontiguousarray(W)) for W in weight_views(np.array(theta0), widths))
        Ws, loss, drift = compiled(Ws)
        loss.block_until_ready()
        theta = np.concatenate([np.asarray(W).reshape(S, -1) for W in Ws], axis=1)
        return {"theta": theta, "loss": np.asarray(loss), "drift": np.asarray(drift)}

    return run


def run_jax_autodiff(problem, theta0):
    return jax_runner(problem)(theta0)


def jax_moments_runner(problem):
    return jax_runner(problem, moments=True)


def run_jax_moments(problem, theta0):
    return jax_runner(problem, moments=True)(theta0)


# ---------------------------------------------------------------- agreement

def agreement(ours: dict, other: dict, scale: np.ndarray) -> dict:
    """Worst disagreement of ``other`` with ``ours``.

    theta, loss: max relative difference per seed (|·| over the row / per entry).
    drift: |Δdrift| / scale, where scale = |W_{i+1}|² + |W_i|² is the size of the terms that cancel
    in D_i: two correct float64 implementations can only differ by round-off of that size, however
    small the drift itself is.
    """
    th_o, th_b = ours["theta"], other["theta"]
    theta_rel = np.max(np.linalg.norm(th_b - th_o, axis=1) / np.linalg.norm(th_o, axis=1))
    loss_rel = np.max(np.abs(other["loss"] - ours["loss"]) / np.abs(ours["loss"]))
    drift_scaled = np.max(np.abs(other["drift"] - ours["drift"]) / scale)
    return {"theta_rel": float(theta_rel), "loss_rel": float(loss_rel), "drift_over_scale": float(drift_scaled)}
