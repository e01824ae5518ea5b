"""Stochastic training figures (noether_sim.stochastic_figures): Langevin balance means against the
expectation law, and SGD drift against the learning rate split into its parts.

Run:  python figures/stochastic.py [--out DIR]     (default DIR: figures/stochastic)
"""

import argparse
from pathlib import Path

from noether_sim.stochastic_figures import FIGURES

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "stochastic"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        path = out / f"{name}.png"
        draw().savefig(path, dpi=130)
        print(path)
