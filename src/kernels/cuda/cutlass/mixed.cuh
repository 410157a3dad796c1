// CUTLASS 4.2's sm90 mixed-input GEMM as minilab uses it: the narrow weight [n, k] row-major as A
// (K-major), xs [m, k] as B (column-major k × m), ys [m, n] as D (column-major n × m), bf16 MMA with
// f32 accumulation, a scale a group. Shared by the `cutlass` feature's prefill GEMMs (gemms.cuh) and
// bench/kernels' mixed_bench.cu and mixed_link/. The weight may also be stored reordered offline
// (ATOMS > 0 below; mixed_bench --shuffled): CUTLASS's layout that puts the values one thread feeds
// to wgmma next to each other in memory, so that its smem → register loads are wide.
#pragma once
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#ifdef MINILAB_MIXED_REORDER
// compute_memory_reordering_atom, reorder_tensor. Opt-in (mixed_bench.cu): the header brings cuRAND's
// tables (CUTLASS's reference fills), which would more than double the crate's PTX. (20012: its
// packed_scale_t's defaulted constructor carries __host__ __device__, which nvcc notes it ignores.)
#pragma nv_diag_suppress 20012
#include "cutlass/util/mixed_dtype_utils.hpp"
#pragma nv_diag_default 20012
#endif

using namespace cute;
using Mma = cutlass::bfloat16_t;

// The weight's layout in memory: Tag for the builder's LayoutA, of(n, k) the A argument. ATOMS = 0:
// row-major.
template <int ATOMS> struct WeightLayout;
template <> struct WeightLayout<0> {
    using Stride = cutlass::detail::TagToStrideA_t<cutlass::layout::RowMajor>;
    using Tag = cutlass::layout::RowMajor;
    static Stride of(int n, int k) { return cutlass::make_cute_packed_stride(Stride{}, make_shape(n, k, 1)); }
};
#ifdef MINILAB_MIXED_REORDER
// ATOMS > 0: reordered offline (cutlass::reorder_tensor from row-major) so that the 8 values a thread
// holds for one 16-deep wgmma k step, for ATOMS such steps, lie contiguously: wider smem → register
// loads. No value shuffle (ValLayout 1): a thread's values keep their order and each k pair its byte,
// so the converters (int8_convert.cuh, nf4_convert.cuh) see the same words, only gathered differently.
template <int ATOMS> struct WeightLayout {
    static_assert(ATOMS > 0);
    using Stride = cutlass::detail::TagToStrideA_t<cutlass::layout::RowMajor>;
    using Atom = decltype(cutlass::compute_memory_reordering_atom<Mma, Layout<Shape<_1, Int<ATOMS>>>>());
    using Tag = decltype(tile_to_shape(Atom{}, Layout<Shape<int, int, int>, Stride>{}));
    static Tag of(int n, int k) { return tile_to_shape(Atom{}, make_shape(n, k, 1)); }
};
#endif

// One CUTLASS GEMM: narrow weight Q (int8_t, uint8_t, cutlass::int4b_t, or an NF4 code:
// nf4_convert.cuh) with group scales of type S (bf16, or f32: each weight then rounds to bf16 once,
// after the scale), tile and schedules as given; Sched the tile scheduler (void: CUTLASS's persistent
// data-parallel one; cutlass::gemm::StreamKScheduler splits the k loop of a tile across SMs where
// tiles are too few); ATOMS the weight's layout (WeightLayout; > 0 needs MINILAB_MIXED_REORDER).
template <typename Q, class Tile, class Schedule, class EpiSchedule, typename S = Mma, class Sched = void,
          int ATOMS = 0>
struct Mixed {
    using Scale = S;
    using WeightTuple = cute::tuple<Q, S>;
    using LayoutA = typename WeightLayout<ATOMS>::Tag;
    using LayoutB = cutlass::layout::ColumnMajor;
    using LayoutD = cutlass::layout::ColumnMajor;
    static constexpr int kAlignA = 128 / cutlass::sizeof_bits<Q>::value;
    static constexpr int kAlign16 = 8;
    using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Shape<_1, _1, _1>,
        cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutD, kAlign16, Mma, LayoutD,
        kAlign16, EpiSchedule>::CollectiveOp;
    using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, WeightTuple, LayoutA, kAlignA, Mma, LayoutB,
        kAlign16, float, Tile, Shape<_1, _1, _1>,
        cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
        Schedule>::CollectiveOp;
    using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, Sched>;
    // The A argument for a weight of n rows of k: its stride, or its reordered layout.
    static auto a_layout(int n, int k) { return WeightLayout<ATOMS>::of(n, k); }
};

using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using CoopEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using Ping = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using PingEpi = cutlass::epilogue::TmaWarpSpecialized;
