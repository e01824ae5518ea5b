"""Everything knowable is checked before the store is created: the scheduler's address and that a Dask
scheduler answers there (within a timeout: a silent TCP service or one that greets like an SSH server
is not one), every block's memory estimate, and `--set` of a key the sweep varies. Real servers on
127.0.0.1 (plain sockets and a real `dask scheduler`), real CLI processes."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from noether_sim.cli import main
from study_helpers import QUICK

ROOT = Path(__file__).resolve().parents[1]
SETS = [a for s in QUICK for a in ("--set", s)]
DASK = str(Path(sys.executable).with_name("dask"))


class Server:
    """A TCP server on 127.0.0.1 that accepts every connection, sends ``greeting`` (if any) and then never
    says anything more (connections are held open until the server stops)."""

    def __init__(self, greeting: bytes = b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.greeting, self.conns, self.accepted = greeting, [], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.greeting:
                conn.sendall(self.greeting)
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def silent_server():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def ssh_like_server():
    server = Server(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    yield server
    server.close()


def run_cli(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "noether_sim", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("kind", ["silent", "ssh-like"])
def test_a_server_that_is_not_a_dask_scheduler_is_named_within_the_timeout(tmp_path, kind, silent_server,
                                                                          ssh_like_server):
    server = silent_server if kind == "silent" else ssh_like_server
    out = tmp_path / "s"
    address = f"tcp://127.0.0.1:{server.port}"
    started = time.monotonic()
    code, _, err = run_cli("run", *SETS, "--out", str(out), "--quiet", "--no-figures", "--scheduler", address,
                           "--scheduler-timeout", "3")
    elapsed = time.monotonic() - started
    assert server.accepted >= 1  # it did reach the server
    assert code == 1, err
    assert f"no Dask scheduler answered at {address} within 3 s" in err and "Traceback" not in err
    assert "MemoryError" not in err and "Unable to allocate" not in err
    assert not out.exists()  # refused before the store was created
    assert elapsed < 45, elapsed  # the 3 s timeout, plus starting Python and checking the study's blocks


def test_the_default_timeout_is_30_seconds_and_it_is_checked(tmp_path, capsys):
    from noether_sim.execute import SCHEDULER_TIMEOUT

    assert SCHEDULER_TIMEOUT == 30.0
    assert main(["run", *SETS, "--out", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:1",
                 "--scheduler-timeout", "0"]) == 2
    assert "scheduler_timeout=0.0 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("address", ["http://127.0.0.1:8787", "127.0.0.1", "tcp://127.0.0.1:notaport",
                                     "tcp://:8786", "tcp://127.0.0.1:99999", "ssh://host:22"])
def test_a_malformed_scheduler_address_is_refused_before_any_work(tmp_path, capsys, address):
    out = tmp_path / "s"
    assert main(["run", *SETS, "--out", str(out), "--quiet", "--no-figures", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert f"scheduler={address!r} is invalid" in err and "tcp://HOST:PORT" in err
    assert not out.exists()


def test_nothing_listening_is_named_at_once(tmp_path):
    from noether_sim.execute import SchedulerUnavailableError, probe_scheduler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(SchedulerUnavailableError, match=f"no Dask scheduler answered at tcp://127.0.0.1:{port}"):
        probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - started < 10


def test_a_real_scheduler_answers_the_probe(tmp_path):
    from noether_sim.execute import SchedulerUnavailableError, probe_scheduler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "scheduler.log", "w")
    proc = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, identity = time.monotonic() + 60, None
        while identity is None:
            try:
                identity = probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=5)
            except SchedulerUnavailableError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
                time.sleep(0.5)
        assert identity["type"] == "Scheduler"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


# ---- late validation ----

def test_an_absurd_ensemble_is_refused_before_the_store_is_created(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["run", *SETS, "--set", "seeds.count=1000000000", "--out", str(out), "--quiet",
                 "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "would allocate about" in err and "method 'gd' at step size" in err
    assert not out.exists()


# ---- overrides of swept keys ----

SWEEP_TOML = """
name = "sw"
t_end = 0.0625
save_every = 0.015625
[model]
widths = [4, 6, 3]
[data]
n_points = 16
[seeds]
count = 4
[methods.gd]
dynamics = "gd"
step_sizes = [0.0078125, 0.00390625, 0.001953125]
[sweep]
"init.scale" = [0.5, 1.0]
"""


@pytest.mark.parametrize("override", ["init.scale=2.0", "init={scale = 2.0}", "init.scale.x=1"])
def test_set_of_a_swept_key_is_refused_naming_the_sweep(tmp_path, capsys, override):
    toml = tmp_path / "sw.toml"
    toml.write_text(SWEEP_TOML)
    out = tmp_path / "s"
    assert main(["run", str(toml), "--set", override, "--out", str(out), "--quiet", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert f"--set {override!r} is invalid: the study's [sweep] varies 'init.scale'" in err
    assert not out.exists()


def test_set_of_a_key_the_sweep_does_not_vary_still_works(tmp_path):
    toml = tmp_path / "sw.toml"
    toml.write_text(SWEEP_TOML)
    from noether_sim.sweep import plan

    p = plan(toml, ["init.kind=\"gaussian\"", "seeds.count=2"])
    assert [c["seeds"]["count"] for c in p.points] == [2, 2]
