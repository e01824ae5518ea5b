"""Throughput of simulate() against the number of seeds and the hidden width; prints a markdown table.

    .venv/bin/python bench/scaling_table.py [--budget 1.0] [--max-state-gb 1.0]

Network 10-w-w-5 (no biases), N = 64, RK4 h = 0.01, loss and charges recorded every 10 steps, as in
the reference problem. Each cell first runs 1 step (compiles nothing new — one specialisation —
and calibrates), then runs of 10, 20, … steps (multiples of 10, at most 1000) until one fills a
third of ``--budget`` seconds, which is the measurement; a cell where even 10 steps would take
over 3 budgets keeps the 1-step calibration run (marked ≈…*: its two recordings, at t = 0 and t = h, are a third of its work, so its seed-steps/s
is quoted as the measured FLOP rate divided by the FLOPs per seed-step of the reference pattern —
1000 steps, a record every 10 — rather than raw).
Time is simulate() end to end, with the initial rows passed in (init.Given) so no random draws are
timed. Cells whose state (seeds × params × 8 bytes) exceeds --max-state-gb are skipped: simulate
holds about four copies of it, and the machine is shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.problem import REFERENCE, n_params, run_flops, run_ours
else:
    from .problem import REFERENCE, n_params, run_flops, run_ours

SEEDS = (64, 256, 1024, 4096, 16384)
HIDDEN = (8, 16, 32, 64, 128)


LEGEND = ("Cells: seed-steps/s (achieved GFLOP/s of our algorithm, % of peak), simulate() end to end, one run "
          "each. ≈…* = a 1-step run (10 steps would exceed the time budget), its FLOP rate converted to "
          "seed-steps/s of the reference pattern (a record every 10 steps). Skipped cells would hold over "
          "1 GB of state (simulate keeps ~4 copies).")


def gaussian_rows(widths, n_seeds, seed=0):
    """Rows with W_i entries N(0, 1/n_{i−1}) (the default init's law), drawn in one call: the scaling
    table does not need simulate()'s per-seed streams, and drawing those costs ~1 ms per seed."""
    rng = np.random.default_rng(seed)
    cols = [rng.standard_normal((n_seeds, widths[i] * widths[i - 1])) / np.sqrt(widths[i - 1])
            for i in range(1, len(widths))]
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


def _timed(problem, theta0):
    t0 = time.perf_counter()
    ds = run_ours(problem, theta0)
    seconds = time.perf_counter() - t0
    if int(ds.n_failed):
        raise RuntimeError(f"{int(ds.n_failed)} seeds failed in {problem}")
    return seconds


def measure_cell(hidden: int, n_seeds: int, budget_s: float = 1.0) -> dict:
    widths = (10, hidden, hidden, 5)
    base = REFERENCE.with_(widths=widths, n_seeds=n_seeds)
    theta0 = gaussian_rows(widths, n_seeds)
    calib = base.with_(n_steps=1, record_every=1)
    t1 = _timed(calib, theta0)
    # one step + two recordings (≈ 1.5 steps of work) → seconds per step
    per_step = t1 / 1.5
    if 10 * per_step > 3 * budget_s:
        problem, seconds, marked = calib, t1, True
    else:
        # grow the run until it fills a third of the budget (simulate's fixed costs then matter
        # little) or reaches 1000 steps; the last run is the measurement
        n_steps, marked = 10, False
        while True:
            problem = base.with_(n_steps=n_steps)
            seconds = _timed(problem, theta0)
            if seconds >= budget_s / 3 or n_steps >= 1000:
                break
            n_steps = int(min(1000, max(2 * n_steps, budget_s / seconds * n_steps // 10 * 10)))
    gflops = run_flops(problem) / seconds / 1e9
    # a 1-step run spends a third of its work on its two recordings: convert its FLOP rate to the
    # seed-steps/s of the reference pattern (1000 steps, a record every 10) instead of quoting it raw
    pattern = base.with_(n_steps=1000)
    equivalent = gflops * 1e9 / (run_flops(pattern) / pattern.seed_steps())
    return {"hidden": hidden, "seeds": n_seeds, "steps": problem.n_steps, "seconds": seconds,
            "seed_steps_per_s": equivalent if marked else problem.seed_steps() / seconds,
            "measured_seed_steps_per_s": problem.seed_steps() / seconds,
            "gflops": gflops, "calibration_only": marked}


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def scaling_table(seeds=SEEDS, hidden=HIDDEN, budget_s: float = 1.0, max_state_gb: float = 1.0,
                  peak_gflops: float | None = None, log=print) -> str:
    """The markdown table (rows: hidden width, columns: seeds; cells: seed-steps/s and GFLOP/s)."""
    run_ours(REFERENCE.with_(n_seeds=2, n_steps=10), gaussian_rows(REFERENCE.widths, 2))  # load kernels
    head = "| hidden width (P) | " + " | ".join(f"{s:,} seeds" for s in seeds) + " |"
    lines = [head, "|" + "---|" * (len(seeds) + 1)]
    for w in hidden:
        widths = (10, w, w, 5)
        P = n_params(widths)
        cells = []
        for s in seeds:
            if s * P * 8 / 1e9 > max_state_gb:
                cells.append("skipped (state > {:.3g} GB)".format(max_state_gb))
                continue
            r = measure_cell(w, s, budget_s)
            pct = f", {100 * r['gflops'] / peak_gflops:.0f}%" if peak_gflops else ""
            mark = ("≈", "*") if r["calibration_only"] else ("", "")
            cells.append(f"{mark[0]}{_si(r['seed_steps_per_s'])}{mark[1]} ({r['gflops']:.2f} GF/s{pct})")
            log(f"  hidden {w:4d}  seeds {s:6d}  steps {r['steps']:5d}  {r['seconds']:7.2f} s  "
                f"{r['seed_steps_per_s']:12.0f} seed-steps/s  {r['gflops']:6.2f} GFLOP/s")
        lines.append(f"| {w} ({P:,}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per cell (default 1)")
    ap.add_argument("--max-state-gb", type=float, default=1.0)
    ap.add_argument("--peak", type=float, default=None, help="float64 peak GFLOP/s, to print %% of peak")
    args = ap.parse_args(argv)
    table = scaling_table(budget_s=args.budget, max_state_gb=args.max_state_gb, peak_gflops=args.peak,
                          log=lambda s: print(s, file=sys.stderr))
    print(table)
    print(f"\n{LEGEND}")


if __name__ == "__main__":
    main()
