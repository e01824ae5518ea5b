"""Self-attention throughput: ``simulate`` against a JAX implementation of the same algorithm, one run.

Problem (issue 22): ``SelfAttention(16, heads=2, tokens=8)`` (d_k = d_v = 8, no mask, loss on every
token), 256 teacher sequences, gradient descent (η = 0.01), S seeds from the same θ₀, the loss and
|QK<h>(t) − QK<h>(0)|_F, |VO<h>(t) − VO<h>(0)|_F recorded every 10 steps. Ours is timed end to end
(validation, integration, the labelled result) after one warm-up call (kernels compiled and cached);
JAX is ``jit(vmap(value_and_grad))`` inside ``lax.scan`` (steps inside records), float64, compiled
ahead of time (compile not timed). The two must agree on θ(T) to 1e-9 (relative). Each side's best of
``--repeat`` wall times and, apart, its best CPU time (``time.process_time``: all threads of the process),
which other jobs on a shared machine disturb less than the wall time.

    .venv/bin/python bench/bench_attention.py [--seeds 64] [--steps 200] [--repeat 3]
"""

import argparse
import os
import time

import numpy as np

import noether_sim as ns
from noether_sim import init


def problem():
    model = ns.SelfAttention(16, heads=2, tokens=8)  # docs/guide/attention.md has the measured numbers
    data = ns.data.sequences(model, 256, noise=0.05, seed=0)
    return model, data


def ours(model, data, theta0, steps, save, eta):
    return ns.simulate(model, data, dynamics="gd", h=eta, n_steps=steps, save_every=save * eta, seeds=len(theta0),
                       init=init.Given(theta0))


def jax_runner(model, data, S, steps, save, eta):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    T, d, dk, dv, do = model.tokens, model.d_model, model.d_k, model.d_v, model.d_out
    X = jnp.asarray(model.tokens_of(data.X))  # (N, T, d)
    Y = jnp.asarray(data.Y.T.reshape(-1, T, do))
    N = X.shape[0]
    shapes = [model.weight_shape(i) for i in range(1, model.n_layers + 1)]
    offs = np.concatenate([[0], np.cumsum([a * b for a, b in shapes])])

    def mats(theta):
        return [theta[offs[i]: offs[i + 1]].reshape(shapes[i]) for i in range(len(shapes))]

    def loss(theta):
        Ms = mats(theta)
        F = 0.0
        for h in range(model.heads):
            WQ, WK, WV, WO = Ms[4 * h: 4 * h + 4]
            S_ = jnp.einsum("nta,nsa->nts", X @ WQ.T, X @ WK.T) / jnp.sqrt(dk)
            A = jax.nn.softmax(S_, axis=-1)
            F = F + (A @ (X @ WV.T)) @ WO.T
        return 0.5 * jnp.sum((F - Y) ** 2) / N

    def charges(theta):
        Ms = mats(theta)
        out = []
        for h in range(model.heads):
            WQ, WK, WV, WO = Ms[4 * h: 4 * h + 4]
            out += [WQ @ WQ.T - WK @ WK.T, WV @ WV.T - WO.T @ WO]
        return out

    vg = jax.vmap(jax.value_and_grad(loss))
    vq = jax.vmap(charges)

    def step(theta, _):
        _, g = vg(theta)
        return theta - eta * g, None

    def record(carry, _):
        theta, q0 = carry
        theta, _ = jax.lax.scan(step, theta, None, length=save)
        L, _ = vg(theta)
        drift = jnp.stack([jnp.sqrt(jnp.sum((q - a) ** 2, axis=(-2, -1))) for q, a in zip(vq(theta), q0)], axis=-1)
        return (theta, q0), (L, drift)

    def run(theta0):
        (theta, _), (L, drift) = jax.lax.scan(record, (theta0, vq(theta0)), None, length=steps // save)
        return theta, L, drift

    return jax.jit(run).lower(jnp.zeros((S, model.n_params))).compile()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    a = parser.parse_args()
    model, data = problem()
    S, steps, save, eta = a.seeds, a.steps, 10, 0.01
    theta0 = init.Gaussian().rows(model, 0, np.arange(S))
    ours(model, data, theta0[:2], save, save, eta)  # compile / load the cached kernels
    t_ours, c_ours = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ds = ours(model, data, theta0, steps, save, eta)
        t_ours.append(time.perf_counter() - t0)
        c_ours.append(time.process_time() - c0)
    rate = S * steps / min(t_ours)
    print(f"attention d_model 16, 2 heads, 8 tokens, 256 sequences; gradient descent, {S} seeds × {steps} steps")
    print(f"  noether_sim simulate : {min(t_ours):.3f} s  {rate:,.0f} seed-steps/s   (CPU time of all threads "
          f"{min(c_ours):.3f} s: {S * steps / min(c_ours):,.0f} seed-steps per CPU-second)")
    try:
        import jax  # noqa: F401
    except ImportError:
        print("  JAX: not installed (pip install 'jax[cpu]'): no baseline")
        return
    fn = jax_runner(model, data, S, steps, save, eta)
    theta_j, _, _ = fn(theta0)
    t_jax, c_jax = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(theta0)
        out[0].block_until_ready()
        t_jax.append(time.perf_counter() - t0)
        c_jax.append(time.process_time() - c0)
    rel = float(np.abs(np.asarray(theta_j) - ds.theta_final.values).max() / np.abs(ds.theta_final.values).max())
    assert rel < 1e-9, rel
    print(f"  JAX jit+vmap+scan    : {min(t_jax):.3f} s  {S * steps / min(t_jax):,.0f} seed-steps/s   (CPU time of all threads "
          f"{min(c_jax):.3f} s: {S * steps / min(c_jax):,.0f} seed-steps per CPU-second)")
    print(f"  ratio ours/JAX       : {min(t_jax) / min(t_ours):.2f}× wall, {min(c_jax) / min(c_ours):.2f}× CPU time   "
          f"(θ(T) agree to {rel:.1e} relative; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
