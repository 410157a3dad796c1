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
// elements 2i (high nibble) and 2i+1); `b`: int8 scales [n] or NF4 absmax [n·k/64]; `ys`: [m, n] in T.
struct Part {
    const uint8_t* a;
    const float* b;
    void* ys;
    int n;
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

// Up to three weights sharing xs [m, k]: warps are handed out part after part, R rows each.
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
};

// Regions of the next launch's weights that a launch asks L2 for before its own work (the gemv_pf_
// kernels, MINILAB_PREFETCH): a decode step's GEMVs are each too small to keep the DRAM busy through
// their ramp-up and tail, so each one starts the next one's transfer. how: 1 a prefetch.global.L2
// per 128-byte line over the grid's threads, 2 one cp.async.bulk.prefetch.L2 per block slice and
// region (sm_90; the regions then start 16-byte aligned and their sizes are multiples of 16).
struct Prefetch {
    const char* p[6];
    unsigned long long n[6];
    int count;
    int how;
};

// The kernels take Parts and Prefetch by value from Rust (src/kernels/cuda/mod.rs's PartsArg,
// src/kernels/prefetch.rs's PrefetchArg), which assert the same sizes.
static_assert(sizeof(Part) == 32 && sizeof(Rope) == 56 && sizeof(Parts) == 192, "Parts as PartsArg lays it out");
static_assert(sizeof(Prefetch) == 104, "Prefetch as PrefetchArg lays it out");

__device__ __forceinline__ void prefetch_next(const Prefetch& pf) {
    const size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x, threads = (size_t)gridDim.x * blockDim.x;
    if (pf.how == 1) {
#pragma unroll
        for (int r = 0; r < 6; r++)  // fixed bounds keep the regions in registers, off the stack
            for (size_t off = t * 128; r < pf.count && off < pf.n[r]; off += threads * 128)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(pf.p[r] + off));
    } else if (pf.how == 2 && threadIdx.x == 0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
        for (int r = 0; r < 6; r++) {
            if (r >= pf.count) break;
            const size_t per = ((pf.n[r] + gridDim.x - 1) / gridDim.x + 15) & ~(size_t)15;
            const size_t end = min((size_t)pf.n[r], (blockIdx.x + 1) * per);
            for (size_t o = blockIdx.x * per; o + 16 <= end; o += 65536) {
                const uint32_t len = (uint32_t)(min((size_t)65536, end - o) & ~(size_t)15);
                asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(pf.p[r] + o), "r"(len) : "memory");
            }
        }
#endif
    }
}

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

// This lane's share of the products of the warp's R rows with the m rows of xs, in acc: rows row0,
// row0 + stride, … of `p`, or (SILU) rows row0 … of `p` (gate) for r < R/2 and the same rows of
// `*up` for the others.
template <typename T, int F, int M, int R, int U, bool SILU>
__device__ __forceinline__ void accumulate(const T* xs, const Part& p, const Part* up, int m, int k, int row0,
                                           int stride, const char* table, float (&acc)[R][M]) {
    constexpr int E = step_elems<F>(), WL = step_loads<T, F>(), SUBS = E / 8, H = SILU ? R / 2 : R;
    // part and row of the warp's row r; tail rows repeat the last and are never stored
    const auto part = [&](int r) -> const Part& { return SILU && r >= H ? *up : p; };
    const auto row_of = [&](int r) { return (size_t)min(SILU ? row0 + (r >= H ? r - H : r) : row0 + r * stride, p.n - 1); };
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

// Staging (the gemv_st_ kernels, MINILAB_GEMV_STAGED=1; one row of xs, 16-bit activations). The
// SASS of the kernels above (bench/kernels/sass.sh) shows ptxas issuing only half of an NF4 loop
// iteration's weight loads, and none of its absmax loads, before the products begin, at every
// register cap tried: each iteration then waits on DRAM round trips in turn. Here each lane copies S
// steps of the warp's R rows (and their absmax) into shared memory with cp.async, then the next S
// steps while it multiplies these (two stages a warp). A cp.async cannot be sunk past the wait that
// needs it. The arithmetic is accumulate's, step for step: the outputs are equal bit for bit.
template <int F, int R, int S> struct Stage {
    uint4 w[2][S][R][32];
    float sc[2][S][R][nf4_like<F>() ? 32 : 1];
};

// A staged kernel's shared memory: the NF4 table and four warps' stages in one object (kept apart,
// ptxas gave the NF4 R = 2 kernel 96 registers and an add before every table lookup).
template <int F, int R, int S> struct StagedSmem {
    float table[table_words<F>()];
    Stage<F, R, S> stages[4];
};
template <int F, int R, int S> __device__ __forceinline__ StagedSmem<F, R, S>& staged_smem() {
    __shared__ StagedSmem<F, R, S> sm;
    return sm;
}
// This warp's stage; one per kernel, whatever the launch's mode.
template <int F, int R, int S> __device__ __forceinline__ Stage<F, R, S>& warp_stage() {
    return staged_smem<F, R, S>().stages[threadIdx.x >> 5];
}

// 16 (weights) or 4 (absmax) bytes from global to shared memory, asynchronously; with ok false the
// destination is zero-filled and nothing is read.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are in flight.
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// accumulate for one row of xs through the warp's stage (same rows, same sums, same order). Each lane
// reads back only what it copied itself, so the warp needs no synchronization.
template <typename T, int F, int R, int S, bool SILU>
__device__ __forceinline__ void accumulate_staged(const T* xs, const Part& p, const Part* up, int k, int row0, int stride,
                                                  const char* table, float (&acc)[R][1]) {
    static_assert(sizeof(T) == 2 && S > 0, "staging takes 16-bit activations");
    constexpr int E = step_elems<F>(), SUBS = E / 8, H = SILU ? R / 2 : R;
    Stage<F, R, S>& st = warp_stage<F, R, S>();
    const int lane = threadIdx.x & 31;
    const uint32_t lane_off = lane * 4;
    const auto row_bytes = [](size_t n) { return weight_bytes<T, F>(n); };
    // where the lane's first step of row r starts: its 16 weight bytes and (NF4) its absmax; step i
    // lies 512 bytes (32 lanes × 16) and, for NF4, 16 absmax further on
    const uint8_t* wp[R];
    const float* sp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const Part& pr = SILU && r >= H ? *up : p;
        // tail rows repeat the last and are never stored
        const size_t row = (size_t)min(SILU ? row0 + (r >= H ? r - H : r) : row0 + r * stride, p.n - 1);
        const int j0 = lane * E < k ? lane * E : 0;  // a lane past a short row stays at its start
        wp[r] = pr.a + row_bytes(row * k + j0);
        sp[r] = nf4_like<F>() ? pr.b + (row * k + j0) / 64 : nullptr;
    }
    const int steps = (k + 32 * E - 1) / (32 * E), chunks = (steps + S - 1) / S;
    // chunk c (steps c·S …) into stage c & 1; a step past k reads nothing (its first step's address
    // stands in) and is never read back
    const auto issue = [&](int c) {
#pragma unroll
        for (int t = 0; t < S; t++) {
            const int i = c * S + t;
            const bool ok = lane * E + i * 32 * E < k;
#pragma unroll
            for (int r = 0; r < R; r++) {
                cp_async16(&st.w[c & 1][t][r][lane], ok ? wp[r] + (size_t)i * 512 : wp[r], ok);
                if constexpr (nf4_like<F>()) cp_async4(&st.sc[c & 1][t][r][lane], ok ? sp[r] + (size_t)i * 16 : sp[r], ok);
            }
        }
        cp_commit();
    };
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = 0.f;
    issue(0);
    for (int c = 0; c < chunks; c++) {
        if (c + 1 < chunks) {
            issue(c + 1);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
#pragma unroll
        for (int t = 0; t < S; t++) {
            // the warp leaves together (a lane-dependent exit costs the table lookups their uniform
            // base register); a lane whose step lies past a short row reads xs in the row and drops
            // its products
            if (c * S + t >= steps) break;
            const int j = lane * E + (c * S + t) * 32 * E;
            const bool ok = j < k;
            const int jx = ok ? j : k - E;
            uint4 w[R];
            float sums[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                w[r] = st.w[c & 1][t][r][lane];
                sums[r] = 0.f;
            }
#pragma unroll
            for (int s = 0; s < SUBS; s++) {
                float x[8];
                load_x8(xs + jx + 8 * s, x);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float wf[8];
                    decode8<T, F>(&w[r], s, wf, table, lane_off);
#pragma unroll
                    for (int e = 0; e < 8; e++) sums[r] = fmaf(wf[e], x[e], sums[r]);
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v;
                if constexpr (nf4_like<F>()) v = fmaf(sums[r], st.sc[c & 1][t][r][lane], acc[r][0]);
                else v = acc[r][0] + sums[r];
                acc[r][0] = ok ? v : acc[r][0];
            }
        }
    }
}

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

// The warp's R rows of part `p` against the m rows of xs, written as OUT says (see accumulate for
// which rows; OUT_ROPE_*: stride d/2, OUT_V_CACHE: stride 1).
// S > 0: through the warp's stage (accumulate_staged; M = 1).
template <typename T, int F, int M, int R, int U = default_unroll<M>(), int OUT = OUT_PLAIN, int S = 0>
__device__ __forceinline__ void rows(const T* xs, const Part& p, int m, int k, int row0, const char* table,
                                     const Part* up = nullptr, int stride = 1, const Rope* rope = nullptr,
                                     const T* res = nullptr) {
    constexpr bool SILU = OUT == OUT_SILU;
    static_assert(!SILU || R >= 2, "a SILU warp takes at least one row of each part");
    static_assert(R == 2 || OUT == OUT_PLAIN || OUT == OUT_SILU || OUT == OUT_RESID, "RoPE pairs take two rows a warp");
    static_assert(S == 0 || M == 1, "staging takes one row of xs");
    float acc[R][M];
    if constexpr (S > 0) accumulate_staged<T, F, R, S, SILU>(xs, p, up, k, row0, stride, table, acc);
    else accumulate<T, F, M, R, U, SILU>(xs, p, up, m, k, row0, stride, table, acc);
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

// Warps take row groups grid-stride (a grid smaller than the groups is allowed). With ps.norm the
// launch brings k·sizeof(T) bytes of dynamic shared memory for the normalized xs.
template <typename T, int F, int M, int R, int U = default_unroll<M>(), int S = 0>
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
    if (ps.norm) {
        norm_into(xs, static_cast<const T*>(ps.norm_w), ps.eps, ps.k, reinterpret_cast<T*>(normed));
        xs = reinterpret_cast<const T*>(normed);
    }
    const char* tb = reinterpret_cast<const char*>(table);
    if constexpr (R >= 2) {
        if (ps.mode == SILU) {
            constexpr int H = R / 2;
            const int groups = (ps.p[0].n + H - 1) / H;
            for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < groups; g += warps)
                rows<T, F, M, R, U, OUT_SILU, S>(xs, ps.p[0], ps.m, ps.k, g * H, tb, &ps.p[1]);
            return;
        }
    }
    if constexpr (R == 2) {
        if (ps.mode == ROPE) {
            // q pairs, then k pairs (head h, index i < d/2: rows h·d + i and h·d + i + d/2), then v rows
            const int half = ps.rope.d / 2, gq = ps.p[0].n / 2, gk = ps.p[1].n / 2, gv = (ps.p[2].n + 1) / 2;
            for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < gq + gk + gv; g += warps) {
                if (g < gq) {
                    rows<T, F, M, R, U, OUT_ROPE_Q, S>(xs, ps.p[0], ps.m, ps.k, g / half * 2 * half + g % half, tb, nullptr, half, &ps.rope);
                } else if (g < gq + gk) {
                    const int h = g - gq;
                    rows<T, F, M, R, U, OUT_ROPE_K, S>(xs, ps.p[1], ps.m, ps.k, h / half * 2 * half + h % half, tb, nullptr, half, &ps.rope);
                } else {
                    rows<T, F, M, R, U, OUT_V_CACHE, S>(xs, ps.p[2], ps.m, ps.k, (g - gq - gk) * 2, tb, nullptr, 1, &ps.rope);
                }
            }
            return;
        }
    }
    if (ps.mode == RESID) {
        for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < g0; g += warps)
            rows<T, F, M, R, U, OUT_RESID, S>(xs, ps.p[0], ps.m, ps.k, g * R, tb, nullptr, 1, nullptr, static_cast<const T*>(ps.res));
        return;
    }
    for (int g = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; g < total; g += warps) {
        if (g < g0) rows<T, F, M, R, U, OUT_PLAIN, S>(xs, ps.p[0], ps.m, ps.k, g * R, tb);
        else if (g < g0 + g1) rows<T, F, M, R, U, OUT_PLAIN, S>(xs, ps.p[1], ps.m, ps.k, (g - g0) * R, tb);
        else rows<T, F, M, R, U, OUT_PLAIN, S>(xs, ps.p[2], ps.m, ps.k, (g - g0 - g1) * R, tb);
    }
}

}  // namespace gemv
