"""
Training loss against time
==========================

The training loss of the default study against time: median and 5–95 % band over seeds, per method
at its finest step size. The methods agree on the loss to plotting accuracy while they disagree on the
charges by orders of magnitude: the charges are the sharper probe of the integrator.

Drawn from a saved study::

    python figures/loss_vs_time.py results/default [--out DIR]

(the plotting itself is :func:`noether_sim.plots.loss_vs_time`). Run without a store, as in the
documentation's gallery, the script first runs the default study at 32 seeds (a few seconds).
"""

import sys
import tempfile

import noether_sim as ns
from noether_sim.plots import loss_vs_time, figure_script_main

if __name__ == "__main__" and len(sys.argv) > 1:
    sys.exit(figure_script_main("loss_vs_time"))

with tempfile.TemporaryDirectory() as store:
    ds = ns.run_study(None, store, overrides=["seeds.count=32"]).load()
fig = loss_vs_time(ds)
