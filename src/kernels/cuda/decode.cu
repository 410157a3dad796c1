// The small ops of one decode step, fused so that a block takes eight launches (see
// src/model/llama/decode.rs), and written to read the position from device memory so that the whole step
// can be captured once as a CUDA graph and replayed for every token:
//
// - add_rms_norm: res = xs + ys (rounded to T, as a separate add would store it), out = RMSNorm(res)·w;
// - rope_kv: rotates q and k ("rotate half", Hugging Face layout) at positions *pos.., writes the rotated
//   k and the plain v into the KV cache at *pos, and q to its own buffer;
// - silu_mul: silu(gate)·up for the MLP, where the gate/up GEMV cannot do it (gemv.cuh's SILU mode).
//
// All arithmetic is f32; inputs and outputs are T = float, __half or __nv_bfloat16.
#include <stdint.h>

#include "common.cuh"

// xs, ys, res, out: [rows, h]; w: [h]. One block a row. It is one of the step's most frequent
// kernels (two a block) and its time is a chain of latencies, so up to ADD_RMS_PER · blockDim.x
// elements stay in registers between the passes, and w is fetched before waiting for the previous
// kernel (weights are never written during decode; common.cuh's PDL notes).
constexpr int ADD_RMS_PER = 8;

template <typename T>
__device__ void add_rms_norm(const T* xs, const T* ys, const T* w, T* res, T* out, int h, float eps) {
    const size_t row = (size_t)blockIdx.x * h;
    __shared__ float red[32];
    if (h > ADD_RMS_PER * (int)blockDim.x) {
        pdl_wait();
        float ss = 0.f;
        for (int i = threadIdx.x; i < h; i += blockDim.x) {
            const T r = from_f<T>(to_f(xs[row + i]) + to_f(ys[row + i]));
            res[row + i] = r;
            const float f = to_f(r);
            ss = fmaf(f, f, ss);
        }
        const float inv = rsqrtf(block_reduce(ss, false, red) / h + eps);
        // Each thread reads back only the elements it wrote.
        for (int i = threadIdx.x; i < h; i += blockDim.x) out[row + i] = from_f<T>(to_f(res[row + i]) * inv * to_f(w[i]));
        return;
    }
    float wv[ADD_RMS_PER], rv[ADD_RMS_PER];
#pragma unroll
    for (int c = 0; c < ADD_RMS_PER; c++) {
        const int i = threadIdx.x + c * blockDim.x;
        wv[c] = i < h ? to_f(w[i]) : 0.f;
    }
    pdl_wait();
    float ss = 0.f;
#pragma unroll
    for (int c = 0; c < ADD_RMS_PER; c++) {
        const int i = threadIdx.x + c * blockDim.x;
        rv[c] = 0.f;
        if (i < h) {
            const T r = from_f<T>(to_f(xs[row + i]) + to_f(ys[row + i]));
            res[row + i] = r;
            rv[c] = to_f(r);
            ss = fmaf(rv[c], rv[c], ss);
        }
    }
    const float inv = rsqrtf(block_reduce(ss, false, red) / h + eps);
#pragma unroll
    for (int c = 0; c < ADD_RMS_PER; c++) {
        const int i = threadIdx.x + c * blockDim.x;
        if (i < h) out[row + i] = from_f<T>(rv[c] * inv * wv[c]);
    }
}

// add_rms_norm over a prompt's rows: one block of ROWS_THREADS a row, 16-byte accesses, a thread's
// elements in registers between the passes (h ≤ ROWS_VECS · ROWS_THREADS · 16 / sizeof(T), h a
// multiple of 16 / sizeof(T), every row 16-byte aligned; the host checks). The one-row kernel above
// gives a row 1024 threads of 2-byte accesses, right for a decode step's one row; at 512 rows it
// took 14.4 µs for the 3B's 12.6 MB (ncu, H100, issue 11 session 19). The same rounding; only the
// order of the sum of squares differs.
constexpr int ROWS_THREADS = 128, ROWS_VECS = 8;

template <typename T>
__device__ void add_rms_norm_rows(const T* xs, const T* ys, const T* w, T* res, T* out, int h, float eps) {
    constexpr int N = 16 / sizeof(T);
    const size_t row = (size_t)blockIdx.x * h;
    __shared__ float red[32];
    float rv[ROWS_VECS][N];
    float ss = 0.f;
#pragma unroll
    for (int c = 0; c < ROWS_VECS; c++) {
        const int i = (threadIdx.x + c * ROWS_THREADS) * N;
        if (i < h) {
            float a[N], b[N];
            load_wide(xs + row + i, a);
            load_wide(ys + row + i, b);
#pragma unroll
            for (int e = 0; e < N; e++) {
                rv[c][e] = to_f(from_f<T>(a[e] + b[e]));
                ss = fmaf(rv[c][e], rv[c][e], ss);
            }
            store_wide(res + row + i, rv[c]);
        }
    }
    const float inv = rsqrtf(block_reduce(ss, false, red) / h + eps);
#pragma unroll
    for (int c = 0; c < ROWS_VECS; c++) {
        const int i = (threadIdx.x + c * ROWS_THREADS) * N;
        if (i < h) {
            float wv[N];
            load_wide(w + i, wv);
#pragma unroll
            for (int e = 0; e < N; e++) rv[c][e] = rv[c][e] * inv * wv[e];
            store_wide(out + row + i, rv[c]);
        }
    }
}

// q: [b, t, heads·d], k, v: [b, t, kv_heads·d] (t new tokens, at positions *pos .. *pos + t), a
// token's row ld_q, ld_k, ld_v elements after the previous one (a prompt's q/k/v may be column
// ranges of one stacked product's output, src/quant/stacked.rs, read in place rather than copied);
// cos, sin: [max_pos, d/2]; q_out: [b, heads, t, d]; k_cache, v_cache: [b, kv_heads, cap, d]. A
// thread takes N neighbouring pairs (i .. i + N with i + d/2 .. i + d/2 + N) of a head of a token, q
// heads first, then k heads, then v heads, so that neighbouring threads read neighbouring elements of
// a token's row. A decode step (t = 1) takes N = 1; a prompt N = 16 / sizeof(T), one 16-byte access
// each (rope_kv_wide; the host checks that d/2, ld_q, ld_k and ld_v are multiples of N and every
// address is 16-byte aligned). A prefill writes its whole prompt into the cache in the same pass that
// rotates it and lays q out by head.
// Tokens past the tables or the cache write nothing (the host checks before it launches; this keeps
// a bad position from writing out of bounds).
template <typename T, int N>
__device__ void rope_kv(const T* q, const T* k, const T* v, const T* cos, const T* sin, const uint32_t* pos, T* q_out,
                        T* k_cache, T* v_cache, int b, int t, int heads, int kv_heads, int cap, int d, int max_pos,
                        int ld_q, int ld_k, int ld_v) {
    const int half = d / 2, groups = half / N, per_tok = (heads + 2 * kv_heads) * groups;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)b * t * per_tok) return;
    const size_t tok = idx / per_tok;  // s · t + j
    const int r = idx % per_tok, head = r / groups, i = (r % groups) * N;
    const int s = tok / t, j = tok % t;
    const uint32_t p = *pos + j;
    if (p >= (uint32_t)cap || p >= (uint32_t)max_pos) return;
    if (head >= heads + kv_heads) {
        const int h = head - heads - kv_heads;
        const T* src = v + tok * ld_v + (size_t)h * d;
        T* dst = v_cache + (((size_t)s * kv_heads + h) * cap + p) * d;
        copy_n<N>(dst + i, src + i);
        copy_n<N>(dst + i + half, src + i + half);
        return;
    }
    const bool is_q = head < heads;
    const int h = is_q ? head : head - heads;
    const T* src = is_q ? q + tok * ld_q + (size_t)h * d : k + tok * ld_k + (size_t)h * d;
    T* dst = is_q ? q_out + (((size_t)s * heads + h) * t + j) * d : k_cache + (((size_t)s * kv_heads + h) * cap + p) * d;
    float c[N], sn[N], x1[N], x2[N], y1[N], y2[N];
    load_n<N>(cos + (size_t)p * half + i, c);
    load_n<N>(sin + (size_t)p * half + i, sn);
    load_n<N>(src + i, x1);
    load_n<N>(src + i + half, x2);
    // the fused multiply-adds are spelled out: left to the compiler, N = 1 and N = 4 (f32) fused
    // different products, and the wide and narrow kernels differed in the last bit (H100, session 21)
#pragma unroll
    for (int e = 0; e < N; e++) {
        y1[e] = __fmaf_rn(x1[e], c[e], -__fmul_rn(x2[e], sn[e]));
        y2[e] = __fmaf_rn(x2[e], c[e], __fmul_rn(x1[e], sn[e]));
    }
    store_n<N>(dst + i, y1);
    store_n<N>(dst + i + half, y2);
}

// gate, up, out: [n].
template <typename T>
__device__ void silu_mul(const T* gate, const T* up, T* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = to_f(gate[i]);
    out[i] = from_f<T>(g / (1.f + __expf(-g)) * to_f(up[i]));
}

// silu_mul over 16-byte vectors: vecs = n / (16 / sizeof(T)), every buffer 16-byte aligned; the
// same arithmetic as silu_mul, element by element.
template <typename T>
__device__ void silu_mul_wide(const T* gate, const T* up, T* out, long long vecs) {
    constexpr int N = 16 / sizeof(T);
    const long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= vecs) return;
    float g[N], u[N];
    load_wide(gate + v * N, g);
    load_wide(up + v * N, u);
#pragma unroll
    for (int e = 0; e < N; e++) g[e] = g[e] / (1.f + __expf(-g[e])) * u[e];
    store_wide(out + v * N, g);
}

#define INSTANTIATE(T, NAME)                                                                                     \
    extern "C" __global__ void add_rms_norm_##NAME(const T* xs, const T* ys, const T* w, T* res, T* out, int h,  \
                                                   float eps) {                                                  \
        pdl_trigger();                                                                                           \
        add_rms_norm<T>(xs, ys, w, res, out, h, eps);                                                            \
    }                                                                                                            \
    extern "C" __global__ void rope_kv_##NAME(const T* q, const T* k, const T* v, const T* cos, const T* sin,    \
                                              const uint32_t* pos, T* q_out, T* k_cache, T* v_cache, int b,      \
                                              int t, int heads, int kv_heads, int cap, int d, int max_pos,       \
                                              int ld_q, int ld_k, int ld_v) {                                    \
        pdl_begin();                                                                                             \
        rope_kv<T, 1>(q, k, v, cos, sin, pos, q_out, k_cache, v_cache, b, t, heads, kv_heads, cap, d, max_pos,   \
                      ld_q, ld_k, ld_v);                                                                         \
    }                                                                                                            \
    extern "C" __global__ void silu_mul_##NAME(const T* gate, const T* up, T* out, int n) {                      \
        pdl_begin();                                                                                             \
        silu_mul<T>(gate, up, out, n);                                                                           \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(ROWS_THREADS)                                                   \
        add_rms_norm_rows_##NAME(const T* xs, const T* ys, const T* w, T* res, T* out, int h, float eps) {       \
        pdl_begin();                                                                                             \
        add_rms_norm_rows<T>(xs, ys, w, res, out, h, eps);                                                       \
    }                                                                                                            \
    extern "C" __global__ void rope_kv_wide_##NAME(const T* q, const T* k, const T* v, const T* cos, const T* sin, \
                                                   const uint32_t* pos, T* q_out, T* k_cache, T* v_cache, int b, \
                                                   int t, int heads, int kv_heads, int cap, int d, int max_pos,  \
                                                   int ld_q, int ld_k, int ld_v) {                               \
        pdl_begin();                                                                                             \
        rope_kv<T, 16 / sizeof(T)>(q, k, v, cos, sin, pos, q_out, k_cache, v_cache, b, t, heads, kv_heads, cap, d, \
                                   max_pos, ld_q, ld_k, ld_v);                                                   \
    }                                                                                                            \
    extern "C" __global__ void silu_mul_wide_##NAME(const T* gate, const T* up, T* out, long long vecs) {        \
        pdl_begin();                                                                                             \
        silu_mul_wide<T>(gate, up, out, vecs);                                                                   \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
