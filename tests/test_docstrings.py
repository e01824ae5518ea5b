"""The examples in the public functions' docstrings run and print what they show (doctest)."""

import doctest
import importlib

import pytest

MODULES = ["noether_sim.simulate", "noether_sim.ladder", "noether_sim.data", "noether_sim.init", "noether_sim.mlp",
           "noether_sim.models", "noether_sim.dynamics", "noether_sim.discover.plotting", "noether_sim.laws",
           "noether_sim.methods", "noether_sim.stochastic", "noether_sim.stats",
           "noether_sim.results", "noether_sim.tables", "noether_sim.execute", "noether_sim.diagnostics", "noether_sim.plots",
           "noether_sim.ntk", "noether_sim._validate", "noether_sim.teleport",
           "noether_sim.discover.discovery", "noether_sim.custom", "noether_sim.lora", "noether_sim.resnet", "noether_sim.attention",
           "noether_sim.ensemble", "noether_sim.charges"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
