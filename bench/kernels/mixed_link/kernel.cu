// The device half: params.cu's GEMM kernel under a plain C name, compiled to a cubin for
// cuModuleLoadData and launched with the Params bytes as its one argument (what
// cutlass::device_kernel does, without the runtime's launch).
#include "gemm.cuh"

extern "C" __global__ void __launch_bounds__(Int8::Kernel::MaxThreadsPerBlock, Int8::Kernel::MinBlocksPerMultiprocessor)
    minilab_mixed_int8(const __grid_constant__ typename Int8::Kernel::Params p) {
    extern __shared__ char smem[];
    Int8::Kernel op;
    op(p, smem);
}
