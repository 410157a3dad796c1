// Decode attention: one new query token per sequence against a preallocated KV cache, in one kernel
// (scores, softmax and the weighted sum of values), instead of the ~8 launches of matmul, scale,
// casts, softmax, matmul and copies that the tensor-op path takes per block and token.
//
// q: [b*heads, d]; k, v: [b*kv_heads, cap, d] of which the first `total` positions are valid;
// out: [b*heads, d]; d % 8 == 0, d ≤ 256. One block per (sequence, head); f32 accumulation. With
// `pos` set, `total` is *pos + 1, read on the device: a decode step captured in a CUDA graph then
// serves every position, its shared memory sized for the whole cache.
#include <stdint.h>

#include "common.cuh"

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Max (is_max) or sum of v over the block; every thread gets the result.
__device__ float block_reduce(float v, bool is_max, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.f);
        v = is_max ? warp_max(v) : warp_sum(v);
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    const float r = red[0];
    __syncthreads();
    return r;
}

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

// attn_simple: the plain kernel, the baseline attn_decode is timed against (and the fallback that an
// environment variable selects): a warp per position for the scores, a thread per column for the sum.
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

// attn_decode: the same result with more independent 16-byte loads in flight (the step's attention is
// small and bound by latency). Scores: 16 lanes share a position (8 elements each per 128), a warp
// takes two positions at a time, U pairs before it reduces. Weighted sum: a thread owns 8 columns of
// every G-th position (G = blockDim / (d/8)), and the G partial sums meet in shared memory.
constexpr int THREADS = 256;
constexpr int U = 4;

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

template <typename T>
__device__ void attn_decode(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap, int total,
                            int d, float scale, const uint32_t* pos) {
    if (pos) total = min((int)*pos + 1, cap);
    // q (d floats), the scores (cap floats), the partial sums (THREADS·8 floats)
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

#define INSTANTIATE(T, NAME)                                                                                \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                   \
        attn_decode_##NAME(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap,      \
                           int total, int d, float scale, const uint32_t* pos) {                              \
        attn_decode<T>(q, k, v, out, heads, kv_heads, cap, total, d, scale, pos);                            \
    }                                                                                                        \
    extern "C" __global__ void attn_simple_##NAME(const T* q, const T* k, const T* v, T* out, int heads,     \
                                                  int kv_heads, int cap, int total, int d, float scale,       \
                                                  const uint32_t* pos) {                                      \
        attn_simple<T>(q, k, v, out, heads, kv_heads, cap, total, d, scale, pos);                            \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
