"""Start-up of the reference run, whole process: `import noether_sim`, the warm run, the cold run.

    .venv/bin/python bench/startup.py [--repeats 5] [--cold 3] [--seeds 1024] [--steps 100]

The reference run: deep linear 10-16-16-5, N = 64, 1024 seeds, RK4, h = 0.01, 100 steps, loss and
charges saved every 10 steps. Each number is the median over ``--repeats`` new interpreters, timed
by this parent from launch to exit (so Python's own start-up counts). Warm: the kernel cache is the
filled default one (a first, uncounted run fills it). Cold: ``NUMBA_CACHE_DIR`` set to a new empty
folder for each run, so every kernel the run needs is compiled. ``PYTHONDONTWRITEBYTECODE`` is
removed from the children's environment (a user's interpreter writes .pyc files; without them every
start re-compiles the Python sources). The per-stage table is the median of the warm runs' own
clocks: imports of numpy, numba and xarray, the rest of ``noether_sim.simulate``'s imports, the
first call (which loads the cached kernels and runs), and a second identical call (the run alone).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RUN = r"""
import json, time
t0 = time.perf_counter()
import noether_sim as ns
t1 = time.perf_counter()
{stages}
m = ns.DeepLinear((10, 16, 16, 5))
d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
go = lambda: ns.simulate(m, d, method="rk4", h=0.01, n_steps={steps}, save_every=0.1, seeds={seeds})
t3 = time.perf_counter()
go()
t4 = time.perf_counter()
{again}
print(json.dumps(dict(t0=t0, t1=t1, t3=t3, t4=t4, **stages)))
"""

STAGES = r"""
import numpy; ta = time.perf_counter()
import numba; tb = time.perf_counter()
import xarray; tc = time.perf_counter()
import noether_sim.simulate; td = time.perf_counter()
stages = dict(ta=ta, tb=tb, tc=tc, td=td)
"""


def _env(cache=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    return env


def _whole(code, env):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args(argv)
    plain = RUN.format(stages="stages = {}", again="", steps=a.steps, seeds=a.seeds)
    staged = RUN.format(stages=STAGES, steps=a.steps, seeds=a.seeds,
                        again="t5 = time.perf_counter(); go(); stages['t6'] = time.perf_counter() - t5")
    _whole(plain, _env())  # fills the .pyc files and the kernel cache
    imp = [_whole("import noether_sim", _env())[0] for _ in range(a.repeats)]
    warm = [_whole(plain, _env())[0] for _ in range(a.repeats)]
    rows = [json.loads(_whole(staged, _env())[1].strip().splitlines()[-1]) for _ in range(a.repeats)]
    cold = []
    for _ in range(a.cold):
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as c:
            cold.append(_whole(plain, _env(c))[0])
    med = statistics.median
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load}, {a.seeds} seeds x "
          f"{a.steps} steps, medians (runs)\n")
    print("| whole process | median s | runs |")
    print("|---|---|---|")
    for name, xs in (("import noether_sim", imp), ("warm reference run", warm), ("cold reference run", cold)):
        if xs:
            print(f"| {name} | {med(xs):.2f} | {' '.join(f'{x:.2f}' for x in xs)} |")
    print("\n| warm run, stage (in the process) | median s |")
    print("|---|---|")
    for name, f in (("import noether_sim (package only)", lambda r: r["t1"] - r["t0"]),
                    ("import numpy", lambda r: r["ta"] - r["t1"]), ("import numba", lambda r: r["tb"] - r["ta"]),
                    ("import xarray", lambda r: r["tc"] - r["tb"]),
                    ("import noether_sim.simulate (rest)", lambda r: r["td"] - r["tc"]),
                    ("model + data", lambda r: r["t3"] - r["td"]),
                    ("first simulate (kernel load + run)", lambda r: r["t4"] - r["t3"]),
                    ("second simulate (run alone)", lambda r: r["t6"])):
        print(f"| {name} | {med(f(r) for r in rows):.3f} |")


if __name__ == "__main__":
    main()
