"""Where a cold start goes: numba's compile events of the reference configuration (2 seeds × 10 steps)
in a new process with an empty kernel cache.

    .venv/bin/python bench/cold_compile.py

Prints the import time, the time to the first result, and the compile time of the 12 costliest
functions, inclusive (a function's time includes compiling the callees it compiles first), then every
compiled signature of the recording and charge functions (how often the recording is compiled).
"""

import os
import subprocess
import sys
import tempfile

_SCRIPT = r"""
import time
t0 = time.perf_counter()
from numba.core import event


class Compiles(event.Listener):
    def __init__(self):
        self.started, self.done = {}, []

    def on_start(self, ev):
        self.started[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.perf_counter()

    def on_end(self, ev):
        key = (id(ev.data["dispatcher"]), str(ev.data["args"]))
        f = ev.data["dispatcher"].py_func
        self.done.append((time.perf_counter() - self.started.pop(key), f"{f.__module__}.{f.__qualname__}"))


listener = Compiles()
event.register("numba:compile", listener)
import noether_sim
t1 = time.perf_counter()
m = noether_sim.DeepLinear((10, 16, 16, 5))
d = noether_sim.data.synthetic_regression(10, 5, 64, noise=0.1)
noether_sim.simulate(m, d, method="rk4", h=0.01, n_steps=10, save_every=0.1, seeds=2)
t2 = time.perf_counter()
print(f"import {t1 - t0:.2f} s, first result {t2 - t0:.2f} s (in the process)\n")
print("| compile, inclusive | seconds |")
print("|---|---|")
for dt, name in sorted(listener.done, reverse=True)[:12]:
    print(f"| {name} | {dt:.2f} |")
rec = [(dt, name) for dt, name in listener.done if "record" in name.lower() or "charges" in name.lower()]
print("\nrecording and charge functions, one line per compiled signature (inclusive seconds):")
for dt, name in rec:
    print(f"  {name}: {dt:.2f}")
print(f"all compiles: {len(listener.done)} signatures")
"""


def main():
    import resource
    import time

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        out = subprocess.run([sys.executable, "-c", _SCRIPT], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                             capture_output=True, text=True, check=True)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}; whole process {time.perf_counter() - t0:.1f} s "
          f"wall, {ru.ru_utime + ru.ru_stime:.1f} s CPU (user + system)")
    print(out.stdout)


if __name__ == "__main__":
    main()
