// Decode attention: one new query token per sequence against a preallocated KV cache, in one kernel
// (scores, softmax and the weighted sum of values), instead of the ~8 launches of matmul, scale,
// casts, softmax, matmul and copies that the tensor-op path takes per block and token.
//
// q: [b*heads, d]; k, v: [b*kv_heads, cap, d] of which the first `total` positions are valid;
// out: [b*heads, d]. One block per (sequence, head); f32 accumulation throughout.
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

template <typename T>
__device__ void attn_decode(const T* q, const T* k, const T* v, T* out, int heads, int kv_heads, int cap, int total,
                            int d, float scale) {
    extern __shared__ float smem[];  // q (d floats), then the scores (total floats)
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
    float m = -INFINITY;
    for (int p = threadIdx.x; p < total; p += blockDim.x) m = fmaxf(m, sc[p]);
    m = block_reduce(m, true, red);
    float sum = 0.f;
    for (int p = threadIdx.x; p < total; p += blockDim.x) {
        const float e = __expf(sc[p] - m);
        sc[p] = e;
        sum += e;
    }
    sum = block_reduce(sum, false, red);
    const float inv = 1.f / sum;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int p = 0; p < total; p++) acc = fmaf(sc[p], to_f(vb[(size_t)p * d + i]), acc);
        out[(size_t)bh * d + i] = from_f<T>(acc * inv);
    }
}

#define INSTANTIATE(T, NAME)                                                                                  \
    extern "C" __global__ void attn_decode_##NAME(const T* q, const T* k, const T* v, T* out, int heads,      \
                                                  int kv_heads, int cap, int total, int d, float scale) {      \
        attn_decode<T>(q, k, v, out, heads, kv_heads, cap, total, d, scale);                                   \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
