"""Small matrix products on seed-interleaved blocks, written directly in LLVM IR.

A block holds ``LANES`` seeds interleaved: element e of every seed's flat vector lives at
``x[e·LANES : (e+1)·LANES]``, one seed per vector lane. A product of per-seed matrices is then an
elementwise vector FMA per (i, j, k): no broadcast, no shuffles, no horizontal sums.

    lane_gemm(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)
        C[co + i·c_rs + j·c_cs] = Σ_k A[ao + i·a_rs + k·a_cs] · B[bo + k·b_rs + j·b_cs]   (per lane)

    lane_gemm_shared(...)  the same with B one matrix shared by all seeds (a plain float64 array,
                           each entry broadcast to the lanes): the data moments.

Offsets and strides count elements (vectors of LANES doubles), so any operand may be read or
written transposed at no cost. Each output is accumulated exactly as the per-seed ``gemm.gemm``
does it: from +0.0, one fused multiply-add per k in increasing k — so every lane's numbers are
bit-identical to the per-seed kernel's. Outputs are kept in registers in tiles of up to 4 × 4
vectors (16 accumulators + 8 operands of the 32 AVX-512 registers) for the whole k loop.
No bounds are checked: the caller passes consistent sizes.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # seeds per block: doubles per 512-bit vector
_ROWS = 4
_COLS = 4


def _vty():
    return ir.VectorType(ir.DoubleType(), LANES)


def _fma(builder, a, b, c):
    vty = _vty()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]), "llvm.fma.v8f64")
    return builder.call(fn, [a, b, c])


def _splat(builder, x):
    vty = _vty()
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


def _vec_ptr(builder, base, elem):
    """Pointer to the vector of element ``elem`` (an i64) of a lane array whose data starts at ``base``."""
    i64 = ir.IntType(64)
    p = builder.gep(base, [builder.mul(elem, ir.Constant(i64, LANES))], inbounds=True)
    return builder.bitcast(p, _vty().as_pointer())


def _emit_tile(builder, rows, cols, shared, c_ptr, a_ptr, b_ptr, i0, j0, s, K):
    """One tile of ``rows`` × ``cols`` outputs from (i0, j0); s = the strides (i64 values)."""
    i64 = ir.IntType(64)
    vty = _vty()
    co, c_rs, c_cs, ao, a_rs, a_cs, bo, b_rs, b_cs = s

    def const(v):
        return ir.Constant(i64, v)

    accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES)) for _ in range(cols)]
            for _ in range(rows)]
    for r in range(rows):
        for c in range(cols):
            builder.store(ir.Constant(vty, [0.0] * LANES), accs[r][c])
    a_row = [builder.add(ao, builder.mul(builder.add(i0, const(r)), a_rs)) for r in range(rows)]
    b_col = [builder.add(bo, builder.mul(builder.add(j0, const(c)), b_cs)) for c in range(cols)]
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        ka, kb = builder.mul(k, a_cs), builder.mul(k, b_rs)
        av = [builder.load(_vec_ptr(builder, a_ptr, builder.add(a_row[r], ka)), align=8) for r in range(rows)]
        if shared:
            bv = [_splat(builder, builder.load(builder.gep(b_ptr, [builder.add(b_col[c], kb)], inbounds=True)))
                  for c in range(cols)]
        else:
            bv = [builder.load(_vec_ptr(builder, b_ptr, builder.add(b_col[c], kb)), align=8) for c in range(cols)]
        for r in range(rows):
            for c in range(cols):
                builder.store(_fma(builder, av[r], bv[c], builder.load(accs[r][c])), accs[r][c])
    for r in range(rows):
        for c in range(cols):
            pos = builder.add(co, builder.add(builder.mul(builder.add(i0, const(r)), c_rs),
                                              builder.mul(builder.add(j0, const(c)), c_cs)))
            builder.store(builder.load(accs[r][c]), _vec_ptr(builder, c_ptr, pos), align=8)


def _emit_cols(builder, rows, shared, c_ptr, a_ptr, b_ptr, i0, s, n, K):
    i64 = ir.IntType(64)
    n_main = builder.sub(n, builder.srem(n, ir.Constant(i64, _COLS)))
    with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_main, ir.Constant(i64, _COLS), inc=True) as (j0, _):
        _emit_tile(builder, rows, _COLS, shared, c_ptr, a_ptr, b_ptr, i0, j0, s, K)
    with cgutils.for_range_slice(builder, n_main, n, ir.Constant(i64, 1), inc=True) as (j0, _):
        _emit_tile(builder, rows, 1, shared, c_ptr, a_ptr, b_ptr, i0, j0, s, K)


def _make(shared):
    @intrinsic
    def _lane_gemm_ir(typingctx, C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
        ints = (co, c_rs, c_cs, ao, a_rs, a_cs, bo, b_rs, b_cs, m, n, K)
        if not all(isinstance(t, types.Integer) for t in ints):
            return None
        for arr in (C, A, B):
            if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
                return None
        sig = types.void(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)

        def codegen(context, builder, signature, args):
            arrs = (args[0], args[4], args[8])
            atys = (signature.args[0], signature.args[4], signature.args[8])
            c_ptr, a_ptr, b_ptr = (cgutils.create_struct_proxy(t)(context, builder, value=v).data
                                   for v, t in zip(arrs, atys))
            idx = [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 14]
            vals = [context.cast(builder, args[i], signature.args[i], types.int64) for i in idx]
            s, (m, n, K) = vals[:9], vals[9:]
            i64 = ir.IntType(64)
            m_main = builder.sub(m, builder.srem(m, ir.Constant(i64, _ROWS)))
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), m_main, ir.Constant(i64, _ROWS),
                                         inc=True) as (i0, _):
                _emit_cols(builder, _ROWS, shared, c_ptr, a_ptr, b_ptr, i0, s, n, K)
            with cgutils.for_range_slice(builder, m_main, m, ir.Constant(i64, 1), inc=True) as (i0, _):
                _emit_cols(builder, 1, shared, c_ptr, a_ptr, b_ptr, i0, s, n, K)
            return context.get_dummy_value()

        return sig, codegen

    return _lane_gemm_ir


_lane_gemm_ir = _make(False)
_lane_gemm_shared_ir = _make(True)

_F = "float64[::1]"
_I = "int64"
_SIG = f"void({_F}, {_I}, {_I}, {_I}, {_F}, {_I}, {_I}, {_I}, {_F}, {_I}, {_I}, {_I}, {_I}, {_I}, {_I})"


@njit(_SIG, cache=True)
def lane_gemm(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
    """Per-lane C = A B (see the module docstring); A, B, C are lane arrays."""
    _lane_gemm_ir(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)


@njit(_SIG, cache=True)
def lane_gemm_shared(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
    """Per-lane C = A B with B one plain matrix shared by every lane (offsets into B count doubles)."""
    _lane_gemm_shared_ir(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)
