"""Peak memory and throughput of keep="stats" against per-seed records (keep="seeds"), reference problem.

    .venv/bin/python bench/stats_memory.py [--sizes 100000 1000000] [--modes stats seeds] [--steps 100]
                                           [--repeats 1] [--seeds-max 200000] [--progress] [--sample-every S]

Reference network 10-16-16-5, N = 64 points, RK4 h = 0.01, a record every 10 steps, default Gaussian
initialisation (drawn inside the call, chunk by chunk in stats mode). Every (mode, size) runs in a fresh
process: after a small warm-up call (compiles or loads the kernels) the process's peak RSS is read
(``baseline``), then one timed call; the peak RSS after it is the run's (``resource.getrusage``,
ru_maxrss). Throughput is seed-steps per second of the whole call (initial weights, integration, the
records or the fold, the result) and of the integration loops alone (``wall_seconds``). Per-seed mode
runs only up to ``--seeds-max`` seeds (it holds every seed's records: ≈ 35 GB at 10^6).
Prints a markdown table; timings on a shared machine vary with its load (printed).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sample_rss(samples, stop, every):
    """RSS over time (from /proc/self/statm), every ``every`` seconds, into ``samples`` as (s, bytes)."""
    page = os.sysconf("SC_PAGE_SIZE")
    t0 = time.perf_counter()
    while not stop.wait(every):
        with open("/proc/self/statm") as f:
            samples.append((round(time.perf_counter() - t0, 1), int(f.read().split()[1]) * page))


def child(mode, n_seeds, steps, chunk, progress=False, sample_every=0.0):
    import threading

    sys.path.insert(0, str(ROOT))
    import noether_sim as ns
    from bench.problem import REFERENCE

    p = REFERENCE.with_(n_seeds=n_seeds, n_steps=steps)
    keep = "seeds" if mode == "seeds" else ns.Stats(chunk=chunk)
    kw = dict(method="rk4", h=p.h, n_steps=p.n_steps, save_every=p.save_every)
    ns.simulate(p.model, p.data, seeds=256, keep=keep, **kw)  # warm-up: kernels compiled or loaded
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(samples, stop, sample_every), daemon=True)
    if sample_every > 0:
        sampler.start()
    t0 = time.perf_counter()
    ds = ns.simulate(p.model, p.data, seeds=n_seeds, keep=keep, progress=progress, **kw)
    wall = time.perf_counter() - t0
    stop.set()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    loop = float(ds.attrs["wall_seconds"])
    n_failed = int(ds.attrs["n_failed"])
    print(json.dumps({"mode": mode, "seeds": n_seeds, "steps": steps, "wall": wall, "loop": loop,
                      "rss": rss, "baseline": baseline, "failed": n_failed,
                      "rate": n_seeds * steps / wall, "loop_rate": n_seeds * steps / loop,
                      "rss_over_time": samples}))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--modes", nargs="+", default=["stats", "seeds"], choices=["stats", "seeds"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seeds-max", type=int, default=200_000, help="largest per-seed-mode run")
    ap.add_argument("--progress", action="store_true", help="a progress bar (on stderr) in each child")
    ap.add_argument("--sample-every", type=float, default=0.0, help="seconds between RSS samples (0: none)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "SEEDS", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.chunk, args.progress, args.sample_every)
        return
    rows = []
    for n in args.sizes:
        for _ in range(args.repeats):  # modes interleaved: both see the same machine load
            for mode in args.modes:
                if mode == "seeds" and n > args.seeds_max:
                    continue
                extra = (["--progress"] if args.progress else []) + ["--sample-every", str(args.sample_every)]
                out = subprocess.run([sys.executable, __file__, "--chunk", str(args.chunk), *extra, "--child", mode,
                                      str(n), str(args.steps)], stdout=subprocess.PIPE, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["load"] = os.getloadavg()[0]
                rows.append(row)
                print(json.dumps({k: x for k, x in row.items() if k != "rss_over_time"}), file=sys.stderr, flush=True)
                if row["rss_over_time"]:
                    print("RSS over time (s: MiB): " + ", ".join(f"{t:g}: {b / 2**20:.0f}" for t, b in
                                                                row["rss_over_time"]), file=sys.stderr, flush=True)
    print(f"\nthreads {os.environ.get('NUMBA_NUM_THREADS', os.cpu_count())}, chunk {args.chunk} seeds (stats mode)\n")
    print("| mode | seeds | steps | peak RSS | RSS after warm-up | seed-steps/s (whole call) | "
          "seed-steps/s (loops only) | failed | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['seeds']:,} | {r['steps']} | {r['rss'] / 2**20:,.0f} MiB | "
              f"{r['baseline'] / 2**20:,.0f} MiB | {r['rate']:,.0f} | {r['loop_rate']:,.0f} | {r['failed']} | "
              f"{r['load']:.1f} |")


if __name__ == "__main__":
    main()
