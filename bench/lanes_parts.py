"""Where the time of the seed-interleaved fast path goes, on one core, against the machine's peak.

    .venv/bin/python bench/lanes_parts.py

Single-thread CPU time (process_time, best of 5; the machine is shared, so wall time is not used) of

- one gradient of the reference network (10-16-16-5) per seed: the per-seed kernel
  (linear.linear_loss_grad_output_side, with its loss) and the lane kernel (lanes.lane_gradient_field,
  a block of 8 seeds, divided by 8);
- one RK4 stage sum (explicit.combine) over a block of 8 seeds' states, per seed;
- simulate() per seed-step with the fast path, recording every 10 steps and recording only at the end;
- the one-core float64 peak: a 4096² NumPy matmul on one OpenBLAS thread.

It prints FLOPs and bytes per seed-step (the roofline inputs) and the share of the time in each part.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from bench.problem import REFERENCE, gradient_flops, run_flops, run_ours  # noqa: E402
from noether_sim.kernels.lanes import lane_gradient_field  # noqa: E402
from noether_sim.kernels.lanes_gemm import LANES, lane_combine  # noqa: E402
from noether_sim.kernels.linear import linear_loss_grad_output_side, linear_work_size  # noqa: E402

numba.set_num_threads(1)


@njit
def _scalar_grads(theta, ints, floats, sxx, syx, n):
    P = theta.shape[1]
    g = np.empty(P)
    work = np.empty(linear_work_size(ints))
    s = 0.0
    for i in range(n):
        s += linear_loss_grad_output_side(theta[i % theta.shape[0]], g, ints, floats, sxx, syx, work)
    return s + g[0]


@njit
def _lane_grads(block, ints, sxx, syx, n):
    out = np.empty_like(block)
    work = np.empty(linear_work_size(ints) * LANES)
    for _ in range(n):
        lane_gradient_field(block, out, ints, 0.0, sxx, syx, work)
    return out[0]


@njit
def _combines(y, K, a, n):
    stage = np.empty_like(y)
    for _ in range(n):
        lane_combine(y, 0.005, a, K, stage, np.inf)
    return stage[0]


def tile_counts(widths):
    """Per 8-seed block and gradient: the products lane_gradient_field runs (m, n, K), with their vector
    FMAs, vector loads (operands, per tile and k: rows + cols) and stores, for the 4 × 4-at-most tiles."""
    n = list(widths)
    L = len(n) - 1
    nL = n[L]
    prods = [("R_%d = R_%d W_%d" % (i, i + 1, i + 1), nL, n[i], n[i + 1]) for i in range(L - 2, 0, -1)]
    prods.append(("A = R_1 W_1", nL, n[0], n[1]))
    prods.append(("T = A Sxx (shared)", nL, n[0], n[0]))
    for i in range(1, L):
        prods.append((f"G_{i} = R_{i}^T Phi_{i}^T", n[i], n[i - 1], nL))
        prods.append((f"Phi_{i + 1} = W_{i} Phi_{i}" + (" (= G_L^T)" if i + 1 == L else ""), n[i], nL, n[i - 1]))
    rows = []
    for name, m, nn, K in prods:
        ti, tj = -(-m // 4), -(-nn // 4)
        loads = 0
        for a in range(ti):
            r = m // ti + (1 if a < m % ti else 0)
            for b in range(tj):
                c = nn // tj + (1 if b < nn % tj else 0)
                loads += K * (r + c)
        rows.append((name, m, nn, K, m * nn * K, loads, m * nn))
    return rows


def best_cpu(fn, reps=5):
    best = np.inf
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main():
    problem = REFERENCE
    model, data = problem.model, problem.data
    ints, floats = model.descriptor(), model.constants(data)
    sxx, syx = model.kernel_data(data)
    theta = problem.theta0()[:LANES]
    P = theta.shape[1]
    block = np.ascontiguousarray(theta.T).ravel()  # [param][lane]

    n = 20000
    _scalar_grads(theta, ints, floats, sxx, syx, 10)
    _lane_grads(block, ints, sxx, syx, 10)
    t_scalar = best_cpu(lambda: _scalar_grads(theta, ints, floats, sxx, syx, n)) / n
    t_lane = best_cpu(lambda: _lane_grads(block, ints, sxx, syx, n // LANES)) / (n // LANES) / LANES
    K = np.random.default_rng(0).standard_normal((4, P * LANES))
    a = np.array([0.0, 0.0, 0.5, 0.0])
    _combines(block, K, a, 10)
    t_comb = best_cpu(lambda: _combines(block, K, a, n // LANES)) / (n // LANES) / LANES

    A = np.random.default_rng(1).standard_normal((4096, 4096))
    A @ A
    peak = 2 * 4096 ** 3 / best_cpu(lambda: A @ A, reps=2) / 1e9

    sim = problem.with_(n_seeds=256)
    th = sim.theta0()
    run_ours(sim.with_(n_seeds=8, n_steps=10), th[:8])
    t_sim = best_cpu(lambda: run_ours(sim, th), reps=3) / sim.seed_steps()
    no_rec = sim.with_(record_every=sim.n_steps)
    run_ours(no_rec.with_(n_seeds=8, n_steps=no_rec.record_every), th[:8])
    t_norec = best_cpu(lambda: run_ours(no_rec, th), reps=3) / sim.seed_steps()

    g_flops = gradient_flops(problem.widths)
    step_flops = run_flops(problem) / problem.seed_steps()
    state = P * 8
    print(f"reference network {problem.widths}: P = {P}, {g_flops:,} FLOPs per gradient, "
          f"{step_flops:,.0f} FLOPs per seed-step (RK4 + a record every {problem.record_every} steps)")
    print(f"one-core float64 peak (4096² NumPy matmul, one OpenBLAS thread): {peak:.1f} GFLOP/s")
    print("\n| part (one core) | µs per seed | GFLOP/s | % of one-core peak |")
    print("|---|---|---|---|")
    print(f"| gradient, per-seed kernel | {t_scalar * 1e6:.3f} | {g_flops / t_scalar / 1e9:.1f} | "
          f"{100 * g_flops / t_scalar / 1e9 / peak:.0f} % |")
    print(f"| gradient, 8-lane kernel (per seed) | {t_lane * 1e6:.3f} | {g_flops / t_lane / 1e9:.1f} | "
          f"{100 * g_flops / t_lane / 1e9 / peak:.0f} % |")
    print(f"| RK stage sum (one term: y + hw·K, one pass), per seed | {t_comb * 1e6:.3f} | {2 * P / t_comb / 1e9:.1f} "
          f"| — ({24 * P / t_comb / 1e9:.0f} GB/s: 2 loads + 1 store of 8 B per entry) |")
    print(f"| simulate() per seed-step, record every 10 steps | {t_sim * 1e6:.3f} | "
          f"{step_flops / t_sim / 1e9:.1f} | {100 * step_flops / t_sim / 1e9 / peak:.0f} % |")
    print(f"| simulate() per seed-step, record at the end only | {t_norec * 1e6:.3f} | — | — |")
    four = 4 * t_lane
    print(f"\nper seed-step (one core): 4 gradients {four * 1e6:.2f} µs ({100 * four / t_sim:.0f} %), "
          f"recording {(t_sim - t_norec) * 1e6:.2f} µs ({100 * (t_sim - t_norec) / t_sim:.0f} %), "
          f"stage sums, update and the rest {(t_norec - four) * 1e6:.2f} µs ({100 * (t_norec - four) / t_sim:.0f} %)")
    rows = tile_counts(problem.widths)
    print("\n| product (per 8-seed block) | m × n × K | vector FMAs | vector loads | vector stores |")
    print("|---|---|---|---|---|")
    for name, m, nn, K, f, ld, stv in rows:
        print(f"| {name} | {m} × {nn} × {K} | {f:,} | {ld:,} | {stv:,} |")
    tf, tl, ts = (sum(r[i] for r in rows) for i in (4, 5, 6))
    print(f"| total | | {tf:,} | {tl:,} ({tl * 64 / 1024:.0f} KiB) | {ts:,} |")
    cycles = t_lane * LANES * peak * 1e9 / 16  # one-core peak = 16 FLOP (one 8-wide FMA) per cycle
    print(f"\none block's gradient: {tf:,} 8-wide FMAs = {tf:,} cycles at one FMA per cycle; measured "
          f"{cycles:,.0f} cycles (the peak's cycle rate), i.e. {100 * tf / cycles:.0f} % FMA issue; "
          f"{tl / tf:.2f} vector loads per FMA from a working set of {(P + P + linear_work_size(ints)) * 8 * LANES / 1024:.0f} KiB "
          f"(θ, the gradient, work) that exceeds L1 (32 KiB) and lives in L2")
    print(f"bytes: one seed's state {state:,} B; an 8-seed block's RK4 working set (y, 4 K, stage, new, work) "
          f"{(7 * P + linear_work_size(ints)) * 8 * LANES:,} B; a stage sum streams {3 * state * LANES:,}–"
          f"{6 * state * LANES:,} B per block")


if __name__ == "__main__":
    main()
