"""A store that never lies: one writer at a time, resume after kill -9, refusal of another study, and
damage (changed, truncated, deleted chunks) detected and named. Real Zarr stores, real processes."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import noether_sim
from noether_sim.cli import main
from noether_sim.results import load
from noether_sim.store import (BLOCKS_DIR, COMPLETE_FILE, LOCK_FILE, STUDY_FILE, DamagedStoreError, StoreLock,
                               StoreLockedError, StoreMismatchError, StoreWriter, read_study)
from study_helpers import QUICK, quick_config

ROOT = Path(__file__).resolve().parents[1]
SETS = [a for s in QUICK for a in ("--set", s)]
# a study whose blocks take long enough that a process can be stopped mid-study
SLOW = ["seeds.count=192", "t_end=0.125", "save_every=0.015625"]
SLOW_SETS = [a for s in SLOW for a in ("--set", s)]


def snapshot(path: Path) -> dict:
    """{relative path: (sha256, mtime_ns)} of every file under ``path``: equal snapshots, untouched files."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[p.relative_to(path).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "noether_sim", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for_block(out: Path, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while not (out.exists() and list((out / BLOCKS_DIR).glob("*__h*.done"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no block finished in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def complete_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "quick"
    assert main(["run", *SETS, "--out", str(out), "--quiet", "--no-figures"]) == 0
    return out


def copy_of(store, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(store, dst)
    return dst


# ---- resume ----

def test_kill_9_then_rerun_resumes_and_leaves_finished_blocks_byte_identical(tmp_path, capsys):
    out = tmp_path / "killed"
    proc = cli("run", *SLOW_SETS, "--out", str(out), "--quiet", "--no-figures")
    wait_for_block(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / LOCK_FILE).exists()  # a killed writer cannot release its lock: the next run finds it stale
    before = snapshot(out / BLOCKS_DIR)
    finished = sorted(p.stem for p in (out / BLOCKS_DIR).glob("*__h*.done"))
    assert 1 <= len(finished) < 16

    assert main(["run", *SLOW_SETS, "--out", str(out), "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert f"resuming {out}: {len(finished)} of 16 blocks already finished" in text
    after = snapshot(out / BLOCKS_DIR)
    for name in finished:  # neither rewritten nor recomputed: same bytes, same modification times
        for rel, stamp in before.items():
            if rel.startswith((f"{name}.zarr/", f"{name}.done")):
                assert after[rel] == stamp, rel
    assert not (out / LOCK_FILE).exists()
    ds = load(out)
    assert ds.attrs["complete"] is True
    assert main(["verify", str(out)]) == 0


def test_rerun_of_a_complete_study_recomputes_nothing(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    before = snapshot(out)
    assert main(["run", *SETS, "--out", str(out), "--no-figures"]) == 0
    assert "16 of 16 blocks already finished" in capsys.readouterr().out
    assert snapshot(out) == before


# ---- another study at --out ----

def test_changed_config_on_resume_is_refused_and_the_store_untouched(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    (out / COMPLETE_FILE).unlink()  # an interrupted store of study A
    before = snapshot(out)
    assert main(["run", *SETS, "--set", "data.noise=0.3", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds a different study 'default'" in err and "--overwrite" in err
    assert snapshot(out) == before


def test_overwrite_replaces_the_study_but_never_deletes_foreign_files(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    (out / "my_notes.txt").write_text("mine")
    (out / "analysis").mkdir()
    (out / "analysis" / "fit.py").write_text("print(1)")
    (out / BLOCKS_DIR / "README").write_text("mine too")
    assert main(["run", *SETS, "--set", "data.noise=0.3", "--out", str(out), "--quiet", "--no-figures",
                 "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "analysis" / "fit.py").read_text() == "print(1)"
    assert (out / BLOCKS_DIR / "README").read_text() == "mine too"
    assert json.loads(load(out).attrs["study_config"])["data"]["noise"] == 0.3


def test_folder_that_is_not_a_store_is_refused_untouched(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    before = snapshot(tmp_path)
    assert main(["run", *SETS, "--out", str(tmp_path), "--quiet"]) == 2
    assert "not a noether_sim study store" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# ---- one writer ----

def test_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "shared"
    # long enough (about a minute on 2 cores) that two more processes start and are refused while it
    # runs, however warm the kernel cache; it is interrupted once they have been
    first = cli("run", *SLOW_SETS, "--set", "seeds.count=8192", "--out", str(out), "--quiet", "--no-figures")
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        # a different study (the noise=0.3 / noise=0.1 mix-up) and the same study: both refused
        for extra in (["--set", "data.noise=0.3"], []):
            second = cli("run", *SLOW_SETS, "--set", "seeds.count=8192", *extra, "--out", str(out), "--quiet",
                         "--no-figures")
            _, err = second.communicate(timeout=120)
            assert second.returncode == 2, err
            assert f"PID {first.pid}" in err and "being written by another noether-sim run" in err
        assert first.poll() is None, "the first run ended before the refusals were checked"
        wait_for_block(out, first)  # so that there is a finished block of the first writer to check
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130, err
        assert not (out / LOCK_FILE).exists()  # an interrupted writer releases its lock
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    ds = load(out, allow_partial=True)  # the first writer's study, untouched by the refused ones
    assert ds.attrs["complete"] is False
    assert json.loads(ds.attrs["study_config"])["data"]["noise"] == 0.1
    assert main(["verify", str(out)]) == 0


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "x"}))
    lock = StoreLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_of_a_live_process_or_another_host_is_respected(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        for holder in ({"host": socket.gethostname(), "pid": live.pid}, {"host": "elsewhere", "pid": 1}):
            (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
            with pytest.raises(StoreLockedError, match=f"PID {holder['pid']} on host '{holder['host']}'"):
                StoreWriter(tmp_path / "", quick_config(), {})
            assert not (tmp_path / STUDY_FILE).exists()
    finally:
        live.kill()
        live.wait()


def test_status_prints_blocks_done_and_the_writer(complete_store, tmp_path, capsys):
    assert main(["status", str(complete_store)]) == 0
    assert "16 / 16 blocks done, complete" in capsys.readouterr().out
    out = copy_of(complete_store, tmp_path)
    (out / COMPLETE_FILE).unlink()  # an interrupted store (one marked complete that lost blocks is damaged)
    for p in list((out / BLOCKS_DIR).glob("gf-dp5__h*.done")):
        p.unlink()
    (out / LOCK_FILE).write_text(json.dumps({"host": "node7", "pid": 4242, "since": "2026-01-01"}))
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 / 16 blocks done, incomplete" in text and "PID 4242 on host 'node7'" in text


# ---- integrity ----

def _chunk(store: Path, block="gf-rk4__h1", var="drift") -> Path:
    chunks = [p for p in (store / BLOCKS_DIR / f"{block}.zarr" / var).iterdir() if not p.name.startswith(".")]
    return chunks[0]


@pytest.mark.parametrize("damage", ["corrupted", "truncated", "deleted"])
def test_damaged_chunk_is_named_by_load_and_verify(complete_store, tmp_path, capsys, damage):
    out = copy_of(complete_store, tmp_path)
    chunk = _chunk(out)
    data = bytearray(chunk.read_bytes())
    if damage == "corrupted":  # 4 bytes zeroed in the middle: same size, different content
        mid = len(data) // 2
        data[mid:mid + 4] = bytes(4) if data[mid:mid + 4] != bytes(4) else b"\xff" * 4
        chunk.write_bytes(bytes(data))
    elif damage == "truncated":
        chunk.write_bytes(bytes(data[: len(data) // 2]))
    else:
        chunk.unlink()
    word = {"corrupted": "fails its checksum", "truncated": "bytes, ", "deleted": "is missing"}[damage]
    with pytest.raises(DamagedStoreError, match=r"damaged: 1 finished blocks .*gf-rk4 h=0\.0078125.*gf-rk4__h1: file drift/"):
        load(out)
    with pytest.raises(DamagedStoreError) as info:
        load(out)
    assert list(info.value.damaged) == ["gf-rk4__h1"] and word in info.value.damaged["gf-rk4__h1"][0]
    with pytest.warns(UserWarning, match="gf-rk4__h1"):
        part = load(out, allow_partial=True)
    assert part.attrs["complete"] is False and json.loads(part.attrs["missing_blocks"]) == [["gf-rk4", 1]]
    assert np.all(np.isnan(part.drift.sel(scheme="gf-rk4").isel(step=1).values))  # left out, never NaN-as-data
    assert main(["verify", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"DAMAGED gf-rk4__h1: file drift/{chunk.name}" in captured.out and "gf-rk4__h1" in captured.err


def test_verify_names_every_damaged_block(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    _chunk(out, "gd__h0", "loss").unlink()
    _chunk(out, "gf-dp5__h3", "scale").write_bytes(b"")
    shutil.rmtree(out / BLOCKS_DIR / "gf-heun__h2.zarr")  # marker without data
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    for name in ("gd__h0", "gf-dp5__h3", "gf-heun__h2"):
        assert f"DAMAGED {name}:" in text


def test_complete_store_missing_a_block_marker_is_damaged(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    (out / BLOCKS_DIR / "gf-heun__h1.done").unlink()
    shutil.rmtree(out / BLOCKS_DIR / "gf-heun__h1.zarr")
    assert main(["verify", str(out)]) == 1
    assert "DAMAGED gf-heun__h1: its marker is missing, but the store was marked complete" in capsys.readouterr().out


def test_damaged_initial_state_damages_every_block(complete_store, tmp_path):
    out = copy_of(complete_store, tmp_path)
    _chunk(out, "initial", "theta_initial").unlink()
    with pytest.raises(DamagedStoreError, match="16 finished blocks.*initial: file theta_initial/"):
        load(out)


def test_resume_recomputes_a_damaged_block_and_keeps_the_rest(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    _chunk(out).unlink()
    before = snapshot(out / BLOCKS_DIR)
    assert main(["run", *SETS, "--out", str(out), "--no-figures"]) == 0
    assert "damaged finished blocks will be recomputed: gf-rk4__h1" in capsys.readouterr().out
    after = snapshot(out / BLOCKS_DIR)
    changed = {rel.split("/")[0].split(".")[0] for rel in after if before.get(rel) != after[rel]}
    assert changed == {"gf-rk4__h1"}
    back, ref = load(out), load(complete_store)
    for name in ("drift", "loss", "charge_final", "status"):
        assert np.array_equal(back[name].values, ref[name].values, equal_nan=True), name


def test_load_of_an_intact_store_is_lazy_and_complete(complete_store):
    ds = noether_sim.load(complete_store)
    assert ds.attrs["complete"] is True
    assert ds.drift.chunks is not None  # backed by Dask: nothing read until asked
    assert ds.verdict.chunks is not None  # the ladder analysis too, until first asked for
    eager = load(complete_store).compute()
    assert eager.verdict.dtype == ds.verdict.dtype and "conserved by the flow" in set(eager.verdict.values.ravel())
    assert read_study(complete_store)["fingerprint"]


def test_store_mismatch_error_from_python(complete_store, tmp_path):
    out = copy_of(complete_store, tmp_path)
    with pytest.raises(StoreMismatchError, match="different study"):
        StoreWriter(out, quick_config("data.noise=0.3"), {})
    assert not (out / LOCK_FILE).exists()  # the refused writer released the lock it took
