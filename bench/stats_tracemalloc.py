"""Where the memory of a keep="stats" run goes (issue 24 item 2): tracemalloc's view of the Python heap and
NumPy's arrays while a chunk is being folded, at two ensemble sizes.

    .venv/bin/python bench/stats_tracemalloc.py [--sizes 100000 1000000] [--chunks 3] [--steps 100]

The reference problem (deep linear 10-16-16-5, N = 64, RK4, h = 0.01, a record every 10 steps). After a
warm-up call (kernels loaded), tracemalloc runs from the ``simulate`` call on; at the ``--chunks``-th fold
(``stats.Fold.add``, while that chunk's per-seed records are alive: the run's peak) a snapshot is taken and
the run is stopped there (the memory of a chunk does not depend on how many chunks follow). Prints the
traced total and peak, the largest allocation sites, and the resident set size (/proc/self/statm).
What grows with the number of seeds shows up as the difference between the sizes.
"""

import argparse
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Stop(Exception):
    pass


def child(n_seeds, chunks, steps, top):
    sys.path.insert(0, str(ROOT))
    import noether_sim as ns
    from noether_sim import stats
    from bench.problem import REFERENCE

    p = REFERENCE.with_(n_seeds=n_seeds, n_steps=steps)
    kw = dict(method="rk4", h=p.h, n_steps=p.n_steps, save_every=p.save_every)
    ns.simulate(p.model, p.data, seeds=256, keep="stats", **kw)  # warm-up: kernels loaded
    add, seen = stats.Fold.add, []

    def spy(self, ds):
        add(self, ds)
        seen.append(1)
        if len(seen) == chunks:
            snap = tracemalloc.take_snapshot()
            cur, peak = tracemalloc.get_traced_memory()
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            print(f"seeds {n_seeds:,}: at fold {chunks} traced {cur / 2**20:.1f} MiB, traced peak {peak / 2**20:.1f} "
                  f"MiB, RSS {rss / 2**20:.0f} MiB; largest sites:")
            for st in snap.statistics("lineno")[:top]:
                fr = st.traceback[0]
                print(f"  {st.size / 2**20:8.2f} MiB  {st.count:7d} blocks  {os.path.relpath(fr.filename, ROOT)}:{fr.lineno}")
            raise _Stop

    stats.Fold.add = spy
    tracemalloc.start()
    try:
        ns.simulate(p.model, p.data, seeds=n_seeds, keep="stats", **kw)
    except _Stop:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.chunks, a.steps, a.top)
        return
    for n in a.sizes:
        subprocess.run([sys.executable, __file__, "--chunks", str(a.chunks), "--steps", str(a.steps), "--top",
                        str(a.top), "--child", str(n)], check=True)


if __name__ == "__main__":
    main()
