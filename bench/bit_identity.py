"""Bit-identity across code versions: save every numeric variable of four runs, then compare byte for byte.

    cd <branch point checkout> && .venv/bin/python <this repo>/bench/bit_identity.py save /tmp/ref.npz
    .venv/bin/python bench/bit_identity.py cmp /tmp/ref.npz                # on the changed code
    NOETHER_SIM_LANES=0 .venv/bin/python bench/bit_identity.py save|cmp FILE ref_lanes   # the general driver

Runs: the reference configuration on 64 seeds with a watched seed (fast path), an MLP under RK4, heavy ball
on data augmented with integer cyclic shifts (data-symmetry extras, isometric charges). Names after FILE
restrict the runs.
"""
import sys, os, numpy as np
import noether_sim as ns
from noether_sim import data as D
mode, path = sys.argv[1], sys.argv[2]
dl = ns.DeepLinear((10, 16, 16, 5)); d = D.synthetic_regression(10, 5, 64, noise=0.1)
runs = {
  "ref_lanes": lambda: ns.simulate(dl, d, method="rk4", h=0.01, n_steps=100, save_every=0.1, seeds=64, watch_seeds=[3]),
  "mlp_rk4": lambda: ns.simulate(ns.MLP((4, 6, 1)), D.synthetic_regression(4, 1, 16, noise=0.1), method="rk4", h=0.01, n_steps=20, save_every=0.05, seeds=8),
  "hb_aug": lambda: ns.simulate(ns.DeepLinear((4, 5, 2)), D.augment(D.synthetic_regression(4, 2, 8, noise=0.1), "cyclic_translations", shifts="integer"),
                                dynamics="heavy_ball", h=0.01, tau=0.5, n_steps=20, save_every=0.05, seeds=8, watch_seeds=[1]),
}
only = sys.argv[3:] or list(runs)
out = {}
for name in only:
    ds = runs[name]()
    for v in ds.data_vars:
        a = ds[v].values
        if a.dtype.kind in "fciub":
            out[f"{name}/{v}"] = np.ascontiguousarray(a)
if mode == "save":
    np.savez(path, **out); print("saved", len(out))
else:
    ref = np.load(path)
    bad = [k for k in out if k not in ref or ref[k].shape != out[k].shape or ref[k].tobytes() != out[k].tobytes()]
    missing = [k for k in ref.files if k.split("/")[0] in only and k not in out]
    print(f"compared {len(out)} arrays: {len(bad)} differ {bad[:10]}, missing {missing[:5]}")
