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
first call (which loads the cached kernels and runs), and a second identical call (the run alone). The
interpreter's exit (after the script's last line: the final garbage collections and teardown) is timed
as the parent's clock at the child's exit minus the child's clock at its last line.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

RUN = r"""
import json, time
t0 = time.perf_counter(); c0 = time.process_time()
import noether_sim as ns
t1 = time.perf_counter(); c1 = time.process_time()
{stages}
m = ns.DeepLinear((10, 16, 16, 5))
d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
go = lambda: ns.simulate(m, d, method="rk4", h=0.01, n_steps={steps}, save_every=0.1, seeds={seeds})
t3 = time.perf_counter(); c3 = time.process_time()
go()
t4 = time.perf_counter(); c4 = time.process_time()
{again}
print(json.dumps(dict(t0=t0, t1=t1, t3=t3, t4=t4, c0=c0, c1=c1, c3=c3, c4=c4, now=time.time(),
                      cpu=time.process_time(), **stages)))
"""

STAGES = r"""
import numpy; ta = time.perf_counter(); ca = time.process_time()
import numba; tb = time.perf_counter(); cb = time.process_time()
import xarray; tc = time.perf_counter(); cc = time.process_time()
import noether_sim.simulate; td = time.perf_counter(); cd = time.process_time()
stages = dict(ta=ta, tb=tb, tc=tc, td=td, ca=ca, cb=cb, cc=cc, cd=cd)
"""


def _env(cache=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    return env


def _cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _whole(code, env):
    """(wall s, stdout, CPU s of the child: user + system, all threads, time.time() at its exit)."""
    c0, t0 = _cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout, _cpu() - c0, time.time()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args(argv)
    plain = RUN.format(stages="stages = {}", again="", steps=a.steps, seeds=a.seeds)
    staged = RUN.format(stages=STAGES, steps=a.steps, seeds=a.seeds,
                        again="t5 = time.perf_counter(); c5 = time.process_time(); go(); "
                              "stages['t6'] = time.perf_counter() - t5; stages['c6'] = time.process_time() - c5")
    _whole(plain, _env())  # fills the .pyc files and the kernel cache
    imp = [_whole("import noether_sim", _env()) for _ in range(a.repeats)]
    warm = [_whole(plain, _env()) for _ in range(a.repeats)]
    rows = [json.loads(_whole(staged, _env())[1].strip().splitlines()[-1]) for _ in range(a.repeats)]
    cold = []
    for _ in range(a.cold):
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as c:
            cold.append(_whole(plain, _env(c)))
    med = statistics.median
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load}, {a.seeds} seeds x "
          f"{a.steps} steps, medians (runs)\n")
    print("| whole process | median wall s | runs (wall s) | median CPU s |")
    print("|---|---|---|---|")
    for name, xs in (("import noether_sim", imp), ("warm reference run", warm), ("cold reference run", cold)):
        if xs:
            print(f"| {name} | {med(x[0] for x in xs):.2f} | {' '.join(f'{x[0]:.2f}' for x in xs)} "
                  f"| {med(x[2] for x in xs):.2f} |")
    print("\n| warm run, stage (in the process) | wall s | CPU s (all threads) |")
    print("|---|---|---|")
    for name, a_, b_ in (("import noether_sim (package only)", "0", "1"), ("import numpy", "1", "a"),
                         ("import numba", "a", "b"), ("import xarray", "b", "c"),
                         ("import noether_sim.simulate (rest)", "c", "d"), ("model + data", "d", "3"),
                         ("first simulate (kernel load + run)", "3", "4")):
        print(f"| {name} | {med(r['t' + b_] - r['t' + a_] for r in rows):.3f} "
              f"| {med(r['c' + b_] - r['c' + a_] for r in rows):.3f} |")
    print(f"| second simulate (run alone) | {med(r['t6'] for r in rows):.3f} | {med(r['c6'] for r in rows):.3f} |")
    js = [json.loads(x[1].strip().splitlines()[-1]) for x in warm]
    print(f"\nwarm reference run, whole process (medians of {len(warm)}): script (import to result) "
          f"{med(j['t4'] - j['t0'] for j in js):.3f} s wall; first simulate {med(j['t4'] - j['t3'] for j in js):.3f} "
          f"s wall, {med(j['c4'] - j['c3'] for j in js):.3f} s CPU; interpreter exit after the last line "
          f"{med(x[3] - j['now'] for x, j in zip(warm, js)):.3f} s wall, {med(x[2] - j['cpu'] for x, j in zip(warm, js)):.3f} s CPU")
    print("\nCPU s: time.process_time() of the process, all its threads; on a busy machine it shows the work "
          "a stage does where the wall time shows the wait too.")

if __name__ == "__main__":
    main()
