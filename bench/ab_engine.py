"""A/B of two checkouts of the engine on the reference problem, run alternately in one session.

    python bench/ab_engine.py PYTHON_A PYTHON_B [--rounds 3]

Each round runs, in a fresh interpreter of each checkout (its own venv python), the reference problem
(10-16-16-5, N = 64, 1024 seeds, RK4, h = 0.01, 1000 steps, records every 10 steps) after one warm-up
call, and prints its wall time and process CPU time (both threads). Alternating the two checkouts in
the same minutes keeps machine load alike for both; CPU time is the fairer number on a shared machine.
"""

import argparse
import json
import subprocess
import sys
import tempfile

SCRIPT = r"""
import json, time, numpy as np, noether_sim as ns
model = ns.DeepLinear((10, 16, 16, 5)); data = ns.data.synthetic_regression(10, 5, 64, noise=0.1)
ns.simulate(model, data, method="rk4", h=0.01, n_steps=10, save_every=0.1, seeds=8)  # load kernels
theta0 = np.random.default_rng(0).standard_normal((1024, model.n_params)) * 0.3
w, c = time.perf_counter(), time.process_time()
ds = ns.simulate(model, data, method="rk4", h=0.01, n_steps=1000, save_every=0.1, seeds=1024,
                 init=ns.init.Given(theta0))
print(json.dumps({"wall": time.perf_counter() - w, "cpu": time.process_time() - c,
                  "loss": float(ds.loss.values[:, -1].sum())}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("python_a")
    ap.add_argument("python_b")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    res = {"A": [], "B": []}
    for _ in range(args.rounds):
        for name, py in (("A", args.python_a), ("B", args.python_b)):
            # run outside any checkout, so "-c" does not put a source tree on sys.path
            out = subprocess.run([py, "-c", SCRIPT], capture_output=True, text=True, check=True,
                                 cwd=tempfile.gettempdir())
            res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(name, res[name][-1], flush=True)
    for name in res:
        best_wall = min(r["wall"] for r in res[name])
        best_cpu = min(r["cpu"] for r in res[name])
        print(f"{name}: best wall {best_wall:.3f} s ({1024 * 1000 / best_wall:,.0f} seed-steps/s), "
              f"best CPU {best_cpu:.3f} s ({1024 * 1000 / best_cpu:,.0f} seed-steps per CPU-second)")
    same = res["A"][0]["loss"] == res["B"][0]["loss"]
    print("same final losses (bit for bit):", same)


if __name__ == "__main__":
    sys.exit(main())
