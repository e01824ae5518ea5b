"""Final charge drift against step size on log-log axes, fitted slope annotated per method.

Regenerate it from a saved study:  python figures/drift_vs_step.py results/default [--out DIR]
(the plotting itself is noether_sim.plots.drift_vs_step)
"""

import sys

from noether_sim.plots import figure_script_main

if __name__ == "__main__":
    sys.exit(figure_script_main("drift_vs_step"))
