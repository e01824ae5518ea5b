"""
Charge drift against time
=========================

The drift :math:`|D_i(t) - D_i(0)|` of each balance charge of the default study against time: median and
5–95 % band over seeds, one colour per method (at its finest step size), one panel per charge.
Gradient descent moves the charges by its exact one-step law (η² per step); the Runge–Kutta methods
only by their truncation error, which falls with their order.

Drawn from a saved study::

    python figures/drift_vs_time.py results/default [--out DIR]

(the plotting itself is :func:`noether_sim.plots.drift_vs_time`). Run without a store, as in the
documentation's gallery, the script first runs the default study at 32 seeds (a few seconds).
"""

import sys
import tempfile

import noether_sim as ns
from noether_sim.plots import drift_vs_time, figure_script_main

if __name__ == "__main__" and len(sys.argv) > 1:
    sys.exit(figure_script_main("drift_vs_time"))

with tempfile.TemporaryDirectory() as store:
    ds = ns.run_study(None, store, overrides=["seeds.count=32"]).load()
fig = drift_vs_time(ds)
