"""The result store: one study on disk, written block by block so an interruption never looks complete.

Layout of a store directory::

    study.json                  the study's configuration and provenance (written first)
    initial.zarr                what every block shares (theta_initial), stored once,
                                written before the first block
    blocks/<label>__h<k>.zarr   one Zarr store per finished (method, step size) block: what simulate()
                                returned for method <label> at its k-th step size (k = 0 the largest)
    blocks/<label>__h<k>.done   the block's completion marker, written after its Zarr store is in place
    COMPLETE                    written last, once every block of the study is in place

Each block is written under a temporary name and renamed into place (atomic on one file system), then
its marker is written. ``load`` reads only blocks that have both; it refuses a store without
``COMPLETE`` (naming the finished and missing blocks) unless ``allow_partial=True``, in which case it
returns the finished blocks only and says so in ``attrs["complete"]`` / ``attrs["missing_blocks"]``.

In memory a study is ONE ``xarray.Dataset`` (see ``results.assemble``): every per-block variable gains
the leading dimensions ``scheme`` (the method's label, e.g. "gf-rk4"; not called "method" because
``Dataset.sel(method=...)`` is xarray's interpolation keyword and would silently select nothing) and
``step`` (the rung of that method's ladder, 0 = largest step size). The step size itself is the 2-D
coordinate ``h(scheme, step)``, because each method has its own ladder; ladders of different lengths
are padded (NaN for floats, -1 for integers, False for flags). ``ds.sel(scheme="gf-rk4").swap_dims(step="h")``
indexes one method by step size. The initial weights, the same in every block, are kept once,
without those dimensions.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import xarray as xr

STUDY_FILE, COMPLETE_FILE, BLOCKS_DIR, INITIAL = "study.json", "COMPLETE", "blocks", "initial.zarr"
SHARED_VARS = ("theta_initial",)  # identical in every block of a study: stored once
FORMAT = "noether_sim study store, version 1"


class IncompleteStoreError(RuntimeError):
    """The store was interrupted (or is still being written): some blocks are missing."""


class NotAStoreError(FileNotFoundError):
    """The path holds no noether_sim study store."""


def block_name(label: str, k: int) -> str:
    return f"{label}__h{k}"


def expected_blocks(config: dict) -> list[tuple[str, int, float]]:
    return [(label, k, h) for label, m in config["methods"].items() for k, h in enumerate(m["step_sizes"])]


def _write_json_atomic(path: Path, obj):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_zarr_atomic(ds: xr.Dataset, final: Path):
    """Write under a temporary name, then rename into place: ``final`` exists only when complete."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
    os.replace(tmp, final)


class StoreWriter:
    """Creates a store at ``path`` and adds finished blocks to it, each atomically."""

    def __init__(self, path, config: dict, provenance: dict):
        self.path = Path(path)
        if self.path.exists():
            if not (self.path / STUDY_FILE).exists() and any(self.path.iterdir()):
                raise FileExistsError(f"{str(self.path)!r} exists and is not a noether_sim study store; "
                                      f"choose another --out")
            shutil.rmtree(self.path)  # an earlier study at the same place is replaced
        (self.path / BLOCKS_DIR).mkdir(parents=True)
        self.config = config
        self.written: list[str] = []
        self.initial: xr.Dataset | None = None
        _write_json_atomic(self.path / STUDY_FILE, {"format": FORMAT, "config": config, "provenance": provenance,
                                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def write_block(self, label: str, k: int, block: xr.Dataset):
        name = block_name(label, k)
        shared = block[[v for v in SHARED_VARS if v in block]]
        if self.initial is None:
            _write_zarr_atomic(shared, self.path / INITIAL)
            self.initial = shared
        else:
            for v in shared.data_vars:
                if not np.array_equal(shared[v].values, self.initial[v].values):
                    raise ValueError(f"block {name}: {v} differs from the study's first block (not one study?)")
        _write_zarr_atomic(block.drop_vars(list(shared.data_vars)), self.path / BLOCKS_DIR / f"{name}.zarr")
        _write_json_atomic(self.path / BLOCKS_DIR / f"{name}.done",
                           {"method": label, "step": k, "h": float(block.attrs["h"]),
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.written.append(name)

    def finish(self, summary=None):
        _write_json_atomic(self.path / COMPLETE_FILE, {"blocks": self.written, "summary": summary,
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_study(path) -> dict:
    path = Path(path)
    try:
        with open(path / STUDY_FILE) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise NotAStoreError(f"{str(path)!r} is not a noether_sim study store (no {STUDY_FILE}); "
                             f"make one with `noether-sim run --out {path}`") from None
    if meta.get("format") != FORMAT:
        raise NotAStoreError(f"{str(path)!r}: unknown store format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def block_status(path) -> tuple[list, list]:
    """(finished, missing): lists of (label, k, h) for the blocks the study's configuration expects."""
    path = Path(path)
    meta = read_study(path)
    done, missing = [], []
    for label, k, h in expected_blocks(meta["config"]):
        name = block_name(label, k)
        ok = (path / BLOCKS_DIR / f"{name}.done").exists() and (path / BLOCKS_DIR / f"{name}.zarr").is_dir()
        (done if ok else missing).append((label, k, h))
    return done, missing


def _read_zarr(path: Path) -> xr.Dataset:
    with xr.open_zarr(path, consolidated=True) as ds:
        return ds.load()


def describe_blocks(blocks) -> str:
    return ", ".join(f"{label} h={h:.12g}" for label, _, h in blocks) or "none"


def read_blocks(path, done) -> dict:
    """{(label, k): block} for the finished blocks ``done``, each with the study's shared variables."""
    path = Path(path)
    blocks = {}
    if done:
        initial = _read_zarr(path / INITIAL)
        for label, k, _ in done:
            block = _read_zarr(path / BLOCKS_DIR / f"{block_name(label, k)}.zarr")
            blocks[(label, k)] = block.assign({v: initial[v] for v in initial.data_vars})
    return blocks
