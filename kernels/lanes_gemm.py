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

from .simd import _c_float64

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


def _emit_tile(builder, rows, cols, shared, c_ptr, a_ptr, b_ptr, i0, j0, s, K, field=None):
    """One tile of ``rows`` × ``cols`` outputs from (i0, j0); s = the strides (i64 values).
    With ``field`` = (x_ptr, −λ splat) the tile stores −acc − λx (x at the output's position) instead."""
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
            acc = builder.load(accs[r][c])
            if field is not None:
                x_ptr, neg_lam = field
                x = builder.load(_vec_ptr(builder, x_ptr, pos), align=8)
                acc = _fma(builder, neg_lam, x, builder.fneg(acc))
            builder.store(acc, _vec_ptr(builder, c_ptr, pos), align=8)


def _tiles(builder, total, most):
    """Split ``total`` into ceil(total / most) tiles as even as possible: (count, base size, tiles with one more)."""
    i64 = ir.IntType(64)
    count = builder.udiv(builder.add(total, ir.Constant(i64, most - 1)), ir.Constant(i64, most))
    safe = builder.select(builder.icmp_signed("==", count, ir.Constant(i64, 0)), ir.Constant(i64, 1), count)
    return count, builder.udiv(total, safe), builder.urem(total, safe)


def _tile_start(builder, t, base, extra):
    return builder.add(builder.mul(t, base), builder.select(builder.icmp_signed("<", t, extra), t, extra))


def _emit_product(builder, shared, c_ptr, a_ptr, b_ptr, s, m, n, K, field=None):
    """All tiles of C (m × n): even splits into tiles of at most 4 × 4, each size its own unrolled body
    (no 1-wide remainder tiles, whose single FMA chain would be latency-bound)."""
    i64 = ir.IntType(64)
    n_ti, base_i, extra_i = _tiles(builder, m, _ROWS)
    n_tj, base_j, extra_j = _tiles(builder, n, _COLS)
    fn = builder.function
    with cgutils.for_range(builder, n_ti) as li:
        ti = li.index
        i0 = _tile_start(builder, ti, base_i, extra_i)
        rows = builder.add(base_i, builder.zext(builder.icmp_signed("<", ti, extra_i), i64))
        with cgutils.for_range(builder, n_tj) as lj:
            tj = lj.index
            j0 = _tile_start(builder, tj, base_j, extra_j)
            cols = builder.add(base_j, builder.zext(builder.icmp_signed("<", tj, extra_j), i64))
            code = builder.add(builder.mul(rows, ir.Constant(i64, 8)), cols)
            done = fn.append_basic_block("tile_done")
            sw = builder.switch(code, done)
            for r in range(1, _ROWS + 1):
                for c in range(1, _COLS + 1):
                    blk = fn.append_basic_block(f"tile_{r}x{c}")
                    sw.add_case(ir.Constant(i64, 8 * r + c), blk)
                    builder.position_at_end(blk)
                    _emit_tile(builder, r, c, shared, c_ptr, a_ptr, b_ptr, i0, j0, s, K, field)
                    builder.branch(done)
            builder.position_at_end(done)


def _make(shared, field=False):
    def typer(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, *rest):
        ints = (co, c_rs, c_cs, ao, a_rs, a_cs, bo, b_rs, b_cs, m, n, K)
        if not all(isinstance(t, types.Integer) for t in ints):
            return False
        arrs = (C, A, B) + ((rest[0],) if field else ())
        return all(isinstance(a, types.Array) and a.dtype == types.float64 and a.layout == "C" for a in arrs)

    def codegen(context, builder, signature, args):
        arrs = (args[0], args[4], args[8])
        atys = (signature.args[0], signature.args[4], signature.args[8])
        c_ptr, a_ptr, b_ptr = (cgutils.create_struct_proxy(t)(context, builder, value=v).data
                               for v, t in zip(arrs, atys))
        idx = [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 14]
        vals = [context.cast(builder, args[i], signature.args[i], types.int64) for i in idx]
        s, (m, n, K) = vals[:9], vals[9:]
        fld = None
        if field:
            x_ptr = cgutils.create_struct_proxy(signature.args[15])(context, builder, value=args[15]).data
            lam = context.cast(builder, args[16], signature.args[16], types.float64)
            fld = (x_ptr, _splat(builder, builder.fneg(lam)))
        _emit_product(builder, shared, c_ptr, a_ptr, b_ptr, s, m, n, K, fld)
        return context.get_dummy_value()

    if field:
        @intrinsic
        def _ir(typingctx, C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, X, lam):
            if not typer(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, X):
                return None
            return types.void(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, X, lam), codegen
    else:
        @intrinsic
        def _ir(typingctx, C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
            if not typer(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
                return None
            return types.void(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K), codegen
    return _ir


_lane_gemm_ir = _make(False)
_lane_gemm_shared_ir = _make(True)
_lane_gemm_field_ir = _make(False, field=True)


@intrinsic
def _lane_combine_ir(typingctx, y, h, weights, K, out, bound):
    """out = y + Σ_i (h·weights[i]) K[i] over the nonzero weights, one fused multiply-add per term in
    increasing i (``explicit.combine``'s arithmetic, in one pass); returns how many entries of out are
    not within ±bound (NaN counts)."""
    if not all(_c_float64(arr, nd) for arr, nd in ((y, 1), (weights, 1), (K, 2), (out, 1))):
        return None
    sig = types.int64(y, h, weights, K, out, bound)

    def codegen(context, builder, signature, args):
        y_a, h_v, w_a, k_a, o_a, bound_v = args
        ya = context.make_array(signature.args[0])(context, builder, y_a)
        wa = context.make_array(signature.args[2])(context, builder, w_a)
        ka = context.make_array(signature.args[3])(context, builder, k_a)
        oa = context.make_array(signature.args[4])(context, builder, o_a)
        i64 = ir.IntType(64)
        vty = _vty()
        n = builder.extract_value(ya.shape, 0)
        n_vec = builder.udiv(n, ir.Constant(i64, LANES))
        n_k = builder.extract_value(ka.shape, 0)
        k_stride = builder.extract_value(ka.shape, 1)  # elements per row of K
        bnd = _splat(builder, context.cast(builder, bound_v, signature.args[5], types.float64))
        outside = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
        # the nonzero terms (index, h·w_i), in increasing i — combine computes w = h * weights[i], skips w == 0
        idx = cgutils.alloca_once(builder, i64, size=ir.Constant(i64, 16))
        ws = cgutils.alloca_once(builder, ir.DoubleType(), size=ir.Constant(i64, 16))
        nz = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
        with cgutils.for_range(builder, n_k) as li:
            w = builder.fmul(h_v, builder.load(builder.gep(wa.data, [li.index], inbounds=True)))
            with builder.if_then(builder.fcmp_ordered("!=", w, ir.Constant(ir.DoubleType(), 0.0))):
                c = builder.load(nz)
                builder.store(w, builder.gep(ws, [c]))
                builder.store(li.index, builder.gep(idx, [c]))
                builder.store(builder.add(c, ir.Constant(i64, 1)), nz)
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty]), "llvm.fabs.v8f64")
        fn = builder.function
        done = fn.append_basic_block("combine_done")
        count = builder.load(nz)
        sw = builder.switch(builder.select(builder.icmp_unsigned(">", count, ir.Constant(i64, 4)),
                                           ir.Constant(i64, 5), count), done)
        for terms in range(6):  # 0 … 4 terms unrolled; 5 stands for "more", run term by term
            blk = fn.append_basic_block(f"combine_{terms}")
            sw.add_case(ir.Constant(i64, terms), blk)
            builder.position_at_end(blk)
            unrolled = min(terms, 4)
            wv = [_splat(builder, builder.load(builder.gep(ws, [ir.Constant(i64, t)]))) for t in range(unrolled)]
            rows = [builder.gep(ka.data, [builder.mul(builder.load(builder.gep(idx, [ir.Constant(i64, t)])), k_stride)])
                    for t in range(unrolled)]
            with cgutils.for_range(builder, n_vec) as lv:
                v = lv.index
                off = builder.mul(v, ir.Constant(i64, LANES))
                o = builder.load(_vec_ptr(builder, ya.data, v), align=8)
                for t in range(unrolled):
                    kv = builder.load(builder.bitcast(builder.gep(rows[t], [off], inbounds=True), vty.as_pointer()),
                                      align=8)
                    o = _fma(builder, wv[t], kv, o)
                if terms == 5:
                    acc = cgutils.alloca_once(builder, vty)
                    builder.store(o, acc)
                    with cgutils.for_range_slice(builder, ir.Constant(i64, 4), count, ir.Constant(i64, 1),
                                                 inc=True) as (t, _):
                        w = _splat(builder, builder.load(builder.gep(ws, [t])))
                        row = builder.gep(ka.data, [builder.mul(builder.load(builder.gep(idx, [t])), k_stride)])
                        kv = builder.load(builder.bitcast(builder.gep(row, [off], inbounds=True), vty.as_pointer()),
                                          align=8)
                        builder.store(_fma(builder, w, kv, builder.load(acc)), acc)
                    o = builder.load(acc)
                builder.store(o, _vec_ptr(builder, oa.data, v), align=8)
                inside = builder.fcmp_ordered("<=", builder.call(fabs, [o]), bnd)
                bits = builder.zext(builder.bitcast(builder.not_(inside), ir.IntType(LANES)), i64)
                builder.store(builder.add(builder.load(outside), bits), outside)
            builder.branch(done)
        builder.position_at_end(done)
        return builder.load(outside)

    return sig, codegen

# The products are inlined where they are called (numba's untyped IR; ``lanes.lane_gradient_field``, which
# is itself inlined into ``lanes._advance_lanes``): no compiled function and no cache file of their own, so
# a cold start compiles the fast path once and a warm start loads one function for it. Neither caller has
# fastmath flags, so the IR written here keeps exactly its own arithmetic (explicit fma calls). Called from
# Python they compile as ordinary functions. The intrinsics accept only C-contiguous float64 arrays.


@njit(cache=True, inline="always")
def lane_gemm(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
    """Per-lane C = A B (see the module docstring); A, B, C are lane arrays."""
    _lane_gemm_ir(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)


@njit(cache=True, inline="always")
def lane_gemm_field(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, X, lam):
    """Per-lane C = −A B − λX (X at C's positions): a product that is the last step of the gradient
    flow field −∇L − λθ, stored negated as the field is (``fields._gradient_flow_field``)."""
    _lane_gemm_field_ir(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K, X, lam)


@njit(cache=True)
def lane_combine(y, h, weights, K, out, bound):
    """out = y + h Σ_i weights[i] K[i] in one pass over lane arrays (length a multiple of LANES,
    at most 16 stages); returns the number of entries of out outside ±bound or not finite."""
    return _lane_combine_ir(y, h, weights, K, out, bound)


@njit(cache=True, inline="always")
def lane_gemm_shared(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K):
    """Per-lane C = A B with B one plain matrix shared by every lane (offsets into B count doubles)."""
    _lane_gemm_shared_ir(C, co, c_rs, c_cs, A, ao, a_rs, a_cs, B, bo, b_rs, b_cs, m, n, K)
