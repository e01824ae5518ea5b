"""
Charge drift against step size
==============================

The median final drift of each balance charge against the step size, on log-log axes, with the
fitted slope: the observed order of the method's error in the charge. Built for this page (32 seeds)
the slopes were 1.00 (gradient descent), 3.05 (Heun), 4.07 (RK4) and 6.9 (Dormand–Prince's 5th-order
weights): the error in a charge can fall faster than the method's order.

Drawn from a saved study::

    python figures/drift_vs_step.py results/default [--out DIR]

(the plotting itself is :func:`noether_sim.plots.drift_vs_step`). Run without a store, as in the
documentation's gallery, the script first runs the default study at 32 seeds (a few seconds).
"""

import sys
import tempfile

import noether_sim as ns
from noether_sim.plots import drift_vs_step, figure_script_main

if __name__ == "__main__" and len(sys.argv) > 1:
    sys.exit(figure_script_main("drift_vs_step"))

with tempfile.TemporaryDirectory() as store:
    ds = ns.run_study(None, store, overrides=["seeds.count=32"]).load()
fig = drift_vs_step(ds)
