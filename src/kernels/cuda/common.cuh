// Shared by the minilab CUDA kernels: dtype conversions, warp and block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// Programmatic dependent launch (sm_90+; both are no-ops when the launch did not ask for it, and
// compiled out below sm_90). A decode step is a chain of kernels of a few µs each, so launch latency
// and the first DRAM round trip of every kernel are a large part of it: each kernel lets the next one
// launch at once (pdl_trigger), and the next one may touch only data no kernel writes (weights)
// before pdl_wait, which returns when the previous kernel has finished and its writes are visible.
// Every block of such a kernel calls pdl_wait: a kernel then finishes only after its predecessor,
// so the chain stays ordered through kernels that touch nothing before waiting.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Both, for kernels that have nothing to fetch before their inputs are ready.
__device__ __forceinline__ void pdl_begin() {
    pdl_trigger();
    pdl_wait();
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

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

// N consecutive elements of T as floats, in one access: one T where N = 1 (a decode step's kernels),
// 16 bytes where N = 16 / sizeof(T) (a prompt's wide kernels), so that one kernel body serves both.
// One 16-byte access moves 8 bf16 where a 2-byte one moved 1, and at a prompt's sizes the narrow
// accesses held the small ops to a third of the bandwidth (ncu, H100, issue 11 session 19).
// p: aligned to the access.
template <int N, typename T>
using chunk_t = std::conditional_t<N == 1, T, uint4>;
template <int N, typename T>
__device__ __forceinline__ void load_n(const T* p, float* f) {
    static_assert(N == 1 || N * sizeof(T) == 16, "load_n: one element or 16 bytes");
    const chunk_t<N, T> u = *reinterpret_cast<const chunk_t<N, T>*>(p);
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < N; i++) f[i] = to_f(e[i]);
}
template <int N, typename T>
__device__ __forceinline__ void store_n(T* p, const float* f) {
    static_assert(N == 1 || N * sizeof(T) == 16, "store_n: one element or 16 bytes");
    chunk_t<N, T> u;
    T* e = reinterpret_cast<T*>(&u);
#pragma unroll
    for (int i = 0; i < N; i++) e[i] = from_f<T>(f[i]);
    *reinterpret_cast<chunk_t<N, T>*>(p) = u;
}
template <int N, typename T>
__device__ __forceinline__ void copy_n(T* dst, const T* src) {
    *reinterpret_cast<chunk_t<N, T>*>(dst) = *reinterpret_cast<const chunk_t<N, T>*>(src);
}
// 16 bytes of T; p: 16-byte aligned.
template <typename T>
__device__ __forceinline__ void load_wide(const T* p, float* f) {
    load_n<16 / sizeof(T)>(p, f);
}
template <typename T>
__device__ __forceinline__ void store_wide(T* p, const float* f) {
    store_n<16 / sizeof(T)>(p, f);
}
