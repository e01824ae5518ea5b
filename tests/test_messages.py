"""What a user is told while waiting: compile notices (only when numba really compiles) and progress
without a terminal (log lines, not carriage returns)."""

import logging

import numpy as np
from numba import njit

import noether_sim as ns
from noether_sim import ensemble


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "noether_sim"]


def test_compile_notice_names_what_compiles_and_its_time_and_is_silent_once_compiled(caplog):
    @njit  # a fresh function: its first call compiles, whatever numba's disk cache holds
    def kernel(x):
        return np.sum(np.sin(x) ** 2)

    caplog.set_level(logging.INFO, logger="noether_sim")
    with ensemble.compile_notice("a test kernel"):
        kernel(np.ones(3))
    said = _messages(caplog)
    assert len(said) == 2
    assert said[0] == "compiling kernels for a test kernel, first use only…"
    assert said[1].startswith("compiled the kernels for a test kernel in ") and said[1].endswith(" s (kept on disk for later runs)")
    seconds = float(said[1].split(" in ")[1].split(" s")[0])
    assert seconds > 0
    caplog.clear()
    with ensemble.compile_notice("a test kernel"):
        kernel(np.ones(3))  # compiled: nothing to say
    assert _messages(caplog) == []


def test_a_warm_simulate_says_nothing(caplog, net3):
    model, data = net3
    kw = dict(dynamics="gd", h=0.01, n_steps=4, seeds=2)
    ns.simulate(model, data, **kw)  # compiles here if the cache is cold
    caplog.set_level(logging.INFO, logger="noether_sim")
    ns.simulate(model, data, **kw)
    assert _messages(caplog) == []


def test_progress_without_a_terminal_is_log_lines_not_carriage_returns(capsys, monkeypatch, net3):
    model, data = net3
    ns.simulate(model, data, dynamics="gd", h=0.01, n_steps=40, save_every=0.01, seeds=2)  # compiled first
    capsys.readouterr()
    monkeypatch.setattr(ensemble, "LOG_EVERY", 0.0)  # a line at every update (normally every few seconds)
    ns.simulate(model, data, dynamics="gd", h=0.01, n_steps=40, save_every=0.01, seeds=2, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) >= 10 and all(line.startswith("noether_sim: gd/euler: t = ") for line in lines)
    assert lines[-1].endswith("(done)") and "t = 0.4 of 0.4" in lines[-1]


def test_a_short_run_without_a_terminal_prints_no_progress(capsys, net3):
    model, data = net3
    ns.simulate(model, data, dynamics="gd", h=0.01, n_steps=4, seeds=2)
    capsys.readouterr()
    ns.simulate(model, data, dynamics="gd", h=0.01, n_steps=4, seeds=2, progress=True)
    assert capsys.readouterr().err == ""  # faster than LOG_EVERY: nothing to report


def test_quiet_command_line_silences_the_messages(caplog):
    from noether_sim.cli import _quiet_log

    caplog.set_level(logging.INFO, logger="noether_sim")
    with _quiet_log(True):
        ensemble.log.info("compiling kernels for x, first use only…")
    with _quiet_log(False):
        ensemble.log.info("shown")
    assert _messages(caplog) == ["shown"]
    assert ensemble.log.level == logging.INFO  # restored
