// Prefill of an int8 or NF4 weight in one kernel: ys[m, n] = xs[m, k]·Wᵀ with W dequantized tile by
// tile in shared memory and multiplied on the tensor cores (mma.sync m16n8k16, f32 accumulation).
// The shipped prefill dequantizes the whole weight to 16 bits in HBM first and hands it to cuBLAS:
// that pass moves 3× the int8 bytes (read codes, write and re-read bf16) and kept the 3B's int8/nf4
// pp512 at 0.72/0.74× f16 (BENCHMARKS.md, issue 11 session 11). Here the weight's bytes cross HBM
// once, as stored.
//
// A block computes a BM × BN tile of ys (BM = 64 or 128 tokens, BN = 128 weight rows) in steps of
// BK = 32 or 64 along k (minilab ships BK = 32; bench/kernels/prefill_bench.cu times both). Each
// step's xs tile and quantized weight tile arrive by cp.async two steps ahead (3 stages); the weight
// tile is then dequantized into one 16-bit buffer (int8: the integer code, exact in bf16 and f16,
// the row's scale applied to the f32 sum at the end; NF4: code × absmax rounded to T, as linear.cu's
// dequant_nf4 writes it), which the 8 warps (2 along m × 4 along n, each BM/2 × 32) read as mma
// fragments (ldmatrix). Layouts: linear.cu's header. Needs n % 128 == 0, k % 64 == 0 and xs 16-byte
// aligned, else src/kernels/cuda/qgemm.rs falls back; a weight not 16-byte aligned is its error.
#pragma once
#include <stdint.h>

#include "common.cuh"
#include "gemv.cuh"

namespace qgemm {

constexpr int BN = 128, THREADS = 256, STAGES = 3;
constexpr int INT8 = 1, NF4 = 2;
// Row stride of the 16-bit tiles in shared memory, in elements: 80-byte (BK = 32) or 144-byte
// (BK = 64) rows put the 8 rows of one ldmatrix phase (16 bytes each) in distinct banks, and keep
// every row 16-byte aligned.
template <int BK> __host__ __device__ constexpr int lds() { return BK + 8; }

// Bytes of one weight row's BK codes.
template <int FMT, int BK> __host__ __device__ constexpr int qrow() { return FMT == INT8 ? BK : BK / 2; }

// Dynamic shared memory of a block; src/kernels/cuda/qgemm.rs computes the same.
template <int FMT, int BM, int BK> __host__ __device__ constexpr int smem_bytes() {
    return STAGES * BM * lds<BK>() * 2 + STAGES * BN * qrow<FMT, BK>() + STAGES * BN * 4 + BN * lds<BK>() * 2;
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool full) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    // src-size 0 fills the 16 bytes with zeros and reads nothing (rows of xs past m)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(full ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// c += a·b for one m16n8k16 tile (PTX ISA fragment layouts: a0..a3 rows g, g+8 × columns 2t, 2t+8;
// b0, b1 rows 2t, 2t+8 of column g; c0..c3 rows g, g+8 × columns 2t, 2t+1; g = lane / 4, t = lane % 4).
template <typename T> __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
template <> __device__ __forceinline__ void mma<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma<__half>(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <typename T> __device__ __forceinline__ void store2(T* p, float a, float b);
template <> __device__ __forceinline__ void store2<__nv_bfloat16>(__nv_bfloat16* p, float a, float b) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}
template <> __device__ __forceinline__ void store2<__half>(__half* p, float a, float b) {
    *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}

// Step k0's tiles into one stage: xs [BM, BK] (16-byte chunks; rows past m zero-filled), the
// weight's codes [BN, qrow] and, for NF4, each row's absmax of the 64-block holding k0 (BK ≤ 64
// and k0 a multiple of BK: the step lies within one block).
template <typename T, int FMT, int BM, int BK>
__device__ __forceinline__ void load_stage(T* as, uint8_t* bq, float* bsc, const T* xs, const uint8_t* wq,
                                           const float* wb, int m, int k, int m0, int n0, int k0) {
    // chunk c of thread t in round i is t + i·THREADS: trip counts known at compile time, so the
    // rounds unroll and their addresses stay out of the k loop
    constexpr int XCH = BK / 8, QCH = qrow<FMT, BK>() / 16, XN = BM * XCH, QN = BN * QCH;
    static_assert(XN % THREADS == 0, "whole rounds of xs chunks");
#pragma unroll
    for (int i = 0; i < XN / THREADS; i++) {
        const int c = threadIdx.x + i * THREADS, r = c / XCH, col = (c % XCH) * 8;
        const bool in = m0 + r < m;
        cp_async16(as + r * lds<BK>() + col, xs + (size_t)(in ? m0 + r : 0) * k + k0 + col, in);
    }
    // a row's codes start at byte (row·k + k0)·(bits / 8)
#pragma unroll
    for (int i = 0; i < (QN + THREADS - 1) / THREADS; i++) {
        const int c = threadIdx.x + i * THREADS, r = c / QCH, col = (c % QCH) * 16;
        const size_t at = FMT == INT8 ? (size_t)(n0 + r) * k + k0 : ((size_t)(n0 + r) * k + k0) / 2;
        if (QN % THREADS == 0 || c < QN) cp_async16(bq + r * qrow<FMT, BK>() + col, wq + at + col, true);
    }
    // the absmax copies go to the threads with the fewest code chunks
    if (FMT == NF4) {
        const int r = (threadIdx.x + THREADS - BN) % THREADS;
        if (r < BN) cp_async4(bsc + r, wb + ((size_t)(n0 + r) * k + k0) / 64);
    }
}

// Code byte e of word w (q + 128) as the float q, in two instructions where a byte extract and an
// integer convert take about four: the byte goes into the low mantissa of 2²³ (0x4B0000bb is
// 2²³ + bb), and subtracting 2²³ + 128 leaves q exactly.
__device__ __forceinline__ float code_value(uint32_t w, int e) {
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440 | e)) - 8388736.f;
}

// One stage's codes → bs [BN, lds] in T, 16 elements at a time.
template <typename T, int FMT, int BK>
__device__ __forceinline__ void dequant_stage(T* bs, const uint8_t* bq, const float* bsc, const float* codes) {
    constexpr int SEGS = BK / 16;
    static_assert(BN * SEGS % THREADS == 0, "whole rounds of 16-code segments");
#pragma unroll
    for (int i = 0; i < BN * SEGS / THREADS; i++) {
        const int c = threadIdx.x + i * THREADS, r = c / SEGS, seg = c % SEGS;
        alignas(16) T out[16];
        if (FMT == INT8) {
            const uint4 raw = *reinterpret_cast<const uint4*>(bq + r * BK + seg * 16);
            const uint32_t* w = reinterpret_cast<const uint32_t*>(&raw);
#pragma unroll
            for (int e = 0; e < 16; e++) out[e] = from_f<T>(code_value(w[e >> 2], e & 3));
        } else {
            const uint2 raw = *reinterpret_cast<const uint2*>(bq + r * (BK / 2) + seg * 8);
            const uint8_t* b = reinterpret_cast<const uint8_t*>(&raw);
            const float a = bsc[r];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                out[2 * e] = from_f<T>(codes[b[e] >> 4] * a);
                out[2 * e + 1] = from_f<T>(codes[b[e] & 15] * a);
            }
        }
        uint4* dst = reinterpret_cast<uint4*>(bs + r * lds<BK>() + seg * 16);
        dst[0] = reinterpret_cast<const uint4*>(out)[0];
        dst[1] = reinterpret_cast<const uint4*>(out)[1];
    }
}

// Four 8×8 matrices of 16-bit elements from shared memory: lanes 8j..8j+7 give the row addresses
// (16 bytes each) of matrix j, and each lane receives, of every matrix, the two elements of row
// lane / 4 at columns 2·(lane % 4) — the mma fragment layout.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// One BK step of a warp's BM/2 × 32 tile: BK / 16 k16 slices, MT × 4 mma each. Fragments come by
// ldmatrix: for A (rows of xs, k contiguous) the four matrices are rows 0–7 / 8–15 × k 0–7 / 8–15 in
// a0..a3 order; for B (rows of the weight, k contiguous, so each 8×8 is already the "col" operand)
// two n8 tiles at once, k 0–7 and 8–15 of each.
template <typename T, int MT, int BK>
__device__ __forceinline__ void mma_step(float (&acc)[MT][4][4], const T* as, const T* bs, int lane) {
    constexpr int LDS = lds<BK>();
    // this lane's row address within a matrix quad: matrix lane / 8, row lane % 8
    const int quad = lane >> 3, row = lane & 7;
    const int a_row = row + (quad & 1) * 8, a_col = (quad >> 1) * 8;
    const int b_row = row + (quad >> 1) * 8, b_col = (quad & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
        uint32_t a[MT][4], b[4][2];
#pragma unroll
        for (int i = 0; i < MT; i++) ldmatrix_x4(a[i], as + (i * 16 + a_row) * LDS + kk + a_col);
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            uint32_t r[4];
            ldmatrix_x4(r, bs + (j * 8 + b_row) * LDS + kk + b_col);
            b[j][0] = r[0];
            b[j][1] = r[1];
            b[j + 1][0] = r[2];
            b[j + 1][1] = r[3];
        }
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) mma<T>(acc[i][j], a[i], b[j]);
    }
}

// The whole kernel; grid (ceil(m / BM), n / BN), THREADS threads, smem_bytes<FMT, BM, BK>() of
// dynamic shared memory. Blocks along m are adjacent in launch order, so the blocks that share a
// weight tile run together and read it from L2.
template <typename T, int FMT, int BM, int BK>
__device__ void qgemm(const T* __restrict__ xs, const uint8_t* __restrict__ wq, const float* __restrict__ wb,
                      T* __restrict__ ys, int m, int n, int k) {
    static_assert(BK == 32 || BK == 64, "a step within one NF4 block, whole 16-byte code chunks");
    static_assert(BM == 64 || BM == 128, "two warps along m, m16 tiles");
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float codes[16];
    constexpr int MT = BM / 32, LDS = lds<BK>(), QROW = qrow<FMT, BK>();
    T* as = reinterpret_cast<T*>(smem);
    uint8_t* bq = reinterpret_cast<uint8_t*>(as + STAGES * BM * LDS);
    float* bsc = reinterpret_cast<float*>(bq + STAGES * BN * QROW);
    T* bs = reinterpret_cast<T*>(bsc + STAGES * BN);
    if (FMT == NF4 && threadIdx.x < 16) codes[threadIdx.x] = gemv::NF4_CODES[threadIdx.x];
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, tiles = k / BK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wm = warp >> 2, wn = warp & 3;
    float acc[MT][4][4] = {};
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < tiles)
            load_stage<T, FMT, BM, BK>(as + s * BM * LDS, bq + s * BN * QROW, bsc + s * BN, xs, wq, wb, m, k, m0, n0,
                                       s * BK);
        cp_commit();
    }
    for (int kt = 0; kt < tiles; kt++) {
        // step kt's copies are done, and every warp is past step kt − 1: its stage and bs are free
        cp_wait<STAGES - 2>();
        __syncthreads();
        const int next = kt + STAGES - 1, sn = next % STAGES, s = kt % STAGES;
        if (next < tiles)
            load_stage<T, FMT, BM, BK>(as + sn * BM * LDS, bq + sn * BN * QROW, bsc + sn * BN, xs, wq, wb, m, k, m0,
                                       n0, next * BK);
        cp_commit();
        dequant_stage<T, FMT, BK>(bs, bq + s * BN * QROW, bsc + s * BN, codes);
        __syncthreads();
        mma_step<T, MT, BK>(acc, as + s * BM * LDS + wm * (BM / 2) * LDS, bs + wn * 32 * LDS, lane);
    }
#pragma unroll
    for (int i = 0; i < MT; i++) {
        const int row = m0 + wm * (BM / 2) + i * 16 + g;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int col = n0 + wn * 32 + j * 8 + 2 * t;
            const float s0 = FMT == INT8 ? wb[col] : 1.f, s1 = FMT == INT8 ? wb[col + 1] : 1.f;
            if (row < m) store2<T>(ys + (size_t)row * n + col, acc[i][j][0] * s0, acc[i][j][1] * s1);
            if (row + 8 < m) store2<T>(ys + (size_t)(row + 8) * n + col, acc[i][j][2] * s0, acc[i][j][3] * s1);
        }
    }
}

}  // namespace qgemm
