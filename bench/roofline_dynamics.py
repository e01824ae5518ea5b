"""Roofline rows and same-algorithm JAX ratios for the dynamics the seed-interleaved fast path does not
cover (issue 24, item 3), all measured in one process:

    mlp_rk4     ReLU MLP 16-16-16-1 with biases, N = 256 teacher points, gradient flow, RK4
    gl2         deep linear reference 10-16-16-5, gradient flow, Gauss–Legendre s = 2 (fixed-point sweeps)
    verlet      deep linear reference, momentum flow τ = 0.5, conformal Störmer–Verlet (track_law=False):
                the seed-interleaved fast path; verlet_general the same on the general driver
                (NOETHER_SIM_LANES=0), bit-identical
    gd          deep linear reference, gradient descent (its exact one-step law tracked, as always)
    langevin16  deep linear reference, overdamped Langevin T = 0.01, minibatches of B = 16 (uniform),
                Euler–Maruyama (its exact noisy law tracked, as always)

Every case: h = 0.01, float64, a record (loss, charges) every 10 steps. Ours is ``simulate()`` end to end
with ``init=Given(theta0)`` on 2 threads (numba's default here); JAX is jit + vmap + lax.scan of the same
algorithm (same gradient: deep linear through the data moments Σxx, Σyx, the MLP through its N points;
the same step, gradient reuse, fixed-point iteration and stopping rule, law accumulation, minibatch
moments), ``jax_enable_x64``, compiled ahead of time (compile not timed), XLA's default CPU threads.
Both are timed best of ``--repeats`` in this process, with the process CPU time ÷ wall ("cores used"),
so the ratio is given per wall second and per CPU second.

FLOPs per seed-step are counted from the algorithm (functions below; Gauss–Legendre uses the
gradient evaluations and sweeps per step ours measured). Peak: the best 4096² float64 NumPy matmul
(OpenBLAS, 2 threads) in the same process.

Agreement (before timing, 8 seeds × 20 steps): final weights of JAX against ours, max relative
difference per seed; the minibatch Langevin case is checked in its deterministic limit (B = N, T = 0)
against ours' gradient descent (the random streams differ: JAX's threefry, ours the counter hash).

    .venv/bin/python bench/roofline_dynamics.py [--repeats 3] [--cases mlp_rk4 gl2 verlet gd langevin16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import noether_sim as ns  # noqa: E402
from noether_sim.init import Given  # noqa: E402
from noether_sim.mlp import MLP, teacher_regression  # noqa: E402

from bench.problem import REFERENCE, gradient_flops, measured_peak_gflops, n_params  # noqa: E402

H = 0.01
RECORD_EVERY = 10
TAU = 0.5
TEMPERATURE = 0.01
BATCH = 16
MLP_WIDTHS = (16, 16, 16, 1)
MLP_POINTS = 256


# ---------------------------------------------------------------- FLOP counts (per seed)

def linear_charge_eval_flops(widths) -> int:
    """One evaluation of every balance matrix D_i (or of the bilinear form B(a, b)): two n_i × n_i
    products of depth n_{i+1} and n_{i−1}, and the symmetrisation (kernels/linear.py)."""
    return sum(2 * widths[i] ** 2 * (widths[i + 1] + widths[i - 1]) + widths[i] ** 2
               for i in range(1, len(widths) - 1))


def linear_record_flops(widths) -> int:
    """A record: one gradient for the loss, the charges, ‖D − D(0)‖ (4n² per D_i)."""
    return (gradient_flops(widths) + linear_charge_eval_flops(widths)
            + sum(4 * widths[i] ** 2 for i in range(1, len(widths) - 1)))


def n_charges(widths) -> int:
    return sum(widths[i] ** 2 for i in range(1, len(widths) - 1))


def mlp_params(widths) -> int:
    return sum(widths[i] * widths[i - 1] + widths[i] for i in range(1, len(widths)))


def mlp_gradient_flops(widths, n_points) -> int:
    """One loss + gradient of kernels/mlp.py over N points (biases, ReLU, squared loss): forward
    Z_i = W_iH_{i−1} + b_i (2N n_i n_{i−1} + N n_i), ReLU (N n_i), residual and loss (3N n_L);
    backward G_i = Δ_iH_{i−1}ᵀ (2N n_i n_{i−1}), bias sums (N n_i), Δ_{i−1} = (W_iᵀΔ_i)∘σ' for
    i ≥ 2 (2N n_i n_{i−1} + N n_{i−1}); the field's negation (P)."""
    N, L = n_points, len(widths) - 1
    flops = 3 * N * widths[L]
    for i in range(1, L + 1):
        ni, nprev = widths[i], widths[i - 1]
        flops += (6 if i >= 2 else 4) * N * ni * nprev + 2 * N * ni
        if i < L:
            flops += 2 * N * ni  # ReLU forward, σ' backward
    return flops + mlp_params(widths)


def per_step_flops(case: str, stats: dict) -> float:
    """FLOPs per seed-step of ``case`` by its algorithm, records (every RECORD_EVERY steps) included."""
    w = REFERENCE.widths
    P, g, nq = n_params(w), gradient_flops(w), n_charges(w)
    rec = linear_record_flops(w) / RECORD_EVERY
    c = linear_charge_eval_flops(w)
    if case == "mlp_rk4":
        gm, Pm = mlp_gradient_flops(MLP_WIDTHS, MLP_POINTS), mlp_params(MLP_WIDTHS)
        # 4 gradients, stage sums 3 × 2P, update 4 × 2P; a record: a gradient for the loss, the rescale charges
        return 4 * gm + 14 * Pm + (gm + 4 * Pm) / RECORD_EVERY
    if case == "gl2":
        s = 2
        # f(y) once + s per sweep (ours' measured counts), per sweep: s stage values (s FMAs of P each),
        # the change δ (s·P·(3s + 2)), K ← K_new; the update s FMAs of P
        evals, sweeps = stats["grads_per_step"], stats["sweeps_per_step"]
        return evals * g + sweeps * (s * s * 2 * P + s * P * (3 * s + 2)) + s * 2 * P + rec
    if case in ("verlet", "verlet_general"):
        # one gradient (+ λq: 2P), two damps (P each), two kicks (2P each), a drift (2P)
        return g + 2 * P + 2 * P + 4 * P + 2 * P + rec
    if case == "gd":
        # gradient, update (2P), the law: g = −K − λθ (2P), D(g), 4 FLOPs per charge
        return g + 2 * P + 2 * P + c + 4 * nq + rec
    if case == "langevin16":
        na, nL = w[0], w[-1]
        moments = 2 * BATCH * (na * na + nL * na) + 2 * BATCH * nL + (na * na + nL * na + 1)
        # moments of the batch, gradient, noise scaling (P), update (3P), the law: U = N − hg (2P), D(U),
        # B(θ, N), 6 FLOPs per charge; the normals themselves are not counted
        return moments + g + P + 3 * P + 2 * P + 2 * c + 6 * nq + rec
    raise KeyError(case)


# ---------------------------------------------------------------- the cases (ours)

def setup(case: str):
    """(model, data, simulate keywords without seeds/init/n_steps)."""
    if case == "mlp_rk4":
        model = MLP(MLP_WIDTHS, bias=True, activation="relu")
        data = teacher_regression(model, MLP_POINTS, noise=0.1, seed=0)
        kw = dict(method="rk4")
    else:
        model, data = REFERENCE.model, REFERENCE.data
        case = case.removesuffix("_general")
        kw = {"gl2": dict(method="gl2"),
              "verlet": dict(dynamics="momentum", tau=TAU, method="verlet", track_law=False),
              "gd": dict(dynamics="gd"),
              "langevin16": dict(dynamics="langevin", temperature=TEMPERATURE, batch_size=BATCH)}[case]
    return model, data, dict(h=H, save_every=RECORD_EVERY * H, **kw)


def theta0_for(model, seeds):
    ds = ns.simulate(model, ns.data.synthetic_regression(model.widths[0], model.widths[-1], 8, noise=0.1)
                     if not isinstance(model, MLP) else teacher_regression(model, 8, seed=0),
                     dynamics="gd", h=H, n_steps=1, seeds=seeds)
    return np.ascontiguousarray(ds.theta_initial.values)


def run_ours(case, model, data, kw, theta0, n_steps):
    if case.endswith("_general"):
        os.environ["NOETHER_SIM_LANES"] = "0"
    try:
        return ns.simulate(model, data, seeds=theta0.shape[0], init=Given(theta0), n_steps=n_steps, **kw)
    finally:
        os.environ.pop("NOETHER_SIM_LANES", None)


# ---------------------------------------------------------------- JAX, the same algorithms

def jax_case(case, model, data, n_seeds, n_steps, batch=BATCH, temperature=TEMPERATURE):
    case = case.removesuffix("_general")
    """A compiled JAX integrator of ``case``: run(theta0) -> final θ (n_seeds, P); compiled here, ahead
    of time, for (n_seeds, P) and n_steps (a multiple of RECORD_EVERY), so that run() is execution only."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    widths = model.widths
    L = len(widths) - 1
    w_off, b_off = model.offsets
    P = model.n_params

    def layers(theta):
        Ws = [theta[w_off[i]: w_off[i] + widths[i + 1] * widths[i]].reshape(widths[i + 1], widths[i])
              for i in range(L)]
        bs = [theta[b_off[i]: b_off[i] + widths[i + 1]] for i in range(L)] if model.bias else None
        return Ws, bs

    if case == "mlp_rk4":
        X, Y = jnp.asarray(data.X), jnp.asarray(data.Y)
        N = X.shape[1]

        def loss_one(theta):  # forward over the N points, ReLU, squared loss
            Ws, bs = layers(theta)
            h_ = X
            for i in range(L):
                h_ = Ws[i] @ h_ + bs[i][:, None]
                if i < L - 1:
                    h_ = jax.nn.relu(h_)  # σ'(0) = 0 as ours (jnp.maximum would split the tie: ½)
            return jnp.sum((h_ - Y) ** 2) / (2 * N)

        def charges(theta):  # rescale charges ‖w_in‖² + b² − ‖w_out‖² of every hidden unit
            Ws, bs = layers(theta)
            return jnp.concatenate([jnp.sum(Ws[i] ** 2, axis=1) + bs[i] ** 2 - jnp.sum(Ws[i + 1] ** 2, axis=0)
                                    for i in range(L - 1)])
    else:
        sxx_np, syx_np = data.moments(augmented=False)
        SXX, SYX, SYY = jnp.asarray(sxx_np), jnp.asarray(syx_np), float(data.syy)
        X, Y = jnp.asarray(data.X), jnp.asarray(data.Y)
        N = X.shape[1]

        def loss_moments(theta, sxx, syx, syy):  # our algorithm: the data only through its moments
            Ws, _ = layers(theta)
            A = Ws[0]
            for W in Ws[1:]:
                A = W @ A
            return 0.5 * syy + jnp.sum(A * (0.5 * (A @ sxx) - syx))

        def loss_one(theta):
            return loss_moments(theta, SXX, SYX, SYY)

        def cross(a, b):  # the balance charges' bilinear form B(a, b), flat; D(θ) = B(θ, θ)
            Wa, _ = layers(a)
            Wb, _ = layers(b)
            out = []
            for i in range(L - 1):
                m = Wa[i + 1].T @ Wb[i + 1] - Wa[i] @ Wb[i].T
                out.append((0.5 * (m + m.T)).reshape(-1))
            return jnp.concatenate(out)

        def charges(theta):
            return cross(theta, theta)

    grad_one = jax.grad(loss_one)

    def field(theta):
        return -grad_one(theta)

    def observe(theta, q0):
        return loss_one(theta), jnp.sqrt(jnp.sum((charges(theta) - q0) ** 2))

    # one seed's state and step; vmapped over seeds below
    if case == "mlp_rk4":
        def init(theta, key):
            return theta

        def step(y):
            k1 = field(y)
            k2 = field(y + (0.5 * H) * k1)
            k3 = field(y + (0.5 * H) * k2)
            k4 = field(y + H * k3)
            return y + (H / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

        def position(y):
            return y
    elif case == "gl2":
        r3 = np.sqrt(3.0)
        A = jnp.asarray([[0.25, 0.25 - r3 / 6], [0.25 + r3 / 6, 0.25]])
        b = jnp.asarray([0.5, 0.5])
        tol, max_iter = 1e-14, 100

        def init(theta, key):
            return theta

        def step(y):  # fixed-point sweeps on the stage derivatives from K_i = f(y), δ ≤ tol·max(1, |y|∞)
            f0 = field(y)
            scale = jnp.maximum(1.0, jnp.max(jnp.abs(y)))

            def cond(c):
                return (c[1] > tol) & (c[2] < max_iter)

            def body(c):
                K, _, it = c
                K_new = jnp.stack([field(y + H * (A[i] @ K)) for i in range(2)])
                delta = jnp.max(jnp.abs(H * (A @ (K_new - K)))) / scale
                return K_new, delta, it + 1

            K, _, _ = jax.lax.while_loop(cond, body, (jnp.stack([f0, f0]), jnp.inf, 0))
            return y + H * (b @ K)

        def position(y):
            return y
    elif case == "verlet":
        e_half = np.exp(-0.5 * H / TAU)
        c_half = 0.5 * H / TAU

        def init(theta, key):  # (q, p, ∇L(q)): the gradient carried between steps, one per step
            return theta, jnp.zeros_like(theta), grad_one(theta)

        def step(y):
            q, p, g = y
            p = e_half * p
            p = p - c_half * g
            q = q + H * p
            g = grad_one(q)
            p = p - c_half * g
            p = e_half * p
            return q, p, g

        def position(y):
            return y[0]
    elif case == "gd":
        def init(theta, key):  # (θ, the law's prediction of the charges)
            return theta, charges(theta)

        def step(y):
            theta, pred = y
            g = grad_one(theta)
            return theta - H * g, pred + H * H * charges(g)

        def position(y):
            return y[0]
    elif case == "langevin16":
        sigma = np.sqrt(2.0 * H * temperature)

        def init(theta, key):
            return theta, charges(theta), key

        def step(y):  # a batch of B points without replacement, its moments, Euler–Maruyama, the noisy law
            theta, pred, key = y
            key, kb, kn = jax.random.split(key, 3)
            idx = jax.random.choice(kb, N, (batch,), replace=False)
            Xb, Yb = X[:, idx], Y[:, idx]
            sxx, syx, syy = Xb @ Xb.T / batch, Yb @ Xb.T / batch, jnp.sum(Yb * Yb) / batch
            g = jax.grad(loss_moments)(theta, sxx, syx, syy)
            noise = sigma * jax.random.normal(kn, theta.shape)
            U = noise - H * g
            return theta + U, pred + charges(U) + 2.0 * cross(theta, noise), key

        def position(y):
            return y[0]
    else:
        raise KeyError(case)

    n_records = n_steps // RECORD_EVERY
    v_init, v_step, v_pos = jax.vmap(init), jax.vmap(step), jax.vmap(position)
    v_observe = jax.vmap(observe)
    v_charges = jax.vmap(charges)

    @jax.jit
    def integrate(theta0, keys):
        q0 = v_charges(theta0)
        y = v_init(theta0, keys)

        def block(y, _):
            y, _ = jax.lax.scan(lambda y, _: (v_step(y), None), y, None, length=RECORD_EVERY)
            return y, v_observe(v_pos(y), q0)

        first = v_observe(theta0, q0)
        y, (losses, drifts) = jax.lax.scan(block, y, None, length=n_records)
        return v_pos(y), y, first, losses, drifts  # the whole state out: XLA may not drop any of it

    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    compiled = integrate.lower(jax.ShapeDtypeStruct((n_seeds, P), jnp.float64), keys).compile()

    def run(theta0):
        out = compiled(jnp.asarray(theta0), keys)
        jax.block_until_ready(out)
        return np.asarray(out[0])

    return run


# ---------------------------------------------------------------- measuring

def timed(fn, repeats):
    best = (np.inf, np.nan)
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu)
    return best


# (seeds, steps) timed per case: ours, JAX (steps multiples of RECORD_EVERY); a few seconds each here
SIZES = {
    "mlp_rk4": ((256, 100), (256, 20)),
    "gl2": ((1024, 100), (1024, 20)),
    "verlet": ((1024, 500), (1024, 100)),
    "verlet_general": ((1024, 500), (1024, 100)),
    "gd": ((1024, 500), (1024, 100)),
    "langevin16": ((1024, 300), (1024, 50)),
}


def agreement(case, model, data, kw):
    """Max relative difference (per seed, final weights) of JAX against ours on 8 seeds × 20 steps."""
    theta0 = theta0_for(model, 8)
    if case == "langevin16":  # deterministic limit: every point in every batch, no noise: gradient descent
        ours = run_ours("gd", model, data, setup("gd")[2], theta0, 20)
        jx = jax_case(case, model, data, 8, 20, batch=data.n_points, temperature=0.0)(theta0)
    else:
        ours = run_ours(case, model, data, kw, theta0, 20)
        jx = jax_case(case, model, data, 8, 20)(theta0)
    th = ours.theta_final.values[:, : model.n_params]
    return float(np.max(np.linalg.norm(jx - th, axis=1) / np.linalg.norm(th, axis=1)))


def measure(case, repeats, peak):
    model, data, kw = setup(case)
    (s_ours, n_ours), (s_jax, n_jax) = SIZES[case]
    theta0 = theta0_for(model, max(s_ours, s_jax))
    agree = agreement(case, model, data, kw)
    run_ours(case, model, data, kw, theta0[:8], 20)  # compile / load the cache
    ds = None

    def ours_once():
        nonlocal ds
        ds = run_ours(case, model, data, kw, theta0[:s_ours], n_ours)

    wall_o, cpu_o = timed(ours_once, repeats)
    steps = s_ours * n_ours
    stats = {"grads_per_step": float(ds.n_grad_evals.sum()) / steps}
    if "n_solve_iters" in ds:
        stats["sweeps_per_step"] = float(ds.n_solve_iters.sum()) / steps
    assert not ds.diverged.any()
    t0 = time.perf_counter()
    run_jax = jax_case(case, model, data, s_jax, n_jax)
    compile_s = time.perf_counter() - t0
    wall_j, cpu_j = timed(lambda: run_jax(theta0[:s_jax]), repeats)
    flops = per_step_flops(case, stats)
    rate_o, rate_j = steps / wall_o, s_jax * n_jax / wall_j
    return dict(case=case, flops=flops, stats=stats, agree=agree, compile_s=compile_s,
                ours=dict(seeds=s_ours, steps=n_ours, wall=wall_o, cores=cpu_o / wall_o, rate=rate_o,
                          gflops=rate_o * flops / 1e9, cpu_per_step=cpu_o / steps),
                jax=dict(seeds=s_jax, steps=n_jax, wall=wall_j, cores=cpu_j / wall_j, rate=rate_j,
                         gflops=rate_j * flops / 1e9, cpu_per_step=cpu_j / (s_jax * n_jax)), peak=peak)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=list(SIZES))
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          f"{' / '.join(f'{x:.2f}' for x in load0)}", flush=True)
    peak = measured_peak_gflops()
    print(f"peak (4096² float64 matmul, this process): {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for case in args.cases:
        r = measure(case, args.repeats, peak)
        rows.append(r)
        o, j = r["ours"], r["jax"]
        print(f"{case}: {r['flops']:,.0f} FLOP/seed-step {r['stats']}; ours {o['seeds']}×{o['steps']} "
              f"{o['wall']:.3f} s {o['rate']:,.0f}/s cores {o['cores']:.2f}; JAX {j['seeds']}×{j['steps']} "
              f"{j['wall']:.3f} s {j['rate']:,.0f}/s cores {j['cores']:.2f} (compile {r['compile_s']:.1f} s); "
              f"agreement {r['agree']:.1e}; load {os.getloadavg()[0]:.2f}", flush=True)
    print()
    print("| dynamics | FLOPs per seed-step | ours: seeds × steps, best s, cores | ours seed-steps/s | ours GFLOP/s "
          "| % of peak | JAX: seeds × steps, best s, cores | JAX seed-steps/s | JAX GFLOP/s | ours ÷ JAX (wall) "
          "| ours ÷ JAX (CPU s) | JAX vs ours, final θ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, j = r["ours"], r["jax"]
        print(f"| {r['case']} | {r['flops']:,.0f} | {o['seeds']} × {o['steps']}, {o['wall']:.3f}, {o['cores']:.2f} "
              f"| {o['rate']:,.0f} | {o['gflops']:.2f} | {100 * o['gflops'] / peak:.1f} % "
              f"| {j['seeds']} × {j['steps']}, {j['wall']:.3f}, {j['cores']:.2f} | {j['rate']:,.0f} "
              f"| {j['gflops']:.2f} | {o['rate'] / j['rate']:.2f}× | {j['cpu_per_step'] / o['cpu_per_step']:.2f}× "
              f"| {r['agree']:.1e} |")
    print(f"\npeak {peak:.1f} GFLOP/s; load average at the start {load0[0]:.2f}, at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
