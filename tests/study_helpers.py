"""A small, fast study shared by the CLI, store and figure tests (same structure as the default study)."""

from noether_sim.config import load_config

# the default study with few seeds and a short time: every block still runs, each in well under a second
QUICK = ["seeds.count=6", "t_end=0.0625", "save_every=0.015625"]


def quick_config(*extra):
    return load_config(None, [*QUICK, *extra])
