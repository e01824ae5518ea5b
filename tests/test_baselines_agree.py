"""CI guard for the benchmark's NumPy baseline (b): our algorithm written in batched NumPy must
compute the same numbers as simulate(), so the speed comparison in bench/ compares like with like.

Also checks the NumPy (a) baseline (backprop over the N points), which shares the RK4 driver, and —
where installed — nothing else: JAX and PyTorch agreement lives in bench/test_bench_engine.py.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds bench/

from bench import baselines  # noqa: E402
from bench.problem import REFERENCE, ours_result, run_ours  # noqa: E402

# 4 seeds × 100 RK4 steps of the reference configuration: final weights and loss agree to 1e-10
# relative; the charge drift (a difference of O(scale) terms) to 1e-12 × scale — round-off after
# 100 steps is ~ε·√100·scale ≈ 2e-15·scale, while RK4's drift here is ~1e-9·scale, so a wrong
# charge or wrong RK4 weights fail.
PROBLEM = REFERENCE.with_(n_seeds=4, n_steps=100)


@pytest.fixture(scope="module")
def reference():
    theta0 = PROBLEM.theta0()
    ds = run_ours(PROBLEM, theta0)
    return theta0, ours_result(ds), ds.scale.sel(charge=ds.charge_kind == "model").values


@pytest.mark.parametrize("run", [baselines.run_numpy_moments, baselines.run_numpy_backprop],
                         ids=["numpy_moments_b", "numpy_backprop_a"])
def test_numpy_baseline_matches_simulate(run, reference):
    theta0, ours, scale = reference
    other = run(PROBLEM, theta0)
    gap = baselines.agreement(ours, other, scale)
    assert gap["theta_rel"] <= 1e-10, gap
    assert gap["loss_rel"] <= 1e-10, gap
    assert gap["drift_over_scale"] <= 1e-12, gap
    assert np.min(ours["drift"][:, -1] / scale[:, -1]) > 1e-10  # the drift is resolved


def test_moments_gradient_matches_kernel():
    """One gradient of baseline (b) against the kernel's ensemble_loss_grad, to round-off."""
    from noether_sim.kernels.entries import ensemble_loss_grad

    model, data = PROBLEM.model, PROBLEM.data
    theta = PROBLEM.theta0()
    loss_k, grad_k = ensemble_loss_grad(int(model.descriptor()[0]), theta, model.descriptor(), model.constants(data),
                                        *model.kernel_data(data))
    grad_b = np.empty_like(theta)
    loss_b = baselines.moments_loss_grad(PROBLEM.widths, data)(theta, grad_b)
    np.testing.assert_allclose(loss_b, loss_k, rtol=1e-13)
    np.testing.assert_allclose(grad_b, grad_k, rtol=0, atol=1e-13 * np.max(np.abs(grad_k)))


@pytest.mark.parametrize("module, kind", [("jax", "forward"), ("torch", "forward"), ("jax", "moments"),
                                          ("torch", "moments")])
def test_autodiff_baselines_match_simulate(module, kind, reference):
    """The JAX and PyTorch baselines, both the forward pass over the N points and the same-algorithm
    (moments) ones, compute what simulate() computes."""
    pytest.importorskip(module)
    theta0, ours, scale = reference
    run = {("jax", "forward"): baselines.run_jax_autodiff, ("torch", "forward"): baselines.run_torch_autograd,
           ("jax", "moments"): baselines.run_jax_moments, ("torch", "moments"): baselines.run_torch_moments}[
        module, kind]
    gap = baselines.agreement(ours, run(PROBLEM, theta0), scale)
    assert gap["theta_rel"] <= 1e-10 and gap["loss_rel"] <= 1e-10 and gap["drift_over_scale"] <= 1e-12, gap
