"""
Final drift over seeds
======================

A histogram over seeds of the final drift of each balance charge, per method at its finest step size
(log-spaced bins): how much the drift varies with the initialisation, and whether a few seeds stand out.

Drawn from a saved study::

    python figures/drift_histogram.py results/default [--out DIR]

(the plotting itself is :func:`noether_sim.plots.drift_histogram`). Run without a store, as in the
documentation's gallery, the script first runs the default study at 32 seeds (a few seconds).
"""

import sys
import tempfile

import noether_sim as ns
from noether_sim.plots import drift_histogram, figure_script_main

if __name__ == "__main__" and len(sys.argv) > 1:
    sys.exit(figure_script_main("drift_histogram"))

with tempfile.TemporaryDirectory() as store:
    ds = ns.run_study(None, store, overrides=["seeds.count=32"]).load()
fig = drift_histogram(ds)
