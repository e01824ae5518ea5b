"""Where a CustomModel step spends its time (issue 20): the engine's own cost per gradient evaluation.

Single thread, CPU time of the calling thread (``time.thread_time``: what the machine's other load
inflates least), deep linear 10-16-16-5 of bench/custom_model.py, RK4 h = 0.01, 64 seeds × 500 steps,
a save every 10 steps, the kernels called directly (no Python between save times):

    wrapper alone    the user's function called in a compiled loop through its C wrapper's address
                     (what one gradient costs, with no engine around it)
    fast / general   the custom fast path (kernels/custom_fast.py) and the general driver on the same run
    trivial          the same two with a user function that only copies θ into grad_out: the engine's
                     own cost per gradient (stage sums, the field's −g − λθ, the step's sum and bound check,
                     recording, calls)

Usage: .venv/bin/python bench/custom_overhead.py
"""
import importlib
import pathlib
import sys
import time

import numba
import numpy as np

import noether_sim as ns
from noether_sim.kernels.custom import _call_address
from noether_sim.kernels.custom_fast import _advance_custom
from noether_sim.kernels.entries import _INTEGRATE
from noether_sim.kernels.linear import linear_work_size

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import custom_model as cm  # noqa: E402


@numba.njit(cache=True)
def copy_only(theta, A, B, grad):
    for j in range(theta.shape[0]):
        grad[j] = theta[j]
    return 0.0


@numba.njit
def _wrapper_loop(addr, theta, grad, A, B, n):
    s = 0.0
    for _ in range(n):
        s += _call_address(addr, theta.ctypes.data, A.ctypes.data, B.ctypes.data, grad.ctypes.data, theta.shape[0],
                           A.shape[0], A.shape[1], B.shape[0], B.shape[1])
    return s


def _best(f, reps=5):
    out = []
    for _ in range(reps):
        t0 = time.thread_time()
        f()
        out.append(time.thread_time() - t0)
    return min(out)


def main():
    numba.set_num_threads(1)
    S, n_steps, evals = 64, 500, 64 * 500 * 4
    data = ns.data.synthetic_regression(cm.N0, cm.N3, 64, noise=0.1, seed=0)
    builtin = ns.DeepLinear((cm.N0, cm.N1, cm.N2, cm.N3))
    cm.INTS, cm.FLOATS = builtin.descriptor(), builtin.constants(data)
    cm.WORK = int(linear_work_size(cm.INTS))
    theta0 = ns.init.Gaussian().rows(builtin, 0, np.arange(S))
    prep = lambda X, Y: builtin.kernel_data(ns.data.from_arrays(X, Y))  # noqa: E731
    sim = importlib.import_module("noether_sim.simulate")
    print(f"deep linear 10-16-16-5, RK4 h=0.01, {S} seeds × {n_steps} steps, 1 thread, CPU ns per gradient evaluation "
          "(best of 5)")
    for name, f in (("custom kernel", cm.loss_grad_kernel), ("trivial (copy θ)", copy_only)):
        model = ns.CustomModel(cm.P, f, prepare=prep, name=name.split()[0])
        if f is copy_only:
            model.check = lambda *a, **k: []  # not a gradient of its loss: the engine's cost only
        got = []
        integrate = sim.integrate
        sim.integrate = lambda *a: (got.append(a), integrate(*a))[1]
        try:
            ns.simulate(model, data, method="rk4", h=0.01, n_steps=n_steps, save_every=0.1, seeds=S,
                        init=ns.init.Given(theta0), progress=False)
        finally:
            sim.integrate = integrate
        kind, scheme, _, _, st, times, _, _, *rest = got[0]

        def fresh():
            return st._replace(y=np.array(theta0), t=np.zeros(S), status=np.zeros(S, np.int64),
                               n_grad=np.zeros(S, np.int64), n_accepted=np.zeros(S, np.int64),
                               predicted=st.predicted.copy(), t_diverged=np.full(S, np.nan))

        a, b = model.kernel_data(data)
        g = np.empty(cm.P)
        th = np.ascontiguousarray(theta0[0])
        addr = model.wrapper().address
        _wrapper_loop(addr, th, g, a, b, 2)
        row = {"wrapper alone": _best(lambda: _wrapper_loop(addr, th, g, a, b, evals)),
               "fast": _best(lambda: _advance_custom(0, S, fresh(), times, 1, len(times), *rest)),
               "general": _best(lambda: _INTEGRATE[(kind, scheme)](0, S, fresh(), times, 1, len(times), *rest))}
        print(f"{name:<18}" + "".join(f"{k:>15}{v / evals * 1e9:7.0f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
