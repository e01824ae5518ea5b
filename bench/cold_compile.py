"""Where a cold start goes: numba's compile events of the reference run in a new process with an empty
kernel cache, and where a warm start's kernel loads go.

    .venv/bin/python bench/cold_compile.py            # cold: every compiled function, exclusive seconds
    .venv/bin/python bench/cold_compile.py --warm     # warm: every cache load, in the order of the run

The run is the reference run of bench/startup.py (deep linear 10-16-16-5, N = 64, RK4, h = 0.01, 100 steps,
a record every 10 steps; ``--seeds``, default 1024). Cold prints the number of compiled functions
(numba's ``numba:compile`` events: one per function and signature) and, per function, its exclusive time
(its own typing, lowering and LLVM work, its callees' compiles taken out) and its inclusive time, with the
process's CPU seconds. Warm fills a cache first (uncounted), then in a new process times each
``Cache.load_overload`` (the first one includes numba's target start-up, which any first load pays).
"""

import argparse
import os
import subprocess
import sys
import tempfile

_RUN = r"""
import sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from numba.core import caching, event


class Compiles(event.Listener):
    def __init__(self):
        self.stack, self.done = [], []

    def on_start(self, ev):
        self.stack.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, inner = self.stack.pop()
        dt = time.perf_counter() - start
        if self.stack:
            self.stack[-1][1] += dt
        f = ev.data["dispatcher"].py_func
        self.done.append((dt - inner, dt, f"{f.__module__}.{f.__qualname__}".replace("noether_sim.kernels.", "")))


compiles = Compiles()
event.register("numba:compile", compiles)
loads = []
_load = caching.Cache.load_overload


def load_overload(self, sig, target_context):
    t, c = time.perf_counter(), time.process_time()
    out = _load(self, sig, target_context)
    loads.append((time.perf_counter() - t, time.process_time() - c, self._name, out is not None))
    return out


caching.Cache.load_overload = load_overload
import noether_sim as ns
m = ns.DeepLinear((10, 16, 16, 5))
d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
ns.simulate(m, d, method="rk4", h=0.01, n_steps=100, save_every=0.1, seeds=SEEDS)
t1 = time.perf_counter(); c1 = time.process_time()
print(f"whole run in the process: {t1 - t0:.2f} s wall, {c1 - c0:.2f} CPU s")
if compiles.done:
    print(f"\n{len(compiles.done)} functions compiled (function × signature), exclusive sum "
          f"{sum(x[0] for x in compiles.done):.2f} s\n")
    print("| compiled function | exclusive s | inclusive s |")
    print("|---|---|---|")
    for ex, inc, name in sorted(compiles.done, reverse=True)[:TOP]:
        print(f"| {name} | {ex:.2f} | {inc:.2f} |")
    rec = [(inc, name) for _, inc, name in compiles.done if "record" in name.lower() or "charges" in name.lower()]
    print("\nrecording and charge functions, one line per compiled signature (inclusive seconds):")
    for inc, name in rec:
        print(f"  {name}: {inc:.2f}")
if any(hit for *_, hit in loads):  # a cold run's loads are all misses
    print(f"\n{len(loads)} cache loads, {sum(x[0] for x in loads):.3f} s wall, {sum(x[1] for x in loads):.3f} CPU s "
          f"(the first includes numba's target start-up)\n")
    print("| loaded function | wall s | CPU s | hit |")
    print("|---|---|---|---|")
    for wall, cpu, name, hit in loads:
        label = name.split(" ")[1] if name.startswith("<function ") else name
        print(f"| {label} | {wall:.3f} | {cpu:.3f} | {hit} |")
"""


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", action="store_true", help="time the cache loads of a warm run instead")
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--top", type=int, default=40, help="rows of the compile table")
    a = ap.parse_args(argv)
    code = _RUN.replace("SEEDS", str(a.seeds)).replace("TOP", str(a.top))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env["NUMBA_CACHE_DIR"] = cache
        if a.warm:
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    print(f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(out.stdout)


if __name__ == "__main__":
    main()
