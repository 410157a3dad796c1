// The device half of the `cutlass` feature's prefill GEMMs (gemms.cuh): each kernel under a plain C
// name, compiled to PTX for sm_90a by build.rs and launched through cudarc with the Params bytes that
// params.cu writes as its one argument (what cutlass::device_kernel does, without the runtime).
#include "gemms.cuh"

template <class K> __device__ __forceinline__ void gemm(const typename K::Params& p) {
    extern __shared__ char smem[];
    K op;
    op(p, smem);
}

extern "C" __global__ void __launch_bounds__(Int8Gemm::Kernel::MaxThreadsPerBlock, Int8Gemm::Kernel::MinBlocksPerMultiprocessor)
    minilab_mixed_int8(const __grid_constant__ typename Int8Gemm::Kernel::Params p) {
    gemm<Int8Gemm::Kernel>(p);
}

extern "C" __global__ void __launch_bounds__(Nf4Gemm::Kernel::MaxThreadsPerBlock, Nf4Gemm::Kernel::MinBlocksPerMultiprocessor)
    minilab_mixed_nf4(const __grid_constant__ typename Nf4Gemm::Kernel::Params p) {
    gemm<Nf4Gemm::Kernel>(p);
}
