"""Dispatch from the model kind to each model's loss/gradient and charge kernels.

``kind`` is a compile-time literal (the driver has one entry per model kind and scheme that passes
its kind as a module constant, which numba types as a literal), and each dispatcher below is an
``overload`` that picks the model's kernel while typing. So a run compiles only its own model's code,
and compile time stays that of one model however many exist. (An ``if kind == …`` chain in a jitted
function would still compile every model's kernels: numba types all branches before pruning.)

Each model's implementation must take exactly the parameter names of the stand-in it implements (an
overload whose names differ fails to type, which surfaces as "Cannot request literal type").

Adding a model kind: one entry in each ``_KERNELS`` table, and one entry function per scheme in
``driver.py``.
"""

import numpy as np
from numba import literally, types
from numba.extending import overload

from .attention import (attention_charge_scales, attention_charges, attention_isometric_charges,
                        attention_isometric_scales, attention_loss_grad, attention_n_isometric, attention_work_size)
from .custom import (custom_charge_scales, custom_charges, custom_loss_grad, custom_work_size, trailer_charges,
                     trailer_cross, trailer_scales)
from .layout import (MODEL_ATTENTION, MODEL_CUSTOM, MODEL_DEEP_LINEAR, MODEL_DEEP_LINEAR_INPUT_SIDE, MODEL_LORA, MODEL_MLP,
                     MODEL_RESIDUAL)
from .linear import (linear_charge_scales, linear_charges, linear_charges_cross, linear_loss_grad_input_side,
                     linear_loss_grad_output_side, linear_work_size)
from .linear_isometric import linear_isometric_charges, linear_isometric_scales, linear_n_isometric
from .lora import (lora_charge_scales, lora_charges, lora_isometric_charges, lora_isometric_scales, lora_loss_grad,
                   lora_n_isometric, lora_work_size)
from .residual import (residual_charge_scales, residual_charges, residual_isometric_charges,
                       residual_isometric_scales, residual_loss_grad, residual_n_isometric, residual_work_size)
from .mlp import (mlp_charge_scales, mlp_charges, mlp_isometric_charges, mlp_isometric_scales, mlp_loss_grad,
                  mlp_n_isometric, mlp_work_size)


# The Python bodies below are stand-ins: inside compiled code the overloads replace them.

def work_size(kind, ints, data_a):
    """Length of the per-seed work buffer; ``data_a`` gives data-dependent sizes (points N for MLPs)."""


def loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    """Loss at ``theta``; writes ∇L(theta) into ``grad``."""


def charges(kind, theta, q, ints, floats):
    """Every charge of the model at ``theta``, as one flat vector."""


def charges_cross(kind, a, b, q, ints, floats):
    """The charges' bilinear form B(a, b), q(a + b) = q(a) + 2B(a, b) + q(b) (quadratic charges; for a
    linear charge any value: its laws do not use it), reading the first n_params entries of a and b."""


def charge_scales(kind, theta, scales, ints, floats):
    """Per charge group, the magnitude of the terms that cancel in it (round-off reference)."""


def n_isometric(kind, ints):
    """Number of isometric (momentum) charges J(q, p), with J(t) = e^{−t/τ} J(0) under momentum flow."""


def isometric_charges(kind, theta, mom, out, ints, floats):
    """Every isometric charge at position ``theta`` and momentum ``mom``, as one flat vector."""


def isometric_scales(kind, theta, mom, scales, ints, floats):
    """Per isometric group, the magnitude of the terms that cancel in it (round-off reference)."""


def _linear_work_size(kind, ints, data_a):
    return linear_work_size(ints)


def _mlp_work_size(kind, ints, data_a):
    return mlp_work_size(ints, data_a.shape[1])


def _attention_work_size(kind, ints, data_a):
    return attention_work_size(ints, data_a.shape[1])


def _attention_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return attention_loss_grad(theta, grad, ints, floats, data_a, data_b, work)


def _attention_charges(kind, theta, q, ints, floats):
    attention_charges(theta, q, ints)
    trailer_charges(theta, q, ints, floats)


def _attention_charge_scales(kind, theta, scales, ints, floats):
    attention_charge_scales(theta, scales, ints)
    trailer_scales(theta, scales, ints, floats)


def _attention_n_isometric(kind, ints):
    return attention_n_isometric(ints)


def _attention_isometric_charges(kind, theta, mom, out, ints, floats):
    attention_isometric_charges(theta, mom, out, ints)


def _attention_isometric_scales(kind, theta, mom, scales, ints, floats):
    attention_isometric_scales(theta, mom, scales, ints)


def _linear_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return linear_loss_grad_output_side(theta, grad, ints, floats, data_a, data_b, work)


def _linear_loss_grad_input_side(kind, theta, grad, ints, floats, data_a, data_b, work):
    return linear_loss_grad_input_side(theta, grad, ints, floats, data_a, data_b, work)


def _mlp_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return mlp_loss_grad(theta, grad, ints, floats, data_a, data_b, work)


def _custom_work_size(kind, ints, data_a):
    return custom_work_size(ints)


def _custom_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return custom_loss_grad(theta, grad, ints, floats, data_a, data_b, work)


def _custom_charges(kind, theta, q, ints, floats):
    custom_charges(theta, q, ints, floats)


def _custom_charge_scales(kind, theta, scales, ints, floats):
    custom_charge_scales(theta, scales, ints, floats)


# every built-in model's charges: the catalogue's, then the user's added by ``model.with_charges`` (a tagged
# trailer of the descriptor, kernels/custom.py; one comparison when there is none). The models whose
# bilinear form is polarised (_polarised_charges_cross) get the user's through ``charges``.

def _linear_charges(kind, theta, q, ints, floats):
    linear_charges(theta, q, ints)
    trailer_charges(theta, q, ints, floats)


def _mlp_charges(kind, theta, q, ints, floats):
    mlp_charges(theta, q, ints, floats)
    trailer_charges(theta, q, ints, floats)


def _linear_charges_cross(kind, a, b, q, ints, floats):
    linear_charges_cross(a, b, q, ints)
    trailer_cross(a, b, q, ints, floats)


def _polarised_charges_cross(kind, a, b, q, ints, floats):  # any model: (q(a + b) − q(a − b))/4, two evaluations
    n = b.shape[0]
    x = np.empty(n)
    qm = np.empty(q.shape[0])
    for j in range(n):
        x[j] = a[j] + b[j]
    charges(kind, x, q, ints, floats)
    for j in range(n):
        x[j] = a[j] - b[j]
    charges(kind, x, qm, ints, floats)
    for k in range(q.shape[0]):
        q[k] = 0.25 * (q[k] - qm[k])


def _linear_charge_scales(kind, theta, scales, ints, floats):
    linear_charge_scales(theta, scales, ints)
    trailer_scales(theta, scales, ints, floats)


def _mlp_charge_scales(kind, theta, scales, ints, floats):
    mlp_charge_scales(theta, scales, ints, floats)
    trailer_scales(theta, scales, ints, floats)


def _linear_n_isometric(kind, ints):
    return linear_n_isometric(ints)


def _mlp_n_isometric(kind, ints):
    return mlp_n_isometric(ints)


def _mlp_isometric_charges(kind, theta, mom, out, ints, floats):
    mlp_isometric_charges(theta, mom, out, ints, floats)


def _mlp_isometric_scales(kind, theta, mom, scales, ints, floats):
    mlp_isometric_scales(theta, mom, scales, ints, floats)


def _lora_work_size(kind, ints, data_a):
    return lora_work_size(ints, data_a.shape[1])


def _lora_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return lora_loss_grad(theta, grad, ints, floats, data_a, data_b, work)


def _lora_charges(kind, theta, q, ints, floats):
    lora_charges(theta, q, ints, floats)
    trailer_charges(theta, q, ints, floats)


def _lora_charge_scales(kind, theta, scales, ints, floats):
    lora_charge_scales(theta, scales, ints, floats)
    trailer_scales(theta, scales, ints, floats)


def _lora_n_isometric(kind, ints):
    return lora_n_isometric(ints)


def _lora_isometric_charges(kind, theta, mom, out, ints, floats):
    lora_isometric_charges(theta, mom, out, ints, floats)


def _lora_isometric_scales(kind, theta, mom, scales, ints, floats):
    lora_isometric_scales(theta, mom, scales, ints, floats)


def _residual_work_size(kind, ints, data_a):
    return residual_work_size(ints, data_a.shape[1])


def _residual_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return residual_loss_grad(theta, grad, ints, floats, data_a, data_b, work)


def _residual_charges(kind, theta, q, ints, floats):
    residual_charges(theta, q, ints, floats)
    trailer_charges(theta, q, ints, floats)


def _residual_charge_scales(kind, theta, scales, ints, floats):
    residual_charge_scales(theta, scales, ints, floats)
    trailer_scales(theta, scales, ints, floats)


def _residual_n_isometric(kind, ints):
    return residual_n_isometric(ints)


def _residual_isometric_charges(kind, theta, mom, out, ints, floats):
    residual_isometric_charges(theta, mom, out, ints, floats)


def _residual_isometric_scales(kind, theta, mom, scales, ints, floats):
    residual_isometric_scales(theta, mom, scales, ints, floats)


def _no_isometric(kind, ints):
    return 0


def _linear_isometric_charges(kind, theta, mom, out, ints, floats):
    linear_isometric_charges(theta, mom, out, ints)


def _linear_isometric_scales(kind, theta, mom, scales, ints, floats):
    linear_isometric_scales(theta, mom, scales, ints)


def _no_isometric_charges(kind, theta, mom, out, ints, floats):  # an overload's parameter names must match
    return None


def _no_isometric_scales(kind, theta, mom, scales, ints, floats):
    return None


_KERNELS = {
    work_size: {MODEL_DEEP_LINEAR: _linear_work_size, MODEL_MLP: _mlp_work_size, MODEL_CUSTOM: _custom_work_size},
    loss_grad: {MODEL_DEEP_LINEAR: _linear_loss_grad, MODEL_MLP: _mlp_loss_grad,
                MODEL_DEEP_LINEAR_INPUT_SIDE: _linear_loss_grad_input_side, MODEL_CUSTOM: _custom_loss_grad},
    charges: {MODEL_DEEP_LINEAR: _linear_charges, MODEL_MLP: _mlp_charges, MODEL_CUSTOM: _custom_charges},
    charges_cross: {MODEL_DEEP_LINEAR: _linear_charges_cross, MODEL_MLP: _polarised_charges_cross,
                    MODEL_CUSTOM: _polarised_charges_cross},
    charge_scales: {MODEL_DEEP_LINEAR: _linear_charge_scales, MODEL_MLP: _mlp_charge_scales,
                    MODEL_CUSTOM: _custom_charge_scales},
    n_isometric: {MODEL_DEEP_LINEAR: _linear_n_isometric, MODEL_MLP: _mlp_n_isometric, MODEL_CUSTOM: _no_isometric},
    isometric_charges: {MODEL_DEEP_LINEAR: _linear_isometric_charges, MODEL_MLP: _mlp_isometric_charges,
                        MODEL_CUSTOM: _no_isometric_charges},
    isometric_scales: {MODEL_DEEP_LINEAR: _linear_isometric_scales, MODEL_MLP: _mlp_isometric_scales,
                       MODEL_CUSTOM: _no_isometric_scales},
}
_ATTENTION = {work_size: _attention_work_size, loss_grad: _attention_loss_grad, charges: _attention_charges,
              charge_scales: _attention_charge_scales, n_isometric: _attention_n_isometric,
              isometric_charges: _attention_isometric_charges, isometric_scales: _attention_isometric_scales,
              charges_cross: _polarised_charges_cross}  # quadratic charges: polarisation is exact
for _fn, _impl in _ATTENTION.items():
    _KERNELS[_fn][MODEL_ATTENTION] = _impl
_LORA = {work_size: _lora_work_size, loss_grad: _lora_loss_grad, charges: _lora_charges,
         charge_scales: _lora_charge_scales, n_isometric: _lora_n_isometric,
         isometric_charges: _lora_isometric_charges, isometric_scales: _lora_isometric_scales,
         charges_cross: _polarised_charges_cross}
for _fn, _impl in _LORA.items():
    _KERNELS[_fn][MODEL_LORA] = _impl
_RESIDUAL = {work_size: _residual_work_size, loss_grad: _residual_loss_grad, charges: _residual_charges,
             charge_scales: _residual_charge_scales, n_isometric: _residual_n_isometric,
             isometric_charges: _residual_isometric_charges, isometric_scales: _residual_isometric_scales,
             charges_cross: _polarised_charges_cross}
for _fn, _impl in _RESIDUAL.items():
    _KERNELS[_fn][MODEL_RESIDUAL] = _impl
for _table in _KERNELS.values():  # the input-side deep linear kind differs only in its gradient
    _table.setdefault(MODEL_DEEP_LINEAR_INPUT_SIDE, _table[MODEL_DEEP_LINEAR])


def _select(kind, by_kind, force_literal):
    """The kernel for a literal ``kind``; otherwise an implementation that asks for a literal."""
    if not isinstance(kind, types.IntegerLiteral):
        return force_literal
    return by_kind.get(kind.literal_value)  # None: no such model kind (a typing error)


_OVERLOAD = dict(prefer_literal=True, jit_options={"cache": True})


@overload(work_size, **_OVERLOAD)
def _ol_work_size(kind, ints, data_a):
    return _select(kind, _KERNELS[work_size], lambda kind, ints, data_a: literally(kind))


@overload(loss_grad, **_OVERLOAD)
def _ol_loss_grad(kind, theta, grad, ints, floats, data_a, data_b, work):
    return _select(kind, _KERNELS[loss_grad],
                   lambda kind, theta, grad, ints, floats, data_a, data_b, work: literally(kind))


@overload(charges, **_OVERLOAD)
def _ol_charges(kind, theta, q, ints, floats):
    return _select(kind, _KERNELS[charges], lambda kind, theta, q, ints, floats: literally(kind))


@overload(charges_cross, **_OVERLOAD)
def _ol_charges_cross(kind, a, b, q, ints, floats):
    return _select(kind, _KERNELS[charges_cross], lambda kind, a, b, q, ints, floats: literally(kind))


@overload(charge_scales, **_OVERLOAD)
def _ol_charge_scales(kind, theta, scales, ints, floats):
    return _select(kind, _KERNELS[charge_scales], lambda kind, theta, scales, ints, floats: literally(kind))


@overload(n_isometric, **_OVERLOAD)
def _ol_n_isometric(kind, ints):
    return _select(kind, _KERNELS[n_isometric], lambda kind, ints: literally(kind))


@overload(isometric_charges, **_OVERLOAD)
def _ol_isometric_charges(kind, theta, mom, out, ints, floats):
    return _select(kind, _KERNELS[isometric_charges], lambda kind, theta, mom, out, ints, floats: literally(kind))


@overload(isometric_scales, **_OVERLOAD)
def _ol_isometric_scales(kind, theta, mom, scales, ints, floats):
    return _select(kind, _KERNELS[isometric_scales], lambda kind, theta, mom, scales, ints, floats: literally(kind))
