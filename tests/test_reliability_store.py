"""The store under races and damaged states: a live writer's temporary copy is never deleted by a
resume, a copy that lost files is never committed, `verify` checks every variable and chunk the
metadata lists, and unreadable locks, half-created stores, truncated markers, files given as stores
and complete stores missing a block are each named for what they are. Real processes, real Zarr files."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from noether_sim.cli import main
from noether_sim.results import load
from noether_sim.store import (BLOCKS_DIR, COMPLETE_FILE, LOCK_FILE, STUDY_FILE, DamagedStoreError, StoreLockedError,
                               StoreWriter, verify_store)
from study_helpers import QUICK, quick_config

ROOT = Path(__file__).resolve().parents[1]
SETS = [a for s in QUICK for a in ("--set", s)]

# Another process writes block gd__h0 of the quick study into the store argv[1] and stops in the middle
# of its Zarr write (one variable is computed lazily and waits for the file argv[2]/go), after saying
# so with argv[2]/paused: a writer that is alive and mid-write, like a Dask task that outlived its client.
PAUSED_WRITER = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import dask, dask.array as da
from noether_sim import study
from noether_sim.builders import build_data, build_init, build_model
from noether_sim.store import write_block
from study_helpers import quick_config

out, flags = Path(sys.argv[1]), Path(sys.argv[2])
cfg = quick_config()
ds = study.run_block(cfg, "gd", 0, build_model(cfg), build_data(cfg), build_init(cfg))
calls = []

def held(x):
    calls.append(1)
    if len(calls) > 1:  # the first evaluation is the store's constant check; the second is the Zarr write
        (flags / "paused").touch()
        while not (flags / "go").exists():
            time.sleep(0.01)
    return x

v = ds["charge_final"]
ds["charge_final"] = (v.dims, da.from_delayed(dask.delayed(held)(v.values), v.shape, v.dtype), v.attrs)
write_block(out, "gd", 0, ds)
print("written")
"""


def paused_writer(out: Path, flags: Path):
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, str(out), str(flags), str(ROOT / "tests")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (flags / "paused").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer did not reach its Zarr write"
        time.sleep(0.02)
    return proc


def tmp_copies(out: Path, name="gd__h0"):
    return sorted((out / BLOCKS_DIR).glob(f".{name}.zarr.tmp-*"))


@pytest.fixture(scope="module")
def complete_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "quick"
    assert main(["run", *SETS, "--out", str(out), "--quiet", "--no-figures"]) == 0
    return out


def copy_of(store, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(store, dst)
    return dst


# ---- ownership of temporary copies ----

def test_a_resume_leaves_a_live_writers_temporary_copy_alone(tmp_path):
    out, cfg = tmp_path / "store", quick_config()
    StoreWriter(out, cfg, {}).close()  # the study's store, nothing finished yet
    writer = paused_writer(out, tmp_path)
    try:
        assert len(tmp_copies(out)) == 1  # mid-write: its temporary copy is there
        resumed = StoreWriter(out, cfg, {})  # a resume while that writer still works
        assert resumed.resumed and len(tmp_copies(out)) == 1
        resumed.close()
        (tmp_path / "go").touch()
        stdout, stderr = writer.communicate(timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0 and "written" in stdout, stderr
    assert tmp_copies(out) == []
    assert verify_store(out) == {}
    part = load(out, allow_partial=True)
    block = part.sel(scheme="gd").isel(step=0)
    for name in ("charge_final", "drift", "charge_kind", "loss"):  # every variable, with its data
        assert name in part
    assert np.all(np.isfinite(block.charge_final.values)) and np.all(np.isfinite(block.loss.values))


def test_a_copy_that_lost_files_mid_write_is_never_committed(tmp_path):
    out, cfg = tmp_path / "store", quick_config()
    StoreWriter(out, cfg, {}).close()
    writer = paused_writer(out, tmp_path)
    try:
        (tmp, ) = tmp_copies(out)
        shutil.rmtree(tmp / "loss")  # files of the copy vanish while it is being written
        (tmp_path / "go").touch()
        _, stderr = writer.communicate(timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode != 0
    assert "the copy of gd__h0 being written lost files" in stderr and "variable loss is missing" in stderr
    assert not (out / BLOCKS_DIR / "gd__h0.done").exists() and not (out / BLOCKS_DIR / "gd__h0.zarr").exists()
    assert tmp_copies(out) == []  # its writer discarded it


def _suffix(host: str, pid: int, start: int) -> str:
    return f"{zlib.crc32(host.encode()):08x}-{pid}-{start}-0123abcd"


def test_a_resume_removes_only_the_copies_of_provably_dead_writers(tmp_path):
    out, cfg = tmp_path / "store", quick_config()
    StoreWriter(out, cfg, {}).close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    with open(f"/proc/{os.getpid()}/stat") as f:
        my_start = int(f.read().rsplit(")", 1)[1].split()[19])
    copies = {
        "dead": _suffix(here, dead.pid, 1),  # its process is gone
        "reused": _suffix(here, os.getpid(), my_start + 1),  # the PID now belongs to a later process
        "alive": _suffix(here, os.getpid(), my_start),  # this very process
        "elsewhere": _suffix(here + "-other-host", 1, 1),  # cannot be checked from here
        "unnamed": "12345-678-abcdef01",  # no owner in its name (an older writer): cannot be decided
    }
    for what, suffix in copies.items():
        (out / BLOCKS_DIR / f".gd__h{list(copies).index(what)}.zarr.tmp-{suffix}").mkdir()
    StoreWriter(out, cfg, {}).close()
    left = {p.name.split(".tmp-")[1] for p in (out / BLOCKS_DIR).iterdir()}
    assert left == {copies["alive"], copies["elsewhere"], copies["unnamed"]}


# ---- verify checks what the metadata lists ----

def test_verify_finds_a_committed_block_missing_variables_its_marker_forgot(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    # the state the lost-copy race left: the block without three variables, a marker listing only the rest
    block = out / BLOCKS_DIR / "gd__h1.zarr"
    for var in ("drift", "charge_kind", "charge_final"):
        shutil.rmtree(block / var)
    marker_file = out / BLOCKS_DIR / "gd__h1.done"
    marker = json.loads(marker_file.read_text())
    marker["files"] = {rel: v for rel, v in marker["files"].items()
                       if rel.split("/")[0] not in ("drift", "charge_kind", "charge_final")}
    marker.pop("variables", None)
    marker_file.write_text(json.dumps(marker))
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "DAMAGED gd__h1: variable charge_final is missing" in text
    with pytest.raises(DamagedStoreError, match="gd__h1"):
        load(out)


def test_verify_finds_a_chunk_gone_from_the_metadata_and_the_inventory(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    chunk = next(p for p in (out / BLOCKS_DIR / "gf-rk4__h2.zarr" / "loss").iterdir() if not p.name.startswith("."))
    chunk.unlink()
    marker_file = out / BLOCKS_DIR / "gf-rk4__h2.done"
    marker = json.loads(marker_file.read_text())
    del marker["files"][f"loss/{chunk.name}"]
    marker_file.write_text(json.dumps(marker))
    assert main(["verify", str(out)]) == 1
    assert f"DAMAGED gf-rk4__h2: chunk loss/{chunk.name} is missing" in capsys.readouterr().out


# ---- states the code cannot leave ----

def test_an_unreadable_lock_is_named_and_cleared_once_provably_stale(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    (out / LOCK_FILE).write_text("")  # what a full disk leaves
    assert main(["run", *SETS, "--out", str(out), "--quiet", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "unreadable LOCK file" in err and f"remove {str(out / LOCK_FILE)!r}" in err
    assert "PID -1" not in err
    assert main(["status", str(out)]) == 0
    assert "unreadable LOCK file" in capsys.readouterr().out
    old = time.time() - 120
    os.utime(out / LOCK_FILE, (old, old))  # no writer leaves its lock unreadable that long
    assert main(["run", *SETS, "--out", str(out), "--quiet", "--no-figures"]) == 0
    assert not (out / LOCK_FILE).exists()


def test_a_half_created_store_is_accepted_on_rerun(tmp_path):
    out = tmp_path / "half"
    (out / BLOCKS_DIR).mkdir(parents=True)  # creation stopped (disk full) while writing study.json
    (out / f".{STUDY_FILE}.tmp-{_suffix(socket.gethostname(), 999999, 1)}").write_text('{"format": "noe')
    (out / LOCK_FILE).write_text("")
    old = time.time() - 120
    os.utime(out / LOCK_FILE, (old, old))
    writer = StoreWriter(out, quick_config(), {})
    writer.close()
    assert sorted(p.name for p in out.iterdir()) == [BLOCKS_DIR, STUDY_FILE]


def test_a_failed_creation_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(TypeError):  # the study file cannot be written (here: provenance JSON cannot hold)
        StoreWriter(out, quick_config(), {"not json": object()})
    assert not out.exists()
    StoreWriter(out, quick_config(), {}).close()  # and the next run starts cleanly
    assert (out / STUDY_FILE).exists()


def test_a_truncated_marker_is_damage_named_everywhere_and_recomputed(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    marker = out / BLOCKS_DIR / "gf-heun__h1.done"
    marker.write_bytes(marker.read_bytes()[:40])
    assert main(["verify", str(out)]) == 1
    assert "DAMAGED gf-heun__h1: its marker gf-heun__h1.done is unreadable" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "gf-heun__h1" in captured.err and "Traceback" not in captured.err
    with pytest.warns(UserWarning, match="gf-heun__h1"):
        part = load(out, allow_partial=True)
    assert json.loads(part.attrs["missing_blocks"]) == [["gf-heun", 1]]
    assert main(["run", *SETS, "--out", str(out), "--no-figures"]) == 0
    assert "damaged finished blocks will be recomputed: gf-heun__h1" in capsys.readouterr().out
    assert load(out).attrs["complete"] is True and verify_store(out) == {}


@pytest.mark.parametrize("command", ["status", "verify", "report", "plot"])
def test_a_file_given_as_a_store_is_not_a_study_store(tmp_path, capsys, command):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(path)!r} is not a noether_sim study store" in err and "a file" in err


def test_a_complete_store_missing_a_block_is_damaged_not_interrupted(complete_store, tmp_path, capsys):
    out = copy_of(complete_store, tmp_path)
    (out / BLOCKS_DIR / "gd__h2.done").unlink()
    shutil.rmtree(out / BLOCKS_DIR / "gd__h2.zarr")
    assert (out / COMPLETE_FILE).exists()
    with pytest.raises(DamagedStoreError, match="gd__h2: its marker is missing, but the store was marked complete"):
        load(out)
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "15 / 16 blocks done, DAMAGED" in text and "incomplete" not in text
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "damaged" in err and "interrupted" not in err


def test_the_lock_is_never_seen_half_written(tmp_path):
    # the lock appears with its content (hard link of a complete file): a reader racing the writer sees
    # either no lock or a readable one
    out = tmp_path / "s"
    out.mkdir()
    probe = subprocess.Popen([sys.executable, "-c", (
        "import sys, json, time; from pathlib import Path\n"
        "f = Path(sys.argv[1]); seen = 0; end = time.monotonic() + 3\n"
        "while time.monotonic() < end:\n"
        "    try: text = f.read_text()\n"
        "    except FileNotFoundError: continue\n"
        "    json.loads(text); seen += 1\n"
        "print(seen)"), str(out / LOCK_FILE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from noether_sim.store import StoreLock

    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        StoreLock(out).acquire().release()
    stdout, stderr = probe.communicate(timeout=30)
    assert probe.returncode == 0, stderr
    assert int(stdout) > 0
    with pytest.raises(StoreLockedError, match="unreadable"):
        (out / LOCK_FILE).write_text("{")
        StoreLock(out).acquire()


# ---- a real full disk ----

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and mount; skipped elsewhere), grown by ``grow()``."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a small file system needs root and mount")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_fails_cleanly_and_the_rerun_resumes(small_disk):
    out = small_disk / "s"
    sets = [*SETS, "--set", "seeds.count=64"]
    proc = subprocess.run([sys.executable, "-m", "noether_sim", "run", *sets, "--out", str(out), "--quiet",
                           "--no-figures"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr and "Task exception" not in proc.stderr
    assert not list((out / BLOCKS_DIR).glob(".*.tmp-*"))  # the failed writer removed its own copy
    assert not (out / LOCK_FILE).exists()
    assert verify_store(out) == {}  # what was finished is intact
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert main(["run", *sets, "--out", str(out), "--quiet", "--no-figures"]) == 0
    assert load(out).attrs["complete"] is True
