"""Experiment (issue 24, cold start): compile the fast path's recording entry in a second process while this
one compiles the stepper, on an empty kernel cache. Not part of the package: it measures whether the idea
pays on this machine before anyone builds it in.

    .venv/bin/python bench/parallel_compile.py [--pairs 2] [--seeds 1024] [--steps 100]

Each pair runs the reference run twice in new interpreters, each with its own empty ``NUMBA_CACHE_DIR``:
"sequential" as the package does it, "parallel" with ``lanes._record_seeds`` compiled by a child process
(``dispatcher.compile(signature)``, the signature taken from the first call's arguments) while the run
compiles ``lanes._advance_lanes``; the run's first ``_record_seeds`` call waits for the child and then
loads the entry from the cache the child wrote (numba writes each cache file atomically). Reported: whole
process wall and CPU seconds (the child's included: it is waited for), and the loads/compiles of
``_record_seeds`` in the run (a load means the child's work was used).
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
import json, pickle, subprocess, sys, threading, time
import numpy as np
import noether_sim as ns
from noether_sim.kernels import lanes as L
CHILD = ("import pickle, sys\nfrom noether_sim.kernels import lanes\n"
         "lanes._record_seeds.compile(pickle.loads(sys.stdin.buffer.read()))\n")
state = {{"proc": None, "spawned": False}}
lock = threading.Lock()
disp, integrate = L._record_seeds, L.lanes_integrate

def patched(args, general):
    with lock:
        if not state["spawned"]:
            state["spawned"] = True
            seed_lo, seed_hi, st, save_times, first, last, model, method, cfg, refs, rec = args
            redo = np.zeros(seed_hi - seed_lo, np.bool_)
            sig = tuple(disp.typeof_pyval(a) for a in (seed_lo, seed_hi, first, st, model, cfg, refs, rec, redo))
            p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE)
            p.stdin.write(pickle.dumps(sig)); p.stdin.close()
            state["proc"] = p
    return integrate(args, general)

def waiting(*a):
    with lock:
        if state["proc"] is not None:
            state["proc"].wait(); state["proc"] = None
    return disp(*a)

if {parallel}:
    L.lanes_integrate, L._record_seeds = patched, waiting  # (entries.integrate imports lanes_integrate per call)
m = ns.DeepLinear((10, 16, 16, 5)); d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
ds = ns.simulate(m, d, method="rk4", h=0.01, n_steps={steps}, save_every=0.1, seeds={seeds})
print(json.dumps(dict(hits=sum(disp.stats.cache_hits.values()), misses=sum(disp.stats.cache_misses.values()),
                      loss=ds.loss.values.tobytes().hex()[:32])))
"""


def one(parallel, a):
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["NUMBA_CACHE_DIR"] = cache
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", RUN.format(parallel=parallel, steps=a.steps, seeds=a.seeds)],
                             env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        return dict(wall=wall, cpu=cpu, load=os.getloadavg()[0], **json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args(argv)
    rows = {"sequential": [], "parallel": []}
    for _ in range(a.pairs):
        for name, par in (("sequential", False), ("parallel", True)):
            r = one(par, a)
            rows[name].append(r)
            print(f"{time.strftime('%H:%M:%S', time.gmtime())} {name:10s} wall {r['wall']:7.1f} s  CPU {r['cpu']:6.1f} s  "
                  f"_record_seeds loaded {r['hits']} compiled {r['misses']}  load avg {r['load']:.1f}  loss {r['loss']}",
                  flush=True)
    for name, xs in rows.items():
        print(f"{name}: median wall {statistics.median(x['wall'] for x in xs):.1f} s, "
              f"median CPU {statistics.median(x['cpu'] for x in xs):.1f} s")


if __name__ == "__main__":
    main()
