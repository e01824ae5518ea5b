"""A user's model (``noether_sim.custom.CustomModel``): the gradient is the user's own compiled function.

The user writes ``loss_grad(theta, X, Y, grad_out) -> loss`` with ``numba.njit``. The package compiles a
small C-callable wrapper around it once (``user_wrapper``, a ``numba.cfunc`` cached on disk per user
function) and puts the wrapper's *address* in the model descriptor. The kernels below call it through
that address (``_call_address``, one indirect call per gradient), so one compiled, cached driver per
scheme serves every user function: no recompilation of the driver for a new model. (Passing the user's
dispatcher as an argument would instead specialise, and recompile, the whole driver per user function.)

The descriptor ``ints`` of MODEL_CUSTOM starts with the layered models' header for one layer of P × 1
(kernels/layout.py: ints[1] = L = 1, no bias, widths (1, P), W_1 at offset 0), so that the generic
readers of that header (the energy's round-off scale in extras.py) stay inside θ; then, from BASE = 7:

    ints[0 : 7]           MODEL_CUSTOM, 1, 0, 1, P, 0, −1
    ints[BASE]            address of the wrapper (valid while the Python model that made it lives)
    ints[BASE + 1]        P, the number of parameters
    ints[BASE + 2]        m, the number of user charges (each a scalar)
    ints[BASE + 3 + 4k : BASE + 7 + 4k]
                          charge k: (degree, nnz, int offset, float offset)
                          degree 2: q_k = ½ Σ_e S_e θ_{i_e} θ_{j_e}  (rows i at ints[off : off + nnz],
                                    columns j at ints[off + nnz : off + 2nnz], values S_e at floats[foff:])
                          degree 1: q_k = Σ_e v_e θ_{i_e}           (indices at ints[off:], values at floats[foff:])

So a quadratic charge evaluated on a gradient g is ½gᵀSg = q(g), the η² term of gradient descent's exact
law, and the driver's laws (kernels/driver.py) apply to user charges as to the catalogue's.
``floats`` holds only the charges' values; the data are ``data_a`` = X (n_in × N) and ``data_b`` = Y
(n_out × N), C-contiguous (or what the model's ``prepare`` made of them).
"""

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

BASE = 7  # where the custom fields start, after the one-layer header

USER_SIGNATURE = types.float64(types.CPointer(types.float64), types.CPointer(types.float64),
                               types.CPointer(types.float64), types.CPointer(types.float64),
                               types.int64, types.int64, types.int64, types.int64, types.int64)
"""The wrapper's C signature: (θ, A, B, grad, P, A rows, A columns, B rows, B columns) -> loss."""


@intrinsic
def _call_address(typingctx, addr, p_theta, p_a, p_b, p_grad, n_p, a0, a1, b0, b1):
    """Call the C function at address ``addr`` with four data pointers and five sizes; its float64 result."""
    sig = types.float64(types.int64, types.uintp, types.uintp, types.uintp, types.uintp, types.int64,
                        types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        dptr = ir.DoubleType().as_pointer()
        fnty = ir.FunctionType(ir.DoubleType(), [dptr] * 4 + [i64] * 5)
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        ptrs = [builder.inttoptr(a, dptr) for a in args[1:5]]
        return builder.call(fn, ptrs + list(args[5:]))

    return sig, codegen


def user_wrapper(user, cache=True):
    """A C-callable wrapper (``numba.cfunc``) of the user's ``loss_grad(theta, X, Y, grad_out)``; its
    ``.address`` goes into the descriptor. Cached on disk per user function when ``cache``."""

    def wrapper(p_theta, p_a, p_b, p_grad, n_p, a0, a1, b0, b1):
        return user(carray(p_theta, (n_p,)), carray(p_a, (a0, a1)), carray(p_b, (b0, b1)), carray(p_grad, (n_p,)))

    return cfunc(USER_SIGNATURE, cache=cache)(wrapper)


def python_wrapper(user):
    """The same C-callable wrapper around a plain Python (NumPy, JAX, PyTorch…) function: each call enters
    the interpreter (numba's object mode, holding the GIL), so it is much slower, and seeds do not run in
    parallel; not cached (nothing of the user's function is compiled)."""
    from numba import objmode

    @njit
    def through_python(theta, a, b, grad):
        with objmode(loss="float64"):
            loss = float(user(theta, a, b, grad))
        return loss

    def wrapper(p_theta, p_a, p_b, p_grad, n_p, a0, a1, b0, b1):
        return through_python(carray(p_theta, (n_p,)), carray(p_a, (a0, a1)), carray(p_b, (b0, b1)),
                              carray(p_grad, (n_p,)))

    return cfunc(USER_SIGNATURE)(wrapper)


@njit(cache=True, inline="always")
def _contiguous(x):
    return x.shape[0] <= 1 or x.strides[0] == 8


@njit(cache=True)
def custom_work_size(ints):
    return 2 * ints[BASE + 1]


@njit(cache=True)
def custom_loss_grad(theta, grad, ints, floats, data_a, data_b, work):
    """The user's loss at θ, its gradient into ``grad`` (through work space where a row is strided)."""
    P = ints[BASE + 1]
    addr = ints[BASE]
    if _contiguous(theta) and _contiguous(grad):
        return _call_address(addr, theta.ctypes.data, data_a.ctypes.data, data_b.ctypes.data, grad.ctypes.data,
                             P, data_a.shape[0], data_a.shape[1], data_b.shape[0], data_b.shape[1])
    t = work[:P]
    g = work[P:2 * P]
    for j in range(P):
        t[j] = theta[j]
    loss = _call_address(addr, t.ctypes.data, data_a.ctypes.data, data_b.ctypes.data, g.ctypes.data,
                         P, data_a.shape[0], data_a.shape[1], data_b.shape[0], data_b.shape[1])
    for j in range(P):
        grad[j] = g[j]
    return loss


@njit(cache=True)
def custom_charges(theta, q, ints, floats):
    """Every user charge at θ (½θᵀSθ, ⟨v, θ⟩)."""
    for k in range(ints[BASE + 2]):
        c = BASE + 3 + 4 * k
        degree, nnz, io, fo = ints[c], ints[c + 1], ints[c + 2], ints[c + 3]
        s = 0.0
        if degree == 2:
            for e in range(nnz):
                s += floats[fo + e] * theta[ints[io + e]] * theta[ints[io + nnz + e]]
            s *= 0.5
        else:
            for e in range(nnz):
                s += floats[fo + e] * theta[ints[io + e]]
        q[k] = s


@njit(cache=True)
def custom_charge_scales(theta, scales, ints, floats):
    """Per charge the size of the terms that cancel: ½Σ|S_e θ_i θ_j|, Σ|v_e θ_i|."""
    for k in range(ints[BASE + 2]):
        c = BASE + 3 + 4 * k
        degree, nnz, io, fo = ints[c], ints[c + 1], ints[c + 2], ints[c + 3]
        s = 0.0
        if degree == 2:
            for e in range(nnz):
                s += abs(floats[fo + e] * theta[ints[io + e]] * theta[ints[io + nnz + e]])
            s *= 0.5
        else:
            for e in range(nnz):
                s += abs(floats[fo + e] * theta[ints[io + e]])
        scales[k] = s


def descriptor(address: int, n_params: int, charges) -> tuple[np.ndarray, np.ndarray]:
    """(ints, floats) of MODEL_CUSTOM for a wrapper address and charges [(degree, rows, cols, values)]
    (cols None for linear charges); see the module docstring."""
    from .layout import MODEL_CUSTOM

    head = [MODEL_CUSTOM, 1, 0, 1, int(n_params), 0, -1, int(address), int(n_params), len(charges)]
    table, idx, vals = [], [], []
    int_pos = BASE + 3 + 4 * len(charges)
    float_pos = 0
    for degree, rows, cols, values in charges:
        nnz = len(values)
        table += [degree, nnz, int_pos, float_pos]
        idx += list(rows) + (list(cols) if degree == 2 else [])
        vals += list(values)
        int_pos += nnz * (2 if degree == 2 else 1)
        float_pos += nnz
    ints = np.array(head + table + idx, dtype=np.int64)
    floats = np.array(vals, dtype=np.float64) if vals else np.zeros(1)
    return ints, floats
