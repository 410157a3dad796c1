// The device half of the `cutlass` feature's prefill GEMMs (gemms.cuh): each kernel under a plain C
// name, compiled to PTX for sm_90a by build.rs and launched through cudarc with the Params bytes that
// params.cu writes as its one argument (what cutlass::device_kernel does, without the runtime).
#include "gemms.cuh"

template <class K> __device__ __forceinline__ void gemm(const typename K::Params& p) {
    extern __shared__ char smem[];
    K op;
    op(p, smem);
}

#define MINILAB_KERNEL(NAME, G, KIND, TILE)                                                                            \
    extern "C" __global__ void __launch_bounds__(G::Kernel::MaxThreadsPerBlock, G::Kernel::MinBlocksPerMultiprocessor) \
        minilab_mixed_##NAME(const __grid_constant__ typename G::Kernel::Params p) {                                \
        gemm<G::Kernel>(p);                                                                                           \
    }
MINILAB_CUTLASS_GEMMS(MINILAB_KERNEL)
