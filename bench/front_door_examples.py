"""The examples of the front-door issue, each of which must give a verdict or a ConfigError.

    python bench/front_door_examples.py
"""

import time

import noether_sim as ns

model = ns.DeepLinear((10, 16, 16, 5))
data = ns.data.synthetic_regression(10, 5, 64, noise=0.1)


def show(label, fn):
    t0 = time.perf_counter()
    try:
        rows = ns.summarise_verdicts(ns.analyse_ladder(fn()))
        out = "; ".join(f"{r['charge']}: {r['verdict']}" for r in rows)
    except ns.ConfigError as err:
        out = f"ConfigError: {err}"
    except MemoryError as err:  # must not happen: refused from the estimate
        out = f"MemoryError (a defect): {err}"
    print(f"{label} [{time.perf_counter() - t0:.1f} s]\n    {out}")


show("gl2 ladder", lambda: ns.run_ladder(model, data, method="gl2", step_sizes=[1 / 8, 1 / 16, 1 / 32], t_end=0.5,
                                         save_every=0.25, seeds=4))
show("momentum verlet ladder (zero velocity: J(0) = 0)",
     lambda: ns.run_ladder(model, data, dynamics="momentum", method="verlet", tau=0.5,
                           step_sizes=[1 / 8, 1 / 16, 1 / 32], t_end=0.5, save_every=0.25, seeds=4))
show("momentum verlet ladder (velocity='gradient')",
     lambda: ns.run_ladder(model, data, dynamics="momentum", method="verlet", tau=0.5, velocity="gradient",
                           step_sizes=[1 / 8, 1 / 16, 1 / 32], t_end=0.5, save_every=0.25, seeds=4))
show("run_ladder(n_steps=4)", lambda: ns.run_ladder(model, data, method="rk4", step_sizes=[0.04, 0.02, 0.01],
                                                    n_steps=4, seeds=4))
show("run_ladder without save_every", lambda: ns.run_ladder(model, data, method="rk4",
                                                            step_sizes=[1 / 8, 1 / 16, 1 / 32], t_end=0.5, seeds=4))
show("run_ladder(h=0.01)", lambda: ns.run_ladder(model, data, method="rk4", step_sizes=[0.04, 0.02, 0.01], h=0.01,
                                                 t_end=0.08, seeds=4))
show("run_ladder(method='dopri5')", lambda: ns.run_ladder(model, data, method="dopri5",
                                                          step_sizes=[0.04, 0.02, 0.01], t_end=0.08, seeds=4))
show("simulate(root_seed=-1)", lambda: ns.simulate(model, data, h=0.01, t_end=0.02, root_seed=-1))
show("simulate(seeds=10**9)", lambda: ns.simulate(model, data, h=0.01, t_end=0.02, seeds=10 ** 9))
show("simulate(seeds=10**8)", lambda: ns.simulate(model, data, h=0.01, t_end=0.02, seeds=10 ** 8))
show("simulate(method='gl2', rtol=1e-6)", lambda: ns.simulate(model, data, method="gl2", h=0.1, t_end=0.2, rtol=1e-6))
