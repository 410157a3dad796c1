// Decode attention: one new query token per sequence against a preallocated KV cache, the scores,
// softmax and weighted sum of values in one kernel (attn_simple, attn_single) or two (attn_split +
// attn_combine), instead of the ~8 launches of matmul, scale, casts, softmax, matmul and copies that
// the tensor-op path takes per block and token.
//
// q: [b*heads, d]; k, v: [b*kv_heads, cap, d] of which the first `total` positions are valid;
// out: [b*heads, d]; d % 8 == 0, d ≤ 256; f32 accumulation. With `pos` set, `total` is *pos + 1,
// read on the device: a decode step captured in a CUDA graph then serves every position.
#include <stdint.h>

#include "common.cuh"

// sc[p] ← exp(sc[p] − max sc) for p < total; returns their sum (the caller divides once at the end).
__device__ float softmax_unnormalized(float* sc, int total, float* red) {
    float m = -INFINITY;
    for (int p = threadIdx.x; p < total; p += blockDim.x) m = fmaxf(m, sc[p]);
    m = block_reduce(m, true, red);
    float sum = 0.f;
    for (int p = threadIdx.x; p < total; p += blockDim.x) {
        const float e = __expf(sc[p] - m);
        sc[p] = e;
        sum += e;
    }
    return block_reduce(sum, false, red);
}

// attn_simple: the plain kernel, the baseline the others are timed against (and the fallback that an
// environment variable selects). One block per (sequence, head), the scores of the whole cache
// in shared memory: a warp per position for the scores, a thread per column for the sum.
template <typename T>
__device__ void attn_simple(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap, int total,
                            int d, float scale, const uint32_t* pos) {
    if (pos) total = min((int)*pos + 1, cap);
    extern __shared__ float smem[];  // q (d floats), then the scores (cap floats)
    __shared__ float red[32];
    float* qs = smem;
    float* sc = smem + d;
    const int bh = blockIdx.x, b = bh / heads, h = bh % heads;
    const size_t kvh = (size_t)b * kv_heads + h / (heads / kv_heads);
    const T* kb = k + kvh * cap * d;
    const T* vb = v + kvh * cap * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = to_f(q[(size_t)bh * d + i]);
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int p = warp; p < total; p += nw) {
        const T* kr = kb + (size_t)p * d;
        float s = 0.f;
        for (int i = lane; i < d; i += 32) s = fmaf(qs[i], to_f(kr[i]), s);
        s = warp_sum(s);
        if (lane == 0) sc[p] = s * scale;
    }
    __syncthreads();
    const float sum = softmax_unnormalized(sc, total, red);
    const float inv = 1.f / sum;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int p = 0; p < total; p++) acc = fmaf(sc[p], to_f(vb[(size_t)p * d + i]), acc);
        out[(size_t)bh * d + i] = from_f<T>(acc * inv);
    }
}

constexpr int SINGLE_THREADS = 256;
constexpr int SPLIT_THREADS = 128;
constexpr int MAXG = 8;
constexpr int U = 4;  // pairs of positions a warp scores before it reduces

// Eight consecutive elements from a 16-byte-aligned address, as floats, in 16-byte loads.
__device__ __forceinline__ void load8(const float* p, float (&f)[8]) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&f)[8]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* x = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] = to_f(x[j]);
}

// attn_single: one block per (sequence, head) as attn_simple, with more independent 16-byte loads in
// flight (the step's attention is small and bound by latency); it serves short caches, where the
// split kernels' second launch costs more than their parallelism saves (src/kernels/cuda/attention.rs,
// SPLIT_FROM). Scores: 16 lanes share a position (8 elements each per 128), a warp takes two
// positions at a time, U pairs before it reduces. Weighted sum: a thread owns 8 columns of
// every G-th position (G = blockDim / (d/8)), and the G partial sums meet in shared memory.
template <typename T>
__device__ void attn_single(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap, int total,
                            int d, float scale, const uint32_t* pos) {
    if (pos) total = min((int)*pos + 1, cap);
    // q (d floats), the scores (cap floats), the partial sums (SINGLE_THREADS·8 floats)
    extern __shared__ float smem[];
    __shared__ float red[32];
    float* qs = smem;
    float* sc = smem + d;
    float* part = sc + cap;
    const int bh = blockIdx.x, b = bh / heads, h = bh % heads;
    const size_t kvh = (size_t)b * kv_heads + h / (heads / kv_heads);
    const T* kb = k + kvh * cap * d;
    const T* vb = v + kvh * cap * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = to_f(q[(size_t)bh * d + i]) * scale;
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, sub = lane & 15;
    // The loop bound is warp-uniform, so all 32 lanes reach the shuffles.
    for (int base = 2 * warp; base < total; base += 2 * nw * U) {
        float s[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int p = base + u * 2 * nw + (lane >> 4);
            s[u] = 0.f;
            if (p < total) {
                for (int e = sub * 8; e < d; e += 128) {
                    float kf[8];
                    load8(kb + (size_t)p * d + e, kf);
#pragma unroll
                    for (int j = 0; j < 8; j++) s[u] = fmaf(qs[e + j], kf[j], s[u]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float x = s[u];
            x += __shfl_xor_sync(0xffffffffu, x, 8);
            x += __shfl_xor_sync(0xffffffffu, x, 4);
            x += __shfl_xor_sync(0xffffffffu, x, 2);
            x += __shfl_xor_sync(0xffffffffu, x, 1);
            const int p = base + u * 2 * nw + (lane >> 4);
            if (sub == 0 && p < total) sc[p] = x;
        }
    }
    __syncthreads();
    const float sum = softmax_unnormalized(sc, total, red);
    const int cols = d / 8, groups = blockDim.x / cols, c = threadIdx.x % cols, g = threadIdx.x / cols;
    if (g < groups) {
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
        for (int p = g; p < total; p += groups) {
            float vf[8];
            load8(vb + (size_t)p * d + 8 * c, vf);
            const float w = sc[p];
#pragma unroll
            for (int j = 0; j < 8; j++) acc[j] = fmaf(w, vf[j], acc[j]);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) part[g * d + 8 * c + j] = acc[j];
    }
    __syncthreads();
    const float inv = 1.f / sum;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float o = 0.f;
        for (int r = 0; r < groups; r++) o += part[r * d + i];
        out[(size_t)bh * d + i] = from_f<T>(o * inv);
    }
}

// attn_split + attn_combine: flash-decoding, for long caches. One block per head puts only
// b·heads blocks (24 for a 3B model) on 132 SMs, each walking the whole cache; here the positions
// are cut into S chunks (S = gridDim.y, fixed when the step is captured; each chunk ceil(total / S)
// long, worked out on the device from *pos), and a block takes one chunk of one (sequence, kv head)
// for all the G = heads / kv_heads query heads that share it, so a key or value row is read once.
// Per query head and chunk it writes the chunk's max score m, l = Σ exp(s − m) and the unnormalized
// o = Σ exp(s − m)·v; attn_combine merges a head's S partials: out = Σ e^{m_s − M} o_s / Σ e^{m_s − M} l_s.
//
// part: o [b·heads, S, d], then (m, l) [b·heads, S, 2], f32. Shared memory (floats): q (G·d, scaled),
// scores (G·chunk_max), the weighted sums of the position groups (8·SPLIT_THREADS·G). G ≤ MAXG; the
// host sizes S so that chunk_max fits.

// Scores of the chunk's n positions for the G query heads into sc[g·cm + i]: 16 lanes share a
// position (8 elements each per 128), a warp takes two positions at a time and U pairs before it
// reduces, so U 16-byte loads a lane are in flight.
template <typename T>
__device__ void split_scores(const float* qs, const T* kb, float* sc, int n, int d, int G, int cm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, sub = lane & 15;
    // The loop bound is warp-uniform, so all 32 lanes reach the shuffles.
    for (int base = 2 * warp; base < n; base += 2 * nw * U) {
        float s[U][MAXG] = {};
        for (int e = sub * 8; e - sub * 8 < d; e += 128) {
            float kf[U][8];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int p = base + u * 2 * nw + (lane >> 4);
                if (p < n && e < d) {
                    load8(kb + (size_t)p * d + e, kf[u]);
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++) kf[u][j] = 0.f;
                }
            }
            if (e >= d) continue;
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g >= G) break;
                float qf[8];
                load8(qs + g * d + e, qf);
#pragma unroll
                for (int u = 0; u < U; u++)
#pragma unroll
                    for (int j = 0; j < 8; j++) s[u][g] = fmaf(qf[j], kf[u][j], s[u][g]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int p = base + u * 2 * nw + (lane >> 4);
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g >= G) break;
                float x = s[u][g];
                x += __shfl_xor_sync(0xffffffffu, x, 8);
                x += __shfl_xor_sync(0xffffffffu, x, 4);
                x += __shfl_xor_sync(0xffffffffu, x, 2);
                x += __shfl_xor_sync(0xffffffffu, x, 1);
                if (sub == 0 && p < n) sc[g * cm + p] = x;
            }
        }
    }
}

template <typename T>
__device__ void attn_split(const T* q, const T* k, const T* v, float* part, int heads, int kv_heads, int cap, int d,
                           int cm, float scale, const uint32_t* pos) {
    const int total = min((int)*pos + 1, cap), S = gridDim.y, s = blockIdx.y;
    const int chunk = (total + S - 1) / S, lo = s * chunk, n = max(0, min(total, lo + chunk) - lo);
    const int G = heads / kv_heads, bk = blockIdx.x, b = bk / kv_heads, h0 = (bk % kv_heads) * G;
    const size_t rows = (size_t)gridDim.x * G;  // b·heads
    extern __shared__ float smem[];
    float* qs = smem;
    float* sc = qs + G * d;
    float* ws = sc + G * cm;
    const T* qb = q + ((size_t)b * heads + h0) * d;
    for (int i = threadIdx.x; i < G * d; i += blockDim.x) qs[i] = to_f(qb[i]) * scale;
    __syncthreads();
    const T* kb = k + ((size_t)bk * cap + lo) * d;
    const T* vb = v + ((size_t)bk * cap + lo) * d;
    split_scores(qs, kb, sc, n, d, G, cm);
    __syncthreads();
    // Softmax numerators of each head's row, a warp a head; an empty chunk gives m = −∞, l = 0.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float* ml = part + rows * S * d;
    for (int g = warp; g < G; g += nw) {
        float m = -INFINITY, l = 0.f;
        for (int i = lane; i < n; i += 32) m = fmaxf(m, sc[g * cm + i]);
        m = warp_max(m);
        for (int i = lane; i < n; i += 32) {
            const float e = __expf(sc[g * cm + i] - m);
            sc[g * cm + i] = e;
            l += e;
        }
        l = warp_sum(l);
        const size_t r = ((size_t)b * heads + h0 + g) * S + s;
        if (lane == 0) ml[2 * r] = m, ml[2 * r + 1] = l;
    }
    __syncthreads();
    // Weighted sum: a thread owns 8 columns of every groups-th position, for all G heads at once;
    // the groups' sums meet in shared memory (ws: [groups][G·d], groups·d = 8·SPLIT_THREADS).
    const int cols = d / 8, groups = blockDim.x / cols, c = threadIdx.x % cols, grp = threadIdx.x / cols;
    if (grp < groups) {
        float acc[MAXG][8] = {};
#pragma unroll 4
        for (int i = grp; i < n; i += groups) {
            float vf[8];
            load8(vb + (size_t)i * d + 8 * c, vf);
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g >= G) break;
                const float w = sc[g * cm + i];
#pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] = fmaf(w, vf[j], acc[g][j]);
            }
        }
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= G) break;
#pragma unroll
            for (int j = 0; j < 8; j++) ws[(size_t)grp * G * d + g * d + 8 * c + j] = acc[g][j];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * d; i += blockDim.x) {
        float o = 0.f;
        for (int r = 0; r < groups; r++) o += ws[(size_t)r * G * d + i];
        part[(((size_t)b * heads + h0 + i / d) * S + s) * d + i % d] = o;
    }
}

// One block per (sequence, query head): merges the head's S partials. Every load is issued up front
// (a thread reads a few 16-byte pieces), since the partials come from L2 and a loop of dependent
// reads would pay its latency S times. Shared memory: the S weights (padded to a multiple of 4), then
// [blockDim / (d/4)][d] sums.
template <typename T>
__device__ void attn_combine(const float* part, T* out, int S, int d) {
    extern __shared__ float cs[];
    __shared__ float red[32];
    const size_t bh = blockIdx.x;
    const float* ml = part + (size_t)gridDim.x * S * d + bh * S * 2;
    float m = -INFINITY;
    for (int s = threadIdx.x; s < S; s += blockDim.x) m = fmaxf(m, ml[2 * s]);
    m = block_reduce(m, true, red);
    float l = 0.f;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        const float w = __expf(ml[2 * s] - m);
        cs[s] = w;
        l += w * ml[2 * s + 1];
    }
    const float inv = 1.f / block_reduce(l, false, red);  // its barriers also publish cs
    const int c4 = d / 4, sgs = blockDim.x / c4, c = threadIdx.x % c4, sg = threadIdx.x / c4;
    float* sums = cs + ((S + 3) & ~3);  // 16-byte aligned for the float4 stores
    if (sg < sgs) {
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
        for (int s = sg; s < S; s += sgs) {
            const float4 o = reinterpret_cast<const float4*>(part + (bh * S + s) * d)[c];
            const float w = cs[s];
            acc.x = fmaf(w, o.x, acc.x), acc.y = fmaf(w, o.y, acc.y);
            acc.z = fmaf(w, o.z, acc.z), acc.w = fmaf(w, o.w, acc.w);
        }
        reinterpret_cast<float4*>(sums + sg * d)[c] = acc;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float o = 0.f;
        for (int r = 0; r < sgs; r++) o += sums[r * d + i];
        out[bh * d + i] = from_f<T>(o * inv);
    }
}

// A warp's row of the causal softmax: its scores x and output y, the last key it sees, and the
// N-element vectors that hold the keys it sees (seen) and the whole row (vecs).
template <typename T>
struct SoftmaxRow {
    const T* x;
    T* y;
    int last, seen, vecs;
};

// The row of this thread's warp (a warp a row), or false past the last row.
template <typename T, int N>
__device__ __forceinline__ bool softmax_row(const T* scores, T* probs, long long rows, int total, int t, int start,
                                            SoftmaxRow<T>& r) {
    const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return false;
    r.last = min(start + (int)(row % t), total - 1);
    r.seen = r.last / N + 1;
    r.vecs = total / N;
    r.x = scores + row * total;
    r.y = probs + row * total;
    return true;
}

// Prefill attention's softmax, in place of the scale, cast to f32, mask add, softmax and cast back
// that the tensor ops take (together 47 % of a Llama-3.2-3B pp512 on the H200, more than the
// matmuls: bench/results/gpu-issue11/prefill). scores: [rows, total] = q·kᵀ unscaled, row r the
// query r % t at position start + r % t, which sees keys 0..=start + r % t; probs: the same shape,
// zero past the last key seen. One warp a row, f32 inside; rows are short enough (≤ the context)
// for three passes over a row that stays in L1.
// A lane takes N elements at a time: N = 1 (causal_softmax), or N = 16 / sizeof(T), one 16-byte access
// each (causal_softmax_wide, for a prompt; the host checks that total is a multiple of N and scores
// 16-byte aligned); the sum's order is all that differs between the two. The vectors past the last key
// seen are not read, only zeroed.
template <typename T, int N>
__device__ void causal_softmax(const T* scores, T* probs, long long rows, int total, int t, int start, float scale) {
    SoftmaxRow<T> r;
    if (!softmax_row<T, N>(scores, probs, rows, total, t, start, r)) return;
    const int lane = threadIdx.x & 31, last = r.last;
    float f[N] = {};
    float mx = -INFINITY;
    for (int c = lane; c < r.seen; c += 32) {
        load_n<N>(r.x + c * N, f);
#pragma unroll
        for (int e = 0; e < N; e++)
            if (c * N + e <= last) mx = fmaxf(mx, f[e]);
    }
    mx = warp_max(mx);
    float sum = 0.f;
    for (int c = lane; c < r.seen; c += 32) {
        load_n<N>(r.x + c * N, f);
#pragma unroll
        for (int e = 0; e < N; e++)
            if (c * N + e <= last) sum += expf((f[e] - mx) * scale);
    }
    const float inv = 1.f / warp_sum(sum);
    for (int c = lane; c < r.vecs; c += 32) {
        if (c < r.seen) load_n<N>(r.x + c * N, f);
#pragma unroll
        for (int e = 0; e < N; e++) f[e] = c * N + e <= last ? expf((f[e] - mx) * scale) * inv : 0.f;
        store_n<N>(r.y + c * N, f);
    }
}

// causal_softmax<T, N> with the row held in registers (causal_softmax_regs, the default where a
// row fits; MINILAB_SOFTMAX_REGS=0 turns it off): a lane keeps K vectors, so a row of total ≤ 32·N·K
// elements is read once and each exp taken once, where the loop above reads it three times and
// takes each exp twice. A lane visits its vectors and their elements in the loop's order, so the
// max, the sum and every output equal causal_softmax<T, N>'s bit for bit.
template <typename T, int N, int K>
__device__ void causal_softmax_regs(const T* scores, T* probs, long long rows, int total, int t, int start,
                                    float scale) {
    SoftmaxRow<T> r;
    if (!softmax_row<T, N>(scores, probs, rows, total, t, start, r)) return;
    const int lane = threadIdx.x & 31, last = r.last;
    float f[K][N] = {};
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < K; j++) {
        const int c = lane + 32 * j;
        if (c < r.seen) load_n<N>(r.x + c * N, f[j]);
#pragma unroll
        for (int e = 0; e < N; e++)
            if (c * N + e <= last) mx = fmaxf(mx, f[j][e]);
    }
    mx = warp_max(mx);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < K; j++) {
        const int c = lane + 32 * j;
#pragma unroll
        for (int e = 0; e < N; e++) {
            f[j][e] = c * N + e <= last ? expf((f[j][e] - mx) * scale) : 0.f;
            sum += f[j][e];
        }
    }
    const float inv = 1.f / warp_sum(sum);
#pragma unroll
    for (int j = 0; j < K; j++) {
        const int c = lane + 32 * j;
        if (c >= r.vecs) break;
#pragma unroll
        for (int e = 0; e < N; e++) f[j][e] *= inv;
        store_n<N>(r.y + c * N, f[j]);
    }
}

#define SOFTMAX_REGS(T, NAME, K)                                                                          \
    extern "C" __global__ void causal_softmax_regs##K##_##NAME(const T* scores, T* probs, long long rows,     \
                                                               int total, int t, int start, float scale) {   \
        causal_softmax_regs<T, 16 / sizeof(T), K>(scores, probs, rows, total, t, start, scale);              \
    }

#define INSTANTIATE(T, NAME)                                                                                 \
    extern "C" __global__ void __launch_bounds__(SINGLE_THREADS)                                             \
        attn_single_##NAME(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap,     \
                           int total, int d, float scale, const uint32_t* pos) {                             \
        pdl_begin();                                                                                         \
        attn_single<T>(q, k, v, out, heads, kv_heads, cap, total, d, scale, pos);                            \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(SPLIT_THREADS)                                              \
        attn_split_##NAME(const T* q, const T* k, const T* v, float* part, int heads, int kv_heads, int cap, \
                          int d, int cm, float scale, const uint32_t* pos) {                                 \
        pdl_begin();                                                                                         \
        attn_split<T>(q, k, v, part, heads, kv_heads, cap, d, cm, scale, pos);                               \
    }                                                                                                        \
    extern "C" __global__ void attn_combine_##NAME(const float* part, T* out, int S, int d) {                \
        pdl_begin();                                                                                         \
        attn_combine<T>(part, out, S, d);                                                                    \
    }                                                                                                        \
    extern "C" __global__ void attn_simple_##NAME(const T* q, const T* k, const T* v, T* out, int heads,     \
                                                  int kv_heads, int cap, int total, int d, float scale,      \
                                                  const uint32_t* pos) {                                     \
        pdl_begin();                                                                                         \
        attn_simple<T>(q, k, v, out, heads, kv_heads, cap, total, d, scale, pos);                            \
    }                                                                                                        \
    extern "C" __global__ void causal_softmax_##NAME(const T* scores, T* probs, long long rows, int total,   \
                                                     int t, int start, float scale) {                        \
        causal_softmax<T, 1>(scores, probs, rows, total, t, start, scale);                                   \
    }                                                                                                        \
    extern "C" __global__ void causal_softmax_wide_##NAME(const T* scores, T* probs, long long rows, int total, \
                                                          int t, int start, float scale) {                   \
        causal_softmax<T, 16 / sizeof(T)>(scores, probs, rows, total, t, start, scale);                      \
    }                                                                                                        \
    SOFTMAX_REGS(T, NAME, 2)                                                                                 \
    SOFTMAX_REGS(T, NAME, 4)                                                                                 \
    SOFTMAX_REGS(T, NAME, 8)

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)

// ys: [b, heads, t, d] → out: [b, t, heads·d], moved 16 bytes a thread (`vecs` = d·sizeof(T)/16, so
// one kernel serves every dtype). The attention's last product leaves a head's rows together and
// o_proj wants a token's heads together; a strided copy did this at a tenth of the bandwidth.
extern "C" __global__ void heads_to_rows(const uint4* ys, uint4* out, long long b, int heads, int t, int vecs) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)b * heads * t * vecs) return;
    const size_t row = idx / vecs;  // (s · heads + h) · t + j
    const int c = idx % vecs, j = row % t;
    const size_t sh = row / t;  // s · heads + h
    const int h = sh % heads;
    const size_t s = sh / heads;
    out[((s * t + j) * heads + h) * vecs + c] = ys[idx];
}
