// The linear-layer kernels, built to PTX by build.rs: the decode GEMVs of gemv.cuh (1-8 rows of xs,
// dense, int8 or NF4 weights, up to three weights a launch), one-pass dequantize kernels for
// prefill (the 16-bit weight then goes to cuBLAS), and qgemm.cuh's prefill GEMM that dequantizes
// in shared memory.
//
// Layouts (see src/quant): int8 codes [n, k] u8 = q + 128, scales [n] f32, w = q * scale.
// NF4: packed [n*k/2] u8, byte i = elements 2i (high nibble) and 2i+1 (low), absmax [n*k/64] f32.
// xs [m, k], ys [m, n], row-major, in T = float, __half or __nv_bfloat16; accumulation in f32.
#include <stdint.h>

#include "common.cuh"
#include "gemv.cuh"
#include "gemv_mixed.cuh"
#include "gemv_stream.cuh"
#include "qgemm.cuh"

// Prefill: the whole weight in T, 8 elements a thread, written as 16-byte vectors (the stores are
// two thirds of the traffic). k % 8 == 0, so the 8 elements share a row.
template <typename T>
__device__ __forceinline__ void store8(T* w, const float (&v)[8]) {
    alignas(16) T out[8];
#pragma unroll
    for (int e = 0; e < 8; e++) out[e] = from_f<T>(v[e]);
#pragma unroll
    for (int j = 0; j < (int)(8 * sizeof(T) / 16); j++)
        reinterpret_cast<uint4*>(w)[j] = reinterpret_cast<const uint4*>(out)[j];
}

template <typename T>
__device__ void dequant_int8(const uint8_t* codes, const float* scales, T* w, int n, int k) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= (size_t)n * k) return;
    const float s = scales[i / k];
    const uint2 raw = *reinterpret_cast<const uint2*>(codes + i);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = (float)((int)b[e] - 128) * s;
    store8(w + i, v);
}

// The codebook in shared memory: constant memory serializes a warp's differing indices.
template <typename T>
__device__ void dequant_nf4(const uint8_t* packed, const float* absmax, T* w, size_t len) {
    __shared__ float codes[16];
    if (threadIdx.x < 16) codes[threadIdx.x] = gemv::NF4_CODES[threadIdx.x];
    __syncthreads();
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= len) return;
    const float a = absmax[i / 64];
    const uint32_t raw = *reinterpret_cast<const uint32_t*>(packed + i / 2);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
    float v[8];
#pragma unroll
    for (int e = 0; e < 4; e++) {
        v[2 * e] = codes[b[e] >> 4] * a;
        v[2 * e + 1] = codes[b[e] & 15] * a;
    }
    store8(w + i, v);
}

// gemv_<format>_<dtype>_m<M>_r<R>: up to M rows of xs, R output rows a warp, 128 threads a block
// (at least MINB blocks an SM: the register cap that measured best, bench/kernels/gemv_bench.cu).
#define GEMV(T, NAME, F, FNAME, M, R, MINB)                                                                   \
    extern "C" __global__ void __launch_bounds__(128, MINB) gemv_##FNAME##_##NAME##_m##M##_r##R(const T* xs, \
                                                                                            gemv::Parts ps) { \
        gemv::gemv_parts<T, F, M, R>(xs, ps);                                                                \
    }
// The (M, R) pairs src/kernels/cuda/mod.rs picks from: R = 2 at one row (R = 4 for NF4 weights of
// 8192 rows or more), fewer rows a warp as M grows.
#define GEMVS(T, NAME)                                  \
    GEMV(T, NAME, gemv::DENSE, dense, 1, 2, 8)          \
    GEMV(T, NAME, gemv::DENSE, dense, 2, 2, 1)          \
    GEMV(T, NAME, gemv::DENSE, dense, 4, 1, 1)          \
    GEMV(T, NAME, gemv::DENSE, dense, 8, 1, 1)          \
    GEMV(T, NAME, gemv::INT8, int8, 1, 2, 8)            \
    GEMV(T, NAME, gemv::INT8, int8, 2, 2, 1)            \
    GEMV(T, NAME, gemv::INT8, int8, 4, 2, 1)            \
    GEMV(T, NAME, gemv::INT8, int8, 8, 2, 1)            \
    GEMV(T, NAME, gemv::NF4, nf4, 1, 2, 8)              \
    GEMV(T, NAME, gemv::NF4, nf4, 1, 4, 6)              \
    GEMV(T, NAME, gemv::NF4, nf4, 2, 2, 1)              \
    GEMV(T, NAME, gemv::NF4, nf4, 4, 2, 1)              \
    GEMV(T, NAME, gemv::NF4, nf4, 8, 2, 1)

// gemv_pf_<format>_<dtype>_m1_r<R>: the one-row kernels that first ask L2 for the next launch's
// weights (gemv_prefetch.cuh's Prefetch), for the decode step with MINILAB_PREFETCH. Separate kernels, so the
// shipped ones keep their registers.
#define GEMV_PF(T, NAME, F, FNAME, R, MINB)                                                                  \
    extern "C" __global__ void __launch_bounds__(128, MINB)                                                  \
        gemv_pf_##FNAME##_##NAME##_m1_r##R(const T* xs, gemv::Parts ps, gemv::Prefetch pf) {                \
        gemv::prefetch_next(pf);                                                                             \
        gemv::gemv_parts<T, F, 1, R>(xs, ps);                                                                \
    }
#define GEMVS_PF(T, NAME)                     \
    GEMV_PF(T, NAME, gemv::DENSE, dense, 2, 8) \
    GEMV_PF(T, NAME, gemv::INT8, int8, 2, 8)   \
    GEMV_PF(T, NAME, gemv::NF4, nf4, 2, 8)     \
    GEMV_PF(T, NAME, gemv::NF4, nf4, 4, 6)

// gemv_<way>_<format>_<dtype>_m1_r<R>: the one-row kernels whose warps apply a folded norm themselves
// instead of a block's pass into shared memory first (gemv.cuh's NormWay). Separate kernels, so the
// shipped ones keep their registers.
// - ln, the late way (Parts' norm = 2, MINILAB_FUSE_NORM=late): the warps normalize xs as they load
//   it (NF4 at R = 4 takes 5 blocks an SM: at 6, ptxas spills 12 bytes);
// - ns, the stats way (Parts' norm = 3, the default): a RESID launch before a norm also writes xw and
//   its blocks' sums of squares, and the launch after the norm takes xw and scales its products by
//   the RMS factor at the end (gemv_accumulate.cuh's Parts).
#define GEMV_NORM(T, NAME, F, FNAME, R, MINB, WAY, NORM)                                                      \
    extern "C" __global__ void __launch_bounds__(128, MINB) gemv_##WAY##_##FNAME##_##NAME##_m1_r##R(const T* xs, \
                                                                                                 gemv::Parts ps) { \
        gemv::gemv_parts<T, F, 1, R, gemv::default_unroll<1>(), 0, gemv::NORM>(xs, ps);                           \
    }
#define GEMVS_NORM(T, NAME)                                             \
    GEMV_NORM(T, NAME, gemv::DENSE, dense, 2, 8, ln, NORM_LATE)   \
    GEMV_NORM(T, NAME, gemv::INT8, int8, 2, 8, ln, NORM_LATE)     \
    GEMV_NORM(T, NAME, gemv::NF4, nf4, 2, 8, ln, NORM_LATE)       \
    GEMV_NORM(T, NAME, gemv::NF4, nf4, 4, 5, ln, NORM_LATE)       \
    GEMV_NORM(T, NAME, gemv::DENSE, dense, 2, 8, ns, NORM_STATS)  \
    GEMV_NORM(T, NAME, gemv::INT8, int8, 2, 8, ns, NORM_STATS)    \
    GEMV_NORM(T, NAME, gemv::NF4, nf4, 2, 8, ns, NORM_STATS)      \
    GEMV_NORM(T, NAME, gemv::NF4, nf4, 4, 6, ns, NORM_STATS)

// gemv_st_<format>_<dtype>_m1_r<R>: the one-row kernels that stage their weights through shared
// memory (gemv_staged.cuh's accumulate_staged), for MINILAB_GEMV_STAGED: two steps a stage at R = 2, one at
// R = 4, so a block's stages take 20 KB (NF4) and a normalized xs of up to 16 KB still fits in 48 KB.
// The NF4 R = 2 kernel takes 4 blocks an SM: under a tighter register cap ptxas drops the table's
// uniform base register and spends an add on every lookup (bench/kernels/sass.sh: 5.8 instructions
// a weight against 4.75); its copies, not its warps, keep the bytes in flight.
#define GEMV_ST(T, NAME, F, FNAME, R, S, MINB)                                                               \
    extern "C" __global__ void __launch_bounds__(128, MINB) gemv_st_##FNAME##_##NAME##_m1_r##R(const T* xs, \
                                                                                            gemv::Parts ps) { \
        gemv::gemv_parts<T, F, 1, R, 1, S>(xs, ps);                                                          \
    }
#define GEMVS_ST(T, NAME)                        \
    GEMV_ST(T, NAME, gemv::DENSE, dense, 2, 2, 8) \
    GEMV_ST(T, NAME, gemv::INT8, int8, 2, 2, 8)   \
    GEMV_ST(T, NAME, gemv::NF4, nf4, 2, 2, 4)     \
    GEMV_ST(T, NAME, gemv::NF4, nf4, 4, 1, 6)

// gemv_sm_<format>_<dtype>_m1_r<R>: the streaming one-row kernels (gemv_stream.cuh) for
// MINILAB_GEMV_GRID=stream, launched on a resident grid, with the shipped kernels' R. No register cap:
// the slots, not the warps, keep the bytes in flight.
#define GEMV_SM(T, NAME, F, FNAME, R)                                                                        \
    extern "C" __global__ void __launch_bounds__(128) gemv_sm_##FNAME##_##NAME##_m1_r##R(const T* xs,       \
                                                                                       gemv::Parts ps) {    \
        gemv::gemv_stream<T, F, R>(xs, ps);                                                                  \
    }
// gemv_sr_<format>_<dtype>_m1_r<R>: the same with the slots in registers (gemv_stream_regs).
#define GEMV_SR(T, NAME, F, FNAME, R)                                                                        \
    extern "C" __global__ void __launch_bounds__(128) gemv_sr_##FNAME##_##NAME##_m1_r##R(const T* xs,       \
                                                                                       gemv::Parts ps) {    \
        gemv::gemv_stream_regs<T, F, R>(xs, ps);                                                             \
    }
#define GEMVS_SM(T, NAME)                    \
    GEMV_SM(T, NAME, gemv::DENSE, dense, 2) \
    GEMV_SM(T, NAME, gemv::INT8, int8, 2)   \
    GEMV_SM(T, NAME, gemv::NF4, nf4, 2)     \
    GEMV_SM(T, NAME, gemv::NF4, nf4, 4)     \
    GEMV_SR(T, NAME, gemv::DENSE, dense, 2) \
    GEMV_SR(T, NAME, gemv::INT8, int8, 2)   \
    GEMV_SR(T, NAME, gemv::NF4, nf4, 2)     \
    GEMV_SR(T, NAME, gemv::NF4, nf4, 4)

// gemv_mx_<dtype>_m1 and gemv_ns_mx_<dtype>_m1: q/k/v or gate/up whose layers hold different formats
// (gemv_mixed.cuh), one row of 16-bit xs, the block's norm or the stats way.
#define GEMV_MX(T, NAME)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128, 8) gemv_mx_##NAME##_m1(const T* xs, gemv::Parts ps) { \
        gemv::gemv_parts_mixed<T, gemv::NORM_BLOCK>(xs, ps);                                               \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(128, 8) gemv_ns_mx_##NAME##_m1(const T* xs,                \
                                                                               gemv::Parts ps) {            \
        gemv::gemv_parts_mixed<T, gemv::NORM_STATS>(xs, ps);                                               \
    }
GEMV_MX(__half, f16)
GEMV_MX(__nv_bfloat16, bf16)

// f32 activations (the CPU-exact check path, never fast): one kernel a format, M = 8.
GEMV(float, f32, gemv::DENSE, dense, 8, 1, 1)
GEMV(float, f32, gemv::INT8, int8, 8, 1, 1)
GEMV(float, f32, gemv::NF4, nf4, 8, 1, 1)
// and R = 2 for the launches that write more than products (gemv.cuh's SILU and ROPE modes)
GEMV(float, f32, gemv::DENSE, dense, 8, 2, 1)
GEMV(float, f32, gemv::INT8, int8, 8, 2, 1)
GEMV(float, f32, gemv::NF4, nf4, 8, 2, 1)
GEMVS(__half, f16)
GEMVS(__nv_bfloat16, bf16)
GEMVS_PF(__half, f16)
GEMVS_PF(__nv_bfloat16, bf16)
GEMVS_ST(__half, f16)
GEMVS_ST(__nv_bfloat16, bf16)
GEMVS_NORM(__half, f16)
GEMVS_NORM(__nv_bfloat16, bf16)
GEMVS_SM(__half, f16)
GEMVS_SM(__nv_bfloat16, bf16)

#define INSTANTIATE(T, NAME)                                                                                  \
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

// qgemm_<format>_<dtype>_bm<BM>: qgemm.cuh's prefill GEMM in steps of 32 along k (16-bit dtypes: the
// tensor cores take no f32), two blocks an SM.
#define QGEMM(T, NAME, F, FNAME, BM)                                                                          \
    extern "C" __global__ void __launch_bounds__(qgemm::THREADS, 2)                                           \
        qgemm_##FNAME##_##NAME##_bm##BM(const T* xs, const uint8_t* wq, const float* wb, T* ys, int m, int n, \
                                        int k) {                                                              \
        qgemm::qgemm<T, F, BM, 32>(xs, wq, wb, ys, m, n, k);                                                      \
    }
#define QGEMMS(T, NAME)                    \
    QGEMM(T, NAME, qgemm::INT8, int8, 64)  \
    QGEMM(T, NAME, qgemm::INT8, int8, 128) \
    QGEMM(T, NAME, qgemm::NF4, nf4, 64)    \
    QGEMM(T, NAME, qgemm::NF4, nf4, 128)
QGEMMS(__half, f16)
QGEMMS(__nv_bfloat16, bf16)
