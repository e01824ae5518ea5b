"""Initial weights: seconds to draw 10^5 and 10^6 seeds of the reference network (10-16-16-5, 496 params).

    python bench/init_speed.py

Draws with the counter-based generator (noether_sim.random) through the same call simulate() uses,
and checks bit-identity per seed id against a separate small draw. Also times the first touch of an
array of the same size (np.ones): on this project's VM fresh memory costs about a second per 0.4 GiB in
page faults, whoever allocates it, so "draw − touch" is the drawing itself.
"""

import time

import numpy as np

import noether_sim as ns
from noether_sim.ensemble import initial_weights

model = ns.DeepLinear((10, 16, 16, 5))
initial_weights(model, ns.init.Gaussian(), np.arange(10), 0)  # compile / load the kernel
for init in (ns.init.Gaussian(), ns.init.Orthogonal(), ns.init.Balanced()):
    for n in (10 ** 5, 10 ** 6) if isinstance(init, ns.init.Gaussian) else (10 ** 5,):
        t0 = time.perf_counter()
        touched = np.ones((n, model.n_params))
        touch = time.perf_counter() - t0
        del touched
        t0 = time.perf_counter()
        theta = initial_weights(model, init, np.arange(n), 0)
        sec = time.perf_counter() - t0
        del theta
        t0 = time.perf_counter()
        theta = initial_weights(model, init, np.arange(n), 0)  # again: the freed memory is reused
        again = time.perf_counter() - t0
        ids = np.array([0, n // 2, n - 1])
        same = np.array_equal(initial_weights(model, init, ids, 0), theta[ids])
        print(f"{type(init).__name__:10s} {n:>9,d} seeds: {sec:6.2f} s ({sec / (n / 1e5):.2f} s per 10^5 seeds), "
              f"again {again:.2f} s; first touch of {theta.nbytes / 2**30:.2f} GiB alone {touch:.2f} s; "
              f"same rows drawn alone: {same}")
        del theta
