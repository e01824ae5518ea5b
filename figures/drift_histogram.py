"""Histogram over seeds of the final charge drift, per method and charge.

Regenerate it from a saved study:  python figures/drift_histogram.py results/default [--out DIR]
(the plotting itself is noether_sim.plots.drift_histogram)
"""

import sys

from noether_sim.plots import figure_script_main

if __name__ == "__main__":
    sys.exit(figure_script_main("drift_histogram"))
