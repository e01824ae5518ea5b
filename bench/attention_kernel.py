"""One attention gradient on the reference size of issue 22, one thread: CPU ms per call.

``SelfAttention(16, heads=2, tokens=8)``, 256 teacher sequences (as bench_attention.py), calling the
kernel ``attention_loss_grad`` directly, ``--calls`` calls per timing, best and median of 5. CPU time
(``time.process_time``) so that other jobs on a shared machine disturb it little; wall time beside it.
Also prints the FLOP rate (12.6 MFLOP per gradient at this size; bench/README.md counts them).

    .venv/bin/python bench/attention_kernel.py [--calls 200] [--causal]
"""

import argparse
import time

import numpy as np

import noether_sim as ns
from noether_sim import init
from noether_sim.kernels.attention import CHUNK, attention_loss_grad, attention_work_size


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--causal", action="store_true")
    a = parser.parse_args()
    model = ns.SelfAttention(16, heads=2, tokens=8, causal=a.causal)
    data = ns.data.sequences(model, 256, noise=0.05, seed=0)
    X, Y = model.kernel_data(data)
    ints, floats = model.descriptor(), model.constants(data)
    theta = init.Gaussian().rows(model, 0, np.arange(1))[0]
    work = np.empty(attention_work_size(ints, X.shape[1]))
    grad = np.empty(model.n_params)
    attention_loss_grad(theta, grad, ints, floats, X, Y, work)  # compile / load
    wall, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.calls):
            attention_loss_grad(theta, grad, ints, floats, X, Y, work)
        wall.append((time.perf_counter() - t0) / a.calls)
        cpu.append((time.process_time() - c0) / a.calls)
    flop = 2 * model.heads * X.shape[1] * 12288  # FMAs per head and sequence at this size (bench/README.md)
    print(f"attention gradient, reference size{' (causal)' if a.causal else ''}, chunks of {CHUNK} sequences: "
          f"CPU {1e3 * min(cpu):.3f} ms best, {1e3 * np.median(cpu):.3f} median; wall {1e3 * min(wall):.3f} best; "
          f"{flop / min(cpu) / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
