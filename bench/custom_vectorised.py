"""CustomModel with a function vectorised over seeds (``vectorised=True``) against the compiled path
(issue 20).

The deep linear reference 3-4-2 of examples/custom_models/deep_linear_reference.py (N = 16 points) from the
same θ₀, gradient descent (h = 0.05) and classic RK4 (h = 0.05), a save every 20 steps, each path warm:

    compiled          its numba.njit loss_grad (the CustomModel fast path, kernels/custom_fast.py)
    NumPy lockstep    ``loss_grad_vectorised`` (plain NumPy over (S, P) rows), ``vectorised=True``: the seeds
                      step together, one call per stage for all of them (noether_sim/custom_lockstep.py)
    NumPy rows        the same with NOETHER_SIM_LOCKSTEP=0: one row (S = 1) per call from the kernels
    JAX lockstep      the same loss in JAX (jit of vmap of value_and_grad, float64), when jax is importable
    bare loop         the NumPy function called once on all S rows per step in a bare loop, no engine (GD only):
                      what the engine costs around the calls

The paths are interleaved: each round runs every path once in the same process; the table gives the median
wall time over the rounds and the load average before and after.

Usage: .venv/bin/python bench/custom_vectorised.py [n_seeds] [n_steps] [rounds]   (defaults 64, 200, 3)
"""
import os
import pathlib
import sys
import time

import numpy as np

import noether_sim as ns

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_models"))
import deep_linear_reference as ref  # noqa: E402


def jax_function():
    """The reference's loss in JAX, vectorised over rows (None without jax)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def loss(theta, X, Y):
        W1 = theta[:ref.N1 * ref.N0].reshape(ref.N1, ref.N0)
        W2 = theta[ref.N1 * ref.N0:].reshape(ref.N2, ref.N1)
        R = W2 @ (W1 @ X) - Y
        return 0.5 * jnp.sum(R * R) / X.shape[1]

    batched = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(0, None, None)))

    def loss_grad_jax(Theta, X, Y):
        losses, grads = batched(Theta, X, Y)
        return np.asarray(losses), np.asarray(grads)

    return loss_grad_jax


def main():
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = ns.data.synthetic_regression(ref.N0, ref.N2, 16, noise=0.1, seed=3)
    theta0 = np.random.default_rng(0).standard_normal((n_seeds, ref.P)) * 0.7
    h = 0.05
    X, Y = np.asarray(data.X), np.asarray(data.Y)
    fast = ref.model()
    paths = {"compiled": (fast, None),
             "NumPy lockstep": (ns.CustomModel(ref.P, ref.loss_grad_vectorised, vectorised=True, charges=fast.charges),
                                None),
             "NumPy rows": (ns.CustomModel(ref.P, ref.loss_grad_vectorised, vectorised=True, charges=fast.charges),
                            {"NOETHER_SIM_LOCKSTEP": "0"})}
    fj = jax_function()
    if fj is not None:
        paths["JAX lockstep"] = (ns.CustomModel(ref.P, fj, vectorised=True, charges=fast.charges, name="jax"), None)

    def bare():
        th = theta0.copy()
        for _ in range(n_steps):
            th -= h * ref.loss_grad_vectorised(th, X, Y)[1]
        return th

    for dyn in ("gd", "rk4"):
        run = dict(dynamics="gd") if dyn == "gd" else dict(method="rk4")
        run.update(h=h, n_steps=n_steps, seeds=n_seeds, init=ns.init.Given(theta0), progress=False, save_every=h * 20)

        def simulate(model, env):
            os.environ.pop("NOETHER_SIM_LOCKSTEP", None)
            os.environ.update(env or {})
            try:
                return ns.simulate(model, data, **run).theta_final.values
            finally:
                os.environ.pop("NOETHER_SIM_LOCKSTEP", None)

        for model, env in paths.values():  # warm: compile, check
            ns.simulate(model, data, **dict(run, n_steps=2, save_every=None, seeds=2, init=ns.init.Given(theta0[:2])))
        calls = {name: (lambda m=m, e=e: simulate(m, e)) for name, (m, e) in paths.items()}
        if dyn == "gd":
            calls["bare loop"] = bare
        times = {name: [] for name in calls}
        out = {}
        load0 = os.getloadavg()
        for _ in range(rounds):
            for name, f in calls.items():
                t0 = time.perf_counter()
                out[name] = f()
                times[name].append(time.perf_counter() - t0)
        load1 = os.getloadavg()
        med = {name: float(np.median(v)) for name, v in times.items()}
        print(f"\ndeep linear 3-4-2, N=16, {dyn} h={h}, {n_seeds} seeds × {n_steps} steps, median of {rounds} "
              f"interleaved rounds; load average {load0[0]:.1f} before, {load1[0]:.1f} after")
        print(f"{'path':<16}{'seconds':>9}{'seed-steps/s':>14}{'× compiled':>12}{'max|Δθ|':>10}")
        for name, sec in med.items():
            print(f"{name:<16}{sec:9.3f}{n_seeds * n_steps / sec:14.3g}{sec / med['compiled']:12.2f}"
                  f"{float(np.max(np.abs(out[name] - out['compiled']))):10.1e}")


if __name__ == "__main__":
    main()
