"""Item 4 of issue 24: throughput and peak memory against the number of seeds, 1 and 2 threads, per-seed
records (keep="seeds") and statistics (keep="stats"), and a Dask LocalCluster with 2 workers from an empty
kernel cache (start-up included).

    .venv/bin/python bench/seed_table.py [--sizes 1000 10000 100000] [--steps 100] [--threads 1 2]
                                         [--modes seeds stats] [--dask] [--dask-seeds 4096] [--dask-no-warmup]

The reference problem (deep linear 10-16-16-5, N = 64, RK4, h = 0.01, a record every 10 steps). Every cell
is a new process on the filled kernel cache (so no compiling is timed; the kernel load is): "call" is
simulate() end to end in that process (seeds drawn inside the call), "process" the whole process from
launch to exit, "peak RSS" ``ru_maxrss`` of the child. Per-seed mode is skipped where its records would
exceed ``--max-gb`` (≈ 35 KB a seed at 100 steps). The Dask row: ``run_study`` of the same problem split
into 3 blocks (one method, three step sizes) on ``workers=2``, NUMBA_CACHE_DIR an empty folder, whole process;
it also reports the calling process's warm-up (``execute.compile_here``) and every kernel cache file written
after it, i.e. by a worker that compiled instead of loading (none expected); ``--dask-no-warmup`` skips the
warm-up (a control: then the workers compile).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CELL = r"""
import json, time, resource
import noether_sim as ns
m = ns.DeepLinear((10, 16, 16, 5)); d = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
t0 = time.perf_counter()
ns.simulate(m, d, method="rk4", h=0.01, n_steps={steps}, save_every=0.1, seeds={seeds}, keep="{mode}")
print(json.dumps({{"call": time.perf_counter() - t0}}))
"""

DASK = r"""
import json, time, tempfile, os
import noether_sim as ns
cfg = {{"name": "scale", "t_end": {t_end}, "save_every": 0.1, "model": {{"widths": [10, 16, 16, 5]}},
       "data": {{"n_points": 64, "noise": 0.1}}, "seeds": {{"count": {seeds}}},
       "methods": {{"rk4": {{"dynamics": "gf", "method": "rk4", "step_sizes": [0.01, 0.005, 0.0025]}}}}}}
import noether_sim.execute as ex
cache = os.environ["NUMBA_CACHE_DIR"]
files = lambda: {{os.path.join(r, f): os.stat(os.path.join(r, f)).st_mtime_ns
                 for r, _, fs in os.walk(cache) for f in fs}}
seen = {{}}
here = ex.compile_here
def compile_here(tasks, *a, **k):  # time the warm-up and list the cache right after it
    t = time.perf_counter(); c = time.process_time(); n = here(tasks, *a, **k) if {warmup} else 0
    seen.update(t=time.perf_counter() - t, cpu=time.process_time() - c, files=files(), variants=n)
    return n
ex.compile_here = compile_here
t0 = time.perf_counter()
ns.run_study(cfg, os.path.join(tempfile.mkdtemp(), "scale"), workers=2)
call = time.perf_counter() - t0
after = files()
written = sorted(os.path.basename(f) for f, m in after.items() if seen["files"].get(f) != m)
print(json.dumps({{"call": call, "warmup": seen["t"], "warmup_cpu": seen["cpu"], "variants": seen["variants"],
                  "cache_files": len(seen["files"]), "written_by_workers": written}}))
"""


def run(code, env):
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far (KiB)
    return wall, json.loads(out.stdout.strip().splitlines()[-1])["call"], rss if rss > before else None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["seeds", "stats"])
    ap.add_argument("--max-gb", type=float, default=4.0)
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--dask-seeds", type=int, default=4096)
    ap.add_argument("--dask-no-warmup", action="store_true",
                    help="control: skip the calling process's warm-up, so that each worker compiles")
    a = ap.parse_args(argv)
    env0 = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run(CELL.format(steps=10, seeds=64, mode="seeds"), env0)  # fills the caches; not counted
    print("| seeds | steps | threads | mode | call s | process s | seed-steps/s (call) | peak RSS | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in a.sizes:
        for mode in a.modes:
            if mode == "seeds" and n * a.steps / 100 * 35e3 > a.max_gb * 1e9:
                print(f"| {n:,} | {a.steps} | – | seeds | skipped: records ≈ {n * a.steps / 100 * 35e3 / 1e9:.0f} GB |||||")
                continue
            for t in a.threads:
                env = dict(env0, NUMBA_NUM_THREADS=str(t))
                # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure RSS in the child instead
                code = CELL.format(steps=a.steps, seeds=n, mode=mode).replace(
                    'print(json.dumps({"call"', 'print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "call"')
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - t0
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {n:,} | {a.steps} | {t} | {mode} | {r['call']:.2f} | {wall:.2f} | {n * a.steps / r['call']:,.0f} "
                      f"| {r['rss'] / 1024:,.0f} MiB | {os.getloadavg()[0]:.1f} |", flush=True)
    if a.dask:
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            t_end = 0.1 * max(1, a.steps // 10)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", DASK.format(seeds=a.dask_seeds, t_end=t_end, warmup=not a.dask_no_warmup)],
                                 env=dict(env0, NUMBA_CACHE_DIR=cache), capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"\nDask LocalCluster, 2 workers, empty kernel cache{' (control: no warm-up)' if a.dask_no_warmup else ''}: {a.dask_seeds:,} seeds × 3 step sizes "
                  f"(0.01, 0.005, 0.0025) to t = {t_end:g}: run_study {r['call']:.1f} s, whole process {wall:.1f} s "
                  f"(load average {os.getloadavg()[0]:.1f}); of it the warm-up in the calling process "
                  f"(compile_here, {r['variants']} variant(s)) {r['warmup']:.1f} s wall, {r['warmup_cpu']:.1f} s CPU, "
                  f"{r['cache_files']} cache files; cache files written after the warm-up (by workers compiling): "
                  f"{len(r['written_by_workers'])} {r['written_by_workers']}")


if __name__ == "__main__":
    main()
