// The host half of a CUTLASS sm90 mixed-input GEMM without the CUDA runtime: CUTLASS's own host code
// builds the kernel's Params (TMA descriptors, tile scheduler) from minilab's pointers and shapes and
// hands them back as bytes, with the launch shape. A Rust caller would launch kernel.cu's cubin with
// those bytes through cudarc. Compiled by nvcc (CUTLASS's headers need it) with
// CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL, so the only CUDA symbols it needs are the ones probe.sh
// lists, which a caller provides (cudarc loads the driver at run time; minilab links no CUDA library).
#include <cstring>

#include "gemm.cuh"
#include "cutlass/util/packed_stride.hpp"

// dims out: grid x, y, z, block x, dynamic shared bytes, Params bytes. Returns 0, or 1 where CUTLASS
// refuses the problem, 2 where it would want a workspace, 3 where `cap` is too small.
extern "C" int minilab_mixed_int8_params(int n, int m, int k, const void* wq, const void* scales, const void* xs,
                                          void* ys, int sms, void* out, unsigned long cap, unsigned* dims) {
    using K = Int8::Kernel;
    auto sa = cutlass::make_cute_packed_stride(typename K::StrideA{}, make_shape(n, k, 1));
    auto sb = cutlass::make_cute_packed_stride(typename K::StrideB{}, make_shape(m, k, 1));
    auto sd = cutlass::make_cute_packed_stride(typename K::StrideD{}, make_shape(n, m, 1));
    auto sc = cutlass::make_cute_packed_stride(typename K::StrideC{}, make_shape(n, m, 1));
    auto ss = cutlass::make_cute_packed_stride(typename Int8::Mainloop::StrideScale{}, make_shape(n, 1, 1));
    cutlass::KernelHardwareInfo hw{0, sms};
    typename K::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                               {n, m, k, 1},
                               {static_cast<const int8_t*>(wq), sa, static_cast<const Mma*>(xs), sb,
                                static_cast<const Mma*>(scales), ss, k},
                               {{1.f, 0.f}, nullptr, sc, static_cast<Mma*>(ys), sd},
                               hw};
    if (!K::can_implement(args)) return 1;
    if (K::get_workspace_size(args) != 0) return 2;
    if (sizeof(typename K::Params) > cap) return 3;
    const typename K::Params p = K::to_underlying_arguments(args, nullptr);
    memcpy(out, &p, sizeof p);
    const dim3 grid = K::get_grid_shape(p), block = K::get_block_shape();
    const unsigned d[6] = {grid.x, grid.y, grid.z, block.x, (unsigned)K::SharedStorageSize, (unsigned)sizeof p};
    memcpy(dims, d, sizeof d);
    return 0;
}
