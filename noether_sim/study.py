"""Run a study (config.py) block by block into a store (store.py); assemble and summarise it.

A block is one ``simulate()`` run: one method at one step size, every seed. Blocks are saved as they
finish, so an interrupted study keeps everything it finished (``StudyInterrupted`` says what).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import xarray as xr

from .builders import build_data, build_init, build_model
from .dynamics import resolve
from .results import assemble
from .ensemble import provenance
from .simulate import simulate
from .stochastic import rung_options
from .store import expected_blocks


class StudyInterrupted(Exception):
    """Ctrl-C during a study; ``kept`` lists the blocks saved before it, ``missing`` the others
    ((label, k, h) from ``run_study`` here; (point, label, k, h) from ``execute.run_study``)."""

    def __init__(self, kept, missing):
        super().__init__(f"interrupted: kept {len(kept)} finished blocks, {len(missing)} not run")
        self.kept, self.missing = kept, missing


def study_provenance() -> dict:
    import zarr

    return {**provenance(), "zarr_version": zarr.__version__, "python_version": sys.version.split()[0]}


def block_cost(cfg, label) -> list[float]:
    """Relative work of each block of a method (gradient evaluations × seeds), for the progress bar's ETA."""
    m = cfg["methods"][label]
    stages = resolve(m["dynamics"], m["method"]).stages
    per_eval = 2.0 if m["dynamics"] == "gd" else 1.0  # gradient descent also evaluates its exact law
    return [cfg["t_end"] / h * stages * per_eval * cfg["seeds"]["count"] for h in m["step_sizes"]]


# ---- running ----

def block_arguments(cfg, label, k) -> dict:
    """The ``simulate`` keywords (beside model and data) of block (label, k) of the study ``cfg``."""
    m = cfg["methods"][label]
    save = {"save_times": cfg["save_times"]} if "save_times" in cfg else {"save_every": cfg["save_every"]}
    options = {key: val for key, val in m.items() if key not in ("dynamics", "method", "step_sizes")}
    # a coupled Langevin ladder (stochastic.py): this rung's share of the finest rung's noise
    options, per_rung = rung_options({"dynamics": m["dynamics"], **options}, m["step_sizes"])
    options = {**{key: val for key, val in options.items() if key != "dynamics"}, **per_rung[k]}
    return dict(dynamics=m["dynamics"], method=m["method"], h=m["step_sizes"][k], t_end=cfg["t_end"],
                seeds=cfg["seeds"]["count"], root_seed=cfg["seeds"]["root"], weight_decay=cfg["weight_decay"],
                divergence_bound=cfg["divergence_bound"], watch_seeds=cfg["record"]["watch_seeds"],
                track_ntk=cfg["record"].get("track_ntk", False), keep=cfg["record"].get("keep", "seeds"),
                description=f"{cfg['name']}: {label} at step size {k}", **save, **options)


def run_block(cfg, label, k, model, data, init, progress=False) -> xr.Dataset:
    ds = simulate(model, data, init=init, progress=progress, **block_arguments(cfg, label, k))
    return trim_block(ds, cfg)


def check_blocks(configs: list) -> None:
    """Everything about every block that can be known before any work (``simulate``'s own checks,
    its memory estimate included); ConfigError naming the block otherwise. ``configs``: one study
    configuration per sweep point (one for a plain study)."""
    from ._validate import ConfigError
    from .simulate import plan

    for i, cfg in enumerate(configs):
        model, data, init = build_model(cfg), build_data(cfg), build_init(cfg)
        for label, m in cfg["methods"].items():
            for k in range(len(m["step_sizes"])):
                try:
                    kwargs = block_arguments(cfg, label, k)
                    if "teleport_every" in kwargs:  # simulate's own checks of a run with teleports
                        from .teleport import check_teleport_run

                        every, opts = kwargs.pop("teleport_every"), kwargs.pop("teleport", None)
                        check_teleport_run(every, opts, model, kwargs)
                    plan(model, data, init=init, **kwargs)
                except ConfigError as err:
                    where = f"sweep point {i}, " if len(configs) > 1 else ""
                    raise ConfigError(f"{where}method {label!r} at step size {m['step_sizes'][k]:g}: {err}") from None


def trim_block(ds: xr.Dataset, cfg) -> xr.Dataset:
    """Keep the charges the study records; drop final weights unless asked (they dominate the store)."""
    charges = cfg["record"]["charges"]
    if charges != "all":
        # a charge this method's run does not have (the energy of a method that does not track it, J
        # under gradient flow) is left out here and padded with NaN when the study is assembled
        charges = [c for c in charges if c in ds.charge.values]
        ds = ds.sel(charge=charges).isel(component=np.isin(ds.component_charge.values, charges))
        shapes = json.loads(ds.attrs["charge_shapes"])
        descr = json.loads(ds.attrs["charge_descriptions"])
        ds.attrs.update(charge_shapes=json.dumps({c: shapes[c] for c in charges}),
                        charge_descriptions=json.dumps({c: descr[c] for c in charges}))
    if "teleport_time" in ds.coords:  # the per-event table (seed × teleport) is simulate()'s; a study keeps the
        # charges over time with their jumps and the attrs teleport_every / n_teleports (blocks share variables)
        ds = ds.drop_vars([n for n in ds.variables if str(n).startswith("teleport_")])
    if "optimizer_state_final" in ds:  # per-seed optimizer state: single runs only (blocks of a study share variables)
        ds = ds.drop_vars(["optimizer_state_final", "optimizer_state_part", "optimizer_state_param"])
    if not cfg["record"]["final_weights"]:
        ds = ds.drop_vars(["theta_final", "velocity_initial", "velocity_final"], errors="ignore")
    return ds


def run_study(cfg: dict, writer=None, *, progress: bool = False, log=None) -> xr.Dataset:
    """Run every block of the study, saving each to ``writer`` (a StoreWriter) as it finishes.

    Returns the assembled Dataset. Ctrl-C raises ``StudyInterrupted`` after the finished blocks are saved.
    """
    model, data, init = build_model(cfg), build_data(cfg), build_init(cfg)
    todo = [(label, k, h) for _, label, k, h in expected_blocks(cfg)]
    costs = {(lb, k): c for lb in cfg["methods"] for k, c in enumerate(block_cost(cfg, lb))}
    blocks, kept = {}, []
    bar = None
    if progress:
        from .ensemble import make_progress

        bar = make_progress(sum(costs.values()), cfg["name"], "{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
    try:
        for label, k, h in todo:
            if bar is not None:
                bar.set_postfix_str(f"{label} h={h:g}")
            ds = run_block(cfg, label, k, model, data, init, progress=progress)
            if writer is not None:
                writer.write_block(label, k, ds)
            blocks[(label, k)] = ds
            kept.append((label, k, h))
            if bar is not None:
                bar.update(costs[(label, k)])
    except KeyboardInterrupt:
        raise StudyInterrupted(kept, [b for b in todo if b not in kept]) from None
    finally:
        if bar is not None:
            bar.close()
    return assemble(blocks, cfg, study_provenance())
