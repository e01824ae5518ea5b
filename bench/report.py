"""Print every table of docs/performance/engine.md from one fresh measurement.

    .venv/bin/python bench/report.py [--no-scaling] [--budget SECONDS]

Measures, in this order and in this one process (plus two child processes for start-up):
the machine's float64 peak (4096 × 4096 NumPy matmul), ours and every installed baseline on the
reference problem (each timed on the size given in bench/cases.py), their agreement with ours on
8 seeds × 200 steps, cold and warm start, and the scaling table (bench/scaling_table.py).
Takes about 3–5 minutes on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402

from bench import baselines  # noqa: E402
from bench.cases import AGREEMENT, CASES, measure  # noqa: E402
from bench.problem import (REFERENCE, blas_info, cpu_model, measured_peak_gflops, ours_result,  # noqa: E402
                           run_ours, start_times)
from bench.scaling_table import LEGEND, scaling_table  # noqa: E402


def _versions() -> str:
    parts = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"numba {numba.__version__}"]
    for mod in ("jax", "torch"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            parts.append(f"{mod} not installed")
    return ", ".join(parts)


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Measure and print the docs/performance/engine.md tables.")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling table (saves ~2 minutes)")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of repeats per case (best of up to 3)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())

    log("peak: 4096 x 4096 float64 matmul ...")
    peak = measured_peak_gflops()

    rows = []
    for case in CASES:
        if not case.available():
            log(f"{case.name}: {case.needs} not installed, skipped")
            continue
        log(f"{case.name}: timing {case.timed.n_seeds} seeds x {case.timed.n_steps} steps ...")
        rows.append(measure(case, args.budget))
    by = {r["name"]: r for r in rows}
    ours = by["ours"]

    log("agreement on 8 seeds x 200 steps ...")
    theta0 = AGREEMENT.theta0()
    ds = run_ours(AGREEMENT, theta0)
    ours_small, scale = ours_result(ds), ds.scale.values
    gaps = {}
    for case in CASES[1:]:
        if case.available():
            gaps[case.name] = baselines.agreement(ours_small, case.prepare(AGREEMENT)(theta0), scale)

    log("cold and warm start (child processes) ...")
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = start_times(cache)
        warm = min((start_times(cache) for _ in range(2)), key=lambda r: r["first_result"])
    from noether_sim.init import Gaussian
    from noether_sim.ensemble import initial_weights

    t0 = time.perf_counter()
    initial_weights(REFERENCE.model, Gaussian(), np.arange(REFERENCE.n_seeds), 0)
    init_s = time.perf_counter() - t0

    # ---------------- print
    print("## Machine\n")
    print(f"- CPU: {cpu_model()} (`lscpu`), shared with other jobs while measured")
    print(f"- float64 peak, 4096 × 4096 NumPy matmul ({blas_info()}): **{peak:.1f} GFLOP/s**")
    print(f"- {_versions()}; numba threads {numba.get_num_threads()}, torch threads 2")
    print(f"- measured {time.strftime('%Y-%m-%d %H:%M')}; load average before the run {load_before}\n")

    print("## Reference problem: 10-16-16-5, N = 64, RK4 h = 0.01, loss + D1, D2 every 10 steps\n")
    best = max((r for r in rows if r is not ours), key=lambda r: r["seed_steps_per_s"], default=None)
    print("| implementation | timed on (seeds × steps) | best s (runs) | cores used | seed-steps/s | ours ÷ it "
          "| it ÷ best baseline | GFLOP/s (own algorithm) | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = "—" if r is ours else f"{ours['seed_steps_per_s'] / r['seed_steps_per_s']:.2f}×"
        vs_best = f"{r['seed_steps_per_s'] / best['seed_steps_per_s']:.2f}×" if best else "—"
        print(f"| {r['label']} | {r['seeds']} × {r['steps']} | {r['seconds']:.3f} ({r['repeats']}) "
              f"| {r['cores_used']:.2f} | {r['seed_steps_per_s']:,.0f} | {ratio} | {vs_best} "
              f"| {r['gflops']:.2f} | {100 * r['gflops'] / peak:.1f} % |")
    best_a = max((r for r in rows if r["group"] == "a"), key=lambda r: r["seed_steps_per_s"], default=None)
    best_c = max((r for r in rows if r["group"] in ("b", "c")), key=lambda r: r["seed_steps_per_s"], default=None)
    print()
    if best:
        print(f"- best baseline: {best['label']}; ours ÷ it: **{ours['seed_steps_per_s'] / best['seed_steps_per_s']:.2f}×**")
    if best_c:
        print(f"- ours vs best same-algorithm baseline ({best_c['label']}): "
              f"**{ours['seed_steps_per_s'] / best_c['seed_steps_per_s']:.2f}×** (target ≥ 5×)")
    if best_a:
        print(f"- ours vs best forward-pass baseline (a) ({best_a['label']}): "
              f"**{ours['seed_steps_per_s'] / best_a['seed_steps_per_s']:.2f}×**")
    if "numpy_moments" in by:
        print(f"- ours vs (b): **{ours['seed_steps_per_s'] / by['numpy_moments']['seed_steps_per_s']:.2f}×**")
    print(f"- ours: **{ours['gflops']:.2f} GFLOP/s = {100 * ours['gflops'] / peak:.1f} % of the measured float64 "
          f"peak** (target ≥ 50 %)")
    print(f"- cold start (new process, empty NUMBA_CACHE_DIR → first result): **{cold['first_result']:.1f} s** "
          f"(target ≤ 10 s; import {cold['import']:.1f} s)")
    print(f"- warm start (new process, cached → first result): **{warm['first_result']:.2f} s** "
          f"(target ≤ 1 s; import {warm['import']:.2f} s)")
    print(f"- not in the timings above: simulate(seeds=1024)'s default Gaussian init draws one "
          f"SeedSequence stream per seed, {init_s:.2f} s for 1024 seeds (ours is timed with init.Given)")
    for name in ("jax_autodiff", "jax_moments"):
        jax_prep = by.get(name, {}).get("prepare_s")
        if jax_prep is not None:
            print(f"- {name}: JAX ahead-of-time compile of its timed problem: {jax_prep:.1f} s (not timed)")
    print("\nAgreement with ours on 8 seeds × 200 steps (asserted in bench/test_bench_engine.py: "
          "≤ 1e-10, ≤ 1e-10, ≤ 1e-12):\n")
    print("| baseline | max rel. Δ final weights | max rel. Δ loss | max Δ drift / scale |")
    print("|---|---|---|---|")
    for name, g in gaps.items():
        print(f"| {name} | {g['theta_rel']:.1e} | {g['loss_rel']:.1e} | {g['drift_over_scale']:.1e} |")
    sys.stdout.flush()

    if not args.no_scaling:
        log("scaling table ...")
        print("\n## Throughput against seeds and hidden width (10-w-w-5, ours)\n")
        print(scaling_table(peak_gflops=peak, log=log))
        print(f"\n{LEGEND}")
    log(f"report took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
