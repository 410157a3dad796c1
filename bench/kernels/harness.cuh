// What the standalone harnesses share: the CUDA error check and seeded random fills.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

typedef __nv_bfloat16 bf16;

// The GPU's global timer, ns: waits that give up (overlap.cuh, ahead.cuh) and timelines.
__device__ __forceinline__ unsigned long long now_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ uint32_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return (uint32_t)x;
}
__global__ void fill_bytes(uint8_t* p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (uint8_t)mix(seed * 0x9e3779b97f4a7c15ULL + i);
}
// Uniform in [lo, hi).
__global__ void fill_f32(float* p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * (mix(seed * 0x9e3779b97f4a7c15ULL + i) >> 8) * (1.0f / 16777216.0f);
}
__global__ void fill_bf16(bf16* p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(lo + (hi - lo) * (mix(seed * 0x9e3779b97f4a7c15ULL + i) >> 8) * (1.0f / 16777216.0f));
}

// max |a − b| / max |b| over count bf16 values on the device; NaN if any value is not finite.
inline double rel_err(const bf16* a, const bf16* b, size_t count) {
    std::vector<bf16> ha(count), hb(count);
    CK(cudaMemcpy(ha.data(), a, count * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, count * 2, cudaMemcpyDeviceToHost));
    double d = 0, mx = 0;
    for (size_t i = 0; i < count; i++) {
        const float x = __bfloat162float(ha[i]), y = __bfloat162float(hb[i]);
        if (!std::isfinite(x) || !std::isfinite(y)) return NAN;
        d = std::max(d, (double)std::fabs(x - y));
        mx = std::max(mx, (double)std::fabs(y));
    }
    return d / mx;
}
