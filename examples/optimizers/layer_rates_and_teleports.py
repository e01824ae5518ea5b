"""Measured numbers of docs/guide/optimizers.md (bias_lr, weight decay, LoRA+) and teleportation.md (teleports
under momentum): .venv/bin/python examples/optimizers/layer_rates_and_teleports.py (about 10 s warm)."""
import numpy as np, noether_sim as ns
from noether_sim.teleport import _loss_grad, teleport
from noether_sim import init
# 1 bias_lr: GD exact-law residual of the weighted charges
model = ns.MLP((3, 5, 4, 2), activation="relu", bias=True); data = ns.data.synthetic_regression(3, 2, 20, noise=0.1, seed=1)
ds = ns.simulate(model, data, dynamics="gd", h=0.02, n_steps=25, save_every=0.1, seeds=8, layer_lr=(2.0, 0.5, 1.5), bias_lr=(0.3, 3.0, 1.0))
rows = ns.summarise_verdicts(ns.judge(ds)); print("bias_lr:", [(r["charge"], r["verdict"], r["basis"]) for r in rows], "max |residual|", float(np.nanmax(np.abs(ds.residual.values))))
# 2 weight decay
m2, d2 = ns.DeepLinear((3, 4, 5, 2)), ns.data.synthetic_regression(3, 2, 16, noise=0.1, seed=1)
ds = ns.simulate(m2, d2, dynamics="gd", h=0.02, n_steps=30, save_every=0.2, seeds=8, layer_lr=(2.0, 0.5, 1.5), weight_decay=0.3)
print("wd:", [(r["charge"], r["verdict"], r["basis"]) for r in ns.summarise_verdicts(ns.judge(ds))], "max |residual|", float(np.nanmax(np.abs(ds.residual.values))))
# 3 LoRA+
lm = ns.LoRA(ns.MLP((4, 6, 5, 3), activation="tanh", bias=True), rank=2)
rng = np.random.default_rng(3); ld = ns.data.from_arrays(rng.standard_normal((4, 10)), rng.standard_normal((3, 10)))
ds = ns.simulate(lm, ld, dynamics="gd", h=0.05, n_steps=40, save_every=0.5, seeds=8, layer_lr=(1.0, 8.0), init=init.Gaussian(scale=0.7))
print("lora+ gd:", [(r["charge"], r["verdict"], r["basis"]) for r in ns.summarise_verdicts(ns.judge(ds))], "max |residual|", float(np.nanmax(np.abs(ds.residual.values))))
ds = ns.simulate(lm, ld, method="gl2", h=0.1, t_end=2.0, save_every=1.0, seeds=8, layer_lr=(1.0, 8.0), init=init.Gaussian(scale=0.7))
print("lora+ gl2 drift_max", float(ds.drift_max.max()))
# 4 teleport under momentum
kw = dict(dynamics="momentum", method="verlet", h=0.02, tau=0.5, save_every=0.2, seeds=8, velocity="gradient")
first = ns.simulate(m2, d2, t_end=0.4, **kw)
res = teleport(m2, d2, first.theta_final.values); v0 = first.velocity_final.values; v1 = res.move(v0); th0 = first.theta_final.values
rate = lambda th, v: np.sum(_loss_grad(m2, d2, th)[1] * v, axis=1)
print("momentum teleport: |Δloss|/loss", float(np.max(np.abs(res.loss_after - res.loss_before) / res.loss_before)),
      "rate rel diff pushed", float(np.max(np.abs(rate(res.theta, v1) - rate(th0, v0)) / np.abs(rate(th0, v0)))),
      "rate rel diff kept v", float(np.max(np.abs(rate(res.theta, v0) - rate(th0, v0)) / np.abs(rate(th0, v0)))),
      "grad norm ratio", float(np.min(res.grad_norm_after / res.grad_norm_before)))
