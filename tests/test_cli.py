"""The noether-sim command: the README's first command path, report, plot, list, and Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from noether_sim.cli import main
from noether_sim.config import load_config
from noether_sim.results import load
from noether_sim.store import BLOCKS_DIR, IncompleteStoreError
from noether_sim.builders import build_data, build_init, build_model
from noether_sim.study import run_block
from study_helpers import QUICK

ROOT = Path(__file__).resolve().parents[1]
SETS = [a for s in QUICK for a in ("--set", s)]
FIGURES = ["drift_vs_time", "drift_vs_step", "loss_vs_time", "drift_histogram"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`noether-sim run` (the default study, the README's first command) with fewer seeds and a shorter time."""
    out = tmp_path_factory.mktemp("cli") / "default"
    return out, SETS


def test_run_default_study_prints_table_writes_store_and_figures(quick_run, capsys):
    out, sets = quick_run
    assert main(["run", *sets, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for label in ("gd", "gf-heun", "gf-rk4", "gf-dp5"):
        assert sum(line.startswith(label + " ") for line in text.splitlines()) == 2  # D1 and D2 rows
    for column in ("drift med", "drift p95", "predicted", "residual", "order", "h→0 drift", "diverged", "verdict"):
        assert column in text
    assert "conserved by the flow" in text
    ds = load(out)
    assert ds.attrs["complete"] is True and ds.sizes["seed"] == 6
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_report_prints_the_saved_summary(quick_run, capsys):
    out, _ = quick_run
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "study 'default': 6 seeds" in text and "gf-dp5" in text and "INCOMPLETE" not in text


def test_plot_draws_every_figure(quick_run, tmp_path, capsys):
    out, _ = quick_run
    assert main(["plot", str(out), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.{e}" for n in FIGURES for e in ("png", "pdf"))


def test_report_on_something_that_is_not_a_store_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a noether_sim study store" in capsys.readouterr().err


def test_list_names_every_model_dynamics_method_and_charge(capsys):
    from noether_sim.methods import EXPLICIT_METHODS

    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for word in ("deep_linear", "gd", "gf", "D<i>", *EXPLICIT_METHODS):
        assert f"  {word} " in text
    assert "symplectic" in text and "order conditions hold to order 5" in text


def test_python_dash_m_and_help():
    run = subprocess.run([sys.executable, "-m", "noether_sim", "run", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0
    for option in ("--out", "--set", "--quiet", "CONFIG.toml", "exit codes"):
        assert option in run.stdout
    bad = subprocess.run([sys.executable, "-m", "noether_sim"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2


def test_run_failure_exits_1(tmp_path, capsys, monkeypatch):
    import noether_sim.study as study

    def boom(*a, **kw):
        raise FloatingPointError("simulated failure")

    monkeypatch.setattr(study, "run_block", boom)
    assert main(["run", *SETS, "--out", str(tmp_path / "s"), "--quiet"]) == 1
    assert "simulated failure" in capsys.readouterr().err
    with pytest.raises(IncompleteStoreError):
        load(tmp_path / "s")


def test_ctrl_c_keeps_finished_blocks_identical_to_an_uninterrupted_run(tmp_path, capsys):
    # enough seeds that every block takes a while, so the interrupt lands mid-study
    sets = ["seeds.count=192", "t_end=0.125", "save_every=0.015625"]
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "noether_sim", "run", *[a for s in sets for a in ("--set", s)],
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((out / BLOCKS_DIR).glob("*__h*.done")) if out.exists() else True:  # a block, not initial.done
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no block finished in time"
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert stopped_after < 10, f"took {stopped_after:.1f} s to stop"
    assert "interrupted by Ctrl-C" in err and "Kept" in err

    with pytest.raises(IncompleteStoreError):
        load(out)
    part = load(out, allow_partial=True)
    kept = [tuple(b) for b in __import__("json").loads(part.attrs["finished_blocks"])]
    assert 1 <= len(kept) < 16
    assert f"Kept {len(kept)} of 16" in err
    assert main(["report", str(out)]) == 0  # report shows the kept blocks, flagged

    # every kept block equals the same block run uninterrupted, bit for bit
    cfg = load_config(None, sets)
    model, data, init = build_model(cfg), build_data(cfg), build_init(cfg)
    for label, k in kept:
        ref = run_block(cfg, label, k, model, data, init)
        got = part.sel(scheme=label).isel(step=k)
        for name in ("loss", "drift", "predicted", "residual", "scale", "charge_final", "status", "n_grad_evals"):
            assert np.array_equal(got[name].values, ref[name].values, equal_nan=True), (label, k, name)
        np.testing.assert_array_equal(part.theta_initial.values, ref.theta_initial.values)
    report = capsys.readouterr()
    assert "INCOMPLETE STUDY" in report.out and "incomplete" in report.err
