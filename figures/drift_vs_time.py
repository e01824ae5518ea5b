"""Charge drift against time: median and 5-95 % seed band per method, one panel per charge.

Regenerate it from a saved study:  python figures/drift_vs_time.py results/default [--out DIR]
(the plotting itself is noether_sim.plots.drift_vs_time)
"""

import sys

from noether_sim.plots import figure_script_main

if __name__ == "__main__":
    sys.exit(figure_script_main("drift_vs_time"))
