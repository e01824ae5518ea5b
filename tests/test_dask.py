"""Blocks on Dask: a LocalCluster and a real `dask scheduler` + `dask worker` processes (127.0.0.1 only),
one worker killed mid-run; the store is the same bits whichever way its blocks ran."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.cli import main
from noether_sim.store import BLOCKS_DIR

pytestmark = pytest.mark.timeout(600)
DASK = str(Path(sys.executable).with_name("dask"))


def study(seeds=6, t_end=0.0625):
    return {
        "name": "dask", "t_end": t_end, "save_every": 0.015625,
        "model": {"widths": [10, 16, 16, 5]}, "data": {"n_points": 64, "noise": 0.1},
        "seeds": {"count": seeds},
        "methods": {"gd": {"dynamics": "gd", "step_sizes": [2.0 ** -9, 2.0 ** -10, 2.0 ** -11]},
                    "rk4": {"dynamics": "gf", "method": "rk4", "step_sizes": [2.0 ** -6, 2.0 ** -7, 2.0 ** -8]}},
        "sweep": {"init.scale": [0.5, 1.0]},
    }


def assert_same_bits(a, b):
    """Every variable equal bit for bit (the blocks' wall-clock times aside)."""
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        if name == "wall_seconds":
            continue
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study run in this process (the default execution)."""
    out = tmp_path_factory.mktemp("dask") / "here"
    return ns.run_study(study(), out)


@pytest.mark.slow  # a whole-process run: the README's quick command leaves it out, .ci/run runs it
def test_local_cluster_gives_the_same_bits_as_this_process(reference, tmp_path, capsys):
    out = tmp_path / "cluster"
    toml = tmp_path / "s.toml"
    import json

    # through the command line, as a user runs it
    cfg = study()
    lines = [f'name = "dask"', f"t_end = {cfg['t_end']}", f"save_every = {cfg['save_every']}",
             "[model]", "widths = [10, 16, 16, 5]", "[data]", "n_points = 64", "noise = 0.1",
             "[seeds]", "count = 6"]
    for label, m in cfg["methods"].items():
        lines += [f"[methods.{label}]", f'dynamics = "{m["dynamics"]}"', f"step_sizes = {json.dumps(m['step_sizes'])}"]
        if "method" in m:
            lines.append(f'method = "{m["method"]}"')
    lines += ["[sweep]", '"init.scale" = [0.5, 1.0]']
    toml.write_text("\n".join(lines) + "\n")
    assert main(["run", str(toml), "--out", str(out), "--workers", "2", "--quiet", "--no-figures"]) == 0
    assert_same_bits(ns.load(out), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(cond, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow  # a whole-process run: the README's quick command leaves it out, .ci/run runs it
def test_scheduler_and_workers_finish_when_a_worker_is_killed_mid_run(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}  # two workers on a small machine: one kernel thread each
    logs = []
    procs = []

    def start(name, *args):
        log = open(tmp_path / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True))
        return procs[-1]

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        workers = [start(f"worker{i}", "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                         "--no-dashboard", "--name", f"w{i}") for i in range(2)]
        from distributed import Client

        _wait_for(lambda: _n_workers(address) == 2, "two workers to connect")
        out = tmp_path / "remote"
        cfg = study(seeds=96, t_end=0.125)  # blocks long enough that the kill lands mid-run
        run = subprocess.Popen([sys.executable, "-c",
                                "import sys, json, noether_sim as ns; "
                                "ns.run_study(json.loads(sys.argv[1]), sys.argv[2], scheduler=sys.argv[3])",
                                __import__("json").dumps(cfg), str(out), address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(run)
        _wait_for(lambda: out.exists() and len(list((out / BLOCKS_DIR).glob("*__h*.done"))) >= 1 or run.poll() is not None,
                  "a first block")
        assert run.poll() is None, run.communicate()
        with Client(address, timeout="10s") as client:
            w0 = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "w0")
            _wait_for(lambda: len(client.processing()[w0]) > 0, "worker w0 to be running a block")
            running = client.processing()[w0]
            n_before = len(list((out / BLOCKS_DIR).glob("*__h*.done")))
            workers[0].send_signal(signal.SIGKILL)  # mid-block
        workers[0].wait(timeout=30)
        _, err = run.communicate(timeout=540)
        assert run.returncode == 0, err
        assert n_before < 12 and running
        ds = ns.load(out)
        assert ds.attrs["complete"] is True
        assert main(["verify", str(out)]) == 0
        with Client(address, timeout="10s") as client:  # the killed worker is gone, its blocks ran elsewhere
            assert len(client.scheduler_info()["workers"]) == 1
        # the same study in this process: the same bits
        here = ns.run_study(cfg, tmp_path / "here")
        assert_same_bits(ds, here)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM) if p.pid == os.getpgid(p.pid) else p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _n_workers(address) -> int:
    from distributed import Client

    try:
        with Client(address, timeout="5s") as client:
            return len(client.scheduler_info()["workers"])
    except OSError:
        return 0


@pytest.mark.slow  # a whole-process run: the README's quick command leaves it out, .ci/run runs it
def test_kill_9_of_a_local_cluster_run_then_rerun_resumes(tmp_path):
    out = tmp_path / "k9"
    sets = ["--set", "seeds.count=192", "--set", "t_end=0.125"]
    run = subprocess.Popen([sys.executable, "-m", "noether_sim", "run", *sets, "--out", str(out), "--workers", "2",
                            "--quiet", "--no-figures"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: out.exists() and len(list((out / BLOCKS_DIR).glob("*__h*.done"))) >= 1
                  or run.poll() is not None, "a first block", timeout=240)
        assert run.poll() is None, run.communicate()
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    time.sleep(8)  # the cluster's workers notice their parent is gone and stop: no block appears after that
    n = len(list((out / BLOCKS_DIR).glob("*__h*.done")))
    time.sleep(4)
    assert len(list((out / BLOCKS_DIR).glob("*__h*.done"))) == n < 16
    assert main(["run", *sets, "--out", str(out), "--workers", "2", "--quiet", "--no-figures"]) == 0
    assert ns.load(out).attrs["complete"] is True
    assert main(["verify", str(out)]) == 0


def test_workers_and_scheduler_are_checked(tmp_path, capsys):
    assert main(["run", "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--workers 0 is invalid: must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["run", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "b")])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_kernels_are_compiled_once_here_before_a_local_fan_out(monkeypatch):
    """One warm-up run per kernel variant (gd and rk4 here), not per block (12) or per sweep point."""
    from noether_sim import execute, study as study_mod
    from noether_sim.sweep import plan as make_plan

    p = make_plan(study())
    tasks = [(q, lb, k, p.points[q]) for q in range(len(p.points)) for lb in ("gd", "rk4") for k in range(3)]
    calls = []
    real = study_mod.simulate
    monkeypatch.setattr(study_mod, "simulate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert execute.compile_here(tasks) == 2
    assert sorted(c["dynamics"] for c in calls) == ["gd", "gf"]
    assert all(c["seeds"] == 6 for c in calls)  # never more seeds than a block
