"""Overhead of the sweep layer (Dask scheduling, store writes, checksums, the final verified load) against
the summed integration time of the blocks, in this process and on a two-worker `dask scheduler`.

Usage: .venv/bin/python bench/sweep_overhead.py [CONFIG.toml] [--set KEY=VALUE ...] [--no-scheduler]
(default CONFIG: bench/sweep_bench.toml, 12 points × 4 step sizes = 48 blocks of 1024 seeds).

Integration time is each block's ``wall_seconds`` (what ``simulate()`` measures around its kernels);
everything else a run spends is counted as overhead: building each point's model and data, wrapping
results, writing Zarr, checksums, markers, scheduling, and loading the finished store (with every
checksum verified) at the end. Nothing is asserted: the numbers go into docs/performance/sweep.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _warm(cfg_plan):
    """One tiny block in this process: numba's kernels loaded from the on-disk cache before timing."""
    import noether_sim as ns

    ns.simulate(ns.DeepLinear((4, 5, 3)), ns.data.synthetic_regression(4, 3, 8, seed=0), method="rk4", h=0.01,
                t_end=0.02, seeds=2)
    ns.simulate(ns.DeepLinear((4, 5, 3)), ns.data.synthetic_regression(4, 3, 8, seed=0), dynamics="gd", h=0.01,
                t_end=0.02, seeds=2)


def measure(plan, out, **where) -> dict:
    import noether_sim as ns
    from noether_sim.results import load

    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    ds = ns.run_study(out=out, plan=plan, **where)
    total = time.perf_counter() - t0
    t1 = time.perf_counter()
    load(out)
    t_load = time.perf_counter() - t1
    import json

    timings = [json.loads(p.read_text())["timing"] for p in (out / "blocks").glob("*__h*.done")]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"blocks": len(timings), "total": total, "load": t_load, "store_bytes": size,
            "integration": sum(t["integration"] for t in timings),
            "simulate_rest": sum(t["build_and_simulate"] - t["integration"] for t in timings),
            "writes": sum(t["write_seconds_before_marker"] for t in timings)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "bench" / "sweep_bench.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--no-scheduler", action="store_true", help="skip the two-worker scheduler run")
    args = ap.parse_args(argv)

    from noether_sim.sweep import plan as make_plan

    plan = make_plan(args.config, args.overrides)
    n_points = len(plan.points or [None])
    base = (plan.points or [plan.config])[0]
    print(f"sweep {plan.name!r}: {n_points} points, {base['seeds']['count']} seeds, "
          f"{sum(len(m['step_sizes']) for m in base['methods'].values()) * n_points} blocks; "
          f"{os.cpu_count()} CPUs")
    _warm(plan)
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    rows = []
    try:
        r = measure(plan, work / "here")
        rows.append(("this process (kernels on every core)", r, 1))
        if not args.no_scheduler:
            port = _free_port()
            address = f"tcp://127.0.0.1:{port}"
            env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
            dask = str(Path(sys.executable).with_name("dask"))
            procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
            try:
                procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                            "--no-dashboard", "--name", f"w{i}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                          for i in range(2)]
                from distributed import Client

                deadline = time.monotonic() + 120
                while True:
                    try:
                        with Client(address, timeout="5s") as c:
                            if len(c.scheduler_info()["workers"]) == 2:
                                c.run(_warm, None)  # each worker loads the cached kernels before timing
                                break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("workers did not connect")
                    time.sleep(0.5)
                r = measure(plan, work / "scheduler", scheduler=address)
                rows.append(("dask scheduler + 2 workers (1 thread each)", r, 2))
            finally:
                for p in procs[::-1]:
                    p.terminate()
                    p.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| where the blocks ran | blocks | wall (s) | ideal: Σ integration / workers (s) | simulate() beyond its "
          "kernels, model and data | Zarr writes + checksums | scheduling, markers, idle | **sweep-layer overhead** "
          "| final load, all checksums verified | store |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r, n in rows:
        ideal = r["integration"] / n
        run = r["total"] - r["load"]  # run_study ends by loading the store: reported on its own
        sim, wr = r["simulate_rest"] / n, r["writes"] / n
        rest = run - ideal - sim - wr
        pct = lambda x: f"{x:.1f} s ({100 * x / ideal:.1f} %)"  # noqa: E731
        print(f"| {name} | {r['blocks']} | {run:.1f} | {ideal:.1f} | {pct(sim)} | {pct(wr)} | {pct(rest)} | "
              f"**{pct(wr + rest)}** | {pct(r['load'])} | {r['store_bytes'] / 2**20:.0f} MiB |")
    print("\nPer-block sums of the scheduler run are divided by its 2 workers (wall-clock equivalents). "
          "'simulate() beyond its kernels' is the block's own cost outside the integration (drawing the initial "
          "weights, charges at t = 0, wrapping results) plus building the point's model and data.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
