"""The result store: one study on disk, written block by block, that never claims more than it holds.

Layout of a store directory::

    study.json                   the study: configuration, its fingerprint, the sweep points (if any),
                                 the list of every block it expects, provenance (written first)
    LOCK                         present while a writer works on the store: host, PID, start time
    blocks/<name>.zarr           one Zarr store per finished component
    blocks/<name>.done           the component's completion marker, written after its Zarr store is in
                                 place: what it is, and the size and CRC-32 of every file in it
    COMPLETE                     written last, once every block of the study is in place

Components: ``<label>__h<k>`` is a block, what ``simulate()`` returned for method ``<label>`` at its k-th
step size (k = 0 the largest); ``initial`` holds what every block of the study shares
(``theta_initial``). In a sweep every name is prefixed with its point, ``p<i>__`` (each point has its
own initialisation).

Safety rules (each guards a way a store could lie):

- A component is written under a temporary name and renamed into place (atomic on one file system);
  only then is its marker written, so a ``.done`` always describes a complete Zarr store. The temporary
  name says who owns it (host, PID and start time of the writing process): it is removed only by its
  writer, or by a later run when that process is provably gone (same host, PID not running or reused),
  never while a writer (a Dask task that outlived its client) may still be filling it. Before the rename
  the copy is checked to hold every variable of the block and every chunk its metadata lists; one that
  does not is discarded, never committed. A component
  that already has a marker is never written again: a resumed study leaves finished blocks byte-identical.
  Two writers racing for the same component (a Dask task retried after its worker died) are harmless:
  the first rename wins and the loser discards its copy (the two are bit-identical).
- The marker's file inventory makes a missing chunk damage rather than a silent fill value, and its
  checksums catch changed bytes; the marker also lists the block's variables. ``verify_store`` checks
  the inventory, the checksums, that every listed variable is in the Zarr metadata and that every chunk
  the metadata lists is on disk, naming each damaged component (an unreadable marker is damage too).
- One writer at a time: ``LOCK`` holds the writer's host and PID and is taken before anything in the
  store is touched. It is written in full under a temporary name and then hard-linked into place (atomic,
  fails if a lock exists), so a lock is never seen half-written. A lock whose process is gone (same host,
  PID not running or started later than the lock) is stale and taken over; an unreadable one (damaged,
  e.g. by a full disk) is taken over once it is older than ``UNREADABLE_LOCK_SECONDS``, and named as
  unreadable, with how to clear it, before that.
- The fingerprint of the configuration decides what a rerun into an existing store does: the same study
  resumes; a different one is refused unless ``overwrite=True``, which removes only the store's own files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import xarray as xr

# the lock and temporary-file owners (store_lock.py); the lock names are part of this module's API
from .store_lock import (LOCK_FILE, StoreLock, StoreLockedError, describe_holder, lock_holder,  # noqa: F401
                         lock_is_stale, tmp_owner_gone, _stamp, _tmp_suffix)

STUDY_FILE, COMPLETE_FILE, BLOCKS_DIR = "study.json", "COMPLETE", "blocks"
# identical in every block of a study point: stored once. (Not the initial charges: momentum blocks
# add isometric charges, which depend on the initial velocity.)
SHARED_VARS = ("theta_initial",)
FORMAT = "noether_sim study store, version 2"
# what a store's own entries look like (overwrite removes these and nothing else)
_OWN_TOP = (STUDY_FILE, COMPLETE_FILE, "initial.zarr")
_OWN_BLOCK = re.compile(r"^(\.?[A-Za-z0-9][A-Za-z0-9_.-]*\.(zarr|done)(\.tmp-[A-Za-z0-9_-]+)?|\..*\.tmp-[A-Za-z0-9_-]+)$")


class IncompleteStoreError(RuntimeError):
    """The store was interrupted (or is still being written): some blocks are missing."""


class NotAStoreError(FileNotFoundError):
    """The path holds no noether_sim study store."""


class StoreMismatchError(RuntimeError):
    """The store holds a different study than the one asked to run into it."""


class DamagedStoreError(RuntimeError):
    """Files of finished blocks are missing or changed; ``damaged`` maps component name → problems."""

    def __init__(self, message, damaged):
        super().__init__(message)
        self.damaged = damaged


# ---- names ----

def block_name(label: str, k: int, point: int | None = None) -> str:
    return (f"p{point}__" if point is not None else "") + f"{label}__h{k}"


def initial_name(point: int | None = None) -> str:
    return (f"p{point}__" if point is not None else "") + "initial"


def expected_blocks(config: dict, points: list | None = None) -> list[tuple]:
    """Every block of a study: (point, label, k, h); point is None for a study without a sweep.

    ``points`` is a list of per-point configurations (a sweep); each point has its own ladders.
    """
    if points is None:
        return [(None, label, k, h) for label, m in config["methods"].items() for k, h in enumerate(m["step_sizes"])]
    return [(i, label, k, h) for i, cfg in enumerate(points)
            for label, m in cfg["methods"].items() for k, h in enumerate(m["step_sizes"])]


def describe_blocks(blocks) -> str:
    return ", ".join((f"point {p} " if p is not None else "") + f"{label} h={h:.12g}"
                     for p, label, _, h in blocks) or "none"


def fingerprint(config: dict) -> str:
    """SHA-256 of the configuration in canonical JSON: equal fingerprints, the same study."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ---- files ----

def _write_json_atomic(path: Path, obj):
    tmp = path.with_name(f".{path.name}.tmp-{_tmp_suffix()}")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: leave no half-written temporary behind
        tmp.unlink(missing_ok=True)
        raise


def _crc32(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def file_manifest(folder: Path) -> dict:
    """{relative path: [size in bytes, CRC-32]} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            out[p.relative_to(folder).as_posix()] = [p.stat().st_size, _crc32(p)]
    return dict(sorted(out.items()))


def check_manifest(folder: Path, manifest: dict, full: bool = True) -> list[str]:
    """Problems of ``folder`` against its manifest (empty: intact). ``full=False`` skips the CRCs."""
    if not folder.is_dir():
        return [f"{folder.name} is missing"]
    problems = []
    for rel, (size, crc) in manifest.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"file {rel} is missing")
        elif p.stat().st_size != size:
            problems.append(f"file {rel} has {p.stat().st_size} bytes, {size} were written")
        elif full and _crc32(p) != crc:
            problems.append(f"file {rel} fails its checksum (bytes changed since it was written)")
    return problems


def zarr_problems(folder: Path, variables=None) -> list[str]:
    """Problems of a Zarr (v2, consolidated) folder against its own metadata: every variable in
    ``variables`` (the names it must hold) is listed, and every chunk the metadata lists is a file."""
    try:
        with open(folder / ".zmetadata") as f:
            meta = json.load(f)["metadata"]
    except FileNotFoundError:
        return ["its Zarr metadata (.zmetadata) is missing"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"its Zarr metadata (.zmetadata) is unreadable ({type(err).__name__})"]
    arrays = {key[: -len("/.zarray")]: a for key, a in meta.items() if key.endswith("/.zarray")}
    problems = [f"variable {v} is missing (not in its Zarr metadata)" for v in (variables or ()) if v not in arrays]
    for var, a in sorted(arrays.items()):
        shape, chunks, sep = a.get("shape", []), a.get("chunks", []), a.get("dimension_separator") or "."
        if not (folder / var).is_dir():
            problems.append(f"variable {var} is missing (its folder is gone)")
            continue
        if any(n == 0 for n in shape):
            continue
        counts = [-(-n // c) for n, c in zip(shape, chunks)]
        for index in np.ndindex(*counts) if counts else [()]:
            key = sep.join(str(i) for i in index) if index else "0"
            if not (folder / var / key).is_file():
                problems.append(f"chunk {var}/{key} is missing (listed by its Zarr metadata)")
                break  # one per variable is enough to name it
    return problems


class IncompleteCopyError(OSError):
    """A component's temporary copy lost files before it could be committed (it is discarded)."""


def _discard_copy(tmp: Path, settle: float = 0.2, patience: float = 5.0) -> None:
    """Remove a failed write's temporary copy. Zarr writes chunks concurrently, and when one write fails
    (a full disk) the others may still be finishing and recreate files behind a single ``rmtree``: remove
    until the folder has stayed gone for ``settle`` seconds (at most ``patience`` seconds in all)."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(settle)
        if not tmp.exists() or time.monotonic() > deadline:
            return


def write_component(path, name: str, ds: xr.Dataset, meta: dict, t0: float | None = None) -> bool:
    """Write one component atomically, then its marker; False if it was already finished (left as is)."""
    blocks = Path(path) / BLOCKS_DIR
    final, marker = blocks / f"{name}.zarr", blocks / f"{name}.done"
    if marker.exists():
        return False
    tmp = blocks / f".{name}.zarr.tmp-{_tmp_suffix()}"
    variables = sorted(str(v) for v in ds.variables)
    # every chunk written, even one that is all fill value: then a missing chunk file is always damage
    try:
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, write_empty_chunks=True)
    except BaseException:  # (a full disk): the writer removes its own copy
        _discard_copy(tmp)
        raise
    problems = zarr_problems(tmp, variables)
    if problems:
        shutil.rmtree(tmp, ignore_errors=True)
        raise IncompleteCopyError(f"the copy of {name} being written lost files ({'; '.join(problems[:3])}): "
                                  f"it was discarded, not committed; rerun to compute it again")
    manifest = file_manifest(tmp)
    try:
        os.rename(tmp, final)  # a directory onto an existing non-empty one fails: the first writer wins
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        if marker.exists():
            return False
        manifest = file_manifest(final)  # complete (it was renamed into place), its writer died before its marker
    if t0 is not None:  # Zarr writes and checksums of this block (and its point's initial state, if first)
        meta["timing"]["write_seconds_before_marker"] = time.perf_counter() - t0
    _write_json_atomic(marker, {**meta, "component": name, "variables": variables, "files": manifest,
                                "finished": _stamp()})
    return True


def write_block(path, label: str, k: int, block: xr.Dataset, point: int | None = None, timing=None) -> bool:
    """Write one finished block (and, the first time, its point's shared initial state) into the store.

    Safe to call from any process that sees the store's file system (Dask workers do).
    """
    t0 = time.perf_counter()
    shared = block[[v for v in SHARED_VARS if v in block]]
    pmeta = {} if point is None else {"point": point}
    write_component(path, initial_name(point), shared, {"kind": "initial", **pmeta})
    meta = {"kind": "block", "method": label, "step": k, "h": float(block.attrs["h"]), **pmeta}
    if timing is not None:
        meta["timing"] = dict(timing)
    return write_component(path, block_name(label, k, point), _constants_as_attrs(block.drop_vars(list(shared.data_vars))),
                           meta, t0=t0 if timing is not None else None)


CONSTANTS_ATTR = "noether_sim_constant_vars"


def _constant_value(da: xr.DataArray):
    """The one value every entry of ``da`` has (NaN counts as a value), or None."""
    values = np.asarray(da.values)
    if values.size == 0:
        return float("nan") if values.dtype.kind == "f" else 0
    first = values.flat[0]
    if values.dtype.kind == "f" and np.isnan(first):
        return float("nan") if np.all(np.isnan(values)) else None
    return first.item() if np.all(values == first) else None


def _constants_as_attrs(block: xr.Dataset) -> xr.Dataset:
    """Variables with one value throughout (what does not apply to a block's dynamics: all NaN or all 0)
    are stored as that value in the attributes rather than as arrays: fewer files to write and check."""
    constants = {}
    for name, da in block.data_vars.items():
        value = _constant_value(da)
        if value is not None:
            constants[name] = {"dims": list(da.dims), "shape": list(da.shape), "dtype": da.dtype.str,
                               "value": None if isinstance(value, float) and np.isnan(value) else value,
                               "attrs": dict(da.attrs)}
    if not constants:
        return block
    out = block.drop_vars(list(constants))
    out.attrs = {**block.attrs, CONSTANTS_ATTR: json.dumps(constants)}
    return out


def _constants_restored(ds: xr.Dataset) -> xr.Dataset:
    """Inverse of ``_constants_as_attrs``: the constant variables back, lazily (Dask) like the rest."""
    if CONSTANTS_ATTR not in ds.attrs:
        return ds
    import dask.array as da

    constants = json.loads(ds.attrs[CONSTANTS_ATTR])
    attrs = {k: v for k, v in ds.attrs.items() if k != CONSTANTS_ATTR}
    def full(c):
        value, dtype = np.nan if c["value"] is None else c["value"], np.dtype(c["dtype"])
        if 0 in c["shape"]:  # (Dask cannot chunk an empty array)
            return np.full(c["shape"], value, dtype=dtype)
        return da.full(c["shape"], value, dtype=dtype, chunks=-1)

    restored = {name: xr.Variable(c["dims"], full(c), c["attrs"]) for name, c in constants.items()}
    out = ds.assign(restored)
    out.attrs = attrs
    return out


class UnreadableMarkerError(ValueError):
    """A ``.done`` marker that is not readable JSON (truncated or damaged)."""


def read_marker(path, name: str) -> dict | None:
    """The component's marker, None if it has none; ``UnreadableMarkerError`` if it is damaged."""
    try:
        with open(Path(path) / BLOCKS_DIR / f"{name}.done") as f:
            marker = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise UnreadableMarkerError(f"its marker {name}.done is unreadable ({type(err).__name__}: truncated or "
                                    f"damaged)") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        raise UnreadableMarkerError(f"its marker {name}.done is damaged (no file inventory)")
    return marker


# ---- reading ----

def read_study(path) -> dict:
    path = Path(path)
    try:
        with open(path / STUDY_FILE) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise NotAStoreError(f"{str(path)!r} is not a noether_sim study store (no {STUDY_FILE}); "
                             f"make one with `noether-sim run --out {path}`") from None
    except (NotADirectoryError, IsADirectoryError):
        raise NotAStoreError(f"{str(path)!r} is not a noether_sim study store (a store is a folder; "
                             f"this is {'a file' if path.is_file() else 'not a folder'})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotAStoreError(f"{str(path)!r}: {STUDY_FILE} is not readable JSON ({err})") from None
    if meta.get("format") != FORMAT:
        raise NotAStoreError(f"{str(path)!r}: unknown store format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def study_blocks(meta: dict) -> list[tuple]:
    return [(p, lb, k, h) for p, lb, k, h in meta["blocks"]]


def block_status(path) -> tuple[list, list]:
    """(finished, missing): lists of (point, label, k, h) for the blocks the study expects.

    Finished means marked done; whether its files are intact is ``verify_store``'s question.
    """
    path = Path(path)
    meta = read_study(path)
    done, missing = [], []
    for p, label, k, h in study_blocks(meta):
        name = block_name(label, k, p)
        ok = (path / BLOCKS_DIR / f"{name}.done").exists() and (path / BLOCKS_DIR / f"{name}.zarr").is_dir()
        (done if ok else missing).append((p, label, k, h))
    return done, missing


def verify_store(path, full: bool = True, blocks=None) -> dict:
    """{component name: [problems]} for every damaged finished component (empty: the store is intact).

    Checks the finished blocks (or ``blocks``, a list of (point, label, k, h)) and the initial state of
    their points: the marker is readable; every file it lists is there with its size and (``full``) its
    CRC-32; every variable it lists is in the Zarr metadata and every chunk that metadata lists is on
    disk. A block whose marker exists but whose folder is gone is damage too; so is a block missing
    from a store marked complete.
    """
    path = Path(path)
    meta = read_study(path)
    if blocks is None:
        blocks = [b for b in study_blocks(meta) if (path / BLOCKS_DIR / f"{block_name(b[1], b[2], b[0])}.done").exists()]
    names = []
    for p, label, k, _ in blocks:
        for name in (initial_name(p), block_name(label, k, p)):
            if name not in names:
                names.append(name)
    damaged = {}
    if (path / COMPLETE_FILE).exists():  # a complete store lost a block's marker: damage, not "not yet run"
        for p, label, k, _ in study_blocks(meta):
            name = block_name(label, k, p)
            if not (path / BLOCKS_DIR / f"{name}.done").exists():
                damaged[name] = ["its marker is missing, but the store was marked complete"]
    for name in names:
        try:
            marker = read_marker(path, name)
        except UnreadableMarkerError as err:
            damaged[name] = [str(err)]
            continue
        if marker is None:
            if name.endswith("initial"):
                damaged[name] = ["its marker (and so its checksums) is missing, but blocks of its point are finished"]
            continue
        folder = path / BLOCKS_DIR / f"{name}.zarr"
        problems = check_manifest(folder, marker["files"], full=full)
        if folder.is_dir():
            problems += [p for p in zarr_problems(folder, marker.get("variables")) if p not in problems]
        if problems:
            damaged[name] = problems
    return damaged


def damaged_blocks(path, damaged: dict, blocks) -> list[tuple]:
    """The blocks (point, label, k, h) among ``blocks`` touched by ``damaged`` (a damaged initial state
    damages every block of its point)."""
    return [b for b in blocks if block_name(b[1], b[2], b[0]) in damaged or initial_name(b[0]) in damaged]


def describe_damage(damaged: dict) -> str:
    return "; ".join(f"{name}: {', '.join(problems)}" for name, problems in damaged.items())


def open_component(path, name: str, lazy: bool = True) -> xr.Dataset:
    ds = _constants_restored(xr.open_zarr(Path(path) / BLOCKS_DIR / f"{name}.zarr", consolidated=True,
                                          chunks={} if lazy else None))
    return ds if lazy else ds.load()


def store_status(path) -> dict:
    """Blocks done / total, the writer holding the lock (if any), complete or not: for `noether-sim status`."""
    path = Path(path)
    meta = read_study(path)
    done, missing = block_status(path)
    holder = lock_holder(path)
    return {"name": meta["config"].get("name"), "done": len(done), "total": len(done) + len(missing),
            "missing": missing, "complete": (path / COMPLETE_FILE).exists() and not missing,
            # blocks gone from a store once marked complete: damage, not an interrupted run
            "damaged": missing if (path / COMPLETE_FILE).exists() else [],
            "points": len(meta.get("points") or []) or None, "lock": holder,
            "lock_stale": bool(holder) and lock_is_stale(holder)}


# ---- writing ----

def _half_created(path: Path) -> bool:
    """A store whose creation stopped before its study.json (a full disk): only a lock, temporary
    copies of the top-level files and an empty blocks folder. Accepted as an empty store."""
    for p in path.iterdir():
        if p.name == LOCK_FILE or (p.name.startswith(".") and ".tmp-" in p.name and p.is_file()):
            continue
        if p.name == BLOCKS_DIR and p.is_dir() and not any(p.iterdir()):
            continue
        return False
    return True

class StoreWriter:
    """Opens (creates, resumes or replaces) a store at ``path`` and holds its lock until ``finish``/``close``.

    ``config`` is the study (a sweep's base configuration with its ``sweep`` table); ``points`` the
    configuration of each sweep point (None: no sweep). An existing store with the same fingerprint is
    resumed: ``finished`` lists its intact finished blocks, which are never written again; damaged ones
    are removed (they are the store's own files) and listed in ``repaired`` so they are run again.
    Another study's store is refused with ``StoreMismatchError`` unless ``overwrite``; a folder that is
    not a store and not empty is refused with ``FileExistsError``. Nothing is touched before the lock is held.
    """

    def __init__(self, path, config: dict, provenance: dict, *, points: list | None = None, overwrite: bool = False,
                 extra: dict | None = None):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{str(self.path)!r} is a file, not a folder; choose another --out")
        if self.path.exists() and not (self.path / STUDY_FILE).exists() and not _half_created(self.path):
            raise FileExistsError(f"{str(self.path)!r} exists and is not a noether_sim study store; "
                                  f"choose another --out")
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock = StoreLock(self.path).acquire()
        try:
            self._open(config, provenance, points, overwrite, extra or {})
        except BaseException:
            self.lock.release()
            if created and not (self.path / STUDY_FILE).exists():  # (a full disk): leave nothing half-made
                for folder in (self.path / BLOCKS_DIR, self.path):
                    try:
                        folder.rmdir()  # only if empty
                    except OSError:
                        pass
            raise

    def _open(self, config, provenance, points, overwrite, extra):
        for top in (STUDY_FILE, COMPLETE_FILE):  # copies of a dead writer: only a lock holder writes them
            for p in self.path.glob(f".{top}.tmp-*"):
                p.unlink(missing_ok=True)
        self.config, self.points = config, points
        self.fingerprint = fingerprint({"config": config, "points": points})
        self.blocks = expected_blocks(config, points)
        self.resumed, self.repaired, self.finished = False, [], []
        if (self.path / STUDY_FILE).exists():
            try:
                meta = read_study(self.path)
                same = meta.get("fingerprint") == self.fingerprint
                what = f"study {meta['config'].get('name')!r} (fingerprint {meta.get('fingerprint', '?')[:12]})"
            except NotAStoreError as err:
                same, what = False, f"something else ({err})"
            if not same and not overwrite:
                raise StoreMismatchError(
                    f"{str(self.path)!r} holds a different {what}, not this configuration (fingerprint "
                    f"{self.fingerprint[:12]}). Rerun with --overwrite (Python: overwrite=True) to replace it, "
                    f"or choose another --out")
            if same:
                self._resume()
                return
            self._remove_own_files()
        (self.path / BLOCKS_DIR).mkdir(exist_ok=True)
        _write_json_atomic(self.path / STUDY_FILE, {
            "format": FORMAT, "fingerprint": self.fingerprint, "config": config, "points": points,
            "blocks": [list(b) for b in self.blocks], "provenance": provenance, "started": _stamp(), **extra})

    def _resume(self):
        self.resumed = True
        blocks_dir = self.path / BLOCKS_DIR
        blocks_dir.mkdir(exist_ok=True)
        for p in blocks_dir.iterdir():  # temporary copies of a writer that died mid-write (never a live one's)
            if ".tmp-" in p.name and tmp_owner_gone(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        done, _ = block_status(self.path)
        damaged = verify_store(self.path, full=True, blocks=done)
        bad = damaged_blocks(self.path, damaged, done)
        for name in damaged:  # the store's own damaged files: rewrite rather than keep a lie
            (blocks_dir / f"{name}.done").unlink(missing_ok=True)
            shutil.rmtree(blocks_dir / f"{name}.zarr", ignore_errors=True)
        self.repaired = bad
        self.finished = [b for b in done if b not in bad]
        if bad:
            (self.path / COMPLETE_FILE).unlink(missing_ok=True)

    def _remove_own_files(self):
        for name in _OWN_TOP:
            p = self.path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        blocks_dir = self.path / BLOCKS_DIR
        if blocks_dir.is_dir():
            for p in blocks_dir.iterdir():
                if _OWN_BLOCK.match(p.name):
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def todo(self) -> list[tuple]:
        return [b for b in self.blocks if b not in self.finished]

    def write_block(self, label: str, k: int, block: xr.Dataset, point: int | None = None):
        write_block(self.path, label, k, block, point)

    def finish(self, summary=None):
        """Mark the store complete (if every block is finished and marked) and release the lock."""
        try:
            done, missing = block_status(self.path)
            if missing:
                raise IncompleteStoreError(f"cannot mark {str(self.path)!r} complete: missing blocks "
                                           f"[{describe_blocks(missing)}]")
            if (self.path / COMPLETE_FILE).exists():
                return  # a resumed complete store: nothing was written, nothing to mark
            _write_json_atomic(self.path / COMPLETE_FILE, {
                "blocks": [block_name(lb, k, p) for p, lb, k, _ in done], "summary": summary, "finished": _stamp()})
        finally:
            self.close()

    def close(self):
        self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
