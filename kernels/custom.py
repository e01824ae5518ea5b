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
                          degree 0: a function charge q_k(θ) ∈ R^m, the user's compiled q (``Charge.function``):
                                    (0, m, off, P), the address of its C wrapper (``function_wrapper``) at
                                    ints[off]; it fills m components of q (the others one each)

The same table (from its count m at ints[t]: ``table_charges``) follows a built-in model's descriptor when
the user adds charges to it (``model.with_charges``): ints[-1] is then ``USER_TRAILER_TAG``, ints[-2] = t,
ints[-3] and ints[-4] the catalogue's numbers of groups and of components (where the user's go in q),
ints[-5] the number of the quadratic/linear values, which are the last entries of the model's floats. The built-in models' charge kernels
(kernels/models.py) call ``trailer_charges`` after their own.

So a quadratic charge evaluated on a gradient g is ½gᵀSg = q(g), the η² term of gradient descent's exact
law, and the driver's laws (kernels/driver.py) apply to user charges as to the catalogue's.
``floats`` holds only the charges' values; the data are ``data_a`` = X (n_in × N) and ``data_b`` = Y
(n_out × N), C-contiguous (or what the model's ``prepare`` made of them).
"""

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from .layout import USER_TRAILER_TAG

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


@intrinsic
def _call_charge_address(typingctx, addr, p_theta, n_p, p_out, m):
    """Call the C function ``void q(double *theta, int64 P, double *out, int64 m)`` at address ``addr``."""
    sig = types.void(types.int64, types.uintp, types.int64, types.uintp, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        dptr = ir.DoubleType().as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [dptr, i64, dptr, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [builder.inttoptr(args[1], dptr), args[2], builder.inttoptr(args[3], dptr), args[4]])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _function_charge(addr, P, theta, out, pos, m):
    """The user's compiled q(θ[:P]) (m values) into out[pos : pos + m], through its wrapper's address."""
    t = np.empty(P)
    for j in range(P):
        t[j] = theta[j]
    v = np.empty(m)
    _call_charge_address(addr, t.ctypes.data, P, v.ctypes.data, m)
    for i in range(m):
        out[pos + i] = v[i]


@njit(cache=True)
def table_charges(theta, q, ints, floats, t, q0):
    """Every charge of the user-charge table at ints[t] (module docstring) at θ, into q[q0:], in order."""
    pos = q0
    for k in range(ints[t]):
        c = t + 1 + 4 * k
        degree, nnz, io, fo = ints[c], ints[c + 1], ints[c + 2], ints[c + 3]
        s = 0.0
        if degree == 2:
            for e in range(nnz):
                s += floats[fo + e] * theta[ints[io + e]] * theta[ints[io + nnz + e]]
            q[pos] = 0.5 * s
            pos += 1
        elif degree == 1:
            for e in range(nnz):
                s += floats[fo + e] * theta[ints[io + e]]
            q[pos] = s
            pos += 1
        else:  # a function charge: nnz = its size m, ints[io] its wrapper's address, fo = P
            _function_charge(ints[io], fo, theta, q, pos, nnz)
            pos += nnz


@njit(cache=True)
def table_scales(theta, scales, ints, floats, t, g0):
    """Per charge of the table at ints[t] the size of the terms that cancel, into scales[g0:] (one group
    each): ½Σ|S_e θ_i θ_j|, Σ|v_e θ_i|, and Σ_i |q_i(θ)| for a function charge."""
    for k in range(ints[t]):
        c = t + 1 + 4 * k
        degree, nnz, io, fo = ints[c], ints[c + 1], ints[c + 2], ints[c + 3]
        s = 0.0
        if degree == 2:
            for e in range(nnz):
                s += abs(floats[fo + e] * theta[ints[io + e]] * theta[ints[io + nnz + e]])
            s *= 0.5
        elif degree == 1:
            for e in range(nnz):
                s += abs(floats[fo + e] * theta[ints[io + e]])
        else:
            v = np.empty(nnz)
            _function_charge(ints[io], fo, theta, v, 0, nnz)
            for i in range(nnz):
                s += abs(v[i])
        scales[g0 + k] = s


@njit(cache=True)
def table_cross(a, b, q, ints, floats, t, q0):
    """The bilinear form B(a, b) = ½aᵀSb of each quadratic charge of the table (q(a + b) = q(a) + 2B + q(b)),
    into q[q0:]; linear and function charges get NaN (their laws do not use it)."""
    pos = q0
    for k in range(ints[t]):
        c = t + 1 + 4 * k
        degree, nnz, io, fo = ints[c], ints[c + 1], ints[c + 2], ints[c + 3]
        if degree == 2:
            s = 0.0
            for e in range(nnz):
                s += floats[fo + e] * a[ints[io + e]] * b[ints[io + nnz + e]]
            q[pos] = 0.5 * s
            pos += 1
        elif degree == 1:
            q[pos] = np.nan
            pos += 1
        else:
            for i in range(nnz):
                q[pos + i] = np.nan
            pos += nnz


@njit(cache=True)
def custom_charges(theta, q, ints, floats):
    """Every user charge at θ (½θᵀSθ, ⟨v, θ⟩, q(θ))."""
    table_charges(theta, q, ints, floats, BASE + 2, 0)


@njit(cache=True)
def custom_charge_scales(theta, scales, ints, floats):
    """Per charge the size of the terms that cancel: ½Σ|S_e θ_i θ_j|, Σ|v_e θ_i|, Σ|q_i(θ)|."""
    table_scales(theta, scales, ints, floats, BASE + 2, 0)


# ---- user charges beside a built-in model's catalogue (``model.with_charges``): a trailer of the
# built-in descriptor, found by its tag in the last entry ----

# USER_TRAILER_TAG ("NSUSERQ1", kernels/layout.py) is ints[-1] of a built-in model's descriptor with user
# charges; then ints[-2] = t (where the table is), ints[-3] and ints[-4] the numbers of catalogue groups and
# of catalogue charge components (where the user's go), ints[-5] = F, the number of the user charges'
# values, the last F entries of the floats (the table's float offsets count from there, so the descriptor
# does not depend on the model's constants; kernels that read optional floats by the length ask
# ``layout.model_floats_length``). No built-in descriptor ends in this value (its last entry is a width,
# an offset or a small code).


@njit(cache=True, inline="always")
def _user_floats(ints, floats):
    f = ints[ints.shape[0] - 5]
    return floats[floats.shape[0] - f:]


@njit(cache=True)
def trailer_charges(theta, q, ints, floats):
    """The user charges after the catalogue's in q, when the descriptor has them."""
    n = ints.shape[0]
    if ints[n - 1] == USER_TRAILER_TAG:
        table_charges(theta, q, ints, _user_floats(ints, floats), ints[n - 2], ints[n - 4])


@njit(cache=True)
def trailer_scales(theta, scales, ints, floats):
    n = ints.shape[0]
    if ints[n - 1] == USER_TRAILER_TAG:
        table_scales(theta, scales, ints, _user_floats(ints, floats), ints[n - 2], ints[n - 3])


@njit(cache=True)
def trailer_cross(a, b, q, ints, floats):
    n = ints.shape[0]
    if ints[n - 1] == USER_TRAILER_TAG:
        table_cross(a, b, q, ints, _user_floats(ints, floats), ints[n - 2], ints[n - 4])


def charge_table(charges, int_pos, float_pos):
    """(table, indices, values) of the user charges [(degree, rows, cols, values)] — degree 0 entries are
    (0, size m, address, P) function charges — with the table's index and value offsets starting at
    ``int_pos`` (where the indices will go) and ``float_pos``."""
    table, idx, vals = [len(charges)], [], []
    for degree, rows, cols, values in charges:
        if degree == 0:  # rows = size m, cols = address, values = P
            table += [0, int(rows), int_pos, int(values)]
            idx.append(int(cols))
            int_pos += 1
            continue
        nnz = len(values)
        table += [degree, nnz, int_pos, float_pos]
        idx += list(rows) + (list(cols) if degree == 2 else [])
        vals += list(values)
        int_pos += nnz * (2 if degree == 2 else 1)
        float_pos += nnz
    return table, idx, vals


def with_trailer(ints, charges, n_catalogue, n_catalogue_groups):
    """(a built-in model's ints with the user charges' table appended (``USER_TRAILER_TAG``), the values to
    append to its floats)."""
    t = len(ints)
    table, idx, vals = charge_table(charges, t + 1 + 4 * len(charges), 0)
    ints = np.concatenate([np.asarray(ints, np.int64), np.array(table + idx, dtype=np.int64),
                           np.array([len(vals), n_catalogue, n_catalogue_groups, t, USER_TRAILER_TAG], dtype=np.int64)])
    return ints, np.array(vals, dtype=np.float64)


def descriptor(address: int, n_params: int, charges) -> tuple[np.ndarray, np.ndarray]:
    """(ints, floats) of MODEL_CUSTOM for a wrapper address and charges [(degree, rows, cols, values)]
    (cols None for linear charges; (0, m, address, P) for function charges); see the module docstring."""
    from .layout import MODEL_CUSTOM

    head = [MODEL_CUSTOM, 1, 0, 1, int(n_params), 0, -1, int(address), int(n_params)]
    table, idx, vals = charge_table(charges, BASE + 3 + 4 * len(charges), 0)
    ints = np.array(head + table + idx, dtype=np.int64)
    floats = np.array(vals, dtype=np.float64) if vals else np.zeros(1)
    return ints, floats


FUNCTION_SIGNATURE = types.void(types.CPointer(types.float64), types.int64, types.CPointer(types.float64), types.int64)
"""A function charge's wrapper: (θ, P, out, m): writes q(θ) (m values) into out."""


def function_wrapper(user, cache=True):
    """A C-callable wrapper (``numba.cfunc``) of the user's compiled charge ``q(theta) -> 1-D array``."""

    def wrapper(p_theta, n_p, p_out, m):
        r = user(carray(p_theta, (n_p,)))
        out = carray(p_out, (m,))
        for i in range(m):
            out[i] = r[i]

    return cfunc(FUNCTION_SIGNATURE, cache=cache)(wrapper)


# ---- the lane contract (``CustomModel(..., loss_grad_lanes=f)``): LANES seeds per call, interleaved ----

def lanes_wrapper(user, cache=True):
    """A C-callable wrapper of the user's lane function ``f(theta (P, LANES), X, Y, grad_out (P, LANES))``
    with the per-seed wrapper's signature (``USER_SIGNATURE``; its result 0.0): column l of ``theta`` and of
    ``grad_out`` is one seed's θ and ∇L (θ[p, l]: the seed-interleaved layout of kernels/lanes.py)."""
    from .lanes_gemm import LANES

    def wrapper(p_theta, p_a, p_b, p_grad, n_p, a0, a1, b0, b1):
        user(carray(p_theta, (n_p, LANES)), carray(p_a, (a0, a1)), carray(p_b, (b0, b1)),
             carray(p_grad, (n_p, LANES)))
        return 0.0

    return cfunc(USER_SIGNATURE, cache=cache)(wrapper)


_LANE_ADDRESS = {}  # per-seed wrapper address -> (lane wrapper address, both wrappers: kept alive, so that
# the per-seed wrapper's address is never reused by another function's while this entry exists)


def register_lanes(wrapper, lane_wrapper) -> None:
    """The model whose per-seed wrapper is ``wrapper`` (its address at ints[BASE] of the descriptor) has the
    lane wrapper ``lane_wrapper``: the custom fast path (custom_fast.py) steps its seeds LANES at a time."""
    _LANE_ADDRESS[int(wrapper.address)] = (int(lane_wrapper.address), wrapper, lane_wrapper)


def lanes_address(ints) -> int:
    """The lane wrapper's address of a MODEL_CUSTOM descriptor, 0 when it has none."""
    entry = _LANE_ADDRESS.get(int(ints[BASE]))
    return entry[0] if entry else 0
