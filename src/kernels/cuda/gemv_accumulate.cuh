// Decode GEMV at memory speed: ys[m, n] = xs[m, k]·Wᵀ for m ≤ 8 rows of xs, W dense (T), int8 or
// NF4, and up to three weights of one format in one launch (q/k/v, gate/up: one read of xs).
// A launch can also do the small op around it (Parts' modes: silu·up, RoPE with the KV-cache writes,
// the residual add, the RMSNorm before), which saves that op's launch in a decode step.
//
// A warp owns R consecutive output rows of one weight; its lanes stride over k, each taking one
// 16-byte load per row per step, so R independent loads are in flight per lane and every xs value
// loaded serves R rows. Weights stream past L1 (ld.global.nc.L1::no_allocate) so that xs stays in it.
//
// Why the decoders look the way they do (the H200 must turn ~33 weights per SM and clock into
// products for NF4 at the copy bandwidth, with 4 instructions issued per SM and clock):
// - int8: a byte b placed in the mantissa of 2^23 is the float 2^23 + b, so one byte-permute and one
//   subtraction give b − 128; no integer-to-float conversion (a quarter-rate instruction).
// - NF4: the 16 codes live in shared memory once per lane (entry v at byte v·256 + lane·4), so no
//   two lanes of a warp ever hit the same bank, and one byte-permute builds the address of a nibble
//   that was masked into a byte. One lookup, one address, one FMA per weight.
//
// This header holds the formats, the launch arguments and the plain accumulation; gemv_staged.cuh
// the staged one; gemv.cuh the stores and the kernels' bodies.
#pragma once
#include <stdint.h>

#include <type_traits>

#include "common.cuh"

namespace gemv {

// NF4_PAIRS: NF4 bytes decoded through a table of f16 code pairs, one lookup for two weights (an
// experiment of bench/kernels/pairs.cuh: it halves the lookups' shared-memory bytes, but it rounds
// the codebook to f16, so it is not minilab's NF4 arithmetic).
enum Format { DENSE = 0, INT8 = 1, NF4 = 2, NF4_PAIRS = 3 };
// Formats stored as NF4: packed codes and an absmax per 64.
template <int F> __host__ __device__ constexpr bool nf4_like() { return F == NF4 || F == NF4_PAIRS; }

// The NF4 codebook (bitsandbytes'), index = 4-bit code.
__constant__ float NF4_CODES[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

// Shared-memory codebook: 16 entries of 256 bytes, lane l reads word l of an entry.
constexpr int NF4_TABLE_WORDS = 16 * 64;
// NF4_PAIRS' table: byte b's two codes (high nibble first) as f16, at byte b·128 + lane·4 (32 KB).
constexpr int NF4_PAIR_WORDS = 256 * 32;
template <int F> __host__ __device__ constexpr int table_words() {
    return F == NF4 ? NF4_TABLE_WORDS : F == NF4_PAIRS ? NF4_PAIR_WORDS : 4;
}

// One weight of a launch. `a`: dense weights in T, int8 codes (q + 128) or NF4 packed bytes (byte i =
// elements 2i (high nibble) and 2i+1); `b`: int8 scales [n] or NF4 absmax [n·k/64]; `ys`: [m, n] in T;
// `format`: DENSE, INT8 or NF4 (read by the launches of mixed formats, gemv_mixed.cuh).
struct Part {
    const uint8_t* a;
    const float* b;
    void* ys;
    int n;
    int format;
};

// What a launch writes besides the plain outputs.
enum Mode { PLAIN = 0, SILU = 1, ROPE = 2, RESID = 3 };

// ROPE: the q/k/v launch also does decode.cu's rope_kv. cos, sin: [max_pos, d/2] in T; pos: the
// position (device memory); k_cache, v_cache: [m, kv_heads, cap, d] in T.
struct Rope {
    const void* cos;
    const void* sin;
    const uint32_t* pos;
    void* k_cache;
    void* v_cache;
    int d;
    int cap;
    int max_pos;
    int pad;
};

// Up to three weights sharing xs [m, k] (of one format, or gemv_mixed.cuh's of several): warps are
// handed out part after part, R rows each.
// - SILU (two parts of n rows, gate then up, R ≥ 2): a warp takes R/2 rows of each and writes only
//   silu(gate)·up [m, n] to the first part's ys, rounding as the separate kernels would (decode.cu's
//   silu_mul), so that the MLP's gate/up launch also does its activation.
// - ROPE (q, k, v parts, R = 2): a warp takes the rows i and i + d/2 of a q or k head (a RoPE pair) or
//   two rows of v, and writes q rotated at *pos to the first part's ys ([m, heads·d]), k rotated and v
//   into the caches at *pos, rounding as rope_kv would; nothing when *pos is past cap or max_pos.
// - RESID (one part): ys = res + the product, rounded as the separate add would (decode.cu's
//   add_rms_norm), so that o_proj and down_proj also do the residual add.
// - norm (m = 1, any mode): xs is the residual stream, and the block first normalizes it into shared
//   memory as add_rms_norm would (RMSNorm with eps, times norm_w), so that the next norm needs no launch.
//   norm = 2 (the gemv_ln_ kernels): no wait for that pass. Each warp multiplies the xs it loads by
//   norm_w and sums their squares as it goes (it reads all of xs anyway), and scales its products by
//   the RMS factor at the end: W·(xs·inv·w) = inv·(W·(xs·w)), so the weight loads start at once.
// - the stats way (the gemv_ns_ kernels): the RESID launch before a norm also stores xw = ys·norm_w
//   (rounded to T) and each block's sum of ys² into partial[block]; the launch after it (norm = 3)
//   takes xw as its xs, sums the `partials` partial sums in a fixed order (the same bits every run)
//   and scales its products by the RMS factor at the end. Its warps then carry neither the norm
//   weight's loads nor the squares.
struct Parts {
    Part p[3];
    int count;
    int m;
    int k;
    int mode;
    Rope rope;
    const void* norm_w;
    const void* res;
    float eps;
    int norm;
    void* xw;
    float* partial;
    int partials;
    int pad;
};

// Parts' norm = 2 or 3, as the warps apply it (gemv.cuh's rows): the norm's weight [k] (norm = 2),
// eps, and (norm = 3) this lane's share of the producer blocks' partial sums of squares.
template <typename T> struct LateNorm {
    const T* w = nullptr;
    float eps = 0.f;
    float ss = 0.f;
};

// The kernels take Parts by value from Rust (src/kernels/cuda/mod.rs's PartsArg), which asserts the
// same sizes.
static_assert(sizeof(Part) == 32 && sizeof(Rope) == 56 && sizeof(Parts) == 216, "Parts as PartsArg lays it out");

// Elements of one weight row a lane takes per step, and its 16-byte loads: one (two for f32 weights).
template <int F> __host__ __device__ constexpr int step_elems() { return F == DENSE ? 8 : (F == INT8 ? 16 : 32); }
template <typename T, int F> __host__ __device__ constexpr int step_loads() { return F == DENSE && sizeof(T) == 4 ? 2 : 1; }
// Bytes of n weights as stored: n·sizeof(T) dense, n int8, n/2 NF4.
template <typename T, int F> __host__ __device__ constexpr size_t weight_bytes(size_t n) {
    return nf4_like<F>() ? n / 2 : n * (F == DENSE ? sizeof(T) : 1);
}
template <typename T> __host__ __device__ constexpr bool is_bf16() { return std::is_same<T, __nv_bfloat16>::value; }

__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// ld_stream and an f32 load that the compiler keeps where they are written (asm volatile): the
// streaming kernels put them out steps before their use, and must not have them sunk towards it.
__device__ __forceinline__ uint4 ld_stream_early(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}
__device__ __forceinline__ float ld_f32_early(const float* p) {
    float r;
    asm volatile("ld.global.nc.f32 %0, [%1];" : "=f"(r) : "l"(p));
    return r;
}

// 32-bit word i (< 4) of a 16-byte vector; i is a compile-time constant after unrolling.
__device__ __forceinline__ uint32_t word(const uint4& w, int i) { return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w; }

// Two packed 16-bit values as f32.
template <typename T> __device__ __forceinline__ float2 pair(uint32_t v) {
    if constexpr (is_bf16<T>()) {
        return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    } else {
        return __half22float2(*reinterpret_cast<const __half2*>(&v));
    }
}

// Eight consecutive xs values as f32: one 16-byte load (two for f32).
template <typename T> __device__ __forceinline__ void load_x8(const T* p, float* out) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = pair<T>(word(raw, i));
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}
template <> __device__ __forceinline__ void load_x8<float>(const float* p, float* out) {
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

// Sub-chunk s (8 weights) of one row's step as f32: dense values, int8 q (unscaled), NF4 codes
// (unscaled).
template <typename T, int F>
__device__ __forceinline__ void decode8(const uint4* w, int s, float* out, const char* table, uint32_t lane_off) {
    if constexpr (F == DENSE && sizeof(T) == 4) {
#pragma unroll
        for (int i = 0; i < 8; i++) out[i] = __uint_as_float(word(w[i / 4], i % 4));
    } else if constexpr (F == DENSE) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = pair<T>(word(w[0], i));
            out[2 * i] = f.x;
            out[2 * i + 1] = f.y;
        }
    } else if constexpr (F == INT8) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint32_t v = word(w[0], 2 * s + h);
#pragma unroll
            for (int j = 0; j < 4; j++) out[4 * h + j] = __uint_as_float(__byte_perm(v, 0x4b, 0x4550 + j)) - 8388736.0f;
        }
    } else if constexpr (F == NF4_PAIRS) {
        const uint32_t v = word(w[0], s);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            // byte j of v above this lane's 8·lane, halved: b·128 + lane·4, the lane's word of entry b
            const uint32_t at = __byte_perm(v, lane_off << 1, 0x5504 + (j << 4)) >> 1;
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(table + at));
            out[2 * j] = f.x;
            out[2 * j + 1] = f.y;
        }
    } else {
        const uint32_t v = word(w[0], s);
        const uint32_t lo = v & 0x0f0f0f0fu, hi = (v >> 4) & 0x0f0f0f0fu;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            // byte 0: this lane's offset, byte 1: the code, so the address is code·256 + lane·4
            out[2 * j] = *reinterpret_cast<const float*>(table + __byte_perm(hi, lane_off, 0x5504 + (j << 4)));
            out[2 * j + 1] = *reinterpret_cast<const float*>(table + __byte_perm(lo, lane_off, 0x5504 + (j << 4)));
        }
    }
}

// Steps of the k loop unrolled, so their loads are in flight together (the default the shipped
// kernels use; bench/kernels/gemv_bench.cu --floor times others).
template <int M> __host__ __device__ constexpr int default_unroll() { return M <= 2 ? 2 : 1; }

// What the warp's rows are and where their results go (Parts' modes): plain rows of one part; gate and
// up rows (SILU); a RoPE pair of q or of k (ROPE_Q, ROPE_K); two rows of v for the cache (V_CACHE).
enum RowsOut { OUT_PLAIN, OUT_SILU, OUT_ROPE_Q, OUT_ROPE_K, OUT_V_CACHE, OUT_RESID };

// Element j of row `row` of sequence s in a [m, kv_heads, cap, d] cache at position pos.
__device__ __forceinline__ size_t cache_at(int s, int row, int kv_heads, int cap, int d, uint32_t pos) {
    return (((size_t)s * kv_heads + row / d) * cap + pos) * d + row % d;
}

// Row r of a warp's R rows of a part of n rows: row0 + r·stride, or (silu) row0 + r of gate for
// r < R/2 and the same rows of up for the others (r ≥ R/2 then reads the up part). Rows past n repeat
// the last one (a part's tail rows, never stored). Host code too (bench/kernels/stream_walk.cu).
template <int R>
__host__ __device__ __forceinline__ int warp_row(bool silu, int row0, int stride, int r, int n) {
    return min(silu ? row0 + (r >= R / 2 ? r - R / 2 : r) : row0 + r * stride, n - 1);
}

// This lane's share of the products of the warp's R rows with the m rows of xs, in acc: rows row0,
// row0 + stride, … of `p`, or (SILU) rows row0 … of `p` (gate) for r < R/2 and the same rows of
// `*up` for the others. LN (one row of xs): the products are with xs·g, and the squares of the xs
// this lane loaded are summed into *ss.
template <typename T, int F, int M, int R, int U, bool SILU, bool LN = false>
__device__ __forceinline__ void accumulate(const T* xs, const Part& p, const Part* up, int m, int k, int row0,
                                           int stride, const char* table, float (&acc)[R][M], const T* g = nullptr,
                                           float* ss = nullptr) {
    static_assert(!LN || M == 1, "the late norm takes one row of xs");
    constexpr int E = step_elems<F>(), WL = step_loads<T, F>(), SUBS = E / 8;
    // part and row of the warp's row r; tail rows repeat the last and are never stored
    const auto part = [&](int r) -> const Part& { return SILU && r >= R / 2 ? *up : p; };
    const auto row_of = [&](int r) { return (size_t)warp_row<R>(SILU, row0, stride, r, p.n); };
    const int lane = threadIdx.x & 31;
    const uint32_t lane_off = lane * 4;
    const auto row_bytes = [](size_t n) { return weight_bytes<T, F>(n); };
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < M; i++) acc[r][i] = 0.f;
    const uint8_t* base[R];
#pragma unroll
    for (int r = 0; r < R; r++) base[r] = part(r).a + row_bytes(row_of(r) * k);
    // by default two steps in flight at few rows; at 4-8 rows the products, not the loads, set the pace
#pragma unroll(U)
    for (int j = lane * E; j < k; j += 32 * E) {
        uint4 w[R][WL];
        float scale[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            scale[r] = 1.f;
            const size_t off = row_bytes(j);
#pragma unroll
            for (int l = 0; l < WL; l++) w[r][l] = ld_stream(base[r] + off + 16 * l);
            if constexpr (nf4_like<F>()) scale[r] = __ldg(part(r).b + (row_of(r) * k + j) / 64);
        }
        float sums[R][M];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < M; i++) sums[r][i] = 0.f;
#pragma unroll
        for (int s = 0; s < SUBS; s++) {
            // Rows of xs past m read row m − 1 and are never stored: no branch stands between the
            // loads, so the compiler issues them all before the first product.
            float x[M][8];
#pragma unroll
            for (int i = 0; i < M; i++) load_x8(xs + (size_t)min(i, m - 1) * k + j + 8 * s, x[i]);
            if constexpr (LN) {
                float gw[8];
                load_x8(g + j + 8 * s, gw);
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    *ss = fmaf(x[0][e], x[0][e], *ss);
                    x[0][e] *= gw[e];
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float wf[8];
                decode8<T, F>(w[r], s, wf, table, lane_off);
#pragma unroll
                for (int i = 0; i < M; i++)
#pragma unroll
                    for (int e = 0; e < 8; e++) sums[r][i] = fmaf(wf[e], x[i][e], sums[r][i]);
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < M; i++) acc[r][i] = nf4_like<F>() ? fmaf(sums[r][i], scale[r], acc[r][i]) : acc[r][i] + sums[r][i];
    }
}

}  // namespace gemv
