// Fused dequantize-GEMV for int8 and NF4 linear layers (decode, 1-8 rows of xs), and one-pass
// dequantize kernels for prefill (the 16-bit weight then goes to cuBLAS). Built to PTX by build.rs.
//
// Layouts (see src/quant): int8 codes [n, k] u8 = q + 128, scales [n] f32, w = q * scale.
// NF4: packed [n*k/2] u8, byte i = elements 2i (high nibble) and 2i+1 (low), absmax [n*k/64] f32.
// xs [m, k], ys [m, n], row-major, in T = float, __half or __nv_bfloat16; accumulation in f32.
#include <stdint.h>

#include "common.cuh"

#define MAX_ROWS 8
#define WARPS 4

__constant__ float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

// Eight consecutive xs values (16-byte aligned for 16-bit T, 32-byte for float) as f32.
template <typename T> __device__ __forceinline__ void load8(const T* p, float* out) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; i++) out[i] = to_f(v[i]);
}
template <> __device__ __forceinline__ void load8<float>(const float* p, float* out) {
    float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

// Lane 0 of each warp writes its row's sums, times `scale`, for the m rows of xs.
template <typename T>
__device__ __forceinline__ void store_rows(const float* acc, T* ys, int m, int n, int row, float scale) {
#pragma unroll
    for (int r = 0; r < MAX_ROWS; r++) {
        if (r < m) {
            const float v = warp_sum(acc[r]);
            if ((threadIdx.x & 31) == 0) ys[(size_t)r * n + row] = from_f<T>(v * scale);
        }
    }
}

// Dense 16-bit (or f32) weights: one warp per output row, 16 weights a lane per step. cuBLAS runs a
// one-row product as a GEMM with a fixed cost of ~20 us; this reads the row at memory speed.
// Needs k % 8 == 0.
template <typename T>
__device__ void gemv_dense(const T* xs, const T* w, T* ys, int m, int n, int k) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= n) return;
    const T* wr = w + (size_t)row * k;
    float acc[MAX_ROWS] = {0.f};
    // 16 weights a lane per step, both loads issued before any use.
    int j = lane * 16;
#pragma unroll 2
    for (; j + 16 <= k; j += 32 * 16) {
        float wf[16];
        load8(wr + j, wf);
        load8(wr + j + 8, wf + 8);
#pragma unroll
        for (int r = 0; r < MAX_ROWS; r++) {
            if (r < m) {
                float x[16];
                load8(xs + (size_t)r * k + j, x);
                load8(xs + (size_t)r * k + j + 8, x + 8);
#pragma unroll
                for (int i = 0; i < 16; i++) acc[r] = fmaf(wf[i], x[i], acc[r]);
            }
        }
    }
    if (j < k) {  // k % 16 == 8: one last group of 8
        float wf[8];
        load8(wr + j, wf);
#pragma unroll
        for (int r = 0; r < MAX_ROWS; r++) {
            if (r < m) {
                float x[8];
                load8(xs + (size_t)r * k + j, x);
#pragma unroll
                for (int i = 0; i < 8; i++) acc[r] = fmaf(wf[i], x[i], acc[r]);
            }
        }
    }
    store_rows(acc, ys, m, n, row, 1.f);
}

// One warp per output row; each lane takes 16 consecutive weights (one 16-byte load) per step.
// Needs k % 16 == 0.
template <typename T>
__device__ void gemv_int8(const T* xs, const uint8_t* codes, const float* scales, T* ys, int m, int n, int k) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= n) return;
    const uint8_t* w = codes + (size_t)row * k;
    float acc[MAX_ROWS] = {0.f};
#pragma unroll 2
    for (int j = lane * 16; j < k; j += 32 * 16) {
        uint4 raw = __ldg(reinterpret_cast<const uint4*>(w + j));
        const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
        float wf[16];
#pragma unroll
        for (int i = 0; i < 16; i++) wf[i] = (float)((int)b[i] - 128);
#pragma unroll
        for (int r = 0; r < MAX_ROWS; r++) {
            if (r < m) {
                float x[16];
                load8(xs + (size_t)r * k + j, x);
                load8(xs + (size_t)r * k + j + 8, x + 8);
#pragma unroll
                for (int i = 0; i < 16; i++) acc[r] = fmaf(wf[i], x[i], acc[r]);
            }
        }
    }
    store_rows(acc, ys, m, n, row, scales[row]);
}

// One warp per output row; each lane takes 32 weights (16 packed bytes, half an absmax block) per
// step. Needs k % 64 == 0.
template <typename T>
__device__ void gemv_nf4(const T* xs, const uint8_t* packed, const float* absmax, T* ys, int m, int n, int k) {
    // 16 codes in shared memory: a warp's lanes hit at most 16 words, each served by broadcast
    // (a 256-entry table of code pairs was tried: its bank conflicts made the kernel 1.4x slower).
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = NF4_CODE[threadIdx.x];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= n) return;
    const size_t base = (size_t)row * k;
    float acc[MAX_ROWS] = {0.f};
#pragma unroll 2
    for (int j = lane * 32; j < k; j += 32 * 32) {
        uint4 raw = __ldg(reinterpret_cast<const uint4*>(packed + (base + j) / 2));
        const float a = __ldg(absmax + (base + j) / 64);
        const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
        float wf[32];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            wf[2 * i] = code[b[i] >> 4];
            wf[2 * i + 1] = code[b[i] & 15];
        }
#pragma unroll
        for (int r = 0; r < MAX_ROWS; r++) {
            if (r < m) {
                const T* x = xs + (size_t)r * k + j;
                float part = 0.f;  // the 32 codes share one absmax: scale once
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    float xv[8];
                    load8(x + 8 * q, xv);
#pragma unroll
                    for (int i = 0; i < 8; i++) part = fmaf(wf[8 * q + i], xv[i], part);
                }
                acc[r] = fmaf(part, a, acc[r]);
            }
        }
    }
    store_rows(acc, ys, m, n, row, 1.f);
}

// Prefill: the whole weight in T, 8 elements a thread.
template <typename T>
__device__ void dequant_int8(const uint8_t* codes, const float* scales, T* w, int n, int k) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= (size_t)n * k) return;
    const float s = scales[i / k];  // k % 8 == 0: the 8 elements share a row
    uint2 raw = *reinterpret_cast<const uint2*>(codes + i);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
#pragma unroll
    for (int e = 0; e < 8; e++) w[i + e] = from_f<T>((float)((int)b[e] - 128) * s);
}

template <typename T>
__device__ void dequant_nf4(const uint8_t* packed, const float* absmax, T* w, size_t len) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= len) return;
    const float a = absmax[i / 64];
    uint32_t raw = *reinterpret_cast<const uint32_t*>(packed + i / 2);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
#pragma unroll
    for (int e = 0; e < 4; e++) {
        w[i + 2 * e] = from_f<T>(NF4_CODE[b[e] >> 4] * a);
        w[i + 2 * e + 1] = from_f<T>(NF4_CODE[b[e] & 15] * a);
    }
}

#define INSTANTIATE(T, NAME)                                                                                  \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) gemv_dense_##NAME(const T* xs, const T* w, T* ys, \
                                                                               int m, int n, int k) {          \
        gemv_dense<T>(xs, w, ys, m, n, k);                                                                     \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) gemv_int8_##NAME(                                 \
        const T* xs, const uint8_t* codes, const float* scales, T* ys, int m, int n, int k) {                   \
        gemv_int8<T>(xs, codes, scales, ys, m, n, k);                                                          \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) gemv_nf4_##NAME(                                  \
        const T* xs, const uint8_t* packed, const float* absmax, T* ys, int m, int n, int k) {                 \
        gemv_nf4<T>(xs, packed, absmax, ys, m, n, k);                                                          \
    }                                                                                                          \
    extern "C" __global__ void dequant_int8_##NAME(const uint8_t* codes, const float* scales, T* w, int n,     \
                                                   int k) {                                                    \
        dequant_int8<T>(codes, scales, w, n, k);                                                               \
    }                                                                                                          \
    extern "C" __global__ void dequant_nf4_##NAME(const uint8_t* packed, const float* absmax, T* w,           \
                                                  unsigned long long len) {                                    \
        dequant_nf4<T>(packed, absmax, w, (size_t)len);                                                        \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
