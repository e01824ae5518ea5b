"""A register-tiled small matrix product for the per-seed kernels, written directly in LLVM IR.

    gemm(C, co, ldc, A, ao, a_rs, a_cs, B, bo, ldb, m, n, K, accumulate)

computes, on C-contiguous float64 arrays indexed flat,

    C[co + i·ldc + j]  (+)=  Σ_k A[ao + i·a_rs + k·a_cs] · B[bo + k·ldb + j],   i < m, j < n, k < K,

adding to C when ``accumulate`` is non-zero. A is read through two strides, so Aᵀ costs nothing;
B and C must be contiguous along j.

Why IR: the matrices here are tiny (5 … 16 on a side) and their sizes are only known at run time.
Written as numba loops, LLVM vectorises the wrong loop (the k reduction), or runs a 10- or 16-long
row entirely in the scalar remainder of a vector loop with 32-wide bodies, or cannot reorder loads
and stores it cannot prove disjoint (docs/performance/engine.md has the numbers). Here every output tile of up to
4 rows × 16 columns lives in registers (eight 8-lane vectors) for the whole k loop, each row of B
is read once per tile with AVX-512-style masked loads (a ragged last chunk of n needs no scalar
remainder), and C is written once. The masked-off lanes of a load are never touched, so no
padding is needed. No bounds are checked: the caller passes consistent sizes (kernel contract).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba import njit
from numba.extending import intrinsic

_LANES = 8  # doubles per vector (512 bits); LLVM splits them for narrower targets
_ROWS = 4  # rows of a full register tile
_VECS = 2  # vectors per tile row: 16 columns


def _vec_type():
    return ir.VectorType(ir.DoubleType(), _LANES)


def _mask_type():
    return ir.VectorType(ir.IntType(1), _LANES)


def _masked_load(builder, ptr, mask):
    mod = builder.module
    vty = _vec_type()
    fnty = ir.FunctionType(vty, [ptr.type, ir.IntType(32), _mask_type(), vty])
    fn = cgutils.get_or_insert_function(mod, fnty, "llvm.masked.load.v8f64.p0")
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 8), mask, ir.Constant(vty, None)])


def _masked_store(builder, val, ptr, mask):
    mod = builder.module
    fnty = ir.FunctionType(ir.VoidType(), [val.type, ptr.type, ir.IntType(32), _mask_type()])
    fn = cgutils.get_or_insert_function(mod, fnty, "llvm.masked.store.v8f64.p0")
    builder.call(fn, [val, ptr, ir.Constant(ir.IntType(32), 8), mask])


def _fma(builder, a, b, c):
    vty = _vec_type()
    fnty = ir.FunctionType(vty, [vty, vty, vty])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.v8f64")
    return builder.call(fn, [a, b, c])


def _splat(builder, x):
    vty = _vec_type()
    v = builder.insert_element(ir.Constant(vty, None), x, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES)
    return builder.shuffle_vector(v, ir.Constant(vty, None), zeros)


def _lane_mask(builder, remaining, first_lane):
    """Lanes first_lane … first_lane + 7 that are < remaining."""
    i64 = ir.IntType(64)
    lanes = ir.Constant(ir.VectorType(i64, _LANES), [first_lane + l for l in range(_LANES)])
    rem = builder.insert_element(ir.Constant(ir.VectorType(i64, _LANES), None), remaining, ir.Constant(ir.IntType(32), 0))
    rem = builder.shuffle_vector(rem, ir.Constant(ir.VectorType(i64, _LANES), None),
                                 ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES))
    return builder.icmp_signed("<", lanes, rem)


def _emit_tile(builder, rows, vecs, c_ptr, a_ptr, b_ptr, i0, j0, ldc, a_rs, a_cs, ldb, n, K, accumulate):
    """One tile: ``rows`` rows from i0, ``vecs`` vectors of columns from j0 (ragged end masked)."""
    i64 = ir.IntType(64)
    vty = _vec_type()
    rem = builder.sub(n, j0)
    masks = [_lane_mask(builder, rem, _LANES * v) for v in range(vecs)]
    accs = [[cgutils.alloca_once(builder, vty) for _ in range(vecs)] for _ in range(rows)]
    c_rows = [builder.gep(c_ptr, [builder.add(builder.mul(builder.add(i0, ir.Constant(i64, r)), ldc), j0)])
              for r in range(rows)]
    a_rows = [builder.gep(a_ptr, [builder.mul(builder.add(i0, ir.Constant(i64, r)), a_rs)]) for r in range(rows)]
    with builder.if_else(builder.icmp_signed("!=", accumulate, ir.Constant(i64, 0))) as (then, otherwise):
        with then:
            for r in range(rows):
                for v in range(vecs):
                    builder.store(_masked_load(builder, builder.gep(c_rows[r], [ir.Constant(i64, _LANES * v)]),
                                               masks[v]), accs[r][v])
        with otherwise:
            for r in range(rows):
                for v in range(vecs):
                    builder.store(ir.Constant(vty, [0.0] * _LANES), accs[r][v])
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        b_row = builder.gep(b_ptr, [builder.add(builder.mul(k, ldb), j0)])
        bv = [_masked_load(builder, builder.gep(b_row, [ir.Constant(i64, _LANES * v)]), masks[v])
              for v in range(vecs)]
        ka = builder.mul(k, a_cs)
        for r in range(rows):
            a = _splat(builder, builder.load(builder.gep(a_rows[r], [ka])))
            for v in range(vecs):
                builder.store(_fma(builder, a, bv[v], builder.load(accs[r][v])), accs[r][v])
    for r in range(rows):
        for v in range(vecs):
            _masked_store(builder, builder.load(accs[r][v]),
                          builder.gep(c_rows[r], [ir.Constant(i64, _LANES * v)]), masks[v])


def _emit_rows(builder, rows, i_lo, i_hi, c_ptr, a_ptr, b_ptr, ldc, a_rs, a_cs, ldb, n, K, accumulate):
    """Tiles of ``rows`` rows for i0 = i_lo, i_lo + rows, … < i_hi, over all column chunks."""
    i64 = ir.IntType(64)
    width = _LANES * _VECS
    with cgutils.for_range_slice(builder, i_lo, i_hi, ir.Constant(i64, rows), inc=True) as (i0, _):
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n, ir.Constant(i64, width), inc=True) as (j0, _):
            narrow = builder.icmp_signed("<=", builder.sub(n, j0), ir.Constant(i64, _LANES))
            with builder.if_else(narrow) as (one_vec, two_vecs):
                with one_vec:
                    _emit_tile(builder, rows, 1, c_ptr, a_ptr, b_ptr, i0, j0, ldc, a_rs, a_cs, ldb, n, K, accumulate)
                with two_vecs:
                    _emit_tile(builder, rows, _VECS, c_ptr, a_ptr, b_ptr, i0, j0, ldc, a_rs, a_cs, ldb, n, K,
                               accumulate)


@intrinsic
def _gemm_ir(typingctx, C, co, ldc, A, ao, a_rs, a_cs, B, bo, ldb, m, n, K, accumulate):
    ints = (co, ldc, ao, a_rs, a_cs, bo, ldb, m, n, K, accumulate)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None
    for arr in (C, A, B):  # any C-contiguous float64 array, indexed flat
        if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
            return None
    sig = types.void(C, co, ldc, A, ao, a_rs, a_cs, B, bo, ldb, m, n, K, accumulate)

    def codegen(context, builder, signature, args):
        (c_arr, co_, ldc_, a_arr, ao_, a_rs_, a_cs_, b_arr, bo_, ldb_, m_, n_, k_, acc_) = args
        i64 = ir.IntType(64)
        cast = [context.cast(builder, v, t, types.int64) for v, t in zip(
            (co_, ldc_, ao_, a_rs_, a_cs_, bo_, ldb_, m_, n_, k_, acc_), signature.args[1:3] + signature.args[4:7]
            + signature.args[8:])]
        co_, ldc_, ao_, a_rs_, a_cs_, bo_, ldb_, m_, n_, k_, acc_ = cast
        ptrs = []
        for arr, aty, off in ((c_arr, signature.args[0], co_), (a_arr, signature.args[3], ao_),
                              (b_arr, signature.args[7], bo_)):
            data = cgutils.create_struct_proxy(aty)(context, builder, value=arr).data
            ptrs.append(builder.gep(data, [off]))
        c_ptr, a_ptr, b_ptr = ptrs
        m_main = builder.sub(m_, builder.srem(m_, ir.Constant(i64, _ROWS)))
        _emit_rows(builder, _ROWS, ir.Constant(i64, 0), m_main, c_ptr, a_ptr, b_ptr, ldc_, a_rs_, a_cs_, ldb_,
                   n_, k_, acc_)
        _emit_rows(builder, 1, m_main, m_, c_ptr, a_ptr, b_ptr, ldc_, a_rs_, a_cs_, ldb_, n_, k_, acc_)
        return context.get_dummy_value()

    return sig, codegen


_F = "float64[::1]"
_I = "int64"


# One explicit signature: call sites pass literal ints and views of different arrays, and each
# combination would otherwise compile (and optimise) its own copy.
@njit(f"void({_F}, {_I}, {_I}, {_F}, {_I}, {_I}, {_I}, {_F}, {_I}, {_I}, {_I}, {_I}, {_I}, {_I})", cache=True)
def gemm(C, co, ldc, A, ao, a_rs, a_cs, B, bo, ldb, m, n, K, accumulate):
    """See the module docstring (one compiled body shared by every caller keeps compile time down)."""
    _gemm_ir(C, co, ldc, A, ao, a_rs, a_cs, B, bo, ldb, m, n, K, accumulate)
