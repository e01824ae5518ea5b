"""Dispatch from the model descriptor to each model's loss/gradient and charge kernels.

One branch per model kind keeps the driver a single specialisation (design: compile time counts).
"""

from numba import njit

from .layout import MODEL_DEEP_LINEAR, MODEL_MLP, model_kind
from .linear import linear_charge_scales, linear_charges, linear_loss_grad, linear_work_size
from .mlp import mlp_charge_scales, mlp_charges, mlp_loss_grad, mlp_work_size


@njit(cache=True)
def work_size(ints, data_a):
    """Length of the per-seed work buffer; ``data_a`` gives data-dependent sizes (points N for MLPs)."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        return linear_work_size(ints)
    if kind == MODEL_MLP:
        return mlp_work_size(ints, data_a.shape[1])
    return 0


@njit(cache=True)
def loss_grad(theta, grad, ints, floats, data_a, data_b, work):
    """Loss at ``theta``; writes ∇L(theta) into ``grad``."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        return linear_loss_grad(theta, grad, ints, floats, data_a, data_b, work)
    if kind == MODEL_MLP:
        return mlp_loss_grad(theta, grad, ints, floats, data_a, data_b, work)
    return 0.0


@njit(cache=True)
def charges(theta, q, ints, floats):
    """Every charge of the model at ``theta``, as one flat vector."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        linear_charges(theta, q, ints)
    elif kind == MODEL_MLP:
        mlp_charges(theta, q, ints, floats)


@njit(cache=True)
def charge_scales(theta, scales, ints, floats):
    """Per charge group, the magnitude of the terms that cancel in it (round-off reference)."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        linear_charge_scales(theta, scales, ints)
    elif kind == MODEL_MLP:
        mlp_charge_scales(theta, scales, ints, floats)


# ---- momentum (isometric) charges, J(q, p) with J(t) = e^{−t/τ} J(0) under momentum flow (issue 5) ----
# A model kind with isometric symmetries adds one branch to each of these; one without returns 0 / nothing.
from .linear_momentum import linear_isometric_charges, linear_isometric_scales, linear_n_isometric  # noqa: E402


@njit(cache=True)
def n_isometric(ints):
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        return linear_n_isometric(ints)
    return 0


@njit(cache=True)
def isometric_charges(theta, mom, out, ints, floats):
    """Every isometric (momentum) charge at position ``theta`` and momentum ``mom``, as one flat vector."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        linear_isometric_charges(theta, mom, out, ints)


@njit(cache=True)
def isometric_scales(theta, mom, scales, ints, floats):
    """Per isometric group, the magnitude of the terms that cancel in it (round-off reference)."""
    kind = model_kind(ints)
    if kind == MODEL_DEEP_LINEAR:
        linear_isometric_scales(theta, mom, scales, ints)
