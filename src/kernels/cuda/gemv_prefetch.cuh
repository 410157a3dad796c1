// The gemv_pf_ kernels' prologue (MINILAB_PREFETCH): ask L2 for the next launch's weights.
#pragma once
#include <stddef.h>

namespace gemv {

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

// The gemv_pf_ kernels take it by value from Rust (src/kernels/prefetch.rs's PrefetchArg), which
// asserts the same size.
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

}  // namespace gemv
