"""Explicit-SIMD register tiles for dense layers, written as numba intrinsics (LLVM vector IR).

numba runs LLVM's loop vectoriser but not its SLP vectoriser (switched off in numba for
miscompilations), so scalar code can vectorise a loop over data points but cannot keep a block of
outputs in registers across a reduction: every FMA of a rank-update loop then pays a load and a store
of its output. The dense tiles hold rows × points outputs in rows·points/8 vector registers of 8
doubles for the whole reduction and issue one FMA per register and input, with the weight broadcast
from memory. Their arithmetic is exactly that of the plain loop ``z = b; for c: z = fma(w[c], x[c], z)``:
the same FMAs in the same order, so results do not depend on the tiling. The dot tiles keep one vector
of partial sums per output of G = D Hᵀ and reduce them at the end.

Only C-contiguous float64 arrays are accepted (the row stride is taken from the shape).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

TILE_POINTS = 16  # data points per tile: two vectors of 8 doubles
_VEC = 8


def _c_float64(ty, ndim):
    return isinstance(ty, types.Array) and ty.ndim == ndim and ty.layout == "C" and ty.dtype == types.float64


def _make_dense_tile(rows, points=TILE_POINTS):
    @intrinsic
    def dense_tile(typingctx, W, Hin, Z, b, has_bias, k, j, relu):
        """Z[k:k+rows, j:j+points] = (b[k:k+rows] if has_bias) + W[k:k+rows, :] Hin[:, j:j+points], or if
        ``relu`` its ReLU max(z, 0.0) (NaN kept, as numba's max), stored straight from the registers.

        The caller guarantees k + rows ≤ W.shape[0] and j + points ≤ Hin.shape[1] (no bounds checks)."""
        if not (_c_float64(W, 2) and _c_float64(Hin, 2) and _c_float64(Z, 2) and _c_float64(b, 1)):
            return None
        sig = types.void(W, Hin, Z, b, has_bias, k, j, relu)

        def codegen(context, builder, signature, args):
            W_arg, H_arg, Z_arg, b_arg, has_bias_val, k_val, j_val, relu_val = args
            Wa = context.make_array(signature.args[0])(context, builder, W_arg)
            Ha = context.make_array(signature.args[1])(context, builder, H_arg)
            Za = context.make_array(signature.args[2])(context, builder, Z_arg)
            ba = context.make_array(signature.args[3])(context, builder, b_arg)
            dbl, i64, i32 = ir.DoubleType(), ir.IntType(64), ir.IntType(32)
            vty = ir.VectorType(dbl, _VEC)
            undef = ir.Constant(vty, ir.Undefined)
            zero_mask = ir.Constant(ir.VectorType(i32, _VEC), [0] * _VEC)
            vfma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                  f"llvm.fma.v{_VEC}f64")
            m = builder.extract_value(Wa.shape, 1)
            h_stride = builder.extract_value(Ha.shape, 1)
            z_stride = builder.extract_value(Za.shape, 1)
            n_vec = points // _VEC

            def splat(x):
                return builder.shuffle_vector(builder.insert_element(undef, x, ir.Constant(i32, 0)),
                                              undef, zero_mask)

            def vector_at(data, index):
                return builder.bitcast(builder.gep(data, [index], inbounds=True), vty.as_pointer())

            def row(r):
                return builder.add(k_val, ir.Constant(i64, r))

            # accumulators start at the bias (allocas in the entry block: promoted to registers)
            accs = []
            for r in range(rows):
                start = cgutils.alloca_once_value(builder, ir.Constant(dbl, 0.0))
                with builder.if_then(has_bias_val):
                    builder.store(builder.load(builder.gep(ba.data, [row(r)], inbounds=True)), start)
                init = splat(builder.load(start))
                for _ in range(n_vec):
                    accs.append(cgutils.alloca_once_value(builder, init))
            with cgutils.for_range(builder, m) as loop:
                c = loop.index
                x_pos = builder.add(builder.mul(c, h_stride), j_val)
                xs = [builder.load(vector_at(Ha.data, builder.add(x_pos, ir.Constant(i64, v * _VEC))), align=8)
                      for v in range(n_vec)]
                for r in range(rows):
                    w_ptr = builder.gep(Wa.data, [builder.add(builder.mul(row(r), m), c)], inbounds=True)
                    w = splat(builder.load(w_ptr))
                    for v in range(n_vec):
                        acc = accs[r * n_vec + v]
                        builder.store(builder.call(vfma, [w, xs[v], builder.load(acc)]), acc)
            zero = ir.Constant(vty, [0.0] * _VEC)
            for r in range(rows):
                z_pos = builder.add(builder.mul(row(r), z_stride), j_val)
                for v in range(n_vec):
                    z = builder.load(accs[r * n_vec + v])
                    z = builder.select(relu_val, builder.select(builder.fcmp_ordered("<", z, zero), zero, z), z)
                    builder.store(z, vector_at(Za.data, builder.add(z_pos, ir.Constant(i64, v * _VEC))), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return dense_tile


dense_tile_8 = _make_dense_tile(8)
dense_tile_1 = _make_dense_tile(1)
dense_tile_1x64 = _make_dense_tile(1, 64)  # one row: 8 independent FMA chains hide the FMA latency


def _make_dot_tile(rows, cols):
    @intrinsic
    def dot_tile(typingctx, D, Hin, G, k, c, n_points):
        """G[k:k+rows, c:c+cols] = D[k:k+rows, :n] Hin[c:c+cols, :n]ᵀ for n = n_points (a multiple of 8):
        one vector accumulator of 8 partial sums per output, reduced at the end by a transpose-add
        tree (three shuffle+add stages for four outputs instead of four horizontal sums)."""
        if not (_c_float64(D, 2) and _c_float64(Hin, 2) and _c_float64(G, 2)):
            return None
        sig = types.void(D, Hin, G, k, c, n_points)

        def codegen(context, builder, signature, args):
            D_arg, H_arg, G_arg, k_val, c_val, n_val = args
            Da = context.make_array(signature.args[0])(context, builder, D_arg)
            Ha = context.make_array(signature.args[1])(context, builder, H_arg)
            Ga = context.make_array(signature.args[2])(context, builder, G_arg)
            dbl, i64, i32 = ir.DoubleType(), ir.IntType(64), ir.IntType(32)
            vty = ir.VectorType(dbl, _VEC)
            vfma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                  f"llvm.fma.v{_VEC}f64")
            d_stride = builder.extract_value(Da.shape, 1)
            h_stride = builder.extract_value(Ha.shape, 1)
            g_stride = builder.extract_value(Ga.shape, 1)

            def vector_at(data, index):
                return builder.bitcast(builder.gep(data, [index], inbounds=True), vty.as_pointer())

            def offset(base, r, stride):
                return builder.mul(builder.add(base, ir.Constant(i64, r)), stride)

            d_rows = [offset(k_val, r, d_stride) for r in range(rows)]
            h_rows = [offset(c_val, s, h_stride) for s in range(cols)]
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * _VEC)) for _ in range(rows * cols)]
            n_vec = builder.udiv(n_val, ir.Constant(i64, _VEC))
            with cgutils.for_range(builder, n_vec) as loop:
                j = builder.mul(loop.index, ir.Constant(i64, _VEC))
                ds = [builder.load(vector_at(Da.data, builder.add(p, j)), align=8) for p in d_rows]
                hs = [builder.load(vector_at(Ha.data, builder.add(p, j)), align=8) for p in h_rows]
                for r in range(rows):
                    for s in range(cols):
                        acc = accs[r * cols + s]
                        builder.store(builder.call(vfma, [ds[r], hs[s], builder.load(acc)]), acc)

            def shuffle_add(a, b, lo, hi):
                mask_lo = ir.Constant(ir.VectorType(i32, len(lo)), lo)
                mask_hi = ir.Constant(ir.VectorType(i32, len(hi)), hi)
                return builder.fadd(builder.shuffle_vector(a, b, mask_lo), builder.shuffle_vector(a, b, mask_hi))

            for r in range(rows):
                for s0 in range(0, cols, 4):
                    a, b, cc, d = (builder.load(accs[r * cols + s0 + t]) for t in range(4))
                    # lanes [a0+a4 … a3+a7, b0+b4 …], then pairs, then the four totals a, b, c, d
                    u = shuffle_add(a, b, [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])
                    v = shuffle_add(cc, d, [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])
                    w = shuffle_add(u, v, [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
                    x = shuffle_add(w, w, [0, 4, 2, 6], [1, 5, 3, 7])
                    pos = builder.add(builder.add(offset(k_val, r, g_stride), c_val), ir.Constant(i64, s0))
                    ptr = builder.bitcast(builder.gep(Ga.data, [pos], inbounds=True), x.type.as_pointer())
                    builder.store(x, ptr, align=8)
            return context.get_dummy_value()

        return sig, codegen

    return dot_tile


dot_tile_4x4 = _make_dot_tile(4, 4)
dot_tile_1x4 = _make_dot_tile(1, 4)
