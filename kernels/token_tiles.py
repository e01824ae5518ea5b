"""Register tiles for products between tokens, batched over sequences (the lanes), and a vector exp.

The attention kernel keeps every intermediate as a (rows × N) array whose rows run over the N
sequences. A product between tokens, e.g. the scores S[t, s] = Σ_a Q[t, a] K[s, a], is then a batch of
N tiny matrix products, one per lane:

    C[c_off + i·c_si + j·c_sj, n] = scale · Σ_{k < K} A[a_off + i·a_si + k·a_sk, n] · B[b_off + j·b_sj + k·b_sk, n]

for i < m, j < p and every lane n < N (row indices into 2-D C-contiguous float64 arrays; any
strides, so transposes and sums over queries or keys cost nothing). ``token_product`` runs it with
tiles of 4 × 4 outputs (16 vector accumulators of 8 lanes) held in registers for the whole k loop:
each k loads 4 + 4 vectors for 16 FMAs, where a one-output loop loads two vectors and loads and
stores its output per FMA. Each output is one FMA chain in k order, ``acc = fma(a_k, b_k, acc)`` from
0, then multiplied by ``scale``. Edge tiles are 4 × 1, 1 × 4 and 1 × 1; the last N mod 8 lanes use
masked loads and stores (nothing outside the arrays is touched). No bounds are checked: the caller
passes consistent sizes (kernel contract).

``exp_rows`` is exp over a row in plain arithmetic that LLVM vectorises (numba has no vector exp
without SVML): x = k ln 2 + r, |r| ≤ ln2/2, a degree-13 Taylor polynomial in r (truncation
< 1e-17 relative) times 2^k built from its bits. Within 2 ulp of ``math.exp`` for x ≥ −708 (tested);
below −708 it returns 0 (math.exp gives a subnormal < 3.3e-308 there, or 0), above log(max double) inf;
NaN stays NaN.
"""

import math

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


_VEC = 8


def _c2d(ty):
    return isinstance(ty, types.Array) and ty.ndim == 2 and ty.layout == "C" and ty.dtype == types.float64


def _make_tile(rows, cols):
    @intrinsic
    def tile(typingctx, C, c_off, c_si, c_sj, A, a_off, a_si, a_sk, B, b_off, b_sj, b_sk, K, scale):
        if not (_c2d(C) and _c2d(A) and _c2d(B)):
            return None
        sig = types.void(C, c_off, c_si, c_sj, A, a_off, a_si, a_sk, B, b_off, b_sj, b_sk, K, scale)

        def codegen(context, builder, signature, args):
            dbl, i64, i32 = ir.DoubleType(), ir.IntType(64), ir.IntType(32)
            vty = ir.VectorType(dbl, _VEC)
            mty = ir.VectorType(ir.IntType(1), _VEC)
            vals = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
                    for v, t in zip(args, signature.args)]
            (C_arg, c_off_, c_si_, c_sj_, A_arg, a_off_, a_si_, a_sk_, B_arg, b_off_, b_sj_, b_sk_, K_, scale_) = vals
            Ca = context.make_array(signature.args[0])(context, builder, C_arg)
            Aa = context.make_array(signature.args[4])(context, builder, A_arg)
            Ba = context.make_array(signature.args[8])(context, builder, B_arg)
            nC = builder.extract_value(Ca.shape, 1)
            nA = builder.extract_value(Aa.shape, 1)
            nB = builder.extract_value(Ba.shape, 1)
            vfma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                  f"llvm.fma.v{_VEC}f64")
            dptr = dbl.as_pointer()
            mload = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [dptr, i32, mty, vty]),
                                                   f"llvm.masked.load.v{_VEC}f64.p0")
            mstore = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vty, dptr, i32, mty]), f"llvm.masked.store.v{_VEC}f64.p0")
            undef = ir.Constant(vty, ir.Undefined)
            zero_mask = ir.Constant(ir.VectorType(i32, _VEC), [0] * _VEC)
            scale_v = builder.shuffle_vector(builder.insert_element(undef, scale_, ir.Constant(i32, 0)),
                                             undef, zero_mask)
            N = nC

            def vptr(data, pos):  # element pos as a double*: masked ops take it, plain ones bitcast it
                return builder.gep(data, [pos], inbounds=True)

            # row starts that do not depend on k: row(i) = off + i·si, times the row stride
            a_rows = [builder.add(a_off_, builder.mul(ir.Constant(i64, i), a_si_)) for i in range(rows)]
            b_rows = [builder.add(b_off_, builder.mul(ir.Constant(i64, j), b_sj_)) for j in range(cols)]
            c_pos = [[builder.mul(builder.add(c_off_, builder.add(builder.mul(ir.Constant(i64, i), c_si_),
                                                                   builder.mul(ir.Constant(i64, j), c_sj_))), nC)
                      for j in range(cols)] for i in range(rows)]
            accs = [[cgutils.alloca_once(builder, vty) for _ in range(cols)] for _ in range(rows)]

            def body(n0, mask):
                def load(ptr):
                    if mask is None:
                        return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=8)
                    return builder.call(mload, [ptr, ir.Constant(i32, 8), mask, ir.Constant(vty, [0.0] * _VEC)])

                for i in range(rows):
                    for j in range(cols):
                        builder.store(ir.Constant(vty, [0.0] * _VEC), accs[i][j])
                with cgutils.for_range(builder, K_) as loop:
                    k = loop.index
                    ka = builder.mul(k, a_sk_)
                    kb = builder.mul(k, b_sk_)
                    av = [load(vptr(Aa.data, builder.add(builder.mul(builder.add(r, ka), nA), n0))) for r in a_rows]
                    bv = [load(vptr(Ba.data, builder.add(builder.mul(builder.add(r, kb), nB), n0))) for r in b_rows]
                    for i in range(rows):
                        for j in range(cols):
                            builder.store(builder.call(vfma, [av[i], bv[j], builder.load(accs[i][j])]), accs[i][j])
                for i in range(rows):
                    for j in range(cols):
                        out = builder.fmul(builder.load(accs[i][j]), scale_v)
                        ptr = vptr(Ca.data, builder.add(c_pos[i][j], n0))
                        if mask is None:
                            builder.store(out, builder.bitcast(ptr, vty.as_pointer()), align=8)
                        else:
                            builder.call(mstore, [out, ptr, ir.Constant(i32, 8), mask])

            n_full = builder.sub(N, builder.srem(N, ir.Constant(i64, _VEC)))
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_full, ir.Constant(i64, _VEC),
                                         inc=True) as (n0, _):
                body(n0, None)
            with builder.if_then(builder.icmp_signed("<", n_full, N)):
                rem = builder.sub(N, n_full)
                lanes = ir.Constant(ir.VectorType(i64, _VEC), list(range(_VEC)))
                rem_v = builder.insert_element(ir.Constant(ir.VectorType(i64, _VEC), ir.Undefined), rem,
                                               ir.Constant(i32, 0))
                rem_v = builder.shuffle_vector(rem_v, ir.Constant(ir.VectorType(i64, _VEC), ir.Undefined), zero_mask)
                body(n_full, builder.icmp_signed("<", lanes, rem_v))
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_4x4 = _make_tile(4, 4)
_tile_4x1 = _make_tile(4, 1)
_tile_1x4 = _make_tile(1, 4)
_tile_1x1 = _make_tile(1, 1)


@njit(cache=True)
def token_product(C, c_off, c_si, c_sj, A, a_off, a_si, a_sk, B, b_off, b_sj, b_sk, m, p, K, scale):
    """C[c_off + i·c_si + j·c_sj, :] = scale · Σ_{k<K} A[a_off + i·a_si + k·a_sk, :] ∘ B[b_off + j·b_sj + k·b_sk, :]
    for i < m, j < p (lane-wise over the columns; see the module docstring)."""
    m4 = m - m % 4
    p4 = p - p % 4
    for i in range(0, m4, 4):
        ci = c_off + i * c_si
        ai = a_off + i * a_si
        for j in range(0, p4, 4):
            _tile_4x4(C, ci + j * c_sj, c_si, c_sj, A, ai, a_si, a_sk, B, b_off + j * b_sj, b_sj, b_sk, K, scale)
        for j in range(p4, p):
            _tile_4x1(C, ci + j * c_sj, c_si, c_sj, A, ai, a_si, a_sk, B, b_off + j * b_sj, b_sj, b_sk, K, scale)
    for i in range(m4, m):
        ci = c_off + i * c_si
        ai = a_off + i * a_si
        for j in range(0, p4, 4):
            _tile_1x4(C, ci + j * c_sj, c_si, c_sj, A, ai, a_si, a_sk, B, b_off + j * b_sj, b_sj, b_sk, K, scale)
        for j in range(p4, p):
            _tile_1x1(C, ci + j * c_sj, c_si, c_sj, A, ai, a_si, a_sk, B, b_off + j * b_sj, b_sj, b_sk, K, scale)


@intrinsic
def _bits_to_float(typingctx, k):
    if not isinstance(k, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(context.cast(builder, args[0], signature.args[0], types.int64), ir.DoubleType())

    return types.float64(k), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k·_LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -708.0  # 2^k stays normal above this
_EXP_CEIL = 709.782712893384  # log(largest double)


@njit(cache=True, fastmath={"contract"})  # no reassociation: the two-part reduction must stay in order
def _exp(x):
    xc = min(max(x, _EXP_FLOOR), _EXP_CEIL)
    kf = math.floor(xc * _LOG2E + 0.5)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    y = (p * _bits_to_float((int(kf) + 1022) << 52)) * 2.0  # 2^(k−1)·2: k = 1024 stays finite
    if x < _EXP_FLOOR:
        y = 0.0
    if x > _EXP_CEIL:
        y = math.inf
    if x != x:
        y = x
    return y


@njit(cache=True, fastmath={"contract"})
def exp_rows(out, x):
    """out[n] = exp(x[n]) (see the module docstring; ``out`` may be ``x``)."""
    for n in range(x.shape[0]):
        out[n] = _exp(x[n])


@njit(cache=True, fastmath={"contract"})
def exp_shifted_sum(row, m, tot):
    """row[n] = exp(row[n] − m[n]) and tot[n] += row[n] (one softmax pass; see ``exp_rows``)."""
    for n in range(row.shape[0]):
        e = _exp(row[n] - m[n])
        row[n] = e
        tot[n] += e
