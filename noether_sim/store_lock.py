"""Who owns a file of the store, and the store's one-writer lock.

A writing process is named by its host, PID and start time: that is what lets a later run decide
that a temporary copy or a ``LOCK`` was left by a process that is certainly gone (same host, PID not
running or now reused) and may be removed. See ``store.py`` for the rules this serves.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
import zlib
from pathlib import Path

LOCK_FILE = "LOCK"


class StoreLockedError(RuntimeError):
    """Another writer holds the store's lock."""



# ---- owners of temporary files ----

def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _host_tag(host: str | None = None) -> str:
    return f"{zlib.crc32((host or socket.gethostname()).encode()):08x}"


def _tmp_suffix() -> str:
    """Owner and uniqueness of a temporary name: host tag, PID, process start time, a random part
    (unique per call: Dask runs several tasks in one worker process)."""
    pid = os.getpid()
    return f"{_host_tag()}-{pid}-{_proc_start(pid) or 0}-{uuid.uuid4().hex[:8]}"


_TMP_OWNER = re.compile(r"\.tmp-([0-9a-f]{8})-(\d+)-(\d+)-[0-9a-f]+$")


def tmp_owner_gone(name: str) -> bool:
    """True when the process that made the temporary file or folder ``name`` is certainly gone: it ran
    on this host and its PID is not running, or now belongs to a process started later. Anything else
    (another host, a name without an owner) may still be in use and is left alone."""
    m = _TMP_OWNER.search(name)
    if m is None or m.group(1) != _host_tag():
        return False
    pid, start = int(m.group(2)), int(m.group(3))
    if not _pid_running(pid):
        return True
    now = _proc_start(pid)
    return start != 0 and now is not None and now != start


# ---- the lock ----

def _proc_start(pid: int):
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# an unreadable lock older than this is taken over: a writer writes its lock in full before linking it
# into place (and older versions within microseconds of creating it), so none is that old and unreadable
UNREADABLE_LOCK_SECONDS = 30.0


def lock_holder(path) -> dict | None:
    """The lock's content; None when there is no lock; ``{"unreadable": True, "age": seconds}`` when
    the lock file is empty or damaged."""
    return lock_holder_file(Path(path) / LOCK_FILE)


def lock_holder_file(file: Path) -> dict | None:
    try:
        with open(file) as f:
            holder = json.load(f)
        if isinstance(holder, dict) and "pid" in holder:
            return holder
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        pass
    try:
        age = time.time() - file.stat().st_mtime
    except OSError:
        age = 0.0
    return {"unreadable": True, "age": age}


def lock_is_stale(holder: dict) -> bool:
    """True when the lock's process certainly no longer runs (only decidable on the holder's own host),
    or the lock is unreadable and older than any writer leaves it so."""
    if holder.get("unreadable"):
        return holder.get("age", 0.0) > UNREADABLE_LOCK_SECONDS
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if not _pid_running(holder["pid"]):
        return True
    start = _proc_start(holder["pid"])  # a reused PID: the running process started after the lock's
    return start is not None and holder.get("proc_start") is not None and start != holder["proc_start"]


def describe_holder(holder: dict) -> str:
    if holder.get("unreadable"):
        return "an unreadable LOCK file (empty or damaged, e.g. written when the disk was full)"
    return f"PID {holder.get('pid')} on host {holder.get('host')!r} (since {holder.get('since', '?')})"


class StoreLock:
    """The store's one-writer lock (see the module doc)."""

    def __init__(self, path):
        self.file = Path(path) / LOCK_FILE
        self.held = False

    def acquire(self):
        me = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
              "since": _stamp()}
        for _ in range(2):
            try:
                self._create(me)
            except FileExistsError:
                holder = lock_holder(self.file.parent)
                if holder is None:
                    continue  # released between our attempt and our read
                if lock_is_stale(holder):
                    self._break_stale(holder)
                    continue
                if holder.get("unreadable"):
                    raise StoreLockedError(
                        f"{str(self.file.parent)!r} has {describe_holder(holder)}, {holder['age']:.0f} s old: no "
                        f"writer can be identified. It is cleared automatically once {UNREADABLE_LOCK_SECONDS:.0f} s "
                        f"old; if no noether-sim run is writing this store, remove {str(self.file)!r} and rerun") from None
                raise StoreLockedError(
                    f"{str(self.file.parent)!r} is being written by another noether-sim run: {describe_holder(holder)}. "
                    f"Wait for it to finish; if that process is gone (on another host this cannot be checked "
                    f"from here), remove {str(self.file)!r}") from None
            self.held = True
            return self
        raise StoreLockedError(f"could not take the lock {str(self.file)!r}: it keeps changing hands")

    def _create(self, me: dict):
        """Put a complete lock file in place atomically; FileExistsError if a lock is there."""
        tmp = self.file.with_name(f".{LOCK_FILE}.tmp-{_tmp_suffix()}")
        try:
            with open(tmp, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.file)  # fails if a lock exists; the lock appears with its content
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: create exclusively, then write
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump(me, f)
                        f.flush()
                        os.fsync(f.fileno())
                except BaseException:
                    self.file.unlink(missing_ok=True)
                    raise
        finally:
            tmp.unlink(missing_ok=True)

    def _break_stale(self, holder):
        # rename first (atomic), then check we moved the stale lock and not a fresh one taken meanwhile
        aside = self.file.with_name(f".{LOCK_FILE}.stale-{_tmp_suffix()}")
        try:
            os.rename(self.file, aside)
        except FileNotFoundError:
            return
        moved = lock_holder_file(aside)
        if moved is not None and not moved.get("unreadable") and moved != holder:
            try:
                os.link(aside, self.file)  # put the fresh lock back (fails if yet another took it)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def release(self):
        if self.held:
            self.file.unlink(missing_ok=True)
            self.held = False
