// CUTLASS 4.2's sm90 mixed-input GEMM as minilab uses it: the narrow weight [n, k] row-major as A
// (K-major), xs [m, k] as B (column-major k × m), ys [m, n] as D (column-major n × m), bf16 MMA with
// f32 accumulation, a scale a group. Shared by the `cutlass` feature's prefill GEMMs (gemms.cuh) and
// bench/kernels' mixed_bench.cu and mixed_link/.
#pragma once
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"

using namespace cute;
using Mma = cutlass::bfloat16_t;

// One CUTLASS GEMM: narrow weight Q (int8_t, uint8_t, cutlass::int4b_t, or an NF4 code:
// nf4_convert.cuh) with group scales of type S (bf16, or f32: each weight then rounds to bf16 once,
// after the scale), tile and schedules as given; Sched the tile scheduler (void: CUTLASS's persistent
// data-parallel one; cutlass::gemm::StreamKScheduler splits the k loop of a tile across SMs where
// tiles are too few).
template <typename Q, class Tile, class Schedule, class EpiSchedule, typename S = Mma, class Sched = void>
struct Mixed {
    using Scale = S;
    using WeightTuple = cute::tuple<Q, S>;
    using LayoutA = cutlass::layout::RowMajor;
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
};

using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using CoopEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using Ping = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using PingEpi = cutlass::epilogue::TmaWarpSpecialized;
