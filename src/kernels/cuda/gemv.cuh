// Decode GEMV at memory speed: the stores and the kernels' bodies (gemv_parts). The formats, the
// launch arguments, the design and the plain accumulation are in gemv_accumulate.cuh.
#pragma once
#include "gemv_accumulate.cuh"
#include "gemv_prefetch.cuh"
#include "gemv_staged.cuh"

namespace gemv {

// The int8 row scale of `row` (1 for the other formats and past the rows).
template <int F> __device__ __forceinline__ float row_scale(const Part& p, int row) {
    return (F == INT8 && row < p.n) ? __ldg(p.b + row) : 1.f;
}

// OUT_ROPE_Q, OUT_ROPE_K: the pair (r0, r0 + d/2) of a head rotated at *pos into q's ys or the k
// cache; OUT_V_CACHE: rows r0, r1 into the v cache. Nothing at a position past the cache or tables.
template <typename T, int F, int M, int OUT>
__device__ __forceinline__ void store_rope(const float (&acc)[2][M], const Part& p, int m, int r0, int r1, const Rope& rope) {
    const uint32_t pos = *rope.pos;  // one value for the whole warp: no lane leaves the shuffles
    if (pos >= (uint32_t)rope.cap || pos >= (uint32_t)rope.max_pos) return;
    const int d = rope.d, kv_heads = p.n / d;
    const float s0 = row_scale<F>(p, r0), s1 = row_scale<F>(p, r1);
    T* ys = reinterpret_cast<T*>(p.ys);
#pragma unroll
    for (int i = 0; i < M; i++) {
        if (i >= m) continue;
        // the projections as they would be stored, then rotated in f32 (decode.cu's rope_kv)
        const float a = to_f(from_f<T>(warp_sum(acc[0][i]) * s0)), b = to_f(from_f<T>(warp_sum(acc[1][i]) * s1));
        if ((threadIdx.x & 31) != 0) continue;
        if constexpr (OUT == OUT_V_CACHE) {
            T* v = reinterpret_cast<T*>(rope.v_cache);
            if (r0 < p.n) v[cache_at(i, r0, kv_heads, rope.cap, d, pos)] = from_f<T>(a);
            if (r1 < p.n) v[cache_at(i, r1, kv_heads, rope.cap, d, pos)] = from_f<T>(b);
        } else {
            const size_t t = (size_t)pos * (d / 2) + r0 % d;
            const float c = to_f(reinterpret_cast<const T*>(rope.cos)[t]), sn = to_f(reinterpret_cast<const T*>(rope.sin)[t]);
            const T x0 = from_f<T>(a * c - b * sn), x1 = from_f<T>(b * c + a * sn);
            if constexpr (OUT == OUT_ROPE_Q) {
                ys[(size_t)i * p.n + r0] = x0;
                ys[(size_t)i * p.n + r1] = x1;
            } else {
                T* kc = reinterpret_cast<T*>(rope.k_cache);
                kc[cache_at(i, r0, kv_heads, rope.cap, d, pos)] = x0;
                kc[cache_at(i, r1, kv_heads, rope.cap, d, pos)] = x1;
            }
        }
    }
}

// silu(gate)·up of rows row0 … row0 + R/2 (gate: acc[r], up: acc[r + R/2]) into the gate part's ys.
template <typename T, int F, int M, int R>
__device__ __forceinline__ void store_silu(const float (&acc)[R][M], const Part& gate, const Part& up, int m, int row0) {
    constexpr int H = R / 2;
    T* ys = reinterpret_cast<T*>(gate.ys);
#pragma unroll
    for (int r = 0; r < H; r++) {
        const int row = row0 + r;
        const float sg = row_scale<F>(gate, row), su = row_scale<F>(up, row);
#pragma unroll
        for (int i = 0; i < M; i++) {
            if (i >= m) continue;
            const float g = to_f(from_f<T>(warp_sum(acc[r][i]) * sg));
            const float u = to_f(from_f<T>(warp_sum(acc[r + H][i]) * su));
            if ((threadIdx.x & 31) == 0 && row < gate.n) ys[(size_t)i * gate.n + row] = from_f<T>(g / (1.f + __expf(-g)) * u);
        }
    }
}

// Rows row0 … row0 + R − 1 into ys; with res (OUT_RESID), res + the product as stored (add_rms_norm's
// rounding).
template <typename T, int F, int M, int R>
__device__ __forceinline__ void store_rows(const float (&acc)[R][M], const Part& p, int m, int row0, const T* res) {
    T* ys = reinterpret_cast<T*>(p.ys);
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = row0 + r;
        const float s = row_scale<F>(p, row);
#pragma unroll
        for (int i = 0; i < M; i++) {
            if (i >= m) continue;
            const float v = warp_sum(acc[r][i]);
            if ((threadIdx.x & 31) != 0 || row >= p.n) continue;
            const size_t at = (size_t)i * p.n + row;
            const T y = from_f<T>(v * s);
            ys[at] = res ? from_f<T>(to_f(res[at]) + to_f(y)) : y;
        }
    }
}

// How a kernel applies a folded norm before its products (a template argument): as Parts' norm
// says, with a block's pass into shared memory where it is 1 (NORM_BLOCK); the late way (norm = 2,
// the gemv_ln_ kernels); the stats way (norm = 3, the gemv_ns_ kernels, whose RESID launches also
// write the next norm's statistics).
enum NormWay { NORM_BLOCK = 0, NORM_LATE = 1, NORM_STATS = 2 };

// The warp's R rows of part `p` against the m rows of xs, written as OUT says (see accumulate for
// which rows; OUT_ROPE_*: stride d/2, OUT_V_CACHE: stride 1).
// S > 0: through the warp's stage (accumulate_staged; M = 1).
// NORM_LATE: xs is the residual stream, RMS-normalized with `ln.eps` and scaled by `ln.w` on the way.
// NORM_STATS: xs is xw (the residual times the norm's weight), and `ln.ss` the lane's share of the
// producer's sums of squares.
template <typename T, int F, int M, int R, int U = default_unroll<M>(), int OUT = OUT_PLAIN, int S = 0, int NORM = NORM_BLOCK>
__device__ __forceinline__ void rows(const T* xs, const Part& p, int m, int k, int row0, const char* table,
                                     const Part* up = nullptr, int stride = 1, const Rope* rope = nullptr,
                                     const T* res = nullptr, LateNorm<T> ln = {}) {
    constexpr bool SILU = OUT == OUT_SILU;
    static_assert(!SILU || R >= 2, "a SILU warp takes at least one row of each part");
    static_assert(R == 2 || OUT == OUT_PLAIN || OUT == OUT_SILU || OUT == OUT_RESID, "RoPE pairs take two rows a warp");
    static_assert(S == 0 || M == 1, "staging takes one row of xs");
    static_assert(NORM == NORM_BLOCK || (S == 0 && M == 1), "a warp's norm takes the plain accumulation of one row");
    float acc[R][M];
    if constexpr (S > 0) {
        accumulate_staged<T, F, R, S, SILU>(xs, p, up, k, row0, stride, table, acc);
    } else if constexpr (NORM == NORM_LATE) {
        float ss = 0.f;
        accumulate<T, F, M, R, U, SILU, true>(xs, p, up, m, k, row0, stride, table, acc, ln.w, &ss);
        // the lanes' squares cover xs once: every lane gets the whole sum
        const float inv = rsqrtf(warp_sum(ss) / k + ln.eps);
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][0] *= inv;
    } else if constexpr (NORM == NORM_STATS) {
        accumulate<T, F, M, R, U, SILU>(xs, p, up, m, k, row0, stride, table, acc);
        const float inv = rsqrtf(warp_sum(ln.ss) / k + ln.eps);
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][0] *= inv;
    } else {
        accumulate<T, F, M, R, U, SILU>(xs, p, up, m, k, row0, stride, table, acc);
    }
    if constexpr (OUT == OUT_ROPE_Q || OUT == OUT_ROPE_K || OUT == OUT_V_CACHE) {
        store_rope<T, F, M, OUT>(acc, p, m, row0, row0 + stride, *rope);
    } else if constexpr (SILU) {
        store_silu<T, F, M, R>(acc, p, *up, m, row0);
    } else {
        store_rows<T, F, M, R>(acc, p, m, row0, OUT == OUT_RESID ? res : nullptr);
    }
}

// Fills the block's NF4 table (F = NF4 or NF4_PAIRS); every thread must call it (it synchronizes).
template <int F> __device__ __forceinline__ void fill_table(float* table) {
    if constexpr (F == NF4) {
        for (int i = threadIdx.x; i < NF4_TABLE_WORDS; i += blockDim.x) table[i] = NF4_CODES[i >> 6];
    } else {
        for (int i = threadIdx.x; i < NF4_PAIR_WORDS; i += blockDim.x) {
            const __half2 h = __floats2half2_rn(NF4_CODES[i >> 9], NF4_CODES[(i >> 5) & 15]);
            table[i] = *reinterpret_cast<const float*>(&h);
        }
    }
    __syncthreads();
}

// RMSNorm(xs[0..k))·w into the block's shared xn, as decode.cu's add_rms_norm rounds it; every
// thread must call it (it synchronizes).
template <typename T>
__device__ __forceinline__ void norm_into(const T* xs, const T* w, float eps, int k, T* xn) {
    __shared__ float red[32];
    float ss = 0.f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const float v = to_f(xs[j]);
        ss = fmaf(v, v, ss);
    }
    const float inv = rsqrtf(block_reduce(ss, false, red) / k + eps);
    for (int j = threadIdx.x; j < k; j += blockDim.x) xn[j] = from_f<T>(to_f(xs[j]) * inv * to_f(w[j]));
    __syncthreads();
}

// RESID before a norm, the stats way (one row): ys = res + the product as store_rows rounds it, xw =
// ys·norm_w rounded to T (the next launch's xs), and the block's sum of ys² into partial[block].
// Every thread must call it (it synchronizes).
template <typename T, int F, int R, int U>
__device__ __forceinline__ void resid_stats(const T* xs, const Parts& ps, const char* table) {
    __shared__ float red[32];
    const Part& p = ps.p[0];
    const T* res = static_cast<const T*>(ps.res);
    const T* w = static_cast<const T*>(ps.norm_w);
    T* ys = reinterpret_cast<T*>(p.ys);
    T* xw = static_cast<T*>(ps.xw);
    const int warps = gridDim.x * (blockDim.x >> 5);
    float sq = 0.f;
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < (p.n + R - 1) / R; g += warps) {
        float acc[R][1];
        accumulate<T, F, 1, R, U, false>(xs, p, nullptr, 1, ps.k, g * R, 1, table, acc);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = g * R + r;
            const float v = warp_sum(acc[r][0]) * row_scale<F>(p, row);
            if ((threadIdx.x & 31) != 0 || row >= p.n) continue;
            const T y = from_f<T>(to_f(res[row]) + to_f(from_f<T>(v)));
            ys[row] = y;
            xw[row] = from_f<T>(to_f(y) * to_f(w[row]));
            sq = fmaf(to_f(y), to_f(y), sq);
        }
    }
    const float total = block_reduce(sq, false, red);
    if (threadIdx.x == 0) ps.partial[blockIdx.x] = total;
}

// Warps take row groups grid-stride (a grid smaller than the groups is allowed). With ps.norm the
// launch brings k·sizeof(T) bytes of dynamic shared memory for the normalized xs; NORM_LATE and
// NORM_STATS kernels (one row, ps.norm = 2 or 3) need none (rows' NORM).
template <typename T, int F, int M, int R, int U = default_unroll<M>(), int S = 0, int NORM = NORM_BLOCK>
__device__ __forceinline__ void gemv_parts(const T* xs, const Parts& ps) {
    __shared__ __align__(16) float table_own[S == 0 ? table_words<F>() : 4];
    float* table = table_own;
    if constexpr (S > 0) table = staged_smem<F, R, S>().table;
    extern __shared__ __align__(16) unsigned char normed[];
    pdl_trigger();
    const int g0 = (ps.p[0].n + R - 1) / R, g1 = ps.count > 1 ? (ps.p[1].n + R - 1) / R : 0;
    const int total = g0 + g1 + (ps.count > 2 ? (ps.p[2].n + R - 1) / R : 0);
    const int warps = gridDim.x * (blockDim.x >> 5);
    if constexpr (nf4_like<F>()) fill_table<F>(table);
    pdl_wait();
    if (NORM == NORM_BLOCK && ps.norm) {
        norm_into(xs, static_cast<const T*>(ps.norm_w), ps.eps, ps.k, reinterpret_cast<T*>(normed));
        xs = reinterpret_cast<const T*>(normed);
    }
    LateNorm<T> ln;
    if constexpr (NORM == NORM_LATE) ln = LateNorm<T>{static_cast<const T*>(ps.norm_w), ps.eps};
    if constexpr (NORM == NORM_STATS) {
        // issued before the weight loop, summed across the warp after it
        ln.eps = ps.eps;
        for (int i = threadIdx.x & 31; i < ps.partials; i += 32) ln.ss += __ldg(ps.partial + i);
    }
    const char* tb = reinterpret_cast<const char*>(table);
    if constexpr (R >= 2) {
        if (ps.mode == SILU) {
            constexpr int H = R / 2;
            const int groups = (ps.p[0].n + H - 1) / H;
            for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < groups; g += warps)
                rows<T, F, M, R, U, OUT_SILU, S, NORM>(xs, ps.p[0], ps.m, ps.k, g * H, tb, &ps.p[1], 1, nullptr, nullptr, ln);
            return;
        }
    }
    if constexpr (R == 2) {
        if (ps.mode == ROPE) {
            // q pairs, then k pairs (head h, index i < d/2: rows h·d + i and h·d + i + d/2), then v rows
            const int half = ps.rope.d / 2, gq = ps.p[0].n / 2, gk = ps.p[1].n / 2, gv = (ps.p[2].n + 1) / 2;
            for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < gq + gk + gv; g += warps) {
                if (g < gq) {
                    rows<T, F, M, R, U, OUT_ROPE_Q, S, NORM>(xs, ps.p[0], ps.m, ps.k, g / half * 2 * half + g % half, tb, nullptr,
                                                           half, &ps.rope, nullptr, ln);
                } else if (g < gq + gk) {
                    const int h = g - gq;
                    rows<T, F, M, R, U, OUT_ROPE_K, S, NORM>(xs, ps.p[1], ps.m, ps.k, h / half * 2 * half + h % half, tb, nullptr,
                                                           half, &ps.rope, nullptr, ln);
                } else {
                    rows<T, F, M, R, U, OUT_V_CACHE, S, NORM>(xs, ps.p[2], ps.m, ps.k, (g - gq - gk) * 2, tb, nullptr, 1, &ps.rope,
                                                            nullptr, ln);
                }
            }
            return;
        }
    }
    if (ps.mode == RESID) {
        if constexpr (NORM == NORM_STATS) {
            // R = 2 only (src/kernels/cuda/mod.rs's stats_fits): at R = 4 this path spilled the
            // consumer's registers at 6 blocks an SM
            if constexpr (R == 2) resid_stats<T, F, R, U>(xs, ps, tb);
        } else {
            for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < g0; g += warps)
                rows<T, F, M, R, U, OUT_RESID, S, NORM>(xs, ps.p[0], ps.m, ps.k, g * R, tb, nullptr, 1, nullptr,
                                                      static_cast<const T*>(ps.res), ln);
        }
        return;
    }
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < total; g += warps) {
        if (g < g0) rows<T, F, M, R, U, OUT_PLAIN, S, NORM>(xs, ps.p[0], ps.m, ps.k, g * R, tb, nullptr, 1, nullptr, nullptr, ln);
        else if (g < g0 + g1)
            rows<T, F, M, R, U, OUT_PLAIN, S, NORM>(xs, ps.p[1], ps.m, ps.k, (g - g0) * R, tb, nullptr, 1, nullptr, nullptr, ln);
        else rows<T, F, M, R, U, OUT_PLAIN, S, NORM>(xs, ps.p[2], ps.m, ps.k, (g - g0 - g1) * R, tb, nullptr, 1, nullptr, nullptr, ln);
    }
}

}  // namespace gemv
