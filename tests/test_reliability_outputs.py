"""`noether-sim reproduce` never silently replaces an earlier run or a user's file; small silent cases
(arrays kept by reference, complex input, fractional watched seeds, the summary's diverged column) are
either refused or said. Real stores, real CLI runs."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from noether_sim import cli

STORE = "b_balance"
FIGURE = "figures/b_balance_vs_step.png"


def snapshot(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_reproduce_refuses_to_replace_a_users_report_before_any_work(tmp_path, capsys):
    out = tmp_path / "paper"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    assert cli.main(["reproduce", "b", "--out", str(out), "--seeds", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{str(out / 'report.md')!r} exists and was not written by `noether-sim reproduce`" in err
    assert "--overwrite" in err
    assert (out / "report.md").read_text() == "my own notes"
    assert not (out / STORE).exists()  # refused before any work


@pytest.mark.slow  # a whole-process run: the README's quick command leaves it out, .ci/run runs it
def test_reproduce_keeps_an_earlier_run_resumes_the_same_and_replaces_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "paper"
    assert cli.main(["reproduce", "b", "--out", str(out), "--seeds", "2", "-q"]) == 0  # the earlier run
    capsys.readouterr()
    before = snapshot(out)

    # a quick look with other settings: refused before any work, naming the store and both settings
    assert cli.main(["reproduce", "b", "--out", str(out), "--seeds", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"claim (b)'s store {str(out / STORE)!r} holds an earlier run of other settings" in err
    assert "2 seeds per block; this run: 3 seeds per block" in err
    assert snapshot(out) == before

    # the same settings resume (no block recomputed); a same-named figure that reproduce did not write
    # is refused and kept
    (out / FIGURE).write_bytes(b"my figure")
    assert cli.main(["reproduce", "b", "--out", str(out), "--seeds", "2", "-q"]) == 2
    captured = capsys.readouterr()
    assert "48 of 48 blocks already finished" in captured.out
    assert f"{str(out / FIGURE)!r} exists and was not written by `noether-sim reproduce`" in captured.err
    assert (out / FIGURE).read_bytes() == b"my figure"
    after = snapshot(out)
    blocks = [k for k in before if k.startswith(f"{STORE}/blocks/")]
    assert blocks and all(after[k] == before[k] for k in blocks)

    # with overwrite: the store of other settings is replaced (its own files only), the figure may be
    from noether_sim.paper import _check_outputs, _check_owned
    from noether_sim.store import read_study

    (out / STORE / "mine.txt").write_text("kept")
    _check_outputs(out, ["b"], 3, overwrite=True)
    assert read_study(out / STORE)["points"][0]["seeds"]["count"] == 3
    assert not any((out / STORE / "blocks").iterdir()) and (out / STORE / "mine.txt").read_text() == "kept"
    _check_owned(out / FIGURE, overwrite=True)


# ---- small silent cases ----

def test_from_arrays_copies_the_callers_arrays():
    from noether_sim.data import from_arrays

    X, Y = np.ones((3, 4)), np.zeros((2, 4))
    data = from_arrays(X, Y)
    X[0, 0], Y[0, 0] = 99.0, 99.0  # the caller changes its arrays afterwards
    assert data.X[0, 0] == 1.0 and data.Y[0, 0] == 0.0


def test_complex_input_is_refused_not_truncated():
    from noether_sim._validate import ConfigError
    from noether_sim.data import from_arrays

    with pytest.raises(ConfigError, match=r"X='array of shape \(3, 4\)' is invalid: must be real"):
        from_arrays(np.ones((3, 4)) + 1j, np.zeros((2, 4)))


@pytest.mark.parametrize("watch", [[0.5], [1.0], [True], ["0"]])
def test_watch_seeds_must_be_integers(watch):
    from noether_sim import data as data_mod, simulate
    from noether_sim._validate import ConfigError
    from noether_sim.models import DeepLinear

    model, d = DeepLinear([2, 3, 2]), data_mod.synthetic_regression(2, 2, 5)
    with pytest.raises(ConfigError, match=r"watch_seeds=.* is invalid: must be integer seed ids"):
        simulate(model, d, h=0.1, t_end=0.2, seeds=2, watch_seeds=watch)


def test_summary_labels_its_diverged_column_as_counted_at_any_step_size(tmp_path):
    """A ladder whose coarse step sizes diverge while the finest does not: the count beside the finest
    step's drift is of seeds that diverged at any step size, and the table says so."""
    import noether_sim as ns
    from noether_sim.tables import format_summary, summary_rows

    cfg = {"name": "div", "t_end": 4.0, "save_every": 1.0, "model": {"widths": [3, 4, 2]},
           "data": {"n_points": 8}, "seeds": {"count": 8}, "init": {"scale": 3.0},
           "methods": {"gd": {"dynamics": "gd", "step_sizes": [1.0, 0.5, 0.001953125]}}}
    ds = ns.run_study(cfg, tmp_path / "s").compute()
    st = ds.status.sel(scheme="gd").values  # (step, seed)
    finest, anywhere = int(np.sum(st[-1] == 1)), int(np.sum(np.any(st == 1, axis=0)))
    assert anywhere > finest  # the case: coarse steps diverge, the finest finishes
    assert summary_rows(ds)[0].diverged == anywhere
    text = format_summary(ds)
    header = next(line for line in text.splitlines() if line.startswith("method"))
    assert "diverged (any h)" in header
    assert f"{anywhere}/8" in text
    assert "diverged (any h): seeds that diverged at one step size or more" in text
