"""Training loss against time: median and 5-95 % seed band per method.

Regenerate it from a saved study:  python figures/loss_vs_time.py results/default [--out DIR]
(the plotting itself is noether_sim.plots.loss_vs_time)
"""

import sys

from noether_sim.plots import figure_script_main

if __name__ == "__main__":
    sys.exit(figure_script_main("loss_vs_time"))
