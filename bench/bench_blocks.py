"""Throughput of the new blocks (issue 22): low-rank adapters, a layer-normalised MLP and stacked residual
blocks, each ``simulate`` against a JAX implementation of the same algorithm, in one run.

Reference problems (256 teacher points, gradient descent η = 0.01, S seeds from the same θ₀, the loss and
every charge group's drift |Q(t) − Q(0)| recorded every 10 steps):

    lora      ns.LoRA(ns.MLP((16, 32, 8), activation="relu", bias=True), rank=4)   (adapters on both layers)
    layernorm ns.MLP((16, 32, 8), activation="relu", bias=True, normalisation="layer")
    residual  ns.ResidualMLP(16, width=16, hidden=32, blocks=3, d_out=8, bias=True, activation="relu")

Ours is timed end to end (validation, integration, the labelled result) after one warm-up call (kernels
compiled and cached); JAX is ``jit(vmap(value_and_grad))`` inside ``lax.scan`` (steps inside records),
float64, compiled ahead of time (compile not timed), computing the same charges. The two must agree on
θ(T) to 1e-9 (relative).

    .venv/bin/python bench/bench_blocks.py [--seeds 16] [--steps 100] [--repeat 2] [--only lora,residual]
"""

import argparse
import time

import numpy as np

import noether_sim as ns
from noether_sim import init

N_POINTS, ETA, SAVE = 256, 0.01, 10


def problems():
    base = ns.MLP((16, 32, 8), activation="relu", bias=True)
    data = ns.teacher_regression(base, N_POINTS, noise=0.05, seed=0)
    return {
        "lora": (ns.LoRA(base, rank=4), data),
        "layernorm": (ns.MLP((16, 32, 8), activation="relu", bias=True, normalisation="layer"), data),
        "residual": (ns.ResidualMLP(16, width=16, hidden=32, blocks=3, d_out=8, bias=True, activation="relu"), data),
    }


def ours(model, data, theta0, steps):
    return ns.simulate(model, data, dynamics="gd", h=ETA, n_steps=steps, save_every=SAVE * ETA, seeds=len(theta0),
                       init=init.Given(theta0))


def _jax_pieces(name, model, jnp):
    """(f(theta, X), [charge group functions of theta]) in jnp, from the model's layout."""
    relu = lambda z: jnp.maximum(z, 0.0)

    def layers_of(theta, m):
        out = []
        for W, b in m.unflatten(np.arange(m.n_params)):
            out.append((theta[W.ravel()].reshape(W.shape), None if b is None else theta[b]))
        return out

    if name == "lora":
        base = model.base
        base_layers = [(jnp.asarray(W), jnp.asarray(b)) for W, b in base.unflatten(np.asarray(model.base_weights))]

        def forward(theta, X):
            f = layers_of(theta, model)
            h = X
            for i, (W0, b0) in enumerate(base_layers, start=1):
                j = model.layers.index(i) if i in model.layers else None
                W = W0 if j is None else W0 + f[2 * j + 1][0] @ f[2 * j][0]
                h = W @ h + b0[:, None]
                if i < len(base_layers):
                    h = relu(h)
            return h

        def charges(theta):
            f = layers_of(theta, model)
            return [f[2 * j + 1][0].T @ f[2 * j + 1][0] - f[2 * j][0] @ f[2 * j][0].T for j in range(len(model.layers))]
        return forward, charges

    if name == "layernorm":
        def forward(theta, X):
            (W1, b1), (W2, b2) = layers_of(theta, model)
            z = W1 @ X + b1[:, None]
            z = z - z.mean(axis=0, keepdims=True)
            z = z / jnp.sqrt((z * z).mean(axis=0, keepdims=True))
            return W2 @ relu(z) + b2[:, None]

        def charges(theta):
            (W1, b1), _ = layers_of(theta, model)
            return [jnp.sum(W1 * W1) + jnp.sum(b1 * b1), jnp.concatenate([W1.sum(axis=0), b1.sum()[None]])]
        return forward, charges

    def forward(theta, X):
        L = layers_of(theta, model)
        s = L[0][0] @ X + L[0][1][:, None]
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            (W1, b1), (W2, b2) = L[i1 - 1], L[i2 - 1]
            s = s + W2 @ relu(W1 @ s + b1[:, None]) + b2[:, None]
        return L[-1][0] @ s + L[-1][1][:, None]

    def charges(theta):
        L = layers_of(theta, model)
        out = []
        C = L[-1][0].T @ L[-1][0] - L[0][0] @ L[0][0].T - jnp.outer(L[0][1], L[0][1])
        for k in range(1, model.blocks + 1):
            i1, i2 = model.block_layers(k)
            (W1, b1), (W2, b2) = L[i1 - 1], L[i2 - 1]
            out.append(jnp.sum(W1 * W1, axis=1) + b1 * b1 - jnp.sum(W2 * W2, axis=0))
            C = C + W1.T @ W1 - W2 @ W2.T - jnp.outer(b2, b2)
        return out + [C]
    return forward, charges


def jax_runner(name, model, data, S, steps):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    X, Y = jnp.asarray(data.X), jnp.asarray(data.Y)
    forward, charges = _jax_pieces(name, model, jnp)

    def loss(theta):
        return 0.5 * jnp.sum((forward(theta, X) - Y) ** 2) / X.shape[1]

    vg = jax.vmap(jax.value_and_grad(loss))
    vq = jax.vmap(charges)

    def step(theta, _):
        _, g = vg(theta)
        return theta - ETA * g, None

    def record(carry, _):
        theta, q0 = carry
        theta, _ = jax.lax.scan(step, theta, None, length=SAVE)
        L, _ = vg(theta)
        drift = jnp.stack([jnp.sqrt(jnp.sum(((q - a) ** 2).reshape(q.shape[0], -1), axis=-1))
                           for q, a in zip(vq(theta), q0)], axis=-1)
        return (theta, q0), (L, drift)

    def run(theta0):
        (theta, _), (L, drift) = jax.lax.scan(record, (theta0, vq(theta0)), None, length=steps // SAVE)
        return theta, L, drift

    return jax.jit(run).lower(jnp.zeros((S, model.n_params))).compile()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", default="lora,layernorm,residual")
    a = parser.parse_args()
    S, steps = a.seeds, a.steps
    try:
        import jax  # noqa: F401
        have_jax = True
    except ImportError:
        have_jax = False
        print("JAX: not installed (pip install 'jax[cpu]'): no baseline")
    print(f"{N_POINTS} teacher points; gradient descent η = {ETA}, {S} seeds × {steps} steps, charges every {SAVE}")
    for name, (model, data) in problems().items():
        if name not in a.only.split(","):
            continue
        theta0 = init.Gaussian(scale=0.7).rows(model, 0, np.arange(S))
        ours(model, data, theta0[:2], SAVE)  # compile / load the cached kernels
        t_ours = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            ds = ours(model, data, theta0, steps)
            t_ours.append(time.perf_counter() - t0)
        line = f"  {name:9s} P={model.n_params:5d}  noether_sim {S * steps / min(t_ours):10,.0f} seed-steps/s"
        if have_jax:
            fn = jax_runner(name, model, data, S, steps)
            theta_j, _, _ = fn(theta0)
            t_jax = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                out = fn(theta0)
                out[0].block_until_ready()
                t_jax.append(time.perf_counter() - t0)
            ref = ds.theta_final.values
            rel = float(np.abs(np.asarray(theta_j) - ref).max() / np.abs(ref).max())
            assert rel < 1e-9, (name, rel)
            line += (f"  JAX {S * steps / min(t_jax):10,.0f} seed-steps/s  ratio ours/JAX {min(t_jax) / min(t_ours):5.2f}×"
                     f"  (θ(T) agree to {rel:.1e})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
