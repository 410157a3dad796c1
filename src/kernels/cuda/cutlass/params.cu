// The host half of the `cutlass` feature's prefill GEMMs (gemms.cuh): CUTLASS's own host code builds
// a kernel's Params (TMA descriptors, tile scheduler) from device pointers and shapes and hands them
// back as bytes with the launch shape; src/kernels/cuda/cutlass.rs launches kernels.cu's kernel with
// them. Compiled by nvcc with CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL: the only CUDA symbols it needs
// are a driver call and two device queries (and the runtime's registration hooks), which build.rs
// renames to driver.cpp's forwarders: CUTLASS's host calls then reach the driver entry points cudarc
// resolved, and nothing registers with the CUDA runtime.
#include <cstring>

#include "cutlass/util/packed_stride.hpp"
#include "gemms.cuh"

namespace {

// dims out: grid x, y, z, block x, dynamic shared bytes, Params bytes. 0, or 1 where CUTLASS refuses
// the problem, 2 where it would want a workspace, 3 where `cap` is too small.
template <class G>
int params_of(int n, int m, int k, int group, const void* wq, const void* scales, const void* xs,
              void* ys, int sms, void* out, unsigned long cap, unsigned* dims) {
    using K = typename G::Kernel;
    using S = typename G::Scale;
    auto sa = cutlass::make_cute_packed_stride(typename K::StrideA{}, make_shape(n, k, 1));
    auto sb = cutlass::make_cute_packed_stride(typename K::StrideB{}, make_shape(m, k, 1));
    auto sd = cutlass::make_cute_packed_stride(typename K::StrideD{}, make_shape(n, m, 1));
    auto sc = cutlass::make_cute_packed_stride(typename K::StrideC{}, make_shape(n, m, 1));
    auto ss = cutlass::make_cute_packed_stride(typename G::Mainloop::StrideScale{}, make_shape(n, k / group, 1));
    cutlass::KernelHardwareInfo hw{0, sms};
    typename K::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                               {n, m, k, 1},
                               {static_cast<const typename G::Mainloop::ElementA*>(wq), sa, static_cast<const Mma*>(xs), sb,
                                static_cast<const S*>(scales), ss, group},
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

}  // namespace

// kind 0: int8 (wq: codes q + 128 [n, k]; scales: f32 [n]); kind 1: NF4 (wq: packed codes
// [n·k/2]; scales: f32 absmax [k/64, n], n contiguous). tile: 0 cooperative 128 × 128,
// 1 cooperative 128 × 256, 2 ping-pong 64 × 128 (gemms.cuh). xs: bf16 [m, k], ys: bf16 [m, n].
// 4 for another kind or tile.
extern "C" int minilab_mixed_params(int kind, int tile, int n, int m, int k, const void* wq, const void* scales,
                                    const void* xs, void* ys, int sms, void* out, unsigned long cap,
                                    unsigned* dims) {
#define MINILAB_PARAMS(NAME, G, KIND, TILE)                                                                 \
    if (kind == KIND && tile == TILE)                                                                          \
        return params_of<G>(n, m, k, KIND == 0 ? k : 64, wq, scales, xs, ys, sms, out, cap, dims);
    MINILAB_CUTLASS_GEMMS(MINILAB_PARAMS)
#undef MINILAB_PARAMS
    return 4;
}
